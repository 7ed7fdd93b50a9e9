// The enrollment burst on ZK terminals: termsync's daemon next to the naive way
// ZK sites sync today.
//
//   npx tsx bench/zk-burst.ts                          10 terminals, 1,000 users
//   npx tsx bench/zk-burst.ts --terminals=20 --users=2000 --naive-sample=20 --poll-sec=30
//
// Both sides run against the ZK simulator with its default timing model (a TFT
// terminal on a LAN: 2 ms per command, 3 ms per user written, 0.05 ms per user
// record served by a table read, 1 ms between the frames of a long answer; one
// command at a time per terminal).
//
// termsync: the daemon (in this process, with a real SQLite file) dials every
// terminal; users are enrolled at the terminals round-robin, as fast as the
// terminals take them (each raises EF_ENROLLUSER). Measured: first enrollment
// to every terminal holding every user.
//
// naive: per enrollment, read the user from its terminal (connect, read the
// user table, disconnect), then per other terminal, one after the other:
// connect, write the user (a client without a uid map reads the table first to
// find a free uid), disconnect. Measured on the first `--naive-sample` users
// and scaled linearly (the loop is sequential; the table reads grow with the
// users already written, so the scaling flatters the naive way).
//
// Writes bench/results/zk-burst.json and the "ZK terminals" section of
// bench/RESULTS.md (between its markers; the rest of the file is kept).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Daemon, type DaemonOptions } from '../src/daemon.js';
import { ZkClient } from '../src/drivers/zk/client.js';
import { zkDriver } from '../src/drivers/zk/driver.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { DEFAULT_ZK_TIMING, type ZkTimingModel } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { round } from './stats.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const PASSWORD = 4321;

const { values: args } = parseArgs({
  options: {
    terminals: { type: 'string', default: '10' },
    users: { type: 'string', default: '1000' },
    'naive-sample': { type: 'string', default: '20' },
    'poll-sec': { type: 'string', default: '30' },
    'no-write': { type: 'boolean', default: false },
    /** run only the naive way (a check of the harness; nothing written) */
    'naive-only': { type: 'boolean', default: false },
  },
});
const N = Number(args.terminals);
const USERS = Number(args.users);
const SAMPLE = Math.min(USERS, Number(args['naive-sample']));
const POLL_SEC = Number(args['poll-sec']);

const log = pino({ level: 'silent' });

function person(i: number) {
  return { id: String(100_000 + i), name: `Person ${i}`, card: 5_000_000 + i, password: String(1000 + (i % 9000)) };
}

/** Each terminal's own work in the timing model when it writes every user enrolled elsewhere (USER_WRQ + REFRESHDATA each), plus its enrollments. */
function deviceBoundMs(t: ZkTimingModel): number {
  const busiest = Math.ceil(USERS / N);
  const writes = USERS - Math.floor(USERS / N);
  return writes * (2 * t.perCommandMs + t.perUserWriteMs) + busiest * (t.perCommandMs + t.perUserWriteMs);
}

async function enrollBurst(sim: ZkSimulator): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    sim.terminals.map(async (t, k) => {
      for (let i = k; i < USERS; i += N) await t.enroll(person(i));
    }),
  );
  return t0;
}

function everyoneHoldsAll(sim: ZkSimulator): boolean {
  return sim.terminals.every((t) => t.userCount >= USERS);
}

