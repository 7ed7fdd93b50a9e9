// The recent tail of the change feed, kept in memory and shared by every
// terminal's push lane: in a burst the lanes read the same recent entries, so
// a batch read past a cursor inside the tail is served from here instead of a
// range read of SQLite per terminal (one read per entry, not one per entry and
// terminal).
//
// The tail holds, for every feed number after `base` up to `head`, the entry
// this connection committed with it (user, origin, tombstone or not), and
// whether it is still current: a user changed again takes a new number, and its
// older entry no longer exists in the feed (the users table keeps one row per
// user, at its latest number). Entries are noted inside the write transaction
// and take effect at its commit; a rollback drops them.
//
// The tail is valid only while every change to the feed went through this
// connection's noted writes. It is dropped (and started again, empty, at the
// head) when another connection committed (PRAGMA data_version moved), when
// tombstones are collected, and when a write transaction ended without the
// Store seeing it end (see Store.write).

export interface TailEntry {
  readonly seq: number;
  readonly userId: string;
  /** the terminal whose own unchanged merge this is (its reads skip it), or null */
  readonly origin: string | null;
  readonly dead: boolean;
  /** false once the user took a newer number (or the entry was collected) */
  live: boolean;
}

/** entries kept at most: a terminal further behind than this reads SQLite */
export const FEED_TAIL_MAX = 50_000;

export class FeedTail {
  private entries: TailEntry[] = [];
  /** index of the first kept entry in `entries` (dropped ones are spliced away in chunks) */
  private first = 0;
  private readonly byUser = new Map<string, TailEntry>();
  private pending: TailEntry[] = [];
  /** every feed number after base is in the tail; null: not started */
  private base: number | null = null;
  private head = 0;
  private dataVersion = -1;

  constructor(private readonly max = FEED_TAIL_MAX) {}

  /** true when the tail holds everything after `after` (for this data_version) */
  covers(after: number, dataVersion: number): boolean {
    return this.base !== null && dataVersion === this.dataVersion && this.pending.length === 0 && after >= this.base;
  }

  get started(): boolean {
    return this.base !== null;
  }

  /** Starts an empty tail at the feed head (read in the same snapshot as dataVersion). */
  start(head: number, dataVersion: number): void {
    this.reset();
    this.base = this.head = head;
    this.dataVersion = dataVersion;
  }

  /** Drops everything: the next read starts the tail again. */
  reset(): void {
    this.entries = [];
    this.first = 0;
    this.byUser.clear();
    this.pending = [];
    this.base = null;
    this.head = 0;
  }

  /** A change written inside the current write transaction. */
  note(seq: number, userId: string, origin: string | null, dead: boolean): void {
    if (this.base === null) return;
    this.pending.push({ seq, userId, origin, dead, live: true });
  }

  /** true when a transaction's notes are waiting for commit/rollback */
  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** The write transaction committed: its notes enter the tail in number order. */
  commit(dataVersion: number): void {
    if (this.base === null) {
      this.pending = [];
      return;
    }
    // another connection committed since the tail was last in step: what it wrote is not here
    if (dataVersion !== this.dataVersion) return this.reset();
    for (const e of this.pending) {
      if (e.seq <= this.head) return this.reset(); // out of order: cannot happen; be safe
      const old = this.byUser.get(e.userId);
      if (old) old.live = false;
      this.byUser.set(e.userId, e);
      this.entries.push(e);
      this.head = e.seq;
    }
    this.pending = [];
    const kept = this.entries.length - this.first;
    if (kept > this.max) {
      const drop = kept - this.max;
      for (let i = this.first; i < this.first + drop; i++) {
        const e = this.entries[i];
        if (this.byUser.get(e.userId) === e) this.byUser.delete(e.userId);
      }
      this.first += drop;
      this.base = this.entries[this.first - 1].seq;
      // compact now and then, not at every drop
      if (this.first > this.max) {
        this.entries = this.entries.slice(this.first);
        this.first = 0;
      }
    }
  }

  /** The write transaction rolled back: its notes go. */
  rollback(): void {
    this.pending = [];
  }

  /** the newest number in the tail (the feed head while valid) */
  get headSeq(): number {
    return this.head;
  }

  /**
   * The current entries after `after` for terminal `t` (its own unchanged
   * merges skipped), at most `limit`, in number order. Call only when covers().
   */
  read(t: string, after: number, limit: number): TailEntry[] {
    const es = this.entries;
    let lo = this.first;
    let hi = es.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (es[mid].seq <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: TailEntry[] = [];
    for (let i = lo; i < es.length && out.length < limit; i++) {
      const e = es[i];
      if (e.live && e.origin !== t) out.push(e);
    }
    return out;
  }
}
