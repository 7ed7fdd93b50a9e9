// The machine-noise control of the hostile bench: an idle Node process that
// measures its own event loop as the daemon's is measured (a 20 ms timer's
// stall, and the part of it spent on the CPU; see src/admin/loop-stall.ts),
// beside the daemon, over the same seconds. It does nothing else, so its
// stalls are the machine's (other processes holding the cores), not work:
// the daemon's stall beyond this one is the daemon's.
import { LoopStallMonitor } from '../../src/admin/loop-stall.js';

const mon = new LoopStallMonitor(20);
mon.start();
// a timer that keeps the process alive (the monitor's is unref'd)
const keep = setInterval(() => {}, 1 << 30);
let base: { wall: number[]; own: number[] } | null = null;
let maxMs = 0;
let ownMaxMs = 0;

process.on('message', (m: string) => {
  if (m === 'start') {
    mon.take();
    base = { wall: [...mon.wallCounts], own: [...mon.ownCounts] };
    maxMs = ownMaxMs = 0;
    process.send!('started');
  } else if (m === 'stop') {
    const s = mon.take();
    maxMs = Math.max(maxMs, s.maxMs);
    ownMaxMs = Math.max(ownMaxMs, s.ownMaxMs);
    const wall = mon.wallCounts.map((n, i) => n - (base?.wall[i] ?? 0));
    const own = mon.ownCounts.map((n, i) => n - (base?.own[i] ?? 0));
    process.send!({ wall, own, maxMs, ownMaxMs }, () => {
      clearInterval(keep);
      mon.stop();
      process.exit(0);
    });
  }
});
