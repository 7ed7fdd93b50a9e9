// The test PostgreSQL itself (test/helpers/postgres.ts): it starts from the
// machine's packages, keeps its data across a stop and start on the same port,
// and a stop cuts the clients off (what the "PostgreSQL down" fault tests rely on).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-server.test.ts SKIPPED: ${reason}\n`);

describe.skipIf(reason !== null)(`test PostgreSQL server${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('answers on its URL and keeps its data across a stop and start', async () => {
    const url = await server.createDatabase();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('CREATE TABLE t (v int)');
    await c.query('INSERT INTO t VALUES (42)');
    const broken = new Promise<Error>((resolve) => c.on('error', resolve));
    await server.stopServer();
    // the client was cut off by the shutdown
    expect((await broken).message).toMatch(/terminat|shut|closed|Connection/i);
    const refused = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    await expect(refused.connect()).rejects.toThrow();
    await server.startServer();
    const c2 = new pg.Client({ connectionString: url });
    await c2.connect();
    expect((await c2.query('SELECT v FROM t')).rows).toEqual([{ v: 42 }]);
    await c2.end();
  });

  it('asks roles other than the superuser for their password over TCP', async () => {
    await server.sql(`CREATE ROLE pwuser LOGIN PASSWORD 'hunter2-x'`);
    const bad = new pg.Client({ host: server.host, port: server.port, database: 'termsync', user: 'pwuser', password: 'wrong' });
    await expect(bad.connect()).rejects.toThrow(/password authentication failed/);
    const good = new pg.Client({ host: server.host, port: server.port, database: 'termsync', user: 'pwuser', password: 'hunter2-x' });
    await good.connect();
    expect((await good.query('SELECT current_user AS u')).rows[0].u).toBe('pwuser');
    await good.end();
  });
});
