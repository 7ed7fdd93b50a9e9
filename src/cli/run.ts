// `termsync run`: the daemon as a service. Reads the flags (and flag files),
// opens the database, binds the listeners, starts the admin API, tells systemd
// it is ready, and handles SIGTERM (orderly stop) and SIGHUP (re-read the flag
// files: terminals added or removed without dropping the others' sessions).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { startAdmin } from '../admin/server.js';
import { resolveCommKey, type RunConfig } from '../config.js';
import { Daemon, type DaemonOptions } from '../daemon.js';
import { configuredDrivers } from '../drivers/registry.js';
import { createLogger } from '../log.js';
import { parseRunConfig } from './flagfile.js';
import { isPostgresUrl } from '../store/pg/config.js';
import { adminToken, admissionOptions, applyReload, dialTargets, serve, terminalKeys, tlsListeners } from './startup.js';

export { applyReload, dialTargets } from './startup.js';

/** Daemon options from a run configuration (reads the secret files it names). */
export function daemonOptions(cfg: RunConfig, log: Logger): DaemonOptions {
  const keys = terminalKeys(cfg);
  const { ownKeys: _ownKeys, ...admission } = admissionOptions(cfg, keys);
  return {
    db: cfg.db,
    log,
    commKey: resolveCommKey(cfg),
    terminalKeys: keys,
    terminals: dialTargets(cfg),
    drivers: configuredDrivers(cfg, log),
    listen: cfg.listen ? [cfg.listen] : [],
    tlsListen: tlsListeners(cfg),
    syncMode: cfg.syncMode,
    heartbeatSec: cfg.heartbeatSec,
    requestTimeoutMs: cfg.requestTimeoutMs,
    concurrency: cfg.concurrency,
    ...admission,
    events: { keep: cfg.eventsKeep, maxAgeDays: cfg.eventsMaxAgeDays, ratePerSec: cfg.eventsRate, burst: cfg.eventsBurst },
    busyTimeoutMs: cfg.busyTimeoutMs,
    reconnectMinMs: cfg.reconnectMinMs,
    reconnectMaxMs: cfg.reconnectMaxMs,
    maxConcurrentDials: cfg.maxConcurrentDials,
    logFrames: cfg.logFrames,
    engine: { terminalEventRate: cfg.terminalEventRate, maxTerminalUsers: cfg.maxTerminalUsers, reconcileTimeoutMs: cfg.reconcileTimeoutSec * 1000 },
  };
}

export interface Running {
  daemon: Daemon;
  adminPort: number | null;
  stop(): Promise<void>;
}

/** Starts the daemon and its admin API from a configuration. */
export async function startRunning(cfg: RunConfig, log: Logger): Promise<Running> {
  mkdirSync(dirname(cfg.db), { recursive: true, mode: 0o700 });
  const daemon = await Daemon.start(daemonOptions(cfg, log));
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  try {
    if (cfg.adminListen) {
      const token = adminToken(cfg);
      admin = await startAdmin({
        daemon,
        host: cfg.adminListen.host,
        port: cfg.adminListen.port,
        token,
        log: log.child({ component: 'admin' }),
        adminHosts: cfg.adminHosts,
        backupDir: cfg.backupDir,
        maxConnsPerAddress: cfg.adminMaxConnsPerAddress,
        headerTimeoutMs: cfg.adminHeaderTimeoutMs,
        maxStreamsPerAddress: cfg.adminMaxStreamsPerAddress,
        connectRatePerAddress: cfg.adminConnectRate,
      });
    }
  } catch (e) {
    await daemon.stop(0);
    throw e;
  }
  return {
    daemon,
    adminPort: admin?.port ?? null,
    async stop() {
      await admin?.close();
      await daemon.stop();
    },
  };
}

/** The `run` action: returns the process exit code when the daemon stops. */
export async function runDaemon(argv: string[]): Promise<number> {
  const cfg = parseRunConfig(argv); // FlagError -> exit 2 by the caller
  const log = createLogger({ level: cfg.logLevel, pretty: cfg.logPretty });
  // several daemons on one PostgreSQL: the cluster node (src/cluster/run.ts)
  if (isPostgresUrl(cfg.db)) return (await import('../cluster/run.js')).runCluster(argv, cfg, log);
  return serve<Running>({
    argv,
    cfg,
    log,
    start: (c) => startRunning(c, log),
    running: (r) => ({ msg: 'termsync running', fields: { db: cfg.db, terminals: cfg.terminals.length, listen: r.daemon.listenPorts, admin: r.adminPort, syncMode: r.daemon.engine.syncMode } }),
    reload: (r, before, after) => applyReload(r.daemon, before, after, log),
    // fed only while the database answers too
    healthy: (r) => r.daemon.store.isOpen && r.daemon.store.healthy(),
    readyText: (c) => `syncing ${c.terminals.length} configured terminals`,
  });
}
