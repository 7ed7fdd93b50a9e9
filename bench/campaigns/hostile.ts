// Campaign: hostile frames against a live daemon (issue 11: 1,000,000).
//
//   npx tsx bench/campaigns/hostile.ts [--frames 1000000] [--rate 0] [--terminals 6]
//       [--baseline-sec 60] [--probe-ms 250] [--seed 7] [--out FILE] [--log FILE] [--key hostile]
//
// The daemon is `termsync run` (bin/termsync.js) dialling --terminals simulated
// terminals (the well-behaved ones, in this process) and listening for
// terminals that dial in, with --auto-approve. bench/campaigns/hostile-client.ts,
// a separate process, sends the hostile frames to that listener, before and
// after authentication (see its header for the sessions).
//
// Measured:
// - crashes: the daemon process must still be running at the end, with no
//   fatal log line;
// - daemon RSS (from /proc every second) and heap (/metrics every 5 s) while
//   the frames are sent: least-squares slope;
// - sync latency of the well-behaved terminals: every --probe-ms a user is
//   enrolled at one of them (round robin) and timed until every other one
//   holds it; p50/p99 during --baseline-sec before the hostile client starts,
//   and while it runs (issue 11: p99 within 20%);
// - at the end: the well-behaved terminals hold exactly the server's users,
//   PRAGMA integrity_check is ok.
// The result goes under --key (default "hostile") in bench/results/campaigns.json (or --out).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { userFromJson, type UserRecord } from '../../src/model/user.js';
import { usersEqual } from '../../src/model/merge.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { Simulator } from '../../src/sim/simulator.js';
import { readServer } from '../../test/helpers/faults.js';
import { cliDaemon } from './daemons.js';
import { cpuMsOf, machine, percentile, round1, rssOf, saveResult, slope, RESULTS_FILE } from './report.js';

const { values: a } = parseArgs({
  options: {
    frames: { type: 'string', default: '1000000' },
    rate: { type: 'string', default: '0' },
    terminals: { type: 'string', default: '6' },
    'baseline-sec': { type: 'string', default: '60' },
    'probe-ms': { type: 'string', default: '250' },
    seed: { type: 'string', default: '7' },
    'preauth-workers': { type: 'string', default: '8' },
    'postauth-workers': { type: 'string', default: '4' },
    out: { type: 'string' },
    log: { type: 'string' },
    keep: { type: 'boolean', default: false },
    // the key in the results file (a variant, e.g. a throttled run: hostile-rate2000)
    key: { type: 'string', default: 'hostile' },
  },
});
const N = Number(a.terminals);
const PROBE_MS = Number(a['probe-ms']);
const say = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

const started = Date.now();
const startMachine = machine();
const dir = mkdtempSync(join(tmpdir(), 'termsync-hostile-'));
const db = join(dir, 'termsync.db');
const logFile = a.log ?? join(dir, 'daemon.log');

const sim = await Simulator.start({
  terminals: N,
  commKey: DEV_COMM_KEY,
  userCapacity: 100_000,
  timing: { perCommandMs: 1, perUserWriteMs: 0.5, perUserReadMs: 0.2, perUserListedMs: 0, perEventReadMs: 0 },
});
const ports = sim.ports();
const daemon = await cliDaemon({ logFile, logLevel: 'info', extraFlags: ['--listen=127.0.0.1:0', '--auto-approve'] })({
  db,
  terminals: sim.terminals.map((t, i) => ({ deviceId: t.deviceId, port: ports[i] })),
});
let daemonExit: { code: number | null; signal: string | null } | null = null;
void daemon.exited.then((e) => {
  daemonExit = e;
  say(`DAEMON EXITED ${JSON.stringify(e)}`);
});
say(`daemon pid ${daemon.pid}, listener ${daemon.listenPorts[0]}, admin ${daemon.adminUrl}`);

// every well-behaved terminal online before the baseline
for (const deadline = Date.now() + 60_000; ; ) {
  const st = (await (await fetch(`${daemon.adminUrl}/api/status`)).json()) as { terminals: { online: number } };
  if (st.terminals.online >= N) break;
  if (Date.now() > deadline) throw new Error(`only ${st.terminals.online}/${N} terminals online`);
  await sleep(200);
}

// ------------------------------------------------------------------ memory samples

interface Mem {
  at: number;
  rss: number;
  cpuMs: number;
  heapUsed?: number;
  /** the daemon's largest event-loop delay since the previous scrape, ms (prom-client's nodejs_eventloop_lag_max_seconds) */
  loopMaxMs?: number;
  phase: Phase;
}
type Phase = 'baseline' | 'hostile' | 'after';
let phase: Phase = 'baseline';
const mem: Mem[] = [];
let tick = 0;
const sampler = setInterval(() => {
  const m: Mem = { at: Date.now(), rss: rssOf(daemon.pid), cpuMs: cpuMsOf(daemon.pid), phase };
  mem.push(m);
  if (tick++ % 5 === 0) {
    fetch(`${daemon.adminUrl}/metrics`, { signal: AbortSignal.timeout(3000) })
      .then((r) => r.text())
      .then((t) => {
        const h = /^process_heap_used_bytes (\d+(?:\.\d+)?)/m.exec(t);
        if (h) m.heapUsed = Number(h[1]);
        const lag = /^nodejs_eventloop_lag_max_seconds (\d+(?:\.\d+)?(?:e[-+]?\d+)?)/m.exec(t);
        if (lag) m.loopMaxMs = Number(lag[1]) * 1000;
      })
      .catch(() => {});
  }
}, 1000);

