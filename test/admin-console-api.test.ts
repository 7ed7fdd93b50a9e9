// The admin API routes the console uses (src/admin/console-routes.ts) against a
// real site: simulator terminals, the daemon, SQLite, startAdmin on loopback.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'console-api-token-19fe';
let site: Site;
let admin: AdminServer;
let base: string;

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (method !== 'GET' && method !== 'DELETE') headers['content-type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let parsed: unknown = text;
  if ((r.headers.get('content-type') ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: r.status, body: parsed, headers: r.headers };
}

const stateOf = async (user: string) => Object.fromEntries(((await api('GET', `/api/users/${user}/sync`)).body.terminals as any[]).map((t) => [t.terminal, t]));

beforeAll(async () => {
  site = await startSite({ terminals: 3, daemon: { heartbeatSec: 1, listen: [{ host: '127.0.0.1', port: 0 }] }, sim: { control: 0 } });
  admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: pino({ level: 'silent' }) });
  base = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin?.close();
  await site?.close();
});

describe('console files', () => {
  it('are served without a token, under a strict CSP, and only under the admin address\'s names', async () => {
    for (const [path, type] of [['/console/', /text\/html/], ['/console/console.js', /javascript/], ['/console/console.css', /text\/css/]] as const) {
      const r = await api('GET', path, undefined, null);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type')).toMatch(type);
      expect(r.headers.get('content-security-policy')).toBe(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      );
    }
    expect((await api('GET', '/console/other.js', undefined, null)).status).toBe(404);
    expect((await api('GET', '/console/..%2Fserver.ts', undefined, null)).status).toBe(404);
    const html = (await api('GET', '/console/', undefined, null)).body as string;
    // nothing from elsewhere, no inline script or style
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script>|style=/);
    expect((await api('GET', '/api/user-search', undefined, null)).status).toBe(401);
  });
});

describe('user search', () => {
  it('by name and by ID, paged with next', async () => {
    for (let i = 0; i < 7; i++) expect((await api('PUT', `/api/users/s${i}`, { name: `Searchable ${i}` })).status).toBe(201);
    const p1 = await api('GET', '/api/user-search?q=searchable&by=name&limit=5');
    expect(p1.status).toBe(200);
    expect(p1.body.users.map((u: any) => u.id)).toEqual(['s0', 's1', 's2', 's3', 's4']);
    expect(p1.body.users[0]).toEqual({ id: 's0', name: 'Searchable 0', disabled: false, cards: 0, fingers: 0, faces: 0, pinSet: false });
    const p2 = await api('GET', `/api/user-search?q=searchable&by=name&limit=5&after=${encodeURIComponent(p1.body.next)}`);
    expect(p2.body).toEqual({ users: [expect.objectContaining({ id: 's5' }), expect.objectContaining({ id: 's6' })], next: null });
    expect((await api('GET', '/api/user-search?q=s&by=id&limit=3')).body.users.map((u: any) => u.id)).toEqual(['s0', 's1', 's2']);
    expect((await api('GET', '/api/user-search?by=email')).status).toBe(400);
    expect((await api('GET', '/api/user-search?limit=100000')).status).toBe(400);
  });
});

