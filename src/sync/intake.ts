// The sync engine's intake: a terminal's event log from the stored cursor
// (or a reconcile when the log cannot say what changed), its facts in order,
// pulls of the users they name, and the merge of those users together with the
// cursor, pull failures and monitoring events in one store operation; the
// facts are acknowledged to the terminal only after it. See scheduling.ts for
// the layers.
import type { MergeContext, MergeResult } from '../store/types.js';
import { StoreWriteError } from '../store/errors.js';
import type { UserRecord } from '../model/user.js';
import type { DeviceFact, DeviceSession, ReadResult } from './ports.js';
import { EngineCore } from './scheduling.js';
import { EngineEvent, INGEST_LINGER_MS, PULL_BATCH, isDeviceChange, type IngestStep, type Lane } from './lanes.js';

export abstract class IntakeEngine extends EngineCore {
  // ------------------------------------------------------------ log intake

  protected async startLog(lane: Lane, link: DeviceSession): Promise<void> {
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
      maxRatePerSec: this.eventRate,
      onLimit: (e) => this.peerLimit(lane, link, e.limit, e.figures, e.message),
    });
    if (reason) this.schedule(lane);
  }

  protected onFacts(lane: Lane, link: DeviceSession, epoch: number, facts: DeviceFact[]): void {
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
  protected logReset(lane: Lane, epoch: number): void {
    const reason = 'terminal was reset while connected (event IDs restarted under a new log epoch)';
    this.log.info({ terminal: lane.id, from: lane.epoch, to: epoch }, `${reason}; reconciling by user list`);
    this.emitEvent(EngineEvent.TERMINAL_RESET, lane.id, null, JSON.stringify({ reason, fromEpoch: lane.epoch, toEpoch: epoch }));
    lane.gen++;
    lane.epoch = epoch;
    lane.inbox = [];
    lane.arrivals.clear();
    lane.subscribedFrom = lane.processed = 0;
    lane.wantReconcile = true;
    this.releaseHeld(lane);
  }

  /**
   * The users this terminal reported changed on the device whose facts were
   * received and not yet processed (in the inbox, pulls in flight included:
   * a fact leaves the inbox only once its user is merged, or its pull failed
   * and was recorded). A push of such a user to this terminal would overwrite
   * the device's change before the server read it (a terminal's write
   * replaces the whole user): it is held back (see push.ts) until the fact is
   * processed. Null: none (or the server does not pull device changes).
   */
  protected unpulled(lane: Lane): Set<string> | null {
    if (!this.pullEnabled()) return null;
    let out: Set<string> | null = null;
    for (const f of lane.inbox) if (isDeviceChange(f)) (out ??= new Set()).add(f.userId!);
    return out;
  }

  /** Facts left the inbox: the pushes held back for them go now (those still waiting are held again). */
  protected releaseHeld(lane: Lane): void {
    if (lane.held.size === 0) return;
    lane.held.clear();
    if (lane.link) this.kickPush(lane);
  }

  // ---------------------------------------------------------------- ingest
  /**
   * Takes the events queued for a terminal (up to one batch of users), pulls the
   * users they name, merges them in one transaction that also advances the
   * cursor and fills the outbox, then acknowledges the events. On a database
   * failure nothing is acknowledged or advanced: the same events are processed
   * again after the retry delay, and after a restart they are read again from
   * the terminal.
   */
  protected async ingest(lane: Lane, link: DeviceSession): Promise<void> {
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

  protected async mergeAndAck(o: IngestStep): Promise<void> {
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
      results = await this.store.ingest({ terminalId: lane.id, fence: this.fence(lane.id), merges: out.merges, advance, events, pullFailed: out.failed, pullGone: out.gone });
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
      this.releaseHeld(lane);
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
  protected pullOutcome(lane: Lane, link: DeviceSession, pulled: ReadResult[], refOf: (userId: string) => number) {
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

  protected pullFailed(lane: Lane, failed: { userId: string; reason: string }[]): void {
    this.stats.pullsFailed += failed.length;
    for (const f of failed) {
      this.log.warn({ terminal: lane.id, user: f.userId, reason: f.reason }, 'device user could not be read; recorded as a pull failure and pulled again later');
      this.notify(EngineEvent.USER_PULL_FAILED, lane.id, f.userId);
    }
  }

  /** Pulls again users whose earlier pull failed; clears the rows of those read (or gone). */
  protected async repull(lane: Lane, link: DeviceSession): Promise<void> {
    const ids = [...lane.repull].slice(0, Math.min(link.capabilities.maxBatch, PULL_BATCH));
    for (const id of ids) lane.repull.delete(id);
    try {
      const pulled = await link.getUsers(ids);
      await this.turn();
      if (lane.link !== link) return;
      const out = this.pullOutcome(lane, link, pulled, () => 0);
      const results = await this.store.ingest({ terminalId: lane.id, fence: this.fence(lane.id), merges: out.merges, advance: null, events: out.events, pullFailed: out.failed, pullGone: out.gone });
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
}
