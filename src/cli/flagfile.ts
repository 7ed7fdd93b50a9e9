// Flag files and the merge that turns flag files plus the command line into a
// RunConfig.
//
// Format (one flag per line, the same flags as the command line; see
// systemd/termsync.flags):
//   --flag=value        a flag with a value; surrounding whitespace is trimmed
//   --switch            a boolean flag; --no-switch turns it off
//   # comment           whole-line comment; " # ..." after whitespace ends a line
//   --flagfile=OTHER    include OTHER here (relative to this file's directory),
//                       at most MAX_FLAGFILE_DEPTH files deep, no cycles
// Relative paths in values (--db, --comm-key-file, ...) are taken relative to
// the flag file's directory, like includes; on the command line, to the
// current directory.
//
// Precedence: defaults < flag files (in order; a later line wins) < command
// line. Repeatable flags (--terminal) accumulate: flag-file values first, then
// command-line values. Unknown flags and bad values are always errors.
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ConfigError, RUN_DEFAULTS, type HostPort, type RunConfig, type TerminalEndpoint } from '../config.js';
import { isPostgresUrl } from '../store/pg/config.js';
import {
  FlagValueError,
  OFF,
  RUN_FLAGS,
  addRunFlags,
  findFlag,
  parseFlagValue,
  suggestFlag,
  type FlagSpec,
} from './options.js';

export const MAX_FLAGFILE_DEPTH = 8;

/** Where a flag value came from. */
export type FlagOrigin = { file: string; line: number } | 'command line';

export function originText(o: FlagOrigin): string {
  return o === 'command line' ? 'command line' : `${o.file}:${o.line}`;
}

/**
 * A flag, flag file or flag combination the administrator must fix. The message
 * starts with the place (`termsync.flags:7: ...`, `command line: ...`) when there
 * is one. The CLI prints the message alone and exits 2.
 */
export class FlagError extends ConfigError {
  readonly file?: string;
  readonly line?: number;
  constructor(detail: string, origin?: FlagOrigin) {
    super('FLAG', origin ? `${originText(origin)}: ${detail}` : detail);
    this.name = 'FlagError';
    if (origin && origin !== 'command line') {
      this.file = origin.file;
      this.line = origin.line;
    }
  }
}

/** One flag occurrence with its parsed value (undefined = "off"). */
export interface FlagEntry {
  spec: FlagSpec;
  value: unknown;
  origin: FlagOrigin;
}

function unknownFlag(name: string, origin: FlagOrigin): FlagError {
  const dashes = name.startsWith('-') ? '' : '--';
  const hint = suggestFlag(name.replace(/^-+/, ''));
  return new FlagError(`unknown flag ${dashes}${name}${hint ? ` (did you mean --${hint}?)` : ''}`, origin);
}

function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return err.message;
  }
}

interface ReadState {
  /** the include chain: display name and real path of each open file */
  chain: { display: string; real: string }[];
  entries: FlagEntry[];
  files: string[];
}

/** Strips a comment: a whole line starting with #, or # after whitespace. */
function stripComment(line: string): string {
  const t = line.trim();
  if (t.startsWith('#')) return '';
  const m = /\s#/.exec(t);
  return (m ? t.slice(0, m.index) : t).trim();
}

