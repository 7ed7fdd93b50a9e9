// Failover measured with real processes at the default lease (10 s): three
// `termsync run --db postgres://...` daemons, 30 simulated terminals, one
// throwaway PostgreSQL (test/helpers/postgres.ts). Each run:
//
//   kill -9: leases settle at 10/10/10, a burst of enrollments starts, one
//     daemon is killed with SIGKILL and, at that moment, a user is enrolled at
//     one of its terminals. Measured from the kill: until every one of its
//     terminals is driven by another daemon (its lease held by a live daemon
//     AND an authenticated session opened after the kill on the terminal),
//     until the user enrolled at the kill reaches all 30 terminals, until
//     everything converged; and the latency of an enrollment at a moved
//     terminal once it is driven again. Nothing lost: every enrolled user,
//     as the server holds it, on every terminal, and no other user.
//   SIGSTOP: a fourth daemon replaces the killed one (10/10/10 again), one
//     daemon is stopped with SIGSTOP for the lease TTL + 5 s, the same
//     measures are taken, then SIGCONT: the woken daemon's log is read for
//     its leases dropped ("terminal lease lost") and writes refused by the
//     database's fence ("write refused: terminal lease lost", LeaseLost in
//     its "cluster status" stats); nothing it held may be written with its
//     old tokens, and the data must still be right.
//
//   npx tsx bench/pg-failover.ts [--runs=3] [--terminals=30] [--burst=90]
// Writes bench/results/pg-failover.json and its section of bench/RESULTS.md
// (between <!-- pg-failover:begin --> and <!-- pg-failover:end -->);
// --section-only rewrites that section from the JSON without running.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { RunProcess } from '../test/helpers/run-process.js';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const RUNS = arg('runs', 3);
const T = arg('terminals', 30);
const BURST = arg('burst', 90);
/** the daemons run with the defaults: --lease-sec 10, heartbeat (renewal) every third of it */
const LEASE_SEC = 10;
const ROOT = join(import.meta.dirname, '..');
const OUT = join(ROOT, 'bench', 'results', 'pg-failover.json');
const RESULTS_MD = join(ROOT, 'bench', 'RESULTS.md');

/** a daemon of the site: `termsync run` with its name */
class Daemon extends RunProcess {
  constructor(
    readonly id: string,
    args: string[],
  ) {
    super(args);
  }
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string, intervalMs = 50): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await pred()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

const person = (id: string): UserRecord => userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }] });

interface Scenario {
  /** ms from the fault until every terminal of the faulted daemon is driven by another one */
  movedMs: number;
  /** ms from the fault until the lease table shows every terminal held by a live daemon */
  leasesMs: number;
  /** ms from an enrollment at a moved terminal, made at the fault, until all terminals hold it */
  enrolledAtFaultMs: number;
  /** ms from an enrollment at a moved terminal once it is driven again until all terminals hold it */
  enrolledAfterMs: number;
  /** ms from the fault until every user enrolled so far is on every terminal */
  convergedMs: number;
  users: number;
  lost: number;
  extra: number;
}

interface StopScenario extends Scenario {
  stoppedMs: number;
  /** the woken daemon: leases it dropped on waking, writes the database refused (LeaseLost), its stats' leaseLost */
  leaseLostLogged: number;
  writesRefused: number;
  statsLeaseLost: number | null;
  /** ms from SIGCONT until the leases are spread 10/10/10 again */
  rebalancedMs: number;
}

