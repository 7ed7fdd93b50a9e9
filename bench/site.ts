// One measured site: a simulator (in this process, default timing model) and
// the daemon (its own process) dialling every simulated terminal, with a fresh
// SQLite file in a temp directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import type { TimingModel } from '../src/sim/timing.js';
import { DaemonProc } from './daemon-proc.js';

export interface BenchSite {
  sim: Simulator;
  daemon: DaemonProc;
  dir: string;
  db: string;
  close(): Promise<void>;
}

export interface BenchSiteOptions {
  terminals: number;
  timing?: Partial<TimingModel>;
  heartbeatSec?: number;
  reconnectMaxMs?: number;
  cpuProfDir?: string;
  logFile?: string;
  sampleMs?: number;
  /** wait at most this long for every terminal to be online and the daemon idle */
  readyTimeoutMs?: number;
}

export async function startBenchSite(o: BenchSiteOptions): Promise<BenchSite> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-bench-'));
  const db = join(dir, 'termsync.db');
  const sim = await Simulator.start({ terminals: o.terminals, commKey: DEV_COMM_KEY, timing: o.timing });
  const ports = sim.ports();
  let daemon: DaemonProc;
  try {
    daemon = await DaemonProc.start({
      db,
      commKey: DEV_COMM_KEY.toString('hex'),
      terminals: ports.map((port, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port })),
      syncMode: 'all',
      heartbeatSec: o.heartbeatSec ?? 10,
      reconnectMinMs: 50,
      reconnectMaxMs: o.reconnectMaxMs ?? 1000,
      sampleMs: o.sampleMs ?? 250,
      cpuProfDir: o.cpuProfDir,
      logFile: o.logFile,
    });
  } catch (e) {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const site: BenchSite = {
    sim,
    daemon,
    dir,
    db,
    async close() {
      await daemon.stop();
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // every terminal online, first contact (reconcile) done, nothing queued
  const deadline = Date.now() + (o.readyTimeoutMs ?? 120_000);
  for (;;) {
    const st = await daemon.state();
    if (st.online === o.terminals && st.idle && st.reconciles >= o.terminals) break;
    if (Date.now() > deadline) {
      await site.close();
      throw new Error(`site not ready: ${st.online}/${o.terminals} terminals online, idle ${st.idle}, reconciles ${st.reconciles}`);
    }
    await sleep(100);
  }
  return site;
}
