// `termsync sim --protocol gsdk`: a mock Suprema device gateway (gRPC over
// TLS) with N simulated terminals behind it, device IDs BASE+1..BASE+N, and
// its control API (control.ts). Without --tls-cert/--tls-key it makes a
// throwaway CA and certificate and writes the CA to --gsdk-ca-out for the
// daemon's --gsdk-ca-file. src/sim/cli.ts hands over when --protocol gsdk.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import pino from 'pino';
import { GSDK_GATEWAY_PORT } from '../../drivers/gsdk/constants.js';
import { makeGatewayCerts } from './certs.js';
import { startGsdkControl } from './control.js';
import { GsdkSimGateway } from './gateway.js';

interface GsdkSimFlags {
  terminals: number;
  listen: { host: string; port: number };
  control?: { host: string; port: number };
  deviceIdBase: number;
  userCapacity: number;
  tlsCert?: string;
  tlsKey?: string;
  gsdkCaOut?: string;
  gsdkChangedOnDevice?: boolean;
  logLevel: string;
}

/** Runs the mock gateway until SIGINT/SIGTERM. */
export async function runGsdkSim(cmd: Command, flags: GsdkSimFlags): Promise<void> {
  const log = pino({ level: flags.logLevel, base: { component: 'sim', protocol: 'gsdk' } });
  const explicit = (name: string) => cmd.getOptionValueSource(name) === 'cli' || cmd.getOptionValueSource(name) === 'env';
  let cert: Buffer;
  let key: Buffer;
  if (flags.tlsCert || flags.tlsKey) {
    if (!flags.tlsCert || !flags.tlsKey) cmd.error('termsync sim --protocol gsdk: give both --tls-cert and --tls-key, or neither (a throwaway CA is made)', { exitCode: 2 });
    cert = readFileSync(flags.tlsCert!);
    key = readFileSync(flags.tlsKey!);
  } else {
    if (!flags.gsdkCaOut) cmd.error('termsync sim --protocol gsdk: give --gsdk-ca-out PATH (the throwaway CA is written there for the daemon\'s --gsdk-ca-file), or --tls-cert and --tls-key', { exitCode: 2 });
    const c = makeGatewayCerts();
    writeFileSync(flags.gsdkCaOut!, c.ca);
    cert = c.cert;
    key = c.key;
  }
  const port = explicit('listen') ? flags.listen.port : GSDK_GATEWAY_PORT;
  const base = explicit('deviceIdBase') ? flags.deviceIdBase : 1000;
  let gw: GsdkSimGateway;
  let control: Awaited<ReturnType<typeof startGsdkControl>> | undefined;
  try {
    gw = await GsdkSimGateway.start({
      devices: Array.from({ length: flags.terminals }, (_, i) => ({ deviceID: base + i + 1, ip: `127.0.0.${(i % 250) + 2}`, port: 51211, capacity: explicit('userCapacity') ? flags.userCapacity : undefined })),
      cert,
      key,
      host: flags.listen.host,
      port,
      changedOnDevice: flags.gsdkChangedOnDevice,
    });
    if (flags.control) control = await startGsdkControl(gw, flags.control.host, flags.control.port, log);
  } catch (e) {
    cmd.error(`termsync sim: ${(e as Error).message}`, { exitCode: 1 });
  }
  log.info(
    {
      gateway: `${gw!.host}:${gw!.port}`,
      devices: gw!.devices.map((d) => ({ deviceID: d.deviceID, ip: d.ip, port: d.port })),
      control: control ? `${flags.control!.host}:${control.port}` : undefined,
      caFile: flags.gsdkCaOut,
    },
    'mock device gateway ready',
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void Promise.all([control?.close(), gw.close()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
