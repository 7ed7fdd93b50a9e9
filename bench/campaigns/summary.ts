// Prints the figures of bench/results/campaigns.json as the Markdown tables of
// the "Fault campaigns" section of bench/RESULTS.md (the prose around them is
// written by hand: what a failure was, what the load was).
//
//   npx tsx bench/campaigns/summary.ts [FILE]
import { readFileSync } from 'node:fs';
import { RESULTS_FILE, slope } from './report.js';

/** RSS and heap slopes (MB/min) over the second half of the hostile phase, from the stored samples [s, rss, heap, phase]. */
function secondHalf(samples: [number, number, number | null, string][]) {
  const xs = samples.filter((x) => x[3] === 'hostile');
  const half = xs.slice(Math.floor(xs.length / 2));
  const r = slope(half.map((x) => ({ x: x[0] / 60, y: x[1] })));
  const h = slope(half.filter((x) => x[2] !== null).map((x) => ({ x: x[0] / 60, y: x[2]! })));
  return { rss: Math.round(r.slope * 1000) / 1000, heap: Math.round(h.slope * 1000) / 1000, from: half[0]?.[1], to: half.at(-1)?.[1] };
}

const all = JSON.parse(readFileSync(process.argv[2] ?? RESULTS_FILE, 'utf8')) as Record<string, any>;
const L: string[] = [];
const n = (x: number, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : String(x));
const load = (m: any) => `load average ${m.loadavg?.join(' / ')} at start${m.loadavgEnd ? `, ${m.loadavgEnd.join(' / ')} at end` : ''}`;

const c = all.crash;
if (c) {
  L.push(`### SIGKILL rounds`, '');
  L.push(`\`${c.command}\` (${c.startedAt}, ${n(c.durationSec / 60, 1)} min; ${load(c.machine)})`, '');
  L.push('| measure | result |', '|---|---|');
  L.push(`| rounds (daemon killed with SIGKILL, restarted on the same file) | ${c.rounds} (${c.killsBySignal} ended by our SIGKILL, ${c.unexpectedExits} daemon exits we did not cause) |`);
  L.push(`| terminals, enrollments per terminal per round, server writes planned per round | ${c.options.terminals}, ${c.options.perTerminal}, ${c.options.serverWrites} |`);
  L.push(`| kill delay after the round started | ${c.killDelayMs.min}..${c.killDelayMs.max} ms (uniform in 0..${c.options.maxKillDelayMs}, seed ${c.options.seed}) |`);
  L.push(`| users enrolled on terminals (reported in their logs) | ${n(c.usersReportedByTerminals)} |`);
  L.push(`| server writes through the admin API: new / edit / delete | ${c.serverWrites.put} / ${c.serverWrites.edit} / ${c.serverWrites.delete} (${c.serverWrites.acknowledged} acknowledged, ${c.serverWrites.cutOffByKill} cut off by the kill) |`);
  L.push(`| users lost (reported or acknowledged, missing after the restart) | ${c.usersLost} |`);
  L.push(`| acknowledged writes undone / acknowledged deletes undone | ${c.writesUndone} / ${c.deletedUsersBack} |`);
  L.push(`| rounds where a terminal did not hold exactly the server's users (pushes lost) | ${c.roundsUnconverged} |`);
  L.push(`| rounds with outbox not empty / integrity_check not ok | ${c.roundsOutboxNotEmpty} / ${c.integrityNotOk} |`);
  L.push(`| users on the server at the end | ${n(c.serverUsersAtEnd)} |`);
  L.push(`| restart to running (p50 / max) | ${n(c.restartMs.p50)} / ${n(c.restartMs.max)} ms |`);
  L.push(`| restart to converged (p50 / p99 / max) | ${n(c.convergeMs.p50)} / ${n(c.convergeMs.p99)} / ${n(c.convergeMs.max)} ms |`);
  L.push(`| failed rounds | ${c.failedRounds.length ? c.failedRounds.join(', ') : 'none'} |`, '');
}

