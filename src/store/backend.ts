// The site store as the sync engine sees it: users and their change feed,
// terminals with their two cursors (the terminal's event log, the feed), the
// owed set, monitoring events, refusals and pull failures. No tables, no SQL.
//
// Two backends implement it: SQLite (src/store/sqlite-backend.ts, wrapping the
// synchronous better-sqlite3 Store) and PostgreSQL (src/store/pg/, several
// daemons sharing one database). The contract both keep is written as tests
// once, in test/helpers/store-contract.ts (describeStoreContract).
//
// Rules every backend keeps:
// - Every method returns a Promise. The caller never holds a transaction
//   across an await: each compound operation below is ONE method and ONE
//   transaction in the backend (a merge batch with the terminal's log cursor,
//   pull failures and monitoring events; a push batch's answers with the feed
//   cursor, refusals and events; an administrator's put or delete with its
//   feed entry). Either all of it is committed or none (StoreWriteError).
// - The change feed: every change to a server user (a merge that changed the
//   record, an administrator's put, a delete) takes the next sequence number
//   of the site, kept with the user (a delete leaves a tombstone with its
//   number). A user appears in the feed once, at its latest number: ten
//   changes of a user while a terminal is away are one entry. Numbers are JS
//   numbers (safe integers), ascending, never reused.
// - Each terminal has a feed cursor, "everything up to this number was
//   delivered"; a new terminal starts at 0. A push job reads the entries after
//   it (readFeed), sends them, and records the answers (recordPush), which
//   moves the cursor only from the value the batch was read at (see
//   PushOutcome.feed), so a batch answered after a failed earlier one never
//   skips that one's entries.
// - The owed set: a few targeted pushes per terminal that are not the feed (a
//   reconcile found the terminal holds a user differently, the server's
//   record goes back to the terminal a change came from, a refused push is
//   retried). Broad replication never writes per-terminal rows.
// - Fencing: every cursor write takes an optional `fence` (a lease token of
//   the multi-daemon backend). A backend that finds the token stale throws
//   LeaseLostError (src/store/errors.ts) and writes nothing; SQLite ignores it.
// - Writes fail with StoreWriteError (src/store/errors.ts), never a driver's
//   own error type.
import type { UserRecord } from '../model/user.js';
import type { PullFailure, PullFailureQuery } from './pull-failures.js';
import type { OwedPush, SearchField, SearchPage } from './user-search.js';
import type {
  DurableEventResult,
  EventInput,
  EventQuery,
  LogPosition,
  MergeContext,
  MergeResult,
  PushFailure,
  PutUserResult,
  StoredEvent,
  SyncMode,
  TerminalInput,
  TerminalRow,
} from './types.js';

// ------------------------------------------------------------------ feed

/** One entry of the change feed: a user at its latest sequence number. */
export interface FeedEntry {
  seq: number;
  userId: string;
  /**
   * The server's record at that number; null: the user was deleted on the
   * server (a tombstone). An unchanged entry is the SAME object for every
   * reader while it stays current (read-only: never mutate it), so a driver
   * that caches encodings per object encodes a change once for every terminal.
   */
  user: UserRecord | null;
}

export interface FeedQuery {
  /** entries with seq > after; default the terminal's stored feed cursor */
  after?: number;
  /** most entries returned (>= 1) */
  limit: number;
  /**
   * Scope ('specific' sync mode): only users holding at least one of these
   * access groups (tombstones are always in scope: a delete of a user the
   * terminal does not hold is harmless). Undefined: every user.
   */
  groups?: readonly number[];
}

export interface FeedBatch {
  /** ascending by seq */
  entries: FeedEntry[];
  /** where the read started (the `after` used) */
  from: number;
  /**
   * The cursor to store once these entries are delivered: the last entry's
   * seq when the batch is full, else the feed's head when it was read (the
   * entries between are out of scope, or the terminal's own changes it
   * already holds).
   */
  upTo: number;
}

