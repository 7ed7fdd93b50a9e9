// The sync engine: log ingestion, coalescing, pull, merge, fan-out and outbox
// replay. It sees terminals only as DeviceSession (ports.ts: facts, reasons,
// capabilities; no protocol's codes) and the database only through the Store's
// methods; no sockets, no SQL, nothing of any codec here.
//
// It adapts to what a driver declares: a terminal with a cursor-ordered event
// log is read from the stored cursor (a new epoch or a gap: compare user
// lists); one without (eventLog 'none') is compared at every connect. Listings
// of digests are compared with the driver's digestOf, whole records with the
// model's sameForTerminal (parts the terminal cannot carry are no difference).
//
// Scheduling. Every terminal has a lane: at most one job of that terminal runs at
// a time (a terminal serves one command at a time). A lane with work submits
// exactly one job to the global p-queue, whose concurrency is the global cap and
// whose priorities order the work: pulls of device changes first, then pushes,
// then catch-up of a returning terminal. A lane holds a global slot only while it
// works, so a slow or stalled terminal occupies one slot at most and never slows
// the others.
//
// Replication reads the store's change feed (src/store/backend.ts): every change
// to a server user takes the next sequence number once, whatever the number of
// terminals, and each terminal has a durable feed cursor. A push job reads the
// entries after the cursor in the terminal's scope with one range read, sends
// them in one PUT_USERS, and records the answers and the new cursor in one
// transaction. Ten updates of one user while a terminal is away are one entry;
// an offline terminal simply has an old cursor. A few targeted pushes (a
// reconcile's differences, the server's record back to the terminal a change
// came from, retries) live in the owed set and go first.
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { sameForTerminal } from '../model/merge.js';
import type { UserRecord } from '../model/user.js';
import { StoreWriteError } from '../store/errors.js';
import type { FeedBatch, OwedEntry, PushAck, SeqUser, SiteStore } from '../store/backend.js';
import { MonitoringEvent, type EventInput, type MergeContext, type MergeResult, type SyncMode } from '../store/types.js';
import { DriverError, type DeviceFact, type DeviceSession, type ReadResult, type RefusalReason, type UserListing, type WriteResult } from './ports.js';
import { DEFAULT_MAX_TERMINAL_USERS, DEFAULT_WINDOW, PeerLimitError } from './peer-limit.js';

export const Priority = { PULL: 3, PUSH: 2, CATCHUP: 1 } as const;

/** most users pulled and merged in one ingest step (bounds the merge transaction's length) */
const PULL_BATCH = 25;
/** steps released per turn of the event loop until this much time has passed (see turn) */
const TURN_BUDGET_MS = 2;
/** shortest time between two ingests of one terminal while it keeps logging */
const INGEST_LINGER_MS = 25;
/** see EngineOptions.jobSliceMs and slowJobMs */
const DEFAULT_JOB_SLICE_MS = 2_000;
const DEFAULT_SLOW_JOB_MS = 1_000;
/** a reconcile gives the event loop back after running this long */
const SLICE_MS = 4;
/** server users read per step of a reconcile */
const SERVER_WALK_PAGE = 128;
/** users queued for a terminal per transaction during a reconcile */
const RECONCILE_PUSH_CHUNK = 1000;
/** default --reconcile-timeout-sec */
export const DEFAULT_RECONCILE_TIMEOUT_SEC = 300;
/** wait before retrying an abandoned reconcile, doubling up to the max */
const RECONCILE_RETRY_MIN_MS = 5_000;
const RECONCILE_RETRY_MAX_MS = 600_000;
/** most pull failures of one terminal taken into a session's retry set at once */
const REPULL_LOAD = 10_000;

/** Monitoring event types written by the engine (besides the store's own). */
export const EngineEvent = {
  SERVER_DB_SAVE_FAIL: MonitoringEvent.SERVER_DB_SAVE_FAIL,
  USER_UPDATE_SUCCESS_SERVER: MonitoringEvent.USER_UPDATE_SUCCESS_SERVER,
  USER_DELETED_ON_DEVICE: 'USER_DELETED_ON_DEVICE',
  PUSH_FAILED: 'PUSH_FAILED',
  RECONCILE: 'RECONCILE',
  TERMINAL_RESET: 'TERMINAL_RESET',
  LOG_GAP: 'LOG_GAP',
  /** a device user whose record could not be read; kept in pull_failures and pulled again later */
  USER_PULL_FAILED: 'USER_PULL_FAILED',
  /** a terminal went past a bound the server sets (window, list size, paging); its session was ended */
  PEER_LIMIT_EXCEEDED: 'PEER_LIMIT_EXCEEDED',
} as const;

/** wait before asking a busy terminal again (a refusal 'busy'), doubling up to the max; reset by a step that went through */
const BUSY_RETRY_MIN_MS = 500;
const BUSY_RETRY_MAX_MS = 30_000;

/** A device fact that names a user changed at the terminal (to pull). */
const isDeviceChange = (f: DeviceFact) => f.kind === 'user-changed' && f.origin === 'device' && f.userId !== undefined && f.userId !== '';

export interface EngineOptions {
  /** the site store (src/store/backend.ts): feeds, cursors and their transactions */
  store: SiteStore;
  /** the sync mode in force at start (the daemon reads it from the database). Default 'server' */
  syncMode?: SyncMode;
  log: Logger;
  /** global cap on jobs running at once over all terminals */
  concurrency?: number;
  /** delay before retrying a batch whose database write failed, doubling to 30 s */
  dbRetryMs?: number;
  /** facts a terminal may have sent and not had acknowledged (its driver enforces it; termsync: the SUBSCRIBE_LOG window); more ends its session */
  subscribeWindow?: number;
  /** most users a terminal may list (besides the capacity it announced); more ends its session (--max-terminal-users) */
  maxTerminalUsers?: number;
  /** a reconcile running longer is abandoned and retried later (--reconcile-timeout-sec), ms */
  reconcileTimeoutMs?: number;
  /** first wait before retrying an abandoned reconcile, doubling to 10 min (default 5 s) */
  reconcileRetryMs?: number;
  /** longest a job holds a slot of the global queue before it gives it back (default 2 s) */
  jobSliceMs?: number;
  /** a job that took longer makes its lane slow (default 1 s) */
  slowJobMs?: number;
  now?: () => number;
}

/** The engine's bounds and tuning as the daemon passes them through (DaemonOptions.engine). */
export type EngineTuning = Omit<EngineOptions, 'store' | 'log' | 'now' | 'syncMode'>;

export interface EngineStats {
  pulls: number;
  pullsFailed: number;
  pushes: number;
  pushesFailed: number;
  dbWriteFailures: number;
  reconciles: number;
  /** ms from a device event's arrival to its user's last push, per user */
  lastPushLatencyMs: number[];
}

type Task = 'ingest' | 'push' | 'reconcile' | 'repull';

/** One ingest step: the facts taken from a lane's inbox and the users pulled for them (see ingest, mergeAndAck). */
interface IngestStep {
  lane: Lane;
  link: DeviceSession;
  /** the lane's generation when the facts were taken (a reset meanwhile makes them stale) */
  gen: number;
  pulled: ReadResult[];
  /** user -> the ref of the last fact in this step that named it */
  wanted: Map<string, number>;
  users: string[];
  /** facts taken from the inbox */
  take: number;
  /** ref of the last fact taken */
  lastRef: number;
  /** users deleted on the terminal */
  deletes: DeviceFact[];
  /** the terminal's user store was wiped: compare user lists */
  reset: boolean;
  /** facts were lost: compare user lists (the cursor does not advance past the gap) */
  gap: DeviceFact | null;
}

