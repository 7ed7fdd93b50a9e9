// The replayer: plays a scenario through simulated terminals against a running
// daemon, at 1x, Nx or maximum speed, and measures what a site would notice.
//
// Timekeeping is done on the terminals' side: every simulated terminal emits
// its log events synchronously as it appends them, so the harness knows to the
// millisecond when a user was enrolled on its origin terminal and when each
// peer wrote the server's record (an ORIGIN_SERVER enroll/update event). The
// run has converged when every terminal holds every user equal to the
// server's record (checked against the daemon's SQLite file, read-only); the
// convergence time is the moment of the last write that made it so.
//
// Speeds: a number N plays action times divided by N; 'max' starts each
// action as soon as its terminal is free ("as fast as the terminals log
// them"). Barriers, and at 'max' speed offline/online actions, wait for every
// earlier action first.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ORIGIN_DEVICE, ORIGIN_SERVER } from '../src/codec/index.js';
import { startAdminProbe } from './admin-probe.js';
import type { DaemonProc } from './daemon-proc.js';
import type { Action, Scenario } from './scenario.js';
import { epochNow, type SimEvent, type SimHost } from './sim-host.js';
import { round, summarize, type Summary } from './stats.js';

export type Speed = number | 'max';

export interface ReplayOptions {
  scenario: Scenario;
  /** the simulated terminals (bench/sim-host.ts) */
  host: SimHost;
  daemon: DaemonProc;
  /** the daemon's database file (read-only here) */
  db: string;
  speed: Speed;
  /** probe the admin API every N ms while the scenario runs (bench/admin-probe.ts, its own process) */
  adminProbeMs?: number;
  timeoutMs?: number;
  progress?: (msg: string) => void;
}

export interface TimelinePoint {
  /** ms since the replay started */
  t: number;
  convergedPct: number;
  outbox: number;
  queueWaiting: number;
  rssMb: number;
  heapMb: number;
  /** user records written to terminals since the previous point */
  writes: number;
  /** the daemon's CPU use since the previous point, % of one core */
  daemonCpuPct: number;
  /** this process's (simulator + harness) CPU use since the previous point, % of one core */
  simCpuPct: number;
}

export interface ReplayResult {
  scenario: string;
  speed: Speed;
  terminals: number;
  users: number;
  deviceChanges: number;
  /** ms from the first action to the last write that made every terminal equal to the server */
  convergenceMs: number;
  converged: boolean;
  /** last action finished, ms since start */
  actionsDoneMs: number;
  putUsersRequests: number;
  userRecordsWritten: number;
  pushesPerSec: number;
  recordsPerSec: number;
  /** from a device change on its origin terminal to the last peer holding it */
  latencyMs: Summary;
  daemon: {
    cpuMs: number;
    cpuPercentOfOneCore: number;
    peakRssMb: number;
    peakHeapMb: number;
    /** the largest V8 heap committed (heapTotal) and Buffer memory outside it (external) among the samples, MB */
    peakHeapTotalMb: number;
    peakExternalMb: number;
    maxOutbox: number;
    maxQueueWaiting: number;
    pulls: number;
    pushes: number;
    pushesFailed: number;
    dbWriteFailures: number;
  };
  admin: (Summary & { errors: number; byPath: Record<string, Summary> }) | null;
  commands: Record<string, number>;
  timeline: TimelinePoint[];
  /** the first few differences when not converged */
  problems: string[];
}

/** Follows every terminal's log: who holds which change of which user, since when. */
class Tracker {
  /** user -> time of its latest device change */
  readonly changedAt = new Map<string, number>();
  /** user -> terminals (bitset by index) holding its latest change */
  private readonly holders = new Map<string, Uint8Array>();
  private readonly holderCount = new Map<string, number>();
  /** user -> time of the latest server write on any terminal */
  readonly lastWriteAt = new Map<string, number>();
  readonly latencies: number[] = [];
  /** time each user last became fully held (all terminals) */
  readonly fullAt = new Map<string, number>();
  fullCount = 0;
  lastWrite = 0;
  deviceChanges = 0;
  writes = 0;
  /** time of every server write (for the timeline) */
  readonly writeTimes: number[] = [];
  private attached = true;

  constructor(
    host: SimHost,
    private readonly T: number,
    /** epoch ms of the replay's start */
    private readonly t0: number,
  ) {
    host.onEvents((batch) => this.attached && this.onEvents(batch));
  }

