// What `termsync run` does the same way whether the daemon runs alone on
// SQLite (src/cli/run.ts, src/daemon.ts) or as one node of several on
// PostgreSQL (src/cluster/run.ts, src/cluster/node.ts): the dial targets, the
// TLS listeners and the dial-in admission rules read from the configuration,
// what a SIGHUP may change and how it is applied, and the service's life as
// a process (serve): readiness, the systemd watchdog, a status line, SIGHUP,
// and one stop path with a deadline on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { isGsdkTerminal, isZkTerminal, loadAdminToken, loadCommKey, resolveZkKeys, termsyncKeyFiles, type RunConfig, type SyncMode } from '../config.js';
import { parseRate } from '../rate-limit.js';
import type { AdmissionOptions } from '../terminal/admission.js';
import { parseCidr, type Cidr } from '../terminal/identity.js';
import type { DialTarget, ListenTls } from '../terminal/manager.js';
import { parseRunConfig } from './flagfile.js';
import { notifyReady, notifyReloading, notifyStopping, startWatchdog } from './notify.js';

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

/** The --tls-listen listener with its certificate files read; none without --tls-listen. */
export function tlsListeners(cfg: RunConfig): { host: string; port: number; tls: ListenTls }[] {
  if (!cfg.tlsListen) return [];
  if (!cfg.tlsCert || !cfg.tlsKey) throw new Error('--tls-listen needs --tls-cert and --tls-key');
  return [
    {
      ...cfg.tlsListen,
      tls: {
        cert: readFileSync(cfg.tlsCert),
        key: readFileSync(cfg.tlsKey),
        ca: cfg.tlsCa ? readFileSync(cfg.tlsCa) : undefined,
        requireClientCert: cfg.tlsRequireClientCert,
      },
    },
  ];
}

/** Comm keys of particular termsync terminals (--terminal-key), by device ID. */
export function terminalKeys(cfg: RunConfig): Map<number, Buffer> {
  return new Map(termsyncKeyFiles(cfg).map((k) => [k.deviceId, loadCommKey(k.path)]));
}

/** The dial-in admission rules (src/terminal/admission.ts) of a configuration. */
export function admissionOptions(cfg: RunConfig, keys: Map<number, Buffer>): AdmissionOptions & { autoApproveFrom: Cidr[] } {
  return {
    autoApprove: cfg.autoApprove,
    newDeviceRate: cfg.autoApproveRate === 'off' ? null : parseRate(cfg.autoApproveRate),
    autoApproveFrom: cfg.autoApproveFrom.map((c) => parseCidr(c)!),
    identity: { prefixV4: cfg.identityPrefixV4, prefixV6: cfg.identityPrefixV6 },
    ownKeys: keys,
  };
}

/** The admin API's bearer token (--admin-token-file); an admin API beyond loopback without one is refused. */
export function adminToken(cfg: RunConfig): Buffer | null {
  if (!cfg.adminListen) return null;
  const token = cfg.adminTokenFile ? Buffer.from(loadAdminToken(cfg.adminTokenFile)) : null;
  const loopback = /^(127\.|::1$|localhost$)/.test(cfg.adminListen.host);
  if (!loopback && !token) throw new Error(`the admin API on ${cfg.adminListen.host} is beyond loopback: give --admin-token-file`);
  return token;
}

// ------------------------------------------------------------------ SIGHUP

/** Flags that SIGHUP cannot change in a running daemon. */
export const RESTART_ONLY: (keyof RunConfig)[] = [
  'db', 'dbPasswordFile', 'dbTlsCa', 'dbTlsCert', 'dbTlsKey', 'leaseSec', 'daemonId',
  'listen', 'tlsListen', 'tlsCert', 'tlsKey', 'tlsCa', 'tlsRequireClientCert', 'commKeyFile', 'terminalKeys',
  'insecureDevKey', 'adminListen', 'adminTokenFile', 'adminHosts', 'backupDir', 'adminMaxConnsPerAddress', 'adminHeaderTimeoutMs',
  'adminMaxStreamsPerAddress', 'heartbeatSec', 'requestTimeoutMs', 'concurrency', 'autoApprove',
  'autoApproveRate', 'autoApproveFrom', 'identityPrefixV4', 'identityPrefixV6', 'eventsKeep', 'eventsMaxAgeDays', 'eventsRate', 'eventsBurst',
  'logLevel', 'logPretty', 'logFrames', 'busyTimeoutMs', 'reconnectMinMs', 'reconnectMaxMs', 'maxConcurrentDials',
  'maxTerminalUsers', 'reconcileTimeoutSec', 'zkPollSec', 'gsdkGateway', 'gsdkCaFile',
];

/** What a reload changes in a running daemon (the SQLite Daemon and the ClusterNode both are one). */
export interface Reloadable {
  addTerminal(t: DialTarget): unknown;
  removeTerminal(id: string): unknown;
  setSyncMode(mode: SyncMode): unknown;
  readonly engine: { readonly syncMode: SyncMode };
}

