// Reconnect storm: fifty terminals lost at the same instant. The daemon must
// spread its reconnect attempts by full jitter (a uniform delay in
// [0, min(cap, base * 2^attempt))), so they do not all arrive at once.
import { afterEach, describe, expect, it } from 'vitest';
import { person } from './helpers/faults.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

describe('reconnect storm', () => {
  it('50 terminals dropped at once come back spread over the jitter window, not in a herd', async () => {
    const N = 50;
    const BASE = 1000;
    site = await startSite({ terminals: N, daemon: { reconnectMinMs: BASE, reconnectMaxMs: 8000, heartbeatSec: 10 } });
    const s = site;
    await s.daemon.engine.idle();
    const delays: { id: string; delay: number; attempt: number }[] = [];
    s.daemon.manager.on('reconnecting', (id, delay, attempt) => delays.push({ id, delay, attempt }));
    const lastEvent = s.daemon.store.listEvents({ newestFirst: true, limit: 1 })[0]?.id ?? 0;
    const droppedAt = Date.now();
    for (const t of s.sim.terminals) t.dropConnections();
    await waitFor(() => s.daemon.store.listEvents({ type: 'TERMINAL_ONLINE', after: lastEvent, limit: 1000 }).length >= N, { timeoutMs: 10_000, message: 'not every terminal came back' });

    // one reconnect each, after the first loss (attempt counter was reset by the good session)
    const first = delays.filter((d) => d.attempt === 1);
    expect(new Set(first.map((d) => d.id)).size).toBe(N);
    for (const d of first) {
      expect(d.delay).toBeGreaterThanOrEqual(0);
      expect(d.delay).toBeLessThan(BASE);
    }
    // spread over the whole window: both halves well used, a wide range
    const ds = first.map((d) => d.delay);
    expect(ds.filter((d) => d < BASE / 2).length).toBeGreaterThanOrEqual(10);
    expect(ds.filter((d) => d >= BASE / 2).length).toBeGreaterThanOrEqual(10);
    expect(Math.max(...ds) - Math.min(...ds)).toBeGreaterThanOrEqual(0.6 * BASE);

    // what the terminals saw: sessions re-established over ~a second, never most of them in one instant
    const back = s.daemon.store.listEvents({ type: 'TERMINAL_ONLINE', after: lastEvent, limit: 1000 }).map((e) => e.time - droppedAt);
    expect(Math.max(...back) - Math.min(...back)).toBeGreaterThanOrEqual(0.5 * BASE);
    const busiest = Math.max(...back.map((t0) => back.filter((t) => t >= t0 && t < t0 + 100).length));
    expect(busiest).toBeLessThanOrEqual(25); // 100 ms holds ~5 on average; a herd would put all 50 there

    // and the site works afterwards
    s.daemon.putUser(person('after-storm'));
    await s.waitConverged({ users: ['after-storm'] });
  });
});