/** A push batch sent and not yet answered: from the owed set (`last`: its keyset position) or the feed (`upTo`). */
interface Inflight {
  link: DeviceSession;
  users: Set<string>;
  kind: 'owed' | 'feed';
  last?: { enqueuedAt: number; userId: string };
  upTo?: number;
  done: Promise<void>;
}

/** What a push batch carries: records to write, users to delete, and where each came from. */
interface PushBatch {
  kind: 'owed' | 'feed';
  /** records to write, with the owed entry's generation when from the owed set */
  records: { user: UserRecord; gen?: number }[];
  /** users deleted on the server: the terminal deletes them too */
  gone: { userId: string; gen?: number }[];
  /** kind 'feed': the cursor move the answers make */
  feed?: { from: number; to: number };
  /** kind 'owed': the keyset position of its last entry (the next batch is read behind it) */
  last?: { enqueuedAt: number; userId: string };
}

interface Lane {
  id: string;
  link: DeviceSession | null;
  /** facts received and not yet processed, in ref order (the driver checks the order and the window) */
  inbox: DeviceFact[];
  /** terminal's feed epoch as seen in this session */
  epoch: number;
  /** where this session's feed started */
  subscribedFrom: number;
  /** highest ref processed in this session */
  processed: number;
  /** bumped when the terminal's log resets while connected: work begun before belongs to the old log */
  gen: number;
  /** wait before the next retry after the terminal answered 'busy' (doubles; reset by a step that went through) */
  busyRetryMs: number;
  /** the session is attached and its feed not yet started (idle() waits for it) */
  starting: boolean;
  /** its last job took long, or ran past its slice: its jobs share the slow part of the slots */
  slow: boolean;
  /** wait before retrying an abandoned reconcile (doubles; reset by one that finishes) */
  reconcileRetryMs: number;
  /** set while an abandoned reconcile waits for its retry */
  reconcileTimer: NodeJS.Timeout | null;
  wantPush: boolean;
  catchingUp: boolean;
  wantReconcile: boolean;
  running: boolean;
  dbRetryMs: number;
  retryTimer: NodeJS.Timeout | null;
  /** user ID -> time its device event arrived (for pull-to-push latency) */
  arrivals: Map<string, number>;
  /** the PUT_USERS batch sent and not yet answered (see pushSome) */
  inflight: Inflight | null;
  lastTask: Task | null;
  /** users whose earlier pull failed (pull_failures), to pull again in this session */
  repull: Set<string>;
  /** an ingest's merge is waiting for its turn (see ingest) */
  merging: boolean;
  lastIngestAt: number;
  /**
   * Most users per PUT_USERS for this terminal: its announced batch size, halved
   * after a batch failed in transit (a slow link that cannot carry a full batch
   * within the request timeout) and doubled back after each batch that went through.
   */
  batchLimit: number;
}

export class SyncEngine {
  readonly queue: PQueue;
  readonly stats: EngineStats = { pulls: 0, pullsFailed: 0, pushes: 0, pushesFailed: 0, dbWriteFailures: 0, reconciles: 0, lastPushLatencyMs: [] };
  private readonly lanes = new Map<string, Lane>();
  private readonly store: SiteStore;
  /** the store's wake-up for a grown feed (see onFeedChange); armed once per turn of the event loop */
  private readonly unsubscribeFeed: () => void;
  private feedKickArmed = false;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly baseDbRetry: number;
  private readonly window: number;
  private readonly jobSliceMs: number;
  private readonly slowJobMs: number;
  /** most jobs of slow lanes at once: the concurrency minus the reserve */
  private readonly slowCap: number;
  private slowRunning = 0;
  /** slow lanes with work waiting for room in the slow share */
  private readonly parked = new Set<Lane>();
  /** every job's work, also after it gave its slot back (stop waits for them) */
  private readonly working = new Set<Promise<void>>();
  private readonly maxTerminalUsers: number;
  private readonly reconcileTimeoutMs: number;
  private readonly reconcileRetryMs: number;
  private mode: SyncMode;
  private stopping = false;
  private readonly turnWaiters: (() => void)[] = [];
  /** merges waiting for their turn or running (see ingest) */
  private readonly merging = new Set<Promise<void>>();
  private turnArmed = false;
  /** user -> arrival time of the device event that changed it and the pushes still owed for it */
  private readonly pending = new Map<string, { since: number; remaining: number }>();
  private listeners: ((e: { type: string; terminalId?: string; userId?: string }) => void)[] = [];

  constructor(o: EngineOptions) {
    this.store = o.store;
    this.log = o.log;
    this.now = o.now ?? Date.now;
    this.baseDbRetry = o.dbRetryMs ?? 1000;
    this.window = Math.max(1, Math.floor(o.subscribeWindow ?? DEFAULT_WINDOW));
    this.maxTerminalUsers = o.maxTerminalUsers ?? DEFAULT_MAX_TERMINAL_USERS;
    this.reconcileTimeoutMs = o.reconcileTimeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_SEC * 1000;
    this.reconcileRetryMs = o.reconcileRetryMs ?? RECONCILE_RETRY_MIN_MS;
    const concurrency = o.concurrency ?? 64;
    this.queue = new PQueue({ concurrency });
    this.jobSliceMs = o.jobSliceMs ?? DEFAULT_JOB_SLICE_MS;
    this.slowJobMs = o.slowJobMs ?? Math.min(DEFAULT_SLOW_JOB_MS, this.jobSliceMs);
    this.slowCap = Math.max(1, concurrency - Math.max(1, Math.floor(concurrency / 4)));
    this.mode = o.syncMode ?? 'server';
    this.unsubscribeFeed = this.store.onFeedChange(() => this.feedGrew());
  }

  get syncMode(): SyncMode {
    return this.mode;
  }

  /** Changes the sync mode (persisted). Turning sync on pushes nothing retroactively; use resync. */
  async setSyncMode(mode: SyncMode): Promise<void> {
    await this.store.setSyncMode(mode);
    this.useSyncMode(mode);
  }

  /** The sync mode was changed in the database (by the daemon): take it. */
  useSyncMode(mode: SyncMode): void {
    this.mode = mode;
    if (mode !== 'off') for (const lane of this.lanes.values()) this.kickPush(lane);
  }

  /**
   * The feed grew (or an owed entry was written): every online lane reads its
   * feed once, on the next turn of the event loop (many commits in one turn
   * wake each lane once).
   */
  private feedGrew(): void {
    if (this.feedKickArmed || this.stopping) return;
    this.feedKickArmed = true;
    setImmediate(() => {
      this.feedKickArmed = false;
      if (this.mode === 'off') return;
      for (const lane of this.lanes.values()) if (lane.link) this.kickPush(lane);
    });
  }

