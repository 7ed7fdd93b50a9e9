// A server with a million users and fifty terminals that already hold them:
// the daemon (re)starts on that database and must bring every terminal in line
// within 60 s without pushing a single user, while GET /api/users/:id stays
// fast.
//
// Set-up (not measured): the simulated terminals run in a child process and all
// hold users 0..N-1 of bench/population.ts as one shared copy (SimTerminal.holdShared);
// the bench process writes the same users into a fresh SQLite file in big
// transactions (seedPopulation) and records the terminals.
//
// Two ways in:
//   restart (default): the database also holds each terminal's log position,
//     as a daemon that synced these terminals before left it. The daemon resumes
//     every terminal's event log from its cursor (LOG_INFO, SUBSCRIBE_LOG): the
//     restart of a daemon.
//   compare (--compare): no log positions: every terminal is compared user by
//     user (LIST_USERS against the server's users): what a first contact, a
//     log gap or a reset terminal costs. Measured as far as it gets within the
//     timeout.
//
//   npx tsx bench/restart-1m.ts [--users=1000000] [--terminals=50] [--compare] [--timeout=300] [--log=FILE] [--prof=FILE.cpuprofile]
//   npm run bench -- --only=restart [--restart-users=N --restart-terminals=N --restart-compare]
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Store } from '../src/store/store.js';
import { spawnAdminProbe } from './admin-probe.js';
import { DaemonProc } from './daemon-proc.js';
import { populationId, seedPopulation } from './population.js';
import { startProcessHost } from './sim-host.js';
import { percentile, round } from './stats.js';

export interface RestartResult {
  users: number;
  terminals: number;
  mode: 'restart' | 'compare';
  /** every terminal online and caught up (restart) or compared (compare) */
  done: boolean;
  /** from starting the daemon's process until every terminal was done, ms */
  readyMs: number;
  /** of which: starting the daemon's process (Node, tsx, opening the database) until its admin API listened */
  bootMs: number;
  /** terminals done at the end */
  terminalsDone: number;
  /** user records the daemon pushed (PUT_USERS records the terminals received) and pulled */
  usersPushed: number;
  usersPulled: number;
  reconciles: number;
  reconcilesAbandoned: number;
  commands: Record<string, number>;
  /** GET /api/users/:id from a process of its own, from the admin API's start until 5 s later at least */
  userGet: { count: number; errors: number; p50: number; p99: number; max: number };
  /** the same, only the answers that arrived while the terminals were coming in (before every one was done) */
  userGetDuring: { count: number; p50: number; p99: number; max: number };
  daemonCpuMs: number;
  peakRssMb: number;
  setup: { seedMs: number; simStartMs: number; dbMb: number };
  loadAverage: { start: number[]; end: number[] };
}

