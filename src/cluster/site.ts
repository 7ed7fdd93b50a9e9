// The database of a daemon on PostgreSQL: its ID (lease owner, NOTIFY writer,
// application_name in pg_stat_activity) and the store opened from the run
// configuration's --db postgres://... and --db-* flags.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { RunConfig } from '../config.js';
import { PgSiteStore } from '../store/pg/backend.js';

/** host:pid:random — unique per process, readable in pg_stat_activity and the lease table */
export function defaultDaemonId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

/** Opens (and migrates) the PostgreSQL store of `cfg.db` as daemon `daemonId`. */
export function openClusterStore(
  cfg: Pick<RunConfig, 'db' | 'dbPasswordFile' | 'dbTlsCa' | 'dbTlsCert' | 'dbTlsKey'>,
  daemonId: string,
  log?: Logger,
): Promise<PgSiteStore> {
  return PgSiteStore.open({
    url: cfg.db,
    passwordFile: cfg.dbPasswordFile,
    tlsCa: cfg.dbTlsCa,
    tlsCert: cfg.dbTlsCert,
    tlsKey: cfg.dbTlsKey,
    applicationName: `termsync ${daemonId}`.slice(0, 63),
    writerId: daemonId,
    logger: log,
  });
}
