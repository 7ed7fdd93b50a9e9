// The full admin API and the operator console on daemons sharing one
// PostgreSQL database: two cluster daemons started as `termsync run --db
// postgres://...` starts them (startCluster: flags, token file, admin
// server), the real simulator's terminals, a real PostgreSQL.
//   - either daemon lists every terminal with the daemon that drives it;
//   - a user written through daemon A reaches the terminals daemon B drives;
//   - the console's files load, and a change the console sends (same origin,
//     JSON, the token in a header) works while a cross-site one is refused;
//   - monitoring events written by both daemons show on either, in the list
//     and in the live stream;
//   - an action that needs a live session on a terminal the other daemon
//     drives is answered 409 naming it; the sync mode set on one is followed
//     by the other.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { terminalRows } from '../src/cli/commands/terminals.js';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { startCluster, type ClusterRunning } from '../src/cluster/run.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-admin.test.ts SKIPPED: ${reason}\n`);

// the console in a real headless Chromium, as test/admin-console.test.ts drives it (skipped without it)
const CHROMIUM = '/usr/bin/chromium';
async function loadPlaywright(): Promise<{ pw: any; why: string | null }> {
  const name = 'playwright-core'; // a variable: the type checker must not require the package
  try {
    const pw = await import(name);
    if (!existsSync(CHROMIUM)) return { pw: null, why: `${CHROMIUM} is missing (apt-get install -y chromium)` };
    return { pw, why: null };
  } catch {
    return { pw: null, why: 'playwright-core is not installed' };
  }
}
const { pw, why: browserWhy } = await loadPlaywright();
if (!reason && browserWhy) process.stderr.write(`test/pg-admin.test.ts: the console-in-Chromium case SKIPPED: ${browserWhy}\n`);

const TERMINALS = 4;
const TOKEN = 'pg-admin-test-token-5e2b9a71c4d8';
const silent = pino({ level: 'silent' });

interface TerminalJson {
  id: string;
  state: string;
  owner: string | null;
  lease: { owner: string | null; live: boolean; token: number } | null;
  pushesOwed: number;
}

/** one server-sent events connection: the events it received so far */
function openStream(port: number, path: string): { events: { id: number; type: string; terminal: string | null; user: string | null }[]; close(): void; status: Promise<number> } {
  const events: { id: number; type: string; terminal: string | null; user: string | null }[] = [];
  let buf = '';
  let resolveStatus: (n: number) => void = () => {};
  const status = new Promise<number>((r) => (resolveStatus = r));
  const req = http.get({ host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
    resolveStatus(res.statusCode ?? 0);
    res.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data) events.push(JSON.parse(data.slice(6)));
      }
    });
  });
  req.on('error', () => {});
  return { events, close: () => req.destroy(), status };
}

