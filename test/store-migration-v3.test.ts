// Migration 3 (terminals.identity) on a database written by the released code
// (fixtures/db/schema-v1.db, copied first): nothing is lost, and the terminals
// recorded before it are unbound until their next session binds them.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function copyOfV1(): string {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-mig3-'));
  dirs.push(dir);
  const file = join(dir, 'termsync.db');
  copyFileSync(new URL('../fixtures/db/schema-v1.db', import.meta.url), file);
  return file;
}

describe('migration 3: terminals.identity', () => {
  it('keeps users, cursors, owed pushes and settings of a schema-1 database; identities start unbound', () => {
    const s = Store.open(copyOfV1());
    try {
      expect(s.schemaVersion).toBeGreaterThanOrEqual(3);
      expect(s.userCount()).toBe(5);
      expect(s.listUsers().map((u) => u.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
      expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
      expect(s.outboxCount('t2')).toBe(3);
      expect(s.take('t2', 10).map((o) => o.userId).sort()).toEqual(['1', '2', '3']);
      expect(s.getSyncMode()).toBe('all');
      expect(s.eventCount()).toBe(1);
      const t3 = s.getTerminal('t3')!;
      expect(t3).toMatchObject({ deviceId: 1003, direction: 'listen', approved: false, identity: null });
      expect(s.getTerminal('t1')!.accessGroups).toEqual([1]);
      // the new column takes a binding
      s.updateTerminal('t3', { identity: JSON.stringify({ kind: 'address', net: '10.0.0.5/32' }) });
      expect(JSON.parse(s.getTerminal('t3')!.identity!)).toEqual({ kind: 'address', net: '10.0.0.5/32' });
      expect(s.connection.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      s.close();
    }
  });
});
