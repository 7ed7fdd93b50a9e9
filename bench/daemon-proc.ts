// Parent side of bench/daemon-child.ts: spawns the daemon in its own Node
// process, collects its samples, reads its peak RSS from /proc, asks it for
// its state, stops it.
import { fork, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compiledBenchModule, type DaemonRuntime } from './compiled.js';
import type { ChildSample, ChildStartOptions, ChildState } from './daemon-child.js';

const CHILD = fileURLToPath(new URL('./daemon-child.ts', import.meta.url));

export interface DaemonProcOptions extends Omit<ChildStartOptions, 'sampleMs'> {
  sampleMs?: number;
  /** write a V8 CPU profile of the daemon into this directory (node --cpu-prof) */
  cpuProfDir?: string;
  /** the child's stdout/stderr go here (default: discarded) */
  logFile?: string;
  /** more node flags for the daemon's process, e.g. --max-old-space-size=768 */
  nodeArgs?: readonly string[];
  /**
   * 'dist': the daemon's code from dist/ without the tsx loader, as
   * bin/termsync.js runs it once built (bench/compiled.ts; built first when
   * src/ is newer); 'tsx' (default): the TypeScript sources through tsx
   */
  runtime?: DaemonRuntime;
  /** more environment variables for the daemon's process (e.g. MALLOC_ARENA_MAX, as systemd/termsync.service sets it) */
  env?: Record<string, string>;
}

export interface StoppedStats extends ChildState {
  latencyMs: number[];
}

export class DaemonProc {
  readonly samples: ChildSample[] = [];
  adminPort = 0;
  pid = 0;
  /** the daemon's terminal listeners (with daemonExtra.listen) */
  listenPorts: number[] = [];
  private waiters: { type: string; resolve: (m: any) => void }[] = [];
  private exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: any) => {
      if (m.type === 'sample') {
        this.samples.push(m.sample);
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type || m.type === 'error');
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
    });
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  static async start(o: DaemonProcOptions): Promise<DaemonProc> {
    const dist = o.runtime === 'dist';
    const execArgv = dist ? [] : ['--import', 'tsx'];
    if (o.cpuProfDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`);
    if (o.nodeArgs) execArgv.push(...o.nodeArgs);
    const out = o.logFile ? openSync(o.logFile, 'a') : 'ignore';
    const child = fork(dist ? compiledBenchModule('daemon-child') : CHILD, [], { execArgv, stdio: ['ignore', out, out, 'ipc'], env: o.env ? { ...process.env, ...o.env } : process.env });
    const p = new DaemonProc(child);
    const { cpuProfDir: _c, logFile: _l, nodeArgs: _n, runtime: _r, env: _e, ...rest } = o;
    const ready = await p.request<{ type: string; adminPort: number; pid: number; listenPorts?: number[]; message?: string }>('ready', { type: 'start', options: { sampleMs: 250, ...rest } });
    if (ready.type === 'error') throw new Error(`daemon child failed to start: ${ready.message}`);
    p.adminPort = ready.adminPort;
    p.pid = ready.pid;
    p.listenPorts = ready.listenPorts ?? [];
    return p;
  }

  private request<T>(reply: string, msg: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`daemon child did not answer ${reply} within 60 s`)), 60_000);
      this.waiters.push({
        type: reply,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
      this.child.send(msg as object);
    });
  }

  async state(): Promise<ChildState> {
    return (await this.request<{ state: ChildState }>('state', { type: 'state' })).state;
  }

  /** Starts a CPU profile of the daemon (the inspector in its process) to be written to `file` by profileEnd. */
  async profileStart(file: string): Promise<void> {
    await this.request('profiling', { type: 'profile', file });
  }

  /** Ends the profile profileStart began and writes it; resolves with the file. */
  async profileEnd(): Promise<string | null> {
    return (await this.request<{ file: string | null }>('profiled', { type: 'profile-end' })).file;
  }

  /** CPU time (user + system, ms) of the child so far, from /proc (all threads). */
  cpuMsFromProc(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) are at 11 and 12 after the command name
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
  }

  /** Peak resident set size so far (VmHWM), MB. */
  peakRssMb(): number {
    const s = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) / 1024 : NaN;
  }

  rssMb(): number {
    const s = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) / 1024 : NaN;
  }

  /** true while the daemon's process runs */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** the exit code or signal once the process ended */
  get exit(): string | null {
    return this.child.signalCode ?? (this.child.exitCode === null ? null : String(this.child.exitCode));
  }

  async stop(): Promise<StoppedStats | null> {
    if (!this.alive) return null;
    let stats: StoppedStats | null = null;
    try {
      stats = (await this.request<{ stats: StoppedStats }>('stopped', { type: 'stop' })).stats;
    } catch {
      this.child.kill('SIGKILL');
    }
    await this.exited;
    return stats;
  }
}
