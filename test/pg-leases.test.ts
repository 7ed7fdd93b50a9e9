// Terminal leases between daemons sharing one real PostgreSQL
// (src/cluster/leases.ts, src/store/pg/leases.ts): 30 terminals spread evenly
// over two and three daemons; a daemon that stops renewing loses its
// terminals to the others once its leases expired (never earlier: at no
// instant do two daemons both hold a terminal); they move back when a daemon
// returns; and a writer holding a token from before a takeover is refused.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fairShare, LeaseManager } from '../src/cluster/leases.js';
import { LeaseLostError } from '../src/store/errors.js';
import { PgDatabase } from '../src/store/pg/db.js';
import { checkFence, LeaseTable } from '../src/store/pg/leases.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

describe('fair share (no server needed)', () => {
  it('adds up to the number of terminals, the remainder to the first daemons by ID', () => {
    expect(['a', 'b', 'c'].map((d) => fairShare(30, ['a', 'b', 'c'], d))).toEqual([10, 10, 10]);
    expect(['a', 'b', 'c'].map((d) => fairShare(31, ['a', 'b', 'c'], d))).toEqual([11, 10, 10]);
    expect(['a', 'b'].map((d) => fairShare(3, ['a', 'b'], d))).toEqual([2, 1]);
    expect(fairShare(30, [], 'a')).toBe(30);
  });
});

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-leases.test.ts SKIPPED: ${reason}\n`);

const TERMINALS = Array.from({ length: 30 }, (_, i) => `t${String(i + 1).padStart(2, '0')}`);
// small values for the test; the daemon's default is 10 s
const LEASE_SEC = 3;
const RENEW_MS = 500;

describe.skipIf(reason !== null)(`terminal leases on PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let db: PgDatabase;
  const managers: LeaseManager[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    for (const m of managers.splice(0)) m.halt();
    await db?.close();
  });

  async function freshDb(): Promise<PgDatabase> {
    db = await PgDatabase.open({ url: await server.createDatabase() });
    return db;
  }

  function manager(id: string, events?: string[]): LeaseManager {
    const m = new LeaseManager({
      db,
      daemonId: id,
      leaseSec: LEASE_SEC,
      renewEveryMs: RENEW_MS,
      terminals: () => TERMINALS,
      onAcquire: (t, token) => events?.push(`${id} +${t}#${token}`),
      onLose: (t, why) => void events?.push(`${id} -${t} ${why}`),
    });
    managers.push(m);
    return m;
  }

  const counts = (ms: LeaseManager[]) => ms.map((m) => m.heldTerminals().length);
  function assertExclusive(ms: LeaseManager[]): void {
    const owners = new Map<string, string>();
    for (const m of ms) {
      for (const t of m.heldTerminals()) {
        const other = owners.get(t);
        if (other) throw new Error(`terminal ${t} held by ${other} and ${m.daemonId} at once`);
        owners.set(t, m.daemonId);
      }
    }
  }
  const covered = (ms: LeaseManager[]) => new Set(ms.flatMap((m) => m.heldTerminals())).size;

  it('two daemons share 30 terminals 15/15, a third makes it 10/10/10, and the database agrees', async () => {
    await freshDb();
    const a = manager('daemon-a');
    const b = manager('daemon-b');
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => {
      assertExclusive([a, b]);
      return counts([a, b]).join() === '15,15' && covered([a, b]) === 30;
    }, { timeoutMs: 20_000, message: `two daemons did not settle at 15/15` });

    const c = manager('daemon-c');
    await c.start();
    await waitFor(() => {
      assertExclusive([a, b, c]);
      return counts([a, b, c]).join() === '10,10,10' && covered([a, b, c]) === 30;
    }, { timeoutMs: 20_000, message: 'three daemons did not settle at 10/10/10' });

    const rows = await new LeaseTable(db).list();
    expect(rows).toHaveLength(30);
    for (const m of [a, b, c]) {
      expect(rows.filter((r) => r.owner === m.daemonId && r.live).map((r) => r.terminalId).sort()).toEqual(m.heldTerminals());
    }
    // tokens only grow: every lease taken later has a larger one; all distinct
    expect(new Set(rows.map((r) => r.token)).size).toBe(30);
  });

  it('a daemon that stops renewing loses its terminals to the others after its TTL, never before; they move back when it returns', async () => {
    await freshDb();
    const events: string[] = [];
    const a = manager('daemon-a', events);
    const b = manager('daemon-b', events);
    const c = manager('daemon-c', events);
    await Promise.all([a.start(), b.start(), c.start()]);
    await waitFor(() => counts([a, b, c]).join() === '10,10,10' && covered([a, b, c]) === 30, { timeoutMs: 20_000, message: 'not 10/10/10' });
    const cHeld = c.heldTerminals();
    const cTokens = new Map(cHeld.map((t) => [t, c.token(t)!]));

    // c "crashes": no heartbeat, nothing given back
    c.halt();
    const haltedAt = Date.now();
    // sample the invariant while the others take over: c's local view counts
    // its leases as held until they expire, and nobody may hold one before that
    let tookMs = 0;
    await waitFor(() => {
      assertExclusive([a, b, c]);
      const done = counts([a, b]).reduce((x, y) => x + y) === 30 && covered([a, b]) === 30;
      if (done) tookMs = Date.now() - haltedAt;
      return done;
    }, { timeoutMs: 30_000, intervalMs: 10, message: 'the crashed daemon\'s terminals were not taken over' });
    expect(counts([a, b]).join()).toBe('15,15');
    expect(c.heldTerminals()).toEqual([]);
    // every terminal of c now has a larger token
    for (const t of cHeld) {
      const holder = [a, b].find((m) => m.token(t) !== undefined)!;
      expect(holder.token(t)!).toBeGreaterThan(cTokens.get(t)!);
    }
    process.stderr.write(`lease failover: 10 terminals taken over ${tookMs} ms after the daemon stopped (TTL ${LEASE_SEC * 1000} ms, heartbeat ${RENEW_MS} ms)\n`);

    // c comes back (a new process with the same ID): the leases spread again
    const c2 = manager('daemon-c', events);
    await c2.start();
    await waitFor(() => {
      assertExclusive([a, b, c2]);
      return counts([a, b, c2]).join() === '10,10,10' && covered([a, b, c2]) === 30;
    }, { timeoutMs: 20_000, message: 'the leases did not move back to the returning daemon' });
    // what a and b gave back they stopped driving first
    expect(events.some((e) => /^daemon-[ab] -t\d+ released$/.test(e))).toBe(true);
  });

  it('a clean stop gives the leases back at once; the others take them at their next heartbeat', async () => {
    await freshDb();
    const a = manager('daemon-a');
    const b = manager('daemon-b');
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => counts([a, b]).join() === '15,15', { timeoutMs: 20_000, message: 'not 15/15' });
    await b.stop();
    const rows = await new LeaseTable(db).list();
    expect(rows.filter((r) => r.owner === 'daemon-b')).toEqual([]);
    // given back: free at once (expiry -infinity); a's still run into the future
    expect(rows.filter((r) => r.owner === null).every((r) => r.expiresAt === -Infinity && !r.live)).toBe(true);
    expect(rows.filter((r) => r.owner === 'daemon-a').every((r) => r.expiresAt > Date.now() && r.live)).toBe(true);
    expect((await new LeaseTable(db).daemons()).map((d) => d.id)).toEqual(['daemon-a']);
    await a.tick();
    expect(a.heldTerminals()).toHaveLength(30);
  });

  it('a writer holding a token from before a takeover is refused with LeaseLostError, and nothing it wrote is kept', async () => {
    await freshDb();
    await db.query(`CREATE TABLE cursors (terminal_id text PRIMARY KEY, seq bigint NOT NULL)`);
    await db.query(`INSERT INTO cursors VALUES ('t01', 0)`);
    const write = (fence: number, seq: number) =>
      db.tx('setFeedCursor', async (c) => {
        await c.query('UPDATE cursors SET seq = $2 WHERE terminal_id = $1', ['t01', seq]);
        await checkFence(c, 't01', fence);
      });
    const readSeq = async () => (await db.query(`SELECT seq FROM cursors WHERE terminal_id = 't01'`)).rows[0].seq as number;

    const paused = new LeaseManager({ db, daemonId: 'paused', leaseSec: LEASE_SEC, renewEveryMs: RENEW_MS, terminals: () => ['t01'] });
    managers.push(paused);
    await paused.start();
    const old = paused.token('t01')!;
    expect(old).toBeGreaterThan(0);
    await write(old, 5);
    expect(await readSeq()).toBe(5);

    // the holder is paused (no heartbeat) past its lease; another daemon takes it
    paused.halt();
    const other = new LeaseManager({ db, daemonId: 'other', leaseSec: LEASE_SEC, renewEveryMs: RENEW_MS, terminals: () => ['t01'] });
    managers.push(other);
    await other.start();
    await waitFor(async () => (await other.tick()) && other.token('t01') !== undefined, { timeoutMs: 20_000, intervalMs: 100, message: 'the other daemon did not take the expired lease' });
    const fresh = other.token('t01')!;
    expect(fresh).toBeGreaterThan(old);

    // the paused daemon wakes: locally the lease is gone, and a write with its old token is refused
    expect(paused.token('t01')).toBeUndefined();
    const err = await write(old, 99).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((err as LeaseLostError).fence).toBe(old);
    expect((err as Error).message).toMatch(/taken over/);
    expect(await readSeq()).toBe(5);
    await write(fresh, 6);
    expect(await readSeq()).toBe(6);
  });

  it('a lease is not taken while a fenced write holds its row, and is taken once that write committed', async () => {
    await freshDb();
    const table = new LeaseTable(db);
    await table.ensureTerminals(['t01']);
    const [held] = await table.acquire('a', ['t01'], 1, 200);
    // an open transaction of the holder that passed the fence check
    const client = await db.pool.connect();
    await client.query('BEGIN');
    await checkFence(client, 't01', held!.token);
    await new Promise((r) => setTimeout(r, 400)); // the 200 ms lease is past its expiry now
    expect(await table.acquire('b', ['t01'], 1, 10_000)).toEqual([]); // skipped: the write holds the row
    await client.query('COMMIT');
    client.release();
    const [taken] = await table.acquire('b', ['t01'], 1, 10_000);
    expect(taken!.token).toBeGreaterThan(held!.token);
  });

  it('PostgreSQL down past the TTL: the daemon stops driving its terminals on time, and gets them back with the same tokens when it returns', async () => {
    await freshDb();
    const events: string[] = [];
    const a = manager('daemon-a', events);
    await a.start();
    await waitFor(() => a.heldTerminals().length === 30, { timeoutMs: 20_000, message: 'the only daemon did not take all 30' });
    const tokens = TERMINALS.map((t) => a.token(t));
    await server.stopServer();
    try {
      await waitFor(() => a.heldTerminals().length === 0, { timeoutMs: 20_000, message: 'leases still counted as held with the database down' });
      // the reason recorded (TERMINAL_LEASE_LOST): the database could not be reached to renew them
      expect(events.filter((e) => e.endsWith(' unreachable'))).toHaveLength(30);
      expect(a.failures).toBeGreaterThan(0);
    } finally {
      await server.startServer();
    }
    await waitFor(() => a.heldTerminals().length === 30, { timeoutMs: 20_000, message: 'leases not back after the database returned' });
    // nobody else took them, so nobody wrote with a newer token: the same ones hold
    expect(TERMINALS.map((t) => a.token(t))).toEqual(tokens);
  });

  it('a terminal that dials in is claimed by the daemon it reached; another daemon is told who drives it; the fair share leaves it alone', async () => {
    await freshDb();
    const a = manager('daemon-a');
    const b = manager('daemon-b');
    await Promise.all([a.start(), b.start()]);
    await waitFor(() => counts([a, b]).join() === '15,15', { timeoutMs: 20_000, message: 'not 15/15' });
    const got = await b.claim('dialin-1');
    expect(got).toMatchObject({ token: expect.any(Number) });
    // the same terminal reaching the other daemon (a balancer in front): refused with the holder's name
    expect(await a.claim('dialin-1')).toEqual({ owner: 'daemon-b' });
    // heartbeats neither give the claimed lease back nor count it in the share
    for (let i = 0; i < 3; i++) await Promise.all([a.tick(), b.tick()]);
    expect(b.token('dialin-1')).toBe((got as { token: number }).token);
    expect(counts([a, b]).join()).toBe('15,16');
    // its session at b ends: the next daemon it reaches takes it, with a larger token
    await b.unclaim('dialin-1');
    const again = await a.claim('dialin-1');
    expect((again as { token: number }).token).toBeGreaterThan((got as { token: number }).token);
  });
});
