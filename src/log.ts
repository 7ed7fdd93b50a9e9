// Logging: pino, JSON lines to stdout (journald keeps them), with secrets and
// personal data cut out before anything is written.
//
// Redaction works in two layers, because one alone is easy to defeat:
//  1. a formatter walks every logged object (and child-logger bindings) and
//     replaces the values of secret keys at ANY depth (pin, pinHash, photo,
//     key, commKey, token, proof, authorization, ...), card/face data and
//     finger templates inside cards/faces/fingers arrays, and every Buffer
//     (raw bytes are either secret or useless in a log) with its length;
//  2. pino's own `redact` paths for the same keys at the top level and one
//     level down, as a second net should the walker be bypassed.
// The message string itself is not inspected: never interpolate secrets into it.
//
// --log-pretty: a small destination stream turns each JSON line into
// `HH:MM:SS LEVEL [terminal] msg key=value ...`, so no pino-pretty dependency
// (and no worker-thread transport) is needed.
import pino, { type DestinationStream, type Logger } from 'pino';
import { Command, HEADER_SIZE, MAGIC0, MAGIC1 } from './codec/constants.js';

export type { Logger } from 'pino';

export const CENSOR = '[redacted]';

/** Keys whose values never reach a log, at any depth. */
const SECRET_KEYS = new Set([
  'pin',
  'pinHash',
  'photo',
  'key',
  'commKey',
  'token',
  'adminToken',
  'password',
  'secret',
  'proof',
  'proofS',
  'proofT',
  'authorization',
  'cookie',
]);

/** Arrays whose elements carry a secret field: cards[*].data, faces[*].data, fingers[*].templates. */
const SECRET_IN_ELEMENTS: Record<string, string> = { cards: 'data', faces: 'data', fingers: 'templates' };

/** pino redact paths (second net; the walker below already covers every depth). */
export const REDACT_PATHS: string[] = (() => {
  const top = [...SECRET_KEYS].flatMap((k) => [k, `*.${k}`]);
  const nested = Object.entries(SECRET_IN_ELEMENTS).flatMap(([arr, field]) => [`${arr}[*].${field}`, `*.${arr}[*].${field}`]);
  return [...top, ...nested];
})();

const MAX_DEPTH = 8;

function sanitize(value: unknown, depth: number, seen: WeakSet<object>, elementSecret?: string): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (value instanceof Error || value instanceof Date) return value; // pino's err serializer / toJSON
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[too deep]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => sanitize(v, depth + 1, seen, elementSecret));
    if (value instanceof Map) return sanitize(Object.fromEntries(value), depth, seen);
    if (value instanceof Set) return sanitize([...value], depth, seen);
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return sanitize(toJSON.call(value), depth + 1, seen);
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[k];
      if (SECRET_KEYS.has(k) || k === elementSecret) out[k] = v === undefined ? undefined : CENSOR;
      else out[k] = sanitize(v, depth + 1, seen, Array.isArray(v) ? SECRET_IN_ELEMENTS[k] : undefined);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** The object with secrets and raw bytes replaced, at any depth (a copy; the input is untouched). */
export function redactObject<T extends Record<string, unknown>>(obj: T): Record<string, unknown> {
  return sanitize(obj, 0, new WeakSet()) as Record<string, unknown>;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
const HIDDEN_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'terminal']);

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function fieldText(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}

