// One measured site: the simulated terminals (default timing model; in this
// process, or split over child processes with `simProcesses`) and the daemon
// (its own process) dialling every one of them, with a fresh SQLite file in a
// temp directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import type { Simulator } from '../src/sim/simulator.js';
import type { TimingModel } from '../src/sim/timing.js';
import type { DaemonRuntime } from './compiled.js';
import { DaemonProc } from './daemon-proc.js';
import { Recorder } from './recorder.js';
import { startLocalHost, startProcessHost, type SimHost } from './sim-host.js';

export interface BenchSite {
  host: SimHost;
  /** the in-process simulator (null when the terminals run in child processes) */
  sim: Simulator | null;
  daemon: DaemonProc;
  dir: string;
  db: string;
  /** the recording proxy between the daemon and the terminals (with `record`) */
  recorder: Recorder | null;
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
  /** put a recording proxy between the daemon and the terminals */
  record?: boolean;
  /** run the terminals in this many child processes instead of this one */
  simProcesses?: number;
  /** wait at most this long for every terminal to be online and the daemon idle */
  readyTimeoutMs?: number;
  /** the daemon's process from dist/ or through tsx (see DaemonProcOptions.runtime) */
  runtime?: DaemonRuntime;
  /** more node flags for the daemon's process (e.g. --perf-basic-prof) */
  nodeArgs?: readonly string[];
  /** more environment variables for the daemon's process */
  env?: Record<string, string>;
  /** called just before the daemon's process is started (after the terminals are up) */
  onDaemonStart?: () => void;
}

export async function startBenchSite(o: BenchSiteOptions): Promise<BenchSite> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-bench-'));
  const db = join(dir, 'termsync.db');
  let sim: Simulator | null = null;
  let host: SimHost;
  if (o.simProcesses && o.simProcesses > 0) host = await startProcessHost({ terminals: o.terminals, processes: o.simProcesses, timing: o.timing });
  else {
    const local = await startLocalHost({ terminals: o.terminals, timing: o.timing });
    sim = local.sim;
    host = local;
  }
  let recorder: Recorder | null = null;
  let daemon: DaemonProc;
  try {
    if (o.record) recorder = await Recorder.start(host.ports());
    const ports = recorder ? recorder.ports() : host.ports();
    o.onDaemonStart?.();
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
      runtime: o.runtime,
      nodeArgs: o.nodeArgs,
      env: o.env,
    });
  } catch (e) {
    await recorder?.close();
    await host.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const site: BenchSite = {
    host,
    sim,
    daemon,
    dir,
    db,
    recorder,
    async close() {
      await daemon.stop();
      await recorder?.close();
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // every terminal online, first contact (reconcile) done, nothing queued
  const deadline = Date.now() + (o.readyTimeoutMs ?? 120_000);
  for (;;) {
    const st = await daemon.state();
    if (st.online === o.terminals && st.idle && st.reconcilesEnded >= o.terminals) break;
    if (Date.now() > deadline) {
      await site.close();
      throw new Error(`site not ready: ${st.online}/${o.terminals} terminals online, idle ${st.idle}, reconciles ${st.reconcilesEnded} ended of ${st.reconciles} started`);
    }
    await sleep(100);
  }
  return site;
}
