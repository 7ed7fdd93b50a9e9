// `termsync sim --protocol zk`: the ZK options of the sim command and the run
// loop. src/sim/cli.ts adds these options and hands over when --protocol zk.
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { intArg, msArg } from '../cli-args.js';
import { ZK_DEFAULT_PORT } from '../../drivers/zk/constants.js';
import { DEFAULT_ZK_TIMING, ZERO_ZK_TIMING, type ZkTimingModel } from './device.js';
import { ZkSimulator } from './simulator.js';

function uidStartArg(v: string): number | number[] {
  const parts = v.split(',').map((s) => s.trim());
  const nums = parts.map((s) => {
    if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new InvalidArgumentError('must be uids 1..65535, one for all terminals or a comma list with one per terminal');
    return Number(s);
  });
  return nums.length === 1 ? nums[0] : nums;
}

/** Adds the ZK-only options to the sim command. */
export function addZkOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--protocol <name>', 'terminal protocol to simulate').choices(['termsync', 'zk', 'gsdk']).default('termsync'))
    .option('--gsdk-ca-out <path>', 'gsdk: write the throwaway CA of the mock device gateway here (for the daemon\'s --gsdk-ca-file)')
    .option('--gsdk-changed-on-device', 'gsdk: the mock gateway sends EventLog.changedOnDevice (a newer gateway)')
    .option('--zk-password <n>', 'zk: comm key password of the terminals (0 = none)', intArg(0, 0xffffffff), 0)
    .option('--zk-uid-start <uids>', 'zk: first uid a terminal hands out: one value, or a comma list with one per terminal (uid numbering differs between terminals)', uidStartArg)
    .addOption(new Option('--zk-record-size <bytes>', 'zk: user record size (72 TFT firmware, 28 older firmware)').choices(['72', '28']).default('72'))
    .option('--zk-direct-max <bytes>', 'zk: tables up to this size are answered with one direct CMD_DATA (0 = always chunked)', intArg(0, 1024 * 1024), 0)
    .addOption(new Option('--zk-attlog-size <bytes>', 'zk: EF_ATTLOG payload size').choices(['12', '32']).default('32'))
    .option('--zk-frame-gap <ms>', 'zk: pause between the frames of a multi-frame answer', msArg, DEFAULT_ZK_TIMING.frameGapMs);
}

interface ZkSimFlags {
  terminals: number;
  listen: { host: string; port: number };
  dial?: unknown;
  control?: { host: string; port: number };
  userCapacity: number;
  zkPassword: number;
  zkUidStart?: number | number[];
  zkRecordSize: string;
  zkDirectMax: number;
  zkAttlogSize: string;
  zkFrameGap: number;
  latency: boolean;
  latencyCommand: number;
  latencyUserWrite: number;
  latencyUserRead: number;
  logLevel: string;
}

/** Runs ZK terminals until SIGINT/SIGTERM. */
export async function runZkSim(cmd: Command, flags: ZkSimFlags): Promise<void> {
  const log = pino({ level: flags.logLevel, base: { component: 'sim', protocol: 'zk' } });
  if (flags.dial !== undefined) cmd.error('termsync sim: ZK terminals only listen (--dial is for termsync terminals)', { exitCode: 2 });
  const explicit = (name: string) => cmd.getOptionValueSource(name) === 'cli' || cmd.getOptionValueSource(name) === 'env';
  // flags of the termsync simulator that mean nothing to a ZK terminal
  const ignored = ['commKeyFile', 'insecureDevKey', 'tls', 'tlsCert', 'tlsKey', 'tlsCa', 'tlsInsecure', 'tlsServername', 'tlsRequestCert', 'state', 'scenarioUsers', 'logCapacity', 'maxUsersPerBatch', 'deviceIdBase', 'heartbeatSec', 'maxProtocolVersion']
    .filter((k) => explicit(k))
    .map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
  if (ignored.length > 0) cmd.error(`termsync sim: ${ignored.join(', ')} ${ignored.length === 1 ? 'does' : 'do'} not apply to ZK terminals (the comm key is --zk-password)`, { exitCode: 2 });
  const port = explicit('listen') ? flags.listen.port : ZK_DEFAULT_PORT;
  let timing: ZkTimingModel = flags.latency ? { ...DEFAULT_ZK_TIMING } : { ...ZERO_ZK_TIMING };
  if (flags.latency) {
    if (explicit('latencyCommand')) timing.perCommandMs = flags.latencyCommand;
    if (explicit('latencyUserWrite')) timing.perUserWriteMs = flags.latencyUserWrite;
    if (explicit('latencyUserRead')) timing.perUserReadMs = flags.latencyUserRead;
  }
  timing = { ...timing, frameGapMs: flags.zkFrameGap };
  let sim: ZkSimulator;
  try {
    sim = await ZkSimulator.start({
      terminals: flags.terminals,
      listenHost: flags.listen.host,
      basePort: port,
      password: flags.zkPassword,
      uidStart: flags.zkUidStart,
      recordSize: flags.zkRecordSize === '28' ? 28 : 72,
      userCapacity: explicit('userCapacity') ? flags.userCapacity : undefined,
      directDataMax: flags.zkDirectMax,
      attlogSize: flags.zkAttlogSize === '12' ? 12 : 32,
      timing,
      control: flags.control,
      logger: log,
    });
  } catch (e) {
    cmd.error(`termsync sim: ${(e as Error).message}`, { exitCode: 1 });
  }
  log.info(
    {
      terminals: sim!.terminals.map((t, i) => ({ id: String(t.index), serialNumber: t.serialNumber, port: sim!.ports()[i] })),
      control: sim!.controlPort !== undefined ? `${flags.control?.host}:${sim!.controlPort}` : undefined,
      commKey: flags.zkPassword !== 0,
    },
    'simulated ZK terminals ready',
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void sim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
