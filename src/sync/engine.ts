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
// the others. Pushes live in the outbox table, not in memory: ten updates of one
// user coalesce into one row per terminal, and a burst bigger than memory simply
// waits on disk. Each push job sends up to the terminal's batch size of users in
// one PUT_USERS.
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { sameForTerminal } from '../model/merge.js';
import type { UserRecord } from '../model/user.js';
import { StoreWriteError } from '../store/errors.js';
import type { Store } from '../store/store.js';
import { MonitoringEvent, type MergeResult, type OutboxItem, type SyncMode, type TerminalRow } from '../store/types.js';
import { DriverError, type DeviceFact, type DeviceSession, type ReadResult, type RefusalReason, type UserListing, type WriteResult } from './ports.js';
import { utf8Compare } from '../utf8-order.js';
import { DEFAULT_EVENT_RATE, DEFAULT_MAX_TERMINAL_USERS, DEFAULT_WINDOW, PeerLimitError } from './peer-limit.js';

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
  store: Store;
  log: Logger;
  /** global cap on jobs running at once over all terminals */
  concurrency?: number;
  /** delay before retrying a batch whose database write failed, doubling to 30 s */
  dbRetryMs?: number;
  /** facts a terminal may have sent and not had acknowledged (its driver enforces it; termsync: the SUBSCRIBE_LOG window); more ends its session */
  subscribeWindow?: number;
  /** facts per second a terminal may deliver; past it its acknowledgements wait (--terminal-event-rate; default DEFAULT_EVENT_RATE, 0: no limit) */
  terminalEventRate?: number;
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
export type EngineTuning = Omit<EngineOptions, 'store' | 'log' | 'now'>;

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
  inflight: { link: DeviceSession; users: Set<string>; last: { enqueuedAt: number; userId: string }; done: Promise<void> } | null;
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
  private readonly store: Store;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly baseDbRetry: number;
  private readonly window: number;
  private readonly eventRate: number;
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
    this.eventRate = Math.max(0, o.terminalEventRate ?? DEFAULT_EVENT_RATE);
    this.maxTerminalUsers = o.maxTerminalUsers ?? DEFAULT_MAX_TERMINAL_USERS;
    this.reconcileTimeoutMs = o.reconcileTimeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_SEC * 1000;
    this.reconcileRetryMs = o.reconcileRetryMs ?? RECONCILE_RETRY_MIN_MS;
    const concurrency = o.concurrency ?? 64;
    this.queue = new PQueue({ concurrency });
    this.jobSliceMs = o.jobSliceMs ?? DEFAULT_JOB_SLICE_MS;
    this.slowJobMs = o.slowJobMs ?? Math.min(DEFAULT_SLOW_JOB_MS, this.jobSliceMs);
    this.slowCap = Math.max(1, concurrency - Math.max(1, Math.floor(concurrency / 4)));
    this.mode = this.store.getSyncMode();
  }

  get syncMode(): SyncMode {
    return this.mode;
  }

  /** Changes the sync mode (persisted). Turning sync on pushes nothing retroactively; use resync. */
  setSyncMode(mode: SyncMode): void {
    this.store.setSyncMode(mode);
    this.mode = mode;
    if (mode !== 'off') for (const lane of this.lanes.values()) this.kickPush(lane);
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
    this.loadPullFailures(lane);
    this.kickPush(lane);
  }

  /** Users of this terminal whose pull failed before are pulled again (session start, reconcile, retryPulls). */
  private loadPullFailures(lane: Lane, userId?: string): number {
    const rows = this.store.listPullFailures({ terminalId: lane.id, userId, limit: REPULL_LOAD });
    for (const r of rows) lane.repull.add(r.userId);
    if (rows.length) this.schedule(lane);
    return rows.length;
  }

  /**
   * Pulls again, now, the users of a terminal whose pull failed (all of them, or
   * one). False when the terminal has no live session (they are pulled again at
   * its next session start anyway).
   */
  retryPulls(terminalId: string, userId?: string): { online: boolean; queued: number } {
    const lane = this.lanes.get(terminalId);
    if (!lane?.link) return { online: false, queued: 0 };
    return { online: true, queued: this.loadPullFailures(lane, userId) };
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

  /** Wakes the push lane of every terminal that has outbox entries (e.g. after enqueueing). */
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
      const busy = [...this.lanes.values()].some((l) => l.link && (l.starting || l.running || l.inbox.length || (l.wantReconcile && !l.reconcileTimer) || (l.wantPush && this.mode !== 'off' && this.store.outboxCount(l.id) > 0)));
      if (!busy) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops taking new work; waits up to `deadlineMs` for running jobs (their pushes stay in the outbox otherwise). */
  async stop(deadlineMs = 5000): Promise<boolean> {
    this.stopping = true;
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
    const pos = this.store.getCursor(lane.id) ?? { logEpoch: null, cursor: 0 };
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
      maxRatePerSec: this.eventRate,
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
      if (lane.link && lane.repull.size === 0 && this.pullEnabled()) this.loadPullFailures(lane);
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
      this.store.recordEventDurably({ type: EngineEvent.SERVER_DB_SAVE_FAIL, terminalId: lane.id, userId, detail });
      this.notify(EngineEvent.SERVER_DB_SAVE_FAIL, lane.id, userId ?? undefined);
    }
    const wait = lane.dbRetryMs;
    lane.dbRetryMs = Math.min(30_000, lane.dbRetryMs * 2);
    lane.retryTimer = setTimeout(() => {
      lane.retryTimer = null;
      this.store.flushPendingEvents();
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

  private mergeAndAck(o: IngestStep): void {
    const { lane, link, gen, pulled, wanted, users, take, lastRef, deletes } = o;
    this.stats.pulls += pulled.length;
    // the terminal list is read only when there is something to fan out (most batches in a
    // burst are the terminals' own logs of our pushes: nothing to pull)
    const targets = pulled.length ? this.pushTargets(lane.id) : [];
    const out = this.pullOutcome(lane, link, pulled, targets, (userId) => wanted.get(userId) ?? lastRef);
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
      results = this.store.mergeDeviceUsersAndAdvance(out.merges, lane.id, advance, events, { failed: out.failed, gone: out.gone });
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
    for (const r of results) {
      const arrived = lane.arrivals.get(r.record.id);
      lane.arrivals.delete(r.record.id);
      if (r.enqueued.length && arrived !== undefined) this.trackLatency(r.record.id, arrived, r.enqueued.length);
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
  private pullOutcome(lane: Lane, link: DeviceSession, pulled: ReadResult[], targets: string[], refOf: (userId: string) => number) {
    const merges: { user: UserRecord; ctx: Parameters<Store['mergeDeviceUser']>[1] }[] = [];
    const failed: { userId: string; reason: string }[] = [];
    const gone: string[] = [];
    const events: { type: string; terminalId: string; userId: string; detail: string }[] = [];
    const parts = link.capabilities.parts;
    let busy = false;
    for (const r of pulled) {
      if (r.user) {
        const scoped = this.mode === 'specific' ? this.scope(targets, r.user) : targets;
        merges.push({ user: r.user, ctx: { terminalId: lane.id, eventId: refOf(r.userId), pushTo: scoped, parts } });
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
      const out = this.pullOutcome(lane, link, pulled, this.pushTargets(lane.id), () => 0);
      const results = this.store.mergeDeviceUsersAndAdvance(out.merges, lane.id, null, out.events, { failed: out.failed, gone: out.gone });
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

  /** Every approved terminal except `except` (sync targets). */
  private pushTargets(except?: string): string[] {
    return this.store
      .listTerminals()
      .filter((t) => t.approved && t.id !== except)
      .map((t) => t.id);
  }

  private scope(targets: string[], user: UserRecord): string[] {
    const groups = new Set(user.accessGroups);
    const rows = new Map<string, TerminalRow>(this.store.listTerminals().map((t) => [t.id, t]));
    return targets.filter((id) => rows.get(id)?.accessGroups.some((g) => groups.has(g)));
  }

  /** Terminals a server-side change goes to, per the sync mode. */
  targetsFor(user: UserRecord): string[] {
    if (this.mode === 'off') return [];
    const all = this.pushTargets();
    return this.mode === 'specific' ? this.scope(all, user) : all;
  }

  // ----------------------------------------------------------------- push

  /**
   * One push step of a lane. Batches are pipelined: the next PUT_USERS is sent
   * while the previous one is still being written by the terminal (which
   * serves its requests in order), so a terminal never sits idle waiting for
   * the server between two batches; at most two batches per terminal are in
   * flight. The step ends once the previous batch is answered and acknowledged.
   */
  private async pushSome(lane: Lane, link: DeviceSession): Promise<void> {
    const prev = lane.inflight && lane.inflight.link === link ? lane.inflight : null;
    const max = Math.min(link.capabilities.maxBatch, lane.batchLimit);
    // behind the batch in flight (an entry changed again meanwhile waits for the next round)
    let items = this.store.take(lane.id, max, prev?.last);
    if (prev) {
      items = items.filter((i) => !prev.users.has(i.userId));
      if (items.length < max) {
        // No full batch waits behind the one in flight: let that one finish first, so
        // that what is enqueued meanwhile goes out together instead of as many small
        // requests (its answer may also leave entries behind: look again after it).
        await prev.done;
        lane.wantPush = true;
        return;
      }
    }
    if (items.length === 0) {
      lane.wantPush = false;
      lane.catchingUp = false;
      return;
    }
    const records: UserRecord[] = [];
    const live: OutboxItem[] = [];
    const gone: OutboxItem[] = [];
    const recs = this.store.getUsersShared(items.map((i) => i.userId));
    items.forEach((it, k) => {
      const u = recs[k];
      if (u) {
        records.push(u);
        live.push(it);
      } else gone.push(it); // deleted on the server: the terminal deletes it too
    });
    const tail = items[items.length - 1];
    const batch = {
      link,
      users: new Set(items.map((i) => i.userId)),
      last: { enqueuedAt: tail.enqueuedAt, userId: tail.userId },
      done: this.completePush(lane, link, records, live, gone),
    };
    lane.inflight = batch;
    // awaited by this lane's next step; a failure is never left unhandled
    batch.done.then(
      () => lane.inflight === batch && (lane.inflight = null),
      () => lane.inflight === batch && (lane.inflight = null),
    );
    if (prev) await prev.done;
    // more may be waiting: stay scheduled
    lane.wantPush = true;
  }

  /**
   * Waits for a sent batch's answer and records it (outbox, monitoring events,
   * stats). What the driver puts on the terminal is what it can carry of each
   * record (fitForTerminal); the server's record stays whole. A record the
   * terminal refuses ('duplicate-credential', 'full', 'invalid', ...) is a push
   * failure of that user; one it was too busy to take stays in the outbox and
   * is sent again later in the session.
   */
  private async completePush(lane: Lane, link: DeviceSession, records: UserRecord[], live: OutboxItem[], gone: OutboxItem[]): Promise<void> {
    let results: WriteResult[];
    try {
      results = records.length ? await link.putUsers(records) : [];
      // 'not-found' on a delete is success: the terminal does not hold the user.
      if (gone.length) await link.deleteUsers(gone.map((g) => g.userId));
    } catch (e) {
      this.stats.pushesFailed += records.length;
      // A busy terminal keeps its session (run() retries later). Otherwise the
      // session is over: the entries stay in the outbox for the next one, which
      // sends smaller batches in case the link could not carry this one in time.
      if (!(e instanceof DriverError && e.reason === 'busy')) lane.batchLimit = Math.max(1, Math.floor(records.length / 2));
      throw e;
    }
    if (lane.batchLimit < link.capabilities.maxBatch && records.length >= lane.batchLimit) lane.batchLimit *= 2;
    await this.turn();
    const ok: OutboxItem[] = [...gone];
    const failed: { item: OutboxItem; reason: RefusalReason; detail: string; code: number }[] = [];
    let later = 0;
    results.forEach((r, k) => {
      if (r.ok) ok.push(live[k]);
      else if (r.reason === 'busy' || r.reason === 'transport') later++;
      else failed.push({ item: live[k], reason: r.reason, detail: r.detail, code: r.code ?? 0 });
    });
    // a record without an answer is not known to be written: it stays owed
    later += Math.max(0, live.length - results.length);
    const okUsers = ok.filter((i) => !gone.includes(i)).map((i) => i.userId);
    this.store.ackPushed(
      lane.id,
      ok,
      [
        ...okUsers.map((userId) => ({ type: EngineEvent.USER_UPDATE_SUCCESS_SERVER, terminalId: lane.id, userId })),
        ...failed.map((f) => ({ type: EngineEvent.PUSH_FAILED, terminalId: lane.id, userId: f.item.userId, detail: JSON.stringify({ status: f.reason, reason: f.detail }) })),
      ],
      failed.map((f) => ({ item: f.item, status: f.code, reason: f.detail })),
    );
    this.stats.pushes += okUsers.length;
    this.stats.pushesFailed += failed.length;
    for (const userId of okUsers) {
      this.notify(EngineEvent.USER_UPDATE_SUCCESS_SERVER, lane.id, userId);
      this.pushDone(userId);
    }
    for (const f of failed) {
      this.log.warn({ terminal: lane.id, user: f.item.userId, reason: f.reason, detail: f.detail }, 'terminal refused pushed user');
      this.notify(EngineEvent.PUSH_FAILED, lane.id, f.item.userId);
      this.pushDone(f.item.userId);
    }
    if (later) this.busyLater(lane, `the terminal took ${later} of ${live.length} users not now`);
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
      this.store.setCursor(lane.id, Math.max(lane.subscribedFrom, lane.processed), lane.epoch);
      lane.wantReconcile = false;
      return;
    }
    this.stats.reconciles++;
    const gen = lane.gen;
    // users whose pull failed before are tried again: by this reconcile when it pulls
    // them anyway, by the repull task after it otherwise
    if (this.pullEnabled()) this.loadPullFailures(lane);
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
    const myGroups = new Set(this.mode === 'specific' ? (this.store.getTerminal(lane.id)?.accessGroups ?? []) : []);
    const inScope = (u: UserRecord) => this.mode !== 'specific' || u.accessGroups.some((g) => myGroups.has(g));
    // listed only when something is pulled: a terminal that already equals the server costs no list of all terminals
    let targets: string[] | null = null;
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
        const out = this.pullOutcome(lane, link, pulled, (targets ??= this.pushTargets(lane.id)), () => 0);
        const results = this.store.mergeDeviceUsersAndAdvance(out.merges, lane.id, null, out.events, { failed: out.failed, gone: out.gone });
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
        this.store.enqueueMany([lane.id], toPush.splice(0));
      }
    };
    for await (const page of pages) {
      for (const entry of page) {
        await slicer.tick();
        terminalUsers++;
        // server users before this entry: the terminal lacks them
        for (let u = server.peek(); u && byteOrder(u.id, entry.userId) < 0; u = server.peek()) {
          server.next();
          if (inScope(u)) toPush.push(u.id);
          if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
          await slicer.tick();
        }
        const held = server.peek();
        const u = held && held.id === entry.userId ? server.next() : null;
        if (!u || differs(u, entry)) {
          if (this.pullEnabled()) {
            toPull.push(entry.userId);
            if (entry.user) listed.set(entry.userId, entry.user);
          } else if (u) toPush.push(entry.userId);
        }
      }
      await flush(false);
      slicer.check();
    }
    // server users after the terminal's last one
    for (let u = server.next(); u; u = server.next()) {
      await slicer.tick();
      if (inScope(u)) toPush.push(u.id);
      if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
    }
    await flush(true);
    // Everything up to where this session's subscription started is now covered by
    // the comparison; events after it are (or will be) processed from the inbox.
    // A log reset meanwhile asks for another comparison (the list may predate it).
    if (lane.gen === gen && lane.link === link) {
      this.store.setCursor(lane.id, Math.max(lane.subscribedFrom, lane.processed), lane.epoch);
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
    this.store.recordEventDurably({ type, terminalId, userId, detail });
    this.notify(type, terminalId, userId ?? undefined);
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
  private page: UserRecord[] = [];
  private i = 0;
  private after = '';
  private done = false;
  constructor(private readonly store: Store) {}

  peek(): UserRecord | null {
    if (this.i >= this.page.length && !this.done) {
      this.page = this.store.listUsers({ after: this.after, limit: SERVER_WALK_PAGE });
      this.i = 0;
      if (this.page.length === 0) this.done = true;
      else this.after = this.page[this.page.length - 1].id;
    }
    return this.i < this.page.length ? this.page[this.i] : null;
  }

  next(): UserRecord | null {
    const u = this.peek();
    if (u) this.i++;
    return u;
  }
}

/** Byte order of two user IDs (UTF-8, shorter first on a common prefix): LIST_USERS order and SQLite's. */
function byteOrder(a: string, b: string): number {
  return utf8Compare(a, b);
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
