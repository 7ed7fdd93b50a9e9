// The enrollment burst against the daemon, with the device-bound limit and the
// naive baseline on the same scenario and simulator timing.
import { DEFAULT_MAX_USERS_PER_BATCH } from '../src/sim/terminal.js';
import { DEFAULT_TIMING } from '../src/sim/timing.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { deviceBound, type BoundResult } from './bound.js';
import type { DaemonRuntime } from './compiled.js';
import { runNaive, type NaiveResult } from './naive.js';
import { replay, type ReplayResult } from './replay.js';
import { generate, sampleEnrollments, type Scenario } from './scenario.js';
import { startBenchSite } from './site.js';
import { round } from './stats.js';

export interface BurstOptions {
  terminals: number;
  users: number;
  seed?: number;
  /** fingerprints per user (default 1) */
  fingers?: number;
  /** child processes the simulated terminals run in (0: this process) */
  simProcesses?: number;
  cpuProfDir?: string;
  logFile?: string;
  /** the daemon's process from dist/ (production, the default) or through tsx */
  runtime?: DaemonRuntime;
  /** the node flags of the daemon's process (default: PRODUCTION_NODE_ARGS, as systemd/termsync.service runs it) */
  nodeArgs?: readonly string[];
  /**
   * the daemon's environment: by default MALLOC_ARENA_MAX=2, as
   * systemd/termsync.service runs it ({} for glibc's default)
   */
  env?: Record<string, string>;
  progress?: (msg: string) => void;
}

/** what systemd/termsync.service adds to the daemon's environment, and its node flags */
export const PRODUCTION_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
export const PRODUCTION_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4'];

export function burstScenario(o: { terminals: number; users: number; seed?: number; fingers?: number }): Scenario {
  return generate({ generator: 'burst', seed: o.seed ?? 42, params: { terminals: o.terminals, users: o.users, cards: 1, fingers: o.fingers ?? 1 } });
}

export async function runBurst(o: BurstOptions): Promise<{ replay: ReplayResult; bound: BoundResult; scenario: Scenario }> {
  const scenario = burstScenario(o);
  const bound = deviceBound(scenario, DEFAULT_TIMING, DEFAULT_MAX_USERS_PER_BATCH, 'max');
  o.progress?.(`burst: ${o.users} users on ${o.terminals} terminals; device bound ${round(bound.boundMs / 1000, 2)} s`);
  const site = await startBenchSite({ terminals: o.terminals, cpuProfDir: o.cpuProfDir, logFile: o.logFile, simProcesses: o.simProcesses, runtime: o.runtime ?? 'dist', nodeArgs: o.nodeArgs ?? PRODUCTION_NODE_ARGS, env: o.env ?? PRODUCTION_ENV });
  try {
    const r = await replay({ scenario, host: site.host, daemon: site.daemon, db: site.db, speed: 'max', adminProbeMs: 100, progress: o.progress, timeoutMs: 15 * 60_000 });
    return { replay: r, bound, scenario };
  } finally {
    await site.close();
  }
}

export interface NaiveRun extends NaiveResult {
  sampleUsers: number;
  /** the sample's time scaled to the whole scenario (the naive loop is sequential: linear) */
  scaledMs: number;
}

/** The naive baseline on the first `sampleUsers` enrollments of the same burst, scaled to all users. */
export async function runNaiveSample(o: { terminals: number; users: number; seed?: number; fingers?: number; sampleUsers: number }): Promise<NaiveRun> {
  const full = burstScenario(o);
  const sample = sampleEnrollments(full, o.sampleUsers);
  const sim = await Simulator.start({ terminals: o.terminals, commKey: DEV_COMM_KEY });
  try {
    const r = await runNaive(sim, sample, DEV_COMM_KEY);
    return { ...r, sampleUsers: r.enrollments, scaledMs: (r.convergenceMs * o.users) / r.enrollments };
  } finally {
    await sim.close();
  }
}
