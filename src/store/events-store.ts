// Monitoring events of the Store: append, list, bound (retention slices),
// per-terminal rate limits with their summaries, and the in-memory queue that
// keeps events while the database refuses writes. See store-base.ts for the
// layers.
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import { StoreWriteError } from './errors.js';
import { DEFAULT_EVENT_LIMITS, EVENTS_SUPPRESSED, EventLimiter } from './event-limits.js';
import { eventFromRow, type EventDbRow } from './statements.js';
import { StoreBase } from './store-base.js';
import type { DiskUsage, DurableEventResult, EventInput, EventQuery, StoredEvent, StoreOptions } from './types.js';

const DEFAULT_MAX_PENDING_EVENTS = 10_000;
const MAX_EVENT_PAGE = 10_000;
/** runs of at least this many plain events are inserted with one statement */
const BULK_EVENTS = 8;

export class EventsStore extends StoreBase {
  protected readonly maxPending: number;
  protected pending: EventInput[] = [];
  protected dropped = 0;
  protected readonly limiter: EventLimiter | null;

  protected constructor(db: Database.Database, file: string, opts: StoreOptions) {
    super(db, file, opts);
    this.maxPending = opts.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    const limits = opts.eventLimits === undefined ? DEFAULT_EVENT_LIMITS : opts.eventLimits;
    this.limiter = limits ? new EventLimiter(limits, this.now) : null;
  }

  /** Appends a monitoring event; returns its ID. */
  appendEvent(ev: EventInput): number {
    return this.write('appendEvent', () => this.insertEvent(ev));
  }

  /** Appends several events in one transaction; returns their IDs. */
  appendEvents(evs: readonly EventInput[]): number[] {
    return this.write('appendEvents', () => evs.map((e) => this.insertEvent(e)));
  }

  /**
   * Writes one event; an event a terminal triggered beyond its rate limit is
   * counted instead (see flushSuppressedEvents) and 0 returned.
   */
  protected insertEvent(ev: EventInput, limited = true): number {
    if (limited && this.limiter && !this.limiter.admit(ev.terminalId, ev.type)) return 0;
    const r = this.s.insEvent.run(ev.time ?? this.now(), ev.type, ev.terminalId ?? null, ev.userId ?? null, ev.detail ?? null);
    return Number(r.lastInsertRowid);
  }

  /**
   * Writes a batch of events (e.g. a terminal's deletes), each run of one
   * terminal and type admitted by the rate limits at once: the first events
   * of a run up to the tokens left are written, the rest only counted, so a
   * flood costs a count and not a row or a check per event.
   */
  protected insertEvents(evs: readonly EventInput[], now: number): void {
    const ins = this.s.insEvent;
    for (let i = 0; i < evs.length; ) {
      const first = evs[i];
      let j = i + 1;
      while (j < evs.length && evs[j].type === first.type && evs[j].terminalId === first.terminalId) j++;
      const allowed = this.limiter ? this.limiter.admitMany(first.terminalId, first.type, j - i) : j - i;
      let k = i;
      // a run of plain events (a push batch's USER_UPDATE_SUCCESS_SERVER, one per user): one
      // statement for the run, the user IDs as a JSON array, IDs ascending in their order
      if (allowed >= BULK_EVENTS) {
        const end = i + allowed;
        while (k < end && evs[k].detail == null && evs[k].time === undefined && typeof evs[k].userId === 'string') k++;
        if (k === end) this.s.insEventsBulk.run(now, first.type, first.terminalId ?? null, JSON.stringify(evs.slice(i, end).map((e) => e.userId)));
        else k = i;
      }
      for (; k < i + allowed; k++) {
        const e = evs[k];
        ins.run(e.time ?? now, e.type, e.terminalId ?? null, e.userId ?? null, e.detail ?? null);
      }
      i = j;
    }
  }

