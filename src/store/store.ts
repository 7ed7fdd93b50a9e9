// The server's database: users, terminals, monitoring events, outbox, push
// failures, settings. One better-sqlite3 connection, WAL, prepared statements,
// every write in a BEGIN IMMEDIATE transaction (taking the write lock up front,
// so a transaction never fails half-way with SQLITE_BUSY on lock upgrade; it
// waits up to busyTimeoutMs for another connection and then fails BUSY).
//
// Every write method throws StoreWriteError, never a raw SqliteError.
import { Checkpointer } from './checkpointer.js';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { USER_DISABLED, structuredCloneUser, type UserRecord } from '../model/user.js';
import { mergeDeviceIntoServer, sameForTerminal, usersEqual } from '../model/merge.js';
import { StoreWriteError, toStoreWriteError } from './errors.js';
import { DEFAULT_EVENT_LIMITS, EVENTS_SUPPRESSED, EventLimiter } from './event-limits.js';
import { LATEST_SCHEMA_VERSION, migrate, schemaVersion, SchemaVersionError } from './migrations.js';
import {
  DEFAULT_SYNC_MODE,
  MonitoringEvent,
  SYNC_MODES,
  type BackupProgress,
  type DiskUsage,
  type DurableEventResult,
  type EventInput,
  type EventQuery,
  type LogPosition,
  type MergeContext,
  type MergeResult,
  type OutboxAck,
  type OutboxCounts,
  type OutboxItem,
  type PushFailure,
  type PutUserResult,
  type StoredEvent,
  type StoreOptions,
  type SyncMode,
  type Synchronous,
  type TerminalInput,
  type TerminalPatch,
  type TerminalRow,
} from './types.js';
import { UserTables, type UserIndexEntry } from './users.js';
import { FeedTables } from './feed.js';
import type { FeedBatch, FeedEntry, FeedQuery, IngestBatch, OwedCounts, OwedEntry, PushOutcome, PushRecorded, SeqUser } from './backend.js';
import { PullFailureTable, type PullFailure, type PullFailureQuery } from './pull-failures.js';

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DEFAULT_MAX_PENDING_EVENTS = 10_000;
const DEFAULT_PAGE = 1000;
/**
 * records kept for the push lanes (readFeed, getUsersShared), each with the
 * feed number it was read at: a burst's working set across terminals that
 * progress at different speeds, read and encoded once
 */
const SHARED_USERS = 8192;
const MAX_EVENT_PAGE = 10_000;
/** after a checkpoint, truncate the WAL file back to this size so it cannot grow without bound */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;
const SETTING_SYNC_MODE = 'syncMode';

interface TerminalDbRow {
  id: string;
  device_id: number | null;
  address: string | null;
  direction: 'dial' | 'listen';
  state: string;
  approved: number;
  log_epoch: number | null;
  cursor: number;
  last_seen: number | null;
  user_capacity: number | null;
  max_batch: number | null;
  model: string | null;
  firmware: string | null;
  identity: string | null;
  protocol: string;
  created_at: number;
  updated_at: number;
}

interface EventDbRow {
  id: number;
  time: number;
  type: string;
  terminal_id: string | null;
  user_id: string | null;
  detail: string | null;
}

interface OutboxDbRow {
  terminal_id: string;
  user_id: string;
  enqueued_at: number;
  gen: number;
  attempts: number;
  last_error: string | null;
}

/** Terminal fields a patch may set, and their columns. */
const TERMINAL_COLUMNS = {
  deviceId: 'device_id',
  address: 'address',
  direction: 'direction',
  state: 'state',
  approved: 'approved',
  lastSeen: 'last_seen',
  userCapacity: 'user_capacity',
  maxBatch: 'max_batch',
  model: 'model',
  firmware: 'firmware',
  identity: 'identity',
  protocol: 'protocol',
} as const satisfies Record<Exclude<keyof TerminalPatch, 'accessGroups'>, string>;

