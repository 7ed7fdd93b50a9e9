// The hook the daemon uses to run on one machine or with others: `--db` names
// either a SQLite file (one daemon, the embedded default) or a PostgreSQL
// database (several daemons; postgres://USER@HOST:PORT/DB), and with
// PostgreSQL a LeaseManager decides which terminals this daemon drives.
//
// Flags this expects the CLI to pass (not wired into src/cli yet):
//   --db PATH|postgres://...   --db-password-file FILE
//   --db-tls-ca FILE  --db-tls-cert FILE  --db-tls-key FILE
//   --lease-sec N (default 10; PostgreSQL only)
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { SiteStore } from '../store/backend.js';
import { isPostgresUrl } from '../store/pg/config.js';
import { PgSiteStore } from '../store/pg/backend.js';
import { SqliteSiteStore } from '../store/sqlite-backend.js';
import { Store } from '../store/store.js';
import type { StoreOptions } from '../store/types.js';
import { DEFAULT_LEASE_SEC, LeaseManager, type LeaseManagerOptions } from './leases.js';

export interface SiteStoreSpec {
  /** a SQLite file path, or postgres://USER@HOST:PORT/DB */
  db: string;
  passwordFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** this daemon's ID (PostgreSQL: application_name, NOTIFY writer, lease owner) */
  daemonId?: string;
  logger?: Logger;
  /** SQLite only */
  sqlite?: StoreOptions;
}

/** host:pid:random — unique per process, readable in pg_stat_activity and the lease table */
export function defaultDaemonId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export async function openSiteStore(spec: SiteStoreSpec): Promise<SqliteSiteStore | PgSiteStore> {
  if (!isPostgresUrl(spec.db)) {
    if (spec.passwordFile || spec.tlsCa || spec.tlsCert || spec.tlsKey) {
      throw new Error('--db-password-file and --db-tls-* apply to a postgres:// --db only');
    }
    return new SqliteSiteStore(Store.open(spec.db, { ...spec.sqlite, logger: spec.logger }));
  }
  const id = spec.daemonId ?? defaultDaemonId();
  return PgSiteStore.open({
    url: spec.db,
    passwordFile: spec.passwordFile,
    tlsCa: spec.tlsCa,
    tlsCert: spec.tlsCert,
    tlsKey: spec.tlsKey,
    applicationName: `termsync ${id}`.slice(0, 63),
    writerId: id,
    logger: spec.logger,
  });
}

/**
 * The terminal leases of a daemon on PostgreSQL; null on SQLite (one daemon
 * drives every terminal, no fence needed). The caller starts it, passes
 * `token(terminalId)` as the `fence` of every cursor write of that terminal,
 * and stops driving a terminal when onLose says so.
 */
export function leasesFor(
  store: SiteStore,
  o: Omit<LeaseManagerOptions, 'db' | 'daemonId'> & { daemonId?: string },
): LeaseManager | null {
  if (!(store instanceof PgSiteStore)) return null;
  return new LeaseManager({ ...o, db: store.db, daemonId: o.daemonId ?? store.writerId, leaseSec: o.leaseSec ?? DEFAULT_LEASE_SEC });
}
