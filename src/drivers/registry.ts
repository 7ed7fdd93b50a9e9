// The driver registry, one place for every daemon (the single daemon on
// SQLite, src/daemon.ts, and a cluster node on PostgreSQL,
// src/cluster/node.ts): protocol name -> TerminalDriver. The termsync driver
// is always there (its terminals are dialled and accepted by the
// SessionManager itself; the entry names the protocol and its default port).
// The others come from the run configuration (configuredDrivers): ZK (TCP
// 4370) always, G-SDK (Suprema terminals through the device gateway) when
// --gsdk-gateway and --gsdk-ca-file are set.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { RunConfig } from '../config.js';
import type { DialTarget } from '../terminal/manager.js';
import type { TerminalDriver } from '../sync/ports.js';
import { termsyncDriver } from './termsync/driver.js';
import { PROTOCOL as TERMSYNC } from './termsync/session.js';
import { zkDriver } from './zk/driver.js';
import { gsdkDriver } from './gsdk/driver.js';

export { TERMSYNC };

export interface RegistryOptions {
  log: Logger;
  heartbeatSec?: number;
  requestTimeoutMs?: number;
  handshakeDeadlineMs?: number;
  logFrames?: boolean;
}

/** The drivers beside termsync that a run configuration asks for. */
export function configuredDrivers(cfg: RunConfig, log: Logger): TerminalDriver[] {
  return [
    zkDriver({ pollSec: cfg.zkPollSec, requestTimeoutMs: cfg.requestTimeoutMs, log: log.child({ component: 'zk' }) }),
    ...(cfg.gsdkGateway && cfg.gsdkCaFile
      ? [gsdkDriver({ gateway: cfg.gsdkGateway, ca: readFileSync(cfg.gsdkCaFile), requestTimeoutMs: cfg.requestTimeoutMs, log: log.child({ component: 'gsdk' }) })]
      : []),
  ];
}

/** termsync plus `extra`, by protocol name; two drivers for one protocol is an error. */
export function driverRegistry(o: RegistryOptions, extra: readonly TerminalDriver[] = []): Map<string, TerminalDriver> {
  const m = new Map<string, TerminalDriver>();
  m.set(TERMSYNC, termsyncDriver({ heartbeatSec: o.heartbeatSec ?? 10, requestTimeoutMs: o.requestTimeoutMs ?? 10_000, handshakeDeadlineMs: o.handshakeDeadlineMs, log: o.log.child({ component: 'sessions' }), logFrames: o.logFrames }));
  for (const d of extra) {
    if (m.has(d.protocol)) throw new Error(`two drivers for protocol ${JSON.stringify(d.protocol)}`);
    m.set(d.protocol, d);
  }
  return m;
}

/** A dial target's protocol must have a driver here; the error names the known ones. */
export function checkProtocol(drivers: ReadonlyMap<string, TerminalDriver>, t: DialTarget): string {
  const protocol = t.protocol ?? TERMSYNC;
  if (!drivers.has(protocol)) throw new Error(`terminal ${t.id}: no driver for protocol ${JSON.stringify(protocol)} (known: ${[...drivers.keys()].join(', ')})`);
  return protocol;
}

/**
 * Tells a target's driver that this daemon no longer drives it, for a driver
 * that holds something for it outside this process (the G-SDK driver: the
 * device gateway's connection to the terminal). Failures are logged.
 */
export function forgetTarget(drivers: ReadonlyMap<string, TerminalDriver>, t: DialTarget, log: Logger): Promise<void> {
  const d = drivers.get(t.protocol ?? TERMSYNC) as { forget?: (target: { terminalId: string; host: string; port: number; key: Buffer }) => Promise<void> } | undefined;
  return (d?.forget?.({ terminalId: t.id, host: t.host, port: t.port, key: t.key ?? Buffer.alloc(0) }) ?? Promise.resolve()).catch((e: unknown) =>
    log.warn({ terminal: t.id, err: (e as Error).message }, 'letting a terminal go: its driver failed to release it'),
  );
}

/** A driver that holds a connection of its own (the G-SDK driver's gateway channel) lets it go. */
export function closeDrivers(drivers: ReadonlyMap<string, TerminalDriver>): void {
  for (const d of drivers.values()) (d as { close?: () => void }).close?.();
}

/** A dial target changed in a way that needs a new session (address, protocol or key). */
export function targetChanged(a: DialTarget, b: DialTarget): boolean {
  const sameKey = a.key === b.key || (a.key !== undefined && b.key !== undefined && a.key.equals(b.key));
  return a.host !== b.host || a.port !== b.port || (a.protocol ?? TERMSYNC) !== (b.protocol ?? TERMSYNC) || !sameKey;
}