const h = all.hostile;
if (h) {
  L.push(`### Hostile frames`, '');
  L.push(`\`${h.command}\` (${h.startedAt}, ${n(h.durationSec / 60, 1)} min; ${load(h.machine)}; 1-min load during the frames up to ${h.machine.load1MaxDuring})`, '');
  const t = h.hostile;
  L.push('| measure | result |', '|---|---|');
  L.push(`| hostile frames (after authentication: confirmed read by the daemon; before: taken by the kernel on an open connection) | ${n(t.sent)} in ${n(t.seconds, 1)} s (${n(h.framesPerSecond)}/s): ${n(t.sentPreauth)} before authentication, ${n(t.sentPostauth)} after |`);
  L.push(`| mutated golden vectors by mutation | ${Object.entries(t.mutations ?? {}).map(([k, v]) => `${k} ${n(v as number)}`).join(', ')} |`);
  L.push(`| sessions | ${Object.entries(t.sessions ?? {}).map(([k, v]) => `${k} ${n(v as number)}`).join(', ')}; ${n(t.connections)} connections, ${n(t.handshakes)} authenticated |`);
  L.push(`| daemon crashes / fatal log lines / error log lines | ${h.crashes} / ${h.fatalLogLines} / ${h.errorLogLines} |`);
  L.push(`| daemon CPU (% of one core): baseline / while hostile / after | ${h.daemonCpuPctOfOneCore?.baseline} / ${h.daemonCpuPctOfOneCore?.whileHostile} / ${h.daemonCpuPctOfOneCore?.after}${h.hostileClientCpuPctOfOneCore !== undefined ? ` (the hostile process: ${h.hostileClientCpuPctOfOneCore})` : ''} |`);
  if (h.daemonLoopDelayMaxMs) L.push(`| daemon event-loop delay, largest per 5 s scrape (median / max): before / while hostile | ${h.daemonLoopDelayMaxMs.baseline.p50} / ${h.daemonLoopDelayMaxMs.baseline.max} ms; ${h.daemonLoopDelayMaxMs.hostile.p50} / ${h.daemonLoopDelayMaxMs.hostile.max} ms |`);
  L.push(`| daemon RSS while hostile: start / end / max, least-squares slope | ${h.rssMb.atStart} / ${h.rssMb.atEnd} / ${h.rssMb.max} MB, ${h.rssMb.slopeMbPerMin} MB/min (R² ${h.rssMb.r2}, ${h.rssMb.samples} samples at 1 s) |`);
  const sh = secondHalf(h.rssSamples ?? []);
  L.push(`| ... second half of the hostile phase only | RSS ${sh.from} -> ${sh.to} MB, slope ${sh.rss} MB/min; heap slope ${sh.heap} MB/min |`);
  L.push(`| daemon heap used while hostile: start / end, slope | ${h.heapUsedMb.atStart} / ${h.heapUsedMb.atEnd} MB, ${h.heapUsedMb.slopeMbPerMin} MB/min (R² ${h.heapUsedMb.r2}, ${h.heapUsedMb.samples} samples at 5 s) |`);
  const s = h.syncLatencyMs;
  L.push(`| sync latency of the ${h.wellBehavedTerminals} well-behaved terminals, p50 / p99 (n): before | ${s.baseline.p50} / ${s.baseline.p99} ms (${s.baseline.n}) |`);
  L.push(`| ... while the hostile frames run | ${s.whileHostile.p50} / ${s.whileHostile.p99} ms (${s.whileHostile.n}): p99 ${s.p99Ratio}x the baseline, ${s.within20pct ? 'within 20%' : 'NOT within 20%'} |`);
  L.push(`| ... after | ${s.after.p50} / ${s.after.p99} ms (${s.after.n}) |`);
  L.push(`| at the end: terminals converged, integrity_check | ${h.end.converged}, ${h.end.integrity} |`, '');
}
for (const key of Object.keys(all).filter((k) => k.startsWith('hostile-'))) {
  const x = all[key];
  const s = x.syncLatencyMs;
  const xh = secondHalf(x.rssSamples ?? []);
  L.push(`Variant \`${x.command}\`: ${n(x.hostile.sent)} frames in ${n(x.hostile.seconds, 1)} s, crashes ${x.crashes}, RSS ${x.rssMb.atStart} -> ${x.rssMb.atEnd} MB, slope ${x.rssMb.slopeMbPerMin} MB/min (second half ${xh.rss}), daemon CPU ${x.daemonCpuPctOfOneCore?.baseline}% -> ${x.daemonCpuPctOfOneCore?.whileHostile}% of one core (hostile process ${x.hostileClientCpuPctOfOneCore}%), ${x.daemonLoopDelayMaxMs ? `event-loop delay (largest per 5 s, median/max) ${x.daemonLoopDelayMaxMs.baseline.p50}/${x.daemonLoopDelayMaxMs.baseline.max} ms before, ${x.daemonLoopDelayMaxMs.hostile.p50}/${x.daemonLoopDelayMaxMs.hostile.max} ms during, ` : ''}latency p50/p99 ${s.baseline.p50}/${s.baseline.p99} ms before, ${s.whileHostile.p50}/${s.whileHostile.p99} ms during (p99 ${s.p99Ratio}x).`, '');
}

