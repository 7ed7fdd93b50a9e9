// The monitoring log is bounded (issue 14.5, issue 10's retention): a hostile
// terminal streaming device-origin deletes writes at most its rate limit's
// rows plus one EVENTS_SUPPRESSED summary with the counts; old events are
// pruned by age; the count bound holds; the disk use is in /metrics.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Command, FrameKind, Status, encodeFrame, encodeLogEvent } from '../src/codec/index.js';
import { EventCode, ORIGIN_DEVICE } from '../src/codec/constants.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { EVENTS_SUPPRESSED } from '../src/store/event-limits.js';
import { EventMaintenance } from '../src/store/retention.js';
import { Store } from '../src/store/store.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await site?.close();
  site = undefined;
});

function tempStore(now: () => number): Store {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-events-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const s = Store.open(join(dir, 'termsync.db'), { now, eventLimits: null });
  cleanups.push(() => s.close());
  return s;
}

describe('per-terminal rate limits on monitoring events', () => {
  it('a terminal streaming 20,000 device-origin deletes writes at most its limit in rows, and one summary with the counts', async () => {
    const RATE = 5;
    const BURST = 20;
    site = await startSite({ terminals: 1, daemon: { listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, events: { ratePerSec: RATE, burst: BURST, intervalMs: 3_600_000 } } });
    const s = site;
    const f = await FakeTerminal.connect({ port: s.daemon.listenPorts[0], key: DEV_COMM_KEY, deviceId: 9800 });
    cleanups.push(() => f.close());
    expect(await f.handshake()).toBe(Status.OK);
    await f.waitFrame((x) => x.command === Command.SUBSCRIBE_LOG);
    await s.daemon.engine.idle();

    const N = 20_000;
    const PER_FRAME = 500;
    const t0 = Date.now();
    for (let first = 1; first <= N; first += PER_FRAME) {
      // a flood that keeps to the subscription window (1,000): a terminal past it is cut off
      if (first > PER_FRAME) await waitFor(() => (s.daemon.store.getCursor('9800')?.cursor ?? 0) >= first - 1 - PER_FRAME, { timeoutMs: 30_000, message: 'the daemon did not acknowledge' });
      const events = Array.from({ length: PER_FRAME }, (_, i) => ({ id: first + i, dateTime: 0, deviceId: f.deviceId, userId: `gone-${first + i}`, code: EventCode.USER_DELETE_SUCCESS, param: ORIGIN_DEVICE, flags: 0 }));
      f.send(encodeFrame({ kind: FrameKind.EVENT, seq: f.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: f.logEpoch, events }) }));
    }
    await waitFor(() => (s.daemon.store.getCursor('9800')?.cursor ?? 0) >= N, { timeoutMs: 60_000, message: 'the deletes were not all processed' });
    const elapsedSec = (Date.now() - t0) / 1000;

    const written = s.daemon.store.listEvents({ type: 'USER_DELETED_ON_DEVICE', terminalId: '9800', limit: 10_000 }).length;
    expect(written).toBeGreaterThanOrEqual(BURST);
    expect(written).toBeLessThanOrEqual(BURST + Math.ceil(RATE * elapsedSec) + 1);

    // the rest is one summary event with the count, written by the upkeep
    expect(s.daemon.store.listEvents({ type: EVENTS_SUPPRESSED })).toEqual([]);
    await s.daemon.eventUpkeep!.runOnce();
    const summaries = s.daemon.store.listEvents({ type: EVENTS_SUPPRESSED, terminalId: '9800' });
    expect(summaries).toHaveLength(1);
    expect(JSON.parse(summaries[0].detail!).counts).toEqual({ USER_DELETED_ON_DEVICE: N - written });

    // the dialled terminal has buckets of its own: its events are still written
    expect(s.daemon.store.listEvents({ type: 'TERMINAL_ONLINE', terminalId: 't1' })).toHaveLength(1);
    // the hostile terminal's session went on (it broke no protocol rule)
    expect(f.isClosed).toBe(false);
  }, 90_000);
});

describe('retention of the monitoring log', () => {
  it('events older than the maximum age are pruned, newer ones stay', async () => {
    let clock = Date.UTC(2026, 0, 1);
    const s = tempStore(() => clock);
    const DAY = 86_400_000;
    for (let d = 0; d < 10; d++) s.appendEvents(Array.from({ length: 100 }, (_, i) => ({ type: 'RECONCILE', terminalId: 't', detail: String(i), time: clock + d * DAY })));
    clock += 10 * DAY; // now: day 10; events of days 0..9
    const m = new EventMaintenance(s, { keep: 1_000_000, maxAgeDays: 3 }, undefined, () => clock);
    const pruned = await m.runOnce();
    expect(pruned).toBe(700); // days 0..6 are older than 3 days
    expect(s.eventCount()).toBe(300);
    const oldest = s.listEvents({ limit: 1 })[0];
    expect(oldest.time).toBe(clock - 3 * DAY);
  });

  it('the count bound holds: 25,000 events with keep 2,000 leave the newest 2,000, pruned in many small slices', async () => {
    const s = tempStore(Date.now);
    for (let b = 0; b < 25; b++) s.appendEvents(Array.from({ length: 1000 }, (_, i) => ({ type: 'PUSH_FAILED', terminalId: 't', userId: `u${b * 1000 + i}` })));
    const lastId = s.listEvents({ newestFirst: true, limit: 1 })[0].id;
    const m = new EventMaintenance(s, { keep: 2000, maxAgeDays: 90, sliceTargetMs: 2 });
    let turns = 0;
    const ticker = setInterval(() => turns++, 0); // the event loop runs between slices
    const pruned = await m.runOnce();
    clearInterval(ticker);
    expect(pruned).toBe(23_000);
    expect(s.eventCount()).toBe(2000);
    expect(s.listEvents({ limit: 1 })[0].id).toBe(lastId - 1999);
    expect(turns).toBeGreaterThan(0);
  });

  it('the daemon prunes on its own, and reports the database disk use in /metrics', async () => {
    site = await startSite({ terminals: 1, daemon: { events: { keep: 1000, intervalMs: 100 } } });
    const s = site;
    s.daemon.store.appendEvents(Array.from({ length: 5000 }, () => ({ type: 'RECONCILE', terminalId: 'x' })));
    await waitFor(() => s.daemon.store.eventCount() <= 1000, { message: 'the daemon did not prune' });
    const u = s.daemon.store.diskUsage();
    expect(u.dbBytes).toBeGreaterThan(0);
    expect(u.pageSize * u.pageCount).toBeGreaterThan(0);
    const { startAdmin } = await import('../src/admin/server.js');
    const { silent } = await import('./helpers/site.js');
    const admin = await startAdmin({ daemon: s.daemon, host: '127.0.0.1', port: 0, token: null, log: silent });
    cleanups.push(() => admin.close());
    const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    expect(text).toMatch(/^termsync_db_disk_bytes\{file="db"\} [1-9]\d*$/m);
    expect(text).toMatch(/^termsync_db_disk_bytes\{file="wal"\} \d+$/m);
    expect(text).toMatch(/^termsync_db_free_bytes \d+$/m);
    const status = (await (await fetch(`http://127.0.0.1:${admin.port}/api/status`)).json()) as { disk: { dbBytes: number } };
    expect(status.disk.dbBytes).toBeGreaterThan(0);
  });
});