  private onEvents(batch: SimEvent[]): void {
    const T = this.T;
    for (const e of batch) {
      const now = e.at - this.t0;
      const u = e.userId;
      if (e.param === ORIGIN_DEVICE) {
        this.deviceChanges++;
        this.finishLatency(u);
        this.changedAt.set(u, now);
        const h = new Uint8Array(T + 1);
        h[e.term] = 1;
        if (this.holderCount.get(u) === T) this.fullCount--;
        this.holders.set(u, h);
        this.holderCount.set(u, 1);
        this.fullAt.delete(u);
        if (T === 1) this.markFull(u, now);
      } else if (e.param === ORIGIN_SERVER) {
        this.writes++;
        this.writeTimes.push(now);
        if (now > this.lastWrite) this.lastWrite = now;
        this.lastWriteAt.set(u, Math.max(now, this.lastWriteAt.get(u) ?? 0));
        let h = this.holders.get(u);
        if (!h) {
          // a server-side user (not from a device change): track it too
          h = new Uint8Array(T + 1);
          this.holders.set(u, h);
          this.holderCount.set(u, 0);
        }
        if (!h[e.term]) {
          h[e.term] = 1;
          const n = this.holderCount.get(u)! + 1;
          this.holderCount.set(u, n);
          if (n === T) this.markFull(u, now);
        }
      }
    }
  }

  private markFull(u: string, now: number): void {
    this.fullCount++;
    this.fullAt.set(u, now);
  }

  private finishLatency(u: string): void {
    const c = this.changedAt.get(u);
    const w = this.lastWriteAt.get(u);
    if (c !== undefined && w !== undefined && w >= c) this.latencies.push(w - c);
  }

  /** closes the open latency measurements (end of the run) */
  finish(): number[] {
    for (const u of this.changedAt.keys()) this.finishLatency(u);
    this.changedAt.clear();
    return this.latencies;
  }

  get users(): number {
    return this.holders.size;
  }

  detach(): void {
    this.attached = false;
  }
}

