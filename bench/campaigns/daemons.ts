// Two ways to run the real daemon in a child process for the fault campaigns,
// behind one small interface: server writes (put, delete) and a kill.
//
// - childDaemon: test/helpers/daemon-child.ts, server writes over its stdin
//   (what test/fault-crash.test.ts has always used; quick to start).
// - cliDaemon: `termsync run` exactly as an operator starts it
//   (bin/termsync.js), server writes through the admin API over HTTP, logs
//   (pino JSON) appended to a file.
import { spawn } from 'node:child_process';
import { openSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { spawnDaemon } from '../../test/helpers/child.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';

const ROOT = join(import.meta.dirname, '..', '..');

export interface CampaignDaemon {
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** true until the process has exited */
  running(): boolean;
  /** resolves once the server accepted the user (the write is committed); rejects otherwise */
  putUser(json: Record<string, unknown>): Promise<void>;
  /** resolves once the server deleted the user; rejects otherwise */
  deleteUser(id: string): Promise<void>;
  kill(signal: NodeJS.Signals): void;
  /** last lines of stderr, for a report */
  stderrTail(): string;
  /** the ports of its terminal listeners (--listen) */
  listenPorts: number[];
  /** the admin API's base URL (cliDaemon only) */
  adminUrl: string | null;
}

export interface LaunchOptions {
  db: string;
  /** the simulated terminals: their device IDs and ports */
  terminals: { deviceId: number; port: number }[];
  heartbeatSec?: number;
  requestTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export type Launcher = (o: LaunchOptions) => Promise<CampaignDaemon>;

/** The daemon in test/helpers/daemon-child.ts; server writes over stdin. */
export const childDaemon: Launcher = async (o) => {
  const h = await spawnDaemon({
    db: o.db,
    commKey: DEV_COMM_KEY,
    terminals: o.terminals.map((t, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port: t.port })),
    syncMode: 'all',
    heartbeatSec: o.heartbeatSec ?? 2,
    requestTimeoutMs: o.requestTimeoutMs ?? 3000,
    reconnectMinMs: o.reconnectMinMs ?? 20,
    reconnectMaxMs: o.reconnectMaxMs ?? 200,
    dbRetryMs: 50,
  });
  return {
    pid: h.pid,
    exited: h.exited,
    running: () => h.proc.exitCode === null && h.proc.signalCode === null,
    async putUser(json) {
      await h.call('putUser', { user: json }, 3000);
    },
    async deleteUser(id) {
      const found = await h.call<boolean>('deleteUser', { userId: id }, 3000);
      if (!found) throw new Error(`no user ${id}`);
    },
    kill: (s) => h.kill(s),
    stderrTail: () => h.stderr().slice(-2000),
    listenPorts: h.ready.ports,
    adminUrl: null,
  };
};

/**
 * `termsync run` (bin/termsync.js) with the admin API on an ephemeral loopback
 * port; server writes are PUT/DELETE /api/users/:id. `logFile`: the daemon's
 * stdout (its JSON log) is appended there.
 */
export function cliDaemon(opts: { logFile?: string; logLevel?: string; extraFlags?: string[] } = {}): Launcher {
  return async (o) => {
    const args = [
      join(ROOT, 'bin', 'termsync.js'),
      'run',
      `--db=${o.db}`,
      ...o.terminals.map((t) => `--terminal=${t.deviceId}@127.0.0.1:${t.port}`),
      '--insecure-dev-key',
      '--sync-mode=all',
      '--admin-listen=127.0.0.1:0',
      `--heartbeat-sec=${o.heartbeatSec ?? 2}`,
      `--request-timeout-ms=${o.requestTimeoutMs ?? 3000}`,
      `--reconnect-min-ms=${o.reconnectMinMs ?? 20}`,
      `--reconnect-max-ms=${o.reconnectMaxMs ?? 200}`,
      `--log-level=${opts.logLevel ?? 'info'}`,
      ...(opts.extraFlags ?? []),
    ];
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => {
      err = (err + c.toString()).slice(-16384);
    });
    const fd = opts.logFile ? openSync(opts.logFile, 'a') : null;
    const rl = createInterface({ input: proc.stdout! });
    const running = await new Promise<{ admin: number; listen: number[] }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`termsync run not ready in 30 s; stderr: ${err}`)), 30_000);
      void exited.then(({ code, signal }) => {
        clearTimeout(t);
        reject(new Error(`termsync run exited (code ${code}, signal ${signal}) before it was running; stderr: ${err}`));
      });
      rl.on('line', (line) => {
        if (fd !== null) writeSync(fd, line + '\n');
        if (!line.includes('termsync running')) return;
        try {
          const m = JSON.parse(line) as { admin?: number; listen?: number[] };
          if (typeof m.admin === 'number') {
            clearTimeout(t);
            resolve({ admin: m.admin, listen: m.listen ?? [] });
          }
        } catch {
          // not JSON: keep waiting
        }
      });
    });
    void exited.then(() => {
      if (fd !== null) setTimeout(() => closeSync(fd), 100); // lines still in the pipe
    });
    const base = `http://127.0.0.1:${running.admin}`;
    const request = async (method: string, path: string, body?: unknown): Promise<number> => {
      const res = await fetch(base + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      return res.status;
    };
    return {
      pid: proc.pid!,
      exited,
      running: () => proc.exitCode === null && proc.signalCode === null,
      async putUser(json) {
        const status = await request('PUT', `/api/users/${encodeURIComponent(String(json.id))}`, json);
        if (status !== 200 && status !== 201) throw new Error(`PUT answered ${status}`);
      },
      async deleteUser(id) {
        const status = await request('DELETE', `/api/users/${encodeURIComponent(id)}`);
        if (status !== 204) throw new Error(`DELETE answered ${status}`);
      },
      kill(s) {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(s);
      },
      stderrTail: () => err.slice(-2000),
      listenPorts: running.listen,
      adminUrl: base,
    };
  };
}