/** A record sent from the owed set (targeted pushes). */
export interface OwedEntry {
  userId: string;
  /** bumped when the same user is owed again; an ack with an older gen leaves the newer entry */
  gen: number;
  enqueuedAt: number;
  attempts: number;
  lastError: string | null;
  /** the server's record now; null: deleted on the server (the terminal deletes it too) */
  user: UserRecord | null;
}

/** What a terminal is owed: feed entries past its cursor plus its owed set. */
export interface OwedCounts {
  total: number;
  byTerminal: Record<string, number>;
}

/** A pushed user the terminal took: `gen` given: it came from the owed set (that entry is removed unless owed again since). */
export interface PushAck {
  userId: string;
  gen?: number;
}

/** The answers to one push batch, recorded in ONE transaction. */
export interface PushOutcome {
  terminalId: string;
  /**
   * The batch came from the feed: move the feed cursor from `from` to `to`.
   * The cursor moves only when it still stands at `from` (a batch whose
   * predecessor was not recorded leaves it; its entries are read again).
   */
  feed?: { from: number; to: number };
  fence?: number;
  /** stored (or deleted) by the terminal: their push failures at it are cleared */
  ok?: readonly PushAck[];
  /** refused for good ('duplicate-credential', 'full', 'invalid'): recorded as push failures; owed entries removed */
  refused?: readonly (PushAck & { code: number; reason: string })[];
  /** not taken now ('busy' per record): owed again, in the owed set */
  later?: readonly string[];
  /** monitoring events (USER_UPDATE_SUCCESS_SERVER, PUSH_FAILED, ...) */
  events?: readonly EventInput[];
}

export interface PushRecorded {
  /** the feed cursor moved (false: it did not stand at `feed.from`, or no feed part) */
  advanced: boolean;
}

// ---------------------------------------------------------------- intake

/** The engine's ingest step: ONE transaction. */
export interface IngestBatch {
  terminalId: string;
  /**
   * Records pulled from the terminal, merged by the merge rule. A merge that
   * changed the server's record takes the next feed number. The source
   * terminal is owed the server's record when its copy differs
   * (ctx.pushBack, default true); ctx.pushTo is not used by the engine (the
   * feed replicates).
   */
  merges: readonly { user: UserRecord; ctx: MergeContext }[];
  /** move the terminal's log position (same epoch: forward only; another epoch: set); null: leave it */
  advance: LogPosition | null;
  fence?: number;
  /** e.g. USER_DELETED_ON_DEVICE, USER_PULL_FAILED */
  events?: readonly EventInput[];
  /** users the terminal reported that could not be read: kept as pull failures */
  pullFailed?: readonly { userId: string; reason: string }[];
  /** users the terminal no longer holds: owed to the server no longer */
  pullGone?: readonly string[];
}

/** A server user with its feed number (for comparing a terminal's list with the server's). */
export interface SeqUser {
  user: UserRecord;
  seq: number;
}

// -------------------------------------------------------------- the store

export interface SiteStore {
  /** 'sqlite' | 'postgres' (for logs) */
  readonly kind: string;

  // settings
  getSyncMode(): Promise<SyncMode>;
  setSyncMode(mode: SyncMode): Promise<void>;

  // users
  getUser(id: string): Promise<UserRecord | null>;
  /** users with id > after in ascending byte order of the ID (LIST_USERS order), with their feed numbers */
  walkUsers(o: { after?: string; limit: number }): Promise<SeqUser[]>;
  userCount(): Promise<number>;
  /** an administrator's create or change, with its feed entry when it changed anything */
  putUser(u: UserRecord): Promise<PutUserResult & { seq: number | null }>;
  /** an administrator's delete: the user goes, a tombstone takes its feed number; false: no such user */
  deleteUser(id: string): Promise<boolean>;

