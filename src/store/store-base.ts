// The Store's foundation: one better-sqlite3 connection, its transactions
// (every write in BEGIN IMMEDIATE; failures become StoreWriteError), the
// prepared statements, the wake-up of feed listeners after a commit, the
// online backup. The Store is built in layers along the seams of the data,
// each in its own file, each extending the one below:
//   StoreBase (this file) -> EventsStore (monitoring events, events-store.ts)
//   -> TerminalsStore (terminals, log and feed cursors, terminals-store.ts)
//   -> RefusalsStore (the owed set, push and pull failures, refusals-store.ts)
//   -> Store (users, merges and the change feed, store.ts).
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { UserRecord } from '../model/user.js';
import type { Checkpointer } from './checkpointer.js';
import { StoreWriteError, toStoreWriteError } from './errors.js';
import { FeedTables } from './feed.js';
import { FeedTail } from './feed-tail.js';
import { schemaVersion } from './migrations.js';
import { PullFailureTable } from './pull-failures.js';
import { prepareStatements, type Statements } from './statements.js';
import type { BackupProgress, StoreOptions } from './types.js';
import { UserTables } from './users.js';

/**
 * records kept for the push lanes (readFeed, getUsersShared), each with the
 * feed number it was read or written at: a burst's working set across
 * terminals that progress at different speeds, read and encoded once
 */
export const SHARED_USERS = 8192;

export class StoreBase {
  readonly path: string;
  readonly readonly: boolean;
  protected readonly db: Database.Database;
  protected readonly users: UserTables;
  protected readonly pullFailures: PullFailureTable;
  protected readonly feed: FeedTables;
  protected readonly now: () => number;
  protected readonly log: Logger | undefined;
  protected readonly stmtCache = new Map<string, Database.Statement>();
  protected checkpointer: Checkpointer | undefined;
  /** the push lanes' records by user ID, with the feed number they were read at */
  protected readonly shared = new Map<string, { seq: number; user: UserRecord }>();
  /** records this transaction wrote, as read back (users.storedCopy): shared once it commits */
  protected sharedPending: { id: string; seq: number; user: UserRecord }[] = [];
  /** the recent feed entries this connection committed, shared by the push lanes' reads (feed-tail.ts) */
  protected readonly tail = new FeedTail();
  protected readonly feedListeners = new Set<(head: number) => void>();
  /** set inside a write transaction that grew the feed or the owed set; listeners run after the commit */
  protected feedDirty = false;
  /** bumped by every write of this connection (owed figures are counted again after one) */
  protected writeGen = 0;
  /** outbox rows per terminal (see owedRowCounts); null: count again */
  protected owed: Map<string, number> | null = null;
  protected readonly s: Statements;
  /** one reusable transaction wrapper: tx.immediate(fn) runs fn under BEGIN IMMEDIATE */
  protected readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;

  protected constructor(db: Database.Database, file: string, opts: StoreOptions) {
    this.db = db;
    this.path = file;
    this.readonly = opts.readonly === true;
    this.now = opts.now ?? Date.now;
    this.log = opts.logger;
    this.users = new UserTables(db);
    this.pullFailures = new PullFailureTable(db);
    this.feed = new FeedTables(db);
    this.s = prepareStatements(db);
    this.tx = db.transaction((fn: () => unknown) => fn());
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

  /** Ends the checkpoint worker after a last checkpoint (call before close when it runs). */
  async stopCheckpointer(): Promise<void> {
    await this.checkpointer?.stop();
    this.checkpointer = undefined;
  }

  /** A statement built from a fixed set of SQL shapes, prepared once. */
  protected cached(sql: string): Database.Statement {
    let st = this.stmtCache.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.stmtCache.set(sql, st);
    }
    return st;
  }

  /** Runs fn in a BEGIN IMMEDIATE transaction; any failure becomes a StoreWriteError. */
  protected write<T>(operation: string, fn: () => T): T {
    try {
      if (!this.db.open) throw new StoreWriteError('CLOSED', operation, 'the database connection is not open');
      // nested calls (from inside another write) join the outer transaction
      if (this.db.inTransaction) return fn();
      this.feedDirty = false;
      this.writeGen++;
      // notes of a transaction the Store did not see end (one opened on `connection`): the tail cannot trust them
      if (this.tail.hasPending) this.tail.reset();
      this.sharedPending.length = 0;
      const r = this.tx.immediate(fn) as T;
      if (this.tail.hasPending) this.tail.commit(this.dataVersion());
      if (this.sharedPending.length > 0) this.commitShared();
      if (this.feedDirty) {
        this.feedDirty = false;
        this.emitFeedChange();
      }
      return r;
    } catch (err) {
      this.owed = null; // rolled back: the counts may have moved
      this.tail.rollback();
      this.sharedPending.length = 0;
      this.feedDirty = false;
      throw toStoreWriteError(err, operation);
    }
  }

  /**
   * The records the committed transaction wrote join the shared ones (see
   * Store.sharedRecord), so that the push lanes do not read them back.
   */
  protected commitShared(): void {
    for (const p of this.sharedPending) this.shareRecord(p.id, p.seq, p.user);
    this.sharedPending.length = 0;
  }

  /** Keeps `user` as the shared record of `id` at feed number `seq` (bounded: the oldest entry goes). */
  protected shareRecord(id: string, seq: number, user: UserRecord): void {
    this.shared.delete(id);
    this.shared.set(id, { seq, user });
    if (this.shared.size > SHARED_USERS) this.shared.delete(this.shared.keys().next().value!);
  }

  /** PRAGMA data_version: moves when another connection commits */
  protected dataVersion(): number {
    return this.cached('PRAGMA data_version').pluck().get() as number;
  }

  protected emitFeedChange(): void {
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
