// One PostgreSQL database shared by the daemons of a site: a node-postgres
// pool, the migrations, and transactions that are one method each.
//
// tx() runs a function in BEGIN ... COMMIT on one pooled connection and
// retries the whole function when PostgreSQL reports a serialization failure
// or a deadlock (both mean "nothing was written, try again"). Everything else
// is rolled back and thrown as StoreWriteError.
import pg from 'pg';
import type { Logger } from 'pino';
import { resolvePgConfig, type PgConnectOptions, type ResolvedPgConfig } from './config.js';
import { isConnectionError, RETRYABLE_SQLSTATES, toPgStoreError } from './errors.js';
import { migratePg } from './migrations.js';

// bigint (int8) and numeric counts come back as JS numbers: every value the
// schema keeps in a bigint (ms times, sequence numbers, tokens) is a safe integer
pg.types.setTypeParser(20, (v) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`bigint ${v} is outside the safe integer range`);
  return n;
});

export type Isolation = 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';

export interface PgOpenOptions extends PgConnectOptions {
  logger?: Logger;
  /** run the migrations (default true) */
  migrate?: boolean;
}

const MAX_TX_ATTEMPTS = 5;

export class PgDatabase {
  readonly pool: pg.Pool;
  readonly config: ResolvedPgConfig;
  private readonly logger: Logger | undefined;
  private closed = false;
  /**
   * Transactions run again after a serialization failure (40001) or a
   * deadlock (40P01): nothing of the failed attempt was written. Each one is
   * also logged ("PostgreSQL transaction retried"), so a retry is never silent.
   */
  retries = 0;

  private constructor(config: ResolvedPgConfig, logger: Logger | undefined) {
    this.config = config;
    this.logger = logger;
    this.pool = new pg.Pool(config.pool);
    // an idle pooled connection that breaks (server restart) must not crash
    // the process: the pool drops it and the next query opens a new one
    this.pool.on('error', (err) => this.logger?.warn({ err: err.message }, 'PostgreSQL connection lost (idle, in the pool)'));
  }

  static async open(o: PgOpenOptions): Promise<PgDatabase> {
    const config = resolvePgConfig(o);
    if (config.passwordSource === 'url') {
      o.logger?.warn('the PostgreSQL password is in the --db URL, where ps and flag files show it: use --db-password-file or PGPASSWORD');
    }
    const db = new PgDatabase(config, o.logger);
    if (o.migrate !== false) {
      try {
        const applied = await migratePg(db.pool);
        if (applied.length) o.logger?.info({ applied, db: config.safeUrl }, 'PostgreSQL schema migrated');
      } catch (e) {
        await db.pool.end().catch(() => {});
        throw e;
      }
    }
    return db;
  }

  /** a query outside any transaction (reads) */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(text, params);
  }

  /**
   * Runs fn inside one transaction. fn may run more than once (on a
   * serialization failure or deadlock), so it must not have effects outside
   * the database before it returns.
   */
  async tx<T>(operation: string, fn: (c: pg.PoolClient) => Promise<T>, o: { isolation?: Isolation; readOnly?: boolean } = {}): Promise<T> {
    let attempt = 0;
    for (;;) {
      attempt++;
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw toPgStoreError(e, operation);
      }
      let broken = false;
      // the server may end the connection while fn works between two queries:
      // a checked-out client has no pool listener, and an 'error' event
      // without one would end the process (seen with PostgreSQL stopped)
      const onError = (err: Error) => {
        broken = true;
        this.logger?.warn({ err: err.message, operation }, 'PostgreSQL connection lost during a transaction');
      };
      client.on('error', onError);
      try {
        await client.query(`BEGIN ISOLATION LEVEL ${o.isolation ?? 'READ COMMITTED'}${o.readOnly ? ' READ ONLY' : ''}`);
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
        const state = (e as { code?: unknown }).code;
        if (typeof state === 'string' && RETRYABLE_SQLSTATES.has(state) && attempt < MAX_TX_ATTEMPTS) {
          this.retries++;
          this.logger?.info({ operation, sqlstate: state, attempt, retries: this.retries }, 'PostgreSQL transaction retried');
          continue;
        }
        // the database's and the network's errors become StoreWriteError; our
        // own (LeaseLostError, a caller's check) pass through unchanged
        if (e instanceof pg.DatabaseError || isConnectionError(e) || broken) throw toPgStoreError(e, operation);
        throw e;
      } finally {
        client.off('error', onError);
        client.release(broken ? true : undefined);
      }
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
