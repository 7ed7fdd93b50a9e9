// The event-loop stall measure of /metrics (src/admin/loop-stall.ts): a stall
// while the process computes counts as its own; a stall while its thread is
// not on the CPU (here: blocked in Atomics.wait, as when the machine's other
// work holds the cores) counts in `wall` but not in `own`.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LoopStallMonitor, quantileFromBuckets, STALL_BUCKETS } from '../src/admin/loop-stall.js';

function cpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

describe('LoopStallMonitor', () => {
  it('a synchronous slice of work is a stall of its own; a blocked thread that uses no CPU is a stall but not its own', async () => {
    const m = new LoopStallMonitor(20);
    m.start();
    await sleep(60);
    m.take();
    // 80 ms of CPU time in one synchronous slice (counted in CPU time, so a busy machine only makes it longer)
    const c0 = cpuMs();
    let x = 0;
    while (cpuMs() - c0 < 80) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    await sleep(60);
    const busy = m.take();
    expect(busy.maxMs).toBeGreaterThanOrEqual(50);
    expect(busy.ownMaxMs).toBeGreaterThanOrEqual(50);
    expect(busy.ownMaxMs).toBeLessThanOrEqual(busy.maxMs);
    // 150 ms blocked without using the CPU
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 150);
    await sleep(60);
    const blocked = m.take();
    m.stop();
    expect(blocked.maxMs).toBeGreaterThanOrEqual(100);
    expect(blocked.ownMaxMs).toBeLessThan(blocked.maxMs / 2);
    // every tick landed in the histograms
    expect(m.wallCounts.reduce((a, b) => a + b, 0)).toBe(m.total);
    expect(m.ownCounts.reduce((a, b) => a + b, 0)).toBe(m.total);
  });

  it('quantiles from bucket counts', () => {
    const counts = new Array(STALL_BUCKETS.length + 1).fill(0);
    expect(quantileFromBuckets(counts, 0.5)).toBeNull();
    counts[0] = 99; // 99 ticks at most 1 ms late
    counts[7] = 1; // one between 50 and 100 ms
    expect(quantileFromBuckets(counts, 0.5)).toBeLessThanOrEqual(1);
    expect(quantileFromBuckets(counts, 0.995)).toBeGreaterThan(50);
    expect(quantileFromBuckets(counts, 0.995)).toBeLessThanOrEqual(100);
  });
});
