// The server's database: users and their change feed, terminals, monitoring
// events, the owed set, push failures, settings. One better-sqlite3
// connection, WAL, prepared statements, every write in a BEGIN IMMEDIATE
// transaction (taking the write lock up front, so a transaction never fails
// half-way with SQLITE_BUSY on lock upgrade; it waits up to busyTimeoutMs for
// another connection and then fails BUSY). Store is the top of the layers
// described in store-base.ts: here users, merges and the change feed.
//
// Every write method throws StoreWriteError, never a raw SqliteError.
import { Checkpointer } from './checkpointer.js';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import Database from 'better-sqlite3';
import { USER_DISABLED, structuredCloneUser, type UserRecord } from '../model/user.js';
import { mergeDeviceIntoServer, sameForTerminal, usersEqual } from '../model/merge.js';
import { StoreWriteError, toStoreWriteError } from './errors.js';
import { LATEST_SCHEMA_VERSION, migrate, schemaVersion, SchemaVersionError } from './migrations.js';
import { RefusalsStore } from './refusals-store.js';
import {
  DEFAULT_SYNC_MODE,
  MonitoringEvent,
  SYNC_MODES,
  type EventInput,
  type LogPosition,
  type MergeContext,
  type MergeResult,
  type PutUserResult,
  type StoreOptions,
  type SyncMode,
  type Synchronous,
} from './types.js';
import { storedCopy, type UserIndexEntry } from './users.js';
import type { FeedBatch, FeedEntry, FeedQuery, IngestBatch, OwedCounts, OwedEntry, PushOutcome, PushRecorded, SeqUser } from './backend.js';

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DEFAULT_PAGE = 1000;
/** owed figures that walked more feed entries than this are reused for BEHIND_REUSE_MS (see behindCounts) */
const BEHIND_CHEAP = 2_000;
const BEHIND_REUSE_MS = 500;
/** after a checkpoint, truncate the WAL file back to this size so it cannot grow without bound */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;
const SETTING_SYNC_MODE = 'syncMode';

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

export class Store extends RefusalsStore {
  private behindCache: { dv: number; gen: number; map: Map<string, number>; at: number; walked: number } | null = null;

