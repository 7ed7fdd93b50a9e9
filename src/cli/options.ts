// The flags of `termsync run`, declared once. The same table drives commander
// (command line and --help, via addRunFlags) and the flag-file parser
// (src/cli/flagfile.ts), so a flag cannot be valid in one place and not the other.
import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseRate } from '../rate-limit.js';
import { parseCidr } from '../terminal/identity.js';
import { DEFAULT_TERMINAL_PORT } from '../codec/constants.js';
import { ZK_DEFAULT_PORT } from '../drivers/zk/constants.js';
import { GSDK_DEVICE_PORT } from '../drivers/gsdk/constants.js';
import {
  LOG_LEVELS,
  RUN_DEFAULTS,
  SYNC_MODES,
  type HostPort,
  type RunConfig,
  type TerminalEndpoint,
  type TerminalKeyFile,
} from '../config.js';

export type FlagType = 'string' | 'int' | 'bool' | 'enum' | 'hostport' | 'path' | 'repeatable';

/** The RunConfig property a flag sets; `flagfile` is the include directive, not a config value. */
export type FlagKey = Exclude<keyof RunConfig, 'flagFiles'> | 'flagfile';

export interface FlagSpec {
  /** kebab-case, without the leading dashes */
  name: string;
  key: FlagKey;
  type: FlagType;
  help: string;
  /** placeholder in --help, e.g. HOST:PORT */
  valueName?: string;
  /** enum: the allowed values */
  choices?: readonly string[];
  /** int: inclusive bounds */
  min?: number;
  max?: number;
  /** hostport: the value "off" means unset (turns off a default or a flag file's listener) */
  allowOff?: boolean;
  /** hostport: accept port 0 (an ephemeral port, useful in tests) */
  allowPortZero?: boolean;
  /** repeatable: parses one occurrence */
  item?: (raw: string, flag: string) => unknown;
  /** extra check on the parsed value; returns a message (without the flag location) or undefined */
  validate?: (value: unknown) => string | undefined;
}

/** A value that does not fit its flag. The message has no location; callers add it. */
export class FlagValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagValueError';
  }
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

function parsePort(text: string, allowZero: boolean): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  if (port > 65535 || (port === 0 && !allowZero)) return undefined;
  return port;
}

/**
 * `HOST:PORT`, `[IPv6]:PORT`; with `defaultPort` the port may be left out.
 * Returns undefined when the text does not have that shape.
 */
export function parseHostPort(text: string, opts: { allowPortZero?: boolean; defaultPort?: number } = {}): HostPort | undefined {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (v6) {
    host = v6[1];
    portText = v6[2];
    if (isIP(host) !== 6) return undefined;
  } else {
    const parts = text.split(':');
    if (parts.length > 2) return undefined; // a bare IPv6 address: needs brackets
    host = parts[0];
    portText = parts[1];
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return undefined;
  }
  let port: number | undefined;
  if (portText === undefined) port = opts.defaultPort;
  else port = parsePort(portText, opts.allowPortZero ?? false);
  if (port === undefined) return undefined;
  return { host, port };
}

/** A terminal's name on the server: what a ZK terminal is called (`zk:NAME@HOST`), and the form --terminal-key takes for it. */
const TERMINAL_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * `ID@HOST[:PORT]`, ID the terminal's deviceId (1..2^32-1), PORT defaults to 51211;
 * or `zk:ID@HOST[:PORT]`, a ZK terminal, ID its name on the server (letters,
 * digits, '.', '_', '-'), PORT defaults to 4370.
 */
export function parseTerminal(raw: string, flag = '--terminal'): TerminalEndpoint {
  if (raw.startsWith('zk:')) return parseZkTerminal(raw, flag);
  if (raw.startsWith('gsdk:')) return parseGsdkTerminal(raw, flag);
  const bad = () =>
    new FlagValueError(`${flag} must be ID@HOST:PORT with ID the terminal's device id, e.g. 7@10.0.0.20:${DEFAULT_TERMINAL_PORT} (got ${JSON.stringify(raw)})`);
  const at = raw.indexOf('@');
  if (at <= 0) throw bad();
  const idText = raw.slice(0, at);
  if (!/^\d{1,10}$/.test(idText)) throw bad();
  const id = Number(idText);
  if (id < 1 || id > 0xffff_ffff) throw bad();
  const hp = parseHostPort(raw.slice(at + 1), { defaultPort: DEFAULT_TERMINAL_PORT });
  if (!hp) throw bad();
  return { id, host: hp.host, port: hp.port };
}

