// What the admin subcommands share: the I/O they write to (so tests can run the
// CLI in-process), the common options (--admin, --token-file, --json), the
// client they build from them, error -> exit code mapping, and the plain-text
// table.
//
// Exit codes: 0 ok; 1 runtime failure (daemon unreachable, the API refused);
// 2 usage error (commander's own errors, bad arguments, an unusable token file).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadAdminToken } from '../../config.js';
import { AdminClient, AdminHttpError, AdminUnreachableError, DEFAULT_ADMIN_URL } from '../admin-client.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface OutStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Where a CLI run reads and writes. processIo() is the real one; tests pass their own. */
export interface CliIo {
  out: OutStream;
  err: OutStream;
  stdin: AsyncIterable<Buffer | string>;
  env: Record<string, string | undefined>;
  cwd: string;
  /** ends long-running commands (events --follow, resync --wait) */
  signal?: AbortSignal;
  /** also end them on SIGINT/SIGTERM of this process (the real CLI) */
  processSignals?: boolean;
}

/** Shared by every command of one CLI run; the action sets exitCode. */
export interface CliContext {
  io: CliIo;
  exitCode: number;
}

export function processIo(): CliIo {
  return {
    out: process.stdout,
    err: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    processSignals: true,
  };
}

/** A usage problem found after commander parsed the arguments (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface CommonOptions {
  admin?: string;
  tokenFile?: string;
  json?: boolean;
}

/** --admin, --token-file and --json on an admin subcommand. */
export function addCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--admin <url>', `admin API of the running daemon (default: $TERMSYNC_ADMIN or ${DEFAULT_ADMIN_URL})`))
    .addOption(new Option('--token-file <path>', 'file holding the admin API bearer token, mode 0600 (default: $TERMSYNC_ADMIN_TOKEN_FILE)'))
    .addOption(new Option('--json', 'machine-readable JSON output'));
}

/** The admin URL to use: --admin, else $TERMSYNC_ADMIN, else the default. Throws UsageError. */
export function adminUrl(o: CommonOptions, io: CliIo): string {
  const raw = o.admin ?? (io.env.TERMSYNC_ADMIN || undefined) ?? DEFAULT_ADMIN_URL;
  let text = raw.trim();
  // "127.0.0.1:51280" is what people type
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `http://${text}`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new UsageError(`--admin must be the admin API's URL, e.g. ${DEFAULT_ADMIN_URL} (got ${JSON.stringify(raw)})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--admin must be an http:// or https:// URL (got ${JSON.stringify(raw)})`);
  if (u.username || u.password) throw new UsageError('--admin must not carry credentials; give the token with --token-file');
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** The client for this command's options (reads the token file). */
export function clientFor(o: CommonOptions, io: CliIo): AdminClient {
  const url = adminUrl(o, io);
  const tokenFile = o.tokenFile ?? (io.env.TERMSYNC_ADMIN_TOKEN_FILE || undefined);
  const token = tokenFile ? loadAdminToken(resolve(io.cwd, tokenFile)) : null;
  return new AdminClient({ url, token });
}

/** Prints an error the way every command does: "termsync: message". */
export function printError(io: CliIo, message: string): void {
  io.err.write(`termsync: ${message}\n`);
}

/** The exit code for an error thrown by a command (and prints it). */
export function reportError(io: CliIo, e: unknown): number {
  if (e instanceof UsageError || e instanceof ConfigError) {
    printError(io, e.message);
    return EXIT_USAGE;
  }
  if (e instanceof AdminUnreachableError || e instanceof AdminHttpError) {
    printError(io, e.message);
    return EXIT_FAILURE;
  }
  printError(io, e instanceof Error ? e.message : String(e));
  return EXIT_FAILURE;
}

/**
 * Wraps an action: its return value (or 0) becomes the exit code; thrown errors
 * are printed and mapped to 1 or 2. Commander passes (...args, options, command).
 */
export function action<A extends unknown[]>(ctx: CliContext, fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      ctx.exitCode = typeof code === 'number' ? code : EXIT_OK;
    } catch (e) {
      ctx.exitCode = reportError(ctx.io, e);
    }
  };
}

/**
 * A signal that fires when the run should stop: the io's signal, and on the real
 * CLI also SIGINT/SIGTERM. Call dispose() when done to remove the handlers.
 */
export function interruption(io: CliIo): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  io.signal?.addEventListener('abort', onAbort, { once: true });
  if (io.signal?.aborted) ac.abort();
  if (io.processSignals) {
    process.once('SIGINT', onAbort);
    process.once('SIGTERM', onAbort);
  }
  return {
    signal: ac.signal,
    dispose() {
      io.signal?.removeEventListener('abort', onAbort);
      if (io.processSignals) {
        process.off('SIGINT', onAbort);
        process.off('SIGTERM', onAbort);
      }
    },
  };
}

// --------------------------------------------------------------- parsing

/** commander argParser: a whole number in min..max. */
export function intArg(min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`must be a whole number in ${min}..${max}`);
    return Number(v);
  };
}

/** commander argParser: "1,2,5" -> [1, 2, 5] (access group numbers). */
export function groupsArg(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,10}$/.test(p) || Number(p) > 0xffff_ffff) throw new InvalidArgumentError(`must be access group numbers separated by commas, e.g. 1,2 (${JSON.stringify(p)} is not one)`);
    out.push(Number(p));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Reads a file, or stdin for "-". */
export async function readInput(io: CliIo, path: string): Promise<string> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const c of io.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(resolve(io.cwd, path), 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new UsageError(`cannot read ${path}: ${why}`);
  }
}

// ---------------------------------------------------------------- output

export function writeJson(io: CliIo, value: unknown, pretty = true): void {
  io.out.write(JSON.stringify(value, null, pretty ? 2 : undefined) + '\n');
}

export type Cell = string | number | boolean | null | undefined;

function cellText(c: Cell): string {
  if (c === null || c === undefined || c === '') return '-';
  if (typeof c === 'boolean') return c ? 'yes' : 'no';
  // a table cell is one line
  return String(c).replace(/[\r\n\t]+/g, ' ');
}

/**
 * An aligned plain-text table: a header row, then one row per item, columns
 * separated by two spaces; numbers right-aligned. Empty cells show "-".
 */
export function formatTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => headers.map((_, i) => cellText(r[i])));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 && !numeric[i] ? c : numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...text.map(line)].join('\n') + '\n';
}

/** A two-column "field  value" listing (one object). */
export function formatFields(fields: [string, Cell][]): string {
  const w = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${k.padEnd(w)}  ${cellText(v)}`.trimEnd()).join('\n') + '\n';
}

const two = (n: number) => String(n).padStart(2, '0');

/** ms since the epoch as local "YYYY-MM-DD HH:MM:SS". */
export function timeText(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms <= 0) return '-';
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export { sleep } from '../admin-client.js';
