// The SiteStore contract (test/helpers/store-contract.ts) for the PostgreSQL
// backend, against a real PostgreSQL: each test gets a fresh database.
import { afterAll, beforeAll, describe } from 'vitest';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { describeStoreContract } from './helpers/store-contract.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-store.test.ts SKIPPED: ${reason}\n`);

describe.skipIf(reason !== null)(`PostgreSQL backend${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  describeStoreContract('postgres', async () => {
    const store = await PgSiteStore.open({ url: await server.createDatabase() });
    return { store, close: () => store.close() };
  });
});
