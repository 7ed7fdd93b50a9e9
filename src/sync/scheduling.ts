// The sync engine's scheduling: lanes (one per terminal, one job at a time),
// the global p-queue with priorities and its fair share for slow terminals,
// turns of the event loop for database steps, retries of busy terminals and
// failed database writes, the wake-up when the feed grows, and the engine's
// monitoring events. The tasks build on it, each in its own file:
//   EngineCore (this file) -> IntakeEngine (intake.ts: the terminals' event
//   logs, pulls and merges) -> PushEngine (push.ts: the owed set and the change
//   feed to each terminal) -> ReconcileEngine (reconcile.ts: comparing user
//   lists) -> SyncEngine (engine.ts: sessions and the public API).
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { SiteStore } from '../store/backend.js';
import { LeaseLostError, StoreWriteError } from '../store/errors.js';
import type { EventInput, SyncMode } from '../store/types.js';
import type { DeviceSession } from './ports.js';
import { DEFAULT_EVENT_RATE, DEFAULT_MAX_TERMINAL_USERS, DEFAULT_WINDOW } from './peer-limit.js';
import {
  BUSY_RETRY_MAX_MS,
  BUSY_RETRY_MIN_MS,
  DEFAULT_JOB_SLICE_MS,
  DEFAULT_SLOW_JOB_MS,
  EngineEvent,
  Priority,
  REPULL_LOAD,
  RECONCILE_RETRY_MIN_MS,
  TURN_BUDGET_MS,
  DEFAULT_RECONCILE_TIMEOUT_SEC,
  type EngineOptions,
  type EngineStats,
  type Lane,
  type Task,
} from './lanes.js';

export abstract class EngineCore {
  readonly queue: PQueue;
  readonly stats: EngineStats = { pulls: 0, pullsFailed: 0, pushes: 0, pushesFailed: 0, dbWriteFailures: 0, reconciles: 0, lastPushLatencyMs: [] };
  protected readonly lanes = new Map<string, Lane>();
  protected readonly store: SiteStore;
  /** the store's wake-up for a grown feed (see onFeedChange); armed once per turn of the event loop */
  protected readonly unsubscribeFeed: () => void;
  protected feedKickArmed = false;
  /** the newest feed number the store announced (0: none yet); it may lag the store, never lead it */
  protected headSeen = 0;
  protected readonly log: Logger;
  protected readonly now: () => number;
  private readonly fenceFor?: (terminalId: string) => number | undefined;
  protected readonly baseDbRetry: number;
  protected readonly window: number;
  protected readonly eventRate: number;
  protected readonly jobSliceMs: number;
  protected readonly slowJobMs: number;
  /** most jobs of slow lanes at once: the concurrency minus the reserve */
  protected readonly slowCap: number;
  protected slowRunning = 0;
  /** slow lanes with work waiting for room in the slow share */
  protected readonly parked = new Set<Lane>();
  /** every job's work, also after it gave its slot back (stop waits for them) */
  protected readonly working = new Set<Promise<void>>();
  protected readonly maxTerminalUsers: number;
  protected readonly reconcileTimeoutMs: number;
  protected readonly reconcileRetryMs: number;
  protected mode: SyncMode;
  protected stopping = false;
  protected readonly turnWaiters: (() => void)[] = [];
  /** merges waiting for their turn or running (see ingest) */
  protected readonly merging = new Set<Promise<void>>();
  protected turnArmed = false;
  /** user -> arrival time of the device event that changed it and the pushes still owed for it */
  protected readonly pending = new Map<string, { since: number; remaining: number }>();
  protected listeners: ((e: { type: string; terminalId?: string; userId?: string }) => void)[] = [];

  /** the `fence` of a cursor write of a terminal (see EngineOptions.fenceFor); throws LeaseLostError when the lease is not held */
  protected fence(terminalId: string): number | undefined {
    if (!this.fenceFor) return undefined;
    const f = this.fenceFor(terminalId);
    if (f === undefined) throw new LeaseLostError(terminalId, 0, `the lease on terminal ${JSON.stringify(terminalId)} is not held by this daemon`);
    return f;
  }

  protected constructor(o: EngineOptions) {
    this.store = o.store;
    this.log = o.log;
    this.now = o.now ?? Date.now;
    this.fenceFor = o.fenceFor;
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
    this.mode = o.syncMode ?? 'server';
    this.unsubscribeFeed = this.store.onFeedChange((head) => {
      if (head > this.headSeen) this.headSeen = head;
      this.feedGrew();
    });
  }

  /**
   * The feed grew (or an owed entry was written): every online lane reads its
   * feed once, on the next turn of the event loop (many commits in one turn
   * wake each lane once).
   */
  protected feedGrew(): void {
    if (this.feedKickArmed || this.stopping) return;
    this.feedKickArmed = true;
    setImmediate(() => {
      this.feedKickArmed = false;
      if (this.mode === 'off') return;
      for (const lane of this.lanes.values()) if (lane.link) this.kickPush(lane);
    });
  }

  /** Wakes the push lanes of these terminals (default all), e.g. after owing them users. */
  kickPushes(terminalIds?: readonly string[]): void {
    const ids = terminalIds ?? [...this.lanes.keys()];
    for (const id of ids) {
      const lane = this.lanes.get(id);
      if (lane) this.kickPush(lane);
    }
  }

