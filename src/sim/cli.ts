// `termsync sim`: run simulated terminals from the command line.
//
//   termsync sim --terminals 8 --listen 127.0.0.1:52000 --insecure-dev-key --control 127.0.0.1:52100
//     serves terminals 1..8 on ports 52000..52007 (the server dials them); port 0 = ephemeral ports
//   termsync sim --terminals 8 --dial 127.0.0.1:51212 --comm-key-file site.key
//     the terminals dial the server and reconnect with backoff while it is away
//   --scenario-users 1000 --scenario-rate 50    enroll 1000 users at 50 per second over the terminals
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import pino, { type Logger } from 'pino';
import { DEFAULT_TERMINAL_PORT, LIMITS, PROTOCOL_1_0, PROTOCOL_1_1 } from '../codec/index.js';
import { intArg, msArg } from './cli-args.js';
import { CommKeyError, DEV_COMM_KEY, readCommKeyFile } from './devkey.js';
import type { SimTlsOptions } from './endpoint.js';
import { runScenario, type ScenarioSpread } from './scenario.js';
import { parseHostPort, Simulator, DEFAULT_DEVICE_ID_BASE, type SimulatorOptions } from './simulator.js';
import { DEFAULT_LOG_CAPACITY, DEFAULT_MAX_USERS_PER_BATCH, DEFAULT_USER_CAPACITY } from './terminal.js';
import { DEFAULT_TIMING, type TimingModel } from './timing.js';
import { addZkOptions, runZkSim } from './zk/cli.js';
import { runGsdkSim } from './gsdk/cli.js';

function rateArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1_000_000) throw new InvalidArgumentError('must be a number of users per second > 0');
  return n;
}

function hostPortArg(v: string) {
  try {
    return parseHostPort(v, 'the value');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

interface SimFlags {
  terminals: number;
  listen: { host: string; port: number };
  dial?: { host: string; port: number };
  commKeyFile?: string;
  insecureDevKey?: boolean;
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsInsecure?: boolean;
  tlsServername?: string;
  tlsRequestCert?: boolean;
  state?: string;
  control?: { host: string; port: number };
  heartbeatSec: number;
  userCapacity: number;
  logCapacity: number;
  maxUsersPerBatch: number;
  deviceIdBase: number;
  maxProtocolVersion: '1.0' | '1.1';
  latencyCommand: number;
  latencyUserWrite: number;
  latencyUserRead: number;
  latencyUserList: number;
  latencyEventRead: number;
  latency: boolean;
  scenarioUsers?: number;
  scenarioRate: number;
  scenarioSpread: ScenarioSpread;
  scenarioCards: number;
  scenarioFingers: number;
  scenarioPrefix: string;
  logLevel: string;
}

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new CommKeyError(`cannot read the ${what} ${path}: ${(e as Error).message}`);
  }
}

