// The stage of every attack: the daemon in its own process (Daemon + admin
// API, as `termsync run`) dialling two well-behaved simulated terminals
// (default timing model) and listening for terminals that dial in, with
// --auto-approve; probes that watch it while an attack runs.
import { fork, type ChildProcess } from 'node:child_process';
import { statSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { quantileFromBuckets, STALL_BUCKETS } from '../../src/admin/loop-stall.js';
import { RUN_DEFAULTS } from '../../src/config.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { Simulator } from '../../src/sim/simulator.js';
import { makeUser, prng } from '../scenario.js';
import { DaemonProc } from '../daemon-proc.js';
import { percentile } from '../stats.js';

export interface HostileSite {
  daemon: DaemonProc;
  sim: Simulator;
  dir: string;
  db: string;
  /** the daemon's plain-TCP terminal listener */
  listenPort: number;
  close(): Promise<void>;
}

export interface SiteOptions {
  daemonExtra?: Record<string, unknown>;
  nodeArgs?: string[];
  concurrency?: number;
  logFile?: string;
  /** write a V8 CPU profile of the daemon here */
  cpuProfDir?: string;
}

export async function startHostileSite(o: SiteOptions = {}): Promise<HostileSite> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-hostile-'));
  const db = join(dir, 'termsync.db');
  const sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY });
  let daemon: DaemonProc;
  try {
    daemon = await DaemonProc.start({
      db,
      commKey: DEV_COMM_KEY.toString('hex'),
      terminals: sim.ports().map((port, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port })),
      syncMode: 'all',
      heartbeatSec: RUN_DEFAULTS.heartbeatSec,
      reconnectMinMs: 50,
      reconnectMaxMs: 1000,
      // the defaults of `termsync run` (the engine's own default differs)
      concurrency: o.concurrency ?? RUN_DEFAULTS.concurrency,
      requestTimeoutMs: RUN_DEFAULTS.requestTimeoutMs,
      sampleMs: 250,
      nodeArgs: o.nodeArgs,
      logFile: o.logFile,
      logLevel: o.logFile ? 'info' : undefined,
      cpuProfDir: o.cpuProfDir,
      daemonExtra: { listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, ...o.daemonExtra },
    });
  } catch (e) {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const site: HostileSite = {
    daemon,
    sim,
    dir,
    db,
    listenPort: daemon.listenPorts[0],
    async close() {
      await daemon.stop();
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const st = await daemon.state();
    if (st.online === 2 && st.idle && st.reconciles >= 2) break;
    if (Date.now() > deadline) {
      await site.close();
      throw new Error(`site not ready: ${st.online}/2 online`);
    }
    await sleep(100);
  }
  return site;
}

// ------------------------------------------------------------------ probes

/** probes and the administrator come from an address of their own, not the attacker's (127.0.0.1..3) */
export const PROBE_ADDRESS = '127.0.0.5';

export function httpGet(port: number, path: string, timeoutMs: number): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs, localAddress: PROBE_ADDRESS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export function httpPut(port: number, path: string, json: unknown, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify(json));
    const req = http.request({ host: '127.0.0.1', port, path, method: 'PUT', agent: false, timeout: timeoutMs, localAddress: PROBE_ADDRESS, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** p50 / p99 / max of the loop's stalls over the attack, ms (see src/admin/loop-stall.ts) */
export interface StallFigures {
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export interface ProbeSummary {
  healthz: { n: number; failed: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** largest event-loop delay the daemon reported in /metrics over the attack (ms); null when /metrics never answered */
  loopMaxMs: number | null;
  /** peak RSS of the daemon's process (VmHWM), MB */
  peakRssMb: number;
  /**
   * largest event-loop delay of this process (the attacker and the simulated
   * well-behaved terminals share it), measured as the daemon's is (20 ms
   * resolution, which the figure includes): when it is high, part of the sync
   * latency under attack is the harness's, not the daemon's
   */
  harnessLoopMaxMs?: number;
  /**
   * the daemon's event-loop stalls over the attack (a 20 ms timer's lateness,
   * without the interval itself): `wall` as they happened, `own` the part of
   * each the daemon spent on the CPU (its own work; the rest was waiting for
   * a core). From /metrics' termsync_eventloop_stall_* (p50/p99 from the
   * histogram, interpolated within its buckets).
   */
  stall?: { wall: StallFigures; own: StallFigures };
  /** the same for an idle Node process beside it over the same seconds: the machine's noise */
  noise?: { wall: StallFigures; own: StallFigures };
  /** the daemon's process was alive at the end */
  alive: boolean;
  exit: string | null;
}

/** /healthz every 250 ms (fresh connection, 10 s timeout), /metrics every second, while running. */
export class Probes {
  private healthMs: number[] = [];
  private healthFailed = 0;
  private loopMax: number | null = null;
  private running = true;
  private loops: Promise<void>[] = [];
  private readonly own = monitorEventLoopDelay({ resolution: 20 });
  /** the stall histogram's bucket counts at the first and the latest scrape */
  private stallFirst: { wall: number[]; own: number[] } | null = null;
  private stallLast: { wall: number[]; own: number[] } | null = null;
  private stallMax = { wall: 0, own: 0 };
  private noise: ChildProcess | null;
  private noiseStarted: Promise<void>;

  constructor(private readonly site: HostileSite) {
    this.own.enable();
    this.noise = fork(NOISE_CHILD, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.noiseStarted = new Promise<void>((resolve) => {
      this.noise!.once('message', () => resolve());
      this.noise!.once('exit', () => resolve());
      this.noise!.send('start');
    });
    const admin = site.daemon.adminPort;
    this.loops.push(
      (async () => {
        while (this.running) {
          const t = sleep(250);
          try {
            const r = await httpGet(admin, '/healthz', 10_000);
            if (r.status === 200) this.healthMs.push(r.ms);
            else this.healthFailed++;
          } catch {
            this.healthFailed++;
            if (!this.site.daemon.alive) break;
          }
          await t;
        }
      })(),
      (async () => {
        // a warm-up scrape first (the daemon's first /metrics is its most expensive: code
        // compiled on first use), then the first counted scrape only resets the
        // histograms (they hold the start-up and the quiet runs)
        await httpGet(admin, '/metrics', 10_000).catch(() => null);
        await sleep(300);
        let first = true;
        while (this.running) {
          const t = sleep(1000);
          try {
            const r = await httpGet(admin, '/metrics', 10_000);
            const m = /^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(r.body);
            if (m && !first) this.loopMax = Math.max(this.loopMax ?? 0, Number(m[1]) * 1000);
            const buckets = stallBuckets(r.body);
            if (buckets) {
              if (first) this.stallFirst = buckets;
              this.stallLast = buckets;
            }
            if (!first) {
              for (const k of ['wall', 'own'] as const) {
                const x = new RegExp(`^termsync_eventloop_stall_max_seconds\\{measure="${k}"\\} (\\S+)$`, 'm').exec(r.body);
                if (x) this.stallMax[k] = Math.max(this.stallMax[k], Number(x[1]) * 1000);
              }
            }
            first = false;
          } catch {
            if (!this.site.daemon.alive) break;
          }
          await t;
        }
      })(),
    );
  }

  async stop(): Promise<ProbeSummary> {
    this.running = false;
    this.own.disable();
    await Promise.all(this.loops);
    await this.noiseStarted;
    const noise = await new Promise<{ wall: number[]; own: number[]; maxMs: number; ownMaxMs: number } | null>((resolve) => {
      const c = this.noise;
      if (!c || c.exitCode !== null) return resolve(null);
      c.once('message', (m) => resolve(m as { wall: number[]; own: number[]; maxMs: number; ownMaxMs: number }));
      c.once('exit', () => resolve(null));
      c.send('stop');
    });
    this.noise = null;
    let stall: ProbeSummary['stall'];
    if (this.stallFirst && this.stallLast) {
      const diff = (k: 'wall' | 'own') => this.stallLast![k].map((n, i) => n - this.stallFirst![k][i]);
      stall = { wall: figures(diff('wall'), this.stallMax.wall), own: figures(diff('own'), this.stallMax.own) };
    }
    const h = [...this.healthMs].sort((a, b) => a - b);
    const alive = this.site.daemon.alive;
    let peak = NaN;
    try {
      peak = this.site.daemon.peakRssMb();
    } catch {
      peak = Math.max(0, ...this.site.daemon.samples.map((s) => s.rss / 1048576));
    }
    return {
      healthz: { n: h.length + this.healthFailed, failed: this.healthFailed, p50Ms: round(percentile(h, 50)), p99Ms: round(percentile(h, 99)), maxMs: round(h.at(-1) ?? NaN) },
      loopMaxMs: this.loopMax === null ? null : round(this.loopMax),
      harnessLoopMaxMs: round(this.own.max / 1e6),
      stall,
      noise: noise ? { wall: figures(noise.wall, noise.maxMs), own: figures(noise.own, noise.ownMaxMs) } : undefined,
      peakRssMb: round(peak),
      alive,
      exit: this.site.daemon.exit,
    };
  }
}

const NOISE_CHILD = fileURLToPath(new URL('./noise-child.ts', import.meta.url));

/** The stall histogram's per-bucket counts (not cumulative) by measure, from a /metrics body; null when absent. */
function stallBuckets(body: string): { wall: number[]; own: number[] } | null {
  const out = { wall: [] as number[], own: [] as number[] };
  for (const k of ['wall', 'own'] as const) {
    const cum: number[] = [];
    for (const le of [...STALL_BUCKETS.map(String), '+Inf']) {
      const re = new RegExp(`^termsync_eventloop_stall_seconds_bucket\\{(?:le="${le.replace('+', '\\+')}",measure="${k}"|measure="${k}",le="${le.replace('+', '\\+')}")\\} (\\S+)$`, 'm');
      const m = re.exec(body);
      if (!m) return null;
      cum.push(Number(m[1]));
    }
    out[k] = cum.map((n, i) => n - (i ? cum[i - 1] : 0));
  }
  return out;
}

function figures(counts: number[], maxMs: number): StallFigures {
  return { p50Ms: nullRound(quantileFromBuckets(counts, 0.5)), p99Ms: nullRound(quantileFromBuckets(counts, 0.99)), maxMs: counts.some((n) => n > 0) ? round(maxMs) : null };
}

const nullRound = (x: number | null) => (x === null ? null : round(x));

export const round = (x: number, d = 1): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

// ------------------------------------------------------ well-behaved terminals

let userSeq = 0;
const rand = prng(0x5a5a);

/**
 * One enrollment at well-behaved terminal 1: ms until terminal 2 holds the
 * user (pulled by the daemon, merged, pushed). null when it did not arrive
 * within `timeoutMs`.
 */
export async function syncLatency(site: HostileSite, timeoutMs = 20_000): Promise<number | null> {
  const id = `wb-${process.pid}-${++userSeq}`;
  const t0 = performance.now();
  await site.sim.terminal(1)!.enroll(makeUser(id, rand, { cards: 1, fingers: 1, pin: false }));
  while (performance.now() - t0 < timeoutMs) {
    if (site.sim.terminal(2)!.getUser(id)) return round(performance.now() - t0);
    if (!site.daemon.alive) return null;
    await sleep(10);
  }
  return null;
}

/** An administrator's change (PUT /api/users/:id): ms until both well-behaved terminals hold it; null on timeout. */
export async function adminPushLatency(site: HostileSite, timeoutMs = 20_000): Promise<number | null> {
  const id = `adm-${process.pid}-${++userSeq}`;
  const t0 = performance.now();
  try {
    const st = await httpPut(site.daemon.adminPort, `/api/users/${id}`, { id, name: 'Admin Change' }, timeoutMs);
    if (st >= 300) return null;
  } catch {
    return null;
  }
  while (performance.now() - t0 < timeoutMs) {
    if (site.sim.terminal(1)!.getUser(id) && site.sim.terminal(2)!.getUser(id)) return round(performance.now() - t0);
    if (!site.daemon.alive) return null;
    await sleep(10);
  }
  return null;
}

export interface LatencySummary {
  n: number;
  /** samples that did not arrive within the timeout */
  timedOut: number;
  medianMs: number | null;
  maxMs: number | null;
}

export function summarize(samples: (number | null)[]): LatencySummary {
  const ok = samples.filter((x): x is number => x !== null).sort((a, b) => a - b);
  return { n: samples.length, timedOut: samples.length - ok.length, medianMs: ok.length ? round(percentile(ok, 50)) : null, maxMs: ok.length ? round(ok.at(-1)!) : null };
}

/**
 * The quiet figure: enrollments before the attack, measured as latencyLoop
 * measures them under attack (same timeout, 200 ms apart), enough of them that
 * the median is not one lucky or unlucky sample.
 */
export async function quietLatency(site: HostileSite, n = 15): Promise<LatencySummary> {
  const out: (number | null)[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await syncLatency(site));
    await sleep(200);
  }
  return summarize(out);
}

/** Enrollments one after another until `until()` says stop. */
export function latencyLoop(site: HostileSite, fn: (s: HostileSite) => Promise<number | null> = syncLatency): { stop(): Promise<LatencySummary> } {
  let running = true;
  const samples: (number | null)[] = [];
  const loop = (async () => {
    while (running && site.daemon.alive) {
      samples.push(await fn(site));
      await sleep(200);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return summarize(samples);
    },
  };
}

// ------------------------------------------------------------------ database

export function dbBytes(db: string): number {
  let n = 0;
  for (const f of [db, `${db}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {
      // not there
    }
  }
  return n;
}

/** Rows in the monitoring log (a read-only connection of its own; WAL lets it read while the daemon writes). */
export function eventRows(db: string, type?: string): number {
  const c = new Database(db, { readonly: true, fileMustExist: true });
  try {
    c.pragma('busy_timeout = 10000');
    return (type ? c.prepare('SELECT count(*) FROM events WHERE type = ?').pluck().get(type) : c.prepare('SELECT count(*) FROM events').pluck().get()) as number;
  } finally {
    c.close();
  }
}

export function terminalRows(db: string): number {
  const c = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return c.prepare('SELECT count(*) FROM terminals').pluck().get() as number;
  } finally {
    c.close();
  }
}

export function eventsOf(db: string, terminalId: string, type: string): number {
  const c = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return c.prepare('SELECT count(*) FROM events WHERE terminal_id = ? AND type = ?').pluck().get(terminalId, type) as number;
  } finally {
    c.close();
  }
}