function parseZkTerminal(raw: string, flag: string): TerminalEndpoint {
  const bad = () =>
    new FlagValueError(
      `${flag} for a ZK terminal must be zk:NAME@HOST[:PORT], NAME its name on the server (letters, digits, '.', '_', '-'), e.g. zk:door-1@10.0.0.30:${ZK_DEFAULT_PORT} (got ${JSON.stringify(raw)})`,
    );
  const rest = raw.slice(3);
  const at = rest.indexOf('@');
  if (at <= 0) throw bad();
  const id = rest.slice(0, at);
  if (!TERMINAL_NAME.test(id)) throw bad();
  const hp = parseHostPort(rest.slice(at + 1), { defaultPort: ZK_DEFAULT_PORT });
  if (!hp) throw bad();
  return { id, host: hp.host, port: hp.port, protocol: 'zk' };
}

/**
 * `gsdk:DEVICEID`: a Suprema terminal that dials the device gateway (its ID goes
 * into the gateway's accept filter); `gsdk:DEVICEID@HOST[:PORT]`: one the
 * gateway dials at its address (PORT defaults to 51211). Its name on the
 * server is `gsdk-DEVICEID`.
 */
function parseGsdkTerminal(raw: string, flag: string): TerminalEndpoint {
  const bad = () =>
    new FlagValueError(
      `${flag} for a Suprema terminal must be gsdk:DEVICEID (it dials the device gateway) or gsdk:DEVICEID@HOST[:PORT] (the gateway dials it; port defaults to ${GSDK_DEVICE_PORT}), DEVICEID its device ID 1..4294967295, e.g. gsdk:541531029 (got ${JSON.stringify(raw)})`,
    );
  const rest = raw.slice(5);
  const at = rest.indexOf('@');
  const idText = at < 0 ? rest : rest.slice(0, at);
  if (!/^\d{1,10}$/.test(idText) || Number(idText) < 1 || Number(idText) > 0xffff_ffff) throw bad();
  const id = `gsdk-${Number(idText)}`;
  if (at < 0) return { id, host: '', port: 0, protocol: 'gsdk' };
  const hp = parseHostPort(rest.slice(at + 1), { defaultPort: GSDK_DEVICE_PORT });
  if (!hp) throw bad();
  return { id, host: hp.host, port: hp.port, protocol: 'gsdk' };
}

/** `ID:PATH`: a key file for one terminal (a termsync deviceId, or a ZK terminal's name), overriding the site key. */
export function parseTerminalKey(raw: string): TerminalKeyFile {
  const m = /^([A-Za-z0-9._-]{1,64}):(.+)$/.exec(raw);
  const numeric = m ? /^\d+$/.test(m[1]) : false;
  const deviceId = m && numeric ? Number(m[1]) : undefined;
  if (!m || (numeric && (deviceId! < 1 || deviceId! > 0xffff_ffff)))
    throw new FlagValueError(
      `--terminal-key must be ID:PATH with ID a terminal's device id or a ZK terminal's name, e.g. 7:/etc/termsync/terminal-7.key (got ${JSON.stringify(raw)})`,
    );
  return deviceId !== undefined ? { terminalId: m[1], deviceId, path: m[2] } : { terminalId: m[1], path: m[2] };
}

/** `NAME` or `NAME:PORT`: a host name the admin address is reached by. */
export function parseAdminHost(raw: string, flag = '--admin-host'): string {
  const hp = parseHostPort(raw, { defaultPort: 0 });
  if (!hp) throw new FlagValueError(`${flag} must be a host name, optionally with :PORT, e.g. termsync.example.org or termsync.example.org:443 (got ${JSON.stringify(raw)})`);
  return raw.toLowerCase();
}

/**
 * The flag table. Defaults live in RUN_DEFAULTS (src/config.ts); the help text
 * shows them. Order here is the order of --help.
 */