async function oneRun(server: TestPostgres, run: number): Promise<{ kill: Scenario; stop: StopScenario }> {
  const url = await server.createDatabase();
  const sim = await Simulator.start({ terminals: T, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  const store = await PgSiteStore.open({ url, writerId: 'bench-observer', listen: false });
  const daemons = new Map<string, Daemon>();
  const enrolled = new Map<string, UserRecord>();
  const ports = sim.ports();
  const byPort = new Map(sim.terminals.map((t, i) => [ports[i]!, t]));
  const start = (id: string) => {
    const d = new Daemon(id, [
      `--db=${url}`, '--insecure-dev-key', `--daemon-id=${id}`, '--sync-mode=all', '--admin-listen=off', '--log-level=info',
      ...sim.terminals.map((t, i) => `--terminal=${t.deviceId}@127.0.0.1:${ports[i]}`),
    ]);
    daemons.set(id, d);
    return d;
  };
  const owners = async () => {
    const r = await store.db.query<{ terminal_id: string; owner: string }>(`SELECT terminal_id, owner FROM terminal_leases WHERE owner IS NOT NULL AND expires_at > now()`);
    return new Map(r.rows.map((x) => [x.terminal_id, x.owner]));
  };
  const spread = async (ids: string[]) => {
    const o = await owners().catch(() => new Map<string, string>());
    const n = new Map<string, number>();
    for (const v of o.values()) n.set(v, (n.get(v) ?? 0) + 1);
    return o.size === T && ids.every((id) => n.get(id) === T / ids.length);
  };
  // terminal id (lease row) -> simulated terminal, by the address the daemons dial
  const terminalOf = new Map<string, SimTerminal>();
  const simOf = async (id: string) => {
    if (!terminalOf.size) {
      for (const r of (await store.db.query<{ id: string; address: string }>('SELECT id, address FROM terminals')).rows) terminalOf.set(r.id, byPort.get(Number(r.address.split(':').pop()))!);
    }
    return terminalOf.get(id)!;
  };
  const holdsEverywhere = (u: UserRecord) => sim.terminals.every((t) => {
    const h = t.getUser(u.id);
    return h !== undefined && usersEqual(h, u);
  });
  const reaches = async (id: string) => {
    const u = await store.getUser(id).catch(() => null);
    return u !== null && holdsEverywhere(u);
  };
  const converged = async () => {
    for (const u of (await store.walkUsers({ limit: 100_000 })).map((x) => x.user)) if (!holdsEverywhere(u)) return false;
    return (await store.userCount()) === enrolled.size;
  };
  const burst = async (prefix: string, n: number, spreadMs = 0) => {
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const u = person(`${prefix}${i}`);
      enrolled.set(u.id, u);
      jobs.push(sim.terminals[i % T]!.enroll(u));
      if (spreadMs) await sleep(spreadMs / n);
    }
    await Promise.all(jobs);
  };
  const enrollAt = async (t: SimTerminal, id: string) => {
    const u = person(id);
    enrolled.set(id, u);
    await t.enroll(u);
  };
  const tally = async (): Promise<{ lost: number; extra: number }> => {
    let lost = 0;
    for (const id of enrolled.keys()) if (!(await reaches(id))) lost++;
    return { lost, extra: Math.max(0, (await store.userCount()) - enrolled.size) };
  };

  /**
   * One fault on daemon `victim`: `fault()` is applied, a user enrolled at one
   * of its terminals at once, more enrollments follow; the measures above.
   */
  const measure = async (victim: Daemon, live: string[], label: string, fault: () => void, alsoDuring: () => Promise<void>) => {
    const mine = [...(await owners()).entries()].filter(([, o]) => o === victim.id).map(([t]) => t);
    const sims = await Promise.all(mine.map(simOf));
    const before = new Map(sims.map((t) => [t, new Set(t.sessions)]));
    const driven = async () => {
      const o = await owners().catch(() => new Map<string, string>());
      return mine.every((id, i) => live.includes(o.get(id) ?? '') && [...sims[i]!.sessions].some((s) => s.authenticated && !before.get(sims[i]!)!.has(s)));
    };
    fault();
    const t0 = performance.now();
    const probe = `${label}-probe`;
    const probeDone = enrollAt(sims[0]!, probe);
    const during = alsoDuring();
    const [movedMs, leasesMs, enrolledAtFaultMs] = await Promise.all([
      until(driven, 60_000, `${label}: ${victim.id}'s terminals driven by another daemon`),
      until(async () => {
        const o = await owners().catch(() => new Map<string, string>());
        return mine.every((id) => live.includes(o.get(id) ?? ''));
      }, 60_000, `${label}: ${victim.id}'s leases held by a live daemon`),
      probeDone.then(() => until(() => reaches(probe), 90_000, `${label}: the user enrolled at the fault on all terminals`)),
    ]);
    // once driven again, a fresh enrollment at a moved terminal
    const after = `${label}-after`;
    await enrollAt(sims[1] ?? sims[0]!, after);
    const enrolledAfterMs = await until(() => reaches(after), 60_000, `${label}: the user enrolled after the move on all terminals`);
    await during;
    await until(converged, 120_000, `${label}: every user on every terminal`, 250);
    const convergedMs = performance.now() - t0;
    const { lost, extra } = await tally();
    return { movedMs, leasesMs, enrolledAtFaultMs, enrolledAfterMs, convergedMs, users: enrolled.size, lost, extra };
  };

  try {
    for (const id of ['d1', 'd2', 'd3']) start(id);
    await until(() => spread(['d1', 'd2', 'd3']), 120_000, 'leases 10/10/10', 200);
    await enrollAt(sim.terminals[0]!, 'warm');
    await until(() => reaches('warm'), 60_000, 'warm-up user on all terminals');

    // ---- kill -9 during a burst
    const d3 = daemons.get('d3')!;
    const first = burst(`r${run}k`, BURST);
    const kill = await measure(d3, ['d1', 'd2'], `r${run}-kill`, () => d3.child.kill('SIGKILL'), async () => {
      await first;
      await burst(`r${run}m`, BURST / 3, 2000);
    });
    await d3.exited;
    console.log(`run ${run} kill -9: driven elsewhere ${ms(kill.movedMs)}, leases ${ms(kill.leasesMs)}, user enrolled at the kill on all ${ms(kill.enrolledAtFaultMs)}, after ${ms(kill.enrolledAfterMs)}, converged ${ms(kill.convergedMs)}, ${kill.users} users, lost ${kill.lost}`);

    // ---- SIGSTOP past the lease, then SIGCONT
    start('d4');
    await until(() => spread(['d1', 'd2', 'd4']), 120_000, 'leases 10/10/10 with d4', 200);
    const d2 = daemons.get('d2')!;
    const logFrom = d2.logs.length;
    let stoppedAt = 0;
    const stopResult = await measure(d2, ['d1', 'd4'], `r${run}-stop`, () => {
      d2.child.kill('SIGSTOP');
      stoppedAt = performance.now();
    }, () => burst(`r${run}s`, BURST / 3, 2000));
    // stopped past the lease (TTL + 5 s in all), then woken
    while (performance.now() - stoppedAt < (LEASE_SEC + 5) * 1000) await sleep(100);
    const contFrom = d2.logs.length;
    d2.child.kill('SIGCONT');
    const stoppedMs = performance.now() - stoppedAt;
    const contAt = performance.now();
    await until(() => d2.count('terminal lease lost', contFrom) > 0, 30_000, `r${run}: d2 dropping its leases after SIGCONT`);
    await until(() => spread(['d1', 'd2', 'd4']), 120_000, 'leases 10/10/10 after SIGCONT', 200);
    const rebalancedMs = performance.now() - contAt;
    await burst(`r${run}c`, BURST / 3);
    await until(converged, 120_000, `r${run}: converged after SIGCONT`, 250);
    const { lost, extra } = await tally();
    // the woken daemon's status lines carry its engine's LeaseLost count
    await until(() => d2.logs.slice(contFrom).some((l) => l.msg === 'cluster status'), 30_000, 'a status line from d2 after SIGCONT');
    const stop: StopScenario = {
      ...stopResult,
      users: enrolled.size,
      lost,
      extra,
      stoppedMs,
      leaseLostLogged: d2.count('terminal lease lost', contFrom),
      writesRefused: d2.logs.slice(logFrom).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('write refused: terminal lease lost')).length,
      statsLeaseLost: (d2.last('cluster status')?.leaseLost as number | undefined) ?? null,
      rebalancedMs,
    };
    console.log(`run ${run} SIGSTOP: driven elsewhere ${ms(stop.movedMs)}, leases ${ms(stop.leasesMs)}, user enrolled at the stop on all ${ms(stop.enrolledAtFaultMs)}, after ${ms(stop.enrolledAfterMs)}; woken after ${ms(stoppedMs)}: ${stop.leaseLostLogged} leases dropped, ${stop.writesRefused} writes refused, stats leaseLost ${stop.statsLeaseLost}; 10/10/10 again after ${ms(rebalancedMs)}; ${stop.users} users, lost ${stop.lost}`);
    return { kill, stop };
  } finally {
    for (const d of daemons.values()) {
      if (d.alive) {
        d.child.kill('SIGCONT');
        d.child.kill('SIGTERM');
      }
    }
    await Promise.race([Promise.all([...daemons.values()].map((d) => d.exited)), sleep(25_000)]);
    for (const d of daemons.values()) if (d.alive) d.child.kill('SIGKILL');
    await store.close().catch(() => {});
    await sim.close();
  }
}

