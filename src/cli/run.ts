// `termsync run`: the daemon as a service. Reads the flags (and flag files),
// opens the database, binds the listeners, starts the admin API, tells systemd
// it is ready, and handles SIGTERM (orderly stop) and SIGHUP (re-read the flag
// files: terminals added or removed without dropping the others' sessions).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { startAdmin } from '../admin/server.js';
import { isGsdkTerminal, isZkTerminal, loadAdminToken, loadCommKey, resolveCommKey, resolveZkKeys, termsyncKeyFiles, type RunConfig } from '../config.js';
import { parseRate } from '../rate-limit.js';
import { parseCidr } from '../terminal/identity.js';
import { Daemon, type DaemonOptions } from '../daemon.js';
import { zkDriver } from '../drivers/zk/driver.js';
import { gsdkDriver } from '../drivers/gsdk/driver.js';
import type { DialTarget } from '../terminal/manager.js';
import { createLogger } from '../log.js';
import { parseRunConfig } from './flagfile.js';
import { isPostgresUrl } from '../store/pg/config.js';
import { notifyReady, notifyStopping, notifyReloading, startWatchdog } from './notify.js';

/** Daemon options from a run configuration (reads the secret files it names). */
export function daemonOptions(cfg: RunConfig, log: Logger): DaemonOptions {
  const commKey = resolveCommKey(cfg);
  const tlsListen =
    cfg.tlsListen && cfg.tlsCert && cfg.tlsKey
      ? [
          {
            ...cfg.tlsListen,
            tls: {
              cert: readFileSync(cfg.tlsCert),
              key: readFileSync(cfg.tlsKey),
              ca: cfg.tlsCa ? readFileSync(cfg.tlsCa) : undefined,
              requireClientCert: cfg.tlsRequireClientCert,
            },
          },
        ]
      : [];
  if (cfg.tlsListen && !tlsListen.length) throw new Error('--tls-listen needs --tls-cert and --tls-key');
  return {
    db: cfg.db,
    log,
    commKey,
    terminalKeys: new Map(termsyncKeyFiles(cfg).map((k) => [k.deviceId, loadCommKey(k.path)])),
    terminals: dialTargets(cfg),
    drivers: [
      zkDriver({ pollSec: cfg.zkPollSec, requestTimeoutMs: cfg.requestTimeoutMs, log: log.child({ component: 'zk' }) }),
      // Suprema terminals through the device gateway, when one is configured
      ...(cfg.gsdkGateway && cfg.gsdkCaFile ? [gsdkDriver({ gateway: cfg.gsdkGateway, ca: readFileSync(cfg.gsdkCaFile), requestTimeoutMs: cfg.requestTimeoutMs, log: log.child({ component: 'gsdk' }) })] : []),
    ],
    listen: cfg.listen ? [cfg.listen] : [],
    tlsListen,
    syncMode: cfg.syncMode,
    heartbeatSec: cfg.heartbeatSec,
    requestTimeoutMs: cfg.requestTimeoutMs,
    concurrency: cfg.concurrency,
    autoApprove: cfg.autoApprove,
    newDeviceRate: cfg.autoApproveRate === 'off' ? null : parseRate(cfg.autoApproveRate),
    autoApproveFrom: cfg.autoApproveFrom.map((c) => parseCidr(c)!),
    identity: { prefixV4: cfg.identityPrefixV4, prefixV6: cfg.identityPrefixV6 },
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
      const token = cfg.adminTokenFile ? Buffer.from(loadAdminToken(cfg.adminTokenFile)) : null;
      const loopback = /^(127\.|::1$|localhost$)/.test(cfg.adminListen.host);
      if (!loopback && !token) throw new Error(`the admin API on ${cfg.adminListen.host} is beyond loopback: give --admin-token-file`);
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

/** The terminals the daemon dials: termsync ones by device ID, ZK ones with their comm key (reads the ZK key files). */
export function dialTargets(cfg: RunConfig): DialTarget[] {
  const zkKeys = resolveZkKeys(cfg);
  return cfg.terminals.map((t) =>
    isZkTerminal(t) ? { id: String(t.id), host: t.host, port: t.port, protocol: 'zk', key: zkKeys.get(String(t.id)) }
    // a Suprema terminal that dials the device gateway is reached at the gateway's address
    : isGsdkTerminal(t) ? { id: String(t.id), host: t.host || (cfg.gsdkGateway?.host ?? ''), port: t.port || (cfg.gsdkGateway?.port ?? 0), protocol: 'gsdk' }
    : { id: String(t.id), host: t.host, port: t.port },
  );
}

/** Applies a re-read configuration to a running daemon: terminals added/removed, sync mode. */
export function applyReload(daemon: Daemon, before: RunConfig, after: RunConfig, log: Logger): void {
  const key = (t: RunConfig['terminals'][number]) => `${t.protocol ?? 'termsync'}:${t.id}@${t.host}:${t.port}`;
  const old = new Set(before.terminals.map(key));
  const now = new Set(after.terminals.map(key));
  for (const t of before.terminals) if (!now.has(key(t)) && !after.terminals.some((x) => String(x.id) === String(t.id))) daemon.removeTerminal(String(t.id));
  // ZK terminals are handed over again with their key files re-read: a changed key redials, the same one changes nothing
  const targets = dialTargets(after);
  after.terminals.forEach((t, i) => {
    if (isZkTerminal(t) || !old.has(key(t))) daemon.addTerminal(targets[i]);
  });
  if (after.syncMode && after.syncMode !== daemon.engine.syncMode) daemon.setSyncMode(after.syncMode);
  log.info({ terminals: after.terminals.length, syncMode: daemon.engine.syncMode }, 'configuration reloaded');
}

/** Flags that SIGHUP cannot change in a running daemon. */
const RESTART_ONLY: (keyof RunConfig)[] = [
  'db', 'listen', 'tlsListen', 'tlsCert', 'tlsKey', 'tlsCa', 'tlsRequireClientCert', 'commKeyFile', 'terminalKeys',
  'insecureDevKey', 'adminListen', 'adminTokenFile', 'adminHosts', 'backupDir', 'adminMaxConnsPerAddress', 'adminHeaderTimeoutMs',
  'adminMaxStreamsPerAddress', 'heartbeatSec', 'requestTimeoutMs', 'concurrency', 'autoApprove',
  'autoApproveRate', 'autoApproveFrom', 'identityPrefixV4', 'identityPrefixV6', 'eventsKeep', 'eventsMaxAgeDays', 'eventsRate', 'eventsBurst',
  'logLevel', 'logPretty', 'logFrames', 'busyTimeoutMs', 'reconnectMinMs', 'reconnectMaxMs', 'maxConcurrentDials',
  'maxTerminalUsers', 'reconcileTimeoutSec', 'zkPollSec', 'gsdkGateway', 'gsdkCaFile',
];

/** The `run` action: returns the process exit code when the daemon stops. */
export async function runDaemon(argv: string[]): Promise<number> {
  let cfg = parseRunConfig(argv); // FlagError -> exit 2 by the caller
  const log = createLogger({ level: cfg.logLevel, pretty: cfg.logPretty });
  // several daemons on one PostgreSQL: the cluster node (src/cluster/run.ts)
  if (isPostgresUrl(cfg.db)) return (await import('../cluster/run.js')).runCluster(cfg, log);
  // Until the daemon runs, SIGHUP must not kill the process (its default action).
  let reload = () => log.warn('SIGHUP before start-up finished: ignored');
  const onHup = () => reload();
  process.on('SIGHUP', onHup);
  const running = await startRunning(cfg, log);
  log.info({ db: cfg.db, terminals: cfg.terminals.length, listen: running.daemon.listenPorts, admin: running.adminPort, syncMode: running.daemon.engine.syncMode }, 'termsync running');
  // The watchdog is fed only while the event loop turns and the database answers.
  const watchdog = startWatchdog({ log, healthy: () => running.daemon.store.isOpen && running.daemon.store.healthy() });
  const done = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      void notifyStopping(undefined, { log });
      watchdog.stop();
      process.off('SIGHUP', onHup);
      const hard = setTimeout(() => {
        // Something refuses to close: leave rather than hang until systemd kills us.
        log.error('stop deadline passed; exiting');
        log.flush?.();
        process.exit(1);
      }, 20_000);
      hard.unref();
      try {
        await running.stop();
        log.info('stopped');
        log.flush?.();
        clearTimeout(hard);
        resolve(0);
      } catch (e) {
        log.error({ err: (e as Error).message }, 'error while stopping');
        resolve(1);
      }
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
    reload = () => {
      void notifyReloading(undefined, { log });
      try {
        const next = parseRunConfig(argv);
        const ignored = RESTART_ONLY.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(cfg[k]));
        if (ignored.length) log.warn({ flags: ignored }, 'these changed flags take effect only after a restart');
        applyReload(running.daemon, cfg, next, log);
        cfg = next;
      } catch (e) {
        log.error({ err: (e as Error).message }, 'new configuration refused; the old one keeps running');
      }
      void notifyReady(undefined, { log });
    };
  });
  await notifyReady(`syncing ${cfg.terminals.length} configured terminals`, { log });
  return done;
}
