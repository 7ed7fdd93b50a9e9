// How long the event loop stalls, and how much of each stall was the
// process's own work. A timer asks to run every `everyMs`; the stall of a tick
// is how much later than asked it ran. On a machine shared with other work a
// stall is either the process computing (a long synchronous slice: a big
// transaction, JSON of a big list, garbage collection) or the process waiting
// for a core (machine noise). The CPU time the process used over the same
// interval bounds the first: `own` = min(stall, CPU time), an upper bound on
// the daemon's own contribution that other processes' load does not inflate.
// (The CPU time is the whole process's, worker threads included, so `own`
// overstates rather than understates.)

/** upper bounds of the histogram buckets, seconds */
export const STALL_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface StallStats {
  /** ticks since the last take() */
  n: number;
  /** largest stall since the last take(), ms */
  maxMs: number;
  /** largest own part of a stall since the last take(), ms */
  ownMaxMs: number;
}

export class LoopStallMonitor {
  private timer: NodeJS.Timeout | null = null;
  private last = 0;
  private lastCpuUs = 0;
  private n = 0;
  private maxMs = 0;
  private ownMaxMs = 0;
  /** cumulative counts per bucket (the last one: above every bound), since start */
  readonly wallCounts = new Array<number>(STALL_BUCKETS.length + 1).fill(0);
  readonly ownCounts = new Array<number>(STALL_BUCKETS.length + 1).fill(0);
  wallSumSec = 0;
  ownSumSec = 0;
  total = 0;

  constructor(
    readonly everyMs = 20,
    /** called on every tick with the stall and its own part, seconds */
    private readonly observe?: (stallSec: number, ownSec: number) => void,
  ) {}

  start(): void {
    if (this.timer) return;
    this.last = performance.now();
    this.lastCpuUs = cpuUs();
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    const now = performance.now();
    const cpu = cpuUs();
    const stall = Math.max(0, now - this.last - this.everyMs);
    const own = Math.min(stall, Math.max(0, (cpu - this.lastCpuUs) / 1000));
    this.last = now;
    this.lastCpuUs = cpu;
    this.n++;
    this.total++;
    if (stall > this.maxMs) this.maxMs = stall;
    if (own > this.ownMaxMs) this.ownMaxMs = own;
    this.wallCounts[bucketOf(stall / 1000)]++;
    this.ownCounts[bucketOf(own / 1000)]++;
    this.wallSumSec += stall / 1000;
    this.ownSumSec += own / 1000;
    this.observe?.(stall / 1000, own / 1000);
  }

  /** The largest stalls since the previous call, and starts a new window. */
  take(): StallStats {
    const s = { n: this.n, maxMs: this.maxMs, ownMaxMs: this.ownMaxMs };
    this.n = 0;
    this.maxMs = 0;
    this.ownMaxMs = 0;
    return s;
  }
}

function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

function bucketOf(sec: number): number {
  for (let i = 0; i < STALL_BUCKETS.length; i++) if (sec <= STALL_BUCKETS[i]) return i;
  return STALL_BUCKETS.length;
}

/**
 * A quantile (0..1) from bucket counts (one per STALL_BUCKETS bound plus the
 * overflow), interpolated linearly within its bucket, in ms. The overflow
 * bucket answers with its lower bound.
 */
export function quantileFromBuckets(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] === 0) continue;
    if (seen + counts[i] >= rank) {
      const lo = i === 0 ? 0 : STALL_BUCKETS[i - 1];
      if (i === STALL_BUCKETS.length) return lo * 1000;
      const hi = STALL_BUCKETS[i];
      return (lo + ((rank - seen) / counts[i]) * (hi - lo)) * 1000;
    }
    seen += counts[i];
  }
  return STALL_BUCKETS[STALL_BUCKETS.length - 1] * 1000;
}
