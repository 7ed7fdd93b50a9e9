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
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, EventCode, ORIGIN_DEVICE, ORIGIN_SERVER } from '../src/codec/index.js';
import type { EventRecord } from '../src/model/event.js';
import type { UserRecord } from '../src/model/user.js';
import type { Simulator } from '../src/sim/simulator.js';
import type { SimTerminal, UserPatch } from '../src/sim/terminal.js';
import { Store } from '../src/store/store.js';
import { usersEqual } from '../src/sync/merge.js';
import type { DaemonProc } from './daemon-proc.js';
import type { Action, Scenario } from './scenario.js';
import { round, summarize, type Summary } from './stats.js';

export type Speed = number | 'max';

export interface ReplayOptions {
  scenario: Scenario;
  sim: Simulator;
  daemon: DaemonProc;
  /** the daemon's database file (read-only here) */
  db: string;
  speed: Speed;
  /** probe the admin API while the scenario runs (GETs on a rotating set of endpoints) */
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
    maxOutbox: number;
    maxQueueWaiting: number;
    pulls: number;
    pushes: number;
    pushesFailed: number;
    dbWriteFailures: number;
  };
  admin: (Summary & { errors: number }) | null;
  commands: Record<string, number>;
  timeline: TimelinePoint[];
  /** the first few differences when not converged */
  problems: string[];
}

const CHANGE_CODES = new Set<number>([EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_PARTIAL_UPDATE_SUCCESS]);

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
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly sim: Simulator,
    private readonly now: () => number,
  ) {
    for (const t of sim.terminals) {
      const fn = (events: EventRecord[]) => this.onEvents(t, events);
      t.on('events', fn);
      this.listeners.push(() => t.off('events', fn));
    }
  }

  private onEvents(t: SimTerminal, events: EventRecord[]): void {
    const now = this.now();
    const T = this.sim.terminals.length;
    for (const e of events) {
      if (!CHANGE_CODES.has(e.code) || !e.userId) continue;
      const u = e.userId;
      if (e.param === ORIGIN_DEVICE) {
        this.deviceChanges++;
        this.finishLatency(u);
        this.changedAt.set(u, now);
        const h = new Uint8Array(T + 1);
        h[t.index] = 1;
        if (this.holderCount.get(u) === T) this.fullCount--;
        this.holders.set(u, h);
        this.holderCount.set(u, 1);
        this.fullAt.delete(u);
        if (T === 1) this.markFull(u, now);
      } else if (e.param === ORIGIN_SERVER) {
        this.writes++;
        this.writeTimes.push(now);
        this.lastWrite = now;
        this.lastWriteAt.set(u, now);
        let h = this.holders.get(u);
        if (!h) {
          // a server-side user (not from a device change): track it too
          h = new Uint8Array(T + 1);
          this.holders.set(u, h);
          this.holderCount.set(u, 0);
        }
        if (!h[t.index]) {
          h[t.index] = 1;
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
    for (const off of this.listeners) off();
  }
}

/** The patch that makes a terminal's copy of a user equal to `u` (for 'edit-to'). */
export function patchTo(u: UserRecord): UserPatch {
  return {
    name: u.name,
    phrase: u.phrase,
    startTime: u.setting.startTime,
    endTime: u.setting.endTime,
    cards: u.cards.map((c) => ({ type: c.type, data: c.data.toString('hex') })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: [f.templates[0].toString('hex'), f.templates[1].toString('hex')] })),
    faces: u.faces.map((f) => ({ index: f.index, flag: f.flag, data: f.data.toString('hex') })),
    accessGroups: u.accessGroups,
    pinHash: u.pinHash.length ? u.pinHash.toString('hex') : '',
  };
}

async function perform(t: SimTerminal, a: Action): Promise<void> {
  switch (a.op) {
    case 'enroll':
      await t.enroll(a.user);
      return;
    case 'edit':
      await t.edit(a.userId, a.patch);
      return;
    case 'edit-to':
      if (t.getUser(a.user.id)) await t.edit(a.user.id, patchTo(a.user));
      else await t.enroll(a.user);
      return;
    case 'offline':
      t.refuse(1e12);
      t.dropConnections();
      return;
    case 'online':
      t.refuse(0);
      return;
    case 'barrier':
      return;
  }
}

/**
 * Compares every terminal with the server's records. Returns the first few
 * problems (empty = converged). `skip`: terminals not expected to hold
 * anything (offline at the end).
 */
export function verifyConverged(sim: Simulator, store: Store, skip: Set<number> = new Set(), limit = 5): string[] {
  const problems: string[] = [];
  const server: UserRecord[] = [];
  for (let after = ''; ; ) {
    const page = store.listUsers({ after, limit: 5000 });
    if (page.length === 0) break;
    server.push(...page);
    after = page[page.length - 1].id;
  }
  for (const t of sim.terminals) {
    if (skip.has(t.index)) continue;
    const held = new Map<string, UserRecord>();
    for (const u of t.storedUsers()) held.set(u.id, u);
    for (const u of server) {
      const h = held.get(u.id);
      if (!h) problems.push(`terminal ${t.index} lacks user ${u.id}`);
      else if (!usersEqual(h, u)) problems.push(`terminal ${t.index} holds user ${u.id} different from the server`);
      if (problems.length >= limit) return problems;
    }
  }
  return problems;
}

