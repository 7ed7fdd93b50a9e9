// The burst on several daemons: T simulated terminals, U users enrolled at
// them at once (spread round-robin), timed from the first enrollment until
// every terminal holds every user. Daemons are real `termsync run` processes:
// SQLite with one daemon, then PostgreSQL with one, two and three daemons on
// one throwaway server (test/helpers/postgres.ts). Small sizes: a 2-core
// machine runs PostgreSQL, the daemons and the simulator together.
//   npx tsx bench/pg-burst.ts [--terminals=12] [--users=300]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { userFromJson } from '../src/model/user.js';
import { findPostgres, startPostgres } from '../test/helpers/postgres.js';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const T = arg('terminals', 12);
const U = arg('users', 300);
const ROOT = join(import.meta.dirname, '..');

function daemon(args: string[]): { child: ChildProcess; ready: Promise<void>; gone: Promise<unknown> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', ...args], { cwd: ROOT, env: { ...process.env, NOTIFY_SOCKET: '' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  const ready = new Promise<void>((resolve) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      if (/termsync running/.test(buf)) resolve();
      if (buf.length > 1e6) buf = buf.slice(-1000);
    });
  });
  return { child, ready, gone: new Promise((r) => child.once('exit', r)) };
}

async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function run(label: string, db: string, daemons: number, extra: (i: number) => string[]): Promise<{ label: string; ms: number | null }> {
  const sim = await Simulator.start({ terminals: T, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  const ports = sim.ports();
  const procs = Array.from({ length: daemons }, (_, i) =>
    daemon([`--db=${db}`, '--insecure-dev-key', '--sync-mode=all', '--admin-listen=off', '--log-level=warn', '--reconnect-min-ms=50', ...extra(i), ...sim.terminals.map((t, k) => `--terminal=${t.deviceId}@127.0.0.1:${ports[k]}`)]),
  );
  try {
    // every terminal connected (and, with several daemons, leased): a warm-up user reaches all
    const warm = userFromJson({ id: 'warm', name: 'Warm Up', cards: [] });
    await sim.terminals[0]!.enroll(warm);
    if (!(await waitUntil(() => sim.terminals.every((t) => t.getUser('warm')), 120_000))) return { label, ms: null };
    const users = Array.from({ length: U }, (_, i) => userFromJson({ id: `u${i}`, name: `User ${i}`, cards: [{ type: 1, data: (0x100000 + i).toString(16) }] }));
    const t0 = performance.now();
    await Promise.all(users.map((u, i) => sim.terminals[i % T]!.enroll(u)));
    const ok = await waitUntil(() => sim.terminals.every((t) => users.every((u) => t.getUser(u.id))), 300_000);
    return { label, ms: ok ? Math.round(performance.now() - t0) : null };
  } finally {
    for (const p of procs) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.gone));
    await sim.close();
  }
}

const results: { label: string; ms: number | null }[] = [];
const dir = mkdtempSync(join(tmpdir(), 'termsync-pgburst-'));
try {
  results.push(await run('SQLite, 1 daemon', join(dir, 'b.db'), 1, () => []));
  const { reason } = findPostgres();
  if (reason) console.log(`PostgreSQL runs skipped: ${reason}`);
  else {
    const pg = await startPostgres();
    try {
      for (const n of [1, 2, 3]) {
        const url = await pg.createDatabase();
        results.push(await run(`PostgreSQL, ${n} daemon${n > 1 ? 's' : ''}`, url, n, (i) => [`--daemon-id=bench-${i}`, '--lease-sec=3']));
      }
    } finally {
      await pg.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`burst: ${U} users enrolled at ${T} terminals at once, until every terminal holds every user (${cpus().length} cores)`);
for (const r of results) console.log(`  ${r.label.padEnd(24)} ${r.ms === null ? 'did not converge' : `${r.ms} ms  (${Math.round((U * T) / (r.ms / 1000))} user-terminal copies/s)`}`);
