// The terminal's event log: a fixed-capacity ring. Event IDs start at 1 and grow
// by one per event; when the ring is full the oldest event is overwritten, so
// firstEventId moves forward. logEpoch is random and renewed whenever IDs restart
// (factory reset). Storage grows lazily up to the capacity, so a large capacity
// costs nothing until events happen.
import { randomInt } from 'node:crypto';
import type { EventRecord } from '../model/event.js';

export type NewEvent = Omit<EventRecord, 'id'>;

/** A random non-zero u32. */
export function newLogEpoch(previous?: number): number {
  for (;;) {
    const e = randomInt(1, 0x1_0000_0000 - 1);
    if (e !== previous) return e;
  }
}

export class EventRing {
  readonly capacity: number;
  /** circular storage; grows by push until it holds `capacity` events */
  private buf: EventRecord[] = [];
  /** index in buf of the oldest event */
  private head = 0;
  private count = 0;
  private _firstEventId = 0;
  private _lastEventId = 0;
  private _logEpoch: number;

  constructor(capacity: number, logEpoch?: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0xffffffff) throw new RangeError('log capacity must be a positive integer');
    this.capacity = capacity;
    this._logEpoch = logEpoch ?? newLogEpoch();
  }

  get logEpoch(): number {
    return this._logEpoch;
  }

  /** newest event ID, 0 when none */
  get lastEventId(): number {
    return this._lastEventId;
  }

  /** oldest event ID still held, 0 when the ring is empty */
  get firstEventId(): number {
    return this._firstEventId;
  }

  get size(): number {
    return this.count;
  }

  /** Appends one event and returns it with its ID. */
  append(e: NewEvent): EventRecord {
    // u32 exhausted: a real terminal has to restart its IDs, which is a log reset (new epoch)
    if (this._lastEventId >= 0xffffffff) this.reset();
    const rec: EventRecord = { id: this._lastEventId + 1, ...e };
    this.push(rec);
    return rec;
  }

  private push(rec: EventRecord): void {
    if (this.count < this.capacity) {
      if (this.buf.length < this.capacity && this.head === 0 && this.count === this.buf.length) this.buf.push(rec);
      else this.buf[(this.head + this.count) % this.buf.length] = rec;
      this.count++;
    } else {
      this.buf[this.head] = rec; // overwrite the oldest
      this.head = (this.head + 1) % this.buf.length;
    }
    this._lastEventId = rec.id;
    this._firstEventId = this.buf[this.head].id;
  }

  /** The event with this ID, if still held. */
  get(id: number): EventRecord | undefined {
    if (this.count === 0 || id < this._firstEventId || id > this._lastEventId) return undefined;
    return this.buf[(this.head + (id - this._firstEventId)) % this.buf.length];
  }

  /** Up to maxCount events with ID > afterId, ascending. */
  after(afterId: number, maxCount: number): EventRecord[] {
    const out: EventRecord[] = [];
    if (this.count === 0 || maxCount <= 0) return out;
    const from = Math.max(afterId + 1, this._firstEventId);
    const to = Math.min(this._lastEventId, from + maxCount - 1);
    const n = this.buf.length;
    for (let id = from, i = (this.head + (from - this._firstEventId)) % n; id <= to; id++, i = i + 1 === n ? 0 : i + 1) out.push(this.buf[i]);
    return out;
  }

  /** Number of events with ID > afterId still held. */
  countAfter(afterId: number): number {
    if (this.count === 0) return 0;
    return Math.max(0, this._lastEventId - Math.max(afterId, this._firstEventId - 1));
  }

  /** Every event held, oldest first. */
  all(): EventRecord[] {
    return this.after(0, this.count);
  }

  /** Clears the log; IDs restart at 1 under a new epoch. */
  reset(): void {
    this.buf = [];
    this.head = 0;
    this.count = 0;
    this._firstEventId = 0;
    this._lastEventId = 0;
    this._logEpoch = newLogEpoch(this._logEpoch);
  }

  /**
   * Restores persisted state: the epoch, the last ID and the events held (ascending,
   * consecutive IDs ending at lastEventId; anything else is dropped).
   */
  restore(logEpoch: number, lastEventId: number, events: EventRecord[]): void {
    this.buf = [];
    this.head = 0;
    this.count = 0;
    this._logEpoch = logEpoch;
    // keep the trailing run of consecutive IDs that ends at lastEventId, at most `capacity` of them
    let start = events.length;
    let want = lastEventId;
    while (start > 0 && events.length - start < this.capacity && events[start - 1].id === want) {
      start--;
      want--;
    }
    for (let i = start; i < events.length; i++) this.push(events[i]);
    this._lastEventId = lastEventId;
    this._firstEventId = this.count === 0 ? 0 : this.buf[this.head].id;
  }
}
