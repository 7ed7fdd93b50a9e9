// Liveness and reconnect pacing, with fake clocks: no real time passes.
import { describe, expect, it } from 'vitest';
import { Heartbeat } from '../src/drivers/termsync/heartbeat.js';
import { backoffDelay } from '../src/terminal/manager.js';

function fakeClock() {
  let now = 0;
  let fn: (() => void) | null = null;
  let every = 0;
  let next = 0;
  return {
    now: () => now,
    setInterval: (f: () => void, ms: number) => {
      fn = f;
      every = ms;
      next = ms;
      return 1;
    },
    clearInterval: () => {
      fn = null;
    },
    afterPendingIo: (f: () => void) => f(),
    advance(ms: number) {
      const end = now + ms;
      while (fn && next <= end) {
        now = next;
        next += every;
        fn();
      }
      now = end;
    },
  };
}

describe('heartbeat', () => {
  it('pings every interval and declares a silent session dead within 1.5 intervals', () => {
    const c = fakeClock();
    let pings = 0;
    let deadAt = -1;
    const hb = new Heartbeat({ intervalMs: 1000, ping: () => pings++, dead: () => (deadAt = c.now()), ...c });
    hb.start();
    c.advance(1000);
    expect(pings).toBe(1);
    c.advance(499);
    expect(deadAt).toBe(-1);
    c.advance(1);
    expect(deadAt).toBe(1500);
  });

  it('any received frame keeps the session alive', () => {
    const c = fakeClock();
    let dead = false;
    const hb = new Heartbeat({ intervalMs: 1000, ping: () => {}, dead: () => (dead = true), ...c });
    hb.start();
    for (let i = 0; i < 20; i++) {
      c.advance(1000);
      hb.touch();
    }
    expect(dead).toBe(false);
    hb.stop();
    c.advance(10_000);
    expect(dead).toBe(false);
  });
});

describe('reconnect backoff with full jitter', () => {
  it('grows exponentially up to the cap and spreads attempts over [0, ceiling)', () => {
    expect(backoffDelay(0, 500, 30_000, () => 0.999)).toBe(499);
    expect(backoffDelay(3, 500, 30_000, () => 0.999)).toBe(3996);
    expect(backoffDelay(20, 500, 30_000, () => 0.999)).toBe(29_970);
    expect(backoffDelay(5, 500, 30_000, () => 0)).toBe(0);
    // 1000 terminals reconnecting at attempt 4 land spread over 0..8 s, not at one instant
    const delays = Array.from({ length: 1000 }, () => backoffDelay(4, 500, 30_000));
    const buckets = new Array(8).fill(0);
    for (const d of delays) buckets[Math.floor(d / 1000)]++;
    for (const b of buckets) expect(b).toBeGreaterThan(60);
  });
});

describe('heartbeat after a blocked event loop', () => {
  it('does not declare a session dead when its bytes were waiting to be read', async () => {
    let now = 0;
    let tick: (() => void) | null = null;
    let dead = false;
    const deferred: (() => void)[] = [];
    const hb = new Heartbeat({
      intervalMs: 1000,
      ping: () => {},
      dead: () => (dead = true),
      now: () => now,
      setInterval: (f) => ((tick = f), 1),
      clearInterval: () => (tick = null),
      afterPendingIo: (f) => deferred.push(f),
    });
    hb.start();
    now = 5000; // the loop was blocked for 5 s; the terminal's answer is queued behind the timer
    tick!();
    expect(dead).toBe(false);
    hb.touch(); // the pending read runs before the deferred check
    deferred.shift()!();
    expect(dead).toBe(false);
    now = 7000; // and a really silent session still dies
    tick!();
    deferred.shift()!();
    expect(dead).toBe(true);
  });
});