export const RUN_FLAGS: readonly FlagSpec[] = [
  { name: 'flagfile', key: 'flagfile', type: 'repeatable', valueName: 'FILE', item: (raw) => raw,
    help: 'read flags from FILE (one --flag=value per line, # comments); command-line flags override it; repeatable' },
  { name: 'db', key: 'db', type: 'path', valueName: 'PATH|URL',
    help: 'SQLite database file (one daemon), or postgres://USER@HOST:PORT/DB: several daemons sharing one PostgreSQL database, terminals leased among them' },
  { name: 'db-password-file', key: 'dbPasswordFile', type: 'path', valueName: 'PATH',
    help: 'PostgreSQL: file (mode 0600) whose first line is the password (else PGPASSWORD or ~/.pgpass)' },
  { name: 'db-tls-ca', key: 'dbTlsCa', type: 'path', valueName: 'PATH',
    help: 'PostgreSQL: CA bundle to verify the server by (implies sslmode=verify-full unless the URL says otherwise)' },
  { name: 'db-tls-cert', key: 'dbTlsCert', type: 'path', valueName: 'PATH', help: 'PostgreSQL: client certificate (PEM), with --db-tls-key' },
  { name: 'db-tls-key', key: 'dbTlsKey', type: 'path', valueName: 'PATH', help: 'PostgreSQL: client certificate key (PEM)' },
  { name: 'lease-sec', key: 'leaseSec', type: 'int', min: 1, max: 3600, valueName: 'SEC',
    help: 'PostgreSQL: terminal lease TTL; a daemon that dies loses its terminals to the others after this (renewed every third of it)' },
  { name: 'daemon-id', key: 'daemonId', type: 'string', valueName: 'ID',
    help: 'PostgreSQL: this daemon\'s name in the lease table and pg_stat_activity (default HOST:PID:RANDOM); unique per daemon' },
  { name: 'terminal', key: 'terminals', type: 'repeatable', valueName: 'ID@HOST:PORT', item: parseTerminal,
    help: `a terminal to dial (device id @ address; port defaults to ${DEFAULT_TERMINAL_PORT}), or zk:NAME@HOST[:PORT] for a ZK terminal (port defaults to ${ZK_DEFAULT_PORT}), or gsdk:DEVICEID[@HOST[:PORT]] for a Suprema terminal behind --gsdk-gateway (without an address it dials the gateway); repeatable` },
  { name: 'listen', key: 'listen', type: 'hostport', valueName: 'HOST:PORT', allowOff: true, allowPortZero: true,
    help: 'accept terminals that dial in on this address (plain TCP); "off" to disable' },
  { name: 'tls-listen', key: 'tlsListen', type: 'hostport', valueName: 'HOST:PORT', allowOff: true, allowPortZero: true,
    help: 'accept terminals that dial in over TLS on this address (needs --tls-cert and --tls-key); "off" to disable' },
  { name: 'tls-cert', key: 'tlsCert', type: 'path', valueName: 'PATH', help: 'PEM certificate (chain) of the TLS listener' },
  { name: 'tls-key', key: 'tlsKey', type: 'path', valueName: 'PATH', help: 'PEM private key of the TLS listener' },
  { name: 'tls-ca', key: 'tlsCa', type: 'path', valueName: 'PATH', help: 'PEM CA bundle that signs terminal client certificates' },
  { name: 'tls-require-client-cert', key: 'tlsRequireClientCert', type: 'bool',
    help: 'refuse TLS terminals without a client certificate signed by --tls-ca' },
  { name: 'sync-mode', key: 'syncMode', type: 'enum', choices: SYNC_MODES, valueName: 'MODE',
    help: 'set and persist the sync mode; without it the stored mode is kept (initially "server")' },
  { name: 'comm-key-file', key: 'commKeyFile', type: 'path', valueName: 'PATH',
    help: 'file holding the comm key shared with the terminals (mode 0600; raw bytes or hex, at least 16 bytes); required' },
  { name: 'terminal-key', key: 'terminalKeys', type: 'repeatable', valueName: 'ID:PATH', item: parseTerminalKey,
    help: 'a comm key file (mode 0600) for one terminal (device id, or a ZK terminal\'s name), overriding --comm-key-file (--zk-password-file for a ZK terminal) for it; repeatable' },
  { name: 'zk-password-file', key: 'zkPasswordFile', type: 'path', valueName: 'PATH',
    help: 'file (mode 0600) holding the comm key of the ZK terminals as a number, e.g. 123456 (0 or no file: no comm key)' },
  { name: 'zk-poll-sec', key: 'zkPollSec', type: 'int', min: 1, max: 86_400, valueName: 'SEC',
    help: 'read each ZK terminal\'s user table this often to find edits and deletes made at it (a ZK terminal announces only new users)' },
  { name: 'gsdk-gateway', key: 'gsdkGateway', type: 'hostport', valueName: 'HOST:PORT',
    help: 'the Suprema device gateway (G-SDK, gRPC over TLS, usually port 4000) the gsdk: terminals are reached through; needs --gsdk-ca-file' },
  { name: 'gsdk-ca-file', key: 'gsdkCaFile', type: 'path', valueName: 'PATH',
    help: "the device gateway's root CA certificate (PEM; the gateway's cert/ca.crt) its certificate must chain to" },
  { name: 'insecure-dev-key', key: 'insecureDevKey', type: 'bool',
    help: 'use the public development comm key instead of --comm-key-file (simulator and demos only, never on a site)' },
  { name: 'admin-listen', key: 'adminListen', type: 'hostport', valueName: 'HOST:PORT', allowOff: true, allowPortZero: true,
    help: 'admin HTTP API address; "off" to disable' },
  { name: 'admin-token-file', key: 'adminTokenFile', type: 'path', valueName: 'PATH',
    help: 'file holding the admin API bearer token (mode 0600)' },
  { name: 'admin-host', key: 'adminHosts', type: 'repeatable', valueName: 'NAME[:PORT]', item: parseAdminHost,
    help: 'another Host name the admin address is reached by (a reverse proxy\'s name); requests naming any other host are refused; repeatable' },
  { name: 'admin-max-conns-per-address', key: 'adminMaxConnsPerAddress', type: 'int', min: 2, max: 100_000, valueName: 'N',
    help: 'admin listener: most open connections from one client address (the oldest idle one is closed to make room)' },
  { name: 'admin-header-timeout-ms', key: 'adminHeaderTimeoutMs', type: 'int', min: 100, max: 600_000, valueName: 'MS',
    help: 'admin listener: time a client gets to send the headers of a request' },
  { name: 'admin-max-streams-per-address', key: 'adminMaxStreamsPerAddress', type: 'int', min: 1, max: 10_000, valueName: 'N',
    help: 'admin listener: most live event streams (monitoring log) open from one client address' },
  { name: 'terminal-event-rate', key: 'terminalEventRate', type: 'int', min: 0, max: 10_000_000, valueName: 'N',
    help: 'log events per second one terminal may deliver (burst 10 s worth); past it its acknowledgements wait, so it is slowed, not read faster; 0 = no limit' },
  { name: 'admin-connect-rate', key: 'adminConnectRate', type: 'int', min: 0, max: 1_000_000, valueName: 'N',
    help: 'admin listener: new connections per second from one client address (burst 2N); one over it is refused unread before any HTTP work; 0 = no limit' },
  { name: 'backup-dir', key: 'backupDir', type: 'path', valueName: 'DIR',
    help: 'directory the admin API writes database backups to (default: "backups" beside the database)' },
  { name: 'heartbeat-sec', key: 'heartbeatSec', type: 'int', min: 1, max: 3600, valueName: 'N',
    help: 'seconds between heartbeats to an idle terminal' },
  { name: 'request-timeout-ms', key: 'requestTimeoutMs', type: 'int', min: 100, max: 600_000, valueName: 'MS',
    help: 'how long to wait for a terminal to answer a request' },
  { name: 'concurrency', key: 'concurrency', type: 'int', min: 1, max: 4096, valueName: 'N',
    help: 'most requests in flight to all terminals together' },
  { name: 'auto-approve', key: 'autoApprove', type: 'bool',
    help: 'approve terminals that authenticate but are not configured, instead of holding them pending' },
  { name: 'auto-approve-rate', key: 'autoApproveRate', type: 'string', valueName: 'N/min',
    validate: (v) => (v === 'off' || parseRate(String(v)) ? undefined : 'must be N/min or N/s (e.g. 60/min), or off'),
    help: 'new device IDs recorded (auto-approved or pending) at most this fast; a new device beyond it is refused and dials again later' },
  { name: 'auto-approve-from', key: 'autoApproveFrom', type: 'repeatable', valueName: 'CIDR',
    item: (raw, flag) => {
      if (!parseCidr(raw)) throw new FlagValueError(`${flag} must be an address range, e.g. 10.20.0.0/16 or fd00::/8 (got ${JSON.stringify(raw)})`);
      return raw;
    },
    help: 'with --auto-approve: approve only terminals whose source address is in this range (others are held pending); repeatable' },
  { name: 'identity-prefix-v4', key: 'identityPrefixV4', type: 'int', min: 0, max: 32, valueName: 'BITS',
    help: 'a terminal using the site key is bound to its source address within this IPv4 prefix (0: any address)' },
  { name: 'identity-prefix-v6', key: 'identityPrefixV6', type: 'int', min: 0, max: 128, valueName: 'BITS',
    help: 'the same for IPv6 source addresses' },
  { name: 'events-keep', key: 'eventsKeep', type: 'int', min: 1000, max: 1_000_000_000, valueName: 'N',
    help: 'monitoring events kept; older ones are pruned in the background' },
  { name: 'events-max-age-days', key: 'eventsMaxAgeDays', type: 'int', min: 1, max: 36_500, valueName: 'DAYS',
    help: 'monitoring events older than this are pruned' },
  { name: 'events-rate', key: 'eventsRate', type: 'int', min: 1, max: 1_000_000, valueName: 'N',
    help: 'per terminal and event type a terminal can trigger (deletes on the device, refused pushes, log gaps...): events written per second; the rest are counted in one EVENTS_SUPPRESSED event' },
  { name: 'events-burst', key: 'eventsBurst', type: 'int', min: 1, max: 10_000_000, valueName: 'N',
    help: 'the burst allowed above --events-rate' },
  { name: 'log-level', key: 'logLevel', type: 'enum', choices: LOG_LEVELS, valueName: 'LEVEL', help: 'log level' },
  { name: 'log-pretty', key: 'logPretty', type: 'bool', help: 'human-readable log lines instead of JSON' },
  { name: 'log-frames', key: 'logFrames', type: 'bool',
    help: 'log every frame as hex, personal data and secrets cut out (at debug level: use with --log-level=debug)' },
  { name: 'busy-timeout-ms', key: 'busyTimeoutMs', type: 'int', min: 0, max: 600_000, valueName: 'MS',
    help: 'how long SQLite waits for a lock' },
  { name: 'reconnect-min-ms', key: 'reconnectMinMs', type: 'int', min: 10, max: 3_600_000, valueName: 'MS',
    help: 'first delay before redialling a terminal (doubles up to --reconnect-max-ms)' },
  { name: 'reconnect-max-ms', key: 'reconnectMaxMs', type: 'int', min: 10, max: 3_600_000, valueName: 'MS',
    help: 'longest delay between redials' },
  { name: 'max-concurrent-dials', key: 'maxConcurrentDials', type: 'int', min: 1, max: 100_000, valueName: 'N',
    help: 'most terminals dialled at once (TCP connect plus handshake); the others wait their turn' },
  { name: 'max-terminal-users', key: 'maxTerminalUsers', type: 'int', min: 1, max: 0xffff_ffff, valueName: 'N',
    help: 'most users one terminal may list (also bounded by the capacity it announces); a longer list ends its session' },
  { name: 'reconcile-timeout-sec', key: 'reconcileTimeoutSec', type: 'int', min: 1, max: 86_400, valueName: 'SEC',
    help: 'a user-list comparison running longer is abandoned and retried later (the cursor stays)' },
];

