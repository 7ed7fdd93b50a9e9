// Write failures surface as StoreWriteError with a code the sync engine can act
// on. Root ignores file permission bits, so "read-only" is simulated with what
// SQLite itself enforces: better-sqlite3's `readonly: true` open, and
// `PRAGMA query_only = 1` on a read-write connection (which can be switched
// back, to show pending events flushing once the database is writable again).
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { classifySqliteCode, StoreWriteError } from '../src/store/errors.js';
import { Store } from '../src/store/store.js';
import { MonitoringEvent } from '../src/store/types.js';
import { deviceUser, fullUser, openTemp, tempDir } from './store-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function caught(fn: () => unknown): StoreWriteError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StoreWriteError);
    return e as StoreWriteError;
  }
  throw new Error('expected a StoreWriteError');
}

describe('store write failures', () => {
  it('maps SQLite result codes to StoreWriteError codes', () => {
    expect(classifySqliteCode('SQLITE_READONLY_DBMOVED')).toBe('READONLY');
    expect(classifySqliteCode('SQLITE_FULL')).toBe('FULL');
    expect(classifySqliteCode('SQLITE_IOERR_FSYNC')).toBe('IOERR');
    expect(classifySqliteCode('SQLITE_BUSY_SNAPSHOT')).toBe('BUSY');
    expect(classifySqliteCode('SQLITE_LOCKED')).toBe('BUSY');
    expect(classifySqliteCode('SQLITE_CORRUPT')).toBe('CORRUPT');
    expect(classifySqliteCode('SQLITE_NOTADB')).toBe('CORRUPT');
    expect(classifySqliteCode('SQLITE_CONSTRAINT_FOREIGNKEY')).toBe('CONSTRAINT');
    expect(classifySqliteCode('SQLITE_MISUSE')).toBe('OTHER');
  });

  it('a store opened readonly (better-sqlite3 readonly: true) fails writes with READONLY and keeps events pending', () => {
    const t = openTemp();
    cleanups.push(t.close);
    t.store.putUserFromServer(fullUser('1'));
    const ro = Store.open(t.file, { readonly: true });
    cleanups.push(() => ro.close());
    expect(ro.getUser('1')).toEqual(t.store.getUser('1')); // reads work
    const e = caught(() => ro.putUserFromServer(fullUser('2')));
    expect(e.code).toBe('READONLY');
    expect(e.sqliteCode).toMatch(/^SQLITE_READONLY/);
    expect(e.operation).toBe('putUserFromServer');
    expect(caught(() => ro.mergeDeviceUser(deviceUser('1'), { terminalId: 'A', eventId: 1 })).code).toBe('READONLY');
    const r = ro.recordEventDurably({ type: MonitoringEvent.SERVER_DB_SAVE_FAIL, userId: '2', detail: 'READONLY' });
    expect(r).toEqual({ stored: false, pending: 1 });
    expect(ro.pendingEventCount).toBe(1);
  });

  it('READONLY (PRAGMA query_only) keeps monitoring events pending and flushes them, in order, once writable', () => {
    let clock = 1_000;
    const t = openTemp({ now: () => clock });
    cleanups.push(t.close);
    const s = t.store;
    s.connection.pragma('query_only = 1');
    expect(caught(() => s.appendEvent({ type: 'X' })).code).toBe('READONLY');

    expect(s.recordEventDurably({ type: MonitoringEvent.SERVER_DB_SAVE_FAIL, userId: 'a' })).toEqual({ stored: false, pending: 1 });
    clock = 2_000;
    expect(s.recordEventDurably({ type: MonitoringEvent.SERVER_DB_SAVE_FAIL, userId: 'b' })).toEqual({ stored: false, pending: 2 });
    expect(s.flushPendingEvents()).toBe(0); // still read-only
    expect(s.pendingEventCount).toBe(2);

    s.connection.pragma('query_only = 0');
    expect(s.flushPendingEvents()).toBe(2);
    expect(s.pendingEventCount).toBe(0);
    expect(s.listEvents().map((e) => [e.userId, e.time])).toEqual([
      ['a', 1_000],
      ['b', 2_000],
    ]);
    // and a later event goes straight to the table
    expect(s.recordEventDurably({ type: 'Y' })).toMatchObject({ stored: true });
  });

  it('an event recorded while others are pending is written after them', () => {
    const t = openTemp();
    cleanups.push(t.close);
    const s = t.store;
    s.connection.pragma('query_only = 1');
    s.recordEventDurably({ type: 'first' });
    s.connection.pragma('query_only = 0');
    const r = s.recordEventDurably({ type: 'second' });
    expect(r.stored).toBe(true);
    expect(s.listEvents().map((e) => e.type)).toEqual(['first', 'second']);
  });

  it('bounds the pending events, dropping the oldest and counting them', () => {
    const t = openTemp({ maxPendingEvents: 3 });
    cleanups.push(t.close);
    const s = t.store;
    s.connection.pragma('query_only = 1');
    for (let i = 0; i < 5; i++) s.recordEventDurably({ type: `e${i}` });
    expect(s.pendingEventCount).toBe(3);
    expect(s.droppedEventCount).toBe(2);
    s.connection.pragma('query_only = 0');
    s.flushPendingEvents();
    expect(s.listEvents().map((e) => e.type)).toEqual(['e2', 'e3', 'e4']);
  });

  it('BUSY when another connection holds BEGIN IMMEDIATE beyond the busy timeout', () => {
    const t = openTemp({ busyTimeoutMs: 50 });
    cleanups.push(t.close);
    const other = new Database(t.file);
    cleanups.push(() => other.close());
    other.exec('BEGIN IMMEDIATE');
    try {
      const e = caught(() => t.store.putUserFromServer(fullUser('1')));
      expect(e.code).toBe('BUSY');
      expect(t.store.recordEventDurably({ type: 'X' })).toEqual({ stored: false, pending: 1 });
    } finally {
      other.exec('ROLLBACK');
    }
    // the lock is gone: writes work again
    expect(t.store.putUserFromServer(fullUser('1')).created).toBe(true);
    expect(t.store.flushPendingEvents()).toBe(1);
  });

  it('FULL when the database cannot grow (PRAGMA max_page_count), and nothing half-written remains', () => {
    const t = openTemp();
    cleanups.push(t.close);
    const s = t.store;
    s.upsertTerminal({ id: 'A', direction: 'listen' });
    const pages = s.connection.pragma('page_count', { simple: true }) as number;
    s.connection.pragma(`max_page_count = ${pages + 4}`);
    let err: StoreWriteError | undefined;
    let stored = 0;
    for (let i = 0; i < 100 && !err; i++) {
      const u = deviceUser(`big${i}`, i);
      u.faces = [{ index: 0, flag: 0, data: Buffer.alloc(30_000, i) }];
      try {
        s.mergeDeviceUser(u, { terminalId: 'A', eventId: i + 1, cursorAfter: i + 1 });
        stored++;
      } catch (e) {
        err = e as StoreWriteError;
      }
    }
    expect(err).toBeInstanceOf(StoreWriteError);
    expect(err!.code).toBe('FULL');
    expect(err!.operation).toBe('mergeDeviceUser');
    expect(s.userCount()).toBe(stored);
    expect(s.getUser(`big${stored}`)).toBeNull();
    expect(s.getCursor('A')!.cursor).toBe(stored);
  });

  it('CLOSED after close(), for every write', () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = Store.open(path.join(dir, 'c.db'));
    s.close();
    s.close(); // idempotent
    expect(caught(() => s.appendEvent({ type: 'X' })).code).toBe('CLOSED');
    expect(caught(() => s.enqueue(['A'], 'u')).code).toBe('CLOSED');
    expect(s.recordEventDurably({ type: 'X' })).toEqual({ stored: false, pending: 1 });
  });

  it('CORRUPT when the file is not a database', () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const file = path.join(dir, 'junk.db');
    fs.writeFileSync(file, Buffer.alloc(8192, 0x5a));
    let err: unknown;
    try {
      Store.open(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreWriteError);
    expect((err as StoreWriteError).code).toBe('CORRUPT');
    expect((err as StoreWriteError).operation).toBe('open');
  });
});
