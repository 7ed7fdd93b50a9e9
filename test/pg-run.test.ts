// `termsync run --db postgres://...` as real processes: three daemons (each a
// child process running bin/termsync's sources), 30 simulated terminals, one
// real PostgreSQL. Users are enrolled at the terminals (a burst); each must
// reach every terminal whatever happens to the daemons:
//   - kill -9 of one daemon during the burst: its terminals move to the two
//     others (lease TTL + one heartbeat), nothing lost, everything converges;
//   - SIGSTOP of one daemon past its lease, then SIGCONT: it finds its leases
//     lost and does not write with its old fencing tokens; data right;
//   - PostgreSQL stopped for 10 s and started again: every daemon records the
//     failure, nothing is lost, sync resumes.
// Also the flags: a postgres:// --db in a flag file is not taken for a path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { RunProcess } from './helpers/run-process.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-run.test.ts SKIPPED: ${reason}\n`);

const TERMINALS = 30;
const LEASE_SEC = 3;

/** a daemon of the site: `termsync run` with its name */
class Daemon extends RunProcess {
  constructor(readonly id: string, args: string[]) {
    super(args);
  }
  adminPort(): number | undefined {
    return this.find((l) => l.msg === 'termsync running (cluster node)')?.admin as number | undefined;
  }
}

