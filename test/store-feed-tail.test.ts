// The in-memory tail of the change feed (src/store/feed-tail.ts): a push
// lane's batch read served from memory must be exactly what the range read of
// SQLite returns, through changes, deletes, a terminal's own merges, rolled
// back writes, another connection's commits and tombstone collection.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FeedBatch } from '../src/store/backend.js';
import { Store } from '../src/store/store.js';
import { fullUser, openTemp } from './store-fixtures.js';

let t: ReturnType<typeof openTemp>;
let store: Store;
const TERMS = ['T1', 'T2', 'T3'];
beforeEach(() => {
  t = openTemp();
  store = t.store;
  for (const id of TERMS) store.upsertTerminal({ id, direction: 'dial', approved: true });
});
afterEach(() => t.close());

/** the SQLite range read (readFeed inside a transaction never uses the tail) */
function fromSql(s: Store, term: string, after: number | undefined, limit: number): FeedBatch {
  return s.connection.transaction(() => s.readFeed(term, { after, limit }))();
}

function shape(b: FeedBatch) {
  return { from: b.from, upTo: b.upTo, entries: b.entries.map((e) => ({ seq: e.seq, userId: e.userId, user: e.user })) };
}

function expectSame(s: Store, after?: number, limit = 7): void {
  for (const term of TERMS) {
    const mem = s.readFeed(term, { after, limit });
    expect(shape(mem)).toEqual(shape(fromSql(s, term, after, limit)));
  }
}

describe('store: the feed tail in memory', () => {
  it('serves the same batches as SQLite through changes, deletes, own merges, rollbacks, other connections and collection', () => {
    let rnd = 12345;
    const next = (n: number) => {
      rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
      return rnd % n;
    };
    // the tail starts at the first read
    expectSame(store);
    const other = Store.open(t.file);
    try {
      let seed = 1;
      for (let step = 0; step < 400; step++) {
        const id = `u${next(30)}`;
        const op = next(10);
        if (op < 4) store.putUserFromServer(fullUser(id, seed++));
        else if (op < 6) store.mergeDeviceUser(fullUser(id, seed++), { terminalId: TERMS[next(3)], eventId: step });
        else if (op < 7) store.deleteUser(id);
        else if (op < 8) {
          // a write that fails half-way rolls back, feed number and all
          expect(() =>
            store.mergeDeviceUsers([
              { user: fullUser(id, seed++), ctx: { terminalId: 'T1', eventId: step } },
              { user: fullUser('x', seed++), ctx: { terminalId: 'nope', eventId: step, cursorAfter: 5 } },
            ]),
          ).toThrow();
          // (an unknown terminal's cursor cannot move: if it did not throw, the comparison still holds)
        } else if (op < 9) other.putUserFromServer(fullUser(id, seed++));
        else {
          // the terminals catch up to the head; their tombstones are collected
          for (const term of TERMS) store.setFeedCursor(term, store.feedHead());
          store.collectTombstones();
        }
        const head = store.feedHead();
        expectSame(store);
        expectSame(store, Math.max(0, head - 1 - next(12)), 1 + next(8));
      }
    } finally {
      other.close();
    }
  });

  it('a terminal past the tail reads SQLite; the records are the shared objects', () => {
    store.putUserFromServer(fullUser('a', 1));
    const first = store.readFeed('T1', { limit: 10 });
    expect(first.entries.map((e) => e.userId)).toEqual(['a']);
    store.putUserFromServer(fullUser('b', 2));
    const a = store.readFeed('T2', { after: first.upTo, limit: 10 });
    const b = store.readFeed('T3', { after: first.upTo, limit: 10 });
    expect(a.entries.map((e) => e.userId)).toEqual(['b']);
    // one object for every reader (encoded once by the drivers)
    expect(a.entries[0].user).toBe(b.entries[0].user);
    expect(shape(a)).toEqual(shape(fromSql(store, 'T2', first.upTo, 10)));
  });
});
