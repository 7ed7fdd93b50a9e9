// The contract every SiteStore backend keeps (src/store/backend.ts), written
// once: test/store-contract.test.ts runs it for SQLite; a PostgreSQL backend
// calls describeStoreContract with its own factory.
//
//   describeStoreContract('postgres', async () => {
//     const store = await openPgBackend(...);
//     return { store, close: () => store.close() };
//   });
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { emptyUser, hashPin, type UserRecord } from '../../src/model/user.js';
import type { SiteStore } from '../../src/store/backend.js';
import { StoreWriteError } from '../../src/store/errors.js';

export interface ContractBackend {
  /** a fresh, empty store (schema current, no users, no terminals) */
  store: SiteStore;
  /** closes it and removes whatever the factory created */
  close(): Promise<void>;
}

function person(id: string, name = `Person ${id}`, groups: number[] = []): UserRecord {
  const u = emptyUser(id);
  u.name = name;
  u.accessGroups = groups;
  return u;
}

export function describeStoreContract(name: string, makeBackend: () => Promise<ContractBackend>): void {
  describe(`SiteStore contract: ${name}`, () => {
    let b: ContractBackend;
    let s: SiteStore;
    beforeEach(async () => {
      b = await makeBackend();
      s = b.store;
      for (const id of ['A', 'B', 'C']) await s.upsertTerminal({ id, direction: 'dial', approved: true });
    });
    afterEach(async () => {
      await b.close();
    });

    it('every change takes the next number; an unchanged put takes none; a new terminal starts at 0', async () => {
      expect(await s.feedHead()).toBe(0);
      const r1 = await s.putUser(person('u1'));
      const r2 = await s.putUser(person('u2'));
      expect(r1).toMatchObject({ created: true, changed: true });
      expect(r2.seq).toBeGreaterThan(r1.seq!);
      expect(await s.putUser(person('u2'))).toMatchObject({ changed: false, seq: null });
      expect(await s.feedHead()).toBe(r2.seq);
      expect(await s.getFeedCursor('A')).toBe(0);
      expect(await s.getFeedCursor('nope')).toBeNull();
      const batch = await s.readFeed('A', { limit: 10 });
      expect(batch.entries.map((e) => [e.userId, e.seq, e.user?.name])).toEqual([
        ['u1', r1.seq, 'Person u1'],
        ['u2', r2.seq, 'Person u2'],
      ]);
      expect(batch).toMatchObject({ from: 0, upTo: r2.seq });
    });

    it('coalesces: a user changed three times is one entry, at its latest number', async () => {
      await s.putUser(person('x', 'one'));
      await s.putUser(person('y'));
      await s.putUser(person('x', 'two'));
      const last = await s.putUser(person('x', 'three'));
      const batch = await s.readFeed('B', { limit: 100 });
      expect(batch.entries.map((e) => e.userId)).toEqual(['y', 'x']);
      expect(batch.entries[1]).toMatchObject({ seq: last.seq, user: { name: 'three' } });
    });

    it('a full batch ends at its last entry; a short one at the head; `after` reads behind a batch in flight', async () => {
      for (let i = 0; i < 5; i++) await s.putUser(person(`p${i}`));
      const first = await s.readFeed('A', { limit: 2 });
      expect(first.entries.map((e) => e.userId)).toEqual(['p0', 'p1']);
      expect(first.upTo).toBe(first.entries[1].seq);
      const second = await s.readFeed('A', { after: first.upTo, limit: 10 });
      expect(second.entries.map((e) => e.userId)).toEqual(['p2', 'p3', 'p4']);
      expect(second).toMatchObject({ from: first.upTo, upTo: await s.feedHead() });
      // nothing was recorded: the stored cursor is still 0
      expect((await s.readFeed('A', { limit: 1 })).from).toBe(0);
    });

    it('recordPush moves the cursor only from where the batch was read, with its answers, in one step', async () => {
      await s.putUser(person('ok1'));
      await s.putUser(person('bad'));
      await s.putUser(person('ok2'));
      const batch = await s.readFeed('A', { limit: 10 });
      const r = await s.recordPush({
        terminalId: 'A',
        feed: { from: batch.from, to: batch.upTo },
        fence: 1,
        ok: [{ userId: 'ok1' }, { userId: 'ok2' }],
        refused: [{ userId: 'bad', code: 11, reason: 'DUPLICATE_CARD' }],
        events: [{ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: 'A', userId: 'ok1' }],
      });
      expect(r.advanced).toBe(true);
      expect(await s.getFeedCursor('A')).toBe(batch.upTo);
      expect((await s.readFeed('A', { limit: 10 })).entries).toEqual([]);
      expect(await s.listPushFailures({ terminalId: 'A' })).toMatchObject([{ terminalId: 'A', userId: 'bad', status: 11, reason: 'DUPLICATE_CARD' }]);
      // a batch read at an older position (its predecessor was not recorded) moves nothing
      expect((await s.recordPush({ terminalId: 'A', feed: { from: 0, to: batch.upTo + 5 } })).advanced).toBe(false);
      expect(await s.getFeedCursor('A')).toBe(batch.upTo);
      // a later success clears the refusal
      await s.recordPush({ terminalId: 'A', ok: [{ userId: 'bad' }] });
      expect(await s.listPushFailures({ terminalId: 'A' })).toEqual([]);
      // the other terminals were not moved
      expect(await s.getFeedCursor('B')).toBe(0);
    });

    it('deleting the newest user takes a new number: terminals past the old head still get the delete', async () => {
      await s.putUser(person('first'));
      const last = await s.putUser(person('last'));
      await s.setFeedCursor('A', last.seq!);
      await s.deleteUser('last');
      expect(await s.feedHead()).toBeGreaterThan(last.seq!);
      expect((await s.readFeed('A', { limit: 10 })).entries).toMatchObject([{ userId: 'last', user: null }]);
    });

    it('a delete is a tombstone in the feed; it is collected once every cursor passed it, and its number is never reused', async () => {
      await s.putUser(person('d'));
      expect(await s.deleteUser('d')).toBe(true);
      expect(await s.deleteUser('d')).toBe(false);
      expect(await s.getUser('d')).toBeNull();
      const head = await s.feedHead();
      const batch = await s.readFeed('A', { limit: 10 });
      expect(batch.entries).toEqual([{ seq: head, userId: 'd', user: null }]);
      expect(await s.collectTombstones()).toBe(0);
      for (const t of ['A', 'B']) await s.setFeedCursor(t, head, 1);
      expect(await s.collectTombstones()).toBe(0); // C has not passed it
      await s.deleteTerminal('C');
      expect(await s.getFeedCursor('C')).toBeNull();
      expect(await s.collectTombstones()).toBe(1);
      expect(await s.feedHead()).toBe(head);
      const again = await s.putUser(person('d', 'back'));
      expect(again).toMatchObject({ created: true });
      expect(again.seq).toBeGreaterThan(head);
    });

    it("scope: only users holding one of the terminal's groups; tombstones always", async () => {
      await s.putUser(person('g1', 'in', [1]));
      await s.putUser(person('g2', 'out', [2]));
      await s.putUser(person('g12', 'both', [2, 1]));
      await s.putUser(person('gone'));
      await s.deleteUser('gone');
      const batch = await s.readFeed('A', { limit: 10, groups: [1] });
      expect(batch.entries.map((e) => e.userId)).toEqual(['g1', 'g12', 'gone']);
      expect(batch.upTo).toBe(await s.feedHead());
      expect((await s.readFeed('A', { limit: 10, groups: [] })).entries.map((e) => e.userId)).toEqual(['gone']);
    });

    it('an unchanged entry is the same object for every reader (encoded once)', async () => {
      await s.putUser(person('shared'));
      const a = await s.readFeed('A', { limit: 1 });
      const b2 = await s.readFeed('B', { limit: 1 });
      expect(a.entries[0].user).toBe(b2.entries[0].user);
      await s.putUser(person('shared', 'changed'));
      const c = await s.readFeed('C', { limit: 1 });
      expect(c.entries[0].user).not.toBe(a.entries[0].user);
      expect(c.entries[0].user!.name).toBe('changed');
    });

    it('ingest: merges, the log position, events and pull failures in one step; the source is skipped when it holds the record', async () => {
      const results = await s.ingest({
        terminalId: 'A',
        merges: [{ user: person('dev1', 'from A'), ctx: { terminalId: 'A', eventId: 10 } }],
        advance: { logEpoch: 7, cursor: 10 },
        fence: 3,
        events: [{ type: 'USER_DELETED_ON_DEVICE', terminalId: 'A', userId: 'zz' }],
        pullFailed: [{ userId: 'bad', reason: 'unknown format' }],
      });
      expect(results).toHaveLength(1);
      expect(results[0]).toMatchObject({ created: true, changed: true, differsFromDevice: false, enqueued: [] });
      expect(results[0].seq).toBe(await s.feedHead());
      expect(await s.getLogPosition('A')).toEqual({ logEpoch: 7, cursor: 10 });
      expect((await s.readFeed('A', { limit: 10 })).entries).toEqual([]);
      expect((await s.readFeed('B', { limit: 10 })).entries.map((e) => e.userId)).toEqual(['dev1']);
      expect(await s.listPullFailures({ terminalId: 'A' })).toMatchObject([{ userId: 'bad', reason: 'unknown format' }]);
      // the same epoch: forward only
      await s.ingest({ terminalId: 'A', merges: [], advance: { logEpoch: 7, cursor: 5 } });
      expect(await s.getLogPosition('A')).toEqual({ logEpoch: 7, cursor: 10 });
      // read at last: no longer a pull failure; gone users are owed no longer
      await s.ingest({ terminalId: 'A', merges: [{ user: person('bad'), ctx: { terminalId: 'A', eventId: 11 } }], advance: null });
      expect(await s.listPullFailures({ terminalId: 'A' })).toEqual([]);
    });

    it('ingest is all or none: an unknown terminal writes nothing', async () => {
      const head = await s.feedHead();
      await expect(
        s.ingest({ terminalId: 'Z', merges: [{ user: person('n'), ctx: { terminalId: 'Z', eventId: 1 } }], advance: { logEpoch: 1, cursor: 1 } }),
      ).rejects.toBeInstanceOf(StoreWriteError);
      expect(await s.getUser('n')).toBeNull();
      expect(await s.feedHead()).toBe(head);
    });

    it('the server keeps fields the device changed: the source terminal is owed the server record', async () => {
      await s.putUser(person('k', 'server name'));
      const [r] = await s.ingest({ terminalId: 'A', merges: [{ user: person('k', 'device name'), ctx: { terminalId: 'A', eventId: 1 } }], advance: null });
      expect(r).toMatchObject({ changed: false, differsFromDevice: true, enqueued: ['A'], seq: null });
      const owed = await s.takeOwed('A', 10);
      expect(owed).toMatchObject([{ userId: 'k', user: { name: 'server name' } }]);
      expect(await s.owedCount('A')).toBe(2); // the feed entry of the put, and the owed entry
      await s.recordPush({ terminalId: 'A', ok: [{ userId: 'k', gen: owed[0].gen }] });
      expect(await s.takeOwed('A', 10)).toEqual([]);
    });

    it('the owed set: coalesced, acked by generation, busy users owed again; owed figures add the feed', async () => {
      await s.putUser(person('o1'));
      await s.putUser(person('o2'));
      expect(await s.owe('B', ['o1', 'o2'])).toBe(2);
      await s.owe('B', ['o1']);
      const items = await s.takeOwed('B', 10);
      expect(items.map((i) => i.userId)).toEqual(['o1', 'o2']);
      expect(await s.owedCounts()).toEqual({ total: 2 * 3 + 2, byTerminal: { A: 2, B: 4, C: 2 } });
      await s.recordPush({ terminalId: 'B', ok: [{ userId: 'o1', gen: items[0].gen }], later: ['o2'] });
      expect((await s.takeOwed('B', 10)).map((i) => i.userId)).toEqual(['o2']);
      // an ack with an older generation leaves a newer entry
      const [o2] = await s.takeOwed('B', 10);
      await s.owe('B', ['o2']);
      await s.recordPush({ terminalId: 'B', ok: [{ userId: 'o2', gen: o2.gen }] });
      expect((await s.takeOwed('B', 10)).map((i) => i.userId)).toEqual(['o2']);
      // a deleted user is owed as a delete (no record)
      await s.deleteUser('o2');
      expect(await s.takeOwed('B', 10)).toMatchObject([{ userId: 'o2', user: null }]);
    });

    it('onFeedChange: told after a change with the head; not after an unchanged put; unsubscribe', async () => {
      const heads: number[] = [];
      const off = s.onFeedChange((h) => heads.push(h));
      await s.putUser(person('w'));
      await s.putUser(person('w'));
      await new Promise((r) => setTimeout(r, 50));
      expect(heads).toEqual([await s.feedHead()]);
      off();
      await s.putUser(person('w', 'again'));
      await new Promise((r) => setTimeout(r, 50));
      expect(heads).toHaveLength(1);
    });

    it('log positions and feed cursors take a fence; an unknown terminal is refused', async () => {
      await s.setLogPosition('B', { logEpoch: 3, cursor: 40 }, 9);
      expect(await s.getLogPosition('B')).toEqual({ logEpoch: 3, cursor: 40 });
      await s.setLogPosition('B', { logEpoch: 4, cursor: 2 }, 9); // backwards: a reset
      expect(await s.getLogPosition('B')).toEqual({ logEpoch: 4, cursor: 2 });
      expect(await s.getLogPosition('nope')).toBeNull();
      await expect(s.setFeedCursor('nope', 1)).rejects.toBeInstanceOf(StoreWriteError);
    });

    it('walkUsers: byte order of the ID, with feed numbers', async () => {
      const seqs = new Map<string, number>();
      for (const id of ['b', 'a', 'é', 'Z']) seqs.set(id, (await s.putUser(person(id))).seq!);
      const page = await s.walkUsers({ limit: 3 });
      expect(page.map((x) => x.user.id)).toEqual(['Z', 'a', 'b']);
      const rest = await s.walkUsers({ after: 'b', limit: 3 });
      expect(rest.map((x) => x.user.id)).toEqual(['é']);
      expect(rest[0].seq).toBe(seqs.get('é'));
      expect(page.map((x) => x.seq)).toEqual(['Z', 'a', 'b'].map((id) => seqs.get(id)));
      expect(await s.userCount()).toBe(4);
    });

    it('a push batch records one monitoring event per user, in order', async () => {
      const ids = Array.from({ length: 30 }, (_, i) => `e${String(i).padStart(2, '0')}`);
      for (const id of ids) await s.putUser(person(id));
      const batch = await s.readFeed('A', { limit: 100 });
      await s.recordPush({
        terminalId: 'A',
        feed: { from: batch.from, to: batch.upTo },
        ok: ids.map((userId) => ({ userId })),
        events: ids.map((userId) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: 'A', userId })),
      });
      expect(await s.getFeedCursor('A')).toBe(batch.upTo);
    });

    it('listEvents: filters by type, terminal and user, pages by ID both ways', async () => {
      await s.appendEvents([
        { type: 'TERMINAL_ONLINE', terminalId: 'A' },
        { type: 'USER_UPDATE_SUCCESS_DEVICE', terminalId: 'A', userId: 'u1', detail: '{"x":1}' },
        { type: 'TERMINAL_ONLINE', terminalId: 'B' },
        { type: 'USER_UPDATE_SUCCESS_DEVICE', terminalId: 'B', userId: 'u2' },
        { type: 'SYNC_MODE_CHANGED', detail: 'free text', time: 1234 },
      ]);
      const all = await s.listEvents({ limit: 100 });
      expect(all.map((e) => e.type)).toEqual(['TERMINAL_ONLINE', 'USER_UPDATE_SUCCESS_DEVICE', 'TERMINAL_ONLINE', 'USER_UPDATE_SUCCESS_DEVICE', 'SYNC_MODE_CHANGED']);
      const ids = all.map((e) => e.id);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);
      expect(all[1]).toMatchObject({ terminalId: 'A', userId: 'u1', detail: '{"x":1}' });
      expect(all[4]).toMatchObject({ time: 1234, terminalId: null, userId: null, detail: 'free text' });
      expect((await s.listEvents({ type: 'TERMINAL_ONLINE' })).map((e) => e.terminalId)).toEqual(['A', 'B']);
      expect((await s.listEvents({ terminalId: 'B' })).map((e) => e.type)).toEqual(['TERMINAL_ONLINE', 'USER_UPDATE_SUCCESS_DEVICE']);
      expect((await s.listEvents({ userId: 'u2' })).map((e) => e.id)).toEqual([ids[3]]);
      expect((await s.listEvents({ after: ids[1], limit: 2 })).map((e) => e.id)).toEqual([ids[2], ids[3]]);
      expect((await s.listEvents({ before: ids[3], newestFirst: true, limit: 2 })).map((e) => e.id)).toEqual([ids[2], ids[1]]);
      expect((await s.listEvents({ newestFirst: true, limit: 1 }))[0].id).toBe(ids[4]);
      expect(await s.listEvents({ type: 'TERMINAL_ONLINE', terminalId: 'A', after: ids[0] })).toEqual([]);
    });

    it('searchUsers: by ID prefix and by name prefix without ASCII case, keyset-paged; cardHolders', async () => {
      for (const [id, name] of [['p1', 'alice'], ['p2', 'Alina'], ['p3', 'ALBERT'], ['q1', 'bob'], ['p4', 'Alina']]) await s.putUser(person(id, name));
      const byId = await s.searchUsers('id', 'p', null, 3);
      expect(byId.users.map((u) => u.id)).toEqual(['p1', 'p2', 'p3']);
      expect(byId.next).toBe('p3');
      expect(await s.searchUsers('id', 'p', byId.next, 3)).toMatchObject({ users: [{ id: 'p4' }], next: null });
      const first = await s.searchUsers('name', 'al', null, 2);
      expect(first.users.map((u) => [u.id, u.name])).toEqual([['p3', 'ALBERT'], ['p1', 'alice']]);
      expect(first.next).not.toBeNull();
      const second = await s.searchUsers('name', 'AL', first.next, 2);
      expect(second.users.map((u) => u.id)).toEqual(['p2', 'p4']);
      expect(second.next).toBeNull();
      expect((await s.searchUsers('name', '', null, 10)).users).toHaveLength(5);
      expect((await s.searchUsers('name', 'zz', null, 10)).users).toEqual([]);
      const u = person('c1', 'Carded');
      u.cards = [{ type: 1, data: Buffer.from('same-card') }];
      u.pinHash = hashPin('4711');
      const v = person('c2', 'Also carded');
      v.cards = [{ type: 1, data: Buffer.from('same-card') }];
      await s.putUser(u);
      await s.putUser(v);
      expect((await s.searchUsers('id', 'c1', null, 5)).users[0]).toEqual({ id: 'c1', name: 'Carded', disabled: false, cards: 1, fingers: 0, faces: 0, pinSet: true });
      expect(await s.cardHolders('c1')).toEqual(['c2']);
      expect(await s.cardHolders('p1')).toEqual([]);
    });

    it('owedTo: the owed entry, else the feed past the cursor in scope; clearPushFailures', async () => {
      await s.upsertTerminal({ id: 'C', direction: 'dial', approved: true, accessGroups: [7] });
      await s.putUser(person('g7', 'Seven', [7]));
      await s.putUser(person('g8', 'Eight', [8]));
      await s.owe('B', ['g8']);
      const all = await s.owedTo('g8', ['A', 'B', 'C'], 'all');
      expect(all.map((o) => o.terminalId)).toEqual(['A', 'B', 'C']);
      expect(all[1]).toMatchObject({ attempts: 0, lastError: null });
      expect((await s.owedTo('g8', ['A', 'B', 'C'], 'specific')).map((o) => o.terminalId)).toEqual(['B']);
      expect((await s.owedTo('g7', ['A', 'C'], 'specific')).map((o) => o.terminalId)).toEqual(['C']);
      expect((await s.owedTo('g8', ['A', 'B', 'C'], 'off')).map((o) => o.terminalId)).toEqual(['B']);
      // delivered: A's cursor past the change
      await s.setFeedCursor('A', await s.feedHead());
      expect((await s.owedTo('g8', ['A'], 'all'))).toEqual([]);
      await s.recordPush({ terminalId: 'A', refused: [{ userId: 'g7', code: 11, reason: 'DUPLICATE_CARD' }, { userId: 'g8', code: 11, reason: 'DUPLICATE_CARD' }] });
      await s.recordPush({ terminalId: 'B', refused: [{ userId: 'g7', code: 11, reason: 'DUPLICATE_CARD' }] });
      expect(await s.clearPushFailures('A', 'g7')).toBe(1);
      expect((await s.listPushFailures()).map((f) => `${f.terminalId}/${f.userId}`).sort()).toEqual(['A/g8', 'B/g7']);
      expect(await s.clearPushFailures('A')).toBe(1);
      expect(await s.clearPushFailures('A')).toBe(0);
      expect((await s.listPushFailures()).map((f) => f.terminalId)).toEqual(['B']);
    });

    it('events and settings', async () => {
      expect(await s.recordEventDurably({ type: 'RECONCILE', terminalId: 'A' })).toMatchObject({ stored: true });
      await s.appendEvents([{ type: 'TERMINAL_ONLINE', terminalId: 'B' }]);
      expect(await s.flushPendingEvents()).toBe(0);
      await s.setSyncMode('specific');
      expect(await s.getSyncMode()).toBe('specific');
      expect(await s.healthy()).toBe(true);
    });
  });
}