  /** Called for monitoring events, so the admin API can stream them. Returns the unsubscribe function. */
  onActivity(fn: (e: { type: string; terminalId?: string; userId?: string }) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  laneDepths(): { online: number; ingestBacklog: number; lanesWaiting: number } {
    let ingest = 0;
    let waiting = 0;
    let online = 0;
    for (const l of this.lanes.values()) {
      if (l.link) online++;
      ingest += l.inbox.length;
      if (!l.running && (l.inbox.length || l.wantPush || l.wantReconcile)) waiting++;
    }
    return { online, ingestBacklog: ingest, lanesWaiting: waiting };
  }

  // --------------------------------------------------------------- sessions

  /** A terminal's session is up: catch up on its log, subscribe, deliver its outbox. */
  async attach(terminalId: string, link: DeviceSession): Promise<void> {
    const lane = this.lane(terminalId);
    lane.link = link;
    lane.inbox = [];
    lane.arrivals.clear();
    link.onClose(() => {
      if (lane.link === link) {
        lane.link = null;
        lane.starting = false;
      }
    });
    lane.starting = true;
    try {
      await this.startLog(lane, link);
    } catch (e) {
      if (!link.closed) this.log.warn({ terminal: terminalId, err: (e as Error).message }, 'log catch-up failed; closing session');
      link.close(`log catch-up failed: ${(e as Error).message}`);
      return;
    } finally {
      if (lane.link === link) lane.starting = false;
    }
    lane.catchingUp = true;
    await this.loadPullFailures(lane).catch((e) => this.log.warn({ terminal: terminalId, err: (e as Error).message }, 'pull failures not read'));
    this.kickPush(lane);
  }

  /** Users of this terminal whose pull failed before are pulled again (session start, reconcile, retryPulls). */
  private async loadPullFailures(lane: Lane, userId?: string): Promise<number> {
    const rows = await this.store.listPullFailures({ terminalId: lane.id, userId, limit: REPULL_LOAD });
    for (const r of rows) lane.repull.add(r.userId);
    if (rows.length) this.schedule(lane);
    return rows.length;
  }

  /**
   * Pulls again, now, the users of a terminal whose pull failed (all of them, or
   * one). False when the terminal has no live session (they are pulled again at
   * its next session start anyway).
   */
  async retryPulls(terminalId: string, userId?: string): Promise<{ online: boolean; queued: number }> {
    const lane = this.lanes.get(terminalId);
    if (!lane?.link) return { online: false, queued: 0 };
    return { online: true, queued: await this.loadPullFailures(lane, userId) };
  }

  detach(terminalId: string): void {
    const lane = this.lanes.get(terminalId);
    if (!lane) return;
    lane.link = null;
    lane.starting = false;
    lane.inbox = [];
    if (lane.retryTimer) clearTimeout(lane.retryTimer);
    lane.retryTimer = null;
    if (lane.reconcileTimer) clearTimeout(lane.reconcileTimer);
    lane.reconcileTimer = null;
  }

  /** The terminal was removed from the site: forget its lane. */
  forget(terminalId: string): void {
    const lane = this.lanes.get(terminalId);
    if (lane) this.parked.delete(lane);
    this.detach(terminalId);
    this.lanes.delete(terminalId);
  }

  /** Wakes the push lanes of these terminals (default all), e.g. after owing them users. */
  kickPushes(terminalIds?: readonly string[]): void {
    const ids = terminalIds ?? [...this.lanes.keys()];
    for (const id of ids) {
      const lane = this.lanes.get(id);
      if (lane) this.kickPush(lane);
    }
  }

  /** Full resync of one terminal: diff its users against the server and fix both sides. */
  requestReconcile(terminalId: string): boolean {
    const lane = this.lanes.get(terminalId);
    if (!lane?.link) return false;
    lane.wantReconcile = true;
    // asked for by an administrator: now, not after the backoff of an abandoned one
    if (lane.reconcileTimer) clearTimeout(lane.reconcileTimer);
    lane.reconcileTimer = null;
    this.schedule(lane);
    return true;
  }

  /** Waits until no lane has work and the queue is empty (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      await this.queue.onIdle();
      let busy = false;
      for (const l of this.lanes.values()) {
        if (!l.link) continue;
        if (l.starting || l.running || l.inbox.length || l.merging || (l.wantReconcile && !l.reconcileTimer)) busy = true;
        else if (l.wantPush && this.mode !== 'off' && !l.retryTimer && (await this.store.owedCount(l.id)) > 0) busy = true;
        if (busy) break;
      }
      if (!busy) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops taking new work; waits up to `deadlineMs` for running jobs (their pushes stay in the outbox otherwise). */
  async stop(deadlineMs = 5000): Promise<boolean> {
    this.stopping = true;
    this.unsubscribeFeed();
    this.queue.clear();
    for (const l of this.lanes.values()) if (l.retryTimer) clearTimeout(l.retryTimer);
    // batches already sent are answered (and acknowledged) or fail with their session
    const done = this.queue
      .onIdle()
      .then(() => Promise.allSettled([...this.merging, ...this.working, ...[...this.lanes.values()].map((l) => l.inflight?.done)]))
      .then(() => true);
    const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), deadlineMs).unref());
    return Promise.race([done, timeout]);
  }

  // ------------------------------------------------------------ log intake

  private async startLog(lane: Lane, link: DeviceSession): Promise<void> {
    const pos = (await this.store.getLogPosition(lane.id)) ?? { logEpoch: null, cursor: 0 };
    const info = await link.feedState();
    lane.epoch = info.epoch;
    let cursor = pos.cursor;
    let reason: string | null = null;
    let record: string | null = null;
    if (link.capabilities.eventLog === 'none') {
      // No log to resume from: what changed while it was away is found by comparing users.
      reason = pos.logEpoch === null ? 'first contact' : 'the terminal keeps no event log: users compared at every connect';
    } else if (pos.logEpoch === null) reason = 'first contact';
    else if (pos.logEpoch !== info.epoch || info.lastRef < pos.cursor) {
      record = EngineEvent.TERMINAL_RESET;
      reason = 'terminal was reset (event IDs restarted)';
    } else if (info.firstRef > pos.cursor + 1) {
      record = EngineEvent.LOG_GAP;
      reason = `log gap: events ${pos.cursor + 1}..${info.firstRef - 1} were overwritten before the server read them`;
    }
    if (reason) {
      // The log can no longer say what changed: reconcile by comparing users, then
      // continue from the terminal's newest event.
      this.log.info({ terminal: lane.id, reason }, 'reconciling terminal by user list');
      if (record) this.emitEvent(record, lane.id, null, reason);
      // The cursor and epoch are stored only once the reconcile succeeded (in
      // reconcile()), so a crash before that reconciles again after restart.
      lane.wantReconcile = true;
      cursor = info.lastRef;
    }
    // The feed delivers the backlog after the cursor first (the catch-up), then
    // live facts, paced by our acknowledgements.
    lane.subscribedFrom = lane.processed = cursor;
    await link.watch(cursor, (epoch, facts) => this.onFacts(lane, link, epoch, facts), {
      window: this.window,
      onLimit: (e) => this.peerLimit(lane, link, e.limit, e.figures, e.message),
    });
    if (reason) this.schedule(lane);
  }

  private onFacts(lane: Lane, link: DeviceSession, epoch: number, facts: DeviceFact[]): void {
    if (lane.link !== link || link.closed) return;
    if (epoch !== lane.epoch) this.logReset(lane, epoch);
    const t = this.now();
    for (const f of facts) {
      lane.inbox.push(f);
      if (isDeviceChange(f) && !lane.arrivals.has(f.userId!)) lane.arrivals.set(f.userId!, t);
    }
    this.schedule(lane);
  }

  /**
   * The terminal's log restarted under a new epoch while the session stays up (a
   * factory or database reset): record it, take the new epoch, reconcile by user
   * list within this session, and process the new epoch's facts, whose refs start
   * again. Work begun on the old log is not acknowledged (see gen).
   */
  private logReset(lane: Lane, epoch: number): void {
    const reason = 'terminal was reset while connected (event IDs restarted under a new log epoch)';
    this.log.info({ terminal: lane.id, from: lane.epoch, to: epoch }, `${reason}; reconciling by user list`);
    this.emitEvent(EngineEvent.TERMINAL_RESET, lane.id, null, JSON.stringify({ reason, fromEpoch: lane.epoch, toEpoch: epoch }));
    lane.gen++;
    lane.epoch = epoch;
    lane.inbox = [];
    lane.arrivals.clear();
    lane.subscribedFrom = lane.processed = 0;
    lane.wantReconcile = true;
  }

  /**
   * A terminal went past a bound the server sets: record it (PEER_LIMIT_EXCEEDED,
   * with the bound and the figures, never personal data), log it, end the session.
   */
  private peerLimit(lane: Lane, link: DeviceSession, limit: string, figures: Record<string, number | string>, message: string): void {
    if (link.closed) return;
    this.log.warn({ terminal: lane.id, limit, ...figures }, `${message}; closing session`);
    this.emitEvent(EngineEvent.PEER_LIMIT_EXCEEDED, lane.id, null, JSON.stringify({ limit, ...figures }));
    void link.close(`peer limit exceeded (${limit}): ${message}`);
  }

  // ------------------------------------------------------------ scheduling

  private lane(id: string): Lane {
    let l = this.lanes.get(id);
    if (!l) {
      l = { id, link: null, inbox: [], epoch: 0, subscribedFrom: 0, processed: 0, gen: 0, busyRetryMs: BUSY_RETRY_MIN_MS, starting: false, reconcileRetryMs: this.reconcileRetryMs, reconcileTimer: null, slow: false, wantPush: false, catchingUp: false, wantReconcile: false, running: false, dbRetryMs: this.baseDbRetry, retryTimer: null, arrivals: new Map(), repull: new Set(), inflight: null, lastTask: null, merging: false, lastIngestAt: 0, batchLimit: Infinity };
      this.lanes.set(id, l);
    }
    return l;
  }

  private kickPush(lane: Lane): void {
    lane.wantPush = true;
    this.schedule(lane);
  }

  private nextTask(lane: Lane): Task | null {
    if (!lane.link || lane.retryTimer) return null;
    const push = lane.wantPush && this.mode !== 'off';
    // Pulls come first, but never starve the pushes: a terminal that keeps logging
    // (a burst of enrollments at it, or its log of our own pushes) alternates, so
    // its writes start while its enrollments are still being pulled.
    const pull = lane.inbox.length > 0 && !lane.merging;
    if (pull && !(push && lane.lastTask === 'ingest')) return 'ingest';
    if (lane.wantReconcile && !lane.merging && !lane.reconcileTimer) return 'reconcile';
    if (lane.repull.size > 0 && !lane.merging && this.pullEnabled()) return 'repull';
    if (push) return 'push';
    if (pull) return 'ingest';
    return null;
  }

  /**
   * Resolves on a later turn of the event loop, in order. Every step with
   * database work goes through it (a job's start, a merge, the acknowledgement
   * of a pushed batch), so fifty lanes whose answers arrived together do not run
   * their database work back to back while other lanes' answers, heartbeats and
   * the admin API wait: one turn runs steps for about TURN_BUDGET_MS (plus the
   * last step's own length), then the loop serves timers and I/O before the
   * next turn (an immediate queued from an immediate runs on the next turn).
   * The work is the same; only its slicing changes.
   */
  private turn(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.turnWaiters.push(resolve);
      if (!this.turnArmed) this.armTurn();
    });
  }

  private armTurn(): void {
    this.turnArmed = true;
    setImmediate(() => {
      const start = performance.now();
      // Release waiters one at a time: each runs its synchronous step (as microtasks)
      // before the next is released, until the turn's budget is spent.
      const next = () => {
        this.turnWaiters.shift()?.();
        queueMicrotask(() => {
          if (this.turnWaiters.length === 0) this.turnArmed = false;
          else if (performance.now() - start < TURN_BUDGET_MS) next();
          else this.armTurn();
        });
      };
      next();
    });
  }

  /**
   * Submits the lane's next job to the global queue. Fair use of the slots: a
   * job holds its slot for at most jobSliceMs; one still running then (waiting
   * on a slow or stalled terminal) gives the slot back and goes on outside the
   * queue, and its lane counts as slow. Jobs of slow lanes (those still running,
   * and new ones) are limited to the concurrency minus a reserve (a quarter),
   * so terminals that answer quickly always find slots however many slow ones
   * are connected. A lane whose job finishes quickly is no longer slow.
   */
  private schedule(lane: Lane): void {
    if (lane.running || this.stopping) return;
    const task = this.nextTask(lane);
    if (!task) return;
    if (lane.slow && this.slowRunning >= this.slowCap) {
      this.parked.add(lane); // its turn comes when a slow job ends (see unpark)
      return;
    }
    this.parked.delete(lane);
    lane.running = true;
    lane.lastTask = task;
    const priority = task === 'ingest' ? Priority.PULL : task === 'push' && !lane.catchingUp ? Priority.PUSH : Priority.CATCHUP;
    let counted = false;
    const countSlow = () => {
      if (counted) return;
      counted = true;
      this.slowRunning++;
    };
    if (lane.slow) countSlow();
    this.queue
      .add(
        async () => {
          const started = performance.now();
          let done = false;
          const work = this.run(lane, task)
            .catch((e) => this.log.error({ terminal: lane.id, err: e }, 'sync job failed unexpectedly'))
            .finally(() => {
              done = true;
              this.working.delete(work);
              lane.slow = performance.now() - started > this.slowJobMs;
              if (counted) this.slowRunning--;
              lane.running = false;
              this.unpark();
              this.schedule(lane);
            });
          this.working.add(work);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([work, new Promise<void>((r) => (timer = setTimeout(r, this.jobSliceMs)))]);
          clearTimeout(timer);
          if (!done) {
            // its share of time is used up: the slot goes back, the work goes on as a slow lane's
            lane.slow = true;
            countSlow();
          }
        },
        { priority },
      )
      .catch((e) => this.log.error({ terminal: lane.id, err: e }, 'sync job failed unexpectedly'));
  }

  /** Lets parked slow lanes run while the slow share has room. */
  private unpark(): void {
    for (const lane of this.parked) {
      if (this.slowRunning >= this.slowCap) return;
      this.parked.delete(lane);
      this.schedule(lane);
    }
  }

  private async run(lane: Lane, task: Task): Promise<void> {
    await this.turn();
    const link = lane.link;
    if (!link || link.closed) return;
    try {
      if (task === 'ingest') await this.ingest(lane, link);
      else if (task === 'reconcile') await this.reconcile(lane, link);
      else if (task === 'repull') await this.repull(lane, link);
      else await this.pushSome(lane, link);
      if (!lane.retryTimer) lane.busyRetryMs = BUSY_RETRY_MIN_MS;
    } catch (e) {
      if (e instanceof StoreWriteError) this.dbFailed(lane, e);
      else if (e instanceof PeerLimitError) this.peerLimit(lane, link, e.limit, e.figures, e.message);
      else if (e instanceof ReconcileTimeout) this.reconcileAbandoned(lane, e);
      else if (e instanceof DriverError && e.reason === 'busy' && !link.closed) this.busyLater(lane, e.message);
      else if (!link.closed) {
        this.log.warn({ terminal: lane.id, task, err: (e as Error).message }, 'terminal request failed; closing session');
        link.close(`${task} failed: ${(e as Error).message}`);
      }
    }
  }

  /**
   * The terminal is busy: the session stays, the lane's work waits (nothing
   * acknowledged, pushes stay in the outbox) and is tried again later, the wait
   * doubling while the terminal stays busy.
   */
  private busyLater(lane: Lane, why: string): void {
    if (lane.retryTimer) return;
    const wait = lane.busyRetryMs;
    lane.busyRetryMs = Math.min(BUSY_RETRY_MAX_MS, wait * 2);
    this.log.info({ terminal: lane.id, retryInMs: wait, why }, 'terminal busy; trying again later');
    lane.retryTimer = setTimeout(() => {
      lane.retryTimer = null;
      if (lane.link && lane.repull.size === 0 && this.pullEnabled()) void this.loadPullFailures(lane).catch(() => undefined);
      this.schedule(lane);
    }, wait);
    lane.retryTimer.unref?.();
  }

  /** The database refused a write: record it, keep the terminal's cursor, retry later. */
  private dbFailed(lane: Lane, e: StoreWriteError, userIds: string[] = []): void {
    this.stats.dbWriteFailures++;
    this.log.error({ terminal: lane.id, code: e.code, err: e.message, users: userIds.length }, 'Fail to save to the server DB');
    const detail = JSON.stringify({ code: e.code, message: e.message });
    for (const userId of userIds.length ? userIds : [null]) {
      this.durably({ type: EngineEvent.SERVER_DB_SAVE_FAIL, terminalId: lane.id, userId, detail });
      this.notify(EngineEvent.SERVER_DB_SAVE_FAIL, lane.id, userId ?? undefined);
    }
    const wait = lane.dbRetryMs;
    lane.dbRetryMs = Math.min(30_000, lane.dbRetryMs * 2);
    lane.retryTimer = setTimeout(() => {
      lane.retryTimer = null;
      void this.store.flushPendingEvents().catch(() => 0);
      this.schedule(lane);
    }, wait);
  }

  // ---------------------------------------------------------------- ingest

  private pullEnabled(): boolean {
    return this.mode === 'all' || this.mode === 'specific';
  }

  /**
   * Takes the events queued for a terminal (up to one batch of users), pulls the
   * users they name, merges them in one transaction that also advances the
   * cursor and fills the outbox, then acknowledges the events. On a database
   * failure nothing is acknowledged or advanced: the same events are processed
   * again after the retry delay, and after a restart they are read again from
   * the terminal.
   */
  private async ingest(lane: Lane, link: DeviceSession): Promise<void> {
    // A terminal logging fast (a burst of enrollments at it, or its log of our own
    // pushes) is read in batches: one ingest per INGEST_LINGER_MS at most unless a
    // whole batch is waiting. A lone event after a quiet spell goes at once.
    const since = this.now() - lane.lastIngestAt;
    if (since < INGEST_LINGER_MS && lane.inbox.length < PULL_BATCH) await new Promise((r) => setTimeout(r, INGEST_LINGER_MS - since));
    lane.lastIngestAt = this.now();
    if (lane.link !== link || lane.inbox.length === 0) return;
    // at most PULL_BATCH users per pull: one merge transaction fans each user out to
    // every terminal (an outbox row each), and it runs without yielding
    const batchMax = Math.min(link.capabilities.maxBatch, PULL_BATCH);
    const users: string[] = [];
    /** user -> the last fact in this batch that named it */
    const wanted = new Map<string, number>();
    let take = 0;
    const deletes: DeviceFact[] = [];
    let reset = false;
    let gap: DeviceFact | null = null;
    for (; take < lane.inbox.length; take++) {
      const f = lane.inbox[take];
      if (isDeviceChange(f) && this.pullEnabled()) {
        const userId = f.userId!;
        if (!wanted.has(userId)) {
          if (users.length >= batchMax) break;
          users.push(userId);
        }
        wanted.set(userId, f.ref);
      } else if (f.kind === 'user-deleted' && f.origin === 'device') {
        deletes.push(f);
      } else if (f.kind === 'log-reset') reset = true;
      else if (f.kind === 'log-gap') gap ??= f;
    }
    const batch = lane.inbox.slice(0, take);
    const lastRef = batch[batch.length - 1].ref;
    const gen = lane.gen;
    const pulled = users.length ? await link.getUsers(users) : [];
    const step: IngestStep = { lane, link, gen, pulled, wanted, users, take, lastRef, deletes, reset, gap };
    if (pulled.length === 0) return this.mergeAndAck(step);
    // The merge is the heaviest synchronous step (every user fans out to every
    // terminal): it waits for its own turn of the event loop WITHOUT holding the
    // lane, so this terminal's pushes go on meanwhile; no further ingest (nor a
    // reconcile) of this lane starts before it is merged, so facts stay in order.
    lane.merging = true;
    const merged = this.turn()
      .then(() => this.mergeAndAck(step))
      .catch((e) => {
        if (!link.closed) {
          this.log.warn({ terminal: lane.id, err: (e as Error).message }, 'merge failed; closing session');
          link.close(`ingest failed: ${(e as Error).message}`);
        }
      })
      .finally(() => {
        lane.merging = false;
        this.merging.delete(merged);
        this.schedule(lane);
      });
    this.merging.add(merged);
  }

  private async mergeAndAck(o: IngestStep): Promise<void> {
    const { lane, link, gen, pulled, wanted, users, take, lastRef, deletes } = o;
    this.stats.pulls += pulled.length;
    const out = this.pullOutcome(lane, link, pulled, (userId) => wanted.get(userId) ?? lastRef);
    let results: MergeResult[];
    try {
      // While a reconcile is pending the cursor stays where it is (see startLog).
      // Users that could not be read are recorded in the same transaction that
      // advances the cursor, so their facts are acknowledged only once they are owed.
      const current = lane.gen === gen; // false: the log was reset meanwhile; these facts were of the old one
      const advance = lane.wantReconcile || o.gap || !current ? null : { cursor: lastRef, logEpoch: lane.epoch };
      const events = [
        ...out.events,
        ...deletes.map((f) => ({ type: EngineEvent.USER_DELETED_ON_DEVICE, terminalId: lane.id, userId: f.userId ?? null, detail: JSON.stringify(f.userId ? { eventId: f.ref } : { eventId: f.ref, what: f.detail ?? 'every user' }) })),
      ];
      results = await this.store.ingest({ terminalId: lane.id, merges: out.merges, advance, events, pullFailed: out.failed, pullGone: out.gone });
    } catch (e) {
      if (e instanceof StoreWriteError) return this.dbFailed(lane, e, users);
      throw e;
    }
    lane.dbRetryMs = this.baseDbRetry;
    // The merge may have waited for its turn while this session ended and a new
    // one began: the new session's inbox is its own (it re-reads from the cursor).
    if (lane.link === link && lane.gen === gen) {
      lane.inbox.splice(0, take);
      lane.processed = lastRef;
      link.ack(lastRef);
    }
    const touched = new Set<string>();
    // pushes one change causes: one per other online terminal (the feed), plus the source when owed
    let others = 0;
    for (const l of this.lanes.values()) if (l.link && l !== lane) others++;
    for (const r of results) {
      const arrived = lane.arrivals.get(r.record.id);
      lane.arrivals.delete(r.record.id);
      const pushes = (r.seq !== null ? others + (r.differsFromDevice ? 1 : 0) : 0) + r.enqueued.length;
      if (pushes && arrived !== undefined) this.trackLatency(r.record.id, arrived, pushes);
      for (const t of r.enqueued) touched.add(t);
      this.notify('USER_UPDATE_SUCCESS_DEVICE', lane.id, r.record.id);
    }
    for (const f of deletes) this.notify(EngineEvent.USER_DELETED_ON_DEVICE, lane.id, f.userId);
    this.pullFailed(lane, out.failed);
    if (o.reset) lane.wantReconcile = true;
    if (o.gap && lane.gen === gen && !lane.wantReconcile) {
      // facts were lost while connected: only a comparison of user lists can say what changed
      const reason = o.gap.detail ?? 'facts were lost before the server read them';
      this.log.info({ terminal: lane.id, reason }, 'reconciling terminal by user list');
      this.emitEvent(EngineEvent.LOG_GAP, lane.id, null, reason);
      lane.wantReconcile = true;
    }
    if (out.busy) this.busyLater(lane, 'the terminal answered busy for users pulled');
    this.kickPushes([...touched]);
  }

  /**
   * Sorts a pull's results: records to merge, users the terminal no longer holds
   * ('not-found': deleted again before we asked; not a failure) and users whose
   * record could not be read (failures, with a monitoring event each; those of a
   * busy terminal are pulled again later in the session).
   */
  private pullOutcome(lane: Lane, link: DeviceSession, pulled: ReadResult[], refOf: (userId: string) => number) {
    const merges: { user: UserRecord; ctx: MergeContext }[] = [];
    const failed: { userId: string; reason: string }[] = [];
    const gone: string[] = [];
    const events: { type: string; terminalId: string; userId: string; detail: string }[] = [];
    const parts = link.capabilities.parts;
    let busy = false;
    for (const r of pulled) {
      if (r.user) {
        // the other terminals get it through the feed (each in its own scope)
        merges.push({ user: r.user, ctx: { terminalId: lane.id, eventId: refOf(r.userId), parts } });
      } else if (r.reason === 'not-found') {
        gone.push(r.userId);
      } else {
        if (r.reason === 'busy') busy = true;
        failed.push({ userId: r.userId, reason: r.detail });
        // the detail names what was wrong (a result code or a decoder message), never record contents
        events.push({ type: EngineEvent.USER_PULL_FAILED, terminalId: lane.id, userId: r.userId, detail: JSON.stringify({ status: r.reason, reason: r.detail, eventId: refOf(r.userId) }) });
      }
    }
    return { merges, failed, gone, events, busy };
  }

  private pullFailed(lane: Lane, failed: { userId: string; reason: string }[]): void {
    this.stats.pullsFailed += failed.length;
    for (const f of failed) {
      this.log.warn({ terminal: lane.id, user: f.userId, reason: f.reason }, 'device user could not be read; recorded as a pull failure and pulled again later');
      this.notify(EngineEvent.USER_PULL_FAILED, lane.id, f.userId);
    }
  }

  /** Pulls again users whose earlier pull failed; clears the rows of those read (or gone). */
  private async repull(lane: Lane, link: DeviceSession): Promise<void> {
    const ids = [...lane.repull].slice(0, Math.min(link.capabilities.maxBatch, PULL_BATCH));
    for (const id of ids) lane.repull.delete(id);
    try {
      const pulled = await link.getUsers(ids);
      await this.turn();
      if (lane.link !== link) return;
      const out = this.pullOutcome(lane, link, pulled, () => 0);
      const results = await this.store.ingest({ terminalId: lane.id, merges: out.merges, advance: null, events: out.events, pullFailed: out.failed, pullGone: out.gone });
      this.stats.pulls += out.merges.length;
      const touched = new Set<string>();
      for (const r of results) {
        for (const t of r.enqueued) touched.add(t);
        this.notify('USER_UPDATE_SUCCESS_DEVICE', lane.id, r.record.id);
      }
      this.pullFailed(lane, out.failed);
      if (out.busy) this.busyLater(lane, 'the terminal answered busy for users pulled again');
      this.kickPushes([...touched]);
    } catch (e) {
      if (lane.link === link) for (const id of ids) lane.repull.add(id);
      throw e;
    }
  }

  /** The access groups whose users a terminal is sent ('specific' mode); undefined: every user. */
  private async scopeOf(lane: Lane): Promise<readonly number[] | undefined> {
    if (this.mode !== 'specific') return undefined;
    return (await this.store.getTerminal(lane.id))?.accessGroups ?? [];
  }

  // ----------------------------------------------------------------- push

  /**
   * One push step of a lane: the owed set first (targeted pushes), then the
   * feed after the terminal's cursor, in its scope. Batches are pipelined: the
   * next PUT_USERS is sent while the previous one is still being written by
   * the terminal (which serves its requests in order), so a terminal never
   * sits idle waiting for the server between two batches; at most two batches
   * per terminal are in flight. The step ends once the previous batch is
   * answered and recorded.
   */
  private async pushSome(lane: Lane, link: DeviceSession): Promise<void> {
    const prev = lane.inflight && lane.inflight.link === link ? lane.inflight : null;
    const max = Math.min(link.capabilities.maxBatch, lane.batchLimit);
    const batch = (await this.owedBatch(lane, prev, max)) ?? (await this.feedBatch(lane, prev, max));
    if (batch === 'wait') {
      // No full batch waits behind the one in flight: let that one finish first, so
      // that what arrives meanwhile goes out together instead of as many small
      // requests (its answer may also leave entries behind: look again after it).
      await prev!.done;
      lane.wantPush = true;
      return;
    }
    if (batch === null) {
      lane.wantPush = false;
      lane.catchingUp = false;
      return;
    }
    const users = new Set([...batch.records.map((r) => r.user.id), ...batch.gone.map((g) => g.userId)]);
    const inflight: Inflight = {
      link,
      users,
      kind: batch.kind,
      last: batch.last,
      upTo: batch.feed?.to,
      done: this.completePush(lane, link, batch),
    };
    lane.inflight = inflight;
    // awaited by this lane's next step; a failure is never left unhandled
    inflight.done.then(
      () => lane.inflight === inflight && (lane.inflight = null),
      () => lane.inflight === inflight && (lane.inflight = null),
    );
    if (prev) await prev.done;
    // more may be waiting: stay scheduled
    lane.wantPush = true;
  }

  /** The next batch of the owed set (null: none owed; 'wait': too few behind the batch in flight). */
  private async owedBatch(lane: Lane, prev: Inflight | null, max: number): Promise<PushBatch | 'wait' | null> {
    if (prev && prev.kind !== 'owed') {
      // a feed batch is in flight: the owed set waits for its answer (one kind in flight at a time)
      return null;
    }
    let items: OwedEntry[] = await this.store.takeOwed(lane.id, max, prev?.last);
    if (prev) {
      items = items.filter((i) => !prev.users.has(i.userId));
      if (items.length < max) return items.length || (await this.store.owedCount(lane.id)) > 0 ? 'wait' : null;
    }
    if (items.length === 0) return null;
    const records: PushBatch['records'] = [];
    const gone: PushBatch['gone'] = [];
    for (const it of items) {
      if (it.user) records.push({ user: it.user, gen: it.gen });
      else gone.push({ userId: it.userId, gen: it.gen }); // deleted on the server: the terminal deletes it too
    }
    const tail = items[items.length - 1];
    return { kind: 'owed', records, gone, last: { enqueuedAt: tail.enqueuedAt, userId: tail.userId } };
  }

  /** The next batch of the feed after the cursor (or after the batch in flight), in the terminal's scope. */
  private async feedBatch(lane: Lane, prev: Inflight | null, max: number): Promise<PushBatch | 'wait' | null> {
    if (prev && prev.kind !== 'feed') return 'wait';
    const groups = await this.scopeOf(lane);
    const read: FeedBatch = await this.store.readFeed(lane.id, { after: prev?.upTo, limit: max, groups });
    if (prev && read.entries.length < max) return 'wait';
    if (read.entries.length === 0) {
      // nothing in scope up to the head: the cursor passes what lies between
      if (read.upTo > read.from) await this.store.recordPush({ terminalId: lane.id, feed: { from: read.from, to: read.upTo } });
      return null;
    }
    const records: PushBatch['records'] = [];
    const gone: PushBatch['gone'] = [];
    for (const e of read.entries) {
      if (e.user) records.push({ user: e.user });
      else gone.push({ userId: e.userId });
    }
    return { kind: 'feed', records, gone, feed: { from: read.from, to: read.upTo } };
  }

  /**
   * Waits for a sent batch's answer and records it in one transaction (owed
   * entries, the feed cursor, push failures, monitoring events). What the
   * driver puts on the terminal is what it can carry of each record
   * (fitForTerminal); the server's record stays whole. A record the terminal
   * refuses ('duplicate-credential', 'full', 'invalid', ...) is a push failure
   * of that user, and the cursor moves on; one it was too busy to take is owed
   * to it and sent again later in the session.
   */
  private async completePush(lane: Lane, link: DeviceSession, batch: PushBatch): Promise<void> {
    let results: WriteResult[];
    const records = batch.records.map((r) => r.user);
    try {
      results = records.length ? await link.putUsers(records) : [];
      // 'not-found' on a delete is success: the terminal does not hold the user.
      if (batch.gone.length) await link.deleteUsers(batch.gone.map((g) => g.userId));
    } catch (e) {
      this.stats.pushesFailed += records.length;
      // A busy terminal keeps its session (run() retries later). Otherwise the
      // session is over: the entries stay owed (the cursor did not move) for the
      // next one, which sends smaller batches in case the link could not carry
      // this one in time.
      if (!(e instanceof DriverError && e.reason === 'busy')) lane.batchLimit = Math.max(1, Math.floor(records.length / 2));
      throw e;
    }
    if (lane.batchLimit < link.capabilities.maxBatch && records.length >= lane.batchLimit) lane.batchLimit *= 2;
    await this.turn();
    const ok: PushAck[] = batch.gone.map((g) => ({ userId: g.userId, gen: g.gen }));
    const okUsers: string[] = [];
    const refused: { userId: string; gen?: number; reason: RefusalReason; detail: string; code: number }[] = [];
    const later: string[] = [];
    batch.records.forEach((r, k) => {
      const res = results[k];
      // a record without an answer is not known to be written: it stays owed
      if (!res || (!res.ok && (res.reason === 'busy' || res.reason === 'transport'))) later.push(r.user.id);
      else if (res.ok) {
        ok.push({ userId: r.user.id, gen: r.gen });
        okUsers.push(r.user.id);
      } else refused.push({ userId: r.user.id, gen: r.gen, reason: res.reason, detail: res.detail, code: res.code ?? 0 });
    });
    const events: EventInput[] = [
      ...okUsers.map((userId) => ({ type: EngineEvent.USER_UPDATE_SUCCESS_SERVER, terminalId: lane.id, userId })),
      ...refused.map((f) => ({ type: EngineEvent.PUSH_FAILED, terminalId: lane.id, userId: f.userId, detail: JSON.stringify({ status: f.reason, reason: f.detail }) })),
    ];
    await this.store.recordPush({
      terminalId: lane.id,
      feed: batch.feed,
      ok,
      refused: refused.map((f) => ({ userId: f.userId, gen: f.gen, code: f.code, reason: f.detail })),
      // from the feed, a user not taken now is owed to the terminal; an owed entry simply stays
      later: batch.kind === 'feed' ? later : [],
      events,
    });
    this.stats.pushes += okUsers.length;
    this.stats.pushesFailed += refused.length;
    for (const userId of okUsers) {
      this.notify(EngineEvent.USER_UPDATE_SUCCESS_SERVER, lane.id, userId);
      this.pushDone(userId);
    }
    for (const f of refused) {
      this.log.warn({ terminal: lane.id, user: f.userId, reason: f.reason, detail: f.detail }, 'terminal refused pushed user');
      this.notify(EngineEvent.PUSH_FAILED, lane.id, f.userId);
      this.pushDone(f.userId);
    }
    if (later.length) this.busyLater(lane, `the terminal took ${later.length} of ${records.length} users not now`);
  }

  /** Pull-to-last-push latency: from a device event's arrival to the last push it caused. */
  private trackLatency(userId: string, since: number, pushes: number): void {
    const cur = this.pending.get(userId);
    this.pending.set(userId, { since: cur?.since ?? since, remaining: (cur?.remaining ?? 0) + pushes });
    // Pushes owed to terminals that stay offline for days would otherwise pile up here.
    if (this.pending.size > 100_000) this.pending.delete(this.pending.keys().next().value!);
  }

  private pushDone(userId: string): void {
    const p = this.pending.get(userId);
    if (!p || --p.remaining > 0) return;
    this.pending.delete(userId);
    this.stats.lastPushLatencyMs.push(this.now() - p.since);
    if (this.stats.lastPushLatencyMs.length > 10_000) this.stats.lastPushLatencyMs.splice(0, 5_000);
  }

  // ------------------------------------------------------------- reconcile

  /**
   * Brings a terminal and the server together by comparing user lists: users the
   * terminal holds that the server lacks or holds differently are pulled and
   * merged (sync mode all/specific), and every server user the terminal lacks or
   * holds differently is queued for it. Then the cursor jumps to the terminal's
   * newest event.
   */
  private async reconcile(lane: Lane, link: DeviceSession): Promise<void> {
    if (this.mode === 'off') {
      // Nothing is synced: only take note of where the terminal's log stands.
      await this.store.setLogPosition(lane.id, { cursor: Math.max(lane.subscribedFrom, lane.processed), logEpoch: lane.epoch });
      lane.wantReconcile = false;
      return;
    }
    this.stats.reconciles++;
    const gen = lane.gen;
    // users whose pull failed before are tried again: by this reconcile when it pulls
    // them anyway, by the repull task after it otherwise
    if (this.pullEnabled()) await this.loadPullFailures(lane);
    // What the feed will still deliver (numbers past the terminal's feed cursor) is
    // not owed again here. A terminal at 0 (met for the first time) is compared
    // with the whole server: what it lacks up to the head is owed to it, and its
    // cursor then jumps to that head, so a terminal that already holds the
    // server's users costs this comparison and nothing else.
    const feedCursor = (await this.store.getFeedCursor(lane.id)) ?? 0;
    const head = feedCursor === 0 ? await this.store.feedHead() : feedCursor;
    const owedHere = (seq: number) => seq <= head;
    // The terminal's index and the server's users are both walked in ascending byte
    // order of the user ID (the terminal's order is checked by the driver), like a
    // merge join: only one page of each side is held at a time, and the work runs
    // in slices that give the event loop back every few milliseconds, within a deadline.
    const slicer = new Slicer(this.reconcileTimeoutMs);
    const maxUsers = Math.min(this.maxTerminalUsers, link.identity.userCapacity > 0 ? link.identity.userCapacity : Infinity);
    const pages = listingEntries(link.userPages ? link.userPages({ maxUsers }) : wholeListing(link));
    // the terminal holds the server's record `u` as listed in `entry`, or not: per its listing kind
    const parts = link.capabilities.parts;
    const digestOf = link.digestOf?.bind(link);
    const differs = (u: UserRecord, entry: ListingEntry): boolean => {
      if (entry.user) return !sameForTerminal(u, entry.user, parts);
      if (!digestOf) throw new Error(`the ${link.identity.protocol} driver lists digests but computes none (digestOf)`);
      return digestOf(u) !== entry.digest;
    };
    /** records a 'full-read' listing already gave: pulled without asking again */
    const listed = new Map<string, UserRecord>();
    const myGroups = new Set((await this.scopeOf(lane)) ?? []);
    const inScope = (u: UserRecord) => this.mode !== 'specific' || u.accessGroups.some((g) => myGroups.has(g));
    const touched = new Set<string>();
    const toPull: string[] = [];
    const toPush: string[] = [];
    let terminalUsers = 0;
    let pulledN = 0;
    let queuedN = 0;
    const server = new ServerWalk(this.store);
    const flush = async (final: boolean) => {
      while (toPull.length >= link.capabilities.maxBatch || (final && toPull.length)) {
        const ids = toPull.splice(0, link.capabilities.maxBatch);
        for (const id of ids) lane.repull.delete(id);
        const known = ids.map((id) => listed.get(id));
        const pulled: ReadResult[] = known.every((u) => u !== undefined) ? ids.map((userId, k) => ({ userId, user: known[k]! })) : await link.getUsers(ids);
        for (const id of ids) listed.delete(id);
        await slicer.yield();
        const out = this.pullOutcome(lane, link, pulled, () => 0);
        const results = await this.store.ingest({ terminalId: lane.id, merges: out.merges, advance: null, events: out.events, pullFailed: out.failed, pullGone: out.gone });
        this.stats.pulls += out.merges.length;
        pulledN += ids.length;
        this.pullFailed(lane, out.failed);
        for (const r of results) {
          for (const t of r.enqueued) touched.add(t);
          this.notify('USER_UPDATE_SUCCESS_DEVICE', lane.id, r.record.id);
        }
      }
      if (toPush.length >= RECONCILE_PUSH_CHUNK || (final && toPush.length)) {
        queuedN += toPush.length;
        await this.store.owe(lane.id, toPush.splice(0));
      }
    };
    for await (const page of pages) {
      for (const entry of page) {
        await slicer.tick();
        terminalUsers++;
        // server users before this entry: the terminal lacks them
        for (let x = await server.peek(); x && byteOrder(x.user.id, entry.userId) < 0; x = await server.peek()) {
          await server.next();
          if (inScope(x.user) && owedHere(x.seq)) toPush.push(x.user.id);
          if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
          await slicer.tick();
        }
        const held = await server.peek();
        const x = held && held.user.id === entry.userId ? await server.next() : null;
        if (!x || differs(x.user, entry)) {
          if (this.pullEnabled()) {
            toPull.push(entry.userId);
            if (entry.user) listed.set(entry.userId, entry.user);
          } else if (x && owedHere(x.seq)) toPush.push(entry.userId);
        }
      }
      await flush(false);
      slicer.check();
    }
    // server users after the terminal's last one
    for (let x = await server.next(); x; x = await server.next()) {
      await slicer.tick();
      if (inScope(x.user) && owedHere(x.seq)) toPush.push(x.user.id);
      if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
    }
    await flush(true);
    // Everything up to where this session's subscription started is now covered by
    // the comparison; events after it are (or will be) processed from the inbox.
    // A log reset meanwhile asks for another comparison (the list may predate it).
    if (lane.gen === gen && lane.link === link) {
      await this.store.setLogPosition(lane.id, { cursor: Math.max(lane.subscribedFrom, lane.processed), logEpoch: lane.epoch });
      // met for the first time: everything up to the head it lacked is owed now, the rest it holds
      if (feedCursor === 0 && head > 0) await this.store.recordPush({ terminalId: lane.id, feed: { from: 0, to: head } });
      lane.wantReconcile = false;
      lane.reconcileRetryMs = this.reconcileRetryMs;
    }
    this.emitEvent(EngineEvent.RECONCILE, lane.id, null, JSON.stringify({ terminalUsers, pulled: pulledN, queued: queuedN }));
    touched.add(lane.id);
    this.kickPushes([...touched]);
  }

  /** A reconcile ran past its deadline: keep the cursor, try again later (doubling the wait), keep the session. */
  private reconcileAbandoned(lane: Lane, e: ReconcileTimeout): void {
    const wait = lane.reconcileRetryMs;
    lane.reconcileRetryMs = Math.min(RECONCILE_RETRY_MAX_MS, wait * 2);
    this.log.warn({ terminal: lane.id, timeoutMs: this.reconcileTimeoutMs, retryInMs: wait }, `${e.message}; abandoned, to be retried`);
    this.emitEvent(EngineEvent.RECONCILE, lane.id, null, JSON.stringify({ abandoned: true, reason: e.message, retryInMs: wait }));
    if (lane.reconcileTimer) clearTimeout(lane.reconcileTimer);
    lane.reconcileTimer = setTimeout(() => {
      lane.reconcileTimer = null;
      this.schedule(lane);
    }, wait);
    lane.reconcileTimer.unref?.();
  }

  // --------------------------------------------------------------- events

  private emitEvent(type: string, terminalId: string, userId: string | null, detail: string): void {
    this.durably({ type, terminalId, userId, detail });
    this.notify(type, terminalId, userId ?? undefined);
  }

  /** Records a monitoring event without waiting (kept in memory by the store while the database refuses writes). */
  private durably(ev: EventInput): void {
    this.store.recordEventDurably(ev).catch((e) => this.log.error({ err: (e as Error).message, type: ev.type }, 'monitoring event not recorded'));
  }

  private notify(type: string, terminalId?: string, userId?: string): void {
    for (const l of this.listeners) l({ type, terminalId, userId });
  }
}