// ------------------------------------------------------------------ latency probes

const latency: Record<Phase, number[]> = { baseline: [], hostile: [], after: [] };
const unfinished: Record<Phase, number> = { baseline: 0, hostile: 0, after: 0 };
interface Probe {
  id: string;
  from: number;
  t0: number;
  phase: Phase;
  waiting: Set<number>;
}
const open = new Map<string, Probe>();
for (const t of sim.terminals) {
  t.on('changed', () => {
    for (const p of open.values()) {
      if (!p.waiting.has(t.index) || !t.getUser(p.id)) continue;
      p.waiting.delete(t.index);
      if (p.waiting.size === 0) {
        latency[p.phase].push(performance.now() - p.t0);
        open.delete(p.id);
      }
    }
  });
}
let probeN = 0;
let probing = true;
const probes = (async () => {
  while (probing) {
    const t = sim.terminals[probeN % N];
    const u: UserRecord = userFromJson({ id: `probe-${probeN}`, name: `Probe ${probeN}`, cards: [{ type: 1, data: Buffer.from(`probe-${probeN}`).toString('hex') }] });
    probeN++;
    const p: Probe = { id: u.id, from: t.index, t0: performance.now(), phase, waiting: new Set(sim.terminals.filter((x) => x !== t).map((x) => x.index)) };
    open.set(u.id, p);
    await t.enroll(u);
    await sleep(PROBE_MS);
  }
})();

function latencySummary(xs: number[]) {
  return { n: xs.length, p50: round1(percentile(xs, 50)), p99: round1(percentile(xs, 99)), max: round1(Math.max(...xs)) };
}

// ------------------------------------------------------------------ run

say(`baseline for ${a['baseline-sec']} s`);
await sleep(Number(a['baseline-sec']) * 1000);
const loadBefore = loadavg();
phase = 'hostile';
const hostileStart = Date.now();
const client = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    join(import.meta.dirname, 'hostile-client.ts'),
    JSON.stringify({
      port: daemon.listenPorts[0],
      key: DEV_COMM_KEY.toString('hex'),
      frames: Number(a.frames),
      rate: Number(a.rate),
      seed: Number(a.seed),
      preauthWorkers: Number(a['preauth-workers']),
      postauthWorkers: Number(a['postauth-workers']),
    }),
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
let tally: Record<string, unknown> | null = null;
const loads: number[] = [];
createInterface({ input: client.stdout! }).on('line', (line) => {
  if (line.startsWith('DONE ')) tally = JSON.parse(line.slice(5));
  else if (line.includes('"progress"')) {
    loads.push(loadavg()[0]);
    const last = mem.at(-1);
    say(`${line} daemon rss ${last ? round1(last.rss / 2 ** 20) : '?'} MB, probes during ${latency.hostile.length}`);
  }
});
// the hostile process's own CPU use (it shares the two cores with everything else)
let clientCpuMs = 0;
const clientCpu = setInterval(() => {
  const c = cpuMsOf(client.pid!);
  if (Number.isFinite(c)) clientCpuMs = c;
}, 1000);
const clientExit = await new Promise<number | null>((r) => client.once('exit', (code) => r(code)));
clearInterval(clientCpu);
const hostileSec = (Date.now() - hostileStart) / 1000;
phase = 'after';
say(`hostile client done (exit ${clientExit}) in ${Math.round(hostileSec)} s; settling 15 s`);
await sleep(15_000);
probing = false;
await probes;
clearInterval(sampler);

// the well-behaved terminals hold exactly the server's users
let view = readServer(db, { integrity: false });
let converged = false;
for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
  view = readServer(db, { integrity: false });
  const ok = sim.terminals.every((t) => [...view.users.values()].every((u) => {
    const h = t.getUser(u.id);
    return h && usersEqual(h, u);
  }) && t.listUsers().every((u) => view.users.has(u.id)));
  if (ok) {
    converged = true;
    break;
  }
  await sleep(500);
}
view = readServer(db);
const alive = daemon.running();
const logText = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
const logLines = logText.split('\n').filter(Boolean);
const fatal = logLines.filter((l) => /"level":60/.test(l));
const errors = logLines.filter((l) => /"level":50/.test(l));
const closedReasons: Record<string, number> = {};
for (const l of logLines) {
  if (!/"level":(30|40)/.test(l)) continue;
  try {
    const m = JSON.parse(l) as { msg?: string; reason?: string };
    if (m.reason) {
      const k = `${m.msg}: ${String(m.reason).replace(/\d+/g, 'N').slice(0, 80)}`;
      closedReasons[k] = (closedReasons[k] ?? 0) + 1;
    }
  } catch {
    // not JSON
  }
}
const topReasons = Object.fromEntries(Object.entries(closedReasons).sort((x, y) => y[1] - x[1]).slice(0, 15));

