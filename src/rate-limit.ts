// A token bucket: `ratePerSec` tokens flow in continuously, at most `burst`
// are kept. take() spends one if there is one. Used for the per-terminal
// monitoring-event limits (src/store/event-limits.ts) and the rate of new
// device IDs (--auto-approve-rate).
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(ratePerSec >= 0) || !(burst >= 1)) throw new RangeError(`a token bucket needs rate >= 0 and burst >= 1 (got ${ratePerSec}, ${burst})`);
    this.tokens = burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    if (t > this.last) this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
  }

  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Spends up to n tokens; returns how many it spent. */
  takeUpTo(n: number): number {
    this.refill();
    const k = Math.max(0, Math.min(n, Math.floor(this.tokens)));
    this.tokens -= k;
    return k;
  }

  /** true when the bucket is full again (its state then equals a fresh bucket's, so it can be dropped) */
  get full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }
}

/** `N/min` or `N/s` -> tokens per second and burst N. */
export function parseRate(text: string): { ratePerSec: number; burst: number } | undefined {
  const m = /^(\d{1,9})\/(s|sec|min)$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  if (n < 1) return undefined;
  return { ratePerSec: m[2] === 'min' ? n / 60 : n, burst: n };
}
