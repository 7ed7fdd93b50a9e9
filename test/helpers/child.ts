// Child processes for fault tests: a TypeScript script run with `node --import
// tsx`, which prints `READY <json>` once it is up and then answers JSON-line
// commands on stdin (see daemon-child.ts and sim-child.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { DaemonOptions } from '../../src/daemon.js';

const ROOT = join(import.meta.dirname, '..', '..');

export interface ChildHandle<R = Record<string, unknown>> {
  proc: ChildProcess;
  pid: number;
  /** what the READY line said */
  ready: R;
  /** resolves when the process has exited */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stderr so far (bounded to the last 64 KB) */
  stderr(): string;
  /** sends a JSON-line command and waits for its answer */
  call<T = unknown>(op: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  kill(signal?: NodeJS.Signals): void;
}

export async function spawnTsx<R = Record<string, unknown>>(
  script: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; readyTimeoutMs?: number } = {},
): Promise<ChildHandle<R>> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
    if (err.length > 65536) err = err.slice(-65536);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const waiters = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  const rl = createInterface({ input: proc.stdout! });
  const ready = await new Promise<R>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready in time; stderr: ${err}`)), opts.readyTimeoutMs ?? 20_000);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (code ${code}, signal ${signal}) before READY; stderr: ${err}`));
    });
    rl.on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer);
        resolve(JSON.parse(line.slice(6)) as R);
        return;
      }
      let m: { id?: number; ok?: boolean; result?: unknown; error?: string };
      try {
        m = JSON.parse(line);
      } catch {
        return;
      }
      const w = m.id !== undefined ? waiters.get(m.id) : undefined;
      if (!w) return;
      waiters.delete(m.id!);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(m.error ?? 'child command failed'));
    });
  });
  void exited.then(() => {
    for (const w of waiters.values()) w.reject(new Error(`${script} exited`));
    waiters.clear();
  });
  return {
    proc,
    pid: proc.pid!,
    ready,
    exited,
    stderr: () => err,
    call<T>(op: string, a: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<T> {
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(id);
          reject(new Error(`${script}: ${op} not answered in ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.set(id, {
          resolve: (v) => {
            clearTimeout(t);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(t);
            reject(e);
          },
        });
        proc.stdin!.write(JSON.stringify({ id, op, ...a }) + '\n');
      });
    },
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}

export type DaemonChildOptions = Omit<DaemonOptions, 'log' | 'commKey'> & { commKey: Buffer | string; logLevel?: string; logFile?: string };

/** The real daemon in a child process (test/helpers/daemon-child.ts). */
export function spawnDaemon(o: DaemonChildOptions): Promise<ChildHandle<{ pid: number; ports: number[] }>> {
  const json = JSON.stringify({ ...o, commKey: Buffer.isBuffer(o.commKey) ? o.commKey.toString('hex') : o.commKey });
  return spawnTsx('test/helpers/daemon-child.ts', [], { env: { TERMSYNC_CHILD_OPTS: json } });
}

/** Simulated terminals in a child process (test/helpers/sim-child.ts). */
export function spawnSim(o: Record<string, unknown> & { terminals: number; commKey: Buffer }): Promise<ChildHandle<{ pid: number; ports: number[] }>> {
  return spawnTsx('test/helpers/sim-child.ts', [], { env: { TERMSYNC_SIM_OPTS: JSON.stringify({ ...o, commKey: o.commKey.toString('hex') }) } });
}
