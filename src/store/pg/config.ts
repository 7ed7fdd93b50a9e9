// From `--db postgres://USER@HOST:PORT/DB` and its companion flags to a
// node-postgres pool configuration.
//
// Where the password comes from, first match wins:
//   1. --db-password-file FILE (first line; the file should be mode 0600)
//   2. the URL itself (postgres://user:secret@...) — accepted, but it shows in
//      `ps` and in flag files, so the daemon logs a warning
//   3. PGPASSWORD, then the PGPASSFILE / ~/.pgpass file, as libpq does
// Host, port, user and database missing from the URL come from PGHOST, PGPORT,
// PGUSER and PGDATABASE, then libpq's defaults (localhost, 5432, the OS user).
//
// TLS: `sslmode` in the URL or PGSSLMODE: disable | prefer | require |
// verify-ca | verify-full (default prefer, like libpq... except that
// node-postgres cannot fall back, so prefer means disable here: say require
// to insist). --db-tls-ca adds a CA to verify the server (implies verify-full
// unless sslmode says otherwise); --db-tls-cert/--db-tls-key present a client
// certificate.
import { readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import type { PoolConfig } from 'pg';

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

export interface PgConnectOptions {
  /** postgres://USER@HOST:PORT/DB (postgresql:// too) */
  url: string;
  passwordFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** application_name shown in pg_stat_activity (e.g. termsync:<daemon id>) */
  applicationName?: string;
  /** pool size; default 10 */
  max?: number;
  /** how long to wait for a connection, ms; default 5000 */
  connectTimeoutMs?: number;
  /** statement_timeout for every statement, ms; default 30,000 (0: none) */
  statementTimeoutMs?: number;
}

export class PgConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PgConfigError';
  }
}

/** true for a --db value that names a PostgreSQL database rather than a SQLite file */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

export interface ResolvedPgConfig {
  pool: PoolConfig;
  /** where the password came from (for the startup log; never the password) */
  passwordSource: 'file' | 'url' | 'PGPASSWORD' | 'pgpass' | 'none';
  /** the URL without any password, for logs */
  safeUrl: string;
  sslmode: SslMode;
}

function readSecretFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new PgConfigError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  const first = text.split(/\r?\n/)[0] ?? '';
  if (first === '') throw new PgConfigError(`${what} ${path} is empty (the password is its first line)`);
  return first;
}

/** libpq's ~/.pgpass lookup: hostname:port:database:username:password, `*` matches anything, `\` escapes */
export function lookupPgpass(text: string, host: string, port: number, db: string, user: string): string | undefined {
  for (const raw of text.split(/\r?\n/)) {
    if (raw === '' || raw.startsWith('#')) continue;
    const fields: string[] = [];
    let cur = '';
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i]!;
      if (c === '\\' && i + 1 < raw.length) cur += raw[++i];
      else if (c === ':' && fields.length < 4) {
        fields.push(cur);
        cur = '';
      } else cur += c;
    }
    fields.push(cur);
    if (fields.length !== 5) continue;
    const [h, p, d, u, pw] = fields as [string, string, string, string, string];
    const match = (pat: string, v: string) => pat === '*' || pat === v;
    if (match(h, host) && match(p, String(port)) && match(d, db) && match(u, user)) return pw;
  }
  return undefined;
}

export function resolvePgConfig(o: PgConnectOptions, env: NodeJS.ProcessEnv = process.env): ResolvedPgConfig {
  if (!isPostgresUrl(o.url)) throw new PgConfigError(`--db ${o.url}: not a postgres:// URL`);
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw new PgConfigError(`--db ${o.url}: not a valid URL (expected postgres://USER@HOST:PORT/DB)`);
  }
  const host = decodeURIComponent(u.hostname) || env.PGHOST || 'localhost';
  const portText = u.port || env.PGPORT || '5432';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new PgConfigError(`--db: bad port ${portText}`);
  const user = decodeURIComponent(u.username) || env.PGUSER || userInfo().username;
  const dbPath = u.pathname.replace(/^\//, '');
  const database = decodeURIComponent(dbPath) || env.PGDATABASE || user;

  const params = u.searchParams;
  for (const k of params.keys()) {
    if (!['sslmode', 'application_name'].includes(k)) {
      throw new PgConfigError(`--db: unknown URL parameter "${k}" (known: sslmode, application_name; TLS files go in --db-tls-ca/--db-tls-cert/--db-tls-key)`);
    }
  }
  const modeText = params.get('sslmode') ?? env.PGSSLMODE ?? (o.tlsCa ? 'verify-full' : 'prefer');
  if (!SSL_MODES.includes(modeText as SslMode)) throw new PgConfigError(`--db: sslmode must be one of ${SSL_MODES.join(', ')}, not "${modeText}"`);
  const sslmode = modeText as SslMode;

  let password: string | undefined;
  let passwordSource: ResolvedPgConfig['passwordSource'] = 'none';
  if (o.passwordFile) {
    password = readSecretFile(o.passwordFile, '--db-password-file');
    passwordSource = 'file';
  } else if (u.password) {
    password = decodeURIComponent(u.password);
    passwordSource = 'url';
  } else if (env.PGPASSWORD) {
    password = env.PGPASSWORD;
    passwordSource = 'PGPASSWORD';
  } else {
    const passfile = env.PGPASSFILE ?? join(homedir(), '.pgpass');
    let text: string | undefined;
    try {
      // libpq ignores a pgpass file others can read; so do we
      if ((statSync(passfile).mode & 0o077) === 0) text = readFileSync(passfile, 'utf8');
    } catch {
      // no such file
    }
    const found = text !== undefined ? lookupPgpass(text, host, port, database, user) : undefined;
    if (found !== undefined) {
      password = found;
      passwordSource = 'pgpass';
    }
  }

  let ssl: PoolConfig['ssl'] = false;
  if (sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full') {
    const tls: ConnectionOptions = { rejectUnauthorized: sslmode !== 'require' };
    if (o.tlsCa) tls.ca = readFileSync(o.tlsCa);
    if (o.tlsCert || o.tlsKey) {
      if (!o.tlsCert || !o.tlsKey) throw new PgConfigError('--db-tls-cert and --db-tls-key go together');
      tls.cert = readFileSync(o.tlsCert);
      tls.key = readFileSync(o.tlsKey);
    }
    // verify-ca: the chain, not the name
    if (sslmode === 'verify-ca') tls.checkServerIdentity = () => undefined;
    ssl = tls;
  } else if (o.tlsCa || o.tlsCert || o.tlsKey) {
    throw new PgConfigError(`--db-tls-* given but sslmode is ${sslmode}: say sslmode=verify-full (or require) in the URL`);
  }

  const safe = new URL(o.url);
  safe.password = '';
  const pool: PoolConfig = {
    host,
    port,
    user,
    database,
    password,
    ssl,
    max: o.max ?? 10,
    connectionTimeoutMillis: o.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    application_name: params.get('application_name') ?? o.applicationName ?? 'termsync',
    statement_timeout: o.statementTimeoutMs ?? 30_000,
    keepAlive: true,
  };
  return { pool, passwordSource, safeUrl: safe.toString(), sslmode };
}
