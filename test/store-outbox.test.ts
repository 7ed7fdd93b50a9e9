import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Status } from '../src/codec/constants.js';
import type { Store } from '../src/store/store.js';
import { fullUser, openTemp } from './store-fixtures.js';

let t: ReturnType<typeof openTemp>;
let store: Store;
let clock = 0;
beforeEach(() => {
  clock = 10_000;
  t = openTemp({ now: () => clock });
  store = t.store;
  for (const id of ['T1', 'T2', 'T3']) store.upsertTerminal({ id, direction: 'dial' });
});
afterEach(() => t.close());

describe('store: outbox', () => {
  it('coalesces: the same user enqueued 10 times for a terminal is one row', () => {
    for (let i = 0; i < 10; i++) {
      clock += 1;
      store.enqueue(['T1'], 'u1');
    }
    expect(store.outboxCount('T1')).toBe(1);
    const [item] = store.take('T1', 100);
    expect(item).toMatchObject({ terminalId: 'T1', userId: 'u1', gen: 10, attempts: 0, lastError: null });
    // it keeps its place in the queue: the time of the first enqueue
    expect(item.enqueuedAt).toBe(10_001);
  });

  it('take returns entries oldest first without removing them; ack removes them', () => {
    for (const u of ['c', 'a', 'b']) {
      clock += 1;
      store.enqueue(['T1', 'T2'], u);
    }
    expect(store.take('T1', 2).map((i) => i.userId)).toEqual(['c', 'a']);
    expect(store.take('T1', 2).map((i) => i.userId)).toEqual(['c', 'a']);
    expect(store.ack('T1', store.take('T1', 2))).toBe(2);
    expect(store.take('T1', 10).map((i) => i.userId)).toEqual(['b']);
    expect(store.outboxCounts()).toEqual({ total: 4, byTerminal: { T1: 1, T2: 3 } });
    expect(store.outboxCount()).toBe(4);
  });

  it('an ack for an older push does not remove a change enqueued while it was in flight', () => {
    store.enqueue(['T1'], 'u');
    const inFlight = store.take('T1', 1);
    store.enqueue(['T1'], 'u'); // the user changed again meanwhile
    expect(store.ack('T1', inFlight)).toBe(0);
    const again = store.take('T1', 1);
    expect(again.map((i) => i.userId)).toEqual(['u']);
    expect(store.ack('T1', again)).toBe(1);
    expect(store.outboxCount()).toBe(0);
    // a bare user ID removes whatever generation is queued
    store.enqueue(['T1'], 'v');
    store.enqueue(['T1'], 'v');
    expect(store.ack('T1', ['v'])).toBe(1);
  });

  it('enqueueMany writes every pair in one call', () => {
    const users = Array.from({ length: 100 }, (_, i) => `u${i}`);
    expect(store.enqueueMany(['T1', 'T2', 'T3'], users)).toBe(300);
    expect(store.outboxCounts()).toEqual({ total: 300, byTerminal: { T1: 100, T2: 100, T3: 100 } });
    store.enqueueMany(['T1'], users); // coalesced again
    expect(store.outboxCount('T1')).toBe(100);
  });

  it('enqueueAllUsers queues every server user for a full resync', () => {
    for (let i = 0; i < 5; i++) store.putUserFromServer(fullUser(`u${i}`, i));
    store.enqueue(['T2'], 'u0');
    expect(store.enqueueAllUsers('T2')).toBe(5);
    expect(store.outboxCount('T2')).toBe(5);
  });

  it('fail counts attempts, keeps the error text, and defers the entry until due', () => {
    store.enqueue(['T1'], 'a');
    store.enqueue(['T1'], 'b');
    expect(store.fail('T1', 'a', new Error('timeout'))).toBe(1);
    expect(store.fail('T1', 'a', 'disconnected', 5_000)).toBe(2);
    expect(store.take('T1', 10).map((i) => i.userId)).toEqual(['b']);
    clock += 5_000;
    const items = store.take('T1', 10);
    expect(items.map((i) => i.userId)).toEqual(['b', 'a']);
    expect(items[1]).toMatchObject({ attempts: 2, lastError: 'disconnected' });
    expect(store.fail('T1', 'nobody', 'x')).toBe(0);
    // a new change resets the count and makes the entry due again
    store.fail('T1', 'a', 'x', 60_000);
    store.enqueue(['T1'], 'a');
    expect(store.take('T1', 10).find((i) => i.userId === 'a')).toMatchObject({ attempts: 0, lastError: null });
  });

  it('reject records the push failure and removes the entry; a later ack clears it', () => {
    store.enqueue(['T1', 'T2'], 'dup');
    const [item] = store.take('T1', 1);
    store.reject('T1', item, Status.DUPLICATE_CARD, 'card held by another user');
    expect(store.outboxCount('T1')).toBe(0);
    expect(store.listPushFailures()).toEqual([{ terminalId: 'T1', userId: 'dup', status: Status.DUPLICATE_CARD, reason: 'card held by another user', time: clock }]);
    store.enqueue(['T1'], 'dup');
    store.ack('T1', store.take('T1', 1));
    expect(store.listPushFailures()).toEqual([]);
  });

  it('push failures: record, filter, clear', () => {
    store.recordPushFailure({ terminalId: 'T1', userId: 'a', status: Status.USER_FULL, reason: 'full' });
    store.recordPushFailure({ terminalId: 'T1', userId: 'a', status: Status.INVALID_USER, reason: 'bad' }); // replaces
    store.recordPushFailure({ terminalId: 'T2', userId: 'b', status: Status.USER_FULL, reason: 'full' });
    expect(store.listPushFailures({ terminalId: 'T1' })).toMatchObject([{ userId: 'a', status: Status.INVALID_USER, reason: 'bad' }]);
    expect(store.listPushFailures()).toHaveLength(2);
    expect(store.clearPushFailures('T1', 'a')).toBe(1);
    expect(store.clearPushFailures()).toBe(1);
  });

  it('an unknown terminal cannot be enqueued, and deleting a terminal drops its outbox', () => {
    expect(() => store.enqueue(['nope'], 'u')).toThrow(expect.objectContaining({ name: 'StoreWriteError', code: 'CONSTRAINT' }));
    store.enqueueMany(['T1', 'T2'], ['u', 'v']);
    expect(store.deleteTerminal('T1')).toBe(true);
    expect(store.outboxCounts()).toEqual({ total: 2, byTerminal: { T2: 2 } });
  });

  it('ackPushed acks, appends events and rejects in one call', () => {
    store.enqueueMany(['T1'], ['ok1', 'ok2', 'bad']);
    const items = store.take('T1', 10);
    const ok = items.filter((i) => i.userId !== 'bad');
    const bad = items.find((i) => i.userId === 'bad')!;
    const n = store.ackPushed(
      'T1',
      ok,
      ok.map((i) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: 'T1', userId: i.userId })),
      [{ item: bad, status: Status.USER_FULL, reason: 'USER_FULL' }],
    );
    expect(n).toBe(2);
    expect(store.outboxCount()).toBe(0);
    expect(store.listEvents().map((e) => e.userId)).toEqual(['ok1', 'ok2']);
    expect(store.listPushFailures()).toMatchObject([{ terminalId: 'T1', userId: 'bad', status: Status.USER_FULL }]);
  });
});
