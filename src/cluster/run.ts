// `termsync run --db postgres://...`: one daemon of several sharing one
// PostgreSQL database (src/cluster/node.ts). The same flag file on every
// daemon: every daemon knows every terminal, the leases decide which one
// drives which. The service's life (signals, the stop deadline, the status
// line, SIGHUP) is the single daemon's (src/cli/startup.ts serve); SIGTERM/
// SIGINT give the leases back (the others take the terminals at their next
// heartbeat, not after the TTL); SIGHUP adds and removes terminals (the set of
// leasable terminals) and writes a changed sync mode to the database.
import type { Logger } from 'pino';
import { resolveCommKey, type RunConfig } from '../config.js';
import { startClusterAdmin, type ClusterAdmin } from './admin.js';
import type { PgSiteStore } from '../store/pg/backend.js';
import { configuredDrivers } from '../drivers/registry.js';
import { adminToken, admissionOptions, applyReload, dialTargets, serve, terminalKeys, tlsListeners } from '../cli/startup.js';
import { ClusterNode } from './node.js';
import { defaultDaemonId, openClusterStore } from './site.js';

export interface ClusterRunning {
  node: ClusterNode;
  store: PgSiteStore;
  daemonId: string;
  adminPort: number | null;
  stop(): Promise<void>;
}

/** The cluster node of a run configuration (opens the store; the caller starts the admin API). */
export async function startClusterNode(cfg: RunConfig, log: Logger, daemonId = cfg.daemonId ?? defaultDaemonId()): Promise<ClusterNode> {
  const store = await openClusterStore(cfg, daemonId, log.child({ component: 'store' }));
  try {
    if (cfg.syncMode) await store.setSyncMode(cfg.syncMode);
    const keys = terminalKeys(cfg);
    const { ownKeys: _ownKeys, ...admission } = admissionOptions(cfg, keys);
    return await ClusterNode.start({
      store,
      targets: dialTargets(cfg),
      commKey: resolveCommKey(cfg),
      terminalKeys: keys,
      drivers: configuredDrivers(cfg, log),
      leaseSec: cfg.leaseSec,
      log,
      heartbeatSec: cfg.heartbeatSec,
      requestTimeoutMs: cfg.requestTimeoutMs,
      reconnectMinMs: cfg.reconnectMinMs,
      reconnectMaxMs: cfg.reconnectMaxMs,
      maxConcurrentDials: cfg.maxConcurrentDials,
      logFrames: cfg.logFrames,
      listen: cfg.listen,
      tlsListen: tlsListeners(cfg),
      admission,
      engine: { concurrency: cfg.concurrency, terminalEventRate: cfg.terminalEventRate, maxTerminalUsers: cfg.maxTerminalUsers, reconcileTimeoutMs: cfg.reconcileTimeoutSec * 1000 },
    });
  } catch (e) {
    await store.close().catch(() => {});
    throw e;
  }
}

// ------------------------------------------------------------- admin start
// The admin API of a daemon on PostgreSQL: its one start call (the rest of
// this file does not depend on what it serves).
async function startAdminFor(cfg: RunConfig, node: ClusterNode, log: Logger): Promise<ClusterAdmin | null> {
  if (!cfg.adminListen) return null;
  const token = adminToken(cfg);
  // the same listener limits as one daemon's (src/cli/run.ts); backups are PostgreSQL's own
  return startClusterAdmin({
    node,
    host: cfg.adminListen.host,
    port: cfg.adminListen.port,
    token,
    log: log.child({ component: 'admin' }),
    adminHosts: cfg.adminHosts,
    maxConnsPerAddress: cfg.adminMaxConnsPerAddress,
    headerTimeoutMs: cfg.adminHeaderTimeoutMs,
    maxStreamsPerAddress: cfg.adminMaxStreamsPerAddress,
    connectRatePerAddress: cfg.adminConnectRate,
  });
}
// --------------------------------------------------------- end admin start

export async function startCluster(cfg: RunConfig, log: Logger): Promise<ClusterRunning> {
  const daemonId = cfg.daemonId ?? defaultDaemonId();
  const node = await startClusterNode(cfg, log, daemonId);
  let admin: ClusterAdmin | null;
  try {
    admin = await startAdminFor(cfg, node, log);
  } catch (e) {
    await node.stop().catch(() => {});
    await node.store.close().catch(() => {});
    throw e;
  }
  return {
    node,
    store: node.store,
    daemonId,
    adminPort: admin?.port ?? null,
    async stop() {
      await admin?.close();
      await node.stop();
      await node.store.close();
    },
  };
}

/** The `run` action on PostgreSQL: returns the exit code when the daemon stops. */
export function runCluster(argv: string[], cfg: RunConfig, log: Logger): Promise<number> {
  return serve<ClusterRunning>({
    argv,
    cfg,
    log,
    start: (c) => startCluster(c, log),
    running: (r) => ({
      msg: 'termsync running (cluster node)',
      fields: { db: new URL(cfg.db).host + new URL(cfg.db).pathname, daemon: r.daemonId, terminals: cfg.terminals.length, leaseSec: cfg.leaseSec, listen: r.node.listenPorts, admin: r.adminPort, syncMode: r.node.engine.syncMode },
    }),
    reload: (r, before, after) => applyReload(r.node, before, after, log),
    // a database outage is ridden out (leases dropped, taken again): not a reason for systemd to restart the daemon
    healthy: undefined,
    // a status line every lease heartbeat or so, for the journal (and the tests)
    status: {
      everyMs: Math.max(1000, Math.round((cfg.leaseSec * 1000) / 3)),
      msg: 'cluster status',
      fields: (r) => {
        const s = r.node.engine.stats;
        return { daemon: r.daemonId, held: r.node.leases.heldTerminals(), leaseFailures: r.node.leases.failures, leaseLost: s.leaseLost ?? 0, dbWriteFailures: s.dbWriteFailures, pulls: s.pulls, pushes: s.pushes, txRetries: r.store.db.retries };
      },
    },
    readyText: (c) => `cluster node: ${c.terminals.length} configured terminals, leased`,
  });
}
