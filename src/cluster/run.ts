// `termsync run --db postgres://...`: one daemon of several sharing one
// PostgreSQL database (src/cluster/node.ts). The same flag file on every
// daemon: every daemon knows every terminal, the leases decide which one
// drives which. SIGTERM/SIGINT: an orderly stop that gives the leases back
// (the others take the terminals at their next heartbeat, not after the TTL).
import type { Logger } from 'pino';
import { isGsdkTerminal, isZkTerminal, loadAdminToken, resolveCommKey, type RunConfig } from '../config.js';
import { startClusterAdmin, type ClusterAdmin } from './admin.js';
import { PgSiteStore } from '../store/pg/backend.js';
import { dialTargets } from '../cli/run.js';
import { ClusterNode } from './node.js';
import { defaultDaemonId } from './site.js';

export interface ClusterRunning {
  node: ClusterNode;
  store: PgSiteStore;
  daemonId: string;
  adminPort: number | null;
  stop(): Promise<void>;
}

export async function startCluster(cfg: RunConfig, log: Logger): Promise<ClusterRunning> {
  const other = cfg.terminals.filter((t) => isZkTerminal(t) || isGsdkTerminal(t));
  if (other.length) throw new Error('with a postgres:// --db only termsync terminals are driven so far (not zk: or gsdk:)');
  if (cfg.tlsListen) throw new Error('with a postgres:// --db only --listen (plain TCP) is supported so far, not --tls-listen');
  const daemonId = cfg.daemonId ?? defaultDaemonId();
  const store = await PgSiteStore.open({
    url: cfg.db,
    passwordFile: cfg.dbPasswordFile,
    tlsCa: cfg.dbTlsCa,
    tlsCert: cfg.dbTlsCert,
    tlsKey: cfg.dbTlsKey,
    applicationName: `termsync ${daemonId}`.slice(0, 63),
    writerId: daemonId,
    logger: log.child({ component: 'store' }),
  });
  try {
    if (cfg.syncMode) await store.setSyncMode(cfg.syncMode);
    const node = await ClusterNode.start({
      store,
      targets: dialTargets(cfg),
      commKey: resolveCommKey(cfg),
      leaseSec: cfg.leaseSec,
      log,
      heartbeatSec: cfg.heartbeatSec,
      requestTimeoutMs: cfg.requestTimeoutMs,
      reconnectMinMs: cfg.reconnectMinMs,
      reconnectMaxMs: cfg.reconnectMaxMs,
      listen: cfg.listen,
      autoApprove: cfg.autoApprove,
      engine: { concurrency: cfg.concurrency, terminalEventRate: cfg.terminalEventRate, maxTerminalUsers: cfg.maxTerminalUsers, reconcileTimeoutMs: cfg.reconcileTimeoutSec * 1000 },
    });
    let admin: ClusterAdmin | null = null;
    try {
      if (cfg.adminListen) {
        const token = cfg.adminTokenFile ? Buffer.from(loadAdminToken(cfg.adminTokenFile)) : null;
        const loopback = /^(127\.|::1$|localhost$)/.test(cfg.adminListen.host);
        if (!loopback && !token) throw new Error(`the admin API on ${cfg.adminListen.host} is beyond loopback: give --admin-token-file`);
        admin = await startClusterAdmin({ node, host: cfg.adminListen.host, port: cfg.adminListen.port, token, log: log.child({ component: 'admin' }) });
      }
    } catch (e) {
      await node.stop();
      throw e;
    }
    return {
      node,
      store,
      daemonId,
      adminPort: admin?.port ?? null,
      async stop() {
        await admin?.close();
        await node.stop();
        await store.close();
      },
    };
  } catch (e) {
    await store.close().catch(() => {});
    throw e;
  }
}

/** The `run` action on PostgreSQL: returns the exit code when the daemon stops. */
export async function runCluster(cfg: RunConfig, log: Logger): Promise<number> {
  const running = await startCluster(cfg, log);
  log.info({ db: new URL(cfg.db).host + new URL(cfg.db).pathname, daemon: running.daemonId, terminals: cfg.terminals.length, leaseSec: cfg.leaseSec, listen: running.node.listenPorts, admin: running.adminPort }, 'termsync running (cluster node)');
  // a status line every lease heartbeat or so, for the journal (and the tests).
  // Not unref'd: it keeps the process alive while the database is unreachable
  // and every lease, session and connection is gone (the lease timers are unref'd).
  const status = setInterval(() => {
    const s = running.node.engine.stats;
    log.info({ daemon: running.daemonId, held: running.node.leases.heldTerminals(), leaseFailures: running.node.leases.failures, leaseLost: s.leaseLost ?? 0, dbWriteFailures: s.dbWriteFailures, pulls: s.pulls, pushes: s.pushes }, 'cluster status');
  }, Math.max(1000, Math.round((cfg.leaseSec * 1000) / 3)));
  process.on('SIGHUP', () => log.warn('SIGHUP: reloading the flag files is not supported with a postgres:// --db yet; restart the daemon'));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(status);
      log.info({ signal }, 'stopping');
      const hard = setTimeout(() => {
        log.error('stop deadline passed; exiting');
        process.exit(1);
      }, 20_000);
      hard.unref();
      try {
        await running.stop();
        log.info('stopped');
        clearTimeout(hard);
        resolve(0);
      } catch (e) {
        log.error({ err: (e as Error).message }, 'error while stopping');
        resolve(1);
      }
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
