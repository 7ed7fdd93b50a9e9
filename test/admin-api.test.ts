// The admin HTTP API against a real site: the simulator's terminals on loopback,
// the real daemon dialling them, a real SQLite file, and startAdmin on port 0.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { Daemon } from '../src/daemon.js';
import { hashPin, userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Store } from '../src/store/store.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'admin-test-token-5f1c0b7e';
const silent = pino({ level: 'silent' });

let site: Site;
let admin: AdminServer;
let base: string;

interface Res {
  status: number;
  body: any;
  headers: Headers;
}

async function api(method: string, path: string, opts: { body?: unknown; raw?: string | Buffer; token?: string | null; headers?: Record<string, string> } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | Buffer | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  // the API wants every change declared as JSON, body or not (see test/admin-security.test.ts)
  if (body !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH') headers['content-type'] ??= 'application/json';
  const r = await fetch(base + path, { method, headers, body, redirect: 'manual' });
  const text = await r.text();
  let parsed: unknown = text;
  if ((r.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
  return { status: r.status, body: parsed, headers: r.headers };
}

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Every terminal online. Waited for before asserting it: with a 1 s heartbeat a
 * busy machine (parallel test files, a browser starting) can make the daemon
 * drop a session for a moment and redial it.
 */
async function allOnline(): Promise<void> {
  await waitFor(() => site.daemon.terminals().every((t) => t.state === 'online'), { message: 'terminals not all online' });
}

beforeAll(async () => {
  site = await startSite({ terminals: 3, daemon: { heartbeatSec: 1 } });
  admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: silent });
  base = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin?.close();
  await site?.close();
});

describe('health and authentication', () => {
  it('GET /healthz answers without a token', async () => {
    await allOnline();
    const r = await api('GET', '/healthz', { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ ok: true, db: 'ok', terminalsOnline: 3 });
  });

  it('refuses API calls without the token, or with a wrong one, with 401', async () => {
    for (const path of ['/api/terminals', '/api/users', '/metrics', '/api/settings']) {
      const r = await api('GET', path, { token: null });
      expect(r.status, path).toBe(401);
      expect(r.body.error).toMatch(/token/);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect((await api('GET', '/api/terminals', { token: 'wrong' })).status).toBe(401);
    expect((await api('GET', '/api/terminals', { token: TOKEN + 'x' })).status).toBe(401);
    expect((await api('PUT', '/api/settings', { token: null, body: { syncMode: 'off' } })).status).toBe(401);
    expect((await api('GET', '/api/settings')).body).toEqual({ syncMode: 'all' });
  });

  it('the page trades ?token= for an HttpOnly SameSite=Strict cookie that only allows reads', async () => {
    expect((await api('GET', '/', { token: null })).status).toBe(401);
    expect((await api('GET', '/?token=wrong', { token: null })).status).toBe(401);
    const r = await api('GET', `/?token=${TOKEN}`, { token: null });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/');
    const setCookie = r.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0];
    const page = await api('GET', '/', { token: null, headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
    expect(page.body).toContain('EventSource');
    expect((await api('GET', '/api/terminals', { token: null, headers: { cookie } })).status).toBe(200);
    // a cookie never authorises a change: only the Authorization header does
    expect((await api('PUT', '/api/settings', { token: null, headers: { cookie }, body: { syncMode: 'off' } })).status).toBe(401);
    expect((await api('GET', '/api/terminals', { token: null, headers: { cookie: cookie + 'x' } })).status).toBe(401);
  });
});

describe('routing and request errors', () => {
  it('404 for an unknown route, 405 with Allow for a wrong method', async () => {
    const r = await api('GET', '/api/nope');
    expect(r.status).toBe(404);
    expect(r.body.error).toMatch(/no such resource/);
    const m = await api('POST', '/api/users');
    expect(m.status).toBe(405);
    expect(m.headers.get('allow')).toBe('GET, HEAD');
    expect((await api('PATCH', '/api/terminals/t1')).status).toBe(405);
    expect((await api('GET', '/api/backup')).status).toBe(405);
  });

  it('400 for malformed JSON, naming the problem', async () => {
    const r = await api('PUT', '/api/users/x1', { raw: '{"name": "A",' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/malformed JSON/);
    expect((await api('PUT', '/api/settings', { raw: '' })).body.error).toMatch(/JSON body is required/);
    expect((await api('PUT', '/api/settings', { raw: '[1]' })).body.error).toMatch(/must be a JSON object/);
  });

  it('413 for a body over 1 MiB; the connection stays usable', async () => {
    const big = JSON.stringify({ id: 'big', name: 'x'.repeat(1024 * 1024 + 10) });
    const r = await api('PUT', '/api/users/big', { raw: big });
    expect(r.status).toBe(413);
    expect(r.body.error).toMatch(/over the limit/);
    expect((await api('GET', '/api/users/big')).status).toBe(404);
    expect((await api('GET', '/healthz')).status).toBe(200);
  });

  it('400 for bad query parameters', async () => {
    expect((await api('GET', '/api/users?limit=0')).status).toBe(400);
    expect((await api('GET', '/api/events?after=-1')).status).toBe(400);
    expect((await api('GET', '/api/events?order=sideways')).status).toBe(400);
  });
});

describe('terminals', () => {
  it('GET /api/terminals lists the running terminals with their state', async () => {
    await allOnline();
    const r = await api('GET', '/api/terminals');
    expect(r.status).toBe(200);
    expect(r.body.map((t: any) => [t.id, t.state])).toEqual([
      ['t1', 'online'],
      ['t2', 'online'],
      ['t3', 'online'],
    ]);
    const t1 = r.body[0];
    expect(t1.address).toBe(`127.0.0.1:${site.sim.ports()[0]}`);
    expect(t1.deviceId).toBe(site.sim.terminals[0].deviceId);
    expect(typeof t1.lastEventId).toBe('number');
    expect(t1.pushesOwed).toBe(0);
    expect((await api('GET', '/api/terminals/t2')).body.id).toBe('t2');
    expect((await api('GET', '/api/terminals/zz')).status).toBe(404);
  });

  it('adds, regroups, approves, refuses a resync of, and removes a terminal', async () => {
    const port = await closedPort();
    const bad = await api('POST', '/api/terminals', { body: { id: 'gate 4', host: '127.0.0.1', port } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/id must be/);
    expect((await api('POST', '/api/terminals', { body: { id: 'gate4', host: '127.0.0.1', port: 70000 } })).body.error).toMatch(/port/);
    expect((await api('POST', '/api/terminals', { body: { id: 'gate4', host: '127.0.0.1', port, accessGroups: ['a'] } })).status).toBe(400);

    const add = await api('POST', '/api/terminals', { body: { id: 'gate4', host: '127.0.0.1', port, accessGroups: [3, 1] } });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ id: 'gate4', address: `127.0.0.1:${port}`, state: 'offline', accessGroups: [1, 3] });
    expect((await api('POST', '/api/terminals', { body: { id: 'gate4', host: '127.0.0.1', port } })).status).toBe(200);

    const g = await api('PUT', '/api/terminals/gate4/groups', { body: { accessGroups: [9] } });
    expect(g.status).toBe(200);
    expect(g.body.accessGroups).toEqual([9]);
    expect((await api('PUT', '/api/terminals/gate4/groups', { body: { accessGroups: 5 } })).status).toBe(400);
    expect((await api('PUT', '/api/terminals/nosuch/groups', { body: { accessGroups: [1] } })).status).toBe(404);

    const rs = await api('POST', '/api/terminals/gate4/resync');
    expect(rs.status).toBe(409);
    expect(rs.body.error).toMatch(/not online/);
    expect((await api('POST', '/api/terminals/nosuch/resync')).status).toBe(404);
    expect((await api('POST', '/api/terminals/nosuch/approve')).status).toBe(404);
    expect((await api('POST', '/api/terminals/gate4/approve')).body.approved).toBe(true);

    expect((await api('DELETE', '/api/terminals/gate4')).status).toBe(204);
    expect((await api('GET', '/api/terminals/gate4')).status).toBe(404);
    expect((await api('DELETE', '/api/terminals/gate4')).status).toBe(404);
  });

  it('POST /api/terminals/:id/resync compares a live terminal with the server', async () => {
    await allOnline();
    const before = site.daemon.engine.stats.reconciles;
    const r = await api('POST', '/api/terminals/t2/resync');
    expect(r.status).toBe(202);
    await waitFor(() => site.daemon.engine.stats.reconciles > before, { message: 'the resync did not run' });
    await waitFor(async () => (await api('GET', '/api/events?type=RECONCILE&terminal=t2')).body.length > 0, { message: 'no RECONCILE event' });
    // the users it held then are shown (and kept), and a later resync shows the new figure at once
    const held = (await api('GET', '/api/terminals/t2')).body.usersHeld.count as number;
    expect(held).toBe(site.sim.terminals[1].userCount);
    await site.sim.terminals[1].enroll(userFromJson({ id: 'held-1', name: 'One More' }));
    await waitFor(() => site.daemon.store.getUser('held-1') !== null, { message: 'the enrollment did not reach the server' });
    const again = site.daemon.engine.stats.reconciles;
    expect((await api('POST', '/api/terminals/t2/resync')).status).toBe(202);
    await waitFor(() => site.daemon.engine.stats.reconciles > again, { message: 'the second resync did not run' });
    await waitFor(async () => (await api('GET', '/api/terminals/t2')).body.usersHeld.count === held + 1, { timeoutMs: 3000, message: 'the users-held figure did not follow the resync' });
  });
});

describe('users', () => {
  it('PUT /api/users/:id stores the user, pushes it to every terminal, and the log says so per terminal', async () => {
    const r = await api('PUT', '/api/users/5001', {
      body: { name: 'Ada Lovelace', pin: '2468', cards: [{ type: 1, data: 'c0ffee01' }], accessGroups: [2] },
    });
    expect(r.status).toBe(201);
    expect(r.body.created).toBe(true);
    expect(r.body.pushedTo.sort()).toEqual(['t1', 't2', 't3']);
    expect(r.body.user).toMatchObject({ id: '5001', name: 'Ada Lovelace', pinSet: true, cards: [{ type: 1, data: 'c0ffee01' }], accessGroups: [2] });
    expect(JSON.stringify(r.body)).not.toContain('2468');

    await waitFor(() => site.sim.terminals.every((t) => t.getUser('5001')?.name === 'Ada Lovelace'), { message: 'the user did not reach every terminal' });
    expect(site.sim.terminals[2].getUser('5001')!.pinHash.equals(hashPin('2468'))).toBe(true);

    let events: any[] = [];
    await waitFor(
      async () => {
        events = (await api('GET', '/api/events?type=USER_UPDATE_SUCCESS_SERVER&user=5001')).body;
        return new Set(events.map((e) => e.terminal)).size === 3;
      },
      { message: 'USER_UPDATE_SUCCESS_SERVER not recorded for every terminal' },
    );
    expect([...new Set(events.map((e) => e.terminal))].sort()).toEqual(['t1', 't2', 't3']);
    for (const e of events) {
      expect(e).toMatchObject({ type: 'USER_UPDATE_SUCCESS_SERVER', label: 'User update succeeded (Server)', user: '5001' });
      expect(typeof e.id).toBe('number');
      expect(typeof e.time).toBe('number');
    }

    const again = await api('PUT', '/api/users/5001', { body: { name: 'Ada Lovelace', pin: '2468', cards: [{ type: 1, data: 'c0ffee01' }], accessGroups: [2] } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, changed: false, pushedTo: [] });
  });

  it('GET /api/users/:id and the list; 404 for an absent user', async () => {
    await api('PUT', '/api/users/5002', { body: { name: 'Grace Hopper' } });
    const one = await api('GET', '/api/users/5002');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: '5002', name: 'Grace Hopper', pinSet: false, cards: [] });
    const missing = await api('GET', '/api/users/no-such-user');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatch(/no user/);
    const page = await api('GET', '/api/users?limit=1');
    expect(page.body).toHaveLength(1);
    const next = await api('GET', `/api/users?after=${encodeURIComponent(page.body[0].id)}&limit=1000`);
    expect(next.body.map((u: any) => u.id)).not.toContain(page.body[0].id);
    expect([page.body[0].id, ...next.body.map((u: any) => u.id)]).toEqual(expect.arrayContaining(['5001', '5002']));
  });

  it('?merge=1 keeps fields the body leaves out; without it the body replaces the user', async () => {
    await api('PUT', '/api/users/5003', { body: { name: 'Alan', cards: [{ type: 1, data: 'a1a1' }], accessGroups: [4], pin: '1357' } });
    const merged = await api('PUT', '/api/users/5003?merge=1', { body: { name: 'Alan Turing' } });
    expect(merged.status).toBe(200);
    expect(merged.body.user).toMatchObject({ name: 'Alan Turing', cards: [{ type: 1, data: 'a1a1' }], accessGroups: [4], pinSet: true });
    await waitFor(() => site.sim.terminals.every((t) => t.getUser('5003')?.name === 'Alan Turing'), { message: 'merge not pushed' });

    // a GET-edit-PUT round trip keeps the PIN it cannot see (pinSet: true)
    const got = (await api('GET', '/api/users/5003')).body;
    const round = await api('PUT', '/api/users/5003', { body: { ...got, name: 'A. M. Turing' } });
    expect(round.body.user).toMatchObject({ name: 'A. M. Turing', pinSet: true, cards: [{ type: 1, data: 'a1a1' }] });
    expect(site.daemon.store.getUser('5003')!.pinHash.equals(hashPin('1357'))).toBe(true);

    const replaced = await api('PUT', '/api/users/5003', { body: { name: 'Replaced' } });
    expect(replaced.body.user).toMatchObject({ name: 'Replaced', cards: [], accessGroups: [], pinSet: false });
    await waitFor(() => site.sim.terminals.every((t) => t.getUser('5003')?.name === 'Replaced' && t.getUser('5003')!.cards.length === 0), {
      message: 'replacement not pushed',
    });
  });

  it('400 for a user the JSON form refuses, and for a body id that differs from the path', async () => {
    const r = await api('PUT', '/api/users/5004', { body: { name: 'X', pin: '12' } });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/pin must be 4 to 16 digits/);
    expect((await api('PUT', '/api/users/5004', { body: { cards: [{ type: 1, data: 'zz' }] } })).body.error).toMatch(/hex/);
    const mismatch = await api('PUT', '/api/users/5004', { body: { id: '6000', name: 'X' } });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error).toMatch(/differs from the path/);
    expect((await api('GET', '/api/users/5004')).status).toBe(404);
  });

  it('user IDs with reserved characters travel percent-encoded', async () => {
    const id = 'ext/7 ü';
    const r = await api('PUT', `/api/users/${encodeURIComponent(id)}`, { body: { name: 'Slashed' } });
    expect(r.status).toBe(201);
    expect((await api('GET', `/api/users/${encodeURIComponent(id)}`)).body.id).toBe(id);
  });

  it('DELETE /api/users/:id removes the user from the server and the terminals', async () => {
    await api('PUT', '/api/users/5005', { body: { name: 'Temp' } });
    await waitFor(() => site.sim.terminals.every((t) => t.getUser('5005')), { message: 'user not pushed' });
    expect((await api('DELETE', '/api/users/5005')).status).toBe(204);
    expect((await api('GET', '/api/users/5005')).status).toBe(404);
    await waitFor(() => site.sim.terminals.every((t) => !t.getUser('5005')), { message: 'delete not pushed' });
    expect((await api('DELETE', '/api/users/5005')).status).toBe(404);
  });
});