/** The `sim` subcommand (the lead mounts it as `termsync sim`). */
export function simCommand(): Command {
  const cmd = new Command('sim')
    .description('run simulated access-control terminals (the device side of the termsync protocol)')
    .option('--terminals <n>', 'number of terminals', intArg(1, 10_000), 1)
    .addOption(
      new Option('--listen <host:port>', 'terminals listen here, the server dials them; terminal i uses PORT+i-1 (port 0: ephemeral ports)')
        .argParser(hostPortArg)
        .default({ host: '127.0.0.1', port: DEFAULT_TERMINAL_PORT }, `127.0.0.1:${DEFAULT_TERMINAL_PORT}`),
    )
    .option('--dial <host:port>', 'the terminals dial this server instead of listening (reconnecting with backoff)', hostPortArg)
    .option('--comm-key-file <path>', 'comm key shared with the server (PROTOCOL.md 4.5: hex digits only = hex, at least 32; else raw bytes, at least 16)')
    .option('--insecure-dev-key', 'use the public development comm key (src/sim/devkey.ts); for demos only')
    .option('--tls', 'dial mode: connect with TLS')
    .option('--tls-cert <path>', 'PEM certificate: the terminals\' server certificate (listen) or client certificate (dial)')
    .option('--tls-key <path>', 'PEM private key for --tls-cert')
    .option('--tls-ca <path>', 'PEM CA to trust: the server\'s (dial) or the client certificates\' (listen with --tls-request-cert)')
    .option('--tls-insecure', 'dial mode: do not verify the server\'s certificate (testing only)')
    .option('--tls-servername <name>', 'dial mode: the name to verify in the server\'s certificate')
    .option('--tls-request-cert', 'listen mode: require a client certificate signed by --tls-ca')
    .option('--state <dir>', 'persist each terminal\'s users and log in DIR (loaded at start, saved on change)')
    .option('--control <host:port>', 'serve the JSON control API here (keep it on 127.0.0.1: it has no authentication)', hostPortArg)
    .option('--heartbeat-sec <n>', 'idle timeout basis when the server announces heartbeat 0 (timeout = 3 x heartbeat)', intArg(1, 3600), 30)
    .option('--user-capacity <n>', 'users a terminal holds', intArg(0, 0xffffffff), DEFAULT_USER_CAPACITY)
    .option('--log-capacity <n>', 'events in a terminal\'s ring', intArg(1, 10_000_000), DEFAULT_LOG_CAPACITY)
    .option('--max-users-per-batch <n>', 'users per PUT_USERS/GET_USERS', intArg(1, LIMITS.maxBatch), DEFAULT_MAX_USERS_PER_BATCH)
    .option('--device-id-base <n>', 'terminal i gets device ID BASE+i', intArg(0, 0xfffffffe), DEFAULT_DEVICE_ID_BASE)
    .option('--latency-command <ms>', 'simulated latency per command', msArg, DEFAULT_TIMING.perCommandMs)
    .option('--latency-user-write <ms>', 'simulated latency per user written', msArg, DEFAULT_TIMING.perUserWriteMs)
    .option('--latency-user-read <ms>', 'simulated latency per user read (GET_USERS)', msArg, DEFAULT_TIMING.perUserReadMs)
    .option('--latency-user-list <ms>', 'simulated latency per LIST_USERS entry', msArg, DEFAULT_TIMING.perUserListedMs)
    .option('--latency-event-read <ms>', 'simulated latency per GET_LOG event', msArg, DEFAULT_TIMING.perEventReadMs)
    .option('--no-latency', 'no simulated latency at all')
    .option('--scenario-users <n>', 'scenario: enroll N users on the terminals (on-device enrollments)', intArg(0, 10_000_000))
    .option('--scenario-rate <r>', 'scenario: users per second', rateArg, 10)
    .addOption(
      new Option('--scenario-spread <how>', 'scenario: each user on one terminal in turn, or on all terminals')
        .choices(['round-robin', 'all'])
        .default('round-robin'),
    )
    .option('--scenario-cards <k>', 'scenario: cards per user', intArg(0, LIMITS.cards), 1)
    .option('--scenario-fingers <f>', 'scenario: fingers per user', intArg(0, LIMITS.fingers), 0)
    .option('--scenario-prefix <text>', 'scenario: user IDs are PREFIX1, PREFIX2, ...', 'sim-')
    .addOption(
      new Option('--max-protocol-version <v>', 'newest termsync protocol version the terminals offer (1.0 makes them behave as protocol 1.0 terminals)')
        .choices(['1.0', '1.1'])
        .default('1.1'),
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'));
  addZkOptions(cmd).action(async (flags: SimFlags & { protocol: string }) => {
      if (flags.protocol === 'zk') return runZkSim(cmd, flags as unknown as Parameters<typeof runZkSim>[1]);
      if (flags.protocol === 'gsdk') return runGsdkSim(cmd, flags as unknown as Parameters<typeof runGsdkSim>[1]);
      const log = pino({ level: flags.logLevel, base: { component: 'sim' } });
      let commKey: Buffer;
      let opts: SimulatorOptions;
      try {
        if (flags.commKeyFile !== undefined && flags.insecureDevKey) throw new CommKeyError('give --comm-key-file or --insecure-dev-key, not both');
        if (flags.commKeyFile !== undefined) commKey = readCommKeyFile(flags.commKeyFile);
        else {
          // Simulated terminals guard nothing, so trying them needs no key file; the
          // daemon, which guards a site, never falls back like this.
          commKey = DEV_COMM_KEY;
          log.warn(
            flags.insecureDevKey
              ? 'using the public development comm key (--insecure-dev-key): anyone can impersonate these terminals'
              : 'no --comm-key-file: using the public development comm key (start the daemon with --insecure-dev-key to talk to these terminals)',
          );
        }
        const anyTls = flags.tls || flags.tlsCert || flags.tlsKey || flags.tlsCa || flags.tlsInsecure || flags.tlsRequestCert;
        let tls: SimTlsOptions | undefined;
        if (anyTls) {
          tls = {
            cert: readPem(flags.tlsCert, 'TLS certificate'),
            key: readPem(flags.tlsKey, 'TLS key'),
            ca: readPem(flags.tlsCa, 'TLS CA file'),
            rejectUnauthorized: !flags.tlsInsecure,
            servername: flags.tlsServername,
            requestCert: flags.tlsRequestCert,
          };
          if (!flags.dial && (!tls.cert || !tls.key)) throw new CommKeyError('listening with TLS needs --tls-cert and --tls-key');
        }
        const timing: TimingModel = flags.latency
          ? {
              perCommandMs: flags.latencyCommand,
              perUserWriteMs: flags.latencyUserWrite,
              perUserReadMs: flags.latencyUserRead,
              perUserListedMs: flags.latencyUserList,
              perEventReadMs: flags.latencyEventRead,
            }
          : { perCommandMs: 0, perUserWriteMs: 0, perUserReadMs: 0, perUserListedMs: 0, perEventReadMs: 0 };
        opts = {
          terminals: flags.terminals,
          listenHost: flags.listen.host,
          basePort: flags.listen.port,
          dial: flags.dial,
          commKey,
          heartbeatSec: flags.heartbeatSec,
          timing,
          control: flags.control,
          state: flags.state,
          userCapacity: flags.userCapacity,
          logCapacity: flags.logCapacity,
          maxUsersPerBatch: flags.maxUsersPerBatch,
          deviceIdBase: flags.deviceIdBase,
          maxVersion: flags.maxProtocolVersion === '1.0' ? PROTOCOL_1_0 : PROTOCOL_1_1,
          tls,
          logger: log,
        };
      } catch (e) {
        cmd.error(`termsync sim: ${(e as Error).message}`, { exitCode: 2 });
      }
      let sim: Simulator;
      try {
        sim = await Simulator.start(opts!);
      } catch (e) {
        cmd.error(`termsync sim: ${(e as Error).message}`, { exitCode: 1 });
      }
      announce(sim!, log, flags);
      const abort = new AbortController();
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping');
        abort.abort();
        void sim.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      if (flags.scenarioUsers !== undefined && flags.scenarioUsers > 0) {
        await runScenario(
          sim!.terminals,
          {
            users: flags.scenarioUsers,
            rate: flags.scenarioRate,
            spread: flags.scenarioSpread,
            cards: flags.scenarioCards,
            fingers: flags.scenarioFingers,
            idPrefix: flags.scenarioPrefix,
            signal: abort.signal,
          },
          log,
        );
      }
    });
  return cmd;
}

function announce(sim: Simulator, log: Logger, flags: SimFlags): void {
  const ports = sim.ports();
  log.info(
    {
      terminals: sim.terminals.map((t, i) => ({ id: String(t.index), deviceId: t.deviceId, port: ports[i] })),
      control: sim.controlPort !== undefined ? `${flags.control?.host}:${sim.controlPort}` : undefined,
      dial: flags.dial ? `${flags.dial.host}:${flags.dial.port}` : undefined,
    },
    'simulated terminals ready',
  );
}
