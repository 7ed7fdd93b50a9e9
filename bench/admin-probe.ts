// The admin API probe, in a process of its own: the bench process also runs
// fifty simulated terminals, and a busy event loop there would count as admin
// latency. GETs on a rotating set of endpoints, one at a time, every
// `everyMs`; on 'stop' it answers with the latencies and exits.
//   parent -> child {type:'start', port, everyMs}    child -> parent {type:'started'}
//   parent -> child {type:'stop'}                    child -> parent {type:'result', latencies, byPath, errors}
import { fork } from 'node:child_process';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ADMIN_PATHS = ['/api/status', '/api/terminals', '/api/users?limit=100', '/api/events?limit=100&order=desc', '/metrics', '/healthz'];

export interface ProbeResult {
  latencies: number[];
  /** when each answer of `latencies` arrived (epoch ms) */
  at: number[];
  byPath: Record<string, number[]>;
  errors: number;
}

function probe(port: number, everyMs: number, paths: readonly string[] = ADMIN_PATHS): { stop(): Promise<ProbeResult> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  const at: number[] = [];
  const byPath: Record<string, number[]> = {};
  let errors = 0;
  let stopped = false;
  const one = (path: string) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          if (res.statusCode === 200) {
            const ms = performance.now() - started;
            latencies.push(ms);
            at.push(performance.timeOrigin + performance.now());
            (byPath[path] ??= []).push(ms);
          } else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const next = performance.now() + everyMs;
      await one(paths[i % paths.length]);
      const wait = next - performance.now();
      if (wait > 0 && !stopped) await sleep(wait);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      agent.destroy();
      return { latencies, at, byPath, errors };
    },
  };
}

/** Starts the probe in a child process; stop() resolves with its measurements. */
export async function startAdminProbe(port: number, everyMs: number, paths?: readonly string[]): Promise<{ stop(): Promise<ProbeResult> }> {
  return (await spawnAdminProbe()).start(port, everyMs, paths);
}

/**
 * The probe's process, booted and waiting: start() begins probing at once
 * (for a window that begins the moment the admin API listens).
 */
export async function spawnAdminProbe(): Promise<{ start(port: number, everyMs: number, paths?: readonly string[]): Promise<{ stop(): Promise<ProbeResult> }> }> {
  const child = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const next = (type: string) => new Promise<any>((resolve) => child.on('message', (m: any) => m.type === type && resolve(m)));
  await next('ready');
  return {
    async start(port, everyMs, paths) {
      const started = next('started');
      child.send({ type: 'start', port, everyMs, paths: paths ?? null });
      await started;
      return {
        async stop() {
          const result = next('result');
          child.send({ type: 'stop' });
          const r = await result;
          return { latencies: r.latencies, at: r.at ?? [], byPath: r.byPath, errors: r.errors };
        },
      };
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.send) {
  let running: ReturnType<typeof probe> | null = null;
  process.on('message', async (m: { type: string; port?: number; everyMs?: number; paths?: string[] | null }) => {
    if (m.type === 'start') {
      running = probe(m.port!, m.everyMs!, m.paths ?? undefined);
      process.send!({ type: 'started' });
    } else if (m.type === 'stop') {
      const r = running ? await running.stop() : { latencies: [], at: [], byPath: {}, errors: 0 };
      process.send!({ type: 'result', ...r }, () => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ type: 'ready' });
}
