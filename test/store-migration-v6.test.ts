// Migration 6 (the change feed) on databases written by earlier releases
// (fixtures/db/schema-v1.db, schema-v5.db; copied first): users, cursors and
// owed pushes are kept. Every user takes a feed number, every terminal known
// before stands at the head (it had been sent everything but its outbox
// rows), and the outbox rows stay owed (the owed set), so the upgrade loses
// no push and re-sends none.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emptyUser } from '../src/model/user.js';
import { LATEST_SCHEMA_VERSION } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function copyOf(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-mig6-'));
  dirs.push(dir);
  const file = join(dir, 'termsync.db');
  copyFileSync(new URL(`../fixtures/db/${name}`, import.meta.url), file);
  return file;
}

describe('migration 6: the change feed', () => {
  it('a schema-1 database: users numbered, terminals at the head, the owed pushes still owed', () => {
    const s = Store.open(copyOf('schema-v1.db'));
    try {
      expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      const walked = s.walkUsers({ limit: 10 });
      expect(walked.map((x) => x.user.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(new Set(walked.map((x) => x.seq)).size).toBe(5);
      expect(s.feedHead()).toBe(5);
      for (const t of ['t1', 't2', 't3']) expect(s.getFeedCursor(t)).toBe(5);
      expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
      expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
      // nothing re-sent by the feed; the three owed pushes stay owed to t2
      for (const t of ['t1', 't2', 't3']) expect(s.readFeed(t, { limit: 100 }).entries).toEqual([]);
      expect(s.takeOwed('t2', 10).map((o) => [o.userId, o.user?.id])).toEqual([
        ['1', '1'],
        ['2', '2'],
        ['3', '3'],
      ]);
      expect(s.owedCounts()).toEqual({ total: 3, byTerminal: { t2: 3 } });
      // a terminal added after the upgrade starts at 0: the whole feed is its to read
      s.upsertTerminal({ id: 'new', direction: 'dial', approved: true });
      expect(s.readFeed('new', { limit: 100 }).entries.map((e) => e.userId).sort()).toEqual(['1', '2', '3', '4', '5']);
      // a change after the upgrade takes the next number and reaches every terminal
      const u = emptyUser('6');
      u.name = 'after the upgrade';
      expect(s.putUserFromServer(u).seq).toBe(6);
      expect(s.readFeed('t1', { limit: 10 }).entries.map((e) => e.userId)).toEqual(['6']);
      expect(s.connection.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      s.close();
    }
  });

  it('a schema-5 database with owed pushes (an owed delete among them): all still owed, none re-sent', () => {
    const file = copyOf('schema-v5.db');
    const s = Store.open(file);
    try {
      expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      expect(s.walkUsers({ limit: 10 }).map((x) => x.user.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(s.feedHead()).toBe(5);
      for (const t of ['t1', 't2', 'zk1', '1004']) expect(s.getFeedCursor(t)).toBe(5);
      expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
      expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
      expect(s.getTerminal('zk1')!.protocol).toBe('zk');
      for (const t of ['t1', 't2', 'zk1', '1004']) expect(s.readFeed(t, { limit: 100 }).entries).toEqual([]);
      // the owed pushes: users 1, 2, 3 and the delete of 6 to t2, 4 to zk1, the delete of 6 to t1
      expect(s.takeOwed('t2', 10).map((o) => [o.userId, o.user === null ? 'delete' : 'put'])).toEqual([
        ['1', 'put'],
        ['2', 'put'],
        ['3', 'put'],
        ['6', 'delete'],
      ]);
      expect(s.takeOwed('zk1', 10).map((o) => o.userId)).toEqual(['4']);
      expect(s.takeOwed('t1', 10).map((o) => [o.userId, o.user])).toEqual([['6', null]]);
      expect(s.owedCounts()).toEqual({ total: 6, byTerminal: { t1: 1, t2: 4, zk1: 1 } });
      expect(s.listPushFailures()).toMatchObject([{ terminalId: 't1', userId: '5', status: 11 }]);
      expect(s.getSyncMode()).toBe('all');
      // delivered: the owed entries go, the cursor is untouched
      const owed = s.takeOwed('t2', 10);
      s.recordPush({ terminalId: 't2', ok: owed.map((o) => ({ userId: o.userId, gen: o.gen })) });
      expect(s.owedCount('t2')).toBe(0);
      expect(s.connection.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      s.close();
    }
    // reopened: not migrated twice, nothing moved
    const again = Store.open(file);
    try {
      expect(again.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      expect(again.feedHead()).toBe(5);
      expect(again.owedCounts()).toEqual({ total: 2, byTerminal: { t1: 1, zk1: 1 } });
    } finally {
      again.close();
    }
  });

  it('every earlier version (1..5) migrates to the feed', async () => {
    const { MIGRATIONS, migrate } = await import('../src/store/migrations.js');
    const Database = (await import('better-sqlite3')).default;
    for (let v = 1; v <= 5; v++) {
      const dir = mkdtempSync(join(tmpdir(), 'termsync-mig6-'));
      dirs.push(dir);
      const file = join(dir, `v${v}.db`);
      const db = new Database(file);
      migrate(db, MIGRATIONS.slice(0, v));
      const now = 1_000;
      db.prepare('INSERT INTO users (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)').run('a', 'A', now, now + 2);
      db.prepare('INSERT INTO users (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)').run('b', 'B', now, now + 1);
      db.prepare("INSERT INTO terminals (id, direction, cursor, log_epoch, created_at, updated_at) VALUES ('T', 'dial', 9, 2, 0, 0)").run();
      db.prepare("INSERT INTO outbox (terminal_id, user_id, enqueued_at) VALUES ('T', 'a', 5)").run();
      db.close();
      const s = Store.open(file);
      try {
        expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
        // numbered in the order of their last change: b, then a
        expect(s.walkUsers({ limit: 10 }).map((x) => [x.user.id, x.seq])).toEqual([
          ['a', 2],
          ['b', 1],
        ]);
        expect(s.getFeedCursor('T')).toBe(2);
        expect(s.getCursor('T')).toEqual({ logEpoch: 2, cursor: 9 });
        expect(s.takeOwed('T', 10).map((o) => o.userId)).toEqual(['a']);
      } finally {
        s.close();
      }
    }
  });
});
