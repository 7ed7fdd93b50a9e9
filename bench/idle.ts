// Idle terminals: N connected terminals, nothing happening but heartbeats.
// Measures the daemon's CPU (from /proc, all threads) over a window of
// several heartbeat intervals, and its memory.
import { setTimeout as sleep } from 'node:timers/promises';
import { startBenchSite } from './site.js';
import { round } from './stats.js';

export interface IdleResult {
  terminals: number;
  heartbeatSec: number;
  windowMs: number;
  cpuMs: number;
  cpuPercentOfOneCore: number;
  rssMb: number;
  peakRssMb: number;
  heapMb: number;
  /** time from the daemon's start until every terminal was online and reconciled */
  connectMs: number;
  /** pings answered by the terminals during the window (heartbeats actually flowing) */
  pings: number;
}

export async function runIdle(o: { terminals: number; heartbeatSec?: number; windowMs?: number; progress?: (m: string) => void }): Promise<IdleResult> {
  const heartbeatSec = o.heartbeatSec ?? 10;
  const windowMs = o.windowMs ?? 3 * heartbeatSec * 1000;
  const started = Date.now();
  const site = await startBenchSite({ terminals: o.terminals, heartbeatSec, readyTimeoutMs: 240_000, sampleMs: 1000 });
  try {
    const connectMs = Date.now() - started;
    o.progress?.(`idle: ${o.terminals} terminals online in ${round(connectMs / 1000)} s; measuring ${windowMs / 1000} s`);
    await sleep(2000); // let the first contact settle
    const pings0 = (await site.host.commandCounts()).counts.PING ?? 0;
    const cpu0 = site.daemon.cpuMsFromProc();
    const t0 = Date.now();
    await sleep(windowMs);
    const cpuMs = site.daemon.cpuMsFromProc() - cpu0;
    const elapsed = Date.now() - t0;
    const pings = ((await site.host.commandCounts()).counts.PING ?? 0) - pings0;
    const last = site.daemon.samples[site.daemon.samples.length - 1];
    return {
      terminals: o.terminals,
      heartbeatSec,
      windowMs: elapsed,
      cpuMs: round(cpuMs),
      cpuPercentOfOneCore: round((100 * cpuMs) / elapsed, 2),
      rssMb: round(site.daemon.rssMb()),
      peakRssMb: round(site.daemon.peakRssMb()),
      heapMb: round((last?.heapUsed ?? NaN) / 1048576),
      connectMs,
      pings,
    };
  } finally {
    await site.close();
  }
}
