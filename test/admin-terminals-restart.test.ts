// Terminals added through the admin API outlive a restart: the daemon records
// how to dial them (address, protocol, a ZK terminal's comm key) and dials them
// again when it starts, with no flag file naming them. A terminal removed
// through the API stays removed. Real daemon, the termsync and ZK simulators on
// loopback, one SQLite file across the restarts.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { Daemon } from '../src/daemon.js';
import { zkDriver } from '../src/drivers/zk/driver.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { waitFor } from './helpers/wait.js';

const ZK_PASSWORD = 4242;
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(db: string, logText?: { text: string }): Promise<{ daemon: Daemon; admin: AdminServer; api: (m: string, p: string, b?: unknown) => Promise<{ status: number; body: any }> }> {
  const sink = new Writable({ write(chunk, _enc, cb) { if (logText) logText.text += chunk.toString(); cb(); } });
  const log = pino({ level: 'info' }, sink);
  const daemon = await Daemon.start({
    db,
    log,
    commKey: DEV_COMM_KEY,
    drivers: [zkDriver({ pollSec: 0.2, requestTimeoutMs: 5000, log })],
    syncMode: 'all',
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
  });
  const admin = await startAdmin({ daemon, host: '127.0.0.1', port: 0, log });
  const base = `http://127.0.0.1:${admin.port}`;
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  return { daemon, admin, api };
}

const online = (d: Daemon, id: string) => d.terminals().find((t) => t.id === id)?.state === 'online';

describe('terminals added through the admin API', () => {
  it('are dialled again after a restart, a ZK one with its comm key; one removed through the API is not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-api-restart-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanup.push(() => sim.close());
    const zk = await ZkSimulator.start({ terminals: 1, password: ZK_PASSWORD, timing: ZERO_ZK_TIMING });
    cleanup.push(() => zk.close());
    const db = join(dir, 'termsync.db');

    const first = await start(db);
    expect((await first.api('POST', '/api/terminals', { id: 'door1', host: '127.0.0.1', port: sim.ports()[0] })).status).toBe(201);
    expect((await first.api('POST', '/api/terminals', { id: 'door2', host: '127.0.0.1', port: sim.ports()[1] })).status).toBe(201);
    expect((await first.api('POST', '/api/terminals', { id: 'zkgate', host: '127.0.0.1', port: zk.ports()[0], protocol: 'zk', zkPassword: ZK_PASSWORD })).status).toBe(201);
    await waitFor(() => ['door1', 'door2', 'zkgate'].every((id) => online(first.daemon, id)), { timeoutMs: 15_000, message: 'the added terminals did not come online' });
    expect((await first.api('DELETE', '/api/terminals/door2')).status).toBe(204);
    await first.admin.close();
    await first.daemon.stop(1000);

    // no flag file names any terminal: the API-added ones come back from the database
    const second = await start(db);
    cleanup.push(async () => {
      await second.admin.close();
      await second.daemon.stop(1000).catch(() => undefined);
    });
    await waitFor(() => online(second.daemon, 'door1') && online(second.daemon, 'zkgate'), { timeoutMs: 15_000, message: 'the API-added terminals were not dialled after the restart' });
    expect(second.daemon.terminals().map((t) => t.id).sort()).toEqual(['door1', 'zkgate']);
    expect(second.daemon.manager.target('door2')).toBeUndefined();
    // and they sync: a user written after the restart reaches both
    second.daemon.putUser(userFromJson({ id: '77', name: 'After Restart' }));
    await waitFor(() => sim.terminals[0].getUser('77')?.name === 'After Restart' && zk.terminal(1)!.userById('77')?.name === 'After Restart', {
      timeoutMs: 20_000,
      message: 'a user written after the restart did not reach the re-dialled terminals',
    });
    expect(sim.terminals[1].getUser('77')).toBeUndefined();
  }, 60_000);

  it('terminals recorded by an earlier version and not in the flag file are named in the log, not dialled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-api-restart-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, 'termsync.db');
    copyFileSync(new URL('../fixtures/db/schema-v6.db', import.meta.url), db);
    const log = { text: '' };
    const d = await start(db, log);
    cleanup.push(async () => {
      await d.admin.close();
      await d.daemon.stop(1000).catch(() => undefined);
    });
    expect(d.daemon.manager.targets()).toEqual([]);
    expect(log.text).toContain('terminals recorded by an earlier version');
    for (const id of ['t1', 't2', 'zk9']) expect(log.text).toContain(`"${id}"`);
  });
});