  // terminals
  getTerminal(id: string): Promise<TerminalRow | null>;
  listTerminals(): Promise<TerminalRow[]>;
  /** creates the terminal (feed cursor 0, no log position) or updates the fields given */
  upsertTerminal(t: TerminalInput): Promise<TerminalRow>;
  /** removes the terminal with its cursors and owed set; false: unknown */
  deleteTerminal(id: string): Promise<boolean>;

  // the terminal's event log cursor
  getLogPosition(terminalId: string): Promise<LogPosition | null>;
  /** sets the position (also backwards: a reset, a reconcile) */
  setLogPosition(terminalId: string, pos: LogPosition, fence?: number): Promise<void>;

  // intake
  ingest(b: IngestBatch): Promise<MergeResult[]>;

  // the feed
  /** the newest sequence number of the site (0: none yet) */
  feedHead(): Promise<number>;
  /** the terminal's feed cursor; null for an unknown terminal */
  getFeedCursor(terminalId: string): Promise<number | null>;
  /** sets the feed cursor (also backwards: a full resend) */
  setFeedCursor(terminalId: string, seq: number, fence?: number): Promise<void>;
  /** ONE indexed range read of the entries after the cursor, in the terminal's scope */
  readFeed(terminalId: string, q: FeedQuery): Promise<FeedBatch>;
  /** records a batch's answers and moves the feed cursor, in one transaction */
  recordPush(o: PushOutcome): Promise<PushRecorded>;
  /**
   * Called (after the commit) whenever the feed grew or an owed entry was
   * written, with the feed's head. SQLite: in-process; PostgreSQL:
   * LISTEN/NOTIFY. Returns the unsubscribe function.
   */
  onFeedChange(listener: (head: number) => void): () => void;
  /** removes tombstones every terminal's cursor has passed; returns how many */
  collectTombstones(): Promise<number>;

  // the owed set (targeted pushes)
  /** owes these users to the terminal (coalesced per user) */
  owe(terminalId: string, userIds: readonly string[]): Promise<number>;
  /** the next owed entries, oldest first, with the server's records; `after`: behind a batch still in flight */
  takeOwed(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): Promise<OwedEntry[]>;
  /** feed entries past each terminal's cursor plus its owed set (an upper bound in 'specific' mode: scope not applied) */
  owedCounts(): Promise<OwedCounts>;
  owedCount(terminalId: string): Promise<number>;

  // monitoring events
  appendEvents(evs: readonly EventInput[]): Promise<void>;
  /** appends, or keeps in memory while the database refuses writes (bounded); never throws StoreWriteError */
  recordEventDurably(ev: EventInput): Promise<DurableEventResult>;
  /** writes the events kept in memory; returns how many */
  flushPendingEvents(): Promise<number>;

  // refusals and pull failures
  listPushFailures(q?: { terminalId?: string; userId?: string; limit?: number }): Promise<PushFailure[]>;
  listPullFailures(q?: PullFailureQuery): Promise<PullFailure[]>;

  /** clears refusals (every one of the terminal, or one user's); returns how many */
  clearPushFailures(terminalId: string, userId?: string): Promise<number>;

  // reads of the admin API and the operator console (src/admin/)
  /** monitoring events filtered by type, terminal and user, paged by ID (after/before), oldest or newest first */
  listEvents(q?: EventQuery): Promise<StoredEvent[]>;
  /**
   * Users whose ID (or name, ASCII letters compared without case) starts with
   * `prefix` (every user for ''), keyset-paged: `after` is the previous page's `next`.
   */
  searchUsers(field: SearchField, prefix: string, after: string | null, limit: number): Promise<SearchPage>;
  /** other users holding one of this user's cards (at most 10): whom a duplicate-card refusal is about */
  cardHolders(userId: string): Promise<string[]>;
  /**
   * The push of this user owed to each of these terminals (absent when none
   * is): its owed entry, or its latest change past the terminal's feed cursor
   * (in 'specific' mode only where the terminal serves one of its groups; none in 'off').
   */
  owedTo(userId: string, terminalIds: readonly string[], mode?: SyncMode): Promise<OwedPush[]>;

  /** true when the database answers a read */
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}
