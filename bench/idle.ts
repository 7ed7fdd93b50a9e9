// Idle terminals: N connected terminals, nothing happening but heartbeats.
// Measures the cold start (the daemon's process started until every terminal
// is online and reconciled, and the daemon's CPU for it), then the daemon's CPU
// (from /proc, all threads) over a window of several heartbeat intervals, and
// its memory; per terminal as well.
//
// One simulator process holds at most SIM_TERMINALS_PER_PROCESS terminals (each
// terminal is a listening socket and an accepted one: 10,000 terminals in one
// process are 20,000 descriptors, the usual limit).
import { loadavg } from 'node:os';
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
  /** daemon CPU from its start until every terminal was online and reconciled */
  connectCpuMs: number;
  /** per terminal: connect CPU (ms), idle CPU (microseconds of CPU per second), RSS (KB) */
  perTerminal: { connectCpuMs: number; idleCpuUsPerSec: number; rssKb: number };
  simProcesses: number;
  loadAverage: { start: number[]; end: number[] };
}

export const SIM_TERMINALS_PER_PROCESS = 4000;

export async function runIdle(o: {
  terminals: number;
  heartbeatSec?: number;
  windowMs?: number;
  /** simulator processes (default: one per SIM_TERMINALS_PER_PROCESS terminals; 0 = this process) */
  simProcesses?: number;
  /** write a CPU profile of the daemon's idle window here */
  profileFile?: string;
  readyTimeoutMs?: number;
  progress?: (m: string) => void;
}): Promise<IdleResult> {
  const heartbeatSec = o.heartbeatSec ?? 10;
  const windowMs = o.windowMs ?? 3 * heartbeatSec * 1000;
  const simProcesses = o.simProcesses ?? (o.terminals > SIM_TERMINALS_PER_PROCESS ? Math.ceil(o.terminals / SIM_TERMINALS_PER_PROCESS) : 0);
  const load0 = loadavg().map((x) => round(x, 2));
  let started = Date.now();
  const site = await startBenchSite({
    terminals: o.terminals,
    heartbeatSec,
    readyTimeoutMs: o.readyTimeoutMs ?? 240_000,
    sampleMs: 1000,
    simProcesses,
    // the cold start is timed from the daemon's process start (the simulator's start is set-up)
    onDaemonStart: () => (started = Date.now()),
  });
  try {
    const connectMs = Date.now() - started;
    const connectCpuMs = site.daemon.cpuMsFromProc();
    o.progress?.(`idle: ${o.terminals} terminals online and reconciled in ${round(connectMs / 1000)} s (daemon CPU ${round(connectCpuMs / 1000, 1)} s); measuring ${windowMs / 1000} s`);
    await sleep(2000); // let the first contact settle
    const pings0 = (await site.host.commandCounts()).counts.PING ?? 0;
    if (o.profileFile) await site.daemon.profileStart(o.profileFile);
    const cpu0 = site.daemon.cpuMsFromProc();
    const t0 = Date.now();
    await sleep(windowMs);
    const cpuMs = site.daemon.cpuMsFromProc() - cpu0;
    if (o.profileFile) await site.daemon.profileEnd();
    const elapsed = Date.now() - t0;
    const pings = ((await site.host.commandCounts()).counts.PING ?? 0) - pings0;
    const last = site.daemon.samples[site.daemon.samples.length - 1];
    const rssMb = site.daemon.rssMb();
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
      connectCpuMs: round(connectCpuMs),
      perTerminal: {
        connectCpuMs: round(connectCpuMs / o.terminals, 3),
        idleCpuUsPerSec: round((1e6 * cpuMs) / elapsed / o.terminals, 2),
        rssKb: round((rssMb * 1024) / o.terminals, 1),
      },
      simProcesses,
      loadAverage: { start: load0, end: loadavg().map((x) => round(x, 2)) },
    };
  } finally {
    await site.close();
  }
}
