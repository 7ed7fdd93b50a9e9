// The hand-written Prometheus pieces on their own: label escaping, histogram
// output, and the push-latency observer across the engine's array trim.
import { describe, expect, it } from 'vitest';
import { Exposition, Histogram, LATENCY_BUCKETS, PushLatencyObserver } from '../src/admin/metrics.js';

describe('Exposition', () => {
  it('escapes label values and help text, and writes +Inf', () => {
    const text = new Exposition()
      .family('x_total', 'counter', 'Help with a \\ backslash\nand a newline.', [[{ path: 'a"b\\c\nd' }, 2]])
      .family('y', 'gauge', 'Plain.', Infinity)
      .text();
    expect(text).toBe(
      ['# HELP x_total Help with a \\\\ backslash\\nand a newline.', '# TYPE x_total counter', 'x_total{path="a\\"b\\\\c\\nd"} 2', '# HELP y Plain.', '# TYPE y gauge', 'y +Inf', ''].join('\n'),
    );
  });

  it('writes a histogram with cumulative buckets, +Inf, _sum and _count', () => {
    const h = new Histogram([0.1, 1]);
    for (const v of [0.05, 0.5, 0.7, 3]) h.observe(v);
    const lines = new Exposition().histogram('lat_seconds', 'Latency.', h).text().trim().split('\n');
    expect(lines.slice(2)).toEqual([
      'lat_seconds_bucket{le="0.1"} 1',
      'lat_seconds_bucket{le="1"} 3',
      'lat_seconds_bucket{le="+Inf"} 4',
      'lat_seconds_sum 4.25',
      'lat_seconds_count 4',
    ]);
  });
});

describe('PushLatencyObserver', () => {
  it('observes only samples added since the last drain, also across the engine trimming its array', () => {
    const samples: number[] = [100, 200]; // taken before the admin API started: not counted
    const o = new PushLatencyObserver(() => samples, 5000);
    samples.push(1000, 2000);
    o.drain();
    expect(o.histogram.count).toBe(2);
    expect(o.histogram.sum).toBeCloseTo(3);
    o.drain();
    expect(o.histogram.count).toBe(2);

    // grow to the engine's limit, then one more push trims the oldest 5000
    while (samples.length < 10_000) samples.push(10);
    o.drain();
    const before = o.histogram.count;
    expect(before).toBe(2 + 10_000 - 4);
    samples.push(30_000, 40_000);
    samples.splice(0, 5000); // what the engine does past 10,000 (it checks after each push)
    o.drain();
    expect(o.histogram.count).toBe(before + 2);
    const top = LATENCY_BUCKETS.findIndex((b) => b >= 30);
    expect(o.histogram.counts[top]).toBe(1); // 30 s
  });
});