const person = (id: string, v = 0): UserRecord => userFromJson({ id, name: `Person ${id}${v ? ` v${v}` : ''}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }] });

describe('flags of a daemon on PostgreSQL', () => {
  it('a postgres:// --db in a flag file stays a URL; the PostgreSQL flags are refused with a SQLite --db', () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-pgflags-'));
    try {
      const f = join(dir, 'a.flags');
      writeFileSync(f, '--insecure-dev-key\n--db=postgres://termsync@db.example.org:5432/site\n--db-password-file=db.pw\n--lease-sec=7\n--daemon-id=a-1\n');
      const cfg = parseRunConfig([`--flagfile=${f}`]);
      expect(cfg.db).toBe('postgres://termsync@db.example.org:5432/site');
      expect(cfg.dbPasswordFile).toBe(join(dir, 'db.pw'));
      expect(cfg.leaseSec).toBe(7);
      expect(cfg.daemonId).toBe('a-1');
      expect(parseRunConfig(['--insecure-dev-key', '--db=postgres://x@h/d']).leaseSec).toBe(10);
      expect(() => parseRunConfig(['--insecure-dev-key', `--db=${join(dir, 'x.db')}`, '--db-password-file=/x'])).toThrow(/postgres:\/\/ --db only/);
      expect(() => parseRunConfig(['--insecure-dev-key', '--db=postgres://x@h/d', '--db-tls-cert=/c'])).toThrow(/go together/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(reason !== null)(`three termsync daemons, ${TERMINALS} terminals, one PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let sim: Simulator;
  let store: PgSiteStore;
  let url: string;
  const daemons = new Map<string, Daemon>();
  const enrolled = new Map<string, UserRecord>();

  const start = (id: string) => {
    const ports = sim.ports();
    const args = [
      `--db=${url}`, '--insecure-dev-key', `--daemon-id=${id}`, `--lease-sec=${LEASE_SEC}`, '--sync-mode=all', '--heartbeat-sec=2',
      '--reconnect-min-ms=50', '--reconnect-max-ms=500', '--log-level=info', '--admin-listen=127.0.0.1:0',
      ...sim.terminals.map((t, i) => `--terminal=${t.deviceId}@127.0.0.1:${ports[i]}`),
    ];
    const d = new Daemon(id, args);
    daemons.set(id, d);
    return d;
  };
  const owners = async () => {
    const r = await store.db.query(`SELECT owner, count(*)::int AS n FROM terminal_leases WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner`, []);
    return new Map(r.rows.map((x) => [String(x.owner), Number(x.n)]));
  };
  const owned = async (ids: string[]) => {
    const o = await owners().catch(() => new Map<string, number>());
    return ids.reduce((s, id) => s + (o.get(id) ?? 0), 0) === TERMINALS && [...o.keys()].every((k) => ids.includes(k));
  };
  /** every enrolled user, as the server holds it, is on every terminal */
  const converged = async () => {
    for (const id of enrolled.keys()) {
      const u = await store.getUser(id).catch(() => null);
      if (!u) return false;
      if (!sim.terminals.every((t) => { const h = t.getUser(id); return h !== undefined && usersEqual(h, u); })) return false;
    }
    return true;
  };
  const burst = async (prefix: string, n: number) => {
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const u = person(`${prefix}${i}`);
      enrolled.set(u.id, u);
      jobs.push(sim.terminals[i % TERMINALS]!.enroll(u));
    }
    await Promise.all(jobs);
  };
  const explain = async () => {
    const missing: string[] = [];
    for (const id of enrolled.keys()) {
      const u = await store.getUser(id).catch(() => null);
      const lacking = sim.terminals.filter((t) => !t.getUser(id)).length;
      if (!u || lacking) missing.push(`${id}:${u ? 'server has it' : 'server lacks it'},${lacking} terminals lack it`);
    }
    return `${missing.slice(0, 10).join('; ')} (${missing.length} users not converged); owners ${JSON.stringify([...(await owners().catch(() => new Map()))])}; status ${JSON.stringify([...daemons.values()].map((d) => d.last('cluster status')))}`;
  };

  beforeAll(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
    sim = await Simulator.start({ terminals: TERMINALS, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    store = await PgSiteStore.open({ url, writerId: 'test-observer' });
  }, 60_000);
  afterAll(async () => {
    try {
      for (const d of daemons.values()) {
        if (d.child.exitCode === null && d.child.signalCode === null) {
          d.child.kill('SIGCONT');
          d.child.kill('SIGKILL');
        }
      }
      await Promise.all([...daemons.values()].map((d) => d.exited));
      await store?.close().catch(() => {});
      await sim?.close();
    } finally {
      await server?.stop();
    }
  }, 60_000);

  it('kill -9 of one daemon during a burst: its terminals move, nothing is lost, every terminal converges', { timeout: 90_000 }, async () => {
    for (const id of ['d1', 'd2', 'd3']) start(id);
    await waitFor(async () => {
      const o = await owners().catch(() => new Map<string, number>());
      return o.get('d1') === 10 && o.get('d2') === 10 && o.get('d3') === 10;
    }, { timeoutMs: 45_000, intervalMs: 200, message: 'leases not 10/10/10' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify([...(await owners())])}; stderr ${[...daemons.values()].map((d) => d.stderr.slice(0, 500)).join(' | ')}`);
    });
    const first = burst('k', 60);
    const d3 = daemons.get('d3')!;
    d3.child.kill('SIGKILL');
    const killedAt = Date.now();
    await d3.exited;
    await first;
    await burst('m', 30);
    await waitFor(() => owned(['d1', 'd2']), { timeoutMs: 30_000, intervalMs: 100, message: 'd3\'s terminals not taken by d1 and d2' });
    const failoverMs = Date.now() - killedAt;
    process.stderr.write(`pg-run: after kill -9, every terminal leased by a live daemon after ${failoverMs} ms (lease ${LEASE_SEC} s, heartbeat ${LEASE_SEC / 3} s)\n`);
    await waitFor(converged, { timeoutMs: 45_000, intervalMs: 250, message: 'not converged after kill -9' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${await explain()}`);
    });
    expect(await store.userCount()).toBe(enrolled.size);
  });

  it('SIGSTOP of a daemon past its lease, then SIGCONT: its leases are lost and its old tokens write nothing; data right', { timeout: 90_000 }, async () => {
    const d2 = daemons.get('d2')!;
    const d1 = daemons.get('d1')!;
    const lostBefore = d2.count('terminal lease lost');
    const stale = (await store.db.query(`SELECT terminal_id, token::int AS token FROM terminal_leases WHERE owner = 'd2' ORDER BY terminal_id`)).rows as { terminal_id: string; token: number }[];
    expect(stale.length).toBe(15);
    d2.child.kill('SIGSTOP');
    // d1 takes every terminal once d2's leases expire
    await waitFor(() => owned(['d1']), { timeoutMs: 30_000, intervalMs: 100, message: 'd1 did not take d2\'s terminals' });
    await burst('s', 30);
    // the tokens d2 wrote with until now are refused by the database (what d2 would meet with a write already in flight)
    for (const l of stale.slice(0, 3)) {
      await expect(store.setFeedCursor(l.terminal_id, 0, l.token)).rejects.toMatchObject({ name: 'LeaseLostError' });
    }
    d2.child.kill('SIGCONT');
    // d2 notices on waking that its leases passed, before any write with their tokens
    await waitFor(() => d2.count('terminal lease lost') > lostBefore, { timeoutMs: 20_000, message: 'd2 did not drop its leases after SIGCONT' });
    // and shares again
    await waitFor(async () => { const o = await owners(); return o.get('d1') === 15 && o.get('d2') === 15; }, { timeoutMs: 30_000, intervalMs: 200, message: 'leases not back to 15/15' });
    await burst('t', 30);
    await waitFor(converged, { timeoutMs: 45_000, intervalMs: 250, message: 'not converged after SIGSTOP/SIGCONT' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${await explain()}`);
    });
    expect(await store.userCount()).toBe(enrolled.size);
    const refused = d2.logs.filter((l) => l.msg === 'write refused: terminal lease lost').length;
    process.stderr.write(`pg-run: after SIGCONT d2 logged ${d2.count('terminal lease lost') - lostBefore} leases lost, ${refused} writes refused by the fence; d1 ${d1.count('terminal lease lost')} lost\n`);
  });

  it('PostgreSQL stopped for 10 s and started again: every daemon records the failure, nothing lost, sync resumes', { timeout: 120_000 }, async () => {
    const live = [daemons.get('d1')!, daemons.get('d2')!];
    const before = live.map((d) => d.count('lease heartbeat failed'));
    await server.stopServer();
    const downFrom = Date.now();
    await new Promise((r) => setTimeout(r, 10_000));
    await server.startServer();
    process.stderr.write(`pg-run: PostgreSQL down for ${Date.now() - downFrom} ms\n`);
    live.forEach((d, i) => expect(d.count('lease heartbeat failed'), `${d.id}: exit ${d.child.exitCode}/${d.child.signalCode} stderr ${d.stderr.slice(-1500)} ${JSON.stringify(d.logs.slice(-4))}`).toBeGreaterThan(before[i]!));
    await waitFor(() => owned(['d1', 'd2']), { timeoutMs: 30_000, intervalMs: 200, message: 'leases not taken again after PostgreSQL came back' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: owners ${JSON.stringify([...(await owners().catch((x: Error) => new Map([[x.message, 0]])))])}; ${live.map((d) => `${d.id}: exit ${d.child.exitCode} ${JSON.stringify(d.logs.filter((l) => l.level >= 40).slice(-6))} ${JSON.stringify(d.last('cluster status'))} ${d.stderr.slice(-500)}`).join(' || ')}`);
    });
    await burst('p', 30);
    await waitFor(converged, { timeoutMs: 60_000, intervalMs: 250, message: 'not converged after the PostgreSQL outage' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${await explain()}`);
    });
    expect(await store.userCount()).toBe(enrolled.size);
    for (const d of live) expect(d.child.exitCode, `${d.id} exited: ${d.stderr.slice(0, 300)}`).toBeNull();
  });

  it('the admin API of any daemon shows every terminal with its owner; a user written on one reaches every terminal', { timeout: 90_000 }, async () => {
    const [d1, d2] = [daemons.get('d1')!, daemons.get('d2')!];
    const api = (d: Daemon, path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${d.adminPort()}${path}`, init);
    expect((await api(d1, '/healthz')).status).toBe(200);
    // the leases may be moving back to 15/15 still: wait until the API shows both owners and no terminal without one
    let terms: { id: string; owner: string | null }[] = [];
    await waitFor(async () => {
      terms = (await (await api(d2, '/api/terminals')).json()) as typeof terms;
      return terms.length === TERMINALS && terms.filter((t) => t.owner === 'd1').length === 15 && terms.filter((t) => t.owner === 'd2').length === 15;
    }, { timeoutMs: 30_000, intervalMs: 200, message: 'GET /api/terminals did not show 15 terminals on each daemon' }).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(terms)}`);
    });
    const u = person('admin-1');
    const put = await api(d1, `/api/users/${u.id}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: u.name, cards: [{ type: 1, data: Buffer.from('card-admin-1').toString('hex') }] }) });
    expect(put.status).toBe(201);
    enrolled.set(u.id, u);
    await waitFor(converged, { timeoutMs: 45_000, intervalMs: 250, message: 'a user written through d1\'s admin API did not reach every terminal' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${await explain()}`);
    });
    expect((await api(d2, `/api/users/${u.id}`)).status).toBe(200);
    expect((await api(d2, '/api/users/nobody', { method: 'DELETE' })).status).toBe(404);
    expect((await api(d2, `/api/users/${u.id}`, { method: 'DELETE' })).status).toBe(204);
    enrolled.delete(u.id);
    await waitFor(() => sim.terminals.every((t) => t.getUser(u.id) === undefined), { timeoutMs: 45_000, intervalMs: 250, message: 'a user deleted through d2\'s admin API stayed on some terminal' });
    expect((await api(d1, '/api/users/x', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"cards": 5}' })).status).toBe(400);
  });
});
