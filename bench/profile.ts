// Summarizes a V8 CPU profile (node --cpu-prof): the functions with the most
// self time. Usage: npx tsx bench/profile.ts FILE.cpuprofile [TOP]
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface HotFunction {
  name: string;
  where: string;
  selfMs: number;
  selfPct: number;
}

export function topSelfTime(file: string, top = 15): { totalMs: number; functions: HotFunction[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const agg = new Map<string, HotFunction>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') continue;
    total += us;
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/.*\/(src|bench|node_modules)\//, '$1/');
    const where = url ? `${url}:${n.callFrame.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const a = agg.get(key) ?? { name, where, selfMs: 0, selfPct: 0 };
    a.selfMs += us / 1000;
    agg.set(key, a);
  }
  const functions = [...agg.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const f of functions) {
    f.selfPct = Math.round((1000 * f.selfMs) / (total / 1000)) / 10;
    f.selfMs = Math.round(f.selfMs);
  }
  return { totalMs: Math.round(total / 1000), functions };
}

/** Total (self + callees) time of the named functions, ms; a function inside itself counts once. */
export function inclusiveTime(file: string, names: string[]): Record<string, number> {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const out: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const name = byId.get(cur)!.callFrame.functionName;
      if (name in out && !seen.has(name)) {
        seen.add(name);
        out[name] += us / 1000;
      }
    }
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k]);
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = topSelfTime(process.argv[2], Number(process.argv[3] ?? 25));
  process.stdout.write(`busy ${r.totalMs} ms (idle excluded)\n`);
  for (const f of r.functions) process.stdout.write(`${String(f.selfMs).padStart(7)} ms ${String(f.selfPct).padStart(5)}%  ${f.name}  ${f.where}\n`);
  if (process.argv[4]) process.stdout.write(`inclusive: ${JSON.stringify(inclusiveTime(process.argv[2], process.argv[4].split(',')), null, 1)}\n`);
}
