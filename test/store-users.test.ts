import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserFlag } from '../src/codec/constants.js';
import { emptyUser } from '../src/model/user.js';
import { StoreWriteError } from '../src/store/errors.js';
import type { Store } from '../src/store/store.js';
import { MonitoringEvent } from '../src/store/types.js';
import { usersEqual } from '../src/model/merge.js';
import { deviceUser, fullUser, openTemp } from './store-fixtures.js';

let t: ReturnType<typeof openTemp>;
let store: Store;
let clock = 1_000;
beforeEach(() => {
  clock = 1_000;
  t = openTemp({ now: () => clock });
  store = t.store;
  for (const id of ['A', 'B', 'C']) store.upsertTerminal({ id, direction: 'listen' });
});
afterEach(() => t.close());

function outboxRows(): [string, string][] {
  return store.connection.prepare('SELECT terminal_id, user_id FROM outbox ORDER BY terminal_id, user_id').raw().all() as [string, string][];
}

describe('store: users', () => {
  it('round-trips every field of a user record', () => {
    const u = fullUser('1');
    u.flag = UserFlag.DISABLED;
    store.putUserFromServer(u);
    const back = store.getUser('1')!;
    expect(back).toEqual(u);
    expect(store.getUser('nobody')).toBeNull();
  });

  it('stores an empty user with "no PIN", "no photo" and empty lists', () => {
    store.putUserFromServer(emptyUser('e'));
    expect(store.getUser('e')).toEqual(emptyUser('e'));
  });

  it('lists users in byte order of the ID, paged, with their credentials', () => {
    const ids = ['b', 'a', 'ab', 'B', '10', '9', 'é', 'a b,c'];
    ids.forEach((id, i) => store.putUserFromServer(fullUser(id, i)));
    const byBytes = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = store.listUsers({ after, limit: 3 });
      if (page.length === 0) break;
      for (const u of page) expect(u).toEqual(store.getUser(u.id));
      seen.push(...page.map((u) => u.id));
      after = page[page.length - 1].id;
    }
    expect(seen).toEqual(byBytes);
    expect(store.userCount()).toBe(ids.length);
    expect(store.listUserIndex({ limit: 2 }).map((e) => e.id)).toEqual(byBytes.slice(0, 2));
  });

  it('putUserFromServer replaces the record and counts server_version only on change', () => {
    expect(store.putUserFromServer(fullUser('1'))).toEqual({ created: true, changed: true, serverVersion: 1, seq: 1 });
    expect(store.putUserFromServer(fullUser('1'))).toEqual({ created: false, changed: false, serverVersion: 1, seq: null });
    const edited = fullUser('1');
    edited.name = 'Renamed';
    edited.cards = [];
    clock = 2_000;
    expect(store.putUserFromServer(edited)).toEqual({ created: false, changed: true, serverVersion: 2, seq: 2 });
    expect(store.getUser('1')!.cards).toEqual([]);
    expect(store.getUser('1')!.name).toBe('Renamed');
    expect(store.listUserIndex()).toEqual([{ id: '1', serverVersion: 2, updatedAt: 2_000 }]);
  });

  it('putUserFromServer can enqueue pushes in the same transaction', () => {
    store.putUserFromServer(fullUser('1'), { pushTo: ['A', 'B'] });
    expect(outboxRows()).toEqual([
      ['A', '1'],
      ['B', '1'],
    ]);
  });

  it('deleteUser removes the user and its credentials and enqueues the delete', () => {
    store.putUserFromServer(fullUser('1'));
    expect(store.deleteUser('1', { pushTo: ['A'] })).toBe(true);
    expect(store.getUser('1')).toBeNull();
    expect(store.connection.prepare('SELECT count(*) FROM user_cards').pluck().get()).toBe(0);
    expect(store.take('A', 10).map((i) => i.userId)).toEqual(['1']);
    expect(store.deleteUser('1')).toBe(false);
  });
});

