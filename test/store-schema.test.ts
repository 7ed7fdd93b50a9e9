import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, migrate, SchemaVersionError } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { fullUser, tempDir } from './store-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}
function open(file: string, opts: Parameters<typeof Store.open>[1] = {}): Store {
  const s = Store.open(file, opts);
  cleanups.push(() => s.close());
  return s;
}

const mode = (p: string) => fs.statSync(p).mode & 0o777;

describe('store schema and migrations', () => {
  it('migrates an empty file to the latest version with every table', () => {
    const file = path.join(dir(), 'a.db');
    const s = open(file);
    expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.length);
    const tables = (s.connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[]).filter(
      (n) => !n.startsWith('sqlite_'),
    );
    expect(tables).toEqual(
      [
        'events',
        'outbox',
        'pull_failures',
        'push_failures',
        'settings',
        'terminal_access_groups',
        'terminals',
        'tombstones',
        'user_access_groups',
        'user_cards',
        'user_faces',
        'user_fingers',
        'user_job_codes',
        'users',
      ].sort(),
    );
  });

  it('re-opening is idempotent and keeps the data', () => {
    const file = path.join(dir(), 'a.db');
    const s1 = Store.open(file);
    s1.putUserFromServer(fullUser('1'));
    s1.close();
    const s2 = open(file);
    expect(s2.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    expect(s2.userCount()).toBe(1);
    expect(migrate(s2.connection)).toEqual([]); // nothing left to apply
  });

  it('applies migrations in order, each with its user_version', () => {
    const file = path.join(dir(), 'm.db');
    const db = new Database(file);
    cleanups.push(() => db.close());
    const seen: number[] = [];
    const ms = [
      { version: 1, description: 'a', up: (d: Database.Database) => (d.exec('CREATE TABLE a (x)'), seen.push(1)) },
      { version: 2, description: 'b', up: (d: Database.Database) => (d.exec('CREATE TABLE b (x)'), seen.push(2)) },
    ];
    expect(migrate(db, ms.slice(0, 1))).toEqual([1]);
    expect(migrate(db, ms)).toEqual([2]);
    expect(seen).toEqual([1, 2]);
    expect(db.pragma('user_version', { simple: true })).toBe(2);
  });

  it('a failing migration leaves the previous version intact', () => {
    const file = path.join(dir(), 'f.db');
    const db = new Database(file);
    cleanups.push(() => db.close());
    const ms = [
      { version: 1, description: 'ok', up: (d: Database.Database) => void d.exec('CREATE TABLE a (x)') },
      {
        version: 2,
        description: 'fails half-way',
        up: (d: Database.Database) => {
          d.exec('CREATE TABLE b (x)');
          throw new Error('boom');
        },
      },
    ];
    expect(() => migrate(db, ms)).toThrow('boom');
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'b'").pluck().get()).toBe(0);
  });

  it('refuses a database written by a newer termsync', () => {
    const file = path.join(dir(), 'new.db');
    const db = new Database(file);
    db.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => Store.open(file)).toThrow(SchemaVersionError);
  });

  it('creates the directory 0700 and the database, -wal and -shm 0600', () => {
    const base = dir();
    const file = path.join(base, 'state', 'sub', 'termsync.db');
    const s = open(file);
    s.putUserFromServer(fullUser('1')); // make sure the WAL holds something
    expect(mode(path.join(base, 'state'))).toBe(0o700);
    expect(mode(path.join(base, 'state', 'sub'))).toBe(0o700);
    expect(mode(file)).toBe(0o600);
    expect(fs.existsSync(file + '-wal')).toBe(true);
    expect(mode(file + '-wal')).toBe(0o600);
    expect(mode(file + '-shm')).toBe(0o600);
  });

  it('tightens an existing database file to 0600 and leaves an existing directory alone', () => {
    const base = dir();
    fs.chmodSync(base, 0o755);
    const file = path.join(base, 'old.db');
    fs.writeFileSync(file, '');
    fs.chmodSync(file, 0o644);
    open(file);
    expect(mode(file)).toBe(0o600);
    expect(mode(base)).toBe(0o755);
  });

  it('runs WAL with synchronous NORMAL by default, FULL on request, and the busy timeout', () => {
    const s = open(path.join(dir(), 'p.db'));
    expect(s.connection.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.connection.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(s.connection.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(s.connection.pragma('foreign_keys', { simple: true })).toBe(1);
    const f = open(path.join(dir(), 'q.db'), { synchronous: 'FULL', busyTimeoutMs: 1234 });
    expect(f.connection.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(f.connection.pragma('busy_timeout', { simple: true })).toBe(1234);
  });

  it('backs up online to a 0600 file that opens as a store, reporting progress', async () => {
    const base = dir();
    const s = open(path.join(base, 'live.db'));
    for (let i = 0; i < 50; i++) s.putUserFromServer(fullUser(`u${i}`, i));
    const dest = path.join(base, 'backup.db');
    const progress: number[] = [];
    const res = await s.backup(dest, { progress: (p) => progress.push(p.remainingPages), pagesPerStep: 5 });
    expect(res.remainingPages).toBe(0);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress[progress.length - 1]).toBe(0);
    expect(mode(dest)).toBe(0o600);
    const copy = open(dest);
    expect(copy.userCount()).toBe(50);
    expect(copy.getUser('u7')).toEqual(s.getUser('u7'));
  });
});
