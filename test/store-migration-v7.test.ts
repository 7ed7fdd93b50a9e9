// Migration 7 (where a dial terminal came from, and how an API-added one is
// dialled again) on a database written by the change-feed release
// (fixtures/db/schema-v6.db, copied first): users, tombstones, log and feed
// cursors, owed pushes and refusals are kept; the terminals recorded before
// have no known origin.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LATEST_SCHEMA_VERSION } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function copyOfV6(): string {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-mig7-'));
  dirs.push(dir);
  const file = join(dir, 'termsync.db');
  copyFileSync(new URL('../fixtures/db/schema-v6.db', import.meta.url), file);
  return file;
}

describe('migration 7: dial terminals keep their origin', () => {
  it('a schema-6 database keeps users, tombstones, cursors, owed pushes and refusals; its terminals have no known origin', () => {
    const file = copyOfV6();
    const s = Store.open(file);
    try {
      expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      expect(s.listUsers().map((u) => u.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(s.feedHead()).toBe(7);
      expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
      expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
      expect([s.getFeedCursor('t1'), s.getFeedCursor('t2'), s.getFeedCursor('zk9')]).toEqual([4, 7, 0]);
      // t1 still reads user 5 and the tombstone of 6 from the feed
      expect(s.readFeed('t1', { limit: 10 }).entries.map((e) => [e.userId, e.user === null ? 'delete' : 'put'])).toEqual([
        ['5', 'put'],
        ['6', 'delete'],
      ]);
      expect(s.takeOwed('t2', 10).map((o) => o.userId)).toEqual(['2', '3']);
      expect(s.listPushFailures({ terminalId: 't1' }).map((f) => [f.userId, f.status])).toEqual([['5', 11]]);
      expect(s.getSyncMode()).toBe('all');
      expect(s.dialTerminalsAddedBy(null).map((t) => t.id)).toEqual(['t1', 't2', 'zk9']);
      expect(s.dialTerminalsAddedBy('api')).toEqual([]);
      // a terminal added through the API after the upgrade keeps how to dial it
      s.upsertDialTerminal({ id: 'zk9', direction: 'dial', address: '127.0.0.1:4370', approved: true, protocol: 'zk' }, { addedBy: 'api', key: Buffer.from('4242') });
      const [zk] = s.dialTerminalsAddedBy('api');
      expect([zk.id, zk.protocol, zk.dialKey?.toString(), zk.dialPin]).toEqual(['zk9', 'zk', '4242', null]);
      expect(s.getFeedCursor('zk9')).toBe(0);
      // the flag file's terminals keep no key: the flag file gives it again at every start
      s.upsertDialTerminal({ id: 't1', direction: 'dial', address: '127.0.0.1:51211', approved: true }, { addedBy: 'flags', key: Buffer.from('x') });
      expect(s.dialTerminalsAddedBy('flags').map((t) => [t.id, t.dialKey])).toEqual([['t1', null]]);
      expect(s.connection.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      s.close();
    }
    const again = Store.open(file);
    try {
      expect(again.dialTerminalsAddedBy('api').map((t) => t.id)).toEqual(['zk9']);
      expect(again.listUsers()).toHaveLength(5);
    } finally {
      again.close();
    }
  });
});