const k = all.soak;
if (k) {
  L.push(`### One long-lived daemon`, '');
  L.push(`\`${k.command}\` (${k.startedAt}; ${load(k.machine)})`, '');
  const m = k.memory;
  const last = k.checkpoints.at(-1);
  L.push('| measure | result |', '|---|---|');
  L.push(`| daemon processes (starts) / exits we did not cause | ${k.daemonStarts} / ${k.crashes} |`);
  L.push(`| workload | ${n(k.enrolled)} enrollments and ${n(k.deviceEdits)} edits on ${k.terminals} terminals, ${n(k.serverPuts)} server writes; ${n(k.usersOnServer)} users on the server at the end |`);
  L.push(`| link faults | ${k.faultsTotal}: ${Object.entries(k.faults).map(([a, b]) => `${a} ${b}`).join(', ')} |`);
  L.push(`| checkpoints: losses / unconverged / outbox / integrity | ${k.checkpoints.length} checkpoints; max loss ${k.losses}; last: ${last.unconverged.length} unconverged, outbox ${last.outbox}, ${last.integrity} |`);
  if (m) {
    L.push(`| RSS (every ${m.sampleSec} s, ${m.rssMb.samples} samples over ${m.spanMin} min): first / last / min / max | ${m.rssMb.first} / ${m.rssMb.last} / ${m.rssMb.min} / ${m.rssMb.max} MB |`);
    L.push(`| RSS slope, whole run / second half | ${m.rssMb.slopeMbPerMin} MB/min (R² ${m.rssMb.r2}) / ${m.secondHalf.rssMb.slopeMbPerMin} MB/min (R² ${m.secondHalf.rssMb.r2}) |`);
    L.push(`| heap used: first / last / min / max | ${m.heapUsedMb.first} / ${m.heapUsedMb.last} / ${m.heapUsedMb.min} / ${m.heapUsedMb.max} MB |`);
    L.push(`| heap slope, whole run / second half | ${m.heapUsedMb.slopeMbPerMin} MB/min (R² ${m.heapUsedMb.r2}) / ${m.secondHalf.heapUsedMb.slopeMbPerMin} MB/min (R² ${m.secondHalf.heapUsedMb.r2}) |`);
  }
  L.push(`| daemon error log lines | ${k.daemonErrorLines} |`, '');
}
process.stdout.write(L.join('\n') + '\n');