/** What commander stores for `--listen=off` and the like (undefined would read as "not given"). */
export const OFF: unique symbol = Symbol('off');

const BY_NAME = new Map(RUN_FLAGS.map((f) => [f.name, f]));

export function findFlag(name: string): FlagSpec | undefined {
  return BY_NAME.get(name);
}

/** The effective default of a flag (from RUN_DEFAULTS), or undefined. */
export function flagDefault(spec: FlagSpec): unknown {
  if (spec.key === 'flagfile') return undefined;
  return RUN_DEFAULTS[spec.key];
}

/**
 * Parses one occurrence of a flag's value (for repeatables: one item).
 * Throws FlagValueError with a message naming the flag and what it wants.
 * Returns undefined for "off" on hostport flags that allow it.
 */
export function parseFlagValue(spec: FlagSpec, raw: string): unknown {
  const flag = `--${spec.name}`;
  const got = `(got ${JSON.stringify(raw)})`;
  let value: unknown;
  switch (spec.type) {
    case 'string':
    case 'path':
      if (raw === '') throw new FlagValueError(`${flag} needs a value`);
      if (raw.includes('\0')) throw new FlagValueError(`${flag} must not contain NUL bytes`);
      value = raw;
      break;
    case 'int': {
      const min = spec.min ?? 0;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      const range = `an integer from ${min} to ${max}`;
      if (!/^\d+$/.test(raw)) throw new FlagValueError(`${flag} must be ${range} ${got}`);
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n < min || n > max) throw new FlagValueError(`${flag} must be ${range} ${got}`);
      value = n;
      break;
    }
    case 'bool':
      // switches take no value, on the command line or in a file: bare --flag or --no-flag
      throw new FlagValueError(`${flag} is a switch: write ${flag} or --no-${spec.name} ${got}`);
    case 'enum': {
      const choices = spec.choices ?? [];
      if (!choices.includes(raw)) throw new FlagValueError(`${flag} must be one of ${choices.join(', ')} ${got}`);
      value = raw;
      break;
    }
    case 'hostport': {
      if (spec.allowOff && raw === 'off') return undefined;
      const hp = parseHostPort(raw, { allowPortZero: spec.allowPortZero });
      if (!hp) {
        const hint = raw.split(':').length > 2 && !raw.startsWith('[') ? '; put IPv6 addresses in brackets, e.g. [::1]:51212' : '';
        throw new FlagValueError(
          `${flag} must be HOST:PORT, e.g. 0.0.0.0:51212${spec.allowOff ? ', or off' : ''} ${got}${hint}`,
        );
      }
      value = hp;
      break;
    }
    case 'repeatable':
      if (raw === '') throw new FlagValueError(`${flag} needs a value`);
      value = spec.item ? spec.item(raw, flag) : raw;
      break;
  }
  const problem = spec.validate?.(value);
  if (problem) throw new FlagValueError(`${flag} ${problem} ${got}`);
  return value;
}

