// systemd readiness and watchdog notifications (sd_notify).
//
// Why the systemd-notify helper: sd_notify is a datagram on the AF_UNIX socket
// in $NOTIFY_SOCKET, and Node core has no Unix datagram sockets. The npm
// options are native addons (sd-notify links libsystemd and needs its headers;
// unix-dgram needs a compiler at install time) for something that happens once
// at start-up and every WatchdogSec/2. So we run `systemd-notify`, which ships
// with systemd wherever NOTIFY_SOCKET exists. The unit sets NotifyAccess=all
// because the message comes from a child process; systemd-notify (without
// --no-block) waits until the manager has processed the message, so the
// notification is attributed to our unit even though the helper exits at once.
// The cost is one short-lived process per watchdog ping.
//
// Everything here is a no-op (resolving false) when NOTIFY_SOCKET is unset,
// i.e. when not started by systemd with Type=notify.
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';

export interface NotifyOptions {
  /** environment to read NOTIFY_SOCKET from and pass on (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** the helper to run (default "systemd-notify" from PATH) */
  command?: string;
  /** where failures are reported (warn); they never throw */
  log?: Logger;
}

const HELPER_TIMEOUT_MS = 10_000;

/**
 * Sends sd_notify assignments (e.g. ["READY=1", "STATUS=..."]). Resolves true
 * when the helper reported success, false when there is no NOTIFY_SOCKET or the
 * helper failed (logged; never throws: a notification must not crash the daemon).
 */
export function sdNotify(assignments: string[], opts: NotifyOptions = {}): Promise<boolean> {
  const env = opts.env ?? process.env;
  if (!env.NOTIFY_SOCKET) return Promise.resolve(false);
  const command = opts.command ?? 'systemd-notify';
  return new Promise((resolvePromise) => {
    execFile(command, assignments, { env, timeout: HELPER_TIMEOUT_MS, windowsHide: true }, (err, _stdout, stderr) => {
      if (err) {
        opts.log?.warn(
          { helper: command, state: assignments.map((a) => a.split('=')[0]), reason: err.message, stderr: String(stderr).trim() || undefined },
          'systemd notification failed',
        );
        resolvePromise(false);
      } else resolvePromise(true);
    });
  });
}

function status(text: string | undefined): string[] {
  // one line: STATUS ends at a newline
  return text === undefined ? [] : [`STATUS=${text.replace(/[\r\n]+/g, ' ')}`];
}

/** Start-up finished: database open, listeners bound. */
export function notifyReady(statusText?: string, opts?: NotifyOptions): Promise<boolean> {
  return sdNotify(['READY=1', ...status(statusText)], opts);
}

/** "Still alive" for WatchdogSec; send every watchdogIntervalMs(). */
export function notifyWatchdog(opts?: NotifyOptions): Promise<boolean> {
  return sdNotify(['WATCHDOG=1'], opts);
}

/** Orderly shutdown has begun (SIGTERM received). */
export function notifyStopping(statusText?: string, opts?: NotifyOptions): Promise<boolean> {
  return sdNotify(['STOPPING=1', ...status(statusText)], opts);
}

/** Reloading configuration (SIGHUP); follow with notifyReady() when done. */
export function notifyReloading(statusText?: string, opts?: NotifyOptions): Promise<boolean> {
  return sdNotify(['RELOADING=1', ...status(statusText)], opts);
}

/** A free-form status line for `systemctl status`. */
export function notifyStatus(statusText: string, opts?: NotifyOptions): Promise<boolean> {
  return sdNotify(status(statusText), opts);
}

/**
 * How often to ping the watchdog: half of WATCHDOG_USEC, in ms; undefined when
 * the watchdog is off or meant for another process (WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (!usecText || !/^\d+$/.test(usecText)) return undefined;
  if (env.WATCHDOG_PID && env.WATCHDOG_PID !== String(pid)) return undefined;
  const usec = Number(usecText);
  if (usec <= 0) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

export interface WatchdogOptions extends NotifyOptions {
  /**
   * Checked before each ping; false (or a throw) skips the ping, so a daemon
   * whose database stopped answering is restarted by systemd rather than kept
   * alive by a timer that still fires.
   */
  healthy?: () => boolean;
}

/**
 * Pings the watchdog every watchdogIntervalMs() until stop() is called. Does
 * nothing when the watchdog is off. The timer is unref'd (it never keeps the
 * process alive) and a ping is skipped while the previous one is still running.
 */
export function startWatchdog(opts: WatchdogOptions = {}): { intervalMs: number | undefined; stop(): void } {
  const env = opts.env ?? process.env;
  const intervalMs = watchdogIntervalMs(env);
  if (intervalMs === undefined || !env.NOTIFY_SOCKET) return { intervalMs: undefined, stop() {} };
  let inFlight = false;
  let wasHealthy = true;
  const timer = setInterval(() => {
    if (inFlight) return;
    let ok: boolean;
    try {
      ok = opts.healthy ? opts.healthy() : true;
    } catch {
      ok = false;
    }
    if (!ok) {
      if (wasHealthy) opts.log?.error('health check failed: not feeding the systemd watchdog');
      wasHealthy = false;
      return;
    }
    if (!wasHealthy) opts.log?.info('health check passes again: feeding the systemd watchdog');
    wasHealthy = true;
    inFlight = true;
    void notifyWatchdog(opts).finally(() => {
      inFlight = false;
    });
  }, intervalMs);
  timer.unref();
  return { intervalMs, stop: () => clearInterval(timer) };
}
