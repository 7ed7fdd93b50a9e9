// PostgreSQL's errors as the store's typed errors. A write fails with
// StoreWriteError whatever the driver threw; the SQLSTATE class picks the code
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
import { StoreWriteError, type StoreWriteErrorCode } from '../errors.js';

/** SQLSTATEs worth retrying the whole transaction for: serialization failure, deadlock */
export const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** true when the error says the server could not be reached or the connection broke */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)$/.test(code)) return true;
  const state = sqlstateOf(err);
  // 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now
  if (state && (state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03')) return true;
  const msg = (err as { message?: unknown } | null)?.message;
  return typeof msg === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection is closed/i.test(msg);
}

export function classifyPgError(err: unknown): StoreWriteErrorCode {
  const state = sqlstateOf(err);
  if (state) {
    if (state === '25006') return 'READONLY'; // read_only_sql_transaction: a standby, or default_transaction_read_only
    if (state.startsWith('53')) return 'FULL'; // insufficient resources: disk full, out of memory, too many connections
    if (state === '58030') return 'IOERR';
    if (state.startsWith('40') || state === '55P03' || state === '57014') return 'BUSY'; // serialization, deadlock, lock timeout, statement timeout
    if (state === 'XX001' || state === 'XX002') return 'CORRUPT';
    if (state.startsWith('23')) return 'CONSTRAINT';
  }
  // no code of its own yet (IOERR's hint speaks of disks): the message says "PostgreSQL unreachable"
  if (isConnectionError(err)) return 'OTHER';
  const msg = (err as { message?: unknown } | null)?.message;
  if (typeof msg === 'string' && /Cannot use a pool after calling end|Client was closed/i.test(msg)) return 'CLOSED';
  return 'OTHER';
}

/** Wraps what a PostgreSQL write threw into a StoreWriteError (idempotent). */
export function toPgStoreError(err: unknown, operation: string): StoreWriteError {
  if (err instanceof StoreWriteError) return err;
  const message = (err as { message?: unknown } | null)?.message;
  let text = typeof message === 'string' ? message : String(err);
  if (isConnectionError(err)) text = `PostgreSQL unreachable: ${text}`;
  const state = sqlstateOf(err);
  if (state) text += ` [SQLSTATE ${state}]`;
  return new StoreWriteError(classifyPgError(err), operation, text, { cause: err });
}
