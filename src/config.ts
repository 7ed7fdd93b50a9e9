// The configuration of `termsync run`, as the flag table (src/cli/options.ts)
// produces it after flag files and the command line are merged, plus loaders
// for the secrets it names (comm key, admin token).
//
// Secret files must not be readable by anyone but the service user: a loader
// refuses a file whose mode grants anything to group or others, because a key
// that other local users can read protects nothing.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { DEV_COMM_KEY, parseCommKey } from './sim/devkey.js';

export const SYNC_MODES = ['off', 'server', 'all', 'specific'] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface HostPort {
  host: string;
  port: number;
}

/** The terminal protocols the daemon dials (one driver each, src/drivers/). */
export const TERMINAL_PROTOCOLS = ['termsync', 'zk', 'gsdk'] as const;
export type TerminalProtocol = (typeof TERMINAL_PROTOCOLS)[number];

/** One `--terminal=ID@HOST:PORT` (or `--terminal=zk:ID@HOST[:PORT]`): a terminal the server dials. */
export interface TerminalEndpoint {
  /** termsync: the terminal's deviceId (HELLO), 1..2^32-1; zk: the terminal's name on the server (letters, digits, '.', '_', '-'); gsdk: `gsdk-DEVICEID` */
  id: number | string;
  /** gsdk: the terminal's own address when the device gateway dials it; '' (port 0) when the terminal dials the gateway */
  host: string;
  port: number;
  /** the terminal's protocol; absent: 'termsync' */
  protocol?: TerminalProtocol;
}

/** One `--terminal-key=ID:PATH`: a key file for one terminal (a termsync comm key, or a ZK terminal's numeric comm key). */
export interface TerminalKeyFile {
  /** the terminal's ID as given to --terminal (a termsync deviceId as digits, or a ZK terminal's name) */
  terminalId: string;
  /** the deviceId, when the ID is a number */
  deviceId?: number;
  path: string;
}

export interface RunConfig {
  /** SQLite database file, or postgres://USER@HOST:PORT/DB (several daemons; src/cluster) */
  db: string;
  /** PostgreSQL only: the password's file (first line), TLS files, lease TTL, this daemon's ID */
  dbPasswordFile?: string;
  dbTlsCa?: string;
  dbTlsCert?: string;
  dbTlsKey?: string;
  leaseSec: number;
  daemonId?: string;
  /** terminals the server dials (--terminal, repeatable; flag files first, then the command line) */
  terminals: TerminalEndpoint[];
  /** plain-TCP listener terminals dial in to; undefined = off */
  listen?: HostPort;
  /** TLS listener terminals dial in to; undefined = off (needs tlsCert and tlsKey) */
  tlsListen?: HostPort;
  tlsCert?: string;
  tlsKey?: string;
  /** CA bundle that signs terminal client certificates */
  tlsCa?: string;
  tlsRequireClientCert: boolean;
  /**
   * Sync mode to set at start-up. undefined = keep the mode stored in the
   * database (whose initial value is 'server'); when given it overrides and is persisted.
   */
  syncMode?: SyncMode;
  /** comm key file; required unless insecureDevKey */
  commKeyFile?: string;
  /** per-terminal comm key files (--terminal-key, repeatable) */
  terminalKeys: TerminalKeyFile[];
  /** the ZK comm key of every ZK terminal without a --terminal-key of its own (a file holding the number) */
  zkPasswordFile?: string;
  /** read and diff each ZK terminal's user table this often (edits and deletes raise no event) */
  zkPollSec: number;
  /** the Suprema device gateway (G-SDK, gRPC over TLS) the gsdk: terminals are reached through */
  gsdkGateway?: HostPort;
  /** the device gateway's root CA (PEM), which its certificate must chain to */
  gsdkCaFile?: string;
  /** use the public development key (src/sim/devkey.ts); never on a site */
  insecureDevKey: boolean;
  /** admin HTTP listener; undefined = off */
  adminListen?: HostPort;
  adminTokenFile?: string;
  /** extra Host names the admin address is reached by (a reverse proxy's name), NAME or NAME:PORT; repeatable */
  adminHosts: string[];
  /** where POST /api/backup writes; undefined = a "backups" folder beside the database */
  backupDir?: string;
  /** admin listener: most open connections from one client address */
  adminMaxConnsPerAddress: number;
  /** admin listener: time a client gets to send a request's headers, ms */
  adminHeaderTimeoutMs: number;
  /** admin listener: most event streams (SSE) open from one client address */
  adminMaxStreamsPerAddress: number;
  /** admin listener: new connections per second from one client address (burst twice that), refused before any HTTP work; 0: no limit */
  adminConnectRate: number;
  /** facts per second one terminal may deliver (burst 10 s worth); past it its LOG_ACKs wait; 0: no limit */
  terminalEventRate: number;
  heartbeatSec: number;
  requestTimeoutMs: number;
  /** global cap on requests in flight to all terminals together */
  concurrency: number;
  /** approve terminals that authenticate but are not configured, instead of holding them pending */
  autoApprove: boolean;
  /** new device IDs recorded at most this fast, "N/min" or "N/s" (auto-approved or pending); "off" for no limit */
  autoApproveRate: string;
  /** auto-approve only terminals whose source address is in one of these ranges (CIDR; empty: any) */
  autoApproveFrom: string[];
  /** a site-key terminal's device ID is bound to its source address widened to this IPv4 / IPv6 prefix */
  identityPrefixV4: number;
  identityPrefixV6: number;
  /** monitoring events kept (the newest); older ones are pruned */
  eventsKeep: number;
  /** monitoring events older than this many days are pruned */
  eventsMaxAgeDays: number;
  /** per terminal and event type a terminal can trigger: events written per second, and the burst */
  eventsRate: number;
  eventsBurst: number;
  logLevel: LogLevel;
  logPretty: boolean;
  logFrames: boolean;
  /** SQLite busy_timeout */
  busyTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** most terminals dialled at once (connect plus handshake); more wait their turn (SessionManager maxConcurrentDials) */
  maxConcurrentDials: number;
  /** most users one terminal may list (LIST_USERS), besides the capacity it announces; more ends its session */
  maxTerminalUsers: number;
  /** a reconcile (user-list comparison) running longer is abandoned and retried later with backoff */
  reconcileTimeoutSec: number;
  /** every flag file read, in the order read (includes inline), absolute paths; for logs and reload */
  flagFiles: string[];
}

