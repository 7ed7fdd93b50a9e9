// A prototype of one daemon of several on PostgreSQL, for the lead to fold
// into src/daemon.ts: the sessions (SessionManager), the sync engine on the
// PostgreSQL SiteStore, and the terminal leases that decide which of the
// shared dial targets this daemon drives. A lease taken adds the target (the
// manager dials it, the engine attaches the session); a lease lost or given
// back removes it (session closed, engine detached).
//
// Not yet: the engine does not pass the lease token as `fence` with its
// cursor writes (src/sync/ is another piece of work: every
// ingest/recordPush/setLogPosition/setFeedCursor of terminal T would take
// leases.token(T)), dial-in terminals (LeaseManager.claim), the admin API.
import type { Logger } from 'pino';
import { SessionManager, type DialTarget, type ManagerOptions } from '../terminal/manager.js';
import { termsyncDriver } from '../drivers/termsync/driver.js';
import { SessionRefused } from '../terminal/manager.js';
import type { PgSiteStore } from '../store/pg/backend.js';
import { SyncEngine, type EngineTuning } from '../sync/engine.js';
import { LeaseManager } from './leases.js';

export interface ClusterNodeOptions {
  store: PgSiteStore;
  /** every terminal of the site (the same flag file on every daemon) */
  targets: readonly DialTarget[];
  commKey: Buffer;
  leaseSec: number;
  renewEveryMs?: number;
  log: Logger;
  heartbeatSec?: number;
  requestTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  engine?: EngineTuning;
}

export class ClusterNode {
  readonly engine: SyncEngine;
  readonly manager: SessionManager;
  readonly leases: LeaseManager;

  private constructor(private readonly o: ClusterNodeOptions) {
    const log = o.log;
    const sessionsLog = log.child({ component: 'sessions' });
    const managerOpts: ManagerOptions = {
      drivers: new Map([['termsync', termsyncDriver({ heartbeatSec: o.heartbeatSec ?? 10, requestTimeoutMs: o.requestTimeoutMs ?? 10_000, log: sessionsLog })]]),
      keyFor: () => o.commKey,
      resolveDialIn: () => {
        throw new SessionRefused('this prototype accepts no dial-in terminals');
      },
      log: sessionsLog,
      heartbeatSec: o.heartbeatSec ?? 10,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
    };
    this.manager = new SessionManager(managerOpts);
    this.engine = new SyncEngine({ ...o.engine, store: o.store, log: log.child({ component: 'sync' }) });
    const byId = new Map(o.targets.map((t) => [t.id, t]));
    this.leases = new LeaseManager({
      db: o.store.db,
      daemonId: o.store.writerId,
      leaseSec: o.leaseSec,
      renewEveryMs: o.renewEveryMs,
      terminals: () => [...byId.keys()],
      logger: log.child({ component: 'leases' }),
      onAcquire: (id) => {
        const t = byId.get(id);
        if (t) this.manager.addTarget(t);
      },
      onLose: (id) => {
        this.manager.removeTarget(id);
        this.engine.detach(id);
      },
    });
    this.manager.on('online', (id, link) => {
      // a session that came up just as the lease went: not ours to drive
      if (this.leases.token(id) === undefined) {
        void link.close('terminal lease not held by this daemon');
        return;
      }
      log.debug({ terminal: id, daemon: o.store.writerId }, 'terminal session attached');
      void this.engine.attach(id, link);
    });
    this.manager.on('offline', (id, why) => {
      log.debug({ terminal: id, daemon: o.store.writerId, why }, 'terminal session detached');
      this.engine.detach(id);
    });
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    // every daemon may register the terminals: the rows are the same
    for (const t of o.targets) await o.store.upsertTerminal({ id: t.id, direction: 'dial', address: `${t.host}:${t.port}`, approved: true, protocol: t.protocol ?? 'termsync' });
    const n = new ClusterNode(o);
    await n.engine.setSyncMode(await o.store.getSyncMode());
    await n.leases.start();
    return n;
  }

  /** a clean stop: leases given back, sessions closed, engine stopped */
  async stop(): Promise<void> {
    await this.leases.stop();
    await this.manager.close();
    await this.engine.stop();
  }

  /**
   * What a crash looks like to the other daemons (tests): no more heartbeats,
   * no lease given back, the sessions cut.
   */
  async crash(): Promise<void> {
    this.leases.halt();
    await this.manager.close();
    await this.engine.stop(0).catch(() => false);
  }
}
