// src/cluster/site.ts: one --db value opens SQLite or PostgreSQL; leases only
// with PostgreSQL, owned under the daemon's ID.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leasesFor, openSiteStore } from '../src/cluster/site.js';
import { LeaseTable } from '../src/store/pg/leases.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

describe('--db picks the backend', () => {
  it('a path is SQLite, without leases; PostgreSQL-only flags are refused with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-site-'));
    try {
      const s = await openSiteStore({ db: join(dir, 'termsync.db') });
      expect(s.kind).toBe('sqlite');
      expect(leasesFor(s, { terminals: () => [] })).toBeNull();
      await s.close();
      await expect(openSiteStore({ db: join(dir, 'x.db'), passwordFile: '/x' })).rejects.toThrow(/postgres:\/\/ --db only/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-site.test.ts SKIPPED: ${reason}\n`);

describe.skipIf(reason !== null)(`--db postgres://${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('opens the PostgreSQL store (migrated) and its leases under the daemon ID', async () => {
    const s = await openSiteStore({ db: await server.createDatabase(), daemonId: 'site-a:1' });
    expect(s).toBeInstanceOf(PgSiteStore);
    expect(s.kind).toBe('postgres');
    const leases = leasesFor(s, { terminals: () => ['T1', 'T2'], leaseSec: 5 })!;
    await leases.start();
    expect(leases.heldTerminals()).toEqual(['T1', 'T2']);
    const rows = await new LeaseTable((s as PgSiteStore).db).list();
    expect(rows.map((r) => r.owner)).toEqual(['site-a:1', 'site-a:1']);
    const app = await (s as PgSiteStore).db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'termsync site-a:1%'`);
    expect(app.rows[0].n).toBeGreaterThan(0);
    await leases.stop();
    await s.close();
  });
});