  listEvents(q: EventQuery = {}): StoredEvent[] {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.after !== undefined) (where.push('id > ?'), vals.push(q.after));
    if (q.before !== undefined) (where.push('id < ?'), vals.push(q.before));
    if (q.type !== undefined) (where.push('type = ?'), vals.push(q.type));
    if (q.terminalId !== undefined) (where.push('terminal_id = ?'), vals.push(q.terminalId));
    if (q.userId !== undefined) (where.push('user_id = ?'), vals.push(q.userId));
    const limit = Math.max(1, Math.min(MAX_EVENT_PAGE, q.limit ?? 100));
    const sql = `SELECT * FROM events${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT ?`;
    return (this.cached(sql).all(...vals, limit) as EventDbRow[]).map(eventFromRow);
  }

  eventCount(): number {
    return this.s.eventCount.get() as number;
  }

  /**
   * Bounds the monitoring log: keeps the newest `keepLast` events and/or drops
   * events older than `olderThan` (ms since the epoch). Returns events removed.
   */
  pruneEvents(opts: { keepLast?: number; olderThan?: number }): number {
    return this.write('pruneEvents', () => {
      let n = 0;
      if (opts.keepLast !== undefined) n += this.s.pruneKeep.run(Math.max(0, opts.keepLast)).changes;
      if (opts.olderThan !== undefined) n += this.s.pruneBefore.run(opts.olderThan).changes;
      return n;
    });
  }

  /**
   * One slice of the background retention: deletes at most `limit` events
   * that are beyond the newest `keepLast` or older than `olderThan` (ms since
   * the epoch), in one short transaction. Returns events removed; call again
   * (after yielding to the event loop) until it returns less than `limit`.
   */
  pruneEventsSlice(opts: { keepLast?: number; olderThan?: number; limit: number }): number {
    return this.write('pruneEvents', () => {
      const limit = Math.max(1, opts.limit);
      let n = 0;
      if (opts.keepLast !== undefined) n += this.s.pruneKeepSlice.run(Math.max(0, opts.keepLast), limit).changes;
      if (opts.olderThan !== undefined && n < limit) n += this.s.pruneBeforeSlice.run(opts.olderThan, limit - n).changes;
      return n;
    });
  }

  /**
   * Writes what the rate limits held back since the last call: one
   * EVENTS_SUPPRESSED event per terminal, detail {counts: {TYPE: n}, since}.
   * Returns the events written (0 when nothing was suppressed or the database
   * refused; the counts are then kept for the next call).
   */
  flushSuppressedEvents(): number {
    if (!this.limiter || this.limiter.pendingSummaries === 0) return 0;
    const list = this.limiter.takeSuppressed();
    try {
      this.write('flushSuppressedEvents', () => {
        const now = this.now();
        for (const s of list) this.insertEvent({ type: EVENTS_SUPPRESSED, terminalId: s.terminalId, time: now, detail: JSON.stringify({ counts: s.counts, since: s.since }) }, false);
      });
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.limiter.restore(list);
      return 0;
    }
    const total = list.reduce((a, s) => a + Object.values(s.counts).reduce((x, y) => x + y, 0), 0);
    this.log?.warn({ terminals: list.map((s) => s.terminalId).slice(0, 20), suppressed: total }, 'monitoring events over their per-terminal rate limit were counted, not written');
    return list.length;
  }

  /** Bytes of the database and its WAL on disk, and the free pages inside the file. */
  diskUsage(): DiskUsage {
    const size = (f: string) => {
      try {
        return fs.statSync(f).size;
      } catch {
        return 0;
      }
    };
    const memory = this.path === ':memory:';
    return {
      dbBytes: memory ? 0 : size(this.path),
      walBytes: memory ? 0 : size(this.path + '-wal'),
      pageSize: this.db.pragma('page_size', { simple: true }) as number,
      pageCount: this.db.pragma('page_count', { simple: true }) as number,
      freePages: this.db.pragma('freelist_count', { simple: true }) as number,
    };
  }

  /**
   * Appends an event, and if the database cannot take it (read-only, full,
   * I/O error, busy, closed), keeps it in memory for flushPendingEvents. The
   * memory queue is bounded (maxPendingEvents); when full the oldest event is
   * dropped and counted in droppedEventCount. Never throws a StoreWriteError.
   */
  recordEventDurably(ev: EventInput): DurableEventResult {
    if (this.limiter && !this.limiter.admit(ev.terminalId, ev.type)) return { stored: false, suppressed: true };
    const stamped: EventInput = { ...ev, time: ev.time ?? this.now() };
    if (this.pending.length > 0) {
      // keep order: older pending events go first
      this.pushPending(stamped);
      this.flushPendingEvents();
      return this.pending.length === 0 ? { stored: true, id: this.lastEventId() } : { stored: false, pending: this.pending.length };
    }
    try {
      return { stored: true, id: this.write('appendEvent', () => this.insertEvent(stamped, false)) };
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.pushPending(stamped);
      this.log?.warn({ code: err.code, type: ev.type, pending: this.pending.length }, 'monitoring event kept in memory: database write failed');
      return { stored: false, pending: this.pending.length };
    }
  }

  protected lastEventId(): number {
    return this.cached('SELECT max(id) FROM events').pluck().get() as number;
  }

  protected pushPending(ev: EventInput): void {
    if (this.maxPending <= 0) {
      this.dropped++;
      return;
    }
    while (this.pending.length >= this.maxPending) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(ev);
  }

  /** Writes the pending events in one transaction. Returns how many were saved (0 when it failed again). */
  flushPendingEvents(): number {
    if (this.pending.length === 0) return 0;
    const batch = this.pending.slice();
    try {
      // admitted by the rate limits when they were recorded
      this.write('appendEvents', () => batch.map((e) => this.insertEvent(e, false)));
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      return 0;
    }
    // events recorded while flushing (none: we are synchronous) would follow the batch
    this.pending.splice(0, batch.length);
    this.log?.info({ flushed: batch.length, dropped: this.dropped }, 'pending monitoring events saved');
    return batch.length;
  }

  get pendingEventCount(): number {
    return this.pending.length;
  }

  /** events dropped because the in-memory queue was full */
  get droppedEventCount(): number {
    return this.dropped;
  }
}