describe('events, settings, push failures, backup', () => {
  it('GET /api/events pages with labels; type and order filters work', async () => {
    const online = await api('GET', '/api/events?type=TERMINAL_ONLINE');
    expect(online.body.map((e: any) => e.terminal).sort()).toEqual(expect.arrayContaining(['t1', 't2', 't3']));
    expect(online.body.every((e: any) => e.label === 'Terminal online')).toBe(true);
    const first = await api('GET', '/api/events?after=0&limit=2');
    expect(first.body).toHaveLength(2);
    expect(first.body[0].id).toBeLessThan(first.body[1].id);
    const next = await api('GET', `/api/events?after=${first.body[1].id}&limit=1`);
    expect(next.body[0].id).toBeGreaterThan(first.body[1].id);
    const newest = await api('GET', '/api/events?order=desc&limit=3');
    expect(newest.body[0].id).toBeGreaterThan(newest.body[2].id);
    for (const e of newest.body) expect(Object.keys(e).sort()).toEqual(['detail', 'id', 'label', 'terminal', 'time', 'type', 'user']);
  });

  it('a device enrollment shows as "User update succeeded (Device)"', async () => {
    await site.sim.terminals[1].enroll(
      (await import('../src/model/user.js')).userFromJson({ id: '7001', name: 'Enrolled at t2', cards: [{ type: 1, data: '7001aa' }] }),
    );
    await waitFor(async () => (await api('GET', '/api/events?type=USER_UPDATE_SUCCESS_DEVICE&user=7001')).body.length === 1, { message: 'no device event' });
    const [e] = (await api('GET', '/api/events?type=USER_UPDATE_SUCCESS_DEVICE&user=7001')).body;
    expect(e).toMatchObject({ label: 'User update succeeded (Device)', terminal: 't2', user: '7001' });
    expect(e.detail).toMatchObject({ created: true });
  });

  it('GET and PUT /api/settings; 400 for a bad mode', async () => {
    expect((await api('GET', '/api/settings')).body).toEqual({ syncMode: 'all' });
    const bad = await api('PUT', '/api/settings', { body: { syncMode: 'everything' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/off, server, all, specific/);
    expect((await api('PUT', '/api/settings', { body: {} })).status).toBe(400);
    expect((await api('PUT', '/api/settings', { body: { syncMode: 'server' } })).body).toEqual({ syncMode: 'server' });
    expect(site.daemon.store.getSyncMode()).toBe('server');
    expect((await api('PUT', '/api/settings', { body: { syncMode: 'all' } })).body).toEqual({ syncMode: 'all' });
  });

  it('GET /api/push-failures lists users a terminal refused', async () => {
    // 7002 holds card dd01 on every terminal; a server user with the same card is refused everywhere
    await api('PUT', '/api/users/7002', { body: { name: 'Card holder', cards: [{ type: 1, data: 'dd01' }] } });
    await waitFor(() => site.sim.terminals.every((t) => t.getUser('7002')), { message: 'holder not pushed' });
    await api('PUT', '/api/users/7003', { body: { name: 'Duplicate card', cards: [{ type: 1, data: 'dd01' }] } });
    let all: any[] = [];
    await waitFor(
      async () => {
        all = (await api('GET', '/api/push-failures')).body.filter((f: any) => f.userId === '7003');
        return all.length === 3;
      },
      { message: 'push failures not recorded' },
    );
    expect(all[0].reason).toMatch(/DUPLICATE_CARD/);
    const t1 = await api('GET', '/api/push-failures?terminal=t1');
    expect(t1.body.filter((f: any) => f.userId === '7003')).toEqual([expect.objectContaining({ terminalId: 't1', userId: '7003' })]);
  });

  it('POST /api/backup writes a consistent copy to a new file in the backup directory, owner-only, never replacing one', async () => {
    const r = await api('POST', '/api/backup', { body: { name: 'copy.db' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const dest = join(admin.backupDir, 'copy.db');
    expect(admin.backupDir).toBe(join(dirname(site.db), 'backups'));
    expect(r.body).toMatchObject({ name: 'copy.db', path: dest, remainingPages: 0 });
    expect(r.body.totalPages).toBeGreaterThan(0);
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    expect(statSync(admin.backupDir).mode & 0o777).toBe(0o700);
    const copy = Store.open(dest, { readonly: true });
    try {
      expect(copy.getUser('5001')?.name).toBe('Ada Lovelace');
    } finally {
      copy.close();
    }
    // an existing file is never overwritten, whoever made it
    const before = readFileSync(dest);
    const again = await api('POST', '/api/backup', { body: { name: 'copy.db' } });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatch(/already exists/);
    expect(readFileSync(dest).equals(before)).toBe(true);
    writeFileSync(join(admin.backupDir, 'mine.txt'), 'keep me');
    expect((await api('POST', '/api/backup', { body: { name: 'mine.txt' } })).status).toBe(409);
    expect(readFileSync(join(admin.backupDir, 'mine.txt'), 'utf8')).toBe('keep me');
    // names only: no paths, no "..", no hidden files, no absolute paths
    for (const name of ['../x.db', '..', 'a/b.db', '/tmp/x.db', '.hidden', 'a\\b', '', 'x'.repeat(129), site.db]) {
      const bad = await api('POST', '/api/backup', { body: { name } });
      expect(bad.status, name).toBe(400);
    }
    const oldStyle = await api('POST', '/api/backup', { body: { path: join(tmpdir(), 'x.db') } });
    expect(oldStyle.status).toBe(400);
    expect(oldStyle.body.error).toMatch(/file name as "name", not a path/);
    expect((await api('POST', '/api/backup', { body: {} })).status).toBe(400);
    // nothing but the backup (and the -wal/-shm its reader above left) and the file we put there: no partial files
    expect(readdirSync(admin.backupDir).filter((f) => !/^copy\.db-(wal|shm)$/.test(f)).sort()).toEqual(['copy.db', 'mine.txt']);
  });

  it('GET /api/status sums up the site for the page', async () => {
    await allOnline();
    const r = await api('GET', '/api/status');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ syncMode: 'all', terminals: { online: 3, offline: 0, pending: 0 } });
    expect(r.body.queue.waiting).toEqual({ pull: expect.any(Number), push: expect.any(Number), catchup: expect.any(Number) });
    expect(r.body.pushFailures).toBeGreaterThanOrEqual(3);
    expect(r.body.users).toBeGreaterThan(0);
  });
});

describe('a database that cannot be read', () => {
  it('/healthz answers 503 and API reads answer 503 with a message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-admin-db-'));
    const daemon = await Daemon.start({ db: join(dir, 'db.sqlite'), log: silent, commKey: DEV_COMM_KEY, syncMode: 'all', heartbeatSec: 1 });
    const a = await startAdmin({ daemon, host: '127.0.0.1', port: 0, token: null, log: silent });
    try {
      const url = `http://127.0.0.1:${a.port}`;
      expect((await fetch(url + '/healthz')).status).toBe(200);
      daemon.store.close();
      const h = await fetch(url + '/healthz');
      expect(h.status).toBe(503);
      expect(await h.json()).toEqual({ ok: false, db: 'failing', terminalsOnline: 0 });
      const t = await fetch(url + '/api/terminals');
      expect(t.status).toBe(503);
      expect(((await t.json()) as { error: string }).error).toMatch(/database/);
      // a change whose body was read before the database failed still gets its answer (it used to hang)
      const put = await fetch(url + '/api/users/x', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}', signal: AbortSignal.timeout(10_000) });
      expect(put.status).toBe(503);
      const mode = await fetch(url + '/api/settings', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"syncMode":"off"}', signal: AbortSignal.timeout(10_000) });
      expect(mode.status).toBe(503);
    } finally {
      await a.close();
      await daemon.stop(0);
      rmSync(dir, { recursive: true, force: true });
    }
    expect(existsSync(dir)).toBe(false);
  });
});