/** The reconcile ran past --reconcile-timeout-sec. */
class ReconcileTimeout extends Error {
  constructor(ms: number) {
    super(`reconcile did not finish within ${Math.round(ms / 1000)} s`);
    this.name = 'ReconcileTimeout';
  }
}

/**
 * Cuts a long loop into slices: tick() gives the event loop back once a slice
 * has run SLICE_MS (so heartbeats, other terminals and the admin API are served
 * between slices), and fails with ReconcileTimeout once the deadline passed.
 */
class Slicer {
  private readonly deadline: number;
  private sliceStart = performance.now();
  private n = 0;
  constructor(private readonly timeoutMs: number) {
    this.deadline = performance.now() + timeoutMs;
  }

  /** cheap: looks at the clock every 8 calls */
  tick(): Promise<void> | void {
    if ((++this.n & 7) !== 0) return;
    if (performance.now() - this.sliceStart >= SLICE_MS) return this.yield();
  }

  async yield(): Promise<void> {
    this.check();
    await new Promise<void>((r) => setImmediate(r));
    this.sliceStart = performance.now();
  }

  check(): void {
    if (performance.now() > this.deadline) throw new ReconcileTimeout(this.timeoutMs);
  }
}

/** The server's users in ascending byte order of the ID, a page at a time. */
class ServerWalk {
  private page: SeqUser[] = [];
  private i = 0;
  private after = '';
  private done = false;
  constructor(private readonly store: SiteStore) {}

