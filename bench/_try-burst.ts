import { runBurst } from './burst.js';
const users = Number(process.argv[2] ?? 2000), terminals = Number(process.argv[3] ?? 50);
const r = await runBurst({ terminals, users, progress: (m) => console.error(m), cpuProfDir: process.env.PROF, logFile: '/tmp/daemon-bench.log' });
const { timeline, ...rest } = r.replay;
console.log(JSON.stringify({ ...rest, bound: { boundMs: r.bound.boundMs, busiest: r.bound.busiestTerminal, writes: r.bound.writesOwed }, ratio: r.replay.convergenceMs / r.bound.boundMs }, null, 1));
console.log(timeline.map((p) => `${p.t}\t${p.convergedPct}\t${p.outbox}\t${p.writes}\t${p.daemonCpuPct}\t${p.rssMb}`).join("\n"));