describe('store: mergeDeviceUser', () => {
  it('creates a new user, records the monitoring event, advances the cursor and fans out', () => {
    const d = deviceUser('42');
    d.flag = UserFlag.CREATED_ON_DEVICE;
    const r = store.mergeDeviceUser(d, { terminalId: 'A', eventId: 17, cursorAfter: 17, pushTo: ['A', 'B', 'C'] });
    expect(r.created).toBe(true);
    expect(r.changed).toBe(true);
    expect(r.differsFromDevice).toBe(false);
    expect(r.record.flag).toBe(0);
    expect(usersEqual(store.getUser('42')!, d)).toBe(true);
    // the source terminal already holds this record: only B and C get it
    expect(r.enqueued.sort()).toEqual(['B', 'C']);
    expect(outboxRows()).toEqual([
      ['B', '42'],
      ['C', '42'],
    ]);
    expect(store.getCursor('A')).toEqual({ logEpoch: null, cursor: 17 });
    const [ev] = store.listEvents({ type: MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE });
    expect(ev).toMatchObject({ id: r.monitoringEventId, terminalId: 'A', userId: '42', time: 1_000 });
    expect(JSON.parse(ev.detail!)).toMatchObject({ eventId: 17, created: true, changed: true });
  });

  it('fills only vacant fields, keeps access groups, and pushes the server record back to the source', () => {
    const server = fullUser('7', 1);
    server.phrase = '';
    server.photo = Buffer.alloc(0);
    store.putUserFromServer(server);
    const d = deviceUser('7', 2);
    d.accessGroups = [];
    const r = store.mergeDeviceUser(d, { terminalId: 'A', eventId: 5, pushTo: ['B', 'C'] });
    expect(r.created).toBe(false);
    expect(r.filled.sort()).toEqual(['photo', 'phrase']);
    expect(r.serverVersion).toBe(2);
    const stored = store.getUser('7')!;
    expect(stored.accessGroups).toEqual(server.accessGroups);
    expect(stored.name).toBe(server.name);
    expect(stored.phrase).toBe(d.phrase);
    expect(stored.photo.equals(d.photo)).toBe(true);
    expect(r.differsFromDevice).toBe(true);
    // the changed record reaches the source through the change feed (its copy differs: not skipped), B and C as asked
    expect(r.enqueued.sort()).toEqual(['B', 'C']);
    expect(r.seq).toBe(2);
    expect(store.readFeed('A', { limit: 10 }).entries.map((e) => e.userId)).toEqual(['7']);
  });

  it('an unchanged server record is not rewritten and is only pushed back when the device differs', () => {
    store.putUserFromServer(fullUser('9', 1));
    const same = fullUser('9', 1);
    same.flag = UserFlag.UPDATED_ON_DEVICE;
    const r1 = store.mergeDeviceUser(same, { terminalId: 'A', eventId: 1, pushTo: ['B', 'C'] });
    expect(r1).toMatchObject({ changed: false, differsFromDevice: false, enqueued: [], serverVersion: 1 });
    const other = deviceUser('9', 3);
    const r2 = store.mergeDeviceUser(other, { terminalId: 'A', eventId: 2, pushTo: ['B', 'C'] });
    expect(r2).toMatchObject({ changed: false, differsFromDevice: true, enqueued: ['A'], serverVersion: 1 });
    const r3 = store.mergeDeviceUser(other, { terminalId: 'A', eventId: 3, pushTo: ['B'], pushWhen: 'always', pushBack: false });
    expect(r3.enqueued).toEqual(['B']);
    expect(store.listEvents({ type: MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE })).toHaveLength(3);
  });

  it('never moves the cursor back', () => {
    store.mergeDeviceUser(deviceUser('1'), { terminalId: 'A', eventId: 10, cursorAfter: 10 });
    store.mergeDeviceUser(deviceUser('2'), { terminalId: 'A', eventId: 8, cursorAfter: 8 });
    expect(store.getCursor('A')!.cursor).toBe(10);
  });

  it('is atomic: when the outbox insert fails, the user, event and cursor are rolled back (unknown terminal)', () => {
    const d = deviceUser('5', 2);
    const server = fullUser('5', 1);
    server.name = '';
    store.putUserFromServer(server); // name vacant: the merge would fill it
    const err = (() => {
      try {
        store.mergeDeviceUser(d, { terminalId: 'A', eventId: 3, cursorAfter: 3, pushTo: ['B', 'no-such-terminal'] });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(StoreWriteError);
    expect((err as StoreWriteError).code).toBe('CONSTRAINT');
    expect(store.getUser('5')).toEqual(server); // name not filled
    expect(store.listUserIndex()[0].serverVersion).toBe(1);
    expect(store.listEvents()).toEqual([]);
    expect(store.getCursor('A')!.cursor).toBe(0);
    expect(store.outboxCount()).toBe(0);
  });

  it('is atomic: a failing outbox write (trigger) rolls back a new user', () => {
    store.connection.exec(`CREATE TRIGGER outbox_fails BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'simulated outbox failure'); END`);
    expect(() => store.mergeDeviceUser(deviceUser('new'), { terminalId: 'A', eventId: 1, cursorAfter: 1, pushTo: ['B'] })).toThrow(StoreWriteError);
    expect(store.getUser('new')).toBeNull();
    expect(store.userCount()).toBe(0);
    expect(store.connection.prepare('SELECT count(*) FROM user_cards').pluck().get()).toBe(0);
    expect(store.listEvents()).toEqual([]);
    expect(store.getCursor('A')!.cursor).toBe(0);
  });

  it('fails CONSTRAINT for a cursor on an unknown terminal, writing nothing', () => {
    expect(() => store.mergeDeviceUser(deviceUser('x'), { terminalId: 'Z', eventId: 1, cursorAfter: 1 })).toThrow(
      expect.objectContaining({ code: 'CONSTRAINT' }),
    );
    expect(store.getUser('x')).toBeNull();
  });

  it('mergeDeviceUsers merges a batch in one transaction, all or none', () => {
    const ok = store.mergeDeviceUsers(
      Array.from({ length: 20 }, (_, i) => ({ user: deviceUser(`b${i}`, i), ctx: { terminalId: 'A', eventId: i + 1, cursorAfter: i + 1, pushTo: ['B', 'C'] } })),
    );
    expect(ok).toHaveLength(20);
    expect(store.userCount()).toBe(20);
    expect(store.getCursor('A')!.cursor).toBe(20);
    expect(store.outboxCounts()).toEqual({ total: 40, byTerminal: { B: 20, C: 20 } });

    const batch = [
      { user: deviceUser('c1'), ctx: { terminalId: 'A', eventId: 21, cursorAfter: 21, pushTo: ['B'] } },
      { user: deviceUser('c2'), ctx: { terminalId: 'A', eventId: 22, cursorAfter: 22, pushTo: ['nope'] } },
    ];
    expect(() => store.mergeDeviceUsers(batch)).toThrow(StoreWriteError);
    expect(store.getUser('c1')).toBeNull();
    expect(store.getCursor('A')!.cursor).toBe(20);
    expect(store.outboxCount()).toBe(40);
  });

  it('mergeDeviceUsersAndAdvance merges, moves the log position and appends events in one transaction', () => {
    store.setCursor('A', 50, 7);
    const merges = [{ user: deviceUser('m1'), ctx: { terminalId: 'A', eventId: 60, pushTo: ['B'] } }];
    const del = { type: 'USER_DELETED_ON_DEVICE', terminalId: 'A', userId: 'gone', detail: '{"eventId":59}' };
    const r = store.mergeDeviceUsersAndAdvance(merges, 'A', { logEpoch: 7, cursor: 60 }, [del]);
    expect(r.map((x) => x.record.id)).toEqual(['m1']);
    expect(store.getCursor('A')).toEqual({ logEpoch: 7, cursor: 60 });
    expect(store.listEvents({ type: 'USER_DELETED_ON_DEVICE' })).toMatchObject([{ userId: 'gone', time: 1_000 }]);
    // same epoch: never back
    store.mergeDeviceUsersAndAdvance([], 'A', { logEpoch: 7, cursor: 55 });
    expect(store.getCursor('A')).toEqual({ logEpoch: 7, cursor: 60 });
    // a new epoch (the terminal's log restarted): taken as is
    store.mergeDeviceUsersAndAdvance([], 'A', { logEpoch: 8, cursor: 3 });
    expect(store.getCursor('A')).toEqual({ logEpoch: 8, cursor: 3 });
    // null: position untouched
    store.mergeDeviceUsersAndAdvance([{ user: deviceUser('m2'), ctx: { terminalId: 'A', eventId: 4 } }], 'A', null);
    expect(store.getCursor('A')).toEqual({ logEpoch: 8, cursor: 3 });
  });

  it('users gone from a terminal are owed no longer by that terminal only; a terminal with no failures takes a batch of gone users', () => {
    const failed = (ids: string[]) => ({ failed: ids.map((userId) => ({ userId, reason: 'UNREADABLE' })) });
    store.mergeDeviceUsersAndAdvance([], 'A', null, [], failed(['u1', 'u2']));
    store.mergeDeviceUsersAndAdvance([], 'B', null, [], failed(['u1']));
    store.mergeDeviceUsersAndAdvance([], 'A', null, [], { gone: ['u1', 'never-failed'] });
    expect(store.listPullFailures().map((f) => `${f.terminalId}/${f.userId}`)).toEqual(['A/u2', 'B/u1']);
    // C has none: a thousand gone users change nothing and write no row
    store.mergeDeviceUsersAndAdvance([], 'C', null, [], { gone: Array.from({ length: 1000 }, (_, i) => `g${i}`) });
    expect(store.listPullFailures().map((f) => `${f.terminalId}/${f.userId}`)).toEqual(['A/u2', 'B/u1']);
    store.mergeDeviceUsersAndAdvance([], 'B', null, [], { gone: ['u1'] });
    expect(store.listPullFailures().map((f) => `${f.terminalId}/${f.userId}`)).toEqual(['A/u2']);
  });

  it('mergeDeviceUsersAndAdvance is all or none', () => {
    const bad = [
      { user: deviceUser('k1'), ctx: { terminalId: 'A', eventId: 1, pushTo: ['B'] } },
      { user: deviceUser('k2'), ctx: { terminalId: 'A', eventId: 2, pushTo: ['missing'] } },
    ];
    expect(() => store.mergeDeviceUsersAndAdvance(bad, 'A', { logEpoch: 1, cursor: 2 }, [{ type: 'X' }])).toThrow(StoreWriteError);
    expect(store.userCount()).toBe(0);
    expect(store.getCursor('A')).toEqual({ logEpoch: null, cursor: 0 });
    expect(store.listEvents()).toEqual([]);
    expect(() => store.mergeDeviceUsersAndAdvance([], 'nope', { logEpoch: 1, cursor: 2 })).toThrow(expect.objectContaining({ code: 'CONSTRAINT' }));
  });

  it('healthy() while open, false after close', () => {
    expect(store.healthy()).toBe(true);
    store.close();
    expect(store.healthy()).toBe(false);
  });
});
