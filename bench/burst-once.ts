// One burst run with its raw figures (for profiling and A/B comparisons):
//   npx tsx bench/burst-once.ts [--users=N] [--terminals=N] [--prof=DIR] [--json=FILE]
//     [--runtime=dist|tsx]  the daemon from dist/ (default) or the sources through tsx
//     [--glibc-arenas]      without MALLOC_ARENA_MAX=2;  [--v8-defaults]  without --max-semi-space-size=4
//     [--node-args="..."]   the daemon's node flags instead (e.g. --perf-basic-prof)
import { loadavg } from 'node:os';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runBurst } from './burst.js';
import { round } from './stats.js';

const { values: a } = parseArgs({ options: { users: { type: 'string' }, terminals: { type: 'string' }, prof: { type: 'string' }, json: { type: 'string' }, 'sim-processes': { type: 'string' }, runtime: { type: 'string' }, 'node-args': { type: 'string' }, 'glibc-arenas': { type: 'boolean', default: false }, 'v8-defaults': { type: 'boolean', default: false } } });
const users = Number(a.users ?? 10_000);
const terminals = Number(a.terminals ?? 50);
const before = loadavg().map((x) => round(x, 2));
const b = await runBurst({ terminals, users, simProcesses: Number(a['sim-processes'] ?? 2), runtime: (a.runtime ?? 'dist') as 'dist' | 'tsx', env: a['glibc-arenas'] ? {} : undefined, nodeArgs: a['node-args'] !== undefined ? a['node-args'].split(' ').filter(Boolean) : a['v8-defaults'] ? [] : undefined, cpuProfDir: a.prof, logFile: '/tmp/burstwork/daemon.log', progress: (m) => process.stderr.write(`[burst] ${m}\n`) });
const r = b.replay;
const out = {
  convergenceMs: r.convergenceMs,
  ratio: round(r.convergenceMs / b.bound.boundMs, 3),
  boundMs: b.bound.boundMs,
  adminP50: r.admin?.p50,
  adminP99: r.admin?.p99,
  adminMax: r.admin?.max,
  rssMb: r.daemon.peakRssMb,
  heapMb: r.daemon.peakHeapMb,
  heapTotalMb: r.daemon.peakHeapTotalMb,
  externalMb: r.daemon.peakExternalMb,
  cpuMs: r.daemon.cpuMs,
  loadBefore: before,
  loadAfter: loadavg().map((x) => round(x, 2)),
};
console.log(JSON.stringify(out));
if (a.json) writeFileSync(a.json, JSON.stringify({ ...out, replay: r }, null, 1));
