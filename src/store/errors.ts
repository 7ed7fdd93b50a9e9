// Typed errors of the store. Every write method throws StoreWriteError (never a
// raw SqliteError), so the sync engine can record "Fail to save to the server
// DB" with a reason an administrator understands.

export type StoreWriteErrorCode =
  | 'READONLY' // SQLITE_READONLY*: read-only file, read-only open, PRAGMA query_only
  | 'FULL' // SQLITE_FULL: disk full or max_page_count reached
  | 'IOERR' // SQLITE_IOERR*: the OS failed a read/write/fsync
  | 'BUSY' // SQLITE_BUSY*/SQLITE_LOCKED*: another connection held the write lock past the busy timeout
  | 'CORRUPT' // SQLITE_CORRUPT*, SQLITE_NOTADB
  | 'CONSTRAINT' // SQLITE_CONSTRAINT*: e.g. an outbox row for a terminal the store does not know
  | 'CLOSED' // the store was closed
  | 'OTHER';

const HINTS: Record<StoreWriteErrorCode, string> = {
  READONLY: 'the database is read-only; check file permissions and the filesystem',
  FULL: 'the disk (or the database size limit) is full; free space',
  IOERR: 'the operating system failed a disk operation; check the disk and kernel log',
  BUSY: 'another process held the database write lock longer than the busy timeout',
  CORRUPT: 'the database file is damaged; restore it from a backup',
  CONSTRAINT: 'the write broke a database constraint',
  CLOSED: 'the store is closed',
  OTHER: 'unexpected database error',
};

export class StoreWriteError extends Error {
  readonly code: StoreWriteErrorCode;
  /** the SQLite extended result code name, e.g. SQLITE_IOERR_FSYNC, when there was one */
  readonly sqliteCode: string | undefined;
  /** what the store was doing, e.g. 'mergeDeviceUser' */
  readonly operation: string;

  constructor(code: StoreWriteErrorCode, operation: string, message: string, opts?: { sqliteCode?: string; cause?: unknown }) {
    super(`${operation}: ${message} (${HINTS[code]})`, opts?.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'StoreWriteError';
    this.code = code;
    this.operation = operation;
    this.sqliteCode = opts?.sqliteCode;
  }
}

/** Maps a SQLite result code name (primary or extended) to a StoreWriteErrorCode. */
export function classifySqliteCode(sqliteCode: string | undefined): StoreWriteErrorCode {
  if (!sqliteCode) return 'OTHER';
  const primary = sqliteCode.split('_').slice(0, 2).join('_'); // SQLITE_IOERR_FSYNC -> SQLITE_IOERR
  switch (primary) {
    case 'SQLITE_READONLY':
      return 'READONLY';
    case 'SQLITE_FULL':
      return 'FULL';
    case 'SQLITE_IOERR':
      return 'IOERR';
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return 'BUSY';
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return 'CORRUPT';
    case 'SQLITE_CONSTRAINT':
      return 'CONSTRAINT';
    default:
      return 'OTHER';
  }
}

/** Wraps whatever a write threw into a StoreWriteError (idempotent). */
export function toStoreWriteError(err: unknown, operation: string): StoreWriteError {
  if (err instanceof StoreWriteError) return err;
  const e = err as { code?: unknown; message?: unknown; name?: unknown } | null;
  const sqliteCode = typeof e?.code === 'string' && e.code.startsWith('SQLITE_') ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  let code = classifySqliteCode(sqliteCode);
  if (!sqliteCode && /connection is not open/i.test(message)) code = 'CLOSED';
  return new StoreWriteError(code, operation, message, { sqliteCode, cause: err });
}

/**
 * A cursor write carried a lease fencing token (SiteStore, `fence`) that is no
 * longer current: another daemon took over the terminal. Nothing was written;
 * the caller stops working for that terminal.
 */
export class LeaseLostError extends Error {
  readonly terminalId: string;
  readonly fence: number;
  constructor(terminalId: string, fence: number, message?: string) {
    super(message ?? `the lease on terminal ${JSON.stringify(terminalId)} was lost (fence ${fence} is stale)`);
    this.name = 'LeaseLostError';
    this.terminalId = terminalId;
    this.fence = fence;
  }
}