function readInto(display: string, path: string, state: ReadState, from: FlagOrigin): void {
  let real: string;
  let text: string;
  try {
    real = realpathSync(path);
    text = readFileSync(real, 'utf8');
  } catch (e) {
    throw new FlagError(`cannot read flag file ${display}: ${errnoText(e)}`, from);
  }
  const chainText = () => [...state.chain.map((c) => c.display), display].join(' -> ');
  if (state.chain.some((c) => c.real === real)) {
    throw new FlagError(`--flagfile=${display} includes a file that is already being read (${chainText()})`, from);
  }
  if (state.chain.length >= MAX_FLAGFILE_DEPTH) {
    throw new FlagError(`--flagfile nesting is deeper than ${MAX_FLAGFILE_DEPTH} files (${chainText()})`, from);
  }
  state.chain.push({ display, real });
  state.files.push(real);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split(/\r?\n/);
  const baseDisplay = dirname(display);
  const baseReal = dirname(real);
  for (let i = 0; i < lines.length; i++) {
    const origin: FlagOrigin = { file: display, line: i + 1 };
    const line = stripComment(lines[i]);
    if (line === '') continue;
    if (!line.startsWith('--')) {
      const first = line.split(/\s+/)[0];
      if (/^-[^-]/.test(first)) throw unknownFlag(first.split('=')[0], origin);
      throw new FlagError(`expected --flag=value or --flag, got ${JSON.stringify(line)}`, origin);
    }
    const eq = line.indexOf('=');
    let name = eq < 0 ? line.slice(2) : line.slice(2, eq);
    const raw = eq < 0 ? undefined : line.slice(eq + 1).trim();
    const ws = /\s/.exec(name);
    if (ws) {
      // "--db /var/lib/x": flag files want "--db=/var/lib/x"
      name = name.slice(0, ws.index);
      const spec = findFlag(name);
      if (!spec) throw unknownFlag(name, origin);
      if (spec.type === 'bool') throw new FlagError(`--${name} is a switch and takes no value`, origin);
      throw new FlagError(`write --${name}=VALUE (flag files take no space between flag and value)`, origin);
    }
    let spec = findFlag(name);
    let negated = false;
    if (!spec && name.startsWith('no-')) {
      const base = findFlag(name.slice(3));
      if (base && base.type === 'bool') {
        spec = base;
        negated = true;
      }
    }
    if (!spec) throw unknownFlag(name, origin);

    let value: unknown;
    if (spec.type === 'bool') {
      if (raw !== undefined) {
        throw new FlagError(`--${spec.name} is a switch: write --${spec.name} or --no-${spec.name} (got ${JSON.stringify('=' + raw)})`, origin);
      }
      value = !negated;
    } else {
      if (raw === undefined || raw === '') throw new FlagError(`--${name} needs a value (--${name}=VALUE)`, origin);
      try {
        value = parseFlagValue(spec, raw);
      } catch (e) {
        if (e instanceof FlagValueError) throw new FlagError(e.message, origin);
        throw e;
      }
    }

    if (spec.key === 'flagfile') {
      const rel = value as string;
      const childDisplay = isAbsolute(rel) ? rel : join(baseDisplay, rel);
      readInto(childDisplay, resolve(baseReal, rel), state, origin);
      continue;
    }
    // a postgres:// --db is a URL, not a path relative to the flag file
    if (spec.type === 'path' && typeof value === 'string' && !isAbsolute(value) && !isPostgresUrl(value)) value = resolve(baseReal, value);
    state.entries.push({ spec, value, origin });
  }
  state.chain.pop();
}

/**
 * Reads one flag file (and everything it includes) into flag entries, in file
 * order. `files` receives the real path of every file read. Throws FlagError.
 */
export function readFlagFile(path: string, files: string[] = [], from: FlagOrigin = 'command line'): FlagEntry[] {
  const state: ReadState = { chain: [], entries: [], files };
  readInto(path, resolve(path), state, from);
  return state.entries;
}

