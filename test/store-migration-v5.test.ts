// Migration 5 (terminals.protocol) on a database written by the released code
// (fixtures/db/schema-v1.db, copied first): nothing is lost, and every terminal
// recorded before it speaks termsync.
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
  const dir = mkdtempSync(join(tmpdir(), 'termsync-mig5-'));
  dirs.push(dir);
  const file = join(dir, 'termsync.db');
  copyFileSync(new URL('../fixtures/db/schema-v1.db', import.meta.url), file);
  return file;
}

describe('migration 5: terminals.protocol', () => {
  it("keeps users, cursors, owed pushes and settings of a schema-1 database; its terminals are 'termsync'", () => {
    const file = copyOfV1();
    const s = Store.open(file);
    try {
      expect(s.schemaVersion).toBeGreaterThanOrEqual(5);
      expect(s.listUsers().map((u) => u.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
      expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
      expect(s.take('t2', 10).map((o) => o.userId).sort()).toEqual(['1', '2', '3']);
      expect(s.getSyncMode()).toBe('all');
      expect(s.listTerminals().map((t) => [t.id, t.protocol])).toEqual([
        ['t1', 'termsync'],
        ['t2', 'termsync'],
        ['t3', 'termsync'],
      ]);
      // a terminal of another protocol keeps its protocol
      s.upsertTerminal({ id: 'zk1', direction: 'dial', address: '10.0.0.9:4370', approved: true, protocol: 'zk' });
      expect(s.getTerminal('zk1')!.protocol).toBe('zk');
      // a terminal added without one speaks termsync
      s.upsertTerminal({ id: 'n1', direction: 'dial', address: '10.0.0.8:51211' });
      expect(s.getTerminal('n1')!.protocol).toBe('termsync');
      expect(s.connection.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      s.close();
    }
    // reopened: the protocol stays, the migration is not applied twice
    const again = Store.open(file);
    try {
      expect(again.getTerminal('zk1')!.protocol).toBe('zk');
      expect(again.listUsers()).toHaveLength(5);
    } finally {
      again.close();
    }
  });
});