function helpText(spec: FlagSpec): string {
  const def = flagDefault(spec);
  if (def === undefined || def === false || (Array.isArray(def) && def.length === 0)) return spec.help;
  let shown: string;
  if (typeof def === 'object' && def !== null && 'host' in def && 'port' in def) {
    const hp = def as HostPort;
    shown = isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
  } else shown = String(def);
  return `${spec.help} (default: ${shown})`;
}

/**
 * Declares every flag of the table on a commander Command. Values are parsed by
 * the table's parsers (commander reports bad ones); no commander defaults are
 * set, so getOptionValueSource() tells which flags the command line gave.
 * Booleans get a --no-X twin, so the command line can turn off a flag file's switch.
 * Read the result with runConfigFromCommand() (src/cli/flagfile.ts).
 */
export function addRunFlags(cmd: Command): Command {
  for (const spec of RUN_FLAGS) {
    if (spec.type === 'bool') {
      cmd.addOption(new Option(`--${spec.name}`, helpText(spec)));
      cmd.addOption(new Option(`--no-${spec.name}`, `turn --${spec.name} off`).hideHelp());
      continue;
    }
    const opt = new Option(`--${spec.name} <${spec.valueName ?? 'VALUE'}>`, helpText(spec));
    if (spec.type === 'enum' && spec.choices) opt.choices(spec.choices);
    opt.argParser((raw: string, previous: unknown) => {
      let value: unknown;
      try {
        value = parseFlagValue(spec, raw);
      } catch (e) {
        if (e instanceof FlagValueError) throw new InvalidArgumentError(e.message);
        throw e;
      }
      if (spec.type === 'repeatable') return [...((previous as unknown[] | undefined) ?? []), value];
      // "off" must be told apart from "not given" after commander stores it
      return value === undefined ? OFF : value;
    });
    cmd.addOption(opt);
  }
  cmd.addHelpText(
    'after',
    '\nFlag files hold the same flags, one --flag=value (or bare --switch) per line, with # comments;\n' +
      '--flagfile=OTHER inside a file includes OTHER. Flags on the command line override flag files;\n' +
      '--terminal values add up. Example: systemd/termsync.flags.',
  );
  return cmd;
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The closest known flag name (with --no- twins of switches), if it is close enough to be a typo. */
export function suggestFlag(name: string): string | undefined {
  const names: string[] = [];
  for (const f of RUN_FLAGS) {
    names.push(f.name);
    if (f.type === 'bool') names.push(`no-${f.name}`);
  }
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bestD) {
      bestD = d;
      best = n;
    }
  }
  // about one typo per three letters; never so many that a short name matches anything
  const limit = Math.min(Math.max(2, Math.floor(name.length / 3)), name.length - 1);
  if (bestD <= limit) return best;
  // a truncated or extended name: --comm-key for --comm-key-file, --terminals-all for --terminal
  if (name.length >= 4) return names.find((n) => n.startsWith(name) || name.startsWith(n));
  return undefined;
}
