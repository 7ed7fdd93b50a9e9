// User search for the console (src/store/user-search.ts) on a real SQLite file,
// and migration 4 (users_by_name) on a database written by the released code.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { userFromJson } from '../src/model/user.js';
import { Store } from '../src/store/store.js';
import { UserSearch } from '../src/store/user-search.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'termsync-search-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('user search', () => {
  it('by ID prefix and by name prefix (ASCII case-insensitive, any UTF-8), keyset-paged without gaps or repeats', () => {
    const store = Store.open(join(tempDir(), 't.db'));
    try {
      const names = ['alice', 'Alan', 'ALBERT', 'bob', 'Álvaro', '<script>alert(1)</script>', 'שלום עולם', '🦊 Fox', 'al'];
      names.forEach((name, i) => store.putUserFromServer(userFromJson({ id: `u${String(i).padStart(3, '0')}`, name, pin: i === 0 ? '1234' : undefined, cards: [{ type: 1, data: `0${i}` }] })));
      for (let i = 0; i < 25; i++) store.putUserFromServer(userFromJson({ id: `p${String(i).padStart(2, '0')}`, name: 'Same Name' }));
      const s = new UserSearch(store.connection);
      expect(s.search('name', 'al', null, 10).users.map((u) => u.name)).toEqual(['al', 'Alan', 'ALBERT', 'alice']);
      expect(s.search('name', 'AL', null, 10).users.map((u) => u.name)).toEqual(['al', 'Alan', 'ALBERT', 'alice']);
      expect(s.search('name', 'שלום', null, 10).users.map((u) => u.id)).toEqual(['u006']);
      expect(s.search('name', '🦊', null, 10).users.map((u) => u.id)).toEqual(['u007']);
      expect(s.search('name', '<scr', null, 10).users[0]).toEqual({ id: 'u005', name: '<script>alert(1)</script>', disabled: false, cards: 1, fingers: 0, faces: 0, pinSet: false });
      expect(s.search('name', 'alice', null, 10).users[0].pinSet).toBe(true);
      expect(s.search('id', 'u00', null, 100).users.length).toBe(9);
      expect(s.search('id', 'zz', null, 100)).toEqual({ users: [], next: null });
      // 25 users of the same name, pages of 10: all 25 once, in ID order
      const seen: string[] = [];
      let after: string | null = null;
      let pages = 0;
      do {
        const p = s.search('name', 'same', after, 10);
        seen.push(...p.users.map((u) => u.id));
        after = p.next;
        pages++;
      } while (after);
      expect(pages).toBe(3);
      expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, '0')}`));
      // and the same by ID
      const ids: string[] = [];
      after = null;
      do {
        const p = s.search('id', 'p', after, 7);
        ids.push(...p.users.map((u) => u.id));
        after = p.next;
      } while (after);
      expect(ids).toEqual(seen);
      // the name search runs on the index, not a scan of the users table
      const plan = store.connection
        .prepare("EXPLAIN QUERY PLAN SELECT id FROM users WHERE name COLLATE NOCASE >= 'a' AND name COLLATE NOCASE < 'b' AND (name COLLATE NOCASE, id) > ('', '') ORDER BY name COLLATE NOCASE, id LIMIT 5")
        .all() as { detail: string }[];
      expect(plan.map((p) => p.detail).join(' | ')).toMatch(/USING (COVERING )?INDEX users_by_name/);
      expect(plan.map((p) => p.detail).join(' | ')).not.toMatch(/TEMP B-TREE/);
      // a later page starts its index range at the cursor (not at the prefix: pages deep in a common name stay fast)
      const later = store.connection
        .prepare("EXPLAIN QUERY PLAN SELECT id FROM users INDEXED BY users_by_name WHERE name COLLATE NOCASE >= 'b' AND name COLLATE NOCASE < 'c' AND (name COLLATE NOCASE > 'b' OR id > 'x') ORDER BY name COLLATE NOCASE, id LIMIT 5")
        .all() as { detail: string }[];
      expect(later.map((p) => p.detail).join(' | ')).toMatch(/SEARCH users USING (COVERING )?INDEX users_by_name \(name>\? AND name<\?\)/);
    } finally {
      store.close();
    }
  });

  it('migration 4 adds users_by_name to a schema-1 database and loses nothing', () => {
    const dir = tempDir();
    const file = join(dir, 'v1.db');
    copyFileSync(join(import.meta.dirname, '..', 'fixtures', 'db', 'schema-v1.db'), file);
    const store = Store.open(file);
    try {
      expect(store.schemaVersion).toBeGreaterThanOrEqual(4);
      const idx = store.connection.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'users_by_name'").all();
      expect(idx).toHaveLength(1);
      expect(store.userCount()).toBe(5);
      expect(store.outboxCount('t2')).toBe(3);
      expect(store.getCursor('t1')).toMatchObject({ cursor: 42 });
      expect(store.getSyncMode()).toBe('all');
      const s = new UserSearch(store.connection);
      const all = s.search('name', '', null, 10).users;
      expect(all).toHaveLength(5);
      expect(s.search('id', '', null, 10).users.map((u) => u.id).sort()).toEqual(['1', '2', '3', '4', '5']);
    } finally {
      store.close();
    }
  });
});
