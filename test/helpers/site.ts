// A whole site on loopback for integration tests: the real simulator (N terminals
// listening on ephemeral ports), the real daemon dialling them, a real SQLite
// file in a temp directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Daemon, type DaemonOptions } from '../../src/daemon.js';
import type { UserRecord } from '../../src/model/user.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { Simulator, type SimulatorOptions } from '../../src/sim/simulator.js';
import { ZERO_TIMING } from '../../src/sim/timing.js';
import { usersEqual } from '../../src/model/merge.js';
import { waitFor } from './wait.js';

export interface SiteOptions {
  terminals?: number;
  sim?: Partial<SimulatorOptions>;
  daemon?: Partial<DaemonOptions>;
  dir?: string;
}

export interface Site {
  sim: Simulator;
  daemon: Daemon;
  dir: string;
  db: string;
  /** terminal IDs as the daemon knows them: "t1".."tN" */
  ids: string[];
  startDaemon(extra?: Partial<DaemonOptions>): Promise<Daemon>;
  /** every online terminal in `ids` (default all) holds every server user equal to the server's record */
  /** `count`: the server must hold at least this many users (so an empty server does not count as converged) */
  converged(opts?: { ids?: string[]; users?: string[]; count?: number }): boolean;
  waitConverged(opts?: { ids?: string[]; users?: string[]; count?: number; timeoutMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export const silent = pino({ level: process.env.TEST_LOG ?? 'silent' });

export async function startSite(o: SiteOptions = {}): Promise<Site> {
  const n = o.terminals ?? 3;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'termsync-site-'));
  const db = join(dir, 'termsync.db');
  const sim = await Simulator.start({ terminals: n, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, ...o.sim });
  const ids = sim.terminals.map((t) => `t${t.index}`);
  const ports = sim.ports();
  const base: DaemonOptions = {
    db,
    log: silent,
    commKey: DEV_COMM_KEY,
    terminals: ids.map((id, i) => ({ id, host: '127.0.0.1', port: ports[i] })),
    syncMode: 'all',
    heartbeatSec: 2,
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    dbRetryMs: 50,
    ...o.daemon,
  };
  const site: Site = {
    sim,
    daemon: undefined as unknown as Daemon,
    dir,
    db,
    ids,
    async startDaemon(extra = {}) {
      site.daemon = await Daemon.start({ ...base, ...extra });
      return site.daemon;
    },
    converged({ ids: which = ids, users, count = 1 } = {}) {
      const store = site.daemon.store;
      if (store.userCount() < count) return false;
      const serverUsers: UserRecord[] = users ? users.map((u) => store.getUser(u)).filter((u): u is UserRecord => u !== null) : store.listUsers({ limit: 1_000_000 });
      if (users && serverUsers.length !== users.length) return false;
      for (const id of which) {
        const t = sim.terminal(Number(id.slice(1)))!;
        for (const u of serverUsers) {
          const held = t.getUser(u.id);
          if (!held || !usersEqual(held, u)) return false;
        }
      }
      return true;
    },
    async waitConverged(opts = {}) {
      await waitFor(() => site.converged(opts), { timeoutMs: opts.timeoutMs ?? 15_000, message: 'terminals did not converge to the server' });
    },
    async close() {
      await site.daemon?.stop(1000).catch(() => {});
      await sim.close();
      if (!o.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  await site.startDaemon();
  await waitFor(() => site.daemon.terminals().every((t) => t.state === 'online'), { message: 'terminals did not come online' });
  // First contact reconciles each terminal by user list; let that finish so tests start from a quiet site.
  await site.daemon.engine.idle();
  return site;
}
