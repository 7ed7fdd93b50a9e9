// `npm run bench:hostile [-- --only=listflood,deleteflood] [--label=NAME] [--commit=SHA] [--rss-cap-mb=1500] [--cpu-prof-dir=DIR] [--log-file=FILE]`
// Runs the attacks of issue 14 against a real daemon process, one after the
// other, each on a fresh site, and records for each: how far it got, the
// daemon's peak RSS, the largest event-loop delay (/metrics) and /healthz
// latency, the well-behaved terminals' sync latency quiet and under attack,
// and attack-specific figures (rows written, sessions...). Results go to
// bench/results/hostile.json (the latest run per attack and label) and to the
// "Hostile terminals" section of bench/RESULTS.md.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ATTACKS, type Attack } from './attacks.js';
import { adminPushLatency, latencyLoop, Probes, quietLatency, startHostileSite, type LatencySummary, type ProbeSummary } from './harness.js';

const RESULTS_JSON = fileURLToPath(new URL('../results/hostile.json', import.meta.url));
const RESULTS_MD = fileURLToPath(new URL('../RESULTS.md', import.meta.url));
const BEGIN = '<!-- hostile:begin -->';
const END = '<!-- hostile:end -->';

/** Issue 14's "done when": up, RSS < 300 MB, loop delay < 50 ms, well-behaved latency within 20% of quiet. */
const TARGET = { rssMb: 300, loopMs: 50, latencyRatio: 1.2 };

export interface HostileRun {
  attack: string;
  item: number;
  title: string;
  size: string;
  label: string;
  commit: string;
  at: string;
  reached: string;
  probes: ProbeSummary;
  quiet: LatencySummary;
  underAttack: LatencySummary;
  adminUnderAttack?: LatencySummary;
  figures: Record<string, unknown>;
  /** the machine's load average (1, 5, 15 min) when the attack started and when it ended */
  load?: { start: number[]; end: number[] };
  /** which of the issue's targets held */
  verdict: { up: boolean; rss: boolean; loop: boolean; latency: boolean; loopOwn?: boolean };
}

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

