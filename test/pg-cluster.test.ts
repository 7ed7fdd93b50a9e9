// Several daemons' stores on one real PostgreSQL (src/store/pg/backend.ts):
// what only shows with more than one writer. A change committed by one wakes
// the other's push lanes (LISTEN/NOTIFY, a slow poll while LISTEN is down);
// feed numbers written by two daemons at once are never skipped by a reader
// moving its cursor meanwhile; two daemons merging the same users at once
// lose no filled field; a cursor write with a lease token from before a
// takeover is refused and writes nothing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emptyUser, type UserRecord } from '../src/model/user.js';
import { LeaseLostError } from '../src/store/errors.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { LeaseTable } from '../src/store/pg/leases.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-cluster.test.ts SKIPPED: ${reason}\n`);

function person(id: string, name = `Person ${id}`): UserRecord {
  const u = emptyUser(id);
  u.name = name;
  return u;
}

describe.skipIf(reason !== null)(`several daemons on one PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  const open: PgSiteStore[] = [];
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close().catch(() => {})));
  });

  async function daemons(n: number, opts: { pollMs?: number } = {}): Promise<PgSiteStore[]> {
    const url = await server.createDatabase();
    const out: PgSiteStore[] = [];
    // one after the other: the first migrates (the others would wait on its lock anyway)
    for (let i = 0; i < n; i++) out.push(await PgSiteStore.open({ url, writerId: `d${i}`, pollMs: opts.pollMs, connectTimeoutMs: 2000 }));
    open.push(...out);
    return out;
  }

  it("a change committed by one daemon wakes the other's feed listener with the head; an owed entry too", async () => {
    const [a, b] = await daemons(2);
    await a.upsertTerminal({ id: 'T', direction: 'dial' });
    const heard: number[] = [];
    b.onFeedChange((h) => heard.push(h));
    const { seq } = await a.putUser(person('u1'));
    await waitFor(() => heard.includes(seq!), { message: 'b was not woken by a\'s change' });
    const before = heard.length;
    await a.owe('T', ['u1']);
    await waitFor(() => heard.length > before, { message: 'b was not woken by a\'s owed entry' });
    expect(b.feedListener!.received).toBeGreaterThanOrEqual(2);
  });

  it('LISTEN cut: a slow poll of the head wakes the lanes until it is back; after a PostgreSQL restart it listens again', async () => {
    const [a, b] = await daemons(2, { pollMs: 200 });
    const heard: number[] = [];
    b.onFeedChange((h) => heard.push(h));
    b.feedListener!.simulateBreak();
    expect(b.feedListener!.listening).toBe(false);
    const received = b.feedListener!.received;
    const { seq } = await a.putUser(person('p1'));
    await waitFor(() => heard.includes(seq!), { message: 'the poll did not wake b' });
    await waitFor(() => b.feedListener!.listening, { message: 'LISTEN did not come back' });

    await server.stopServer();
    await waitFor(() => !b.feedListener!.listening, { message: 'b still thinks it listens with the server down' });
    await server.startServer();
    await waitFor(() => b.feedListener!.listening, { timeoutMs: 20_000, message: 'b did not listen again after the restart' });
    const r = await a.putUser(person('p2'));
    await waitFor(() => heard.includes(r.seq!), { message: 'b was not woken after the restart' });
    expect(b.feedListener!.received).toBeGreaterThan(received);
  });

  it('two daemons writing the feed at once: a reader moving its cursor meanwhile misses no entry', async () => {
    const [a, b, reader] = await daemons(3);
    await reader.upsertTerminal({ id: 'T', direction: 'dial' });
    const N = 150;
    const write = async (s: PgSiteStore, prefix: string) => {
      // a few writes in flight at once per daemon
      const lanes = Array.from({ length: 4 }, async (_, lane) => {
        for (let i = lane; i < N; i += 4) await s.putUser(person(`${prefix}${String(i).padStart(3, '0')}`));
      });
      await Promise.all(lanes);
    };
    const seen = new Set<string>();
    let writing = true;
    const reading = (async () => {
      for (;;) {
        const batch = await reader.readFeed('T', { limit: 7 });
        for (const e of batch.entries) seen.add(e.userId);
        await reader.recordPush({ terminalId: 'T', feed: { from: batch.from, to: batch.upTo } });
        if (!writing && batch.entries.length === 0 && batch.upTo === (await reader.feedHead())) return;
      }
    })();
    await Promise.all([write(a, 'a'), write(b, 'b')]);
    writing = false;
    await reading;
    expect(seen.size).toBe(2 * N);
    expect(await reader.getFeedCursor('T')).toBe(await reader.feedHead());
    expect(await reader.feedHead()).toBe(2 * N);
  });

  it('two daemons merging the same users at once: each merge is one transaction in turn, no filled field is lost', async () => {
    const [a, b] = await daemons(2);
    for (const t of ['TA', 'TB']) await a.upsertTerminal({ id: t, direction: 'dial' });
    const ids = Array.from({ length: 20 }, (_, i) => `m${i}`);
    for (const id of ids) await a.putUser(person(id, 'server name'));
    const head0 = await a.feedHead();
    const fromA = ids.map((id) => {
      const u = person(id, 'device A');
      u.cards = [{ type: 1, data: Buffer.from(`card-${id}`) }];
      return u;
    });
    const fromB = ids.map((id) => {
      const u = person(id, 'device B');
      u.phrase = `phrase-${id}`;
      return u;
    });
    // each daemon merges its terminal's records in small batches, both at once
    const run = async (s: PgSiteStore, t: string, users: UserRecord[]) => {
      for (let i = 0; i < users.length; i += 3) {
        await s.ingest({ terminalId: t, merges: users.slice(i, i + 3).map((user, k) => ({ user, ctx: { terminalId: t, eventId: i + k + 1 } })), advance: null });
      }
    };
    await Promise.all([run(a, 'TA', fromA), run(b, 'TB', [...fromB].reverse())]);
    for (const id of ids) {
      const u = (await a.getUser(id))!;
      expect(u.name).toBe('server name'); // the server's field wins
      expect(u.cards.map((c) => c.data.toString())).toEqual([`card-${id}`]); // filled by A
      expect(u.phrase).toBe(`phrase-${id}`); // filled by B
    }
    // each merge changed the record once: two feed numbers per user, no more, no fewer
    expect(await a.feedHead()).toBe(head0 + 2 * ids.length);
  });

  it("a cursor write with a token from before another daemon's takeover is refused and writes nothing", async () => {
    const [a, b] = await daemons(2);
    await a.upsertTerminal({ id: 'T', direction: 'dial' });
    await a.putUser(person('x'));
    const leases = new LeaseTable(a.db);
    await leases.ensureTerminals(['T']);
    const [mine] = await leases.acquire('daemon-a', ['T'], 1, 100);
    await new Promise((r) => setTimeout(r, 200)); // a is paused past its lease
    const [theirs] = await leases.acquire('daemon-b', ['T'], 1, 60_000);
    expect(theirs!.token).toBeGreaterThan(mine!.token);

    const head = await a.feedHead();
    const batch = await a.readFeed('T', { limit: 10 });
    await expect(a.recordPush({ terminalId: 'T', fence: mine!.token, feed: { from: batch.from, to: batch.upTo }, ok: [{ userId: 'x' }] })).rejects.toBeInstanceOf(LeaseLostError);
    await expect(a.setFeedCursor('T', head, mine!.token)).rejects.toBeInstanceOf(LeaseLostError);
    await expect(a.setLogPosition('T', { logEpoch: 1, cursor: 50 }, mine!.token)).rejects.toBeInstanceOf(LeaseLostError);
    await expect(
      a.ingest({ terminalId: 'T', fence: mine!.token, merges: [{ user: person('y'), ctx: { terminalId: 'T', eventId: 9 } }], advance: { logEpoch: 1, cursor: 9 } }),
    ).rejects.toBeInstanceOf(LeaseLostError);
    // nothing of those was written
    expect(await a.getFeedCursor('T')).toBe(0);
    expect(await a.getLogPosition('T')).toEqual({ logEpoch: null, cursor: 0 });
    expect(await a.getUser('y')).toBeNull();
    expect(await a.feedHead()).toBe(head);
    // the new holder writes with its token
    expect((await b.recordPush({ terminalId: 'T', fence: theirs!.token, feed: { from: batch.from, to: batch.upTo } })).advanced).toBe(true);
    expect(await b.getFeedCursor('T')).toBe(head);
  });

  it('PostgreSQL stopped: writes fail with StoreWriteError, monitoring events wait in memory, and everything resumes after the restart', async () => {
    const [a] = await daemons(1);
    await a.upsertTerminal({ id: 'T', direction: 'dial' });
    await server.stopServer();
    try {
      await expect(a.putUser(person('while-down'))).rejects.toMatchObject({ name: 'StoreWriteError', message: expect.stringMatching(/PostgreSQL unreachable/) });
      expect(await a.healthy()).toBe(false);
      expect(await a.recordEventDurably({ type: 'SERVER_DB_SAVE_FAIL', terminalId: 'T', detail: 'down' })).toEqual({ stored: false, pending: 1 });
      expect(await a.flushPendingEvents()).toBe(0);
    } finally {
      await server.startServer();
    }
    expect(await a.healthy()).toBe(true);
    expect(await a.flushPendingEvents()).toBe(1);
    const r = await a.putUser(person('after'));
    expect(r).toMatchObject({ created: true, changed: true });
    const ev = await a.db.query(`SELECT type, detail FROM events WHERE terminal_id = 'T'`);
    expect(ev.rows).toEqual([{ type: 'SERVER_DB_SAVE_FAIL', detail: 'down' }]);
  });
});
