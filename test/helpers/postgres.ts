// A real PostgreSQL server for tests: initdb in a fresh temporary directory, a
// free port on 127.0.0.1, the unix socket in the same directory, settings that
// trade durability for speed (fsync=off: a test server's data is thrown away).
// Stopped and removed by stop(); stopServer()/startServer() take it down and up
// again on the same port and data (the "PostgreSQL down for 10 s" fault).
//
// PostgreSQL refuses to run as root, so when the tests run as root the server
// runs as the unprivileged `postgres` user that Debian's package creates (or
// $TERMSYNC_PG_USER). Where the binaries or that user are missing,
// findPostgres() returns the reason and the suites skip with it in their name.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PostgresInstall {
  /** directory holding initdb and postgres */
  bin: string;
  /** uid/gid the server runs as (undefined: as this process) */
  uid: number | undefined;
  gid: number | undefined;
}

/** the superuser initdb creates; trusted on the socket and on 127.0.0.1 */
export const PG_SUPERUSER = 'termsync';

function binDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.TERMSYNC_PG_BIN) dirs.push(process.env.TERMSYNC_PG_BIN);
  try {
    dirs.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config on PATH
  }
  try {
    // Debian keeps the server binaries out of PATH, one directory per major version
    const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
    for (const v of versions) dirs.push(join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // not a Debian layout
  }
  for (const p of (process.env.PATH ?? '').split(':')) if (p) dirs.push(p);
  return dirs;
}

let cached: { install: PostgresInstall | null; reason: string | null } | undefined;

/** Where PostgreSQL is and whom it runs as, or why it cannot run here. */
export function findPostgres(): { install: PostgresInstall | null; reason: string | null } {
  if (cached) return cached;
  const bin = binDirs().find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'postgres')));
  if (!bin) {
    cached = { install: null, reason: 'PostgreSQL is not installed (initdb/postgres not found; apt-get install -y postgresql)' };
    return cached;
  }
  let uid: number | undefined;
  let gid: number | undefined;
  if (process.getuid?.() === 0) {
    const user = process.env.TERMSYNC_PG_USER ?? 'postgres';
    try {
      uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    } catch {
      cached = { install: null, reason: `running as root and there is no unprivileged user "${user}" to run PostgreSQL as (set TERMSYNC_PG_USER)` };
      return cached;
    }
  }
  cached = { install: { bin, uid, gid }, reason: null };
  return cached;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface TestPostgres {
  host: string;
  port: number;
  /** the directory holding the unix socket */
  socketDir: string;
  /** postgres://termsync@127.0.0.1:PORT/termsync */
  url: string;
  /** a URL for database `db` on this server */
  urlFor(db: string, user?: string): string;
  /** creates a fresh empty database and returns its URL */
  createDatabase(name?: string): Promise<string>;
  /** runs SQL as the superuser on the `termsync` database */
  sql(text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** fast shutdown (every connection is cut); the data stays */
  stopServer(): Promise<void>;
  /** starts it again on the same port and data */
  startServer(): Promise<void>;
  /** the server's log so far */
  log(): string;
  /** stops the server and deletes its directory */
  stop(): Promise<void>;
}

let dbCounter = 0;

export async function startPostgres(opts: { settings?: Record<string, string> } = {}): Promise<TestPostgres> {
  const { install, reason } = findPostgres();
  if (!install) throw new Error(reason!);
  const dir = mkdtempSync(join(tmpdir(), 'termsync-pg-'));
  const data = join(dir, 'data');
  if (install.uid !== undefined) {
    chownSync(dir, install.uid, install.gid!);
    chmodSync(dir, 0o700);
  }
  const asUser = install.uid !== undefined ? { uid: install.uid, gid: install.gid } : {};
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  for (const k of Object.keys(childEnv)) if (k.startsWith('PG')) delete childEnv[k];
  execFileSync(
    join(install.bin, 'initdb'),
    ['-D', data, '-U', PG_SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
    { ...asUser, cwd: dir, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  // roles other than the superuser authenticate with a password over TCP (the
  // password-file and PGPASSWORD tests need a server that asks)
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      `local all all trust`,
      `host all ${PG_SUPERUSER} 127.0.0.1/32 trust`,
      `host all all 127.0.0.1/32 scram-sha-256`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    port: String(port),
    unix_socket_directories: dir,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    shared_buffers: '32MB',
    log_min_messages: 'warning',
    ...opts.settings,
  };
  const args = ['-D', data, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];

  let proc: ChildProcess | null = null;
  let logText = '';
  const superUrl = (db: string) => `postgres://${PG_SUPERUSER}@127.0.0.1:${port}/${db}`;

  const isReady = async (): Promise<boolean> => {
    const c = new pg.Client({ connectionString: superUrl('postgres'), connectionTimeoutMillis: 1000 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => {});
    }
  };

  const startServer = async (): Promise<void> => {
    if (proc) return;
    const p = spawn(join(install.bin, 'postgres'), args, { ...asUser, cwd: dir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    const onData = (c: Buffer) => {
      logText += c.toString();
      if (logText.length > 65536) logText = logText.slice(-65536);
    };
    p.stdout!.on('data', onData);
    p.stderr!.on('data', onData);
    let exited = false;
    p.once('exit', () => {
      exited = true;
      if (proc === p) proc = null;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`PostgreSQL exited during start:\n${logText}`);
      if (await isReady()) return;
      if (Date.now() > deadline) throw new Error(`PostgreSQL not ready within 30 s:\n${logText}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stopServer = async (): Promise<void> => {
    const p = proc;
    if (!p) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGINT'); // fast shutdown: roll back open transactions, cut every client
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(timer);
  };

  // a test process that ends, or is told to end, must not leave a server behind
  const onExit = () => {
    try {
      proc?.kill('SIGKILL');
    } catch {
      // already gone
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    onExit();
    rmSync(dir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('exit', onExit);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  await startServer();

  const sql = async (text: string, params?: unknown[]): Promise<pg.QueryResult> => {
    const c = new pg.Client({ connectionString: superUrl(PG_SUPERUSER) });
    c.on('error', () => {});
    await c.connect();
    try {
      return await c.query(text, params);
    } finally {
      await c.end().catch(() => {});
    }
  };
  // initdb made `postgres` and the templates; the tests' default database:
  {
    const c = new pg.Client({ connectionString: superUrl('postgres') });
    await c.connect();
    await c.query(`CREATE DATABASE ${PG_SUPERUSER}`);
    await c.end();
  }

  return {
    host: '127.0.0.1',
    port,
    socketDir: dir,
    url: superUrl(PG_SUPERUSER),
    urlFor: (db, user = PG_SUPERUSER) => `postgres://${user}@127.0.0.1:${port}/${db}`,
    async createDatabase(name) {
      const db = name ?? `t${process.pid}_${++dbCounter}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`bad test database name ${db}`);
      await sql(`CREATE DATABASE ${db}`);
      return superUrl(db);
    },
    sql,
    stopServer,
    startServer,
    log: () => logText,
    async stop() {
      await stopServer();
      process.removeListener('exit', onExit);
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