export const DEFAULT_ADMIN_LISTEN: HostPort = { host: '127.0.0.1', port: 51280 };

/** Values used for flags that neither a flag file nor the command line set. */
export const RUN_DEFAULTS = {
  db: './data/termsync.db',
  dbPasswordFile: undefined,
  dbTlsCa: undefined,
  dbTlsCert: undefined,
  dbTlsKey: undefined,
  leaseSec: 10,
  daemonId: undefined,
  terminals: [] as TerminalEndpoint[],
  terminalKeys: [] as TerminalKeyFile[],
  zkPasswordFile: undefined,
  zkPollSec: 30,
  gsdkGateway: undefined,
  gsdkCaFile: undefined,
  listen: undefined,
  tlsListen: undefined,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsCa: undefined,
  tlsRequireClientCert: false,
  syncMode: undefined,
  commKeyFile: undefined,
  insecureDevKey: false,
  adminListen: DEFAULT_ADMIN_LISTEN,
  adminTokenFile: undefined,
  adminHosts: [] as string[],
  backupDir: undefined,
  adminMaxConnsPerAddress: 64,
  adminHeaderTimeoutMs: 5_000,
  adminMaxStreamsPerAddress: 8,
  adminConnectRate: 100,
  terminalEventRate: 2000,
  heartbeatSec: 10,
  requestTimeoutMs: 10_000,
  concurrency: 32,
  autoApprove: false,
  autoApproveRate: '60/min',
  autoApproveFrom: [] as string[],
  identityPrefixV4: 32,
  identityPrefixV6: 64,
  eventsKeep: 1_000_000,
  eventsMaxAgeDays: 90,
  eventsRate: 10,
  eventsBurst: 200,
  logLevel: 'info',
  logPretty: false,
  logFrames: false,
  busyTimeoutMs: 5_000,
  reconnectMinMs: 500,
  reconnectMaxMs: 30_000,
  maxConcurrentDials: 256,
  maxTerminalUsers: 2_000_000,
  reconcileTimeoutSec: 300,
} as const satisfies Omit<RunConfig, 'flagFiles'>;

export type ConfigErrorCode =
  | 'FLAG' // a flag, a flag file or a combination of flags is wrong (FlagError)
  | 'SECRET_FILE_MODE'
  | 'SECRET_FILE_UNREADABLE'
  | 'SECRET_TOO_SHORT';

/**
 * Anything wrong with the configuration that the administrator must fix. The
 * message says what and how; the CLI prints it without a stack and exits 2.
 */
export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  constructor(code: ConfigErrorCode, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.code = code;
  }
}

function modeString(mode: number): string {
  return '0' + (mode & 0o777).toString(8).padStart(3, '0');
}

/**
 * Reads a secret file after checking that only its owner can access it.
 * `what` names the file in messages ("comm key file").
 */