export async function runRestart(o: { users?: number; terminals?: number; compare?: boolean; timeoutMs?: number; logFile?: string; profileFile?: string; progress?: (m: string) => void }): Promise<RestartResult> {
  const users = o.users ?? 1_000_000;
  const terminals = o.terminals ?? 50;
  const mode = o.compare ? 'compare' : 'restart';
  const say = o.progress ?? (() => {});
  const load0 = loadavg().map((x) => round(x, 2));
  const dir = mkdtempSync(join(tmpdir(), 'termsync-restart-'));
  const db = join(dir, 'termsync.db');
  // the terminals build their population while the database is seeded
  const simStarted = performance.now();
  const hostP = startProcessHost({ terminals, processes: 1, population: users, userCapacity: users + 1000, timing: undefined, nodeArgs: ['--max-old-space-size=6144'] });
  hostP.catch(() => {});
  const seedMs = seedPopulation(db, users, (n) => n % 200_000 === 0 && say(`seeded ${n.toLocaleString('en')} users`));
  say(`database: ${users.toLocaleString('en')} users in ${round(seedMs / 1000, 1)} s`);
  const host = await hostP;
  const simStartMs = performance.now() - simStarted;
  say(`simulator: ${terminals} terminals holding ${users.toLocaleString('en')} users each (one shared copy) after ${round(simStartMs / 1000, 1)} s`);
  let daemon: DaemonProc | null = null;
  try {
    const ports = host.ports();
    const ids = ports.map((_, i) => `t${i + 1}`);
    const logs = await host.logs();
    if (logs.some((l) => l.users !== users)) throw new Error('a simulated terminal does not hold the population');
    // the terminals as the daemon knew them before its restart
    const store = Store.open(db);
    let dbBytes = 0;
    try {
      for (let i = 0; i < terminals; i++) {
        store.upsertTerminal({ id: ids[i], direction: 'dial', address: `127.0.0.1:${ports[i]}`, approved: true, protocol: 'termsync' });
        if (mode === 'restart') {
          store.setCursor(ids[i], logs[i].lastEventId, logs[i].logEpoch);
          // and it had delivered the whole feed
          store.setFeedCursor(ids[i], store.feedHead());
        }
      }
      { const du = store.diskUsage(); dbBytes = du.dbBytes + du.walBytes; }
    } finally {
      store.close();
    }
    const before = await host.commandCounts();
    // random users, looked up one at a time (a client of the admin API)
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
    const paths = Array.from({ length: 2000 }, () => `/api/users/${populationId(Math.floor(rand() * users))}`);
    // the probe's process is booted beforehand: it probes from the moment the admin API listens
    const prober = await spawnAdminProbe();
    const t0 = performance.now();
    daemon = await DaemonProc.start({
      db,
      commKey: DEV_COMM_KEY.toString('hex'),
      terminals: ids.map((id, i) => ({ id, host: '127.0.0.1', port: ports[i] })),
      syncMode: 'all',
      heartbeatSec: 10,
      reconnectMinMs: 50,
      reconnectMaxMs: 1000,
      sampleMs: 1000,
      nodeArgs: ['--max-old-space-size=4096'],
      logFile: o.logFile,
    });
    const bootMs = performance.now() - t0;
    if (o.profileFile) await daemon.profileStart(o.profileFile);
    const probe = await prober.start(daemon.adminPort, 5, paths);
    const deadline = t0 + (o.timeoutMs ?? 300_000);
    let readyMs = NaN;
    let readyAt = Infinity;
    let terminalsDone = 0;
    let lastSay = 0;
    for (;;) {
      const st = await daemon.state();
      const c = (await host.commandCounts()).counts;
      const subscribed = (c.SUBSCRIBE_LOG ?? 0) - (before.counts.SUBSCRIBE_LOG ?? 0);
      terminalsDone = mode === 'restart' ? Math.min(st.online, subscribed) : Math.min(st.online, st.reconcilesEnded);
      const done = st.online === terminals && st.idle && terminalsDone >= terminals;
      if (done) {
        readyMs = performance.now() - t0;
        readyAt = performance.timeOrigin + performance.now();
        break;
      }
      if (performance.now() > deadline) break;
      if (performance.now() - lastSay > 10_000) {
        lastSay = performance.now();
        say(`${round((performance.now() - t0) / 1000)} s: ${st.online} online, ${terminalsDone} done, reconciles ${st.reconcilesEnded} ended of ${st.reconciles} started, ${st.pushes} pushes, ${st.pulls} pulls`);
      }
      await sleep(100);
    }
    // the probe covers at least 5 s (a restart that is over in a second leaves few samples otherwise)
    await sleep(Math.max(1000, 5000 - (performance.now() - t0 - bootMs)));
    const pr = await probe.stop();
    if (o.profileFile) await daemon.profileEnd();
    const st = await daemon.state();
    const after = await host.commandCounts();
    const commands: Record<string, number> = {};
    for (const [k, v] of Object.entries(after.counts)) if (v - (before.counts[k] ?? 0) > 0) commands[k] = v - (before.counts[k] ?? 0);
    const lat = pr.latencies;
    // a reconcile that ran past its deadline ends too (abandoned): not a terminal brought in line
    const ro = Store.open(db, { readonly: true });
    const abandoned = ro.listEvents({ type: 'RECONCILE', limit: 100_000 }).filter((e) => (e.detail ?? '').includes('"abandoned"')).length;
    ro.close();
    const result: RestartResult = {
      users,
      terminals,
      mode,
      done: Number.isFinite(readyMs) && abandoned === 0,
      reconcilesAbandoned: abandoned,
      readyMs: round(readyMs),
      bootMs: round(bootMs),
      terminalsDone,
      usersPushed: after.records - before.records,
      usersPulled: st.pulls,
      reconciles: st.reconciles,
      commands,
      userGet: { count: lat.length, errors: pr.errors, p50: round(percentile(lat, 50), 2), p99: round(percentile(lat, 99), 2), max: round(Math.max(0, ...lat), 2) },
      userGetDuring: (() => {
        const d = lat.filter((_, k) => pr.at[k] <= readyAt);
        return { count: d.length, p50: round(percentile(d, 50), 2), p99: round(percentile(d, 99), 2), max: round(Math.max(0, ...d), 2) };
      })(),
      daemonCpuMs: round(daemon.cpuMsFromProc()),
      peakRssMb: round(daemon.peakRssMb()),
      setup: { seedMs, simStartMs: round(simStartMs), dbMb: round(dbBytes / 1048576) },
      loadAverage: { start: load0, end: loadavg().map((x) => round(x, 2)) },
    };
    return result;
  } finally {
    await daemon?.stop();
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values: a } = parseArgs({
    options: { users: { type: 'string' }, terminals: { type: 'string' }, compare: { type: 'boolean', default: false }, timeout: { type: 'string' }, log: { type: 'string' }, prof: { type: 'string' } },
  });
  const r = await runRestart({
    users: a.users ? Number(a.users) : undefined,
    terminals: a.terminals ? Number(a.terminals) : undefined,
    compare: a.compare,
    timeoutMs: a.timeout ? Number(a.timeout) * 1000 : undefined,
    logFile: a.log,
    profileFile: a.prof,
    progress: (m) => process.stderr.write(`[restart] ${m}\n`),
  });
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
}
