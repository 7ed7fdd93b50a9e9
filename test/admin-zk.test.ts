// ZK terminals through the admin API: the real daemon with the ZK driver, the
// ZK simulator on loopback, a real SQLite file and startAdmin on port 0. A ZK
// terminal added with POST /api/terminals {protocol: 'zk', zkPassword} comes
// online and receives the server's users; the comm key is never returned or
// logged; an unknown protocol is refused naming the known ones.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { Daemon } from '../src/daemon.js';
import { zkDriver } from '../src/drivers/zk/driver.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { waitFor } from './helpers/wait.js';

/** a comm key distinctive enough to search the log for */
const ZK_PASSWORD = 86420135;

let dir: string;
let zk: ZkSimulator;
let daemon: Daemon;
let admin: AdminServer;
let base: string;
let logText = '';

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, text };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'termsync-admin-zk-'));
  // every log line of the daemon, the driver and the admin API, at debug level
  const sink = new Writable({ write(chunk, _enc, cb) { logText += chunk.toString(); cb(); } });
  const log = pino({ level: 'debug' }, sink);
  zk = await ZkSimulator.start({ terminals: 2, password: ZK_PASSWORD, timing: ZERO_ZK_TIMING });
  daemon = await Daemon.start({
    db: join(dir, 'termsync.db'),
    log,
    commKey: DEV_COMM_KEY,
    drivers: [zkDriver({ pollSec: 0.2, requestTimeoutMs: 5000, log })],
    syncMode: 'all',
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
  });
  admin = await startAdmin({ daemon, host: '127.0.0.1', port: 0, log: log.child({ component: 'admin' }) });
  base = `http://127.0.0.1:${admin.port}`;
}, 30_000);

afterAll(async () => {
  await admin?.close();
  await daemon?.stop(1000).catch(() => undefined);
  await zk?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('POST /api/terminals with protocol zk', () => {
  it('a ZK terminal added through the API comes online and receives the server\'s users; its comm key is never shown', async () => {
    daemon.putUser(userFromJson({ id: '501', name: 'Before Add', cards: [{ type: 1, data: '0001e240' }], accessGroups: [1] }));
    const add = await api('POST', '/api/terminals', { id: 'zkdoor', host: '127.0.0.1', port: zk.ports()[0], protocol: 'zk', zkPassword: ZK_PASSWORD });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ id: 'zkdoor', protocol: 'zk', address: `127.0.0.1:${zk.ports()[0]}`, direction: 'dial' });
    expect(add.body).not.toHaveProperty('zkPassword');
    await waitFor(() => daemon.terminals().find((t) => t.id === 'zkdoor')?.state === 'online', { timeoutMs: 15_000, message: 'the ZK terminal did not come online' });
    const device = zk.terminal(1)!;
    await waitFor(() => device.userById('501')?.name === 'Before Add', { timeoutMs: 20_000, message: 'the server\'s user did not reach the ZK terminal' });
    expect(device.userById('501')).toMatchObject({ name: 'Before Add', card: 123456 });
    // a user written after the terminal is online goes there too
    daemon.putUser(userFromJson({ id: '502', name: 'After Add' }));
    await waitFor(() => device.userById('502')?.name === 'After Add', { timeoutMs: 20_000, message: 'a later user did not reach the ZK terminal' });

    const list = await api('GET', '/api/terminals');
    expect(list.body.find((t: any) => t.id === 'zkdoor')).toMatchObject({ protocol: 'zk', state: 'online' });
    const one = await api('GET', '/api/terminals/zkdoor');
    expect(one.body.protocol).toBe('zk');
    for (const text of [add.text, list.text, one.text, logText]) expect(text).not.toContain(String(ZK_PASSWORD));
    expect(logText).toMatch(/terminal added through the admin API/);

    // an update that leaves the key out keeps it: still online, no redial with key 0
    const groups = await api('POST', '/api/terminals', { id: 'zkdoor', host: '127.0.0.1', port: zk.ports()[0], protocol: 'zk', accessGroups: [1] });
    expect(groups.status).toBe(200);
    daemon.putUser(userFromJson({ id: '503', name: 'After Update', accessGroups: [1] }));
    await waitFor(() => device.userById('503')?.name === 'After Update', { timeoutMs: 20_000, message: 'the updated ZK terminal lost its key' });
  }, 60_000);

  it('a wrong comm key: the terminal is recorded but never comes online, nothing is written to it', async () => {
    const add = await api('POST', '/api/terminals', { id: 'zkwrong', host: '127.0.0.1', port: zk.ports()[1], protocol: 'zk', zkPassword: 1 });
    expect(add.status).toBe(201);
    await new Promise((r) => setTimeout(r, 1000));
    expect(daemon.terminals().find((t) => t.id === 'zkwrong')?.state).not.toBe('online');
    expect(zk.terminal(2)!.userCount).toBe(0);
  }, 30_000);

  it('an unknown protocol is refused, naming the known ones; bad keys are refused', async () => {
    const bad = await api('POST', '/api/terminals', { id: 'odd', host: '127.0.0.1', port: 4000, protocol: 'osdp' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/protocol must be one of: termsync, zk/);
    expect((await api('POST', '/api/terminals', { id: 'odd', host: '127.0.0.1', protocol: 7 })).status).toBe(400);
    const big = await api('POST', '/api/terminals', { id: 'odd', host: '127.0.0.1', protocol: 'zk', zkPassword: 4294967296 });
    expect(big.status).toBe(400);
    expect(big.body.error).toMatch(/zkPassword/);
    expect((await api('POST', '/api/terminals', { id: 'odd', host: '127.0.0.1', protocol: 'zk', zkPassword: '123' })).status).toBe(400);
    const notZk = await api('POST', '/api/terminals', { id: 'odd', host: '127.0.0.1', port: 4000, zkPassword: 5 });
    expect(notZk.status).toBe(400);
    expect(notZk.body.error).toMatch(/zk/);
    expect(daemon.terminals().some((t) => t.id === 'odd')).toBe(false);
  });

  it('the port defaults to the protocol\'s: 4370 for zk, 51211 for termsync', async () => {
    const z = await api('POST', '/api/terminals', { id: 'zkdefault', host: '127.0.0.9', protocol: 'zk' });
    expect(z.status).toBe(201);
    expect(z.body).toMatchObject({ protocol: 'zk', address: '127.0.0.9:4370' });
    const t = await api('POST', '/api/terminals', { id: 'tsdefault', host: '127.0.0.9' });
    expect(t.status).toBe(201);
    expect(t.body).toMatchObject({ protocol: 'termsync', address: '127.0.0.9:51211' });
    expect((await api('DELETE', '/api/terminals/zkdefault')).status).toBe(204);
    expect((await api('DELETE', '/api/terminals/tsdefault')).status).toBe(204);
  });
});
