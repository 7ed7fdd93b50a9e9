// Liveness and reconnect pacing, with fake clocks: no real time passes.
import { describe, expect, it } from 'vitest';
import { Heartbeat, TimerWheel } from '../src/drivers/termsync/heartbeat.js';
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

describe('many sessions on one timer wheel', () => {
  /** N heartbeats sharing one wheel driven by one fake interval timer */
  function site(n: number, intervalMs = 1000) {
    let now = 0;
    let timers = 0;
    let fn: (() => void) | null = null;
    let every = 0;
    let next = 0;
    const wheel = new TimerWheel({
      tickMs: intervalMs / 4,
      now: () => now,
      setInterval: (f, ms) => {
        timers++;
        fn = f;
        every = ms;
        next = now + ms;
        return timers;
      },
      clearInterval: () => (fn = null),
    });
    const pings = new Array<number>(n).fill(0);
    const deadAt = new Array<number>(n).fill(-1);
    const hbs = pings.map(
      (_, i) =>
        new Heartbeat({ intervalMs, ping: () => pings[i]++, dead: () => (deadAt[i] = now), now: () => now, wheel, afterPendingIo: (f) => f() }),
    );
    return {
      wheel,
      hbs,
      pings,
      deadAt,
      timers: () => timers,
      get now() {
        return now;
      },
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

  it('one timer for all sessions; each pings once an interval; the silent one dies within 1.5 + 0.25 intervals, the others live', () => {
    const s = site(1000);
    s.hbs.forEach((h) => h.start());
    expect(s.timers()).toBe(1);
    expect(s.wheel.count).toBe(1000);
    // every session but #7 hears its terminal every half interval
    for (let t = 0; t < 10; t++) {
      s.advance(500);
      s.hbs.forEach((h, i) => i !== 7 && h.touch());
    }
    expect(s.deadAt.filter((d) => d >= 0)).toHaveLength(1);
    expect(s.deadAt[7]).toBeGreaterThanOrEqual(1500);
    expect(s.deadAt[7]).toBeLessThanOrEqual(1750);
    // 5 s: five pings each, the period kept although a visit may come a tick late
    for (let i = 0; i < 1000; i++) if (i !== 7) expect(s.pings[i]).toBe(5);
    expect(s.wheel.count).toBe(999);
    expect(s.timers()).toBe(1);
  });

  it('stopping every session stops the timer; a new session starts it again', () => {
    const s = site(3);
    s.hbs.forEach((h) => h.start());
    for (let t = 0; t < 4; t++) {
      s.advance(500);
      s.hbs.forEach((h) => h.touch());
    }
    expect(s.pings).toEqual([2, 2, 2]);
    s.hbs.forEach((h) => h.stop());
    expect(s.wheel.count).toBe(0);
    expect(s.wheel.running).toBe(false);
    s.advance(10_000);
    expect(s.deadAt).toEqual([-1, -1, -1]);
    s.hbs[0].start();
    expect(s.wheel.running).toBe(true);
    expect(s.timers()).toBe(2);
    s.advance(1750);
    expect(s.deadAt[0]).toBeGreaterThanOrEqual(12_000 + 1500);
  });
});
