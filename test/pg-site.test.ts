// src/cluster/site.ts: a daemon on PostgreSQL opens its store from the run
// configuration under its daemon ID; its leases are owned under that ID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseManager } from '../src/cluster/leases.js';
import { defaultDaemonId, openClusterStore } from '../src/cluster/site.js';
import { LeaseTable } from '../src/store/pg/leases.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

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
    expect(defaultDaemonId()).toMatch(new RegExp(`:${process.pid}:[0-9a-f]{6}$`));
    const s = await openClusterStore({ db: await server.createDatabase() }, 'site-a:1');
    expect(s).toBeInstanceOf(PgSiteStore);
    expect(s.kind).toBe('postgres');
    const leases = new LeaseManager({ db: s.db, daemonId: s.writerId, terminals: () => ['T1', 'T2'], leaseSec: 5 });
    await leases.start();
    expect(leases.heldTerminals()).toEqual(['T1', 'T2']);
    const rows = await new LeaseTable(s.db).list();
    expect(rows.map((r) => r.owner)).toEqual(['site-a:1', 'site-a:1']);
    const app = await s.db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'termsync site-a:1%'`);
    expect(app.rows[0].n).toBeGreaterThan(0);
    await leases.stop();
    await s.close();
  });
});