const during = mem.filter((m) => m.phase === 'hostile');
const rssFit = slope(during.map((m) => ({ x: (m.at - during[0].at) / 60_000, y: m.rss / 2 ** 20 })));
const heapPts = during.filter((m) => m.heapUsed !== undefined);
const heapFit = slope(heapPts.map((m) => ({ x: (m.at - during[0].at) / 60_000, y: m.heapUsed! / 2 ** 20 })));
/** the daemon's CPU use in a phase, % of one core */
function cpuPct(p: Phase): number {
  const xs = mem.filter((m) => m.phase === p && Number.isFinite(m.cpuMs));
  if (xs.length < 2) return NaN;
  return Math.round(((xs.at(-1)!.cpuMs - xs[0].cpuMs) / (xs.at(-1)!.at - xs[0].at)) * 1000) / 10;
}
const base = latencySummary(latency.baseline);
const dur = latencySummary(latency.hostile);
const summary = {
  command: `npx tsx bench/campaigns/hostile.ts ${process.argv.slice(2).join(' ')}`.trim(),
  startedAt: new Date(started).toISOString(),
  durationSec: Math.round((Date.now() - started) / 1000),
  machine: { ...startMachine, loadavgBeforeHostile: loadBefore.map(round1), load1MaxDuring: round1(Math.max(...loads, 0)), loadavgEnd: machine().loadavg },
  wellBehavedTerminals: N,
  hostile: { ...(tally ?? {}), clientExit, seconds: round1(hostileSec) },
  framesPerSecond: tally ? Math.round(Number((tally as { sent: number }).sent) / hostileSec) : 0,
  daemonAlive: alive,
  daemonExit,
  crashes: alive ? 0 : 1,
  fatalLogLines: fatal.length,
  errorLogLines: errors.length,
  errorLogSamples: errors.slice(0, 5).map((l) => l.slice(0, 400)),
  logLines: logLines.length,
  topLoggedReasons: topReasons,
  daemonCpuPctOfOneCore: { baseline: cpuPct('baseline'), whileHostile: cpuPct('hostile'), after: cpuPct('after') },
  daemonLoopDelayMaxMs: Object.fromEntries(
    (['baseline', 'hostile', 'after'] as Phase[]).map((p) => {
      const xs = mem.filter((m) => m.phase === p && m.loopMaxMs !== undefined).map((m) => m.loopMaxMs!);
      return [p, { max: round1(Math.max(...xs)), p50: round1(percentile(xs, 50)), scrapes: xs.length }];
    }),
  ),
  hostileClientCpuPctOfOneCore: Math.round((clientCpuMs / (hostileSec * 1000)) * 1000) / 10,
  rssMb: {
    atStart: round1((during[0]?.rss ?? NaN) / 2 ** 20),
    atEnd: round1((during.at(-1)?.rss ?? NaN) / 2 ** 20),
    max: round1(Math.max(...during.map((m) => m.rss)) / 2 ** 20),
    slopeMbPerMin: Math.round(rssFit.slope * 1000) / 1000,
    r2: Math.round(rssFit.r2 * 1000) / 1000,
    samples: during.length,
  },
  heapUsedMb: {
    atStart: round1((heapPts[0]?.heapUsed ?? NaN) / 2 ** 20),
    atEnd: round1((heapPts.at(-1)?.heapUsed ?? NaN) / 2 ** 20),
    slopeMbPerMin: Math.round(heapFit.slope * 1000) / 1000,
    r2: Math.round(heapFit.r2 * 1000) / 1000,
    samples: heapPts.length,
  },
  syncLatencyMs: {
    definition: 'enrollment at one well-behaved terminal until every other well-behaved terminal holds the user',
    baseline: base,
    whileHostile: dur,
    after: latencySummary(latency.after),
    p99Ratio: Math.round((dur.p99 / base.p99) * 100) / 100,
    within20pct: dur.p99 <= base.p99 * 1.2,
    probesNeverCompleted: open.size,
  },
  end: { converged, integrity: view.integrity, serverUsers: view.users.size, outbox: view.outbox },
  rssSamples: mem.map((m) => [Math.round((m.at - started) / 1000), round1(m.rss / 2 ** 20), m.heapUsed === undefined ? null : round1(m.heapUsed / 2 ** 20), m.phase]),
};
saveResult(a.key!, summary, a.out ?? RESULTS_FILE);
const { rssSamples: _s, ...brief } = summary;
process.stdout.write(JSON.stringify(brief, null, 2) + '\n');
daemon.kill('SIGTERM');
await daemon.exited;
await sim.close();
if (!a.keep) rmSync(dir, { recursive: true, force: true });
else say(`kept ${dir}`);
process.exit(alive && converged && view.integrity === 'ok' ? 0 : 1);