describe('a user\'s sync state per terminal', () => {
  it('current everywhere once pushed; 404 for no such user', async () => {
    expect((await api('PUT', '/api/users/c1', { name: 'Current', accessGroups: [1] })).status).toBe(201);
    await site.waitConverged({ users: ['c1'] });
    await waitFor(async () => Object.values(await stateOf('c1')).every((t: any) => t.state === 'current'), { message: 'not current everywhere' });
    const s = (await api('GET', '/api/users/c1/sync')).body;
    expect(s.syncMode).toBe('all');
    expect(s.terminals.map((t: any) => t.terminal)).toEqual(['t1', 't2', 't3']);
    expect((await api('GET', '/api/users/nobody/sync')).status).toBe(404);
  });

  it('refused with the reason and the user holding the card; retry after the fix clears it', async () => {
    await api('PUT', '/api/users/holder', { name: 'Holder', cards: [{ type: 1, data: 'ee01' }] });
    await site.waitConverged({ users: ['holder'] });
    await api('PUT', '/api/users/dup', { name: 'Dup', cards: [{ type: 1, data: 'ee01' }] });
    await waitFor(async () => Object.values(await stateOf('dup')).every((t: any) => t.state === 'refused'), { message: 'not refused' });
    const t1 = (await stateOf('dup')).t1;
    expect(t1).toMatchObject({ state: 'refused', heldBy: ['holder'], terminalState: 'online' });
    expect(t1.reason).toMatch(/DUPLICATE_CARD/);
    expect(t1.since).toBeGreaterThan(0);
    // retrying as is: refused again
    const again = await api('POST', '/api/push-failures/retry', { terminalId: 't1', userId: 'dup' });
    expect(again.body).toEqual({ terminalId: 't1', retried: 1, cleared: 1 });
    await waitFor(async () => (await stateOf('dup')).t1.state === 'refused', { message: 'not refused again' });
    // the holder gives the card up on the server; a retry of each terminal now succeeds
    await api('PUT', '/api/users/holder', { name: 'Holder', cards: [] });
    await site.waitConverged({ users: ['holder'] });
    for (const t of ['t1', 't2', 't3']) expect((await api('POST', '/api/push-failures/retry', { terminalId: t })).status).toBe(200);
    await waitFor(async () => Object.values(await stateOf('dup')).every((t: any) => t.state === 'current'), { message: 'retry did not fix it' });
    expect((await api('POST', '/api/push-failures/retry', { terminalId: 'nowhere' })).status).toBe(404);
    expect((await api('POST', '/api/push-failures/retry', {})).status).toBe(400);
  });

  it('out of scope in "specific" mode (and why); owed while a terminal is offline', async () => {
    await api('PUT', '/api/terminals/t1/groups', { accessGroups: [1] });
    await api('PUT', '/api/terminals/t2/groups', { accessGroups: [1] });
    await api('PUT', '/api/terminals/t3/groups', { accessGroups: [7] });
    await api('PUT', '/api/settings', { syncMode: 'specific' });
    try {
      const s = await stateOf('c1');
      expect(s.t3).toMatchObject({ state: 'out-of-scope' });
      expect(s.t3.reason).toMatch(/specific.*\[7\].*\[1\]/);
      // t2 goes away; a change to c1 is owed to it
      const control = `http://127.0.0.1:${site.sim.controlPort}/terminals/2/faults`;
      await fetch(control, { method: 'POST', body: JSON.stringify({ type: 'refuse', ms: 4000 }) });
      await fetch(control, { method: 'POST', body: JSON.stringify({ type: 'drop' }) });
      await waitFor(() => site.daemon.terminals().find((t) => t.id === 't2')?.state === 'offline', { message: 't2 did not go offline' });
      await api('PUT', '/api/users/c1', { name: 'Current, changed', accessGroups: [1] });
      const owed = (await stateOf('c1')).t2;
      expect(owed).toMatchObject({ state: 'offline', terminalState: 'offline' });
      expect(owed.since).toBeGreaterThan(0);
      await waitFor(async () => (await stateOf('c1')).t2.state === 'current', { message: 't2 did not catch up', timeoutMs: 15_000 });
    } finally {
      await api('PUT', '/api/settings', { syncMode: 'all' });
    }
  }, 30_000);
});

describe('pending terminals', () => {
  it('reject removes a pending terminal; an approved one must be removed instead', async () => {
    const dialer = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 8100, dial: { host: '127.0.0.1', port: site.daemon.listenPorts[0] } });
    try {
      await waitFor(() => site.daemon.terminals().find((t) => t.id === '8101')?.state === 'pending', { message: 'not pending' });
      expect((await stateOf('c1'))['8101']).toMatchObject({ state: 'pending' });
      const r = await api('POST', '/api/terminals/8101/reject');
      expect(r.body).toEqual({ rejected: '8101' });
      expect(site.daemon.terminals().some((t) => t.id === '8101' && t.approved)).toBe(false);
      expect((await api('POST', '/api/terminals/t1/reject')).status).toBe(409);
      expect((await api('POST', '/api/terminals/none/reject')).status).toBe(404);
    } finally {
      await dialer.close();
      await api('DELETE', '/api/terminals/8101');
    }
  });
});
