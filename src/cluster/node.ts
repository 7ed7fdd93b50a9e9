// One daemon of several on PostgreSQL (`termsync run --db postgres://...`,
// src/cluster/run.ts): the sessions (SessionManager), the sync engine on the
// PostgreSQL SiteStore, and the terminal leases that decide which of the
// shared dial targets this daemon drives. A lease taken adds the target (the
// manager dials it, the engine attaches the session); a lease lost or given
// back removes it (session closed, engine detached).
//
// Fencing: the engine passes leases.token(T) as the `fence` of every cursor
// write of terminal T (EngineOptions.fenceFor); a write after the lease was
// lost (locally expired, or taken by another daemon: the database refuses the
// stale token) fails with LeaseLostError and closes only that session.
//
// Dial-in terminals (--listen): the daemon they reached claims the lease
// (free or expired: taken; held by another daemon: the session is closed with
// the owner named, and the terminal dials again, e.g. through the balancer).
// The lease goes back when the session ends.
import type { Logger } from 'pino';
import { SessionManager, type DialTarget, type ManagerOptions } from '../terminal/manager.js';
import { termsyncDriver } from '../drivers/termsync/driver.js';
import { SessionRefused } from '../terminal/manager.js';
import type { DeviceSession } from '../sync/ports.js';
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
  /** accept terminals that dial in on this address (plain TCP) */
  listen?: { host: string; port: number };
  /** dial-in terminals not yet known are approved (else they must be approved in the database) */
  autoApprove?: boolean;
}

export class ClusterNode {
  readonly engine: SyncEngine;
  readonly manager: SessionManager;
  readonly leases: LeaseManager;
  readonly listenPorts: number[] = [];
  /** dial-in sessions refused because another daemon holds the lease */
  refusedDialIns = 0;

  get store(): PgSiteStore {
    return this.o.store;
  }

  private constructor(private readonly o: ClusterNodeOptions) {
    const log = o.log;
    const byId = new Map(o.targets.map((t) => [t.id, t]));
    const sessionsLog = log.child({ component: 'sessions' });
    const managerOpts: ManagerOptions = {
      drivers: new Map([['termsync', termsyncDriver({ heartbeatSec: o.heartbeatSec ?? 10, requestTimeoutMs: o.requestTimeoutMs ?? 10_000, log: sessionsLog })]]),
      keyFor: () => o.commKey,
      // the lease is claimed (a database round trip) once the session is up: see 'online'
      resolveDialIn: (hello) => {
        const id = String(hello.deviceId);
        if (byId.has(id)) throw new SessionRefused(`device ${id} is a terminal the server dials; dial-in refused`);
        return { id, note: { dialIn: true } };
      },
      log: sessionsLog,
      heartbeatSec: o.heartbeatSec ?? 10,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
    };
    this.manager = new SessionManager(managerOpts);
    this.engine = new SyncEngine({ ...o.engine, store: o.store, log: log.child({ component: 'sync' }), fenceFor: (id) => this.leases.token(id) });
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
    this.manager.on('online', (id, link, _dir, note) => {
      if ((note as { dialIn?: boolean } | undefined)?.dialIn) {
        void this.dialedIn(id, link);
        return;
      }
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
      if (!byId.has(id)) void this.leases.unclaim(id).catch((e: unknown) => log.warn({ terminal: id, err: (e as Error).message }, 'dial-in lease not given back; it expires after the TTL'));
    });
  }

  /** A terminal dialed in here: drive it if its lease is free (or ours), else close with the owner named. */
  private async dialedIn(id: string, link: DeviceSession): Promise<void> {
    const log = this.o.log;
    try {
      const known = await this.o.store.getTerminal(id);
      if (!known) await this.o.store.upsertTerminal({ id, direction: 'listen', deviceId: Number(id), address: '', approved: this.o.autoApprove ?? false, protocol: 'termsync' });
      const approved = known ? known.approved : (this.o.autoApprove ?? false);
      if (!approved) {
        log.info({ terminal: id }, 'dial-in terminal not approved; session closed');
        link.close('terminal not approved on this site (an administrator approves it)');
        return;
      }
      const r = await this.leases.claim(id);
      if ('owner' in r) {
        this.refusedDialIns++;
        log.info({ terminal: id, owner: r.owner }, 'dial-in terminal driven by another daemon; session closed');
        link.close(`terminal ${id} is driven by daemon ${r.owner}; dial again (another daemon)`);
        return;
      }
      if (link.closed) {
        await this.leases.unclaim(id);
        return;
      }
      await this.engine.attach(id, link);
    } catch (e) {
      log.warn({ terminal: id, err: (e as Error).message }, 'dial-in terminal could not be claimed; session closed');
      link.close(`terminal lease not claimed: ${(e as Error).message}`);
    }
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    // every daemon may register the terminals: the rows are the same
    for (const t of o.targets) await o.store.upsertTerminal({ id: t.id, direction: 'dial', address: `${t.host}:${t.port}`, approved: true, protocol: t.protocol ?? 'termsync' });
    const n = new ClusterNode(o);
    await n.engine.setSyncMode(await o.store.getSyncMode());
    await n.leases.start();
    if (o.listen) n.listenPorts.push(await n.manager.listen(o.listen.host, o.listen.port));
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
