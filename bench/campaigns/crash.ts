// Campaign: SIGKILL of the daemon at seeded random points during enrollment
// bursts and server writes, N rounds (issue 11: 100). The daemon is
// `termsync run` (bin/termsync.js) as an operator starts it; the server writes
// (new users, edits, deletes) go through its admin API. The rounds and their
// checks are bench/campaigns/crash-rounds.ts (test/fault-crash.test.ts runs 20
// of them with the test helper daemon).
//
//   npx tsx bench/campaigns/crash.ts [--rounds 100] [--terminals 6] [--per-terminal 15]
//       [--server-writes 8] [--max-kill-ms 300] [--seed 11] [--out FILE] [--log FILE]
//
// Exit 0 when every round passed. The result goes under "crash" in
// bench/results/campaigns.json (or --out).
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { runCrashRounds, roundFailed } from './crash-rounds.js';
import { cliDaemon } from './daemons.js';
import { machine, percentile, saveResult, RESULTS_FILE } from './report.js';

const { values: a } = parseArgs({
  options: {
    rounds: { type: 'string', default: '100' },
    terminals: { type: 'string', default: '6' },
    'per-terminal': { type: 'string', default: '15' },
    'server-writes': { type: 'string', default: '8' },
    'max-kill-ms': { type: 'string', default: '300' },
    seed: { type: 'string', default: '11' },
    'converge-timeout-ms': { type: 'string', default: '60000' },
    out: { type: 'string' },
    log: { type: 'string' },
  },
});

const started = Date.now();
const startMachine = machine();
const opts = {
  rounds: Number(a.rounds),
  seed: Number(a.seed),
  terminals: Number(a.terminals),
  perTerminal: Number(a['per-terminal']),
  serverWrites: Number(a['server-writes']),
  maxKillDelayMs: Number(a['max-kill-ms']),
  convergeTimeoutMs: Number(a['converge-timeout-ms']),
};
const loads: number[] = [];
const r = await runCrashRounds({
  ...opts,
  launch: cliDaemon({ logFile: a.log }),
  onRound(x) {
    loads.push(loadavg()[0]);
    const bad = roundFailed(x);
    process.stderr.write(
      `${new Date().toISOString().slice(11, 19)} round ${x.round}: kill at ${x.killDelayMs} ms, writes ${x.writes.acked}/${x.writes.acked + x.writes.unacked} acked, ` +
        `restart ${x.restartMs} ms, converged ${x.converged} in ${x.convergeMs} ms, users ${x.serverUsers}` +
        (bad ? ` FAILED ${JSON.stringify({ lost: x.lost.slice(0, 5), differs: x.differs.slice(0, 5), resurrected: x.resurrected.slice(0, 5), unknown: x.unknownOnServer.slice(0, 5), unconverged: x.unconverged, outbox: x.outbox, integrity: x.integrity, unexpectedExit: x.unexpectedExit })}` : '') +
        '\n',
    );
  },
});
const rounds = r.rounds;
const sum = (f: (x: (typeof rounds)[number]) => number) => rounds.reduce((s, x) => s + f(x), 0);
const summary = {
  command: `npx tsx bench/campaigns/crash.ts ${process.argv.slice(2).join(' ')}`.trim(),
  startedAt: new Date(started).toISOString(),
  durationSec: Math.round((Date.now() - started) / 1000),
  machine: { ...startMachine, loadavgEnd: machine().loadavg, load1Max: Math.max(...loads) },
  options: opts,
  daemon: 'termsync run (bin/termsync.js), server writes through the admin API',
  rounds: rounds.length,
  failedRounds: r.failedRounds,
  killsBySignal: rounds.filter((x) => x.killSignal === 'SIGKILL').length,
  unexpectedExits: rounds.filter((x) => x.unexpectedExit).length,
  usersReportedByTerminals: r.reported,
  serverWrites: {
    put: sum((x) => x.writes.put),
    edit: sum((x) => x.writes.edit),
    delete: sum((x) => x.writes.delete),
    acknowledged: r.serverWritesAcked,
    cutOffByKill: r.serverWritesUnacked,
  },
  usersLost: sum((x) => x.lost.length),
  writesUndone: sum((x) => x.differs.length),
  deletedUsersBack: sum((x) => x.resurrected.length),
  unknownUsersOnServer: sum((x) => x.unknownOnServer.length),
  roundsUnconverged: rounds.filter((x) => x.unconverged.length > 0).length,
  roundsOutboxNotEmpty: rounds.filter((x) => x.outbox !== 0).length,
  integrityNotOk: rounds.filter((x) => x.integrity !== 'ok').length,
  serverUsersAtEnd: rounds.at(-1)?.serverUsers ?? 0,
  killDelayMs: { min: Math.min(...rounds.map((x) => x.killDelayMs)), max: Math.max(...rounds.map((x) => x.killDelayMs)) },
  restartMs: { p50: percentile(rounds.map((x) => x.restartMs), 50), max: Math.max(...rounds.map((x) => x.restartMs)) },
  convergeMs: { p50: percentile(rounds.map((x) => x.convergeMs), 50), p99: percentile(rounds.map((x) => x.convergeMs), 99), max: Math.max(...rounds.map((x) => x.convergeMs)) },
  failures: rounds.filter(roundFailed).slice(0, 20),
};
saveResult('crash', summary, a.out ?? RESULTS_FILE);
const { failures: _f, ...brief } = summary;
process.stdout.write(JSON.stringify(brief, null, 2) + '\n');
process.exit(r.failedRounds.length === 0 ? 0 : 1);