/**
 * Applies a re-read configuration: terminals removed and added, the sync mode.
 * Every change is started synchronously, in that order (the SQLite daemon's
 * are done when this returns); the promise settles when a cluster node's
 * database writes are done too.
 */
export function applyReload(target: Reloadable, before: RunConfig, after: RunConfig, log: Logger): Promise<void> {
  const key = (t: RunConfig['terminals'][number]) => `${t.protocol ?? 'termsync'}:${t.id}@${t.host}:${t.port}`;
  const old = new Set(before.terminals.map(key));
  const now = new Set(after.terminals.map(key));
  const pending: unknown[] = [];
  for (const t of before.terminals) if (!now.has(key(t)) && !after.terminals.some((x) => String(x.id) === String(t.id))) pending.push(target.removeTerminal(String(t.id)));
  // ZK terminals are handed over again with their key files re-read: a changed key redials, the same one changes nothing
  const targets = dialTargets(after);
  after.terminals.forEach((t, i) => {
    if (isZkTerminal(t) || !old.has(key(t))) pending.push(target.addTerminal(targets[i]!));
  });
  if (after.syncMode && after.syncMode !== target.engine.syncMode) pending.push(target.setSyncMode(after.syncMode));
  const done = () => log.info({ terminals: after.terminals.length, syncMode: target.engine.syncMode }, 'configuration reloaded');
  if (!pending.some((p) => p instanceof Promise)) {
    done();
    return Promise.resolve();
  }
  return Promise.all(pending).then(done);
}

// ----------------------------------------------------------------- serving

export interface Service {
  /** an orderly stop (the deadline is the caller's) */
  stop(): Promise<void>;
}

export interface ServeOptions<S extends Service> {
  argv: string[];
  cfg: RunConfig;
  log: Logger;
  start(cfg: RunConfig): Promise<S>;
  /** the 'running' log line: its message and fields */
  running: (s: S) => { msg: string; fields: Record<string, unknown> };
  /** a re-read configuration (the RESTART_ONLY flags are warned about before) */
  reload(s: S, before: RunConfig, after: RunConfig): Promise<void>;
  /** fed to the systemd watchdog: false stops feeding it */
  healthy?: (s: S) => boolean;
  /** a status line every `everyMs` (the journal, the tests) */
  status?: { everyMs: number; msg: string; fields: (s: S) => Record<string, unknown> };
  /** the systemd STATUS= text once ready */
  readyText: (cfg: RunConfig) => string;
  /** how long an orderly stop may take before the process exits anyway (default 20 s) */
  stopDeadlineMs?: number;
}

/**
 * Runs a daemon as a service until SIGTERM/SIGINT: returns the exit code.
 * SIGHUP re-reads the flags and flag files; a bad file leaves the old
 * configuration running.
 */
export async function serve<S extends Service>(o: ServeOptions<S>): Promise<number> {
  const { log, argv } = o;
  let cfg = o.cfg;
  // Until the daemon runs, SIGHUP must not kill the process (its default action).
  let reload = () => log.warn('SIGHUP before start-up finished: ignored');
  const onHup = () => reload();
  process.on('SIGHUP', onHup);
  let s: S;
  try {
    s = await o.start(cfg);
  } catch (e) {
    process.off('SIGHUP', onHup);
    throw e;
  }
  const r = o.running(s);
  log.info(r.fields, r.msg);
  // The watchdog is fed only while the event loop turns (and what `healthy` checks holds).
  const watchdog = startWatchdog({ log, healthy: o.healthy ? () => o.healthy!(s) : undefined });
  // Not unref'd: with a cluster node it keeps the process alive while the
  // database is unreachable and every lease, session and connection is gone.
  const status = o.status ? setInterval(() => log.info(o.status!.fields(s), o.status!.msg), o.status.everyMs) : null;
  const done = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      void notifyStopping(undefined, { log });
      watchdog.stop();
      if (status) clearInterval(status);
      process.off('SIGHUP', onHup);
      const hard = setTimeout(() => {
        // Something refuses to close: leave rather than hang until systemd kills us.
        log.error('stop deadline passed; exiting');
        log.flush?.();
        process.exit(1);
      }, o.stopDeadlineMs ?? 20_000);
      hard.unref();
      try {
        await s.stop();
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
    let reloading: Promise<void> = Promise.resolve();
    reload = () => {
      // reloads run one after another: a second SIGHUP compares with what the first applied
      reloading = reloading.then(async () => {
        void notifyReloading(undefined, { log });
        try {
          const next = parseRunConfig(argv);
          const ignored = RESTART_ONLY.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(cfg[k]));
          if (ignored.length) log.warn({ flags: ignored }, 'these changed flags take effect only after a restart');
          await o.reload(s, cfg, next);
          cfg = next;
        } catch (e) {
          log.error({ err: (e as Error).message }, 'new configuration refused; the old one keeps running');
        }
        void notifyReady(undefined, { log });
      });
    };
  });
  await notifyReady(o.readyText(cfg), { log });
  return done;
}
