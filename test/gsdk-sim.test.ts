// The mock device gateway from the command line (`termsync sim --protocol
// gsdk`) and its control API: terminals as a person at them would change them,
// faults, and the TLS the daemon dials with the CA the command writes.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { gsdkDriver } from '../src/drivers/gsdk/driver.js';

const ROOT = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'gsdk-sim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('termsync sim --protocol gsdk', () => {
  it('serves terminals behind a TLS gateway with the CA it writes, and a control API', async () => {
    const ca = join(dir, 'gw-ca.crt');
    const proc = spawn(process.execPath, [join(ROOT, 'bin/termsync.js'), 'sim', '--protocol', 'gsdk', '--terminals', '2', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--gsdk-ca-out', ca], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
    try {
      const ready = await new Promise<{ gateway: string; control: string; devices: { deviceID: number }[] }>((resolve, reject) => {
        const rl = createInterface({ input: proc.stdout });
        rl.on('line', (l) => {
          try {
            const j = JSON.parse(l);
            if (j.msg === 'mock device gateway ready') resolve(j);
          } catch {
            // not a log line
          }
        });
        proc.on('exit', () => reject(new Error(`exited: ${err}`)));
      });
      expect(ready.devices.map((d) => d.deviceID)).toEqual([1001, 1002]);
      const c = `http://${ready.control}`;
      const j = async (method: string, path: string, body?: unknown) => {
        const r = await fetch(c + path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
        const t = await r.text();
        return { status: r.status, body: t ? JSON.parse(t) : null };
      };
      expect((await j('POST', '/devices/1001/users', { id: '7', name: 'Ann', pin: '1234', cards: [{ data: '0a0b' }] })).status).toBe(201);
      expect((await j('POST', '/devices/1001/users', { id: '7', name: 'Again' })).status).toBe(409);
      const u = await j('GET', '/devices/1001/users/7');
      expect(u.body).toMatchObject({ id: '7', name: 'Ann', pinSet: true });
      expect(u.body.cards[0].data).toBe('00'.repeat(30) + '0a0b');
      expect((await j('PATCH', '/devices/1001/users/7', { name: 'Ann B' })).body.name).toBe('Ann B');
      expect((await j('DELETE', '/devices/1001/users/7')).status).toBe(204);
      expect((await j('GET', '/devices/1001/events')).body.map((e: { eventCode: number }) => e.eventCode)).toEqual([0x2000, 0x2200, 0x2400]);
      expect((await j('POST', '/faults', { type: 'nonsense' })).status).toBe(400);
      expect((await j('POST', '/faults', { type: 'drop-realtime', n: 3 })).body).toEqual({ type: 'drop-realtime', n: 3 });
      // the daemon's driver dials a terminal through it with the CA it wrote
      const [host, port] = ready.gateway.split(':');
      const d = gsdkDriver({ gateway: { host, port: Number(port) }, ca: readFileSync(ca), requestTimeoutMs: 5000 });
      const s = await d.dial({ terminalId: 'gsdk-1002', host, port: Number(port), key: Buffer.alloc(0) });
      expect(s.identity.deviceId).toBe(1002);
      expect((await j('GET', '/devices/1002')).body.connected).toBe(true);
      await s.close('done');
      d.close();
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  }, 120_000);
});