const ms = (x: number) => `${(x / 1000).toFixed(2)} s`;
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: Math.round(s[0]!), median: Math.round(s[Math.floor(s.length / 2)]!), max: Math.round(s[s.length - 1]!) };
};


type Stat = { min: number; median: number; max: number };
interface Result {
  date: string;
  machine: { cores: number; loadavg1: number[] };
  setup: { terminals: number; leaseSec: number; renewEverySec: number; burst: number; runs: number };
  summary: {
    kill: Record<'movedMs' | 'leasesMs' | 'enrolledAtFaultMs' | 'enrolledAfterMs' | 'convergedMs', Stat> & { lost: number };
    stop: Record<'movedMs' | 'leasesMs' | 'enrolledAtFaultMs' | 'enrolledAfterMs' | 'rebalancedMs', Stat> & { leaseLostLogged: number[]; writesRefused: number[]; lost: number };
  };
  runs: { kill: Scenario; stop: StopScenario }[];
}

/** this bench's section of bench/RESULTS.md, replaced in place (or appended) */
function writeSection(r: Result): void {
  const sec = (x: number) => `${(x / 1000).toFixed(1)} s`;
  const row = (label: string, st: Stat) => `| ${label} | ${sec(st.min)} | ${sec(st.median)} | ${sec(st.max)} |`;
  const { kill, stop } = r.summary;
  const users = r.runs.map((x) => x.stop.users);
  const text = [
    '<!-- pg-failover:begin -->',
    `## Failover on PostgreSQL: 3 daemons, ${r.setup.terminals} terminals, the default lease (${r.setup.leaseSec} s)`,
    '',
    `Run ${r.date} with \`npm run bench:pg-failover\` (bench/pg-failover.ts), ${r.setup.runs} runs. Three \`termsync run --db postgres://...\``,
    `processes with the default \`--lease-sec\` (${r.setup.leaseSec} s, renewed every ${r.setup.renewEverySec} s), ${r.setup.terminals} simulated terminals (zero latency), one`,
    `throwaway PostgreSQL (fsync off), all on the same ${r.machine.cores}-core machine, shared with other jobs (load average ${r.machine.loadavg1.join(', ')} at the start and after each run).`,
    '',
    `**kill -9** of one daemon while the daemons sync a burst of ${r.setup.burst} enrollments (${r.setup.burst / 3} more during the failover);`,
    'at the kill, a user is enrolled at one of its terminals. Times from the kill.',
    '',
    '| measure | min | median | max |',
    '|---|---|---|---|',
    row('its 10 terminals driven by another daemon (lease held by a live daemon and a new session up on each)', kill.movedMs),
    row('its leases held by a live daemon (lease table)', kill.leasesMs),
    row('the user enrolled at a moved terminal at the kill, on all terminals (from the enrollment)', kill.enrolledAtFaultMs),
    row('a user enrolled at a moved terminal once it is driven again, on all terminals', kill.enrolledAfterMs),
    row('every user on every terminal', kill.convergedMs),
    '',
    `Users lost: ${kill.lost} (every enrolled user, as the server holds it, on all ${r.setup.terminals} terminals; no other user on the server).`,
    '',
    `**SIGSTOP** of one daemon (after a fourth replaced the killed one: 10/10/10 again) for the lease + 5 s, then SIGCONT; at the`,
    `stop a user is enrolled at one of its terminals, ${r.setup.burst / 3} more follow. Times from the stop, except the last row.`,
    '',
    '| measure | min | median | max |',
    '|---|---|---|---|',
    row('its 10 terminals driven by another daemon', stop.movedMs),
    row('its leases held by a live daemon', stop.leasesMs),
    row('the user enrolled at a moved terminal at the stop, on all terminals', stop.enrolledAtFaultMs),
    row('a user enrolled at a moved terminal once it is driven again, on all terminals', stop.enrolledAfterMs),
    row('after SIGCONT: leases spread 10/10/10 again', stop.rebalancedMs),
    '',
    `The woken daemon logged ${stop.leaseLostLogged.join(' / ')} leases lost ("terminal lease lost", dropped by its own clock on waking,`,
    `before any write) and ${stop.writesRefused.join(' / ')} writes refused by the database's fencing check ("write refused: terminal lease`,
    'lost", LeaseLost): it wrote nothing with its old tokens. Users lost: ' + `${stop.lost} (of ${users.join(' / ')}).`,
    '',
    `What to expect: a dead daemon's lease expires ${r.setup.leaseSec} s after its last renewal, which was 0 to ${r.setup.renewEverySec} s before the fault, and the`,
    `others take it at their next renewal after that: between ${(r.setup.leaseSec - r.setup.renewEverySec).toFixed(1)} and ${(r.setup.leaseSec + r.setup.renewEverySec).toFixed(1)} s after the fault. A change made`,
    'at a moved terminal meanwhile waits on the terminal (its event log) and reaches every terminal about a second after the move.',
    '<!-- pg-failover:end -->',
    '',
  ].join('\n');
  let md = readFileSync(RESULTS_MD, 'utf8');
  const a = md.indexOf('<!-- pg-failover:begin -->');
  const b = md.indexOf('<!-- pg-failover:end -->');
  if (a >= 0 && b > a) md = md.slice(0, a) + text + md.slice(b + '<!-- pg-failover:end -->\n'.length);
  else md = md.replace(/\n*$/, '\n\n') + text;
  writeFileSync(RESULTS_MD, md);
}