export async function replay(o: ReplayOptions): Promise<ReplayResult> {
  const { scenario: sc, host, daemon } = o;
  if (host.terminals !== sc.terminals) throw new Error(`scenario ${sc.name} needs ${sc.terminals} terminals, the simulator has ${host.terminals}`);
  const t0 = performance.now();
  const t0Epoch = epochNow();
  const now = () => performance.now() - t0;
  const tracker = new Tracker(host, sc.terminals, t0Epoch);
  const cmd0 = await host.commandCounts();
  const sampleFrom = daemon.samples.length;
  // this process's CPU (the simulated terminals and the harness), sampled with the daemon's samples
  const ownCpu: { at: number; us: number }[] = [];
  const ownTimer = setInterval(() => {
    const c = process.cpuUsage();
    ownCpu.push({ at: Date.now(), us: c.user + c.system });
  }, 250);
  const cpu0 = daemon.cpuMsFromProc();
  const admin = o.adminProbeMs ? await startAdminProbe(daemon.adminPort, o.adminProbeMs) : null;
  const offline = new Set<number>();
  const deadline = Date.now() + (o.timeoutMs ?? 600_000);
  const problems: string[] = [];

  const waitConverged = async (final: boolean): Promise<boolean> => {
    for (;;) {
      const st = await daemon.state();
      const expectHolders = tracker.fullCount === tracker.users || offline.size > 0;
      if (st.idle && st.outbox === 0 && expectHolders) {
        // let in-flight writes land, then compare everything with the database
        await sleep(50);
        const p = await host.verify(o.db, [...offline]);
        if (p.length === 0) return true;
        if (Date.now() > deadline) {
          problems.push(...p);
          return false;
        }
      }
      if (Date.now() > deadline) {
        problems.push(`timed out: outbox ${st.outbox}, idle ${st.idle}, users fully held ${tracker.fullCount}/${tracker.users}`);
        return false;
      }
      await sleep(final ? 100 : 50);
    }
  };

  // segments between sync points; per terminal, actions in order
  let segStartWall = now();
  let segStartT = sc.actions[0]?.t ?? 0;
  let pending: Action[] = [];
  const runSegment = async (acts: Action[]) => {
    const byTerm = new Map<number, Action[]>();
    for (const a of acts) {
      let l = byTerm.get(a.term);
      if (!l) byTerm.set(a.term, (l = []));
      l.push(a);
    }
    await Promise.all(
      [...byTerm].map(async ([term, list]) => {
        for (const a of list) {
          if (o.speed !== 'max') {
            const due = segStartWall + (a.t - segStartT) / o.speed;
            const wait = due - now();
            if (wait >= 1) await sleep(wait);
          }
          try {
            await host.perform(term, a);
          } catch (e) {
            problems.push(`${a.op} on terminal ${term} failed: ${(e as Error).message}`);
          }
        }
      }),
    );
  };
  let lastProgress = 0;
  for (const a of sc.actions) {
    const sync = a.op === 'barrier' || ((a.op === 'offline' || a.op === 'online') && o.speed === 'max');
    if (!sync) {
      pending.push(a);
      continue;
    }
    await runSegment(pending);
    pending = [];
    if (o.speed !== 'max') {
      const wait = segStartWall + (a.t - segStartT) / o.speed - now();
      if (wait >= 1) await sleep(wait);
    }
    if (a.op === 'barrier') await waitConverged(false);
    else {
      await host.perform(a.term, a);
      if (a.op === 'offline') offline.add(a.term);
      else offline.delete(a.term);
    }
    segStartWall = now();
    segStartT = a.t;
    if (now() - lastProgress > 5000) {
      lastProgress = now();
      o.progress?.(`${sc.name}: ${Math.round(now())} ms, ${tracker.fullCount}/${tracker.users} users fully held`);
    }
  }
  // offline/online at numeric speeds are timed actions of their terminal's worker
  const offAtEnd = new Set<number>();
  if (o.speed !== 'max') {
    for (const a of pending) {
      if (a.op === 'offline') offAtEnd.add(a.term);
      if (a.op === 'online') offAtEnd.delete(a.term);
    }
  }
  await runSegment(pending);
  for (const t of offAtEnd) offline.add(t);
  const actionsDoneMs = now();
  const converged = await waitConverged(true);
  const adminRes = admin ? await admin.stop() : null;
  const cpuMs = daemon.cpuMsFromProc() - cpu0;
  const wallMs = now();
  clearInterval(ownTimer);
  // events appended before the end may still be on their way from the simulator's process
  await sleep(20);
  tracker.detach();
  const cmd1 = await host.commandCounts();
  const counts: Record<string, number> = {};
  for (const [k, v] of Object.entries(cmd1.counts)) if (v - (cmd0.counts[k] ?? 0) > 0) counts[k] = v - (cmd0.counts[k] ?? 0);
  const records = cmd1.records - cmd0.records;

  const convergenceMs = tracker.lastWrite;
  const samples = daemon.samples.slice(sampleFrom);
  const startEpoch = Date.now() - wallMs;
  // the convergence curve: users fully held over time, sampled with the daemon's samples
  const fullTimes = [...tracker.fullAt.values()].sort((a, b) => a - b);
  const users = tracker.users;
  let k = 0;
  let w = 0;
  let prev: (typeof samples)[number] | undefined;
  const timeline: TimelinePoint[] = samples.map((s) => {
    const t = s.at - startEpoch;
    while (k < fullTimes.length && fullTimes[k] <= t) k++;
    const w0 = w;
    while (w < tracker.writeTimes.length && tracker.writeTimes[w] <= t) w++;
    const cpuPct = prev ? (100 * (s.cpuUserUs + s.cpuSystemUs - prev.cpuUserUs - prev.cpuSystemUs)) / 1000 / Math.max(1, s.at - prev.at) : 0;
    const a = ownCpu.findLast((c) => c.at <= (prev?.at ?? 0));
    const b = ownCpu.findLast((c) => c.at <= s.at);
    const simPct = a && b && b.at > a.at ? (100 * (b.us - a.us)) / 1000 / (b.at - a.at) : 0;
    prev = s;
    return {
      t: Math.round(t),
      convergedPct: users ? round((100 * k) / users, 2) : 100,
      outbox: s.outbox,
      queueWaiting: s.queueWaiting,
      rssMb: round(s.rss / 1048576),
      heapMb: round(s.heapUsed / 1048576),
      writes: w - w0,
      daemonCpuPct: round(cpuPct),
      simCpuPct: round(simPct),
    };
  });
  const stats = await daemon.state();
  const secs = convergenceMs / 1000;
  return {
    scenario: sc.name,
    speed: o.speed,
    terminals: sc.terminals,
    users,
    deviceChanges: tracker.deviceChanges,
    convergenceMs: round(convergenceMs),
    converged,
    actionsDoneMs: round(actionsDoneMs),
    putUsersRequests: counts.PUT_USERS ?? 0,
    userRecordsWritten: records,
    pushesPerSec: round((counts.PUT_USERS ?? 0) / secs),
    recordsPerSec: round(records / secs),
    latencyMs: roundSummary(summarize(tracker.finish())),
    daemon: {
      cpuMs: round(cpuMs),
      cpuPercentOfOneCore: round((100 * cpuMs) / wallMs),
      peakRssMb: round(daemon.peakRssMb()),
      peakHeapMb: round(Math.max(0, ...samples.map((s) => s.heapUsed)) / 1048576),
      peakHeapTotalMb: round(Math.max(0, ...samples.map((s) => s.heapTotal)) / 1048576),
      peakExternalMb: round(Math.max(0, ...samples.map((s) => s.external)) / 1048576),
      maxOutbox: Math.max(0, ...samples.map((s) => s.outbox)),
      maxQueueWaiting: Math.max(0, ...samples.map((s) => s.queueWaiting)),
      pulls: stats.pulls,
      pushes: stats.pushes,
      pushesFailed: stats.pushesFailed,
      dbWriteFailures: stats.dbWriteFailures,
    },
    admin: adminRes
      ? {
          ...roundSummary(summarize(adminRes.latencies)),
          errors: adminRes.errors,
          byPath: Object.fromEntries(Object.entries(adminRes.byPath).map(([p, l]) => [p, roundSummary(summarize(l))])),
        }
      : null,
    commands: counts,
    timeline,
    problems,
  };
}

function roundSummary(s: Summary): Summary {
  return { count: s.count, p50: round(s.p50), p99: round(s.p99), max: round(s.max), mean: round(s.mean) };
}