const ADMIN_PATHS = ['/api/status', '/api/terminals', '/api/users?limit=100', '/api/events?limit=100&order=desc', '/metrics', '/healthz'];

/** GETs on the admin API, one at a time every `everyMs`, until stopped. */
export function probeAdmin(port: number, everyMs: number): { stop(): Promise<{ latencies: number[]; errors: number }> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let errors = 0;
  let stopped = false;
  const one = (path: string) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          if (res.statusCode === 200) latencies.push(performance.now() - started);
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const next = performance.now() + everyMs;
      await one(ADMIN_PATHS[i % ADMIN_PATHS.length]);
      const wait = next - performance.now();
      if (wait > 0 && !stopped) await sleep(wait);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      agent.destroy();
      return { latencies, errors };
    },
  };
}

/** Counts the requests each terminal serves, by command (and user records written). */
function countCommands(sim: Simulator): { counts: Record<string, number>; records: () => number; restore(): void } {
  const counts: Record<string, number> = {};
  let records = 0;
  const restores: (() => void)[] = [];
  for (const t of sim.terminals) {
    const orig = t.handle.bind(t);
    t.handle = (frame, hooks) => {
      const name = Command[frame.command] ?? `0x${frame.command.toString(16)}`;
      counts[name] = (counts[name] ?? 0) + 1;
      if (frame.command === Command.PUT_USERS && frame.payload.length >= 4) records += frame.payload.readUInt16LE(2);
      return orig(frame, hooks);
    };
    restores.push(() => {
      delete (t as { handle?: unknown }).handle;
    });
  }
  return { counts, records: () => records, restore: () => restores.forEach((r) => r()) };
}

export async function replay(o: ReplayOptions): Promise<ReplayResult> {
  const { scenario: sc, sim, daemon } = o;
  if (sim.terminals.length !== sc.terminals) throw new Error(`scenario ${sc.name} needs ${sc.terminals} terminals, the simulator has ${sim.terminals.length}`);
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const tracker = new Tracker(sim, now);
  const cmd = countCommands(sim);
  const sampleFrom = daemon.samples.length;
  const cpu0 = daemon.cpuMsFromProc();
  const admin = o.adminProbeMs ? probeAdmin(daemon.adminPort, o.adminProbeMs) : null;
  const store = Store.open(o.db, { readonly: true });
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
        const p = verifyConverged(sim, store, offline);
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
        const t = sim.terminal(term)!;
        for (const a of list) {
          if (o.speed !== 'max') {
            const due = segStartWall + (a.t - segStartT) / o.speed;
            const wait = due - now();
            if (wait >= 1) await sleep(wait);
          }
          try {
            await perform(t, a);
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
      await perform(sim.terminal(a.term)!, a);
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
  store.close();
  tracker.detach();
  cmd.restore();

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
    };
  });
  const stats = await daemon.state();
  const secs = convergenceMs / 1000;
  return {
    scenario: sc.name,
    speed: o.speed,
    terminals: sc.terminals,
    users: store ? users : 0,
    deviceChanges: tracker.deviceChanges,
    convergenceMs: round(convergenceMs),
    converged,
    actionsDoneMs: round(actionsDoneMs),
    putUsersRequests: cmd.counts.PUT_USERS ?? 0,
    userRecordsWritten: cmd.records(),
    pushesPerSec: round((cmd.counts.PUT_USERS ?? 0) / secs),
    recordsPerSec: round(cmd.records() / secs),
    latencyMs: roundSummary(summarize(tracker.finish())),
    daemon: {
      cpuMs: round(cpuMs),
      cpuPercentOfOneCore: round((100 * cpuMs) / wallMs),
      peakRssMb: round(daemon.peakRssMb()),
      peakHeapMb: round(Math.max(0, ...samples.map((s) => s.heapUsed)) / 1048576),
      maxOutbox: Math.max(0, ...samples.map((s) => s.outbox)),
      maxQueueWaiting: Math.max(0, ...samples.map((s) => s.queueWaiting)),
      pulls: stats.pulls,
      pushes: stats.pushes,
      pushesFailed: stats.pushesFailed,
      dbWriteFailures: stats.dbWriteFailures,
    },
    admin: adminRes ? { ...roundSummary(summarize(adminRes.latencies)), errors: adminRes.errors } : null,
    commands: cmd.counts,
    timeline,
    problems,
  };
}

function roundSummary(s: Summary): Summary {
  return { count: s.count, p50: round(s.p50), p99: round(s.p99), max: round(s.max), mean: round(s.mean) };
}
