// The sync engine's pushes: per terminal, the owed set first (targeted
// pushes), then the change feed after the terminal's cursor in its scope, in
// pipelined batches of PUT_USERS; the answers are recorded with the cursor in
// one store operation. See scheduling.ts for the layers.
import type { FeedBatch, OwedEntry, PushAck } from '../store/backend.js';
import type { EventInput } from '../store/types.js';
import { DriverError, type DeviceSession, type RefusalReason, type WriteResult } from './ports.js';
import { IntakeEngine } from './intake.js';
import { EngineEvent, type Inflight, type Lane, type PushBatch } from './lanes.js';

export abstract class PushEngine extends IntakeEngine {

  /**
   * One push step of a lane: the owed set first (targeted pushes), then the
   * feed after the terminal's cursor, in its scope. Batches are pipelined: the
   * next PUT_USERS is sent while the previous one is still being written by
   * the terminal (which serves its requests in order), so a terminal never
   * sits idle waiting for the server between two batches; at most two batches
   * per terminal are in flight. The step ends once the previous batch is
   * answered and recorded.
   */
  protected async pushSome(lane: Lane, link: DeviceSession): Promise<void> {
    const prev = lane.inflight && lane.inflight.link === link ? lane.inflight : null;
    const max = Math.min(link.capabilities.maxBatch, lane.batchLimit);
    // cleared BEFORE the reads, not after: a feed change that wakes the lane while
    // they wait on the database (a real round trip on PostgreSQL, where another
    // daemon's commit arrives by NOTIFY) sets it again and is not lost
    lane.wantPush = false;
    let batch: Awaited<ReturnType<typeof this.owedBatch>>;
    try {
      batch = (await this.owedBatch(lane, prev, max)) ?? (await this.feedBatch(lane, prev, max));
    } catch (err) {
      lane.wantPush = true; // retried after the database is back
      throw err;
    }
    if (batch === 'wait') {
      // No full batch waits behind the one in flight: let that one finish first, so
      // that what arrives meanwhile goes out together instead of as many small
      // requests (its answer may also leave entries behind: look again after it).
      await prev!.done;
      lane.wantPush = true;
      return;
    }
    if (batch === null) {
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
  protected async owedBatch(lane: Lane, prev: Inflight | null, max: number): Promise<PushBatch | 'wait' | null> {
    if (prev && prev.kind !== 'owed') {
      // a feed batch is in flight: the owed set waits for its answer (one kind in flight at a time)
      return null;
    }
    let read: OwedEntry[] = await this.store.takeOwed(lane.id, max, prev?.last);
    let items = read;
    if (prev) {
      items = items.filter((i) => !prev.users.has(i.userId));
      if (items.length < max) return items.length || (await this.store.owedCount(lane.id)) > 0 ? 'wait' : null;
    }
    // a user with a device change not yet pulled stays owed (unacknowledged) until it is
    items = this.holdBack(lane, items);
    // a whole batch held back: read on behind it (what is held is read again once released)
    while (items.length === 0 && read.length === max) {
      const end = read[read.length - 1];
      read = await this.store.takeOwed(lane.id, max, { enqueuedAt: end.enqueuedAt, userId: end.userId });
      items = this.holdBack(lane, read);
    }
    if (items.length === 0) return null;
    const records: PushBatch['records'] = [];
    const gone: PushBatch['gone'] = [];
    for (const it of items) {
      if (it.user) records.push({ user: it.user, gen: it.gen });
      else gone.push({ userId: it.userId, gen: it.gen }); // deleted on the server: the terminal deletes it too
    }
    const tail = read[read.length - 1];
    return { kind: 'owed', records, gone, last: { enqueuedAt: tail.enqueuedAt, userId: tail.userId } };
  }

  /**
   * Leaves out the records of users this terminal reported changed and the
   * server has not yet pulled (see unpulled): written now they would replace
   * the device's change before it is read. Each is remembered in lane.held;
   * once the fact is processed the lane pushes again (releaseHeld) and the
   * user, still owed, goes with the server's record then (the merged one).
   * A deletion on the server is not held: it goes as it is.
   */
  protected holdBack<T extends { userId: string; user: unknown }>(lane: Lane, items: T[]): T[] {
    const waiting = this.unpulled(lane);
    if (!waiting) return items;
    return items.filter((i) => {
      if (!i.user || !waiting.has(i.userId)) return true;
      lane.held.add(i.userId);
      return false;
    });
  }

  /** The next batch of the feed after the cursor (or after the batch in flight), in the terminal's scope. */
  protected async feedBatch(lane: Lane, prev: Inflight | null, max: number): Promise<PushBatch | 'wait' | null> {
    if (prev && prev.kind !== 'feed') return 'wait';
    // fewer numbers than a batch were handed out after the batch in flight: no full batch can wait behind it
    if (prev && prev.upTo !== undefined && this.headSeen > 0 && this.headSeen - prev.upTo < max) return 'wait';
    const groups = await this.scopeOf(lane);
    const read: FeedBatch = await this.store.readFeed(lane.id, { after: prev?.upTo, limit: max, groups });
    if (prev && read.entries.length < max) return 'wait';
    if (read.entries.length === 0) {
      // nothing in scope up to the head: the cursor passes what lies between
      if (read.upTo > read.from) await this.store.recordPush({ terminalId: lane.id, fence: this.fence(lane.id), feed: { from: read.from, to: read.upTo } });
      return null;
    }
    const records: PushBatch['records'] = [];
    const gone: PushBatch['gone'] = [];
    const send = this.holdBack(lane, read.entries);
    for (const e of send) {
      if (e.user) records.push({ user: e.user });
      else gone.push({ userId: e.userId });
    }
    // the cursor moves past the users held back: they are owed to the terminal instead, in the same transaction
    let held: string[] | undefined;
    if (send.length < read.entries.length) {
      const sent = new Set(send);
      held = read.entries.filter((e) => !sent.has(e)).map((e) => e.userId);
    }
    return { kind: 'feed', records, gone, feed: { from: read.from, to: read.upTo }, held };
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
  protected async completePush(lane: Lane, link: DeviceSession, batch: PushBatch): Promise<void> {
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
    // feed entries carry no generation: their acks only clear push failures (and need no object per user)
    const ok: PushAck[] = batch.gone.map((g) => ({ userId: g.userId, gen: g.gen }));
    const okUsers: string[] = [];
    let refused: { userId: string; gen?: number; reason: RefusalReason; detail: string; code: number }[] | null = null;
    let later: string[] | null = null;
    const events: EventInput[] = [];
    const t = lane.id;
    const recs = batch.records;
    for (let k = 0; k < recs.length; k++) {
      const r = recs[k];
      const res = results[k];
      const userId = r.user.id;
      // a record without an answer is not known to be written: it stays owed
      if (!res || (!res.ok && (res.reason === 'busy' || res.reason === 'transport'))) (later ??= []).push(userId);
      else if (res.ok) {
        ok.push(r.gen === undefined ? { userId } : { userId, gen: r.gen });
        okUsers.push(userId);
        events.push({ type: EngineEvent.USER_UPDATE_SUCCESS_SERVER, terminalId: t, userId });
      } else (refused ??= []).push({ userId, gen: r.gen, reason: res.reason, detail: res.detail, code: res.code ?? 0 });
    }
    if (refused) for (const f of refused) events.push({ type: EngineEvent.PUSH_FAILED, terminalId: t, userId: f.userId, detail: JSON.stringify({ status: f.reason, reason: f.detail }) });
    await this.store.recordPush({
      terminalId: t,
      fence: this.fence(t),
      feed: batch.feed,
      ok,
      refused: refused ? refused.map((f) => ({ userId: f.userId, gen: f.gen, code: f.code, reason: f.detail })) : [],
      // from the feed, a user not taken now is owed to the terminal; an owed entry simply stays
      later: batch.kind === 'feed' ? (batch.held ? [...(later ?? []), ...batch.held] : (later ?? [])) : [],
      events,
    });
    this.stats.pushes += okUsers.length;
    this.stats.pushesFailed += refused?.length ?? 0;
    for (const userId of okUsers) {
      this.notify(EngineEvent.USER_UPDATE_SUCCESS_SERVER, t, userId);
      this.pushDone(userId);
    }
    for (const f of refused ?? []) {
      this.log.warn({ terminal: lane.id, user: f.userId, reason: f.reason, detail: f.detail }, 'terminal refused pushed user');
      this.notify(EngineEvent.PUSH_FAILED, lane.id, f.userId);
      this.pushDone(f.userId);
    }
    if (later) this.busyLater(lane, `the terminal took ${later.length} of ${records.length} users not now`);
  }
}
