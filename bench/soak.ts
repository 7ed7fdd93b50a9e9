// Soak: the real daemon (a child process, so it can be killed) against the
// simulator (in this process) for a long time, with random faults, checking at
// every checkpoint that nothing a terminal reported was lost and that every
// terminal converged to the server's records.
//
//   npx tsx bench/soak.ts --minutes 30 [--terminals 8] [--seed 1] [--rate 3] [--out soak.json] [--no-daemon-faults]
//       [--sample-sec 10] [--results-key soak] [--fixed-users N]
//
// Workload: people enroll users at random terminals (about --rate per second)
// and sometimes edit them there; the server adds and changes users too.
// Faults (one every 1-4 s, seeded): a terminal drops its connections, stalls,
// black-holes, corrupts its next frame, refuses connections; the daemon is
// killed with SIGKILL or stopped with SIGTERM and restarted.
// Checkpoint (every --checkpoint-sec, default 120, and at the end): faults and
// workload pause, the daemon must be running, and within 90 s every user a
// terminal reported (enrolled) and every user the server accepted must be in the
// database, every terminal must hold every server user as the server holds it,
// the outbox must be empty and PRAGMA integrity_check must say ok.
// Output: a summary JSON (stdout and --out): users synced, faults injected by
// kind, losses, daemon crashes (exits we did not cause), RSS at start and end.
// Memory: every --sample-sec (default 10) the daemon's RSS and V8 heap in use
// are sampled (its `stats` command); the summary gives their least-squares
// slopes over the whole run and over its second half (after warm-up). With
// --no-daemon-faults one daemon process lives through the whole run, so the
// slope is that of one process (a leak is a bug). --results-key KEY also
// stores the summary under KEY in bench/results/campaigns.json
// (bench/campaigns/README.md).
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { userFromJson, userToJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { Store } from '../src/store/store.js';
import { usersEqual } from '../src/model/merge.js';
import { spawnDaemon, type ChildHandle } from '../test/helpers/child.js';
import { prng } from '../test/helpers/faults.js';
import { machine, saveResult, slope } from './campaigns/report.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    terminals: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    rate: { type: 'string', default: '3' },
    'checkpoint-sec': { type: 'string', default: '120' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    // no daemon kills or restarts: one daemon process for the whole run, so its RSS at the end means something
    'no-daemon-faults': { type: 'boolean', default: false },
    'sample-sec': { type: 'string', default: '10' },
    'results-key': { type: 'string' },
    // a fixed population: once this many users exist, the workload only edits them (on terminals and on
    // the server), so the data stops growing and a memory slope after that is not the data's
    'fixed-users': { type: 'string' },
  },
});
const MINUTES = Number(args.minutes);
const N = Number(args.terminals);
const RATE = Number(args.rate);
const CHECKPOINT_MS = Number(args['checkpoint-sec']) * 1000;
const FIXED_USERS = args['fixed-users'] === undefined ? Infinity : Number(args['fixed-users']);

