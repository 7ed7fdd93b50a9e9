// The SQLite SiteStore: the synchronous better-sqlite3 Store behind the async
// interface the sync engine uses (backend.ts). Each method is one Store call,
// and so one transaction; `fence` is accepted and ignored (one daemon owns a
// SQLite file). Errors arrive as rejected promises, never thrown synchronously.
import type { UserRecord } from '../model/user.js';
import type { FeedBatch, FeedQuery, IngestBatch, OwedCounts, OwedEntry, PushOutcome, PushRecorded, SeqUser, SiteStore } from './backend.js';
import type { PullFailure, PullFailureQuery } from './pull-failures.js';
import type { Store } from './store.js';
import { UserSearch, type OwedPush, type SearchField, type SearchPage } from './user-search.js';
import type { DurableEventResult, EventInput, EventQuery, LogPosition, MergeResult, PushFailure, PutUserResult, StoredEvent, SyncMode, TerminalInput, TerminalRow } from './types.js';

/** Runs a synchronous call and hands its result (or error) back as a promise. */
function call<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

export class SqliteSiteStore implements SiteStore {
  readonly kind = 'sqlite';

  private search: UserSearch | null = null;

  constructor(readonly store: Store) {}

  /** the console's prepared search statements, made at the first use */
  private get users(): UserSearch {
    return (this.search ??= new UserSearch(this.store.connection));
  }

  getSyncMode(): Promise<SyncMode> {
    return call(() => this.store.getSyncMode());
  }
  setSyncMode(mode: SyncMode): Promise<void> {
    return call(() => this.store.setSyncMode(mode));
  }

  getUser(id: string): Promise<UserRecord | null> {
    return call(() => this.store.getUser(id));
  }
  walkUsers(o: { after?: string; limit: number }): Promise<SeqUser[]> {
    return call(() => this.store.walkUsers(o));
  }
  userCount(): Promise<number> {
    return call(() => this.store.userCount());
  }
  putUser(u: UserRecord): Promise<PutUserResult & { seq: number | null }> {
    return call(() => this.store.putUserFromServer(u));
  }
  deleteUser(id: string): Promise<boolean> {
    return call(() => this.store.deleteUser(id));
  }

  getTerminal(id: string): Promise<TerminalRow | null> {
    return call(() => this.store.getTerminal(id));
  }
  listTerminals(): Promise<TerminalRow[]> {
    return call(() => this.store.listTerminals());
  }
  upsertTerminal(t: TerminalInput): Promise<TerminalRow> {
    return call(() => this.store.upsertTerminal(t));
  }
  deleteTerminal(id: string): Promise<boolean> {
    return call(() => this.store.deleteTerminal(id));
  }

  getLogPosition(terminalId: string): Promise<LogPosition | null> {
    return call(() => this.store.getCursor(terminalId));
  }
  setLogPosition(terminalId: string, pos: LogPosition, _fence?: number): Promise<void> {
    return call(() => this.store.setCursor(terminalId, pos.cursor, pos.logEpoch));
  }

  ingest(b: IngestBatch): Promise<MergeResult[]> {
    return call(() => this.store.ingest(b));
  }

  feedHead(): Promise<number> {
    return call(() => this.store.feedHead());
  }
  getFeedCursor(terminalId: string): Promise<number | null> {
    return call(() => this.store.getFeedCursor(terminalId));
  }
  setFeedCursor(terminalId: string, seq: number, _fence?: number): Promise<void> {
    return call(() => this.store.setFeedCursor(terminalId, seq));
  }
  readFeed(terminalId: string, q: FeedQuery): Promise<FeedBatch> {
    return call(() => this.store.readFeed(terminalId, q));
  }
  recordPush(o: PushOutcome): Promise<PushRecorded> {
    return call(() => this.store.recordPush(o));
  }
  onFeedChange(listener: (head: number) => void): () => void {
    return this.store.onFeedChange(listener);
  }
  collectTombstones(): Promise<number> {
    return call(() => this.store.collectTombstones());
  }

  owe(terminalId: string, userIds: readonly string[]): Promise<number> {
    return call(() => this.store.owe(terminalId, userIds));
  }
  takeOwed(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): Promise<OwedEntry[]> {
    return call(() => this.store.takeOwed(terminalId, limit, after));
  }
  owedCounts(): Promise<OwedCounts> {
    return call(() => this.store.owedCounts());
  }
  owedCount(terminalId: string): Promise<number> {
    return call(() => this.store.owedCount(terminalId));
  }

  appendEvents(evs: readonly EventInput[]): Promise<void> {
    return call(() => void this.store.appendEvents(evs));
  }
  recordEventDurably(ev: EventInput): Promise<DurableEventResult> {
    return call(() => this.store.recordEventDurably(ev));
  }
  flushPendingEvents(): Promise<number> {
    return call(() => this.store.flushPendingEvents());
  }

  listPushFailures(q?: { terminalId?: string; userId?: string; limit?: number }): Promise<PushFailure[]> {
    return call(() => this.store.listPushFailures(q));
  }
  listPullFailures(q?: PullFailureQuery): Promise<PullFailure[]> {
    return call(() => this.store.listPullFailures(q));
  }

  clearPushFailures(terminalId: string, userId?: string): Promise<number> {
    return call(() => this.store.clearPushFailures(terminalId, userId));
  }

  listEvents(q?: EventQuery): Promise<StoredEvent[]> {
    return call(() => this.store.listEvents(q));
  }
  searchUsers(field: SearchField, prefix: string, after: string | null, limit: number): Promise<SearchPage> {
    return call(() => this.users.search(field, prefix, after, limit));
  }
  cardHolders(userId: string): Promise<string[]> {
    return call(() => this.users.cardHolders(userId));
  }
  owedTo(userId: string, terminalIds: readonly string[], mode?: SyncMode): Promise<OwedPush[]> {
    return call(() => this.users.owedTo(userId, terminalIds, mode));
  }

  healthy(): Promise<boolean> {
    return call(() => this.store.healthy());
  }
  close(): Promise<void> {
    return call(() => this.store.close());
  }
}
