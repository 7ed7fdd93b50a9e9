// `termsync demo` (what `npm start` runs): the daemon on embedded defaults with
// simulated terminals, in one process. A SQLite file under ./data, four
// simulated terminals, sync mode "all", the admin API and status page on
// 127.0.0.1:51280. Every few seconds someone enrolls or edits a user at one of
// the terminals, and the monitoring log shows it reaching the others.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startAdmin } from '../admin/server.js';
import { Daemon } from '../daemon.js';
import { createLogger } from '../log.js';
import { userFromJson } from '../model/user.js';
import { DEV_COMM_KEY } from '../sim/devkey.js';
import { Simulator } from '../sim/simulator.js';
import { EVENT_LABELS } from '../admin/events.js';

export interface DemoOptions {
  dataDir: string;
  terminals: number;
  adminPort: number;
  intervalMs: number;
  count: number;
}

export async function runDemo(o: DemoOptions): Promise<number> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ level: 'warn', pretty: true });
  const sim = await Simulator.start({ terminals: o.terminals, commKey: DEV_COMM_KEY, state: join(o.dataDir, 'sim') });
  const daemon = await Daemon.start({
    db: join(o.dataDir, 'termsync.db'),
    log,
    commKey: DEV_COMM_KEY,
    syncMode: 'all',
    terminals: sim.ports().map((port, i) => ({ id: `terminal-${i + 1}`, host: '127.0.0.1', port })),
  });
  const admin = await startAdmin({ daemon, host: '127.0.0.1', port: o.adminPort, token: null, log });
  const say = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${s}\n`);
  say(`termsync demo: ${o.terminals} simulated terminals, database ${join(o.dataDir, 'termsync.db')}`);
  say(`status page and admin API: http://127.0.0.1:${admin.port}/   (Ctrl-C to stop)`);
  let lastEvent = daemon.store.listEvents({ newestFirst: true, limit: 1 })[0]?.id ?? 0;
  const poll = setInterval(() => {
    for (const e of daemon.store.listEvents({ after: lastEvent, limit: 1000 })) {
      lastEvent = e.id;
      say(`${(EVENT_LABELS[e.type] ?? e.type).padEnd(40)} terminal=${e.terminalId ?? '-'} user=${e.userId ?? '-'}`);
    }
  }, 200);
  let n = 0;
  const base = Date.now() % 100000;
  const act = setInterval(() => {
    if (o.count > 0 && n >= o.count) return;
    const t = sim.terminals[n % sim.terminals.length];
    const id = `demo-${base}-${n}`;
    say(`-- someone enrolls user ${id} at terminal-${t.index}`);
    t.enroll(userFromJson({ id, name: `Visitor ${n}`, cards: [{ type: 1, data: (0x10000000 + base * 1000 + n).toString(16) }] })).catch((e) => say(`enroll failed: ${e.message}`));
    n++;
  }, o.intervalMs);
  return new Promise((resolve) => {
    const stop = async () => {
      clearInterval(act);
      clearInterval(poll);
      await admin.close();
      await daemon.stop();
      await sim.close();
      resolve(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
  });
}
