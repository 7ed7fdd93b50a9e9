// The sync engine: log ingestion, pull, merge, replication by change feed. It sees terminals only as DeviceSession (ports.ts: facts, reasons,
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
//
// This file holds the public API (sessions, modes, resync, idle, stop) and the
// dispatch of a lane's task; the tasks are in scheduling.ts, intake.ts,
// push.ts and reconcile.ts (layers, each extending the one before).
import { LeaseLostError, StoreWriteError } from '../store/errors.js';
import type { SyncMode } from '../store/types.js';
import { DriverError, type DeviceSession } from './ports.js';
import { PeerLimitError } from './peer-limit.js';
import { BUSY_RETRY_MIN_MS, type EngineOptions, type Lane, type Task } from './lanes.js';
import { ReconcileEngine, ReconcileTimeout } from './reconcile.js';

export { DEFAULT_RECONCILE_TIMEOUT_SEC, EngineEvent, Priority, type EngineOptions, type EngineStats, type EngineTuning } from './lanes.js';

export class SyncEngine extends ReconcileEngine {
  constructor(o: EngineOptions) {
    super(o);
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
    lane.held.clear();
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
    lane.held.clear();
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

  /** Another daemon drives this terminal now: nothing was written; its session here ends. */
  protected leaseLost(lane: Lane, link: DeviceSession, e: LeaseLostError): void {
    this.stats.leaseLost = (this.stats.leaseLost ?? 0) + 1;
    this.log.warn({ terminal: lane.id, fence: e.fence, err: e.message }, 'write refused: terminal lease lost; closing session');
    if (!link.closed) link.close(`terminal lease lost: ${e.message}`);
  }

  protected async run(lane: Lane, task: Task): Promise<void> {
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
      else if (e instanceof LeaseLostError) this.leaseLost(lane, link, e);
      else if (e instanceof DriverError && e.reason === 'busy' && !link.closed) this.busyLater(lane, e.message);
      else if (!link.closed) {
        this.log.warn({ terminal: lane.id, task, err: (e as Error).message }, 'terminal request failed; closing session');
        link.close(`${task} failed: ${(e as Error).message}`);
      }
    }
  }
}