function terminalFromRow(r: TerminalDbRow, accessGroups: number[]): TerminalRow {
  return {
    id: r.id,
    deviceId: r.device_id,
    address: r.address,
    direction: r.direction,
    state: r.state,
    approved: r.approved !== 0,
    logEpoch: r.log_epoch,
    cursor: r.cursor,
    lastSeen: r.last_seen,
    userCapacity: r.user_capacity,
    maxBatch: r.max_batch,
    model: r.model,
    firmware: r.firmware,
    accessGroups,
    identity: r.identity ?? null,
    protocol: r.protocol ?? 'termsync',
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

const eventFromRow = (r: EventDbRow): StoredEvent => ({
  id: r.id,
  time: r.time,
  type: r.type,
  terminalId: r.terminal_id,
  userId: r.user_id,
  detail: r.detail,
});

const outboxFromRow = (r: OutboxDbRow): OutboxItem => ({
  terminalId: r.terminal_id,
  userId: r.user_id,
  enqueuedAt: r.enqueued_at,
  gen: r.gen,
  attempts: r.attempts,
  lastError: r.last_error,
});

function errorText(err: unknown): string {
  const s = err instanceof Error ? err.message : String(err);
  return s.length > 500 ? s.slice(0, 500) : s;
}

/**
 * Creates the directory (0700, only the levels it creates) and the database
 * file (0600) before SQLite opens it. SQLite creates -wal and -shm with the
 * permissions of the database file, so they are 0600 as well; they are also
 * chmod'ed after open in case an older file had looser bits.
 */
function prepareFiles(file: string): void {
  const dir = path.dirname(file);
  // mode applies to every directory mkdir creates (masked by umask, which can only remove bits)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
}

function tightenSidecars(file: string): void {
  for (const suffix of ['-wal', '-shm']) {
    try {
      fs.chmodSync(file + suffix, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

export class Store {
  readonly path: string;
  readonly readonly: boolean;
  private readonly db: Database.Database;
  private readonly users: UserTables;
  private readonly pullFailures: PullFailureTable;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private readonly maxPending: number;
  private pending: EventInput[] = [];
  private dropped = 0;
  private readonly limiter: EventLimiter | null;
  private readonly stmtCache = new Map<string, Database.Statement>();
  private checkpointer: Checkpointer | undefined;
  /** the push lanes' records by user ID, with the feed number they were read at */
  private readonly shared = new Map<string, { seq: number; user: UserRecord }>();
  private readonly feed: FeedTables;
  private readonly feedListeners = new Set<(head: number) => void>();
  /** set inside a write transaction that grew the feed or the owed set; listeners run after the commit */
  private feedDirty = false;
  /** bumped by every write of this connection (owed figures are counted again after one) */
  private writeGen = 0;
  private behindCache: { dv: number; gen: number; map: Map<string, number> } | null = null;
  /** outbox rows per terminal (see owedCounts); null: count again */
  private owed: Map<string, number> | null = null;
  private owedDataVersion = -1;
  private readonly s: ReturnType<Store['prepareStatements']>;
  /** one reusable transaction wrapper: tx.immediate(fn) runs fn under BEGIN IMMEDIATE */
  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;

  private constructor(db: Database.Database, file: string, opts: StoreOptions) {
    this.db = db;
    this.path = file;
    this.readonly = opts.readonly === true;
    this.now = opts.now ?? Date.now;
    this.log = opts.logger;
    this.maxPending = opts.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    const limits = opts.eventLimits === undefined ? DEFAULT_EVENT_LIMITS : opts.eventLimits;
    this.limiter = limits ? new EventLimiter(limits, this.now) : null;
    this.users = new UserTables(db);
    this.pullFailures = new PullFailureTable(db);
    this.feed = new FeedTables(db);
    this.s = this.prepareStatements();
    this.tx = db.transaction((fn: () => unknown) => fn());
  }

  /**
   * Opens (creating if needed) the database at `file` and brings its schema up
   * to date. Throws SchemaVersionError for a database from a newer termsync,
   * StoreWriteError (operation 'open') when SQLite refuses the file (e.g.
   * CORRUPT for a file that is not a database), and the fs error when the
   * directory or file cannot be created.
   */
  static open(file: string, opts: StoreOptions = {}): Store {
    const readonly = opts.readonly === true;
    const memory = file === ':memory:';
    if (!memory && !readonly) prepareFiles(file);
    let db: Database.Database;
    try {
      db = new Database(file, {
        readonly,
        fileMustExist: readonly,
        // sqlite3_busy_timeout: how long BEGIN IMMEDIATE waits for another writer
        timeout: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      });
    } catch (err) {
      throw (err as { code?: unknown }).code?.toString().startsWith('SQLITE_') ? toStoreWriteError(err, 'open') : err;
    }
    try {
      db.pragma('foreign_keys = ON');
      if (!readonly) {
        const mode = db.pragma('journal_mode = WAL', { simple: true });
        if (mode !== 'wal' && !memory) opts.logger?.warn({ path: file, journalMode: mode }, 'the filesystem refused WAL mode; writers will block readers');
        db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
      }
      // synchronous=NORMAL in WAL mode: a commit is appended to the WAL without
      // an fsync; the WAL is fsynced at checkpoints. A crash of termsync loses
      // nothing. A power loss or OS crash can lose the last transactions
      // committed since the previous checkpoint (the database rolls back to an
      // earlier consistent state; it is never corrupted). termsync tolerates
      // that for device merges because the terminal's cursor is saved in the
      // same transaction as the merge: after a power loss the cursor is older
      // too and the events are pulled from the terminal again. Admin edits made
      // just before the power loss could be lost. 'FULL' fsyncs the WAL on
      // every commit: durable, at the price of one fsync per transaction.
      const sync: Synchronous = opts.synchronous ?? 'NORMAL';
      if (sync !== 'NORMAL' && sync !== 'FULL') throw new TypeError(`synchronous must be 'NORMAL' or 'FULL', not ${JSON.stringify(sync)}`);
      db.pragma(`synchronous = ${sync}`);
      if (readonly) {
        const v = schemaVersion(db);
        if (v !== LATEST_SCHEMA_VERSION) {
          throw new SchemaVersionError(
            `database schema version ${v} differs from ${LATEST_SCHEMA_VERSION}; open it once read-write to migrate`,
          );
        }
      } else {
        const applied = migrate(db);
        if (applied.length > 0) opts.logger?.info({ path: file, applied, version: LATEST_SCHEMA_VERSION }, 'database schema migrated');
        if (!memory) tightenSidecars(file);
      }
      const store = new Store(db, file, opts);
      if (opts.checkpointInWorker && !readonly && !memory) store.checkpointer = new Checkpointer(db, file, opts.logger);
      return store;
    } catch (err) {
      db.close();
      throw (err as { code?: unknown }).code?.toString().startsWith('SQLITE_') ? toStoreWriteError(err, 'open') : err;
    }
  }

  /** The underlying connection, for tests and diagnostics. Do not write through it. */
  get connection(): Database.Database {
    return this.db;
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  /**
   * True when the connection is open and answers a read from the file (for
   * the watchdog). Write failures do not count: a restart cures neither a full
   * disk nor a read-only one, and they are reported as monitoring events.
   */
  healthy(): boolean {
    try {
      if (!this.db.open) return false;
      this.cached('SELECT count(*) FROM (SELECT 1 FROM settings LIMIT 1)').pluck().get();
      return true;
    } catch {
      return false;
    }
  }

  get schemaVersion(): number {
    return schemaVersion(this.db);
  }

  /** Tries once more to save pending events, then closes. Idempotent. */
  /** Ends the checkpoint worker after a last checkpoint (call before close when it runs). */
  async stopCheckpointer(): Promise<void> {
    await this.checkpointer?.stop();
    this.checkpointer = undefined;
  }

  close(): void {
    if (!this.db.open) return;
    void this.checkpointer?.stop();
    if (this.pending.length > 0 && !this.readonly) this.flushPendingEvents();
    if (this.pending.length > 0) this.log?.warn({ pending: this.pending.length }, 'closing the store with monitoring events not saved');
    this.db.close();
  }

  // ------------------------------------------------------------ internals

  private prepareStatements() {
    const db = this.db;
    return {
      // terminals
      terminal: db.prepare<[string], TerminalDbRow>('SELECT * FROM terminals WHERE id = ?'),
      terminalByDevice: db.prepare<[number], TerminalDbRow>('SELECT * FROM terminals WHERE device_id = ? ORDER BY id LIMIT 1'),
      terminals: db.prepare<[], TerminalDbRow>('SELECT * FROM terminals ORDER BY id'),
      terminalGroups: db.prepare<[string], number>('SELECT group_id FROM terminal_access_groups WHERE terminal_id = ? ORDER BY group_id').pluck(),
      allTerminalGroups: db.prepare<[], { terminal_id: string; group_id: number }>(
        'SELECT terminal_id, group_id FROM terminal_access_groups ORDER BY terminal_id, group_id',
      ),
      insTerminal: db.prepare<[string, string, number, number]>('INSERT INTO terminals (id, direction, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      delTerminal: db.prepare<[string]>('DELETE FROM terminals WHERE id = ?'),
      delTerminalGroups: db.prepare<[string]>('DELETE FROM terminal_access_groups WHERE terminal_id = ?'),
      insTerminalGroup: db.prepare<[string, number]>('INSERT OR IGNORE INTO terminal_access_groups (terminal_id, group_id) VALUES (?, ?)'),
      position: db.prepare<[string], { log_epoch: number | null; cursor: number }>('SELECT log_epoch, cursor FROM terminals WHERE id = ?'),
      setCursor: db.prepare<[number, number, string]>('UPDATE terminals SET cursor = ?, updated_at = ? WHERE id = ?'),
      setPosition: db.prepare<[number | null, number, number, string]>('UPDATE terminals SET log_epoch = ?, cursor = ?, updated_at = ? WHERE id = ?'),
      advanceCursor: db.prepare<[number, number, string, number]>('UPDATE terminals SET cursor = ?, updated_at = ? WHERE id = ? AND cursor < ?'),
      // same epoch: forward only; another epoch: take the new position as is
      moveOrReset: db.prepare<[number | null, number | null, number, number, number, string]>(
        'UPDATE terminals SET log_epoch = ?, cursor = CASE WHEN log_epoch IS ? THEN max(cursor, ?) ELSE ? END, updated_at = ? WHERE id = ?',
      ),
      terminalExists: db.prepare<[string], number>('SELECT 1 FROM terminals WHERE id = ?').pluck(),
      // events
      insEvent: db.prepare<[number, string, string | null, string | null, string | null]>(
        'INSERT INTO events (time, type, terminal_id, user_id, detail) VALUES (?, ?, ?, ?, ?)',
      ),
      pruneKeep: db.prepare<[number]>('DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?'),
      pruneBefore: db.prepare<[number]>('DELETE FROM events WHERE time < ?'),
      // slices for the background pruner: at most ? rows per statement, oldest first
      pruneKeepSlice: db.prepare<[number, number]>(
        'DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= (SELECT max(id) FROM events) - ? ORDER BY id LIMIT ?)',
      ),
      pruneBeforeSlice: db.prepare<[number, number]>('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < ? LIMIT ?)'),
      eventCount: db.prepare<[], number>('SELECT count(*) FROM events').pluck(),
      // outbox
      // enqueue = insert a new row, or (it exists) coalesce into it: the same as one upsert,
      // but the count of rows stays known (see owedCounts) without RETURNING's cost
      enqueueNew: db.prepare<[string, string, number]>(
        'INSERT INTO outbox (terminal_id, user_id, enqueued_at) VALUES (?, ?, ?) ON CONFLICT (terminal_id, user_id) DO NOTHING',
      ),
      enqueueBump: db.prepare<[number, string, string]>(
        'UPDATE outbox SET gen = gen + 1, attempts = 0, last_error = NULL, enqueued_at = min(enqueued_at, ?) WHERE terminal_id = ? AND user_id = ?',
      ),
      enqueueAll: db.prepare<[string, number]>(
        `INSERT INTO outbox (terminal_id, user_id, enqueued_at) SELECT ?, id, ? FROM users WHERE true
         ON CONFLICT (terminal_id, user_id) DO UPDATE
           SET gen = gen + 1, attempts = 0, last_error = NULL, enqueued_at = min(enqueued_at, excluded.enqueued_at)`,
      ),
      take: db.prepare<[string, number, number], OutboxDbRow>(
        `SELECT * FROM outbox WHERE terminal_id = ? AND enqueued_at <= ? ORDER BY enqueued_at, user_id LIMIT ?`,
      ),
      ackGen: db.prepare<[string, string, number]>('DELETE FROM outbox WHERE terminal_id = ? AND user_id = ? AND gen = ?'),
      ackAny: db.prepare<[string, string]>('DELETE FROM outbox WHERE terminal_id = ? AND user_id = ?'),
      fail: db.prepare<[string, number, string, string]>(
        'UPDATE outbox SET attempts = attempts + 1, last_error = ?, enqueued_at = max(enqueued_at, ?) WHERE terminal_id = ? AND user_id = ? RETURNING attempts',
      ),
      outboxCount: db.prepare<[string], number>('SELECT count(*) FROM outbox WHERE terminal_id = ?').pluck(),
      outboxTotal: db.prepare<[], number>('SELECT count(*) FROM outbox').pluck(),
      outboxCounts: db.prepare<[], { terminal_id: string; n: number }>('SELECT terminal_id, count(*) AS n FROM outbox GROUP BY terminal_id'),
      // push failures
      putFailure: db.prepare<[string, string, number, string, number]>(
        `INSERT INTO push_failures (terminal_id, user_id, status, reason, time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (terminal_id, user_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, time = excluded.time`,
      ),
      delFailure: db.prepare<[string, string]>('DELETE FROM push_failures WHERE terminal_id = ? AND user_id = ?'),
      delFailuresOf: db.prepare<[string]>('DELETE FROM push_failures WHERE terminal_id = ?'),
      delFailuresAll: db.prepare<[]>('DELETE FROM push_failures'),
      // settings
      getSetting: db.prepare<[string], string>('SELECT value FROM settings WHERE key = ?').pluck(),
      setSetting: db.prepare<[string, string]>(
        'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      delSetting: db.prepare<[string]>('DELETE FROM settings WHERE key = ?'),
    };
  }

  /** A statement built from a fixed set of SQL shapes, prepared once. */
  private cached(sql: string): Database.Statement {
    let st = this.stmtCache.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.stmtCache.set(sql, st);
    }
    return st;
  }

  /** Runs fn in a BEGIN IMMEDIATE transaction; any failure becomes a StoreWriteError. */
  private write<T>(operation: string, fn: () => T): T {
    try {
      if (!this.db.open) throw new StoreWriteError('CLOSED', operation, 'the database connection is not open');
      // nested calls (from inside another write) join the outer transaction
      if (this.db.inTransaction) return fn();
      this.feedDirty = false;
      this.writeGen++;
      const r = this.tx.immediate(fn) as T;
      if (this.feedDirty) {
        this.feedDirty = false;
        this.emitFeedChange();
      }
      return r;
    } catch (err) {
      this.owed = null; // rolled back: the counts may have moved
      this.feedDirty = false;
      throw toStoreWriteError(err, operation);
    }
  }

  private emitFeedChange(): void {
    if (this.feedListeners.size === 0) return;
    let head: number;
    try {
      head = this.feed.head();
    } catch {
      return;
    }
    for (const l of [...this.feedListeners]) {
      try {
        l(head);
      } catch (err) {
        this.log?.error({ err }, 'feed listener failed');
      }
    }
  }

  // ---------------------------------------------------------------- users

  getUser(id: string): UserRecord | null {
    return this.users.get(id);
  }

  /** Several users read in one snapshot; null where a user does not exist. */
  getUsers(ids: readonly string[]): (UserRecord | null)[] {
    return this.tx.deferred(() => ids.map((id) => this.users.get(id))) as (UserRecord | null)[];
  }

  /**
   * As getUsers, for the push lanes: an unchanged user is the SAME object for
   * every caller (read-only: never mutate it), so a record fanned out to 49
   * terminals is read from SQLite once and encoded once (link.ts caches the
   * encoding per object) instead of 49 times. This connection's writes drop a
   * user's entry at once; a commit by any other connection (PRAGMA
   * data_version changes) drops them all.
   */
  getUsersShared(ids: readonly string[]): (UserRecord | null)[] {
    if (this.db.inTransaction) return this.getUsers(ids);
    return this.tx.deferred(() => {
      const seqOf = this.cached('SELECT seq FROM users WHERE id = ?').pluck();
      return ids.map((id) => {
        const seq = seqOf.get(id) as number | undefined;
        return seq === undefined ? null : this.sharedRecord(id, seq);
      });
    }) as (UserRecord | null)[];
  }

  /**
   * The user's record at feed number `seq`, shared between readers: a hit
   * when the cached copy was read at the same number (every change takes a
   * new one, whichever connection made it).
   */
  private sharedRecord(id: string, seq: number): UserRecord | null {
    const hit = this.shared.get(id);
    if (hit && hit.seq === seq) return hit.user;
    const user = this.users.get(id);
    if (!user) return null;
    this.shared.delete(id);
    this.shared.set(id, { seq, user });
    // bounded: the oldest entry goes (a burst is pushed in roughly feed order)
    if (this.shared.size > SHARED_USERS) this.shared.delete(this.shared.keys().next().value!);
    return user;
  }

  hasUser(id: string): boolean {
    return this.users.has(id);
  }

  /** Users with id > after, in LIST_USERS order (bytes of the ID). limit default 1000. */
  listUsers(opts: { after?: string; limit?: number } = {}): UserRecord[] {
    return this.tx.deferred(() => this.users.list(opts.after ?? '', opts.limit ?? DEFAULT_PAGE)) as UserRecord[];
  }

  /** IDs with their server_version and updated_at, for cheap comparisons. */
  listUserIndex(opts: { after?: string; limit?: number } = {}): UserIndexEntry[] {
    return this.users.listIndex(opts.after ?? '', opts.limit ?? DEFAULT_PAGE);
  }

  userCount(): number {
    return this.users.countAll();
  }

  /**
   * Stores an administrator's record, replacing the user's whole record. The
   * stored flag keeps only DISABLED. Optionally enqueues pushTo (when changed)
   * in the same transaction.
   */
  putUserFromServer(u: UserRecord, opts: { pushTo?: readonly string[] } = {}): PutUserResult & { seq: number | null } {
    return this.write('putUserFromServer', () => {
      const prev = this.users.get(u.id);
      const rec = structuredCloneUser(u);
      rec.flag &= USER_DISABLED;
      if (prev && usersEqual(prev, rec)) {
        return { created: false, changed: false, ...this.versionOf(u.id), seq: null };
      }
      const seq = this.feed.next();
      const serverVersion = this.users.write(rec, prev, this.now(), seq);
      if (prev === null) this.feed.untomb(u.id);
      this.feedDirty = true;
      if (opts.pushTo) this.enqueueIn(opts.pushTo, [u.id]);
      return { created: prev === null, changed: true, serverVersion, seq };
    });
  }

  private versionOf(id: string): { serverVersion: number } {
    const row = this.cached('SELECT server_version FROM users WHERE id = ?').pluck().get(id) as number | undefined;
    return { serverVersion: row ?? 0 };
  }

  /**
   * Deletes a user from the server (an administrator's decision; a terminal's
   * delete never reaches this). pushTo terminals are enqueued: at send time the
   * user is missing from `users`, which tells the sender to delete it there.
   */
  deleteUser(id: string, opts: { pushTo?: readonly string[] } = {}): boolean {
    return this.write('deleteUser', () => {
      const removed = this.users.remove(id);
      this.shared.delete(id);
      if (removed) {
        // the delete takes its feed number as a tombstone
        this.feed.tombstone(id, this.feed.next(), this.now());
        this.feedDirty = true;
      }
      if (removed && opts.pushTo) this.enqueueIn(opts.pushTo, [id]);
      return removed;
    });
  }

  /**
   * Merges a record pulled from a terminal, in ONE transaction: reads the
   * server's record, applies the merge policy (src/model/merge.ts), writes the
   * user if it changed, records USER_UPDATE_SUCCESS_DEVICE, advances the
   * terminal's cursor to ctx.cursorAfter, and enqueues the outbox rows. Either
   * all of it happens or none (StoreWriteError).
   */
  mergeDeviceUser(u: UserRecord, ctx: MergeContext): MergeResult {
    return this.write('mergeDeviceUser', () => this.mergeIn(u, ctx, this.now()));
  }

  /** Many merges in one transaction (a burst); all or none. */
  mergeDeviceUsers(list: readonly { user: UserRecord; ctx: MergeContext }[]): MergeResult[] {
    return this.write('mergeDeviceUsers', () => {
      const now = this.now();
      return list.map(({ user, ctx }) => this.mergeIn(user, ctx, now));
    });
  }

  /**
   * The sync engine's ingest step in ONE transaction: merges `list` (as
   * mergeDeviceUsers), moves the terminal's log position, and appends
   * `events` (e.g. deletes seen on the device). `advance`: within the stored
   * epoch the cursor only moves forward; a different epoch sets both (the
   * terminal's log restarted). null leaves the position alone.
   */
  mergeDeviceUsersAndAdvance(
    list: readonly { user: UserRecord; ctx: MergeContext }[],
    terminalId: string,
    advance: LogPosition | null,
    events: readonly EventInput[] = [],
    pulls: { failed?: readonly { userId: string; reason: string }[]; gone?: readonly string[] } = {},
  ): MergeResult[] {
    return this.ingest({ terminalId, merges: list, advance, events, pullFailed: pulls.failed, pullGone: pulls.gone });
  }

  /**
   * The sync engine's ingest step in ONE transaction (SiteStore.ingest):
   * merges (each change that altered the server's record takes a feed number),
   * the terminal's log position, pull failures, monitoring events.
   */
  ingest(b: IngestBatch): MergeResult[] {
    const { terminalId, merges: list, advance } = b;
    const events = b.events ?? [];
    const pulls = { failed: b.pullFailed, gone: b.pullGone };
    return this.write('mergeDeviceUsersAndAdvance', () => {
      const now = this.now();
      const results = list.map(({ user, ctx }) => this.mergeIn(user, ctx, now));
      // users the terminal reported but we could not read stay owed (see pull-failures.ts);
      // users deleted on the terminal before we asked are owed no longer
      for (const f of pulls.failed ?? []) this.pullFailures.record(terminalId, f.userId, f.reason, now);
      // (one cheap check first: a terminal that lists users it cannot deliver sends a
      // thousand of them per batch, and the usual terminal has no failures to clear)
      const gone = pulls.gone ?? [];
      if (gone.length > 0 && this.pullFailures.hasAny(terminalId)) for (const userId of gone) this.pullFailures.clear(terminalId, userId);
      if (advance) {
        const r = this.s.moveOrReset.run(advance.logEpoch, advance.logEpoch, advance.cursor, advance.cursor, now, terminalId);
        if (r.changes === 0) throw new StoreWriteError('CONSTRAINT', 'mergeDeviceUsersAndAdvance', `unknown terminal ${JSON.stringify(terminalId)}`);
      }
      this.insertEvents(events, now);
      return results;
    });
  }

  private mergeIn(device: UserRecord, ctx: MergeContext, now: number): MergeResult {
    const prev = this.users.get(device.id);
    const m = mergeDeviceIntoServer(prev, device, ctx.parts);
    let serverVersion: number;
    const differsFromDevice = ctx.parts ? !sameForTerminal(m.record, device, ctx.parts) : !usersEqual(m.record, device);
    let seq: number | null = null;
    if (m.changed) {
      // the change enters the feed; the source terminal's own feed reads skip it when it holds exactly this version
      seq = this.feed.next();
      serverVersion = this.users.write(m.record, prev, now, seq, differsFromDevice ? null : ctx.terminalId);
      if (prev === null) this.feed.untomb(device.id);
      this.feedDirty = true;
    } else serverVersion = this.versionOf(device.id).serverVersion;

    const targets = new Set<string>();
    if (ctx.pushTo && (m.changed || ctx.pushWhen === 'always')) {
      for (const t of ctx.pushTo) if (t !== ctx.terminalId) targets.add(t);
    }
    // the source terminal's copy differs: a changed record reaches it through the feed; an
    // unchanged one (the server kept its fields) is owed to it
    if (differsFromDevice && ctx.pushBack !== false && !m.changed) targets.add(ctx.terminalId);
    const enqueued = [...targets];
    this.enqueueIn(enqueued, [device.id], now);

    const detail = JSON.stringify({ eventId: ctx.eventId, created: prev === null, changed: m.changed, filled: m.filled, differsFromDevice });
    const monitoringEventId = Number(this.s.insEvent.run(now, MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE, ctx.terminalId, device.id, detail).lastInsertRowid);

    if (ctx.cursorAfter !== undefined) this.advanceIn(ctx.terminalId, ctx.cursorAfter, now);
    // read at last: no longer a pull failure
    if (this.pullFailures.hasAny(ctx.terminalId)) this.pullFailures.clear(ctx.terminalId, device.id);

    return {
      created: prev === null,
      changed: m.changed,
      record: m.record,
      differsFromDevice,
      filled: m.filled,
      serverVersion,
      seq,
      enqueued,
      monitoringEventId,
    };
  }

  // ------------------------------------------------------------ terminals

  getTerminal(id: string): TerminalRow | null {
    const r = this.s.terminal.get(id);
    return r ? terminalFromRow(r, this.s.terminalGroups.all(id)) : null;
  }

  getTerminalByDeviceId(deviceId: number): TerminalRow | null {
    const r = this.s.terminalByDevice.get(deviceId);
    return r ? terminalFromRow(r, this.s.terminalGroups.all(r.id)) : null;
  }

  listTerminals(): TerminalRow[] {
    const groups = new Map<string, number[]>();
    for (const g of this.s.allTerminalGroups.all()) {
      const l = groups.get(g.terminal_id);
      if (l) l.push(g.group_id);
      else groups.set(g.terminal_id, [g.group_id]);
    }
    return this.s.terminals.all().map((r) => terminalFromRow(r, groups.get(r.id) ?? []));
  }

  /** Creates the terminal, or updates the fields given for an existing one. */
  upsertTerminal(t: TerminalInput): TerminalRow {
    return this.write('upsertTerminal', () => {
      const now = this.now();
      if (this.s.terminalExists.get(t.id) === undefined) this.s.insTerminal.run(t.id, t.direction, now, now);
      const { id, ...patch } = t;
      this.patchIn(id, patch, now);
      return this.getTerminal(id)!;
    });
  }

  /** Updates the fields given. Returns null for an unknown terminal. */
  updateTerminal(id: string, patch: TerminalPatch): TerminalRow | null {
    return this.write('updateTerminal', () => {
      if (this.s.terminalExists.get(id) === undefined) return null;
      this.patchIn(id, patch, this.now());
      return this.getTerminal(id)!;
    });
  }

  private patchIn(id: string, patch: TerminalPatch, now: number): void {
    const cols: string[] = [];
    const vals: unknown[] = [];
    for (const [key, col] of Object.entries(TERMINAL_COLUMNS) as [keyof typeof TERMINAL_COLUMNS, string][]) {
      if (!(key in patch) || patch[key] === undefined) continue;
      cols.push(`${col} = ?`);
      const v = patch[key];
      vals.push(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    }
    cols.push('updated_at = ?');
    vals.push(now);
    this.cached(`UPDATE terminals SET ${cols.join(', ')} WHERE id = ?`).run(...vals, id);
    if (patch.accessGroups !== undefined) {
      this.s.delTerminalGroups.run(id);
      for (const g of patch.accessGroups) this.s.insTerminalGroup.run(id, g);
    }
  }

  /** Removes the terminal with its outbox rows (its push failures are kept for the record). */
  deleteTerminal(id: string): boolean {
    return this.write('deleteTerminal', () => {
      this.owed?.delete(id); // its outbox rows go by cascade
      return this.s.delTerminal.run(id).changes > 0;
    });
  }

  /** The terminal's log position; null for an unknown terminal. */
  getCursor(terminalId: string): LogPosition | null {
    const r = this.s.position.get(terminalId);
    return r ? { logEpoch: r.log_epoch, cursor: r.cursor } : null;
  }

  /**
   * Sets the cursor (and the epoch when given), also backwards: for a log reset
   * or a new epoch. Use advanceCursor for normal progress.
   */
  setCursor(terminalId: string, cursor: number, logEpoch?: number | null): void {
    this.write('setCursor', () => {
      const r =
        logEpoch === undefined
          ? this.s.setCursor.run(cursor, this.now(), terminalId)
          : this.s.setPosition.run(logEpoch, cursor, this.now(), terminalId);
      if (r.changes === 0) throw new StoreWriteError('CONSTRAINT', 'setCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    });
  }

  /** Moves the cursor forward to `cursor` (never back). Returns true when it moved. */
  advanceCursor(terminalId: string, cursor: number): boolean {
    return this.write('advanceCursor', () => this.advanceIn(terminalId, cursor, this.now()));
  }

  private advanceIn(terminalId: string, cursor: number, now: number): boolean {
    if (this.s.advanceCursor.run(cursor, now, terminalId, cursor).changes > 0) return true;
    if (this.s.terminalExists.get(terminalId) === undefined) {
      throw new StoreWriteError('CONSTRAINT', 'advanceCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    }
    return false;
  }

  // --------------------------------------------------------------- events

  /** Appends a monitoring event; returns its ID. */
  appendEvent(ev: EventInput): number {
    return this.write('appendEvent', () => this.insertEvent(ev));
  }

  /** Appends several events in one transaction; returns their IDs. */
  appendEvents(evs: readonly EventInput[]): number[] {
    return this.write('appendEvents', () => evs.map((e) => this.insertEvent(e)));
  }

  /**
   * Writes one event; an event a terminal triggered beyond its rate limit is
   * counted instead (see flushSuppressedEvents) and 0 returned.
   */
  private insertEvent(ev: EventInput, limited = true): number {
    if (limited && this.limiter && !this.limiter.admit(ev.terminalId, ev.type)) return 0;
    const r = this.s.insEvent.run(ev.time ?? this.now(), ev.type, ev.terminalId ?? null, ev.userId ?? null, ev.detail ?? null);
    return Number(r.lastInsertRowid);
  }

  /**
   * Writes a batch of events (e.g. a terminal's deletes), each run of one
   * terminal and type admitted by the rate limits at once: the first events
   * of a run up to the tokens left are written, the rest only counted, so a
   * flood costs a count and not a row or a check per event.
   */
  private insertEvents(evs: readonly EventInput[], now: number): void {
    const ins = this.s.insEvent;
    for (let i = 0; i < evs.length; ) {
      const first = evs[i];
      let j = i + 1;
      while (j < evs.length && evs[j].type === first.type && evs[j].terminalId === first.terminalId) j++;
      const allowed = this.limiter ? this.limiter.admitMany(first.terminalId, first.type, j - i) : j - i;
      for (let k = i; k < i + allowed; k++) {
        const e = evs[k];
        ins.run(e.time ?? now, e.type, e.terminalId ?? null, e.userId ?? null, e.detail ?? null);
      }
      i = j;
    }
  }

  listEvents(q: EventQuery = {}): StoredEvent[] {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.after !== undefined) (where.push('id > ?'), vals.push(q.after));
    if (q.before !== undefined) (where.push('id < ?'), vals.push(q.before));
    if (q.type !== undefined) (where.push('type = ?'), vals.push(q.type));
    if (q.terminalId !== undefined) (where.push('terminal_id = ?'), vals.push(q.terminalId));
    if (q.userId !== undefined) (where.push('user_id = ?'), vals.push(q.userId));
    const limit = Math.max(1, Math.min(MAX_EVENT_PAGE, q.limit ?? 100));
    const sql = `SELECT * FROM events${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT ?`;
    return (this.cached(sql).all(...vals, limit) as EventDbRow[]).map(eventFromRow);
  }

  eventCount(): number {
    return this.s.eventCount.get() as number;
  }

  /**
   * Bounds the monitoring log: keeps the newest `keepLast` events and/or drops
   * events older than `olderThan` (ms since the epoch). Returns events removed.
   */
  pruneEvents(opts: { keepLast?: number; olderThan?: number }): number {
    return this.write('pruneEvents', () => {
      let n = 0;
      if (opts.keepLast !== undefined) n += this.s.pruneKeep.run(Math.max(0, opts.keepLast)).changes;
      if (opts.olderThan !== undefined) n += this.s.pruneBefore.run(opts.olderThan).changes;
      return n;
    });
  }

  /**
   * One slice of the background retention: deletes at most `limit` events
   * that are beyond the newest `keepLast` or older than `olderThan` (ms since
   * the epoch), in one short transaction. Returns events removed; call again
   * (after yielding to the event loop) until it returns less than `limit`.
   */
  pruneEventsSlice(opts: { keepLast?: number; olderThan?: number; limit: number }): number {
    return this.write('pruneEvents', () => {
      const limit = Math.max(1, opts.limit);
      let n = 0;
      if (opts.keepLast !== undefined) n += this.s.pruneKeepSlice.run(Math.max(0, opts.keepLast), limit).changes;
      if (opts.olderThan !== undefined && n < limit) n += this.s.pruneBeforeSlice.run(opts.olderThan, limit - n).changes;
      return n;
    });
  }

  /**
   * Writes what the rate limits held back since the last call: one
   * EVENTS_SUPPRESSED event per terminal, detail {counts: {TYPE: n}, since}.
   * Returns the events written (0 when nothing was suppressed or the database
   * refused; the counts are then kept for the next call).
   */
  flushSuppressedEvents(): number {
    if (!this.limiter || this.limiter.pendingSummaries === 0) return 0;
    const list = this.limiter.takeSuppressed();
    try {
      this.write('flushSuppressedEvents', () => {
        const now = this.now();
        for (const s of list) this.insertEvent({ type: EVENTS_SUPPRESSED, terminalId: s.terminalId, time: now, detail: JSON.stringify({ counts: s.counts, since: s.since }) }, false);
      });
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.limiter.restore(list);
      return 0;
    }
    const total = list.reduce((a, s) => a + Object.values(s.counts).reduce((x, y) => x + y, 0), 0);
    this.log?.warn({ terminals: list.map((s) => s.terminalId).slice(0, 20), suppressed: total }, 'monitoring events over their per-terminal rate limit were counted, not written');
    return list.length;
  }

  /** Bytes of the database and its WAL on disk, and the free pages inside the file. */
  diskUsage(): DiskUsage {
    const size = (f: string) => {
      try {
        return fs.statSync(f).size;
      } catch {
        return 0;
      }
    };
    const memory = this.path === ':memory:';
    return {
      dbBytes: memory ? 0 : size(this.path),
      walBytes: memory ? 0 : size(this.path + '-wal'),
      pageSize: this.db.pragma('page_size', { simple: true }) as number,
      pageCount: this.db.pragma('page_count', { simple: true }) as number,
      freePages: this.db.pragma('freelist_count', { simple: true }) as number,
    };
  }

  /**
   * Appends an event, and if the database cannot take it (read-only, full,
   * I/O error, busy, closed), keeps it in memory for flushPendingEvents. The
   * memory queue is bounded (maxPendingEvents); when full the oldest event is
   * dropped and counted in droppedEventCount. Never throws a StoreWriteError.
   */
  recordEventDurably(ev: EventInput): DurableEventResult {
    if (this.limiter && !this.limiter.admit(ev.terminalId, ev.type)) return { stored: false, suppressed: true };
    const stamped: EventInput = { ...ev, time: ev.time ?? this.now() };
    if (this.pending.length > 0) {
      // keep order: older pending events go first
      this.pushPending(stamped);
      this.flushPendingEvents();
      return this.pending.length === 0 ? { stored: true, id: this.lastEventId() } : { stored: false, pending: this.pending.length };
    }
    try {
      return { stored: true, id: this.write('appendEvent', () => this.insertEvent(stamped, false)) };
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.pushPending(stamped);
      this.log?.warn({ code: err.code, type: ev.type, pending: this.pending.length }, 'monitoring event kept in memory: database write failed');
      return { stored: false, pending: this.pending.length };
    }
  }

  private lastEventId(): number {
    return this.cached('SELECT max(id) FROM events').pluck().get() as number;
  }

  private pushPending(ev: EventInput): void {
    if (this.maxPending <= 0) {
      this.dropped++;
      return;
    }
    while (this.pending.length >= this.maxPending) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(ev);
  }

  /** Writes the pending events in one transaction. Returns how many were saved (0 when it failed again). */
  flushPendingEvents(): number {
    if (this.pending.length === 0) return 0;
    const batch = this.pending.slice();
    try {
      // admitted by the rate limits when they were recorded
      this.write('appendEvents', () => batch.map((e) => this.insertEvent(e, false)));
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      return 0;
    }
    // events recorded while flushing (none: we are synchronous) would follow the batch
    this.pending.splice(0, batch.length);
    this.log?.info({ flushed: batch.length, dropped: this.dropped }, 'pending monitoring events saved');
    return batch.length;
  }

  get pendingEventCount(): number {
    return this.pending.length;
  }

  /** events dropped because the in-memory queue was full */
  get droppedEventCount(): number {
    return this.dropped;
  }

  // --------------------------------------------------------------- outbox

  private enqueueIn(terminalIds: readonly string[], userIds: readonly string[], now = this.now()): number {
    const { enqueueNew, enqueueBump } = this.s;
    let n = 0;
    if (terminalIds.length && userIds.length) this.feedDirty = true;
    for (const u of userIds) {
      for (const t of terminalIds) {
        if (enqueueNew.run(t, u, now).changes === 1) this.owedAdd(t, 1);
        else enqueueBump.run(now, t, u);
        n++;
      }
    }
    return n;
  }

  /**
   * Enqueues the user for each terminal. Coalesced: an entry already waiting
   * for the same terminal and user is replaced (one row; generation bumped,
   * attempts and error reset; it keeps its place in the queue). The record
   * is read fresh from users at send time. An unknown terminal fails CONSTRAINT.
   */
  enqueue(terminalIds: readonly string[], userId: string): void {
    this.write('enqueue', () => this.enqueueIn(terminalIds, [userId]));
  }

  /** Every (terminal, user) pair in one transaction. Returns rows written. */
  enqueueMany(terminalIds: readonly string[], userIds: readonly string[]): number {
    return this.write('enqueueMany', () => this.enqueueIn(terminalIds, userIds));
  }

  /** Enqueues every server user for a terminal (full resync) in one statement. */
  enqueueAllUsers(terminalId: string): number {
    return this.write('enqueueAllUsers', () => {
      this.owed = null; // inserted and coalesced rows are not told apart here: recount on next read
      this.feedDirty = true;
      return this.s.enqueueAll.run(terminalId, this.now()).changes;
    });
  }

  /**
   * The next entries for a terminal, oldest first, without removing them (ack
   * does). Entries deferred by fail(…, retryAfterMs) are skipped until due.
   */
  take(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): OutboxItem[] {
    if (after) {
      // the entries queued behind `after` (a batch still in flight): a keyset range of the index
      const st = this.cached(
        'SELECT * FROM outbox WHERE terminal_id = ? AND enqueued_at <= ? AND (enqueued_at, user_id) > (?, ?) ORDER BY enqueued_at, user_id LIMIT ?',
      );
      return (st.all(terminalId, this.now(), after.enqueuedAt, after.userId, Math.max(1, limit)) as OutboxDbRow[]).map(outboxFromRow);
    }
    return this.s.take.all(terminalId, this.now(), Math.max(1, limit)).map(outboxFromRow);
  }

  /**
   * The terminal stored these users: removes their outbox entries and clears
   * their push failures. Pass the items from take(): an entry re-enqueued
   * since (a newer change, higher gen) stays queued. Returns entries removed.
   */
  ack(terminalId: string, items: readonly OutboxAck[]): number {
    return this.write('ack', () => {
      let n = 0;
      // one look instead of a DELETE per user when the terminal has no failures (the usual case)
      const failures = this.cached('SELECT 1 FROM push_failures WHERE terminal_id = ? LIMIT 1').get(terminalId) !== undefined;
      for (const it of items) {
        const userId = typeof it === 'string' ? it : it.userId;
        n += (typeof it === 'string' ? this.s.ackAny.run(terminalId, it) : this.s.ackGen.run(terminalId, it.userId, it.gen)).changes;
        if (failures) this.s.delFailure.run(terminalId, userId);
      }
      this.owedAdd(terminalId, -n);
      return n;
    });
  }

  /**
   * The outcome of one PUT_USERS batch in ONE transaction: acks the stored
   * entries (as ack), appends `events` (e.g. USER_UPDATE_SUCCESS_SERVER per
   * user), and rejects the refused ones (as reject).
   */
  ackPushed(
    terminalId: string,
    ok: readonly OutboxAck[],
    events: readonly EventInput[] = [],
    failed: readonly { item: OutboxAck; status: number; reason: string }[] = [],
  ): number {
    return this.write('ackPushed', () => {
      const now = this.now();
      const n = this.ack(terminalId, ok);
      this.insertEvents(events, now);
      for (const f of failed) this.reject(terminalId, f.item, f.status, f.reason);
      return n;
    });
  }

  /**
   * The terminal refused the record (e.g. DUPLICATE_CARD, USER_FULL): records
   * the push failure and removes the entry, in one transaction, so the lane is
   * not blocked by a record that will never fit.
   */
  reject(terminalId: string, item: OutboxAck, status: number, reason: string): void {
    this.write('reject', () => {
      const userId = typeof item === 'string' ? item : item.userId;
      const r = typeof item === 'string' ? this.s.ackAny.run(terminalId, item) : this.s.ackGen.run(terminalId, item.userId, item.gen);
      this.owedAdd(terminalId, -r.changes);
      this.s.putFailure.run(terminalId, userId, status, reason, this.now());
    });
  }

  /**
   * A push attempt failed for a transient reason (timeout, disconnect): counts
   * the attempt, keeps the error text, and with retryAfterMs defers the entry.
   * Returns the attempt count, or 0 when no such entry is queued.
   */
  fail(terminalId: string, userId: string, err: unknown, retryAfterMs = 0): number {
    return this.write('fail', () => {
      // enqueued_at = max(enqueued_at, 0) leaves it as is; a retry delay moves the entry back until due
      const notBefore = retryAfterMs > 0 ? this.now() + retryAfterMs : 0;
      const r = this.s.fail.get(errorText(err), notBefore, terminalId, userId) as { attempts: number } | undefined;
      return r?.attempts ?? 0;
    });
  }

  /**
   * Outbox rows per terminal. Counted once, then kept exact as this connection
   * adds and removes rows (a count(*) over a burst's half a million rows takes
   * long enough to stall the daemon on every status-page refresh); recounted
   * when another connection committed (PRAGMA data_version) or a write failed.
   */
  private owedRowCounts(): Map<string, number> {
    const dv = this.cached('PRAGMA data_version').pluck().get() as number;
    if (!this.owed || dv !== this.owedDataVersion) {
      const m = new Map<string, number>();
      for (const r of this.s.outboxCounts.all()) m.set(r.terminal_id, r.n);
      this.owed = m;
      this.owedDataVersion = dv;
    }
    return this.owed;
  }

  private owedAdd(terminalId: string, n: number): void {
    if (!this.owed || n === 0) return;
    const v = (this.owed.get(terminalId) ?? 0) + n;
    if (v > 0) this.owed.set(terminalId, v);
    else this.owed.delete(terminalId);
  }

  outboxCount(terminalId?: string): number {
    const m = this.owedRowCounts();
    if (terminalId !== undefined) return m.get(terminalId) ?? 0;
    let total = 0;
    for (const n of m.values()) total += n;
    return total;
  }

  outboxCounts(): OutboxCounts {
    const byTerminal: Record<string, number> = {};
    let total = 0;
    for (const [t, n] of this.owedRowCounts()) {
      byTerminal[t] = n;
      total += n;
    }
    return { total, byTerminal };
  }

  // ----------------------------------------------------------------- feed

  /**
   * Runs `listener(head)` after every commit of this connection that grew the
   * feed or the owed set. Returns the unsubscribe function.
   */
  onFeedChange(listener: (head: number) => void): () => void {
    this.feedListeners.add(listener);
    return () => this.feedListeners.delete(listener);
  }

  /** the newest feed number (0: none yet) */
  feedHead(): number {
    return this.feed.head();
  }

  /** the terminal's feed cursor; null for an unknown terminal */
  getFeedCursor(terminalId: string): number | null {
    return this.feed.cursor(terminalId);
  }

  /** sets the terminal's feed cursor (also backwards) */
  setFeedCursor(terminalId: string, seq: number): void {
    this.write('setFeedCursor', () => {
      if (!this.feed.setCursor(terminalId, seq)) throw new StoreWriteError('CONSTRAINT', 'setFeedCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    });
  }

  /** moves the terminal's feed cursor forward to `seq` (never back); true when it moved */
  advanceFeedCursor(terminalId: string, seq: number): boolean {
    return this.write('advanceFeedCursor', () => this.feed.advanceCursor(terminalId, seq));
  }

  /**
   * The terminal's next feed entries after `q.after` (default: its cursor), in
   * its scope, from ONE range read in one snapshot. Records are shared between
   * readers while unchanged (see sharedRecord): the same object, so encoded once.
   */
  readFeed(terminalId: string, q: FeedQuery): FeedBatch {
    const limit = Math.max(1, Math.floor(q.limit));
    const run = (): FeedBatch => {
      const from = q.after ?? this.feed.cursor(terminalId);
      if (from === null) throw new StoreWriteError('CONSTRAINT', 'readFeed', `unknown terminal ${JSON.stringify(terminalId)}`);
      const rows = this.feed.read(terminalId, from, limit, q.groups);
      const entries: FeedEntry[] = [];
      for (const r of rows) {
        const user = r.dead ? null : this.sharedRecord(r.user_id, r.seq);
        // (a row without its user cannot happen inside one snapshot; a tombstone carries none)
        entries.push({ seq: r.seq, userId: r.user_id, user });
      }
      const upTo = rows.length >= limit ? rows[rows.length - 1].seq : Math.max(from, this.feed.head());
      return { entries, from, upTo };
    };
    return (this.db.inTransaction ? run() : this.tx.deferred(run)) as FeedBatch;
  }

  /**
   * The answers to one push batch in ONE transaction: owed entries acked or
   * kept, push failures recorded or cleared, users not taken now owed again,
   * events appended, and the feed cursor moved from `feed.from` to `feed.to`
   * when it still stands at `from`.
   */
  recordPush(o: PushOutcome): PushRecorded {
    return this.write('recordPush', () => {
      const now = this.now();
      const t = o.terminalId;
      const failures = this.cached('SELECT 1 FROM push_failures WHERE terminal_id = ? LIMIT 1').get(t) !== undefined;
      let acked = 0;
      for (const a of o.ok ?? []) {
        if (a.gen !== undefined) acked += this.s.ackGen.run(t, a.userId, a.gen).changes;
        if (failures) this.s.delFailure.run(t, a.userId);
      }
      for (const r of o.refused ?? []) {
        if (r.gen !== undefined) acked += this.s.ackGen.run(t, r.userId, r.gen).changes;
        this.s.putFailure.run(t, r.userId, r.code, r.reason, now);
      }
      this.owedAdd(t, -acked);
      if (o.later?.length) this.enqueueIn([t], o.later, now);
      if (o.events?.length) this.insertEvents(o.events, now);
      let advanced = false;
      if (o.feed) {
        if (o.feed.to === o.feed.from) advanced = true;
        else advanced = this.feed.moveCursor(t, o.feed.from, o.feed.to);
        if (!advanced && this.s.terminalExists.get(t) === undefined) throw new StoreWriteError('CONSTRAINT', 'recordPush', `unknown terminal ${JSON.stringify(t)}`);
      }
      return { advanced };
    });
  }

  /** Removes the tombstones every terminal's feed cursor has passed. Returns how many. */
  collectTombstones(): number {
    return this.write('collectTombstones', () => this.feed.collect());
  }

  /** Users with id > after in LIST_USERS order, with their feed numbers. */
  walkUsers(o: { after?: string; limit: number }): SeqUser[] {
    return this.tx.deferred(() => {
      const seqs: number[] = [];
      const users = this.users.list(o.after ?? '', Math.max(1, o.limit), seqs);
      return users.map((user, i) => ({ user, seq: seqs[i] }));
    }) as SeqUser[];
  }

  /** The owed set's next entries with the server's records (see take). */
  takeOwed(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): OwedEntry[] {
    const items = this.take(terminalId, limit, after);
    if (items.length === 0) return [];
    const recs = this.getUsersShared(items.map((i) => i.userId));
    return items.map((it, k) => ({ userId: it.userId, gen: it.gen, enqueuedAt: it.enqueuedAt, attempts: it.attempts, lastError: it.lastError, user: recs[k] }));
  }

  /** Owes the users to the terminal (the owed set; coalesced). */
  owe(terminalId: string, userIds: readonly string[]): number {
    return this.write('owe', () => this.enqueueIn([terminalId], userIds));
  }

  /**
   * What each terminal is owed: the feed entries past its cursor plus its owed
   * set. In 'specific' mode the feed part counts entries out of its scope too
   * (an upper bound: they are passed over, not sent).
   */
  owedCounts(): OwedCounts {
    const byTerminal: Record<string, number> = {};
    let total = 0;
    const add = (t: string, n: number) => {
      byTerminal[t] = (byTerminal[t] ?? 0) + n;
      total += n;
    };
    for (const [t, n] of this.behindCounts()) add(t, n);
    for (const [t, n] of this.owedRowCounts()) add(t, n);
    return { total, byTerminal };
  }

  owedCount(terminalId?: string): number {
    if (terminalId === undefined) return this.owedCounts().total;
    const c = this.feed.cursor(terminalId);
    return (c === null ? 0 : this.behindCounts().get(terminalId) ?? 0) + (this.owedRowCounts().get(terminalId) ?? 0);
  }

  /** The users owed to a terminal (feed entries past its cursor, then its owed set), at most `limit`. */
  owedUserIds(terminalId: string, limit = DEFAULT_PAGE): string[] {
    const c = this.feed.cursor(terminalId);
    if (c === null) return [];
    const ids = this.feed.read(terminalId, c, limit).map((r) => r.user_id);
    for (const it of this.take(terminalId, limit)) if (!ids.includes(it.userId)) ids.push(it.userId);
    return ids.slice(0, limit);
  }

  /** feed entries past each terminal's cursor, counted again after any write */
  private behindCounts(): Map<string, number> {
    const dv = this.cached('PRAGMA data_version').pluck().get() as number;
    const c = this.behindCache;
    if (c && c.dv === dv && c.gen === this.writeGen) return c.map;
    const map = this.feed.behindByTerminal();
    this.behindCache = { dv, gen: this.writeGen, map };
    return map;
  }

  // -------------------------------------------------------- push failures

  recordPushFailure(f: Omit<PushFailure, 'time'> & { time?: number }): void {
    this.write('recordPushFailure', () => {
      this.s.putFailure.run(f.terminalId, f.userId, f.status, f.reason, f.time ?? this.now());
    });
  }

  listPushFailures(q: { terminalId?: string; userId?: string; limit?: number } = {}): PushFailure[] {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.terminalId !== undefined) (where.push('terminal_id = ?'), vals.push(q.terminalId));
    if (q.userId !== undefined) (where.push('user_id = ?'), vals.push(q.userId));
    const sql = `SELECT terminal_id, user_id, status, reason, time FROM push_failures${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY time DESC, terminal_id, user_id LIMIT ?`;
    const rows = this.cached(sql).all(...vals, Math.max(1, q.limit ?? DEFAULT_PAGE)) as { terminal_id: string; user_id: string; status: number; reason: string; time: number }[];
    return rows.map((r) => ({ terminalId: r.terminal_id, userId: r.user_id, status: r.status, reason: r.reason, time: r.time }));
  }

  /** Clears one failure, a terminal's failures, or (no arguments) all. Returns rows removed. */
  clearPushFailures(terminalId?: string, userId?: string): number {
    return this.write('clearPushFailures', () => {
      if (terminalId === undefined) return this.s.delFailuresAll.run().changes;
      if (userId === undefined) return this.s.delFailuresOf.run(terminalId).changes;
      return this.s.delFailure.run(terminalId, userId).changes;
    });
  }

  // -------------------------------------------------------- pull failures

  /** A device user the server could not read (see pull-failures.ts): inserted, or attempts counted. */
  recordPullFailure(terminalId: string, userId: string, reason: string): void {
    this.write('recordPullFailure', () => this.pullFailures.record(terminalId, userId, reason, this.now()));
  }

  listPullFailures(q: PullFailureQuery = {}): PullFailure[] {
    return this.pullFailures.list(q);
  }

  /** Returns true when a row was removed. */
  clearPullFailure(terminalId: string, userId: string): boolean {
    return this.write('clearPullFailure', () => this.pullFailures.clear(terminalId, userId));
  }

  // ------------------------------------------------------------- settings

  getSetting(key: string): string | null {
    return (this.s.getSetting.get(key) as string | undefined) ?? null;
  }

  /** Sets a setting; null removes it. */
  setSetting(key: string, value: string | null): void {
    this.write('setSetting', () => {
      if (value === null) this.s.delSetting.run(key);
      else this.s.setSetting.run(key, value);
    });
  }

  /** The stored sync mode, or 'server' (the reference server's out-of-the-box mode) when unset. */
  getSyncMode(): SyncMode {
    const v = this.getSetting(SETTING_SYNC_MODE);
    return v !== null && (SYNC_MODES as readonly string[]).includes(v) ? (v as SyncMode) : DEFAULT_SYNC_MODE;
  }

  /**
   * Sets the sync mode. Turning sync back on from 'off' pushes nothing
   * retroactively: every terminal's feed cursor moves to the head (what the
   * owed set holds stays owed).
   */
  setSyncMode(mode: SyncMode): void {
    if (!SYNC_MODES.includes(mode)) throw new TypeError(`syncMode must be one of ${SYNC_MODES.join(', ')}, not ${JSON.stringify(mode)}`);
    this.write('setSyncMode', () => {
      const was = this.getSyncMode();
      this.setSetting(SETTING_SYNC_MODE, mode);
      if (was === 'off' && mode !== 'off') this.feed.allCursorsToHead();
    });
  }

  // --------------------------------------------------------------- backup

  /**
   * Online backup to `dest` (better-sqlite3's backup API: pages are copied in
   * steps between which the daemon keeps working). The file is created 0600
   * before any data is written to it. The promise resolves when done.
   */
  async backup(dest: string, opts: { progress?: (p: BackupProgress) => void; pagesPerStep?: number } = {}): Promise<BackupProgress> {
    let created = false;
    try {
      fs.closeSync(fs.openSync(dest, 'wx', 0o600));
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      fs.chmodSync(dest, 0o600);
    }
    const step = opts.pagesPerStep ?? 100;
    try {
      const done = await this.db.backup(dest, {
        progress: (p) => {
          opts.progress?.({ totalPages: p.totalPages, remainingPages: p.remainingPages });
          return step;
        },
      });
      // better-sqlite3 does not report the last step; report completion once
      const result = { totalPages: done.totalPages, remainingPages: done.remainingPages };
      opts.progress?.(result);
      return result;
    } catch (err) {
      if (created) fs.rmSync(dest, { force: true });
      throw err;
    }
  }
}
