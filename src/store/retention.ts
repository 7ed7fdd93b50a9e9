// The monitoring log's upkeep, run by the daemon: every few seconds it writes
// the EVENTS_SUPPRESSED summaries of the per-terminal rate limits, and prunes
// the events beyond the retention (count and age) in slices: each slice is one
// short transaction sized to take a few milliseconds, and the event loop runs
// between slices, so a backlog of millions of rows never stalls a heartbeat.
import type { Logger } from 'pino';
import type { Store } from './store.js';

export interface RetentionOptions {
  /** events kept (the newest) */
  keep: number;
  /** events older than this are pruned */
  maxAgeDays: number;
  /** how often the upkeep runs, ms (default 10,000) */
  intervalMs?: number;
  /** the time one slice should take, ms (default 8); the slice size adapts to it */
  sliceTargetMs?: number;
}

export const DEFAULT_RETENTION = { keep: 1_000_000, maxAgeDays: 90 } as const;

const DAY_MS = 86_400_000;

export class EventMaintenance {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private stopped = false;
  /** rows per slice: starts small, grows while slices stay under the target time */
  private slice = 500;
  /** events pruned since start (for metrics and tests) */
  pruned = 0;

  constructor(
    private readonly store: Store,
    private readonly o: RetentionOptions,
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.runOnce(), this.o.intervalMs ?? 10_000);
    this.timer.unref();
    void this.runOnce();
  }

  /** One round: the suppressed-event summaries, then pruning until done. Resolves with the events pruned. */
  runOnce(): Promise<number> {
    if (this.running) return this.running;
    this.running = this.round().finally(() => (this.running = null));
    return this.running;
  }

  private async round(): Promise<number> {
    let total = 0;
    try {
      this.store.flushSuppressedEvents();
      const target = this.o.sliceTargetMs ?? 8;
      for (;;) {
        if (this.stopped || !this.store.isOpen) break;
        const limit = this.slice;
        const t0 = performance.now();
        const n = this.store.pruneEventsSlice({ keepLast: this.o.keep, olderThan: this.now() - this.o.maxAgeDays * DAY_MS, limit });
        const ms = performance.now() - t0;
        total += n;
        if (ms > target) this.slice = Math.max(50, Math.floor(this.slice / 2));
        else if (ms < target / 3 && n === limit) this.slice = Math.min(20_000, this.slice * 2);
        if (n < limit) break;
        // let heartbeats, sessions and the admin API run between slices
        await new Promise((r) => setImmediate(r));
      }
    } catch (e) {
      // the database refuses writes: try again next round
      this.log?.warn({ err: (e as Error).message }, 'monitoring-log upkeep failed; retrying later');
    }
    if (total > 0) this.log?.info({ pruned: total }, 'monitoring events pruned (retention)');
    this.pruned += total;
    return total;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