describe.skipIf(reason !== null)(`admin API and console on two daemons sharing one PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let sim: Simulator;
  let dir: string;
  const daemons: ClusterRunning[] = [];
  let a: ClusterRunning;
  let b: ClusterRunning;

  const base = (d: ClusterRunning) => `http://127.0.0.1:${d.adminPort}`;
  const api = async (d: ClusterRunning, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const r = await fetch(base(d) + path, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: r.status, body: parsed as any, headers: r.headers };
  };
  const terminalsOn = async (d: ClusterRunning) => (await api(d, 'GET', '/api/terminals')).body as TerminalJson[];

  beforeAll(async () => {
    server = await startPostgres();
    const url = await server.createDatabase();
    sim = await Simulator.start({ terminals: TERMINALS, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    dir = mkdtempSync(join(tmpdir(), 'termsync-pg-admin-'));
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, TOKEN + '\n');
    chmodSync(tokenFile, 0o600);
    const ports = sim.ports();
    for (const id of ['daemon-a', 'daemon-b']) {
      const cfg = parseRunConfig([
        `--db=${url}`, '--insecure-dev-key', `--daemon-id=${id}`, '--lease-sec=2', '--sync-mode=all', '--heartbeat-sec=2',
        '--reconnect-min-ms=50', '--reconnect-max-ms=500', '--admin-listen=127.0.0.1:0', `--admin-token-file=${tokenFile}`,
        ...sim.terminals.map((t, i) => `--terminal=${t.deviceId}@127.0.0.1:${ports[i]}`),
      ]);
      daemons.push(await startCluster(cfg, silent));
    }
    [a, b] = daemons;
    // the leases spread: two terminals each, every session up
    await waitFor(async () => {
      const ts = await terminalsOn(a);
      return ts.filter((t) => t.owner === 'daemon-a').length === 2 && ts.filter((t) => t.owner === 'daemon-b').length === 2 && sim.terminals.every((t) => t.connected);
    }, { timeoutMs: 30_000, intervalMs: 100, message: 'leases not spread 2/2 with every terminal connected' });
  }, 90_000);

  afterAll(async () => {
    try {
      for (const d of daemons) await d.stop().catch(() => {});
      await sim?.close();
    } finally {
      await server?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('either daemon lists every terminal with the daemon that drives it; health names the daemon', async () => {
    for (const d of [a, b]) {
      const ts = await terminalsOn(d);
      expect(ts.map((t) => t.id).sort()).toEqual(sim.terminals.map((t) => String(t.deviceId)).sort());
      for (const t of ts) {
        expect(['daemon-a', 'daemon-b']).toContain(t.owner);
        expect(t.lease).toMatchObject({ owner: t.owner, live: true });
        expect(t.lease!.token).toBeGreaterThan(0);
      }
    }
    // both views agree on who drives what, and the driver's own view says online
    const onA = await terminalsOn(a);
    const onB = await terminalsOn(b);
    expect(onB.map((t) => [t.id, t.owner])).toEqual(onA.map((t) => [t.id, t.owner]));
    for (const t of onA.filter((x) => x.owner === 'daemon-a')) expect(t.state).toBe('online');
    for (const t of onB.filter((x) => x.owner === 'daemon-b')) expect(t.state).toBe('online');
    // `termsync terminals list` against a cluster daemon shows the driver too
    const table = terminalRows(onA as any);
    expect(table.split('\n')[0]).toMatch(/^ID\s+STATE\s+DRIVEN BY\s+APPROVED/);
    expect(table.split('\n').filter((l) => /\bdaemon-b\b/.test(l))).toHaveLength(2);
    const h = await fetch(`${base(b)}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ ok: true, db: 'ok', daemon: 'daemon-b' });
    // the token is needed as on one daemon
    expect((await fetch(`${base(a)}/api/terminals`)).status).toBe(401);
    const status = await api(a, 'GET', '/api/status');
    expect(status.body).toMatchObject({ daemon: 'daemon-a', driven: 2, disk: null, syncMode: 'all', terminals: { online: 4, offline: 0, pending: 0 } });
    // the other daemon's terminals are online too (their driver keeps their rows' state)
    for (const t of onB) expect(t.state).toBe('online');
    const metrics = await fetch(`${base(a)}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await metrics.text();
    expect(text).toMatch(/^termsync_terminals\{state="online"\} 4$/m);
    expect(text).toMatch(/^termsync_db_up 1$/m);
    expect(text).not.toMatch(/termsync_db_disk_bytes/);
  });

  it('a user written through daemon A reaches the terminals daemon B drives (and A\'s); a delete through B leaves them all', { timeout: 60_000 }, async () => {
    const ts = await terminalsOn(a);
    const ofB = ts.filter((t) => t.owner === 'daemon-b').map((t) => Number(t.id));
    expect(ofB).toHaveLength(2);
    const put = await api(a, 'PUT', '/api/users/pg-admin-1', { name: 'Written on A', cards: [{ type: 1, data: Buffer.from('card-pg-admin-1').toString('hex') }] });
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ created: true, changed: true, user: { id: 'pg-admin-1', name: 'Written on A' } });
    expect([...put.body.pushedTo].sort()).toEqual(ts.map((t) => t.id).sort());
    const held = (deviceIds: number[]) => sim.terminals.filter((t) => deviceIds.includes(t.deviceId)).every((t) => t.getUser('pg-admin-1')?.name === 'Written on A');
    await waitFor(() => held(ofB), { timeoutMs: 30_000, intervalMs: 100, message: "the user written on A did not reach B's terminals" });
    await waitFor(() => held(sim.terminals.map((t) => t.deviceId)), { timeoutMs: 30_000, intervalMs: 100, message: 'the user did not reach every terminal' });
    // B reads it, lists it, finds it
    expect((await api(b, 'GET', '/api/users/pg-admin-1')).body).toMatchObject({ name: 'Written on A' });
    expect((await api(b, 'GET', '/api/users?limit=10')).body.map((u: { id: string }) => u.id)).toContain('pg-admin-1');
    expect((await api(b, 'GET', '/api/user-search?by=name&q=written')).body.users.map((u: { id: string }) => u.id)).toEqual(['pg-admin-1']);
    // the per-terminal sync state, with the driver of each terminal: current everywhere
    await waitFor(async () => (await api(b, 'GET', '/api/users/pg-admin-1/sync')).body.terminals.every((s: { state: string }) => s.state === 'current'), { timeoutMs: 15_000, intervalMs: 100, message: 'sync state not current on every terminal' });
    const sync = (await api(b, 'GET', '/api/users/pg-admin-1/sync')).body;
    expect(sync.terminals.map((s: { owner: string }) => s.owner).sort()).toEqual(['daemon-a', 'daemon-a', 'daemon-b', 'daemon-b']);
    expect((await api(b, 'DELETE', '/api/users/pg-admin-1')).status).toBe(204);
    await waitFor(() => sim.terminals.every((t) => t.getUser('pg-admin-1') === undefined), { timeoutMs: 30_000, intervalMs: 100, message: 'a user deleted through B stayed on some terminal' });
  });

  it('the console loads from a PostgreSQL daemon; its changes work from its own origin, a cross-site one is refused', async () => {
    const page = await fetch(`${base(b)}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
    expect(await page.text()).toContain('<script src="/console/console.js"');
    expect((await fetch(`${base(b)}/console/console.js`)).status).toBe(200);
    // what the console's access-groups form sends: same origin, JSON, the token in a header
    const t = (await terminalsOn(b)).find((x) => x.owner === 'daemon-a')!;
    const origin = base(b);
    const ok = await api(b, 'PUT', `/api/terminals/${t.id}/groups`, { accessGroups: [7, 3] }, { origin, 'sec-fetch-site': 'same-origin' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ id: t.id, accessGroups: [3, 7], owner: 'daemon-a' });
    // another site's page: refused before anything changes
    const forged = await api(b, 'PUT', `/api/terminals/${t.id}/groups`, { accessGroups: [99] }, { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' });
    expect(forged.status).toBe(403);
    const textPlain = await fetch(`${base(b)}/api/terminals/${t.id}/groups`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' }, body: '{"accessGroups":[99]}' });
    expect(textPlain.status).toBe(415);
    // a DNS-rebinding Host
    const rebound = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: b.adminPort!, path: '/api/terminals', headers: { host: 'evil.example', authorization: `Bearer ${TOKEN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    expect(rebound).toBe(403);
    expect((await terminalsOn(a)).find((x) => x.id === t.id)!.pushesOwed).toBeGreaterThanOrEqual(0);
    expect((await api(a, 'GET', `/api/terminals/${t.id}`)).body.accessGroups).toEqual([3, 7]);
    expect((await api(a, 'PUT', `/api/terminals/${t.id}/groups`, { accessGroups: [] })).status).toBe(200);
  });

  it('events written by both daemons show on either, in the list and in the live stream', { timeout: 60_000 }, async () => {
    const last = ((await api(a, 'GET', '/api/events?order=desc&limit=1')).body[0]?.id ?? 0) as number;
    const stream = openStream(a.adminPort!, `/api/events/stream?after=${last}`);
    try {
      expect(await stream.status).toBe(200);
      // written through B: each daemon pushes it to its own terminals and records it
      expect((await api(b, 'PUT', '/api/users/pg-admin-2', { name: 'Streamed' })).status).toBe(201);
      const ts = await terminalsOn(a);
      const pushedBy = (owner: string) => ts.filter((t) => t.owner === owner).map((t) => t.id);
      const seen = (list: { type: string; terminal: string | null; user: string | null }[], ids: string[]) =>
        ids.every((id) => list.some((e) => e.type === 'USER_UPDATE_SUCCESS_SERVER' && e.user === 'pg-admin-2' && e.terminal === id));
      await waitFor(() => seen(stream.events, [...pushedBy('daemon-a'), ...pushedBy('daemon-b')]), { timeoutMs: 30_000, intervalMs: 100, message: "A's stream did not show both daemons' push events" });
      const ids = stream.events.map((e) => e.id);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      // the list on either daemon has both daemons' events
      for (const d of [a, b]) {
        const list = (await api(d, 'GET', `/api/events?user=pg-admin-2&type=USER_UPDATE_SUCCESS_SERVER`)).body as { terminal: string; user: string; type: string }[];
        expect(seen(list, [...pushedBy('daemon-a'), ...pushedBy('daemon-b')])).toBe(true);
      }
      // the sync mode set through B: A's stream shows the change, A follows it
      expect((await api(b, 'PUT', '/api/settings', { syncMode: 'server' })).body).toEqual({ syncMode: 'server' });
      await waitFor(() => stream.events.some((e) => e.type === 'SYNC_MODE_CHANGED'), { timeoutMs: 10_000, intervalMs: 100, message: "the sync mode change made on B did not reach A's stream" });
      await waitFor(async () => (await api(a, 'GET', '/api/settings')).body.syncMode === 'server', { timeoutMs: 10_000, intervalMs: 100, message: 'A did not follow the sync mode set on B' });
      expect((await api(a, 'PUT', '/api/settings', { syncMode: 'all' })).status).toBe(200);
      await waitFor(async () => (await api(b, 'GET', '/api/settings')).body.syncMode === 'all', { timeoutMs: 10_000, intervalMs: 100, message: 'B did not follow the sync mode set on A' });
    } finally {
      stream.close();
    }
  });

  it('a resync of a terminal the other daemon drives is 409 naming it; on its driver it runs; the flag file decides the dialled terminals', async () => {
    const ts = await terminalsOn(a);
    const ofB = ts.find((t) => t.owner === 'daemon-b')!;
    const refused = await api(a, 'POST', `/api/terminals/${ofB.id}/resync`, {});
    expect(refused.status).toBe(409);
    expect(refused.body.error).toContain('daemon-b');
    expect((await api(b, 'POST', `/api/terminals/${ofB.id}/resync`, {})).status).toBe(202);
    await waitFor(async () => (await api(a, 'GET', `/api/events?type=RECONCILE&terminal=${ofB.id}`)).body.length > 0, { timeoutMs: 20_000, intervalMs: 100, message: 'the resync on B left no RECONCILE event visible on A' });
    expect((await api(a, 'GET', `/api/terminals/${ofB.id}`)).body.usersHeld).toMatchObject({ count: expect.any(Number) });
    const pulls = await api(a, 'POST', '/api/pull-failures/retry', { terminalId: ofB.id });
    expect(pulls.status).toBe(409);
    expect(pulls.body.error).toContain('daemon-b');
    const removed = await api(a, 'DELETE', `/api/terminals/${ofB.id}`);
    expect(removed.status).toBe(409);
    expect(removed.body.error).toContain('daemon-b');
    const added = await api(a, 'POST', '/api/terminals', { id: 'new-1', host: '127.0.0.1', port: 1 });
    expect(added.status).toBe(409);
    expect(added.body.error).toMatch(/flag file/);
    expect((await api(a, 'POST', '/api/backup', { name: 'x' })).status).toBe(501);
  });

  it('approving a dial-in terminal waiting for approval is a row write any daemon can make', async () => {
    await b.store.upsertTerminal({ id: '7777', direction: 'listen', deviceId: 7777, address: '', approved: false, protocol: 'termsync' });
    const pending = (await terminalsOn(a)).find((t) => t.id === '7777')!;
    expect(pending).toMatchObject({ state: 'pending', approved: false, owner: null });
    const r = await api(a, 'POST', '/api/terminals/7777/approve', {});
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: '7777', approved: true });
    expect((await b.store.getTerminal('7777'))!.approved).toBe(true);
    // nobody drives it (it has not dialled in): any daemon may remove it
    expect((await api(b, 'DELETE', '/api/terminals/7777')).status).toBe(204);
    expect(await a.store.getTerminal('7777')).toBeNull();
  });

  it.skipIf(browserWhy !== null)(`the console in Chromium on daemon B: every terminal with its driver; a user made in its form reaches A's terminals${browserWhy ? ` (SKIPPED: ${browserWhy})` : ''}`, { timeout: 90_000 }, async () => {
    const profile = mkdtempSync(join(tmpdir(), 'termsync-pg-console-chromium-'));
    const context = await pw.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1366, height: 768 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const problems: string[] = [];
    try {
      const page = await context.newPage();
      page.on('pageerror', (e: Error) => problems.push(e.message));
      page.on('console', (m: any) => {
        if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
      });
      await page.goto(`${base(b)}/console/`);
      await page.locator('#login').waitFor({ state: 'visible', timeout: 10_000 });
      await page.fill('#token', TOKEN);
      await page.keyboard.press('Enter');
      await page.locator('#nav').waitFor({ state: 'visible', timeout: 10_000 });
      await page.evaluate(() => ((globalThis as any).location.hash = '#/terminals'));
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#terminals-table tbody tr td[data-owner]').length === 4, undefined, { timeout: 10_000 });
      const owners: string[] = await page.locator('#terminals-table tbody td[data-owner]').allTextContents();
      expect(owners.sort()).toEqual(['daemon-a', 'daemon-a', 'daemon-b', 'daemon-b']);
      // a new user from the console's form on B (the console sends it same-origin, JSON, the token in a header)
      await page.evaluate(() => ((globalThis as any).location.hash = '#/users'));
      await page.locator('#new-user').click();
      await page.fill('#u-id', 'from-console');
      await page.fill('#u-name', 'Made in the console on B');
      await page.locator('#u-save').click();
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#user-fields dd[data-field="name"]')?.textContent === 'Made in the console on B', undefined, { timeout: 10_000 });
      const ofA = (await terminalsOn(a)).filter((t) => t.owner === 'daemon-a').map((t) => Number(t.id));
      await waitFor(() => sim.terminals.filter((t) => ofA.includes(t.deviceId)).every((t) => t.getUser('from-console')?.name === 'Made in the console on B'), {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: "the user made in B's console did not reach A's terminals",
      });
      // the status page on A shows the driver column too
      const status = await context.newPage();
      await status.goto(`${base(a)}/?token=${TOKEN}`);
      await status.waitForFunction(() => (globalThis as any).document.querySelectorAll('#terminals tr td[data-owner]').length === 4, undefined, { timeout: 10_000 });
      expect(await status.locator('#daemonId').textContent()).toBe('daemon-a');
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });

  it('PostgreSQL down: health and the API answer 503 (not 500, never hanging), the daemons keep serving; back up: 200 again', { timeout: 90_000 }, async () => {
    await server.stopServer();
    try {
      const h = await fetch(`${base(a)}/healthz`);
      expect(h.status).toBe(503);
      expect(await h.json()).toMatchObject({ ok: false, db: 'failing', daemon: 'daemon-a' });
      for (const path of ['/api/terminals', '/api/users/anyone', '/api/events?limit=5', '/api/status']) {
        const r = await api(b, 'GET', path);
        expect({ path, status: r.status }).toEqual({ path, status: 503 });
        expect(r.body.error).toMatch(/database is unavailable/);
      }
      // changes whose body was read before the database call failed: answered, not left hanging
      const change = (d: ClusterRunning, method: string, path: string, body: string) =>
        fetch(base(d) + path, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(10_000) }).then((r) => r.status);
      expect(await change(a, 'PUT', '/api/users/while-down', '{"name":"x"}')).toBe(503);
      expect(await change(b, 'PUT', '/api/settings', '{"syncMode":"off"}')).toBe(503);
      expect(await change(b, 'PUT', '/api/users/bad', '{bad')).toBe(400);
      expect((await api(b, 'DELETE', '/api/users/while-down')).status).toBe(503);
      const m = await fetch(`${base(a)}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(m.status).toBe(200);
      expect(await m.text()).toMatch(/^termsync_db_up 0$/m);
    } finally {
      await server.startServer();
    }
    await waitFor(async () => (await fetch(`${base(a)}/healthz`)).status === 200 && (await fetch(`${base(b)}/healthz`)).status === 200, { timeoutMs: 30_000, intervalMs: 200, message: 'health not back after PostgreSQL returned' });
    await waitFor(async () => (await api(b, 'GET', '/api/terminals')).status === 200, { timeoutMs: 30_000, intervalMs: 200, message: 'the terminal list did not come back' });
    expect((await api(a, 'GET', '/api/users/while-down')).status).toBe(404);
  });
});