function hostPortText(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * Applies flag entries over the defaults, in order (later scalars win,
 * repeatables accumulate), then checks the flags that depend on each other.
 */
export function mergeRunConfig(entries: FlagEntry[], flagFiles: string[] = []): RunConfig {
  const cfg: Record<string, unknown> = { ...RUN_DEFAULTS, terminals: [], terminalKeys: [], autoApproveFrom: [], flagFiles };
  const origins = new Map<string, FlagOrigin>();
  const terminalOrigins: FlagOrigin[] = [];
  for (const e of entries) {
    if (e.spec.key === 'flagfile') continue;
    if (e.spec.type === 'repeatable') {
      (cfg[e.spec.key] as unknown[]).push(e.value);
      if (e.spec.key === 'terminals') terminalOrigins.push(e.origin);
    } else {
      cfg[e.spec.key] = e.value;
      origins.set(e.spec.key, e.origin);
    }
  }
  const c = cfg as unknown as RunConfig;
  const at = (key: keyof RunConfig) => origins.get(key);

  // each terminal once, by id and by address
  const byId = new Map<string, number>();
  const byAddr = new Map<string, number>();
  c.terminals.forEach((t: TerminalEndpoint, i) => {
    const prevId = byId.get(String(t.id));
    if (prevId !== undefined) {
      const first = terminalOrigins[prevId];
      const where = first === 'command line' && terminalOrigins[i] === 'command line' ? 'twice' : `already at ${originText(first)}`;
      throw new FlagError(`--terminal: terminal ${t.id} is given ${where}`, terminalOrigins[i]);
    }
    // a Suprema terminal that dials the device gateway has no address of its own
    const addr = t.protocol === 'gsdk' && t.host === '' ? `gsdk:${t.id}` : hostPortText(t);
    const prevAddr = byAddr.get(addr);
    if (prevAddr !== undefined) {
      throw new FlagError(
        `--terminal: ${addr} is already terminal ${c.terminals[prevAddr].id} (${originText(terminalOrigins[prevAddr])}); one address is one terminal`,
        terminalOrigins[i],
      );
    }
    byId.set(String(t.id), i);
    byAddr.set(addr, i);
  });

  if (c.terminals.some((t) => t.protocol === 'gsdk') && c.gsdkGateway === undefined) {
    throw new FlagError('--terminal gsdk:... needs --gsdk-gateway HOST:PORT (the device gateway the Suprema terminals are reached through)', terminalOrigins[c.terminals.findIndex((t) => t.protocol === 'gsdk')]);
  }
  if (c.gsdkGateway !== undefined && c.gsdkCaFile === undefined) {
    throw new FlagError("--gsdk-gateway needs --gsdk-ca-file (the gateway's root CA; every connection to it is TLS)", at('gsdkGateway'));
  }
  if (c.commKeyFile === undefined && !c.insecureDevKey) {
    throw new FlagError('--comm-key-file is required (or --insecure-dev-key, for local testing only)');
  }
  if (c.commKeyFile !== undefined && c.insecureDevKey) {
    throw new FlagError(
      `--insecure-dev-key and --comm-key-file (${originText(at('commKeyFile')!)}) exclude each other; remove one`,
      at('insecureDevKey'),
    );
  }
  if (c.tlsListen !== undefined && (c.tlsCert === undefined || c.tlsKey === undefined)) {
    throw new FlagError('--tls-listen needs --tls-cert and --tls-key', at('tlsListen'));
  }
  if (!isPostgresUrl(c.db)) {
    for (const k of ['dbPasswordFile', 'dbTlsCa', 'dbTlsCert', 'dbTlsKey', 'daemonId'] as const) {
      if (c[k] !== undefined) throw new FlagError(`--${k.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)} applies to a postgres:// --db only (--db is a SQLite file here)`, at(k));
    }
  }
  if ((c.dbTlsCert === undefined) !== (c.dbTlsKey === undefined)) {
    throw new FlagError('--db-tls-cert and --db-tls-key go together', at('dbTlsCert') ?? at('dbTlsKey'));
  }
  if (c.tlsRequireClientCert && c.tlsCa === undefined) {
    throw new FlagError('--tls-require-client-cert needs --tls-ca (the CA that signs terminal certificates)', at('tlsRequireClientCert'));
  }
  if (c.reconnectMinMs > c.reconnectMaxMs) {
    throw new FlagError(
      `--reconnect-min-ms (${c.reconnectMinMs}) must not exceed --reconnect-max-ms (${c.reconnectMaxMs})`,
      at('reconnectMinMs') ?? at('reconnectMaxMs'),
    );
  }
  const listeners: [string, HostPort | undefined][] = [
    ['--listen', c.listen],
    ['--tls-listen', c.tlsListen],
    ['--admin-listen', c.adminListen],
  ];
  for (let i = 0; i < listeners.length; i++) {
    for (let j = i + 1; j < listeners.length; j++) {
      const a = listeners[i][1];
      const b = listeners[j][1];
      if (a && b && a.port !== 0 && a.port === b.port && a.host === b.host) {
        throw new FlagError(`${listeners[i][0]} and ${listeners[j][0]} are both ${hostPortText(a)}; give each its own port`);
      }
    }
  }
  return c;
}

/**
 * The RunConfig of a commander Command on which addRunFlags() declared the
 * flags and which has parsed the command line: reads the --flagfile files it
 * names, then lays the command line's flags over them. Throws FlagError.
 */
export function runConfigFromCommand(cmd: Command): RunConfig {
  const fileEntries: FlagEntry[] = [];
  const cliEntries: FlagEntry[] = [];
  const files: string[] = [];
  for (const spec of RUN_FLAGS) {
    const opt = cmd.options.find((o) => o.long === `--${spec.name}`);
    if (!opt) throw new Error(`flag --${spec.name} is not declared on command ${cmd.name()}; call addRunFlags() first`);
    const attr = opt.attributeName();
    if (cmd.getOptionValueSource(attr) !== 'cli') continue;
    const value = cmd.getOptionValue(attr) as unknown;
    if (spec.key === 'flagfile') {
      for (const path of value as string[]) fileEntries.push(...readFlagFile(path, files));
    } else if (spec.type === 'repeatable') {
      for (const item of value as unknown[]) cliEntries.push({ spec, value: item, origin: 'command line' });
    } else {
      cliEntries.push({ spec, value: value === OFF ? undefined : value, origin: 'command line' });
    }
  }
  return mergeRunConfig([...fileEntries, ...cliEntries], files);
}

/** Turns commander's parse errors into FlagErrors worded like the flag-file ones. */
function fromCommanderError(e: CommanderError, operands?: string[]): FlagError {
  const msg = e.message.replace(/^error:\s*/, '');
  const origin: FlagOrigin = 'command line';
  switch (e.code) {
    case 'commander.unknownOption': {
      const m = /unknown option '([^']+)'/.exec(msg);
      const arg = m ? m[1] : '';
      const eq = arg.indexOf('=');
      const name = (eq < 0 ? arg : arg.slice(0, eq)).replace(/^--/, '');
      const spec = findFlag(name);
      if (spec?.type === 'bool' && eq >= 0) {
        return new FlagError(`--${spec.name} is a switch: write --${spec.name} or --no-${spec.name} (got ${JSON.stringify(arg.slice(eq))})`, origin);
      }
      return unknownFlag(eq < 0 ? arg : arg.slice(0, eq), origin);
    }
    case 'commander.invalidArgument': {
      const m = /is invalid\.\s+([\s\S]*)$/.exec(msg);
      return new FlagError(m ? m[1] : msg, origin);
    }
    case 'commander.optionMissingArgument': {
      const m = /option '--([\w-]+)/.exec(msg);
      return new FlagError(m ? `--${m[1]} needs a value (--${m[1]}=VALUE)` : msg, origin);
    }
    case 'commander.excessArguments': {
      const arg = operands?.[0];
      return new FlagError(`unexpected argument${arg === undefined ? '' : ` ${JSON.stringify(arg)}`}: termsync run takes only --flags`, origin);
    }
    default:
      return new FlagError(msg, origin);
  }
}

/**
 * Parses `termsync run`'s arguments (those after "run"): command-line flags,
 * the --flagfile files they name, defaults. Throws FlagError (print its message,
 * exit 2). `--help` prints the help and throws commander's CommanderError with
 * code 'commander.helpDisplayed' (exit 0).
 */
export function parseRunConfig(argv: string[]): RunConfig {
  const cmd = new Command('termsync run').usage('[--flagfile=FILE ...] [--flag=value ...]');
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => {}, outputError: () => {} });
  addRunFlags(cmd);
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError && e.code !== 'commander.helpDisplayed' && e.code !== 'commander.version') {
      throw fromCommanderError(e, cmd.args);
    }
    throw e;
  }
  return runConfigFromCommand(cmd);
}