  /** Users of this terminal whose pull failed before are pulled again (session start, reconcile, retryPulls). */
  protected async loadPullFailures(lane: Lane, userId?: string): Promise<number> {
    const rows = await this.store.listPullFailures({ terminalId: lane.id, userId, limit: REPULL_LOAD });
    for (const r of rows) lane.repull.add(r.userId);
    if (rows.length) this.schedule(lane);
    return rows.length;
  }

  /**
   * A terminal went past a bound the server sets: record it (PEER_LIMIT_EXCEEDED,
   * with the bound and the figures, never personal data), log it, end the session.
   */
  protected peerLimit(lane: Lane, link: DeviceSession, limit: string, figures: Record<string, number | string>, message: string): void {
    if (link.closed) return;
    this.log.warn({ terminal: lane.id, limit, ...figures }, `${message}; closing session`);
    this.emitEvent(EngineEvent.PEER_LIMIT_EXCEEDED, lane.id, null, JSON.stringify({ limit, ...figures }));
    void link.close(`peer limit exceeded (${limit}): ${message}`);
  }

  // ------------------------------------------------------------ scheduling

  protected lane(id: string): Lane {
    let l = this.lanes.get(id);
    if (!l) {
      l = { id, link: null, inbox: [], epoch: 0, subscribedFrom: 0, processed: 0, gen: 0, busyRetryMs: BUSY_RETRY_MIN_MS, starting: false, reconcileRetryMs: this.reconcileRetryMs, reconcileTimer: null, slow: false, wantPush: false, catchingUp: false, wantReconcile: false, running: false, dbRetryMs: this.baseDbRetry, retryTimer: null, arrivals: new Map(), repull: new Set(), inflight: null, lastTask: null, merging: false, held: new Set(), lastIngestAt: 0, batchLimit: Infinity };
      this.lanes.set(id, l);
    }
    return l;
  }

  protected kickPush(lane: Lane): void {
    lane.wantPush = true;
    this.schedule(lane);
  }

  protected nextTask(lane: Lane): Task | null {
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
  protected turn(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.turnWaiters.push(resolve);
      if (!this.turnArmed) this.armTurn();
    });
  }

  protected armTurn(): void {
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
  protected schedule(lane: Lane): void {
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
  protected unpark(): void {
    for (const lane of this.parked) {
      if (this.slowRunning >= this.slowCap) return;
      this.parked.delete(lane);
      this.schedule(lane);
    }
  }

  /**
   * The terminal is busy: the session stays, the lane's work waits (nothing
   * acknowledged, pushes stay in the outbox) and is tried again later, the wait
   * doubling while the terminal stays busy.
   */
  protected busyLater(lane: Lane, why: string): void {
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
  protected dbFailed(lane: Lane, e: StoreWriteError, userIds: string[] = []): void {
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

  /** Runs one task of a lane (SyncEngine dispatches to the task's layer). */
  protected abstract run(lane: Lane, task: Task): Promise<void>;


  protected pullEnabled(): boolean {
    return this.mode === 'all' || this.mode === 'specific';
  }

  /** The access groups whose users a terminal is sent ('specific' mode); undefined: every user. */
  protected async scopeOf(lane: Lane): Promise<readonly number[] | undefined> {
    if (this.mode !== 'specific') return undefined;
    return (await this.store.getTerminal(lane.id))?.accessGroups ?? [];
  }

  /** Pull-to-last-push latency: from a device event's arrival to the last push it caused. */
  protected trackLatency(userId: string, since: number, pushes: number): void {
    const cur = this.pending.get(userId);
    this.pending.set(userId, { since: cur?.since ?? since, remaining: (cur?.remaining ?? 0) + pushes });
    // Pushes owed to terminals that stay offline for days would otherwise pile up here.
    if (this.pending.size > 100_000) this.pending.delete(this.pending.keys().next().value!);
  }

  protected pushDone(userId: string): void {
    const p = this.pending.get(userId);
    if (!p || --p.remaining > 0) return;
    this.pending.delete(userId);
    this.stats.lastPushLatencyMs.push(this.now() - p.since);
    if (this.stats.lastPushLatencyMs.length > 10_000) this.stats.lastPushLatencyMs.splice(0, 5_000);
  }

  // --------------------------------------------------------------- events

  protected emitEvent(type: string, terminalId: string, userId: string | null, detail: string): void {
    this.durably({ type, terminalId, userId, detail });
    this.notify(type, terminalId, userId ?? undefined);
  }

  /** Records a monitoring event without waiting (kept in memory by the store while the database refuses writes). */
  protected durably(ev: EventInput): void {
    this.store.recordEventDurably(ev).catch((e) => this.log.error({ err: (e as Error).message, type: ev.type }, 'monitoring event not recorded'));
  }

  protected notify(type: string, terminalId?: string, userId?: string): void {
    if (this.listeners.length === 0) return;
    // one object for every listener (read-only to them): a push batch notifies once per user
    const e = { type, terminalId, userId };
    for (const l of this.listeners) l(e);
  }
}
