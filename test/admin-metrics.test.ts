// The metrics pieces on their own: the push-latency observer across the
// engine's array trim, and prom-client's output for the latency histogram.
import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, PushLatencyObserver } from '../src/admin/metrics.js';

describe('PushLatencyObserver', () => {
  it('observes only samples added since the last drain, also across the engine trimming its array', () => {
    const samples: number[] = [100, 200]; // taken before the admin API started: not counted
    const seen: number[] = [];
    const o = new PushLatencyObserver(() => samples, (s) => seen.push(s), 5000);
    samples.push(1000, 2000);
    o.drain();
    expect(seen).toEqual([1, 2]);
    o.drain();
    expect(seen.length).toBe(2);

    // grow to the engine's limit, then one more push trims the oldest 5000
    while (samples.length < 10_000) samples.push(10);
    o.drain();
    const before = seen.length;
    expect(before).toBe(2 + 10_000 - 4);
    samples.push(30_000, 40_000);
    samples.splice(0, 5000); // what the engine does past 10,000 (it checks after each push)
    o.drain();
    expect(seen.slice(before)).toEqual([30, 40]);
  });

  it('feeds a prom-client histogram with cumulative buckets ending in +Inf', async () => {
    const registry = new client.Registry();
    const h = new client.Histogram({ name: 'lat_seconds', help: 'Latency.', buckets: LATENCY_BUCKETS, registers: [registry] });
    const samples: number[] = [];
    const o = new PushLatencyObserver(() => samples, (s) => h.observe(s));
    samples.push(50, 700, 30_000);
    o.drain();
    const text = await registry.metrics();
    expect(text).toContain('lat_seconds_bucket{le="0.05"} 1');
    expect(text).toContain('lat_seconds_bucket{le="1"} 2');
    expect(text).toContain('lat_seconds_bucket{le="30"} 3');
    expect(text).toContain('lat_seconds_bucket{le="+Inf"} 3');
    expect(text).toContain('lat_seconds_count 3');
  });
});
