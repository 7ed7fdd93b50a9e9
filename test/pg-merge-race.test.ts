// Device-originated changes to ONE user merged by two daemons at the same
// moment, on one real PostgreSQL (issue 15: "resolve in one transaction each,
// in a defined order, with nothing lost").
//
// The order is the order in which the writers get the user's advisory lock
// (src/store/pg/backend.ts, lockUsers): the first transaction commits and
// takes its feed number; the second reads the first's committed record, fills
// only the fields still vacant (src/model/merge.ts) and takes the next number.
// So the server's final record must be merge(merge(before, first), second),
// whichever came first.
//
// To make the interleaving certain rather than likely, a forced round holds
// the user's advisory lock from a third connection until BOTH merge
// transactions are queued behind it (seen in pg_locks), then lets go.
//   1. the store: two PgSiteStore instances calling ingest for one user at
//      once, 200 rounds, half forced, half racing freely;
//   2. whole daemons: two ClusterNodes (sessions, engine, leases) each driving
//      two simulated terminals; the same user is enrolled or edited on a
//      terminal of each daemon at once, with different vacant fields filled,
//      and every terminal must converge to the ordered result (50 rounds,
//      every other one forced).
// Also: a deadlock (40P01) is retried, counted (PgDatabase.retries) and
// logged; a merge waiting for a user's lock past the lease TTL does not cost
// its daemon its leases (the fence is checked after the user locks).
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode } from '../src/cluster/node.js';
import { mergeDeviceIntoServer, usersEqual } from '../src/model/merge.js';
import { emptyUser, structuredCloneUser, userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import type { IngestBatch } from '../src/store/backend.js';
import { PgSiteStore, userLockKey } from '../src/store/pg/backend.js';
import { MonitoringEvent, type MergeResult } from '../src/store/types.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-merge-race.test.ts SKIPPED: ${reason}\n`);

const silent = pino({ level: process.env.TEST_LOG ?? 'silent' });

/** the advisory lock of a user as pg_locks shows it: a bigint key is (classid, objid) = (high, low) 32 bits, objsubid 1 */
function lockParts(id: string): [string, string] {
  const k = BigInt.asUintN(64, BigInt(userLockKey(id)));
  return [(k >> 32n).toString(), (k & 0xffffffffn).toString()];
}

/**
 * Holds user `id`'s advisory lock on a connection of its own; release() lets
 * the queued writers go. waiters() counts the transactions queued behind it.
 */
async function holdUserLock(url: string, id: string): Promise<{ waiters(): Promise<number>; release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {}); // a server stopped under a failed test: the assertion says what went wrong
  await c.connect();
  await c.query('BEGIN');
  await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [userLockKey(id)]);
  const [classid, objid] = lockParts(id);
  return {
    async waiters() {
      const r = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1`,
        [classid, objid],
      );
      return r.rows[0]!.n;
    },
    async release() {
      await c.query('COMMIT');
      await c.end();
    },
  };
}

/** the record both daemons must end with: the first committed change merged, then the second */
function ordered(before: UserRecord | null, first: UserRecord, second: UserRecord): UserRecord {
  return mergeDeviceIntoServer(mergeDeviceIntoServer(before, first).record, second).record;
}

const card = (s: string) => Buffer.from(s).toString('hex');

describe.skipIf(reason !== null)(`one user merged by two daemons at once, one PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('store level: 200 rounds of two ingests of one user at once; each is one transaction, in feed order, the second fills only what stayed vacant', { timeout: 180_000 }, async () => {
    const url = await server.createDatabase();
    const a = await PgSiteStore.open({ url, writerId: 'store-a', listen: false });
    const b = await PgSiteStore.open({ url, writerId: 'store-b', listen: false });
    try {
      for (const t of ['TA', 'TB']) await a.upsertTerminal({ id: t, direction: 'dial' });
      const ROUNDS = 200;
      const LANES = 8;
      let forcedSeen = 0;
      const firstWins = { TA: 0, TB: 0 };
      let expectedFeed = 0;

      const round = async (i: number) => {
        const id = `r${String(i).padStart(3, '0')}`;
        const kind = i % 2 === 0 ? 'edit' : 'enroll';
        const forced = i % 4 < 2;
        let before: UserRecord | null = null;
        if (kind === 'edit') {
          before = userFromJson({ id, name: `Server ${id}` });
          await a.putUser(before);
          expectedFeed++;
        }
        // A: a card (and, contested, the phrase or the name); B: a start time (and the contested field)
        const devA = structuredCloneUser(before ?? emptyUser(id));
        const devB = structuredCloneUser(before ?? emptyUser(id));
        if (kind === 'edit') {
          devA.phrase = `phrase from A ${id}`;
          devB.phrase = `phrase from B ${id}`;
        } else {
          devA.name = `Name from A ${id}`;
          devB.name = `Name from B ${id}`;
        }
        devA.cards = [{ type: 1, data: Buffer.from(`card-A-${id}`) }];
        devB.setting.startTime = 1_700_000_000 + i;
        const batch = (t: 'TA' | 'TB', user: UserRecord): IngestBatch => ({ terminalId: t, merges: [{ user, ctx: { terminalId: t, eventId: i + 1 } }], advance: null });

        const hold = forced ? await holdUserLock(url, id) : null;
        const pa = a.ingest(batch('TA', devA));
        const pb = b.ingest(batch('TB', devB));
        if (hold) {
          // both merge transactions are queued behind the held lock: they run truly at the same moment
          await waitFor(async () => (await hold.waiters()) === 2, { timeoutMs: 30_000, message: `${id}: the two merges did not both wait for the user's lock` });
          forcedSeen++;
          await hold.release();
        }
        const [[ra], [rb]] = (await Promise.all([pa, pb])) as [[MergeResult], [MergeResult]];
        expectedFeed += 2;

        // both committed, each changed the record once, with distinct feed numbers
        expect(ra.changed && rb.changed, `${id}: a merge was lost: ${JSON.stringify([ra.filled, rb.filled])}`).toBe(true);
        expect(ra.seq).not.toBeNull();
        expect(rb.seq).not.toBeNull();
        expect(ra.seq).not.toBe(rb.seq);
        const aFirst = ra.seq! < rb.seq!;
        firstWins[aFirst ? 'TA' : 'TB']++;
        const [first, second] = aFirst ? [ra, rb] : [rb, ra];
        const [devFirst, devSecond] = aFirst ? [devA, devB] : [devB, devA];

        // the first keeps its fields; the second filled only what stayed vacant
        const contested = kind === 'edit' ? 'phrase' : 'name';
        expect(first.filled).toContain(contested);
        expect(second.filled).toEqual([aFirst ? 'startTime' : 'cards']);
        expect(first.created).toBe(kind === 'enroll');
        expect(second.created).toBe(false);
        const want = ordered(before, devFirst, devSecond);
        const got = (await a.getUser(id))!;
        expect(usersEqual(got, want), `${id}: server ${JSON.stringify({ n: got.name, p: got.phrase, c: got.cards.length, s: got.setting.startTime })}`).toBe(true);
        expect(got.cards.map((c) => c.data.toString())).toEqual([`card-A-${id}`]);
        expect(got.setting.startTime).toBe(1_700_000_000 + i);
        expect(kind === 'edit' ? got.phrase : got.name).toBe(kind === 'edit' ? devFirst.phrase : devFirst.name);
        // the second transaction's result is the record now; its number is the user's feed number
        expect(usersEqual(second.record, got)).toBe(true);
        const seqNow = (await a.db.query<{ seq: number }>('SELECT seq FROM users WHERE id = $1', [id])).rows[0]!.seq;
        expect(seqNow).toBe(second.seq);

        // one monitoring event per change, in commit order, from the right terminal
        const ev = (await a.db.query<{ id: number; type: string; terminal_id: string; detail: string }>('SELECT id, type, terminal_id, detail FROM events WHERE user_id = $1 ORDER BY id', [id])).rows;
        expect(ev.map((e) => [e.type, e.terminal_id])).toEqual([
          [MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE, aFirst ? 'TA' : 'TB'],
          [MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE, aFirst ? 'TB' : 'TA'],
        ]);
        expect(ev.map((e) => (JSON.parse(e.detail) as { filled: string[] }).filled)).toEqual([first.filled, second.filled]);
        expect([ev[0]!.id, ev[1]!.id]).toEqual([first.monitoringEventId, second.monitoringEventId]);
      };

      const lanes = Array.from({ length: LANES }, async (_, lane) => {
        for (let i = lane; i < ROUNDS; i += LANES) await round(i);
      });
      await Promise.all(lanes);
      expect(forcedSeen).toBe(ROUNDS / 2);
      // every change took exactly one feed number: nothing skipped, nothing doubled
      expect(await a.feedHead()).toBe(expectedFeed);
      const seqs = (await a.db.query<{ seq: number }>('SELECT seq FROM users ORDER BY seq')).rows.map((r) => r.seq);
      expect(new Set(seqs).size).toBe(ROUNDS);
      // no retry was needed: the per-user lock serializes, it does not abort
      process.stderr.write(`pg-merge-race (store): ${ROUNDS} rounds, first committed: A ${firstWins.TA}, B ${firstWins.TB}; retries A ${a.db.retries}, B ${b.db.retries}\n`);
      expect(a.db.retries + b.db.retries).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a deadlock between two transactions (40P01) is retried, counted and logged; both commit', { timeout: 60_000 }, async () => {
    const url = await server.createDatabase();
    const lines: { msg: string; sqlstate?: string; operation?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
    const s = await PgSiteStore.open({ url, writerId: 'dl', listen: false, logger });
    try {
      await s.db.query('CREATE TABLE race_rows (id int PRIMARY KEY, v int NOT NULL)');
      await s.db.query('INSERT INTO race_rows VALUES (1, 0), (2, 0)');
      let firstDone = 0;
      let open!: () => void;
      const bothHoldOne = new Promise<void>((r) => (open = r));
      const cross = (x: number, y: number) =>
        s.db.tx(`cross-${x}-${y}`, async (c) => {
          await c.query('UPDATE race_rows SET v = v + 1 WHERE id = $1', [x]);
          if (++firstDone === 2) open();
          await bothHoldOne; // both now hold one row and want the other's
          await c.query('UPDATE race_rows SET v = v + 1 WHERE id = $1', [y]);
        });
      await Promise.all([cross(1, 2), cross(2, 1)]);
      expect((await s.db.query<{ v: number }>('SELECT v FROM race_rows ORDER BY id')).rows.map((r) => r.v)).toEqual([2, 2]);
      expect(s.db.retries).toBe(1);
      const retried = lines.filter((l) => l.msg === 'PostgreSQL transaction retried');
      expect(retried).toHaveLength(1);
      expect(retried[0]).toMatchObject({ sqlstate: '40P01' });
      expect(retried[0]!.operation).toMatch(/^cross-/);
    } finally {
      await s.close();
    }
  });

  it("a merge waiting for a user's lock longer than the lease TTL does not cost its daemon the leases of its terminals", { timeout: 120_000 }, async () => {
    // another daemon's long transaction on one user (a big batch, a slow
    // disk) holds that user's lock past this daemon's lease TTL while a
    // terminal of this daemon reports a change of the same user
    const url = await server.createDatabase();
    const sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    const lines: { msg: string }[] = [];
    const log = pino({ level: 'info' }, { write: (x: string) => void lines.push(JSON.parse(x) as { msg: string }) });
    const store = await PgSiteStore.open({ url, writerId: 'daemon-slow', logger: log });
    let node: ClusterNode | null = null;
    try {
      await store.setSyncMode('all');
      const ports = sim.ports();
      const targets = sim.terminals.map((t, i) => ({ id: `t${t.index}`, host: '127.0.0.1', port: ports[i]! }));
      const LEASE_SEC = 3;
      node = await ClusterNode.start({ store, targets, commKey: DEV_COMM_KEY, leaseSec: LEASE_SEC, renewEveryMs: 500, log, heartbeatSec: 2, requestTimeoutMs: 10_000, reconnectMinMs: 20, reconnectMaxMs: 200, engine: { dbRetryMs: 50 } });
      await waitFor(() => node!.leases.heldTerminals().length === 2, { timeoutMs: 30_000, message: 'leases not taken' });
      const [t1, t2] = sim.terminals as [(typeof sim.terminals)[number], (typeof sim.terminals)[number]];
      await t1.enroll(userFromJson({ id: 'warm', name: 'Warm Up' }));
      await waitFor(() => t2.getUser('warm') !== undefined, { timeoutMs: 30_000, message: 'warm-up user did not reach t2' });

      const hold = await holdUserLock(url, 'slow');
      const heldFrom = Date.now();
      try {
        await t1.enroll(userFromJson({ id: 'slow', name: 'Slow One' }));
        await waitFor(async () => (await hold.waiters()) === 1, { timeoutMs: 30_000, message: "t1's merge did not wait for the held lock" });
        // twice the TTL: the leases must be renewed meanwhile, the other terminal synced
        await t2.enroll(userFromJson({ id: 'other', name: 'Other One' }));
        await waitFor(() => t1.getUser('other') !== undefined, { timeoutMs: 30_000, message: "t2's enrollment did not reach t1 while the merge of another user waited" });
        while (Date.now() - heldFrom < 2 * LEASE_SEC * 1000) await new Promise((r) => setTimeout(r, 100));
        expect(lines.filter((l) => l.msg === 'terminal lease lost').length, JSON.stringify(lines.filter((l) => /lease/.test(l.msg)).slice(0, 6))).toBe(0);
        expect(node.leases.heldTerminals().length).toBe(2);
      } finally {
        await hold.release();
      }
      await waitFor(() => t2.getUser('slow') !== undefined, { timeoutMs: 30_000, message: "the held merge did not reach t2 after the lock's release" });
      expect((await store.getUser('slow'))?.name).toBe('Slow One');
    } finally {
      await node?.stop().catch(() => {});
      await store.close().catch(() => {});
      await sim.close();
    }
  });

  // A device edit made while the terminal's earlier merge is in flight: the
  // lane holds back the next pull meanwhile, and a push of the edited user
  // (PUT_USERS overwrites) would replace the edit before it is pulled. The
  // engine holds such a push back until the terminal's change is merged
  // (src/sync/push.ts holdBack). On PostgreSQL a merge can wait for another
  // daemon's merge of the same user, which widens the window. Deterministic
  // here: the earlier merge is held by a user lock.
  it('a device edit logged while the terminal\'s previous merge is in flight is pulled before a push of the same user can overwrite it', { timeout: 120_000 }, async () => {
    const url = await server.createDatabase();
    const sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    const store = await PgSiteStore.open({ url, writerId: 'daemon-1', logger: silent });
    let node: ClusterNode | null = null;
    try {
      await store.setSyncMode('all');
      const ports = sim.ports();
      const targets = sim.terminals.map((t, i) => ({ id: `t${t.index}`, host: '127.0.0.1', port: ports[i]! }));
      node = await ClusterNode.start({ store, targets, commKey: DEV_COMM_KEY, leaseSec: 10, log: silent, heartbeatSec: 2, requestTimeoutMs: 10_000, reconnectMinMs: 20, reconnectMaxMs: 200, engine: { dbRetryMs: 50 } });
      await waitFor(() => node!.leases.heldTerminals().length === 2, { timeoutMs: 30_000, message: 'leases not taken' });
      const [t1, t2] = sim.terminals as [SimTerminal, SimTerminal];
      const y = userFromJson({ id: 'y', name: 'Yvonne' });
      await store.putUser(y);
      await waitFor(() => t1.getUser('y') !== undefined && t2.getUser('y') !== undefined, { timeoutMs: 30_000, message: 'y not on both terminals' });

      const hold = await holdUserLock(url, 'x');
      try {
        await t1.enroll(userFromJson({ id: 'x', name: 'Xavier' })); // t1's merge of x now waits for the lock
        await waitFor(async () => (await hold.waiters()) === 1, { timeoutMs: 30_000, message: "t1's merge of x did not wait" });
        await t1.edit('y', { startTime: 1_700_000_123 }); // a vacant field filled at t1
        await store.putUser({ ...structuredCloneUser(y), phrase: 'set by an administrator' }); // meanwhile the server changes y
        await waitFor(() => t2.getUser('y')?.phrase === 'set by an administrator', { timeoutMs: 30_000, message: "the server's change of y did not reach t2" });
      } finally {
        await hold.release();
      }
      // the server keeps its phrase and takes the start time filled at t1; every terminal ends with both
      await waitFor(async () => {
        const u = await store.getUser('y');
        return u !== null && u.setting.startTime === 1_700_000_123 && sim.terminals.every((t) => { const h = t.getUser('y'); return h !== undefined && usersEqual(h, u); });
      }, { timeoutMs: 30_000, message: `t1's edit of y was lost: server ${JSON.stringify(await store.getUser('y').then((u) => u && { phrase: u.phrase, startTime: u.setting.startTime }))}, t1 ${JSON.stringify({ phrase: t1.getUser('y')?.phrase, startTime: t1.getUser('y')?.setting.startTime })}` });
      expect((await store.getUser('y'))!.phrase).toBe('set by an administrator');
    } finally {
      await node?.stop().catch(() => {});
      await store.close().catch(() => {});
      await sim.close();
    }
  });

  describe('two daemons, four simulated terminals', () => {
    let sim: Simulator;
    const stores: PgSiteStore[] = [];
    const nodes: ClusterNode[] = [];
    afterAll(async () => {
      for (const n of nodes) await n.stop().catch(() => {});
      for (const s of stores) await s.close().catch(() => {});
      await sim?.close();
    }, 60_000);

    it('50 rounds: one user enrolled or edited on a terminal of each daemon at once; both merges commit in order and every terminal converges to the ordered result', { timeout: 300_000 }, async () => {
      const url = await server.createDatabase();
      sim = await Simulator.start({ terminals: 4, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
      const ports = sim.ports();
      const targets = sim.terminals.map((t, i) => ({ id: `t${t.index}`, host: '127.0.0.1', port: ports[i]! }));
      // what each daemon's merges committed (the engine's own calls to the store, observed)
      const merged = new Map<string, { daemon: string; terminal: string; r: MergeResult }[]>();
      for (const name of ['a', 'b']) {
        const store = await PgSiteStore.open({ url, writerId: `daemon-${name}`, logger: silent });
        stores.push(store);
        const ingest = store.ingest.bind(store);
        store.ingest = async (batch: IngestBatch) => {
          const out = await ingest(batch);
          out.forEach((r, k) => {
            const id = batch.merges[k]!.user.id;
            merged.set(id, [...(merged.get(id) ?? []), { daemon: name, terminal: batch.merges[k]!.ctx.terminalId, r }]);
          });
          return out;
        };
        if (name === 'a') await store.setSyncMode('all');
        nodes.push(
          await ClusterNode.start({ store, targets, commKey: DEV_COMM_KEY, leaseSec: 5, renewEveryMs: 500, log: silent, heartbeatSec: 2, requestTimeoutMs: 10_000, reconnectMinMs: 20, reconnectMaxMs: 200, engine: { dbRetryMs: 50 } }),
        );
      }
      const [na, nb] = nodes as [ClusterNode, ClusterNode];
      const [sa] = stores as [PgSiteStore, PgSiteStore];
      await waitFor(() => na.leases.heldTerminals().length === 2 && nb.leases.heldTerminals().length === 2, { timeoutMs: 30_000, message: 'leases not 2/2' });
      // the terminals of each daemon, as leased now (a lease that moved later fails the round that meets it)
      const heldA = na.leases.heldTerminals();
      const heldB = nb.leases.heldTerminals();
      const term = (id: string) => sim.terminal(Number(id.slice(1)))!;
      const holdsEverywhere = (u: UserRecord) => sim.terminals.every((t) => {
        const h = t.getUser(u.id);
        return h !== undefined && usersEqual(h, u);
      });
      // every terminal driven: a warm-up user reaches all four
      await term(na.leases.heldTerminals()[0]!).enroll(userFromJson({ id: 'warm', name: 'Warm Up' }));
      await waitFor(async () => {
        const u = await sa.getUser('warm');
        return u !== null && holdsEverywhere(u);
      }, { timeoutMs: 60_000, message: 'the warm-up user did not reach every terminal' });
      let expectedFeed = await sa.feedHead();

      const ROUNDS = 50;
      const firstWins = { a: 0, b: 0 };
      let forcedSeen = 0;
      const round = async (i: number, forced: boolean) => {
        const id = `u${String(i).padStart(2, '0')}`;
        const kind = i % 2 === 0 ? 'edit' : 'enroll';
        // a terminal of each daemon (the leases do not move in this test)
        const ta = heldA[i % 2]!;
        const tb = heldB[i % 2]!;
        let before: UserRecord | null = null;
        if (kind === 'edit') {
          before = userFromJson({ id, name: `Server ${id}` });
          await sa.putUser(before);
          expectedFeed++;
          await waitFor(() => holdsEverywhere(before!), { timeoutMs: 60_000, message: `${id}: the server's record did not reach every terminal before the edits` });
        }
        const hold = forced ? await holdUserLock(url, id) : null;
        const cardA = card(`card-A-${id}`);
        // at the same moment, a person at each terminal: A adds a card, B sets a start time; both the phrase (edit) or the name (enroll)
        const [devA, devB] = await Promise.all(
          kind === 'edit'
            ? [term(ta).edit(id, { phrase: `phrase at ${ta}`, addCards: [{ type: 1, data: cardA }] }), term(tb).edit(id, { phrase: `phrase at ${tb}`, startTime: 1_700_000_000 + i })]
            : [term(ta).enroll(userFromJson({ id, name: `Name at ${ta}`, cards: [{ type: 1, data: cardA }] })), term(tb).enroll(userFromJson({ id, name: `Name at ${tb}`, startTime: 1_700_000_000 + i }))],
        );
        if (hold) {
          await waitFor(async () => (await hold.waiters()) === 2, { timeoutMs: 60_000, message: `${id}: the two daemons' merges did not both wait for the user's lock` });
          forcedSeen++;
          await hold.release();
        }
        expectedFeed += 2;
        // both merges committed, one each, on the daemon driving the terminal
        await waitFor(() => (merged.get(id)?.filter((m) => m.r.changed).length ?? 0) >= 2, { timeoutMs: 60_000, message: `${id}: both merges did not commit` }).catch(async (e) => {
          const ring = (t: string) => term(t).eventsAfter(0, 100000).filter((x) => JSON.stringify(x).includes(id));
          throw new Error(`${(e as Error).message}: merged ${JSON.stringify(merged.get(id)?.map((m) => [m.daemon, m.terminal, m.r.filled, m.r.changed]))}; ${ta}/${tb} events ${JSON.stringify([ring(ta), ring(tb)])}; sessions ${sim.terminals.map((t) => `t${t.index}:${[...t.sessions].filter((x) => x.authenticated).length}`).join(' ')}; lanes ${JSON.stringify(nodes.map((n) => n.engine.laneDepths()))}; stats ${JSON.stringify(nodes.map((n) => n.engine.stats))}; leases ${JSON.stringify(nodes.map((n) => n.leases.heldTerminals()))}; locks ${JSON.stringify((await sa.db.query("SELECT locktype, granted, pid, mode, relation::regclass::text AS rel FROM pg_locks WHERE NOT granted")).rows)}`);
        });
        const changes = merged.get(id)!.filter((m) => m.r.changed);
        expect(changes.map((m) => `${m.daemon}:${m.terminal}`).sort()).toEqual([`a:${ta}`, `b:${tb}`].sort());
        changes.sort((x, y) => x.r.seq! - y.r.seq!);
        expect(changes[0]!.r.seq).toBeLessThan(changes[1]!.r.seq!);
        const aFirst = changes[0]!.daemon === 'a';
        firstWins[aFirst ? 'a' : 'b']++;
        const [devFirst, devSecond] = aFirst ? [devA, devB] : [devB, devA];
        const contested = kind === 'edit' ? 'phrase' : 'name';
        expect(changes[0]!.r.filled).toContain(contested);
        expect(changes[1]!.r.filled).toEqual([aFirst ? 'startTime' : 'cards']);
        const want = ordered(before, devFirst, devSecond);
        const got = (await sa.getUser(id))!;
        expect(usersEqual(got, want), `${id}: server ${JSON.stringify({ n: got.name, p: got.phrase, c: got.cards.length, s: got.setting.startTime })}, first ${changes[0]!.daemon}`).toBe(true);
        expect(got.cards.map((c) => c.data.toString('hex'))).toEqual([cardA]);
        expect(got.setting.startTime).toBe(1_700_000_000 + i);
        // one USER_UPDATE_SUCCESS_DEVICE per change, in commit order, from the terminal it came from
        const ev = (await sa.db.query<{ id: number; type: string; terminal_id: string }>(`SELECT id, type, terminal_id FROM events WHERE user_id = $1 AND type = $2 ORDER BY id`, [id, MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE])).rows;
        expect(ev.map((e) => e.terminal_id)).toEqual(changes.map((m) => m.terminal));
        expect(ev.map((e) => e.id)).toEqual(changes.map((m) => m.r.monitoringEventId));
        // every terminal converges to the ordered result (the two source terminals get it back, the others get it)
        await waitFor(() => holdsEverywhere(want), { timeoutMs: 60_000, message: `${id}: not every terminal holds the merged record: ${sim.terminals.map((t) => { const h = t.getUser(id); return `t${t.index}:${h ? `${h.name}/${h.phrase}/${h.cards.length}/${h.setting.startTime}` : '-'}`; }).join(' ')}` });
      };
      // one round at a time: a terminal's pull may merge the users of two
      // rounds in one transaction, taking their locks in one order, and two
      // of this test's holders each waiting for "both merges queued" could
      // then wait on each other, a wait the database cannot see. Every
      // other round is forced; the rest race freely (an edit lost in a free race
      // was the held-push case of the test above)
      for (let i = 0; i < ROUNDS; i++) await round(i, i % 2 === 0);
      expect(forcedSeen).toBe(ROUNDS / 2);
      // each change took exactly one feed number; distinct and increasing per user (checked above)
      expect(await sa.feedHead()).toBe(expectedFeed);
      expect(await sa.userCount()).toBe(ROUNDS + 1);
      // nothing lost afterwards either: every user, as the server holds it, on every terminal
      for (const u of (await sa.walkUsers({ limit: 1000 })).map((x) => x.user)) expect(holdsEverywhere(u), `${u.id} not on every terminal`).toBe(true);
      const retries = stores.map((s) => s.db.retries);
      process.stderr.write(`pg-merge-race (daemons): ${ROUNDS} rounds, first committed: a ${firstWins.a}, b ${firstWins.b}; retries ${retries.join('/')}; lease lost ${nodes.map((n) => n.engine.stats.leaseLost ?? 0).join('/')}\n`);
      for (const n of nodes) expect(n.engine.stats.leaseLost ?? 0).toBe(0);
    });
  });
});
