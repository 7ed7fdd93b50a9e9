// The PostgreSQL backend's connection settings and migrations against a real
// PostgreSQL (test/helpers/postgres.ts): the password from a file, PGPASSWORD
// or ~/.pgpass, a wrong one refused with PostgreSQL's reason; several daemons
// migrating one database at once; a database from a newer termsync refused;
// and the schema equivalent to SQLite's, table by table and column by column.
import Database from 'better-sqlite3';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/store/migrations.js';
import { isPostgresUrl, lookupPgpass, PgConfigError, resolvePgConfig } from '../src/store/pg/config.js';
import { PgDatabase } from '../src/store/pg/db.js';
import { migratePg, PG_LATEST_VERSION, PG_MIGRATIONS, PgSchemaVersionError, pgSchemaVersion } from '../src/store/pg/migrations.js';
import { StoreWriteError } from '../src/store/errors.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

describe('PostgreSQL connection settings (no server needed)', () => {
  it('tells a postgres:// URL from a SQLite path', () => {
    expect(isPostgresUrl('postgres://u@h:5432/d')).toBe(true);
    expect(isPostgresUrl('postgresql://u@h/d')).toBe(true);
    expect(isPostgresUrl('/var/lib/termsync/termsync.db')).toBe(false);
  });

  it('fills what the URL leaves out from the PG environment, and refuses what it cannot use', () => {
    const c = resolvePgConfig({ url: 'postgres:///' }, { PGHOST: 'db.site', PGPORT: '6543', PGUSER: 'ts', PGDATABASE: 'site1' });
    expect(c.pool).toMatchObject({ host: 'db.site', port: 6543, user: 'ts', database: 'site1', ssl: false });
    expect(c.passwordSource).toBe('none');
    expect(() => resolvePgConfig({ url: 'postgres://u@h/d?sslmode=sometimes' }, {})).toThrow(/sslmode must be one of/);
    expect(() => resolvePgConfig({ url: 'postgres://u@h/d?sslcert=x' }, {})).toThrow(/unknown URL parameter "sslcert"/);
    expect(() => resolvePgConfig({ url: 'postgres://u@h:99999/d' }, {})).toThrow(PgConfigError);
    expect(() => resolvePgConfig({ url: 'postgres://u@h/d?sslmode=disable', tlsCa: '/nonexistent' }, {})).toThrow(/sslmode is disable/);
  });

  it('keeps the password out of the URL it logs', () => {
    const c = resolvePgConfig({ url: 'postgres://ts:s3cret@h/d' }, {});
    expect(c.passwordSource).toBe('url');
    expect(c.pool.password).toBe('s3cret');
    expect(c.safeUrl).not.toContain('s3cret');
  });

  it('reads a pgpass line as libpq does (wildcards, escapes)', () => {
    const text = '# comment\nother:5432:*:ts:nope\ndb.site:*:site1:ts:pa\\:ss\n*:*:*:*:fallback\n';
    expect(lookupPgpass(text, 'db.site', 5432, 'site1', 'ts')).toBe('pa:ss');
    expect(lookupPgpass(text, 'x', 1, 'y', 'z')).toBe('fallback');
  });

  it('TLS: sslmode require/verify-full and client certificate files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-pgcfg-'));
    try {
      writeFileSync(join(dir, 'ca.pem'), 'CA');
      writeFileSync(join(dir, 'c.pem'), 'CERT');
      writeFileSync(join(dir, 'k.pem'), 'KEY');
      const req = resolvePgConfig({ url: 'postgres://u@h/d?sslmode=require' }, {});
      expect(req.pool.ssl).toMatchObject({ rejectUnauthorized: false });
      const full = resolvePgConfig({ url: 'postgres://u@h/d', tlsCa: join(dir, 'ca.pem'), tlsCert: join(dir, 'c.pem'), tlsKey: join(dir, 'k.pem') }, {});
      expect(full.sslmode).toBe('verify-full');
      expect(full.pool.ssl).toMatchObject({ rejectUnauthorized: true, ca: Buffer.from('CA'), cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
      expect(() => resolvePgConfig({ url: 'postgres://u@h/d?sslmode=require', tlsCert: join(dir, 'c.pem') }, {})).toThrow(/go together/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-schema.test.ts SKIPPED: ${reason}\n`);

describe.skipIf(reason !== null)(`PostgreSQL schema and connection${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let dir: string;
  beforeAll(async () => {
    server = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'termsync-pgschema-'));
    await server.sql(`CREATE ROLE site_daemon LOGIN PASSWORD 'correct horse'`);
    await server.sql(`CREATE DATABASE sitepw OWNER site_daemon`);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const url = () => `postgres://site_daemon@127.0.0.1:${server.port}/sitepw`;

  it('takes the password from --db-password-file, PGPASSWORD or a pgpass file; a wrong one fails with the reason', async () => {
    const file = join(dir, 'pw');
    writeFileSync(file, 'correct horse\n', { mode: 0o600 });
    const db = await PgDatabase.open({ url: url(), passwordFile: file });
    expect(db.config.passwordSource).toBe('file');
    expect((await db.query('SELECT current_user AS u')).rows[0].u).toBe('site_daemon');
    await db.close();

    const env = resolvePgConfig({ url: url() }, { PGPASSWORD: 'correct horse' });
    expect(env.passwordSource).toBe('PGPASSWORD');

    const pgpass = join(dir, 'pgpass');
    writeFileSync(pgpass, `127.0.0.1:${server.port}:sitepw:site_daemon:correct horse\n`);
    chmodSync(pgpass, 0o600);
    const viaPass = resolvePgConfig({ url: url() }, { PGPASSFILE: pgpass });
    expect(viaPass.passwordSource).toBe('pgpass');
    chmodSync(pgpass, 0o644); // readable by others: ignored, as libpq does
    expect(resolvePgConfig({ url: url() }, { PGPASSFILE: pgpass }).passwordSource).toBe('none');

    writeFileSync(file, 'wrong\n');
    await expect(PgDatabase.open({ url: url(), passwordFile: file })).rejects.toThrow(/password authentication failed for user "site_daemon"/);
  });

  it('migrates an empty database once when three daemons start at the same moment', async () => {
    const u = await server.createDatabase();
    const dbs = await Promise.all([1, 2, 3].map(() => PgDatabase.open({ url: u, migrate: false })));
    const applied = await Promise.all(dbs.map((d) => migratePg(d.pool)));
    expect(applied.flat().sort()).toEqual(PG_MIGRATIONS.map((m) => m.version));
    expect(await pgSchemaVersion(dbs[0]!.pool)).toBe(PG_LATEST_VERSION);
    const rows = await dbs[0]!.query('SELECT version FROM termsync_migrations ORDER BY version');
    expect(rows.rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    // a restart applies nothing
    expect(await migratePg(dbs[1]!.pool)).toEqual([]);
    await Promise.all(dbs.map((d) => d.close()));
  });

  it('refuses a database a newer termsync migrated', async () => {
    const u = await server.createDatabase();
    const db = await PgDatabase.open({ url: u });
    await db.query(`INSERT INTO termsync_migrations (version, description) VALUES (${PG_LATEST_VERSION + 1}, 'from the future')`);
    await expect(migratePg(db.pool)).rejects.toThrow(PgSchemaVersionError);
    await expect(migratePg(db.pool)).rejects.toThrow(/newer than this termsync knows/);
    await db.close();
  });

  it('a write to a stopped server fails with StoreWriteError naming PostgreSQL, and works again after the restart', async () => {
    const u = await server.createDatabase();
    const db = await PgDatabase.open({ url: u, connectTimeoutMs: 2000 });
    await db.tx('put', (c) => c.query(`INSERT INTO settings VALUES ('a', '1')`));
    await server.stopServer();
    try {
      const err = await db.tx('put', (c) => c.query(`INSERT INTO settings VALUES ('b', '2')`)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreWriteError);
      expect((err as Error).message).toMatch(/^put: PostgreSQL unreachable/);
    } finally {
      await server.startServer();
    }
    await db.tx('put', (c) => c.query(`INSERT INTO settings VALUES ('b', '2')`));
    expect((await db.query('SELECT key FROM settings ORDER BY key')).rows.map((r) => r.key)).toEqual(['a', 'b']);
    await db.close();
  });

  it('has every table and column of the SQLite schema (SQLite-only tables listed here on purpose)', async () => {
    const lite = new Database(':memory:');
    migrate(lite);
    // SQLite's own bookkeeping
    const sqliteOnly = new Set(['sqlite_sequence']);
    // how one daemon dials a terminal added through its admin API again after a restart; daemons
    // on PostgreSQL take their dial terminals from the flag file only (adding one through the API is refused)
    const sqliteOnlyColumns = new Set(['terminals.added_by', 'terminals.dial_pin', 'terminals.dial_key']);
    const tables = (lite.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[])
      .map((t) => t.name)
      .filter((n) => !sqliteOnly.has(n));
    const u = await server.createDatabase();
    const db = await PgDatabase.open({ url: u });
    for (const t of tables) {
      const liteCols = (lite.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[])
        .map((c) => c.name)
        .filter((c) => !sqliteOnlyColumns.has(`${t}.${c}`))
        .sort();
      const pgCols = (await db.query(`SELECT column_name FROM information_schema.columns WHERE table_name = $1`, [t])).rows
        .map((r) => r.column_name as string)
        .sort();
      expect({ table: t, columns: pgCols.filter((c) => liteCols.includes(c)) }).toEqual({ table: t, columns: liteCols });
    }
    lite.close();
    await db.close();
  });
});