if (process.argv.includes('--section-only')) {
  writeSection(JSON.parse(readFileSync(OUT, 'utf8')) as Result);
  console.log(`wrote the pg-failover section of ${RESULTS_MD}`);
  process.exit(0);
}

const { reason } = findPostgres();
if (reason) {
  console.log(`pg-failover skipped: ${reason}`);
  process.exit(0);
}
const server = await startPostgres();
const runs: { kill: Scenario; stop: StopScenario }[] = [];
const load: number[] = [loadavg()[0]!];
try {
  for (let r = 1; r <= RUNS; r++) {
    runs.push(await oneRun(server, r));
    load.push(loadavg()[0]!);
  }
} finally {
  await server.stop();
}
const pick = <K extends keyof StopScenario>(k: 'kill' | 'stop', f: K) => runs.map((r) => (r[k] as StopScenario)[f] as number);
const summary = {
  kill: {
    movedMs: stats(pick('kill', 'movedMs')),
    leasesMs: stats(pick('kill', 'leasesMs')),
    enrolledAtFaultMs: stats(pick('kill', 'enrolledAtFaultMs')),
    enrolledAfterMs: stats(pick('kill', 'enrolledAfterMs')),
    convergedMs: stats(pick('kill', 'convergedMs')),
    lost: runs.reduce((s, r) => s + r.kill.lost, 0),
  },
  stop: {
    movedMs: stats(pick('stop', 'movedMs')),
    leasesMs: stats(pick('stop', 'leasesMs')),
    enrolledAtFaultMs: stats(pick('stop', 'enrolledAtFaultMs')),
    enrolledAfterMs: stats(pick('stop', 'enrolledAfterMs')),
    rebalancedMs: stats(pick('stop', 'rebalancedMs')),
    leaseLostLogged: runs.map((r) => r.stop.leaseLostLogged),
    writesRefused: runs.map((r) => r.stop.writesRefused),
    lost: runs.reduce((s, r) => s + r.stop.lost, 0),
  },
};
const result = {
  bench: 'pg-failover',
  date: new Date().toISOString(),
  machine: { cores: cpus().length, loadavg1: load.map((x) => Math.round(x * 100) / 100) },
  setup: { daemons: 3, terminals: T, leaseSec: LEASE_SEC, renewEverySec: Math.round((LEASE_SEC / 3) * 10) / 10, burst: BURST, runs: RUNS, simulatorTiming: 'zero latency', postgres: 'same machine, fsync=off' },
  summary,
  runs,
};
writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
writeSection(result);
const line = (label: string, s: { min: number; median: number; max: number }) => console.log(`  ${label.padEnd(58)} ${ms(s.min)} / ${ms(s.median)} / ${ms(s.max)}`);
console.log(`\npg-failover: 3 daemons, ${T} terminals, lease ${LEASE_SEC} s (default), ${RUNS} runs; min / median / max`);
console.log(' kill -9:');
line("its terminals driven by another daemon", summary.kill.movedMs);
line('its leases held by a live daemon', summary.kill.leasesMs);
line('a user enrolled at a moved terminal at the kill, on all', summary.kill.enrolledAtFaultMs);
line('a user enrolled at a moved terminal after, on all', summary.kill.enrolledAfterMs);
line('everything converged', summary.kill.convergedMs);
console.log(`  users lost: ${summary.kill.lost}`);
console.log(' SIGSTOP past the lease, then SIGCONT:');
line("its terminals driven by another daemon", summary.stop.movedMs);
line('its leases held by a live daemon', summary.stop.leasesMs);
line('a user enrolled at a moved terminal at the stop, on all', summary.stop.enrolledAtFaultMs);
line('a user enrolled at a moved terminal after, on all', summary.stop.enrolledAfterMs);
line('after SIGCONT, 10/10/10 again', summary.stop.rebalancedMs);
console.log(`  woken daemon: leases dropped ${summary.stop.leaseLostLogged.join('/')}, writes refused by the fence ${summary.stop.writesRefused.join('/')}; users lost: ${summary.stop.lost}`);
console.log(`wrote ${OUT} and its section of ${RESULTS_MD}`);
