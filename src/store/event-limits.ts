// Per-terminal rate limits on the monitoring events a terminal can make the
// daemon write (a delete on the device, a refused push, a log gap, a
// reconnect...). Without them one terminal streaming device-origin deletes
// wrote 1.7 million rows in ten seconds. Each (terminal, event type) has a
// token bucket; an event over the limit is not written but counted, and the
// counts are written as one EVENTS_SUPPRESSED event per terminal when
// takeSuppressed() is called (the daemon's event maintenance, every few
// seconds). Memory: one bucket per (terminal, type) that is not full, and one
// counter per (terminal, type) with suppressed events.
import { TokenBucket } from '../rate-limit.js';

/** Event types a terminal's behaviour causes; the limits apply to these only. */
export const TERMINAL_TRIGGERED_EVENTS: readonly string[] = [
  'USER_DELETED_ON_DEVICE',
  'PUSH_FAILED',
  'LOG_GAP',
  'TERMINAL_RESET',
  'RECONCILE',
  'TERMINAL_ONLINE',
  'TERMINAL_OFFLINE',
  'TERMINAL_PENDING',
  'PEER_IDENTITY_CONFLICT',
  'PEER_IDENTITY_MISMATCH',
];

export const EVENTS_SUPPRESSED = 'EVENTS_SUPPRESSED';

export interface EventLimitOptions {
  /** events per second per terminal and type */
  ratePerSec: number;
  /** the burst above the rate */
  burst: number;
  /** the types limited (default TERMINAL_TRIGGERED_EVENTS) */
  types?: readonly string[];
}

export const DEFAULT_EVENT_LIMITS: EventLimitOptions = { ratePerSec: 10, burst: 200 };

export interface SuppressedSummary {
  terminalId: string;
  /** events not written, by type */
  counts: Record<string, number>;
  /** ms since the epoch of the first event not written */
  since: number;
}

export class EventLimiter {
  private readonly types: ReadonlySet<string>;
  private readonly buckets = new Map<string, TokenBucket>();
  private suppressed = new Map<string, SuppressedSummary>();
  private admitted = 0;

  constructor(
    readonly opts: EventLimitOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.types = new Set(opts.types ?? TERMINAL_TRIGGERED_EVENTS);
  }

  /** true: write the event; false: it is over its terminal's limit and was counted instead */
  admit(terminalId: string | null | undefined, type: string): boolean {
    return this.admitMany(terminalId, type, 1) === 1;
  }

  /** Of `n` events of one terminal and type, how many may be written (the first ones); the rest are counted. */
  admitMany(terminalId: string | null | undefined, type: string, n: number): number {
    if (!terminalId || !this.types.has(type)) return n;
    const key = `${terminalId}\u0000${type}`;
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(this.opts.ratePerSec, this.opts.burst, this.now);
      this.buckets.set(key, b);
    }
    const ok = b.takeUpTo(n);
    // now and then, forget buckets that are full again (a fresh bucket is the same)
    if (ok > 0 && ++this.admitted % 4096 === 0) for (const [k, v] of this.buckets) if (v.full) this.buckets.delete(k);
    if (ok < n) {
      let s = this.suppressed.get(terminalId);
      if (!s) {
        s = { terminalId, counts: {}, since: this.now() };
        this.suppressed.set(terminalId, s);
      }
      s.counts[type] = (s.counts[type] ?? 0) + (n - ok);
    }
    return ok;
  }

  get pendingSummaries(): number {
    return this.suppressed.size;
  }

  /** The counts since the last call, one summary per terminal; the caller writes them. */
  takeSuppressed(): SuppressedSummary[] {
    const out = [...this.suppressed.values()];
    this.suppressed = new Map();
    return out;
  }

  /** Puts summaries back (their write failed), adding to what was counted since. */
  restore(list: readonly SuppressedSummary[]): void {
    for (const s of list) {
      const cur = this.suppressed.get(s.terminalId);
      if (!cur) this.suppressed.set(s.terminalId, s);
      else {
        cur.since = Math.min(cur.since, s.since);
        for (const [t, n] of Object.entries(s.counts)) cur.counts[t] = (cur.counts[t] ?? 0) + n;
      }
    }
  }
}