const rnd = prng(Number(args.seed));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string, extra: Record<string, unknown> = {}) =>
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}${Object.keys(extra).length ? ' ' + JSON.stringify(extra) : ''}\n`);

const dir = mkdtempSync(join(tmpdir(), 'termsync-soak-'));
const db = join(dir, 'termsync.db');
const daemonLog = join(dir, 'daemon.log');

const stats = {
  command: `npx tsx bench/soak.ts ${process.argv.slice(2).join(' ')}`.trim(),
  machine: machine() as ReturnType<typeof machine> & { loadavgEnd?: number[] },
  startedAt: new Date().toISOString(),
  noDaemonFaults: Boolean(args['no-daemon-faults']),
  minutes: MINUTES,
  terminals: N,
  seed: Number(args.seed),
  enrolled: 0,
  deviceEdits: 0,
  serverPuts: 0,
  faults: {} as Record<string, number>,
  faultsTotal: 0,
  daemonStarts: 0,
  crashes: 0,
  checkpoints: [] as { at: string; users: number; losses: number; unconverged: string[]; outbox: number; integrity: string; convergeMs: number }[],
  losses: 0,
  lostUsers: [] as string[],
  daemonRssStart: 0,
  daemonRssEnd: 0,
  soakRssStart: process.memoryUsage().rss,
  soakRssEnd: 0,
  usersOnServer: 0,
  usersSynced: 0,
  pushEvents: 0,
  deviceMergeEvents: 0,
  dbSaveFailures: 0,
  daemonErrorLines: 0,
  memory: null as null | Record<string, unknown>,
  // [seconds since start, daemon pid, RSS MB, heap used MB]
  memorySamples: [] as [number, number, number, number][],
};

function fault(kind: string): void {
  stats.faults[kind] = (stats.faults[kind] ?? 0) + 1;
  stats.faultsTotal++;
}

const sim = await Simulator.start({
  terminals: N,
  commKey: DEV_COMM_KEY,
  userCapacity: 100_000,
  // a little latency, like a device, but not so much that the soak crawls
  timing: { perCommandMs: 1, perUserWriteMs: 0.5, perUserReadMs: 0.2, perUserListedMs: 0, perEventReadMs: 0 },
});
const ports = sim.ports();
const ids = sim.terminals.map((t) => `t${t.index}`);

let daemon: ChildHandle<{ pid: number; ports: number[] }> | null = null;
let expectingExit = false;

async function startDaemon(): Promise<void> {
  const d = await spawnDaemon({
    db,
    commKey: DEV_COMM_KEY,
    terminals: ids.map((id, i) => ({ id, host: '127.0.0.1', port: ports[i] })),
    syncMode: 'all',
    heartbeatSec: 2,
    requestTimeoutMs: 3000,
    reconnectMinMs: 50,
    reconnectMaxMs: 1000,
    dbRetryMs: 200,
    logLevel: 'warn',
    logFile: daemonLog,
  });
  stats.daemonStarts++;
  daemon = d;
  void d.exited.then(({ code, signal }) => {
    if (daemon === d) daemon = null;
    if (!expectingExit) {
      stats.crashes++;
      log('DAEMON EXITED UNEXPECTEDLY', { code, signal, stderr: d.stderr().slice(-2000) });
    }
  });
}

async function stopDaemon(how: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  const d = daemon;
  if (!d) return;
  expectingExit = true;
  d.kill(how);
  await d.exited;
  daemon = null;
  expectingExit = false;
}

// ------------------------------------------------------------------ workload

const reported = new Set<string>(); // users a terminal logged as enrolled on the device
const serverAccepted = new Set<string>(); // users the daemon's putUser accepted
let nextUser = 0;
let paused = false;

function newUser(prefix: string): UserRecord {
  const n = nextUser++;
  const id = `${prefix}${String(n).padStart(6, '0')}`;
  return userFromJson({
    id,
    name: `Soak ${id}`,
    pin: String(1000 + (n % 9000)),
    cards: [{ type: 1, data: Buffer.from(`c${prefix}${n}`).toString('hex') }],
    accessGroups: [1 + (n % 4)],
  });
}

async function workloadStep(): Promise<void> {
  const r = rnd.next();
  const t = sim.terminals[rnd.int(N)];
  if (nextUser >= FIXED_USERS) return editOnly(r, t);
  if (r < 0.75) {
    const u = newUser('d');
    try {
      await t.enroll(u);
      reported.add(u.id);
      stats.enrolled++;
    } catch {
      // e.g. the terminal is full: not reported, not expected
    }
  } else if (r < 0.9) {
    await deviceEdit(t);
  } else {
    const d = daemon;
    if (!d) return;
    const u = newUser('s');
    try {
      await d.call('putUser', { user: userToJson(u) }, 5000);
      serverAccepted.add(u.id);
      stats.serverPuts++;
    } catch {
      // the daemon died between the call and the answer: not accepted as far as we know
    }
  }
}

/** Someone edits, at terminal t, a user some terminal reported enrolled (if t holds it). */
async function deviceEdit(t: (typeof sim.terminals)[number]): Promise<void> {
  const held = [...reported];
  if (held.length === 0) return;
  const id = held[rnd.int(held.length)];
  if (!t.getUser(id)) return;
  try {
    await t.edit(id, { name: `Edited ${id} ${rnd.int(1000)}`, pin: String(rnd.int(10000)).padStart(4, '0') });
    stats.deviceEdits++;
  } catch {
    // deleted or changed under us
  }
}

/** --fixed-users reached: edits of existing users only, on a terminal or on the server. */
async function editOnly(r: number, t: (typeof sim.terminals)[number]): Promise<void> {
  if (r < 0.7) return deviceEdit(t);
  const d = daemon;
  const held = [...serverAccepted];
  if (!d || held.length === 0) return;
  const id = held[rnd.int(held.length)];
  const u = userFromJson({ id, name: `Server edit ${id} ${rnd.int(1000)}`, accessGroups: [1 + rnd.int(4)] });
  try {
    await d.call('putUser', { user: userToJson(u) }, 5000);
    stats.serverPuts++;
  } catch {
    // the daemon died between the call and the answer
  }
}

async function workloadLoop(until: number): Promise<void> {
  const gap = 1000 / RATE;
  while (Date.now() < until) {
    if (!paused) await workloadStep();
    await sleep(gap * (0.5 + rnd.next()));
  }
}

// ------------------------------------------------------------------ faults

async function faultStep(): Promise<void> {
  const r = rnd.next();
  const t = sim.terminals[rnd.int(N)];
  if (r < 0.2) {
    t.dropConnections();
    fault('drop');
  } else if (r < 0.35) {
    t.stall(500 + rnd.int(3500));
    fault('stall');
  } else if (r < 0.5) {
    t.blackhole(1000 + rnd.int(4000));
    fault('blackhole');
  } else if (r < 0.65) {
    t.corruptNextFrame();
    fault('corrupt');
  } else if (r < 0.78) {
    t.refuse(500 + rnd.int(2500));
    t.dropConnections();
    fault('refuse');
  } else if (args['no-daemon-faults']) {
    t.dropConnections();
    fault('drop');
  } else if (r < 0.9) {
    await stopDaemon('SIGKILL');
    fault('daemon-kill9');
    await sleep(rnd.int(1000));
    await startDaemon();
  } else {
    await stopDaemon('SIGTERM');
    fault('daemon-restart');
    await sleep(rnd.int(500));
    await startDaemon();
  }
}

async function faultLoop(until: number): Promise<void> {
  while (Date.now() < until) {
    await sleep(1000 + rnd.int(3000));
    if (paused || Date.now() >= until) continue;
    await faultStep();
  }
}

// ------------------------------------------------------------------ checkpoint

function clearFaults(): void {
  for (const t of sim.terminals) {
    t.stall(0);
    t.blackhole(0);
    t.refuse(0);
    t.takeCorrupt();
  }
}

interface View {
  users: UserRecord[];
  outbox: number;
  integrity: string;
}

function readServer(): View {
  const store = Store.open(db, { readonly: true });
  try {
    const users = store.listUsers({ limit: 10_000_000 });
    const outbox = store.owedCount();
    const integrity = String(store.connection.pragma('integrity_check', { simple: true }));
    return { users, outbox, integrity };
  } finally {
    store.close();
  }
}

function unconverged(v: View): string[] {
  const bad: string[] = [];
  for (const t of sim.terminals) {
    if (v.users.some((u) => {
      const held = t.getUser(u.id);
      return !held || !usersEqual(held, u);
    })) bad.push(`t${t.index}`);
  }
  return bad;
}

async function checkpoint(final: boolean): Promise<void> {
  paused = true;
  clearFaults();
  await sleep(200); // let in-flight workload steps finish
  if (!daemon) await startDaemon();
  const t0 = Date.now();
  let v = readServer();
  let missing: string[] = [];
  let bad: string[] = [];
  for (;;) {
    const have = new Set(v.users.map((u) => u.id));
    missing = [...reported, ...serverAccepted].filter((id) => !have.has(id));
    bad = unconverged(v);
    if ((missing.length === 0 && bad.length === 0 && v.outbox === 0) || Date.now() - t0 > 90_000) break;
    await sleep(500);
    v = readServer();
  }
  const cp = { at: new Date().toISOString(), users: v.users.length, losses: missing.length, unconverged: bad, outbox: v.outbox, integrity: v.integrity, convergeMs: Date.now() - t0 };
  stats.checkpoints.push(cp);
  if (missing.length) {
    stats.losses = Math.max(stats.losses, missing.length);
    stats.lostUsers = missing.slice(0, 50);
  }
  log('checkpoint', cp);
  try {
    const s = await daemon!.call<{ rss: number }>('stats');
    if (!stats.daemonRssStart) stats.daemonRssStart = s.rss;
    if (final) stats.daemonRssEnd = s.rss;
  } catch {
    // the daemon is restarting
  }
  if (!final) paused = false;
}

// ------------------------------------------------------------------ memory

const t0 = Date.now();
const SAMPLE_MS = Number(args['sample-sec']) * 1000;
const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
async function sampleLoop(until: number): Promise<void> {
  while (Date.now() < until) {
    const d = daemon;
    if (d) {
      try {
        const s = await d.call<{ rss: number; heapUsed: number }>('stats', {}, 5000);
        stats.memorySamples.push([Math.round((Date.now() - t0) / 1000), d.pid, mb(s.rss), mb(s.heapUsed)]);
      } catch {
        // the daemon is restarting (daemon faults) or too busy to answer in 5 s: no sample
      }
    }
    await sleep(Math.max(0, Math.min(SAMPLE_MS, until - Date.now())));
  }
}

function fit(samples: [number, number, number, number][], col: 2 | 3) {
  const f = slope(samples.map((x) => ({ x: x[0] / 60, y: x[col] })));
  const ys = samples.map((x) => x[col]);
  return { first: ys[0], last: ys.at(-1), min: Math.min(...ys), max: Math.max(...ys), slopeMbPerMin: Math.round(f.slope * 1000) / 1000, r2: Math.round(f.r2 * 1000) / 1000, samples: ys.length };
}

function memorySummary() {
  const s = stats.memorySamples;
  if (s.length < 2) return null;
  // with daemon faults the process changes: fit only the last process's samples
  const lastPid = s.at(-1)![1];
  const one = s.filter((x) => x[1] === lastPid);
  const secondHalf = one.filter((x) => x[0] >= one[0][0] + (one.at(-1)![0] - one[0][0]) / 2);
  return {
    sampleSec: SAMPLE_MS / 1000,
    processes: new Set(s.map((x) => x[1])).size,
    spanMin: Math.round(((one.at(-1)![0] - one[0][0]) / 60) * 10) / 10,
    rssMb: fit(one, 2),
    heapUsedMb: fit(one, 3),
    secondHalf: { rssMb: fit(secondHalf, 2), heapUsedMb: fit(secondHalf, 3) },
  };
}

// ------------------------------------------------------------------ run

await startDaemon();
const end = Date.now() + MINUTES * 60_000;
const work = workloadLoop(end);
const faults = faultLoop(end);
const sampling = sampleLoop(end);
// first checkpoint early, so the daemon's RSS at start is measured on a warm, synced daemon
let nextCheckpoint = Date.now() + Math.min(30_000, CHECKPOINT_MS);
while (Date.now() < end) {
  await sleep(Math.max(0, Math.min(nextCheckpoint, end) - Date.now()));
  if (Date.now() >= end) break;
  await checkpoint(false);
  nextCheckpoint = Date.now() + CHECKPOINT_MS;
}
await Promise.all([work, faults, sampling]);
await checkpoint(true);

const store = Store.open(db, { readonly: true });
try {
  stats.usersOnServer = store.userCount();
  const count = (type: string) => store.connection.prepare('SELECT count(*) FROM events WHERE type = ?').pluck().get(type) as number;
  stats.pushEvents = count('USER_UPDATE_SUCCESS_SERVER');
  stats.deviceMergeEvents = count('USER_UPDATE_SUCCESS_DEVICE');
  stats.dbSaveFailures = count('SERVER_DB_SAVE_FAIL');
} finally {
  store.close();
}
const last = stats.checkpoints[stats.checkpoints.length - 1];
stats.usersSynced = last.unconverged.length === 0 ? stats.usersOnServer * N : 0;
if (existsSync(daemonLog)) stats.daemonErrorLines = readFileSync(daemonLog, 'utf8').split('\n').filter((l) => /"level":(50|60)/.test(l)).length;
stats.soakRssEnd = process.memoryUsage().rss;
stats.memory = memorySummary();
stats.machine.loadavgEnd = machine().loadavg;

await stopDaemon('SIGTERM');
await sim.close();
const summary = JSON.stringify(stats, null, 2);
process.stdout.write(summary + '\n');
if (args.out) writeFileSync(args.out, summary + '\n');
if (args['results-key']) saveResult(args['results-key'], stats);
if (!args.keep) rmSync(dir, { recursive: true, force: true });
else log('kept', { dir });
const ok = stats.losses === 0 && stats.crashes === 0 && last.unconverged.length === 0 && last.integrity === 'ok';
process.exit(ok ? 0 : 1);