  private constructor(db: Database.Database, file: string, opts: StoreOptions) {
    super(db, file, opts);
    // the feed's tail in memory starts empty at the head: every change from now on enters it
    if (db.open && schemaVersion(db) === LATEST_SCHEMA_VERSION) this.tail.start(this.feed.head(), this.dataVersion());
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

  /** Tries once more to save pending events, then closes. Idempotent. */
  close(): void {
    if (!this.db.open) return;
    void this.checkpointer?.stop();
    if (this.pending.length > 0 && !this.readonly) this.flushPendingEvents();
    if (this.pending.length > 0) this.log?.warn({ pending: this.pending.length }, 'closing the store with monitoring events not saved');
    this.db.close();
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
    // bounded: the oldest entry goes (a burst is pushed in roughly feed order)
    this.shareRecord(id, seq, user);
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
      this.tail.note(seq, u.id, null, false);
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
      // (the number is taken before the row goes: it may hold the head)
      const seq = this.feed.next();
      const removed = this.users.remove(id);
      this.shared.delete(id);
      if (removed) {
        // the delete takes its feed number as a tombstone
        this.feed.tombstone(id, seq, this.now());
        this.tail.note(seq, id, null, true);
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
      this.tail.note(seq, device.id, differsFromDevice ? null : ctx.terminalId, false);
      // the push lanes take the record as written instead of reading it back (shared after the commit)
      const stored = storedCopy(m.record);
      if (stored) this.sharedPending.push({ id: device.id, seq, user: stored });
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

  // ----------------------------------------------------------------- feed
  /**
   * The terminal's next feed entries after `q.after` (default: its cursor), in
   * its scope, from ONE range read in one snapshot. Records are shared between
   * readers while unchanged (see sharedRecord): the same object, so encoded once.
   */
  readFeed(terminalId: string, q: FeedQuery): FeedBatch {
    const limit = Math.max(1, Math.floor(q.limit));
    if (q.groups === undefined && !this.db.inTransaction) {
      const hit = this.readTail(terminalId, q.after, limit);
      if (hit) return hit;
    }
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
   * readFeed from the in-memory tail (feed-tail.ts) when it holds everything
   * after the cursor; null: read SQLite. The records are the shared ones
   * (sharedRecord); those not cached are read in one snapshot.
   */
  private readTail(terminalId: string, after: number | undefined, limit: number): FeedBatch | null {
    let dv = this.dataVersion();
    if (!this.tail.started || !this.tail.covers(this.tail.headSeq, dv)) {
      // (re)start it at the head, empty: it fills as this connection writes
      this.tx.deferred(() => {
        dv = this.dataVersion();
        this.tail.start(this.feed.head(), dv);
      });
    }
    const from = after ?? this.feed.cursor(terminalId);
    if (from === null || !this.tail.covers(from, dv)) return null;
    const rows = this.tail.read(terminalId, from, limit);
    const entries: FeedEntry[] = new Array(rows.length);
    let missing = false;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      let user: UserRecord | null = null;
      if (!r.dead) {
        const hit = this.shared.get(r.userId);
        if (hit && hit.seq === r.seq) user = hit.user;
        else missing = true;
      }
      entries[i] = { seq: r.seq, userId: r.userId, user };
    }
    if (missing) {
      const ok = this.tx.deferred(() => {
        for (let i = 0; i < rows.length; i++) {
          const e = entries[i];
          if (e.user !== null || rows[i].dead) continue;
          e.user = this.sharedRecord(e.userId, e.seq);
          // a current entry whose user is gone: the tail is out of step (never a delete by mistake)
          if (e.user === null) return false;
        }
        return true;
      }) as boolean;
      if (!ok) {
        this.tail.reset();
        return null;
      }
    }
    const upTo = rows.length >= limit ? rows[rows.length - 1].seq : Math.max(from, this.tail.headSeq);
    return { entries, from, upTo };
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
    // the tail would still hold the collected tombstones: start it again
    const n = this.write('collectTombstones', () => this.feed.collect());
    if (n > 0) this.tail.reset();
    return n;
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

  /**
   * What each terminal is owed: the feed entries past its cursor (approved
   * terminals only: one waiting for approval is sent nothing) plus its owed
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
    const t = this.getTerminal(terminalId);
    const behind = t && t.approved ? this.feed.behind(this.feed.cursor(terminalId) ?? 0) : 0;
    return behind + (this.owedRowCounts().get(terminalId) ?? 0);
  }

  /** The users owed to a terminal (feed entries past its cursor, then its owed set), at most `limit`. */
  owedUserIds(terminalId: string, limit = DEFAULT_PAGE): string[] {
    const c = this.feed.cursor(terminalId);
    if (c === null) return [];
    const ids = this.feed.read(terminalId, c, limit).map((r) => r.user_id);
    for (const it of this.take(terminalId, limit)) if (!ids.includes(it.userId)) ids.push(it.userId);
    return ids.slice(0, limit);
  }

  /**
   * Feed entries past each terminal's cursor, counted again after any write.
   * A count that walked many entries (a burst in progress, a terminal far
   * behind) is reused for up to BEHIND_REUSE_MS, so that a status page or a
   * metrics scrape polling during a burst does not walk the feed each time.
   */
  private behindCounts(): Map<string, number> {
    const dv = this.cached('PRAGMA data_version').pluck().get() as number;
    const c = this.behindCache;
    const now = performance.now();
    if (c && ((c.dv === dv && c.gen === this.writeGen) || (c.walked > BEHIND_CHEAP && now - c.at < BEHIND_REUSE_MS))) return c.map;
    const map = this.feed.behindByTerminal();
    let walked = 0;
    for (const n of map.values()) walked = Math.max(walked, n);
    this.behindCache = { dv, gen: this.writeGen, map, at: now, walked };
    return map;
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
}
