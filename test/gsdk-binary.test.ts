// `termsync run` as a user starts it (bin/termsync.js, a real process), with
// Suprema terminals behind the mock device gateway given by flag file:
// --terminal gsdk:..., --gsdk-gateway, --gsdk-ca-file. A user enrolled at one
// terminal reaches the other; SIGHUP adds a terminal from the edited flag file;
// SIGTERM stops the daemon (the gateway channel closed with it).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GsdkSimGateway } from '../src/sim/gsdk/gateway.js';
import { gatewayCerts } from './helpers/gsdk-site.js';
import { waitFor } from './helpers/wait.js';

const ROOT = join(import.meta.dirname, '..');
let dir: string;
let gw: GsdkSimGateway;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'termsync-gsdk-bin-'));
  const c = gatewayCerts();
  writeFileSync(join(dir, 'ca.crt'), c.ca);
  gw = await GsdkSimGateway.start({
    devices: [
      { deviceID: 3001, ip: '10.3.0.1' },
      { deviceID: 3002, ip: '10.3.0.2' },
      { deviceID: 3003, ip: '10.3.0.3' },
    ],
    cert: c.cert,
    key: c.key,
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('termsync run with Suprema terminals', () => {
  it('syncs through the device gateway, takes a terminal added by SIGHUP, and stops on SIGTERM', async () => {
    const flags = join(dir, 'termsync.flags');
    const common = [
      '--insecure-dev-key',
      `--db=${join(dir, 'termsync.db')}`,
      '--admin-listen=off',
      '--sync-mode=all',
      `--gsdk-gateway=127.0.0.1:${gw.port}`,
      `--gsdk-ca-file=${join(dir, 'ca.crt')}`,
      '--reconnect-min-ms=50',
      '--reconnect-max-ms=500',
      '--terminal=gsdk:3001@10.3.0.1',
      '--terminal=gsdk:3002',
    ];
    writeFileSync(flags, common.join('\n') + '\n');
    const proc = spawn(process.execPath, [join(ROOT, 'bin/termsync.js'), 'run', `--flagfile=${flags}`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-20_000)));
    proc.stdout.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-20_000)));
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    try {
      await waitFor(() => gw.connected(3001) && gw.connected(3002), { timeoutMs: 60_000, message: 'the daemon did not bring the terminals up' });
      gw.device(3001).enroll({ id: '9001', name: 'Through the binary', cards: [{ data: '00009001' }] });
      await waitFor(() => gw.device(3002).user('9001')?.name === 'Through the binary', { timeoutMs: 60_000, message: `the user did not reach 3002\n${err}` });
      // add 3003 to the flag file and reload
      writeFileSync(flags, [...common, '--terminal=gsdk:3003'].join('\n') + '\n');
      proc.kill('SIGHUP');
      await waitFor(() => gw.device(3003).user('9001') !== undefined, { timeoutMs: 60_000, message: `3003 did not get the user after SIGHUP\n${err}` });
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  }, 180_000);
});