export function readSecretFile(path: string, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'does not exist' : err.code === 'EACCES' ? 'is not readable by this user' : err.message;
    throw new ConfigError('SECRET_FILE_UNREADABLE', `${what} ${path} ${why}`);
  }
  try {
    // fstat the open descriptor, so the file checked is the file read
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError('SECRET_FILE_UNREADABLE', `${what} ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      const how = (st.mode & 0o044) !== 0 ? 'readable' : 'accessible';
      throw new ConfigError(
        'SECRET_FILE_MODE',
        `${what} ${path} is ${how} by group/others (mode ${modeString(st.mode)}); chmod 600 ${path}`,
      );
    }
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads the comm key. Refuses a file that group or others can access. The file
 * holds the key as hex (at least 32 hex digits) or as raw bytes with one trailing
 * newline stripped; at least 16 bytes either way. The format rule is the one the
 * simulator uses (parseCommKey in src/sim/devkey.ts), so one key file works for both.
 */
export function loadCommKey(path: string): Buffer {
  const raw = readSecretFile(path, 'comm key file');
  try {
    return parseCommKey(raw, `comm key file ${path}`);
  } catch (e) {
    throw new ConfigError('SECRET_TOO_SHORT', (e as Error).message);
  } finally {
    raw.fill(0);
  }
}

/** The comm key the daemon uses: from --comm-key-file, or the public dev key with --insecure-dev-key. */
export function resolveCommKey(cfg: Pick<RunConfig, 'commKeyFile' | 'insecureDevKey'>): Buffer {
  if (cfg.commKeyFile !== undefined) return loadCommKey(cfg.commKeyFile);
  if (cfg.insecureDevKey) return Buffer.from(DEV_COMM_KEY);
  throw new ConfigError('FLAG', '--comm-key-file is required (or --insecure-dev-key, for local testing only)');
}

/**
 * Loads a ZK comm key file: the terminal's comm key as a number (0..4294967295,
 * as set in the terminal's menu, Comm. > Comm Key), digits only, surrounding
 * whitespace ignored. Refuses a file that group or others can access. Returns
 * the digits, the form a ZK DialTarget key takes.
 */
export function loadZkPassword(path: string): Buffer {
  const raw = readSecretFile(path, 'ZK comm key file');
  const text = raw.toString('latin1').trim();
  raw.fill(0);
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffff_ffff)
    throw new ConfigError('FLAG', `ZK comm key file ${path} must hold the terminal's comm key as a number 0..4294967295 (digits only, e.g. echo 123456 > ${path})`);
  return Buffer.from(String(Number(text)), 'latin1');
}

/** Whether a terminal endpoint is a Suprema terminal behind the device gateway (the G-SDK driver). */
export function isGsdkTerminal(t: TerminalEndpoint): boolean {
  return t.protocol === 'gsdk';
}

/** Whether a terminal endpoint is dialled with the ZK driver. */
export function isZkTerminal(t: TerminalEndpoint): boolean {
  return t.protocol === 'zk';
}

/**
 * The comm key of each ZK terminal (by terminal ID), as the ZK driver's dial
 * key: its --terminal-key file, else --zk-password-file, else none ('0', a
 * terminal's factory setting).
 */
export function resolveZkKeys(cfg: Pick<RunConfig, 'terminals' | 'terminalKeys' | 'zkPasswordFile'>): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const zk = cfg.terminals.filter(isZkTerminal);
  if (zk.length === 0) return out;
  const site = cfg.zkPasswordFile !== undefined ? loadZkPassword(cfg.zkPasswordFile) : Buffer.from('0');
  for (const t of zk) {
    const own = cfg.terminalKeys.find((k) => k.terminalId === String(t.id));
    out.set(String(t.id), own ? loadZkPassword(own.path) : site);
  }
  return out;
}

/** The --terminal-key files of termsync terminals (by deviceId): every one not naming a ZK terminal. */
export function termsyncKeyFiles(cfg: Pick<RunConfig, 'terminals' | 'terminalKeys'>): { deviceId: number; path: string }[] {
  const zkIds = new Set(cfg.terminals.filter(isZkTerminal).map((t) => String(t.id)));
  return cfg.terminalKeys.filter((k) => k.deviceId !== undefined && !zkIds.has(k.terminalId)).map((k) => ({ deviceId: k.deviceId!, path: k.path }));
}

export const MIN_ADMIN_TOKEN_CHARS = 16;

/** Loads the admin API bearer token: the file's text, surrounding whitespace trimmed, at least 16 characters. */
export function loadAdminToken(path: string): string {
  const token = readSecretFile(path, 'admin token file').toString('utf8').trim();
  if (token.length < MIN_ADMIN_TOKEN_CHARS) {
    throw new ConfigError(
      'SECRET_TOO_SHORT',
      `admin token file ${path} holds ${token.length} characters; a token needs at least ${MIN_ADMIN_TOKEN_CHARS} (e.g. head -c 32 /dev/urandom | base64 > ${path})`,
    );
  }
  return token;
}