/** One pino JSON line as `HH:MM:SS LEVEL [terminal] msg key=value ...` (plus an error's stack). */
export function formatPrettyLine(line: string, color = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const t = new Date(typeof o.time === 'number' || typeof o.time === 'string' ? o.time : Date.now());
  const time = `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
  const num = typeof o.level === 'number' ? o.level : 30;
  let level = (LEVEL_NAMES[num] ?? String(o.level)).padEnd(5);
  if (color) level = `\u001b[${LEVEL_COLORS[num] ?? '0'}m${level}\u001b[0m`;
  let s = `${time} ${level}`;
  if (o.terminal !== undefined) s += ` [${String(o.terminal)}]`;
  if (o.msg !== undefined) s += ` ${String(o.msg)}`;
  let stack = '';
  for (const [k, v] of Object.entries(o)) {
    if (HIDDEN_KEYS.has(k) || v === undefined) continue;
    if (k === 'err' && v && typeof v === 'object') {
      const e = v as { message?: unknown; stack?: unknown };
      s += ` err=${fieldText(String(e.message ?? ''))}`;
      if (typeof e.stack === 'string' && num >= 50) stack = '\n' + e.stack.split('\n').map((l) => `    ${l}`).join('\n');
      continue;
    }
    s += ` ${k}=${fieldText(v)}`;
  }
  return s + stack;
}

/** A pino destination that writes pretty lines to `out` (default: stdout, synchronously). */
export function prettyStream(out?: { write(s: string): unknown }, opts: { color?: boolean } = {}): DestinationStream {
  const dest = out ?? pino.destination({ dest: 1, sync: true });
  const color = opts.color ?? false;
  let pending = '';
  return {
    write(chunk: string) {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line !== '') dest.write(formatPrettyLine(line, color) + '\n');
      }
    },
  };
}

export interface LoggerOptions {
  level?: string;
  /** human-readable lines instead of JSON */
  pretty?: boolean;
  /** where lines go (default stdout); with pretty, the pretty lines go there */
  destination?: DestinationStream;
  /** ANSI colours in pretty mode (default: when stdout is a terminal and no destination is given) */
  color?: boolean;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    formatters: {
      log: (obj) => redactObject(obj),
      bindings: (b) => redactObject(b),
    },
  };
  let dest = opts.destination;
  if (opts.pretty) {
    const color = opts.color ?? (opts.destination === undefined && process.stdout.isTTY === true);
    dest = prettyStream(opts.destination, { color });
  }
  return dest ? pino(options, dest) : pino(options);
}

/** Commands whose payloads carry user records, PIN hashes, credentials or handshake proofs. */
export const REDACTED_COMMANDS: ReadonlySet<number> = new Set([Command.HELLO, Command.AUTH, Command.GET_USERS, Command.PUT_USERS]);

/**
 * Hex of one frame (or of consecutive frames in one chunk) for --log-frames:
 * each 20-byte header in full, then the payload in hex, or `<N bytes redacted>`
 * for the commands in REDACTED_COMMANDS (any kind). Bytes that do not start
 * with a frame header are redacted whole: nobody can tell what they hold.
 */
export function hexRedact(frame: Buffer | string): string {
  const buf = typeof frame === 'string' ? Buffer.from(frame.replace(/\s+/g, ''), 'hex') : frame;
  const parts: string[] = [];
  let off = 0;
  while (off < buf.length) {
    const rest = buf.length - off;
    if (buf[off] !== MAGIC0 || (rest > 1 && buf[off + 1] !== MAGIC1)) {
      parts.push(`<${rest} bytes redacted: not a frame header>`);
      break;
    }
    if (rest < HEADER_SIZE) {
      parts.push(buf.subarray(off).toString('hex'));
      break;
    }
    // header layout (PROTOCOL.md section 2): command u16 at 8, length u32 at 12
    const command = buf.readUInt16LE(off + 8);
    const length = buf.readUInt32LE(off + 12);
    const avail = Math.min(length, rest - HEADER_SIZE);
    let s = buf.subarray(off, off + HEADER_SIZE).toString('hex');
    if (avail > 0) {
      s += REDACTED_COMMANDS.has(command)
        ? ` <${avail} bytes redacted>`
        : ` ${buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + avail).toString('hex')}`;
    }
    if (avail < length) s += ` (${length - avail} of ${length} payload bytes not yet received)`;
    parts.push(s);
    off += HEADER_SIZE + avail;
  }
  return parts.join(' | ');
}