function git(cmd: string): string {
  try {
    return execSync(`git ${cmd}`, { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

async function runOne(a: Attack, label: string, rssCapMb: number): Promise<HostileRun> {
  const log = (m: string) => console.log(`[${a.name}] ${m}`);
  log(`starting: ${a.size}`);
  const site = await startHostileSite({ ...a.site, cpuProfDir: arg('cpu-prof-dir'), logFile: arg('log-file') });
  try {
    const quiet = await quietLatency(site);
    log(`quiet sync latency: median ${quiet.medianMs} ms`);
    const loadStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
    const probes = new Probes(site);
    const sync = latencyLoop(site);
    const adm = a.adminLatency ? latencyLoop(site, adminPushLatency) : null;
    const res = await a.run({ site, deadline: Date.now() + a.deadlineSec * 1000, rssCapMb, log });
    const underAttack = await sync.stop();
    const adminUnderAttack = adm ? await adm.stop() : undefined;
    const p = await probes.stop();
    const load = { start: loadStart, end: os.loadavg().map((x) => Math.round(x * 100) / 100) };
    const worst = Math.max(underAttack.medianMs ?? Infinity, adminUnderAttack?.medianMs ?? 0);
    const verdict = {
      up: p.alive,
      rss: p.peakRssMb < TARGET.rssMb,
      loop: p.loopMaxMs !== null && p.loopMaxMs < TARGET.loopMs,
      // the daemon's own part of its worst stall (the machine's waiting for a core taken out)
      loopOwn: p.stall?.own.maxMs !== null && p.stall?.own.maxMs !== undefined && p.stall.own.maxMs < TARGET.loopMs,
      latency: underAttack.timedOut === 0 && (adminUnderAttack?.timedOut ?? 0) === 0 && quiet.medianMs !== null && worst <= quiet.medianMs * TARGET.latencyRatio,
    };
    log(`load ${load.start[0]} -> ${load.end[0]}`);
    const sf = (s: { p50Ms: number | null; p99Ms: number | null; maxMs: number | null } | undefined) => (s ? `${s.p50Ms}/${s.p99Ms}/${s.maxMs}` : '-');
    log(`stall p50/p99/max ms: daemon wall ${sf(p.stall?.wall)}, daemon own ${sf(p.stall?.own)}, idle process beside it ${sf(p.noise?.wall)}`);
    log(`${res.reached}; peak RSS ${p.peakRssMb} MB, loop max ${p.loopMaxMs} ms, healthz max ${p.healthz.maxMs} ms (${p.healthz.failed} failed), harness loop max ${p.harnessLoopMaxMs} ms, sync ${quiet.medianMs} -> ${underAttack.medianMs} ms (${underAttack.timedOut} timed out)`);
    return { attack: a.name, item: a.item, title: a.title, size: a.size, label, commit: arg('commit') ?? git('rev-parse --short HEAD'), at: new Date().toISOString(), reached: res.reached, probes: p, quiet, underAttack, adminUnderAttack, figures: res.figures, load, verdict };
  } finally {
    await site.close().catch(() => {});
  }
}

function loadRuns(): HostileRun[] {
  if (!existsSync(RESULTS_JSON)) return [];
  try {
    return (JSON.parse(readFileSync(RESULTS_JSON, 'utf8')) as { runs: HostileRun[] }).runs;
  } catch {
    return [];
  }
}

const ms = (x: number | null | undefined) => (x === null || x === undefined ? '–' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);
const yes = (b: boolean) => (b ? 'yes' : '**no**');

function stallText(s: { p50Ms: number | null; p99Ms: number | null; maxMs: number | null } | undefined): string {
  if (!s) return '–';
  const f = (x: number | null) => (x === null ? '–' : x < 10 ? x.toFixed(1) : String(Math.round(x)));
  return `${f(s.p50Ms)} / ${f(s.p99Ms)} / ${f(s.maxMs)}`;
}

function latencyText(q: LatencySummary, l: LatencySummary | undefined): string {
  if (!l) return '–';
  const t = l.timedOut ? `, ${l.timedOut}/${l.n} never arrived in 20 s` : '';
  return `${ms(q.medianMs)} → ${ms(l.medianMs)} (max ${ms(l.maxMs)}${t})`;
}

function markdown(runs: HostileRun[]): string {
  const rows = [...runs].sort((a, b) => a.item - b.item || a.label.localeCompare(b.label));
  const lines = [
    BEGIN,
    '## Hostile terminals (issue 14)',
    '',
    'Each attack of issue 14 run by `npm run bench:hostile -- --only=NAME --label=LABEL` (bench/hostile/) against the daemon in its own process',
    '(`Daemon` + admin API, `--auto-approve`, two well-behaved simulated terminals it dials, default timing model). The hostile terminal is',
    'built from src/codec over loopback (the event floods and adminhold run their attacker in a process of its own, bench/hostile/attack-child.ts,',
    "so that it does not slow the simulated terminals in the harness's process). Each run is bounded: it stops at the size the issue gives, at its deadline, or when the",
    "daemon's RSS passes the cap (1,500 MB) so that a daemon without a bound does not take the machine with it.",
    'Loop delay: the largest `nodejs_eventloop_lag_max_seconds` of /metrics scraped every second; /healthz probed every 250 ms on a fresh connection',
    "(10 s timeout); sync latency: an enrollment at one well-behaved terminal until the other holds it, quiet (15 before the attack, 200 ms apart, as under attack) → under attack (median). Load: the machine's 1-minute load average at the start → end of the attack.",
    'Stalls (p50 / p99 / max over the attack, ms, without the 20 ms interval): how late a 20 ms timer ran in the daemon (`wall`, /metrics',
    "`termsync_eventloop_stall_seconds`), the part of each stall the daemon spent on the CPU (`own`: its own work; the rest it was waiting for a core),",
    "and the same wall figure for an idle Node process started beside it for the same seconds (`noise`: the machine's share, bench/hostile/noise-child.ts).",
    'Harness loop max: the same measure for the bench process itself, which holds the attacker and the two simulated terminals; when it is high,',
    "part of the sync latency under attack is the harness's. Both loop figures include the 20 ms sampling interval (an idle process reads 20-30 ms).",
    `Targets (issue 14, "done when"): daemon up, RSS < ${TARGET.rssMb} MB, loop delay < ${TARGET.loopMs} ms, sync latency within 20% of quiet.`,
    '',
    '| # | attack | label (commit) | how far it got | up | peak RSS | loop max | stall wall p50/p99/max | stall own p50/p99/max | noise p50/p99/max | /healthz max (failed) | sync latency quiet → attack | admin change → terminals | harness loop max | load | other figures |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const other = Object.entries(r.figures)
      .filter(([k]) => k !== 'stop')
      .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v).replace(/"/g, '') : v}`)
      .join('; ');
    lines.push(
      `| ${r.item} | ${r.attack} | ${r.label} (${r.commit}) | ${r.reached} | ${yes(r.verdict.up)} | ${r.probes.peakRssMb} MB${r.verdict.rss ? '' : ' ✗'} | ${ms(r.probes.loopMaxMs)}${r.verdict.loop ? '' : ' ✗'} | ${stallText(r.probes.stall?.wall)} | ${stallText(r.probes.stall?.own)}${r.verdict.loopOwn === false ? ' ✗' : ''} | ${stallText(r.probes.noise?.wall)} | ${ms(r.probes.healthz.maxMs)} (${r.probes.healthz.failed}/${r.probes.healthz.n}) | ${latencyText(r.quiet, r.underAttack)}${r.verdict.latency ? '' : ' ✗'} | ${latencyText(r.quiet, r.adminUnderAttack)} | ${ms(r.probes.harnessLoopMaxMs)} | ${r.load ? `${r.load.start[0]} → ${r.load.end[0]}` : '–'} | ${other} |`,
    );
  }
  lines.push('', `Machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, Node ${process.version}; other work shares the cores.`, END);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const only = arg('only')?.split(',').filter(Boolean);
  const unknown = only?.filter((n) => !ATTACKS.some((a) => a.name === n));
  if (unknown?.length) {
    console.error(`unknown attack(s): ${unknown.join(', ')}; known: ${ATTACKS.map((a) => a.name).join(', ')}`);
    process.exit(2);
  }
  const label = arg('label') ?? git('rev-parse --abbrev-ref HEAD');
  const rssCapMb = Number(arg('rss-cap-mb') ?? 1500);
  const runs = loadRuns();
  // --report: rewrite the RESULTS.md section from hostile.json without running anything
  const chosen = process.argv.includes('--report') ? [] : ATTACKS.filter((x) => !only || only.includes(x.name));
  for (const a of chosen) {
    const r = await runOne(a, label, rssCapMb);
    const i = runs.findIndex((x) => x.attack === r.attack && x.label === r.label);
    if (i >= 0) runs[i] = r;
    else runs.push(r);
    writeFileSync(RESULTS_JSON, JSON.stringify({ runs }, null, 2) + '\n');
  }
  const md = existsSync(RESULTS_MD) ? readFileSync(RESULTS_MD, 'utf8') : '';
  const section = markdown(runs);
  const b = md.indexOf(BEGIN);
  const e = md.indexOf(END);
  writeFileSync(RESULTS_MD, b >= 0 && e > b ? md.slice(0, b) + section + md.slice(e + END.length) : `${md.trimEnd()}\n\n${section}\n`);
  console.log(`results: ${RESULTS_JSON}, ${RESULTS_MD}`);
  process.exit(0);
}

void main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