  async peek(): Promise<SeqUser | null> {
    if (this.i >= this.page.length && !this.done) {
      this.page = await this.store.walkUsers({ after: this.after, limit: SERVER_WALK_PAGE });
      this.i = 0;
      if (this.page.length === 0) this.done = true;
      else this.after = this.page[this.page.length - 1].user.id;
    }
    return this.i < this.page.length ? this.page[this.i] : null;
  }

  async next(): Promise<SeqUser | null> {
    const u = await this.peek();
    if (u) this.i++;
    return u;
  }
}

/** Byte order of two user IDs (UTF-8, shorter first on a common prefix): LIST_USERS order and SQLite's. */
function byteOrder(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface ListingEntry {
  userId: string;
  /** listing 'digest' */
  digest?: string;
  /** listing 'full-read' */
  user?: UserRecord;
}

/** A listing's pages as entries of either kind. */
async function* listingEntries(pages: AsyncIterable<UserListing>): AsyncIterable<ListingEntry[]> {
  for await (const page of pages) yield page.kind === 'digest' ? page.entries : page.users.map((user) => ({ userId: user.id, user }));
}

/** A driver without paged listing: its whole listing, sorted, as one page. */
async function* wholeListing(session: DeviceSession): AsyncIterable<UserListing> {
  const all = await session.listUsers();
  if (all.kind === 'digest') yield { kind: 'digest', entries: all.entries.sort((x, y) => byteOrder(x.userId, y.userId)) };
  else yield { kind: 'full-read', users: all.users.sort((x, y) => byteOrder(x.id, y.id)) };
}