async function runTermsync(): Promise<{ convergenceMs: number; enrollMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'zk-burst-'));
  const sim = await ZkSimulator.start({ terminals: N, password: PASSWORD, timing: DEFAULT_ZK_TIMING, userCapacity: USERS + 100 });
  const options: DaemonOptions = {
    db: join(dir, 'termsync.db'),
    log,
    commKey: DEV_COMM_KEY,
    terminals: sim.ports().map((port, i) => ({ id: `zk${i + 1}`, host: '127.0.0.1', port, protocol: 'zk', key: Buffer.from(String(PASSWORD)) })),
    drivers: [zkDriver({ pollSec: POLL_SEC, requestTimeoutMs: 30_000, log })],
    syncMode: 'all',
    requestTimeoutMs: 30_000,
  };
  const daemon = await Daemon.start(options);
  try {
    const deadline = Date.now() + 60_000;
    while (!daemon.terminals().every((t) => t.state === 'online')) {
      if (Date.now() > deadline) throw new Error('ZK terminals did not come online');
      await new Promise((r) => setTimeout(r, 50));
    }
    await daemon.engine.idle();
    const t0 = await enrollBurst(sim);
    const enrollMs = performance.now() - t0;
    let shown = Date.now();
    while (!everyoneHoldsAll(sim)) {
      await new Promise((r) => setTimeout(r, 50));
      if (Date.now() - shown > 5000) {
        shown = Date.now();
        process.stderr.write(`  held: ${sim.terminals.map((t) => t.userCount).join(' ')}; server ${daemon.store.userCount()}; owed ${daemon.terminals().reduce((n, t) => n + t.pushesOwed, 0)}\n`);
      }
    }
    return { convergenceMs: performance.now() - t0, enrollMs };
  } finally {
    await daemon.stop(2000).catch(() => undefined);
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runNaive(): Promise<{ sampleMs: number; writes: number }> {
  const sim = await ZkSimulator.start({ terminals: N, password: PASSWORD, timing: DEFAULT_ZK_TIMING, userCapacity: USERS + 100 });
  try {
    const ports = sim.ports();
    const connect = (i: number) => ZkClient.connect({ host: '127.0.0.1', port: ports[i], password: PASSWORD, timeoutMs: 30_000 });
    // the enrollments of the sample, at their terminals (round-robin as above)
    for (let i = 0; i < SAMPLE; i++) await sim.terminals[i % N].enroll(person(i));
    const t0 = performance.now();
    let writes = 0;
    for (let i = 0; i < SAMPLE; i++) {
      const from = i % N;
      const src = await connect(from);
      const { users } = await src.readUsers();
      await src.close();
      const u = users.find((x) => x.userId === person(i).id)!;
      for (let k = 0; k < N; k++) {
        if (k === from) continue;
        const c = await connect(k);
        await c.writeUser(u);
        await c.close();
        writes++;
      }
    }
    return { sampleMs: performance.now() - t0, writes };
  } finally {
    await sim.close();
  }
}

const started = new Date();
if (args['naive-only']) {
  const n = await runNaive();
  console.log(JSON.stringify({ terminals: N, sampleUsers: SAMPLE, ...n, scaledMs: Math.round((n.sampleMs * USERS) / SAMPLE) }));
  process.exit(0);
}
const ts = await runTermsync();
const naive = await runNaive();
const naiveScaledMs = (naive.sampleMs * USERS) / SAMPLE;
const bound = deviceBoundMs(DEFAULT_ZK_TIMING);
const result = {
  at: started.toISOString(),
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: round(totalmem() / 2 ** 30, 1), node: process.version, loadavg: loadavg().map((x) => round(x, 2)) },
  terminals: N,
  users: USERS,
  pollSec: POLL_SEC,
  timing: DEFAULT_ZK_TIMING,
  termsync: { convergenceMs: Math.round(ts.convergenceMs), enrollMs: Math.round(ts.enrollMs), deviceBoundMs: Math.round(bound) },
  naive: { sampleUsers: SAMPLE, sampleMs: Math.round(naive.sampleMs), sampleWrites: naive.writes, scaledMs: Math.round(naiveScaledMs) },
  speedup: round(naiveScaledMs / ts.convergenceMs, 1),
};
console.log(JSON.stringify(result, null, 2));

if (!args['no-write']) {
  mkdirSync(join(HERE, 'results'), { recursive: true });
  writeFileSync(join(HERE, 'results', 'zk-burst.json'), JSON.stringify(result, null, 2) + '\n');
  const s = (ms: number) => `${round(ms / 1000, 1).toLocaleString('en-US')} s`;
  const section = [
    '<!-- zk-burst: written by `npx tsx bench/zk-burst.ts`; keep the markers -->',
    `## Enrollment burst on ZK terminals: ${USERS.toLocaleString('en-US')} users across ${N} ZK terminals`,
    '',
    `Run ${result.at} with \`npx tsx bench/zk-burst.ts --terminals=${N} --users=${USERS} --naive-sample=${SAMPLE} --poll-sec=${POLL_SEC}\`; machine: ${result.machine.cpu}, ${result.machine.cores} cores, Node ${result.machine.node}, load average ${result.machine.loadavg.join(' / ')} at the end. ZK simulator with its default timing model (2 ms per command, 3 ms per user written, 0.05 ms per record read, one command at a time per terminal); the daemon runs in the bench process.`,
    '',
    '| measure | result |',
    '|---|---|',
    `| termsync: convergence (every ZK terminal holds every user) | ${s(ts.convergenceMs)} |`,
    `| of which the enrollments themselves took | ${s(ts.enrollMs)} |`,
    `| device-bound limit (busiest terminal's own writes, timing model) | ${s(bound)} |`,
    `| convergence / device bound | ${round(ts.convergenceMs / bound, 2)}x |`,
    `| naive way (per enrollment: read it; per other terminal: connect, write the user, disconnect) | ${s(naiveScaledMs)} (scaled from ${SAMPLE} users, ${naive.writes} writes in ${s(naive.sampleMs)}) |`,
    `| speed-up over the naive way | ${result.speedup}x |`,
    '',
    'The enrollments take longer than their own cost because a person at a ZK terminal waits while the daemon holds it disabled for a batch of writes (the simulator models that; it keeps a user enrolled at the device from losing its slot to a write). Time on a shared 2-core machine varies from run to run with the load.',
    '',
    'The naive loop connects (CONNECT + AUTH), reads the table to find a free uid (a client without a uid map must), writes, and disconnects for every user and terminal, one after another; termsync keeps one session per terminal, learns new users from EF_ENROLLUSER, writes to all terminals at once and reads each table only when its uid map cannot be trusted.',
    '<!-- /zk-burst -->',
  ].join('\n');
  const file = join(HERE, 'RESULTS.md');
  const md = readFileSync(file, 'utf8');
  const re = /<!-- zk-burst[\s\S]*?<!-- \/zk-burst -->/;
  writeFileSync(file, re.test(md) ? md.replace(re, section) : `${md.trimEnd()}\n\n${section}\n`);
}
