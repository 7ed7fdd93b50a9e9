// All terminal sessions of the daemon: dialling configured terminals (with
// reconnect, exponential backoff and full jitter) and accepting terminals that
// dial in (with per-address and global connection caps, an absolute handshake
// deadline and a per-address limit on failed authentications). It hands each
// authenticated session to the daemon as a DeviceSession (src/sync/ports.ts)
// and reports its end.
//
// Terminals of the termsync protocol are dialled and accepted here (TLS and
// certificate pins, the device ID's comm key, the identity a dial-in presents);
// a terminal of another protocol is dialled through its TerminalDriver (the
// daemon's driver registry), with the same reconnect policy.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Hello } from '../codec/index.js';
import { HandshakeError, TerminalConnection } from '../drivers/termsync/connection.js';
import { sessionOf } from '../drivers/termsync/driver.js';
import { PROTOCOL as TERMSYNC } from '../drivers/termsync/session.js';
import type { DeviceSession, TerminalDriver } from '../sync/ports.js';
import { plainAddress, type PeerCredential } from './identity.js';

/**
 * Thrown by resolveDialIn to refuse an authenticated session for a reason of
 * policy (identity, rate of new device IDs): closed with the reason (the
 * thrower logs and records it).
 */
export class SessionRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionRefused';
  }
}

/** What resolveDialIn decided: the terminal ID, and a note handed to the 'online' listener. */
export interface DialInAdmission {
  id: string;
  note?: unknown;
}

export interface DialTarget {
  id: string;
  host: string;
  port: number;
  /** TLS: SHA-256 fingerprint (hex, colons allowed) the terminal's certificate must have */
  pin?: string;
  /** the terminal's protocol: a driver's name (default 'termsync') */
  protocol?: string;
  /** the key handed to a driver other than termsync's (termsync terminals use keyFor by device ID) */
  key?: Buffer;
}

export interface DialTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface ListenTls {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requireClientCert?: boolean;
}

export interface ManagerOptions {
  keyFor: (deviceId: number) => Buffer | null;
  /**
   * maps an authenticated dial-in terminal to its terminal ID (the daemon
   * decides about pending ones); throws SessionRefused to refuse it
   */
  resolveDialIn: (hello: Hello, peer: PeerCredential) => string | DialInAdmission;
  /**
   * A dial-in session claims a terminal ID that has a live session. Default
   * (and 'refuse'): the new session is closed and the current one keeps
   * running; 'replace' closes the current one instead (the daemon allows it
   * only for a session it holds pending).
   */
  onConflict?: (terminalId: string, peer: PeerCredential, current: DeviceSession) => 'refuse' | 'replace';
  /** drivers of protocols other than termsync, by protocol name (dial only) */
  drivers?: ReadonlyMap<string, TerminalDriver>;
  log: Logger;
  heartbeatSec: number;
  requestTimeoutMs: number;
  logFrames?: boolean;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  handshakeDeadlineMs?: number;
  maxConnsPerAddress?: number;
  maxConns?: number;
  /** failed authentications per address before it is refused for authBlockMs */
  authFailLimit?: number;
  authBlockMs?: number;
  dialTls?: DialTls;
  random?: () => number;
  /**
   * Dials (TCP connect plus handshake) in progress at once; the others wait
   * their turn. Ten thousand terminals dialled at the same instant would each
   * wait for a share of the CPU until their handshakes time out on either
   * side and all of them dial again. Default 256.
   */
  maxConcurrentDials?: number;
}

export const DEFAULT_MAX_CONCURRENT_DIALS = 256;

export interface ManagerEvents {
  online: [terminalId: string, session: DeviceSession, direction: 'dial' | 'listen', note?: unknown];
  /** a dial-in session for a terminal ID with a live session was refused */
  conflict: [terminalId: string, peer: PeerCredential, currentRemote: string];
  offline: [terminalId: string, reason: string];
  reconnecting: [terminalId: string, delayMs: number, attempt: number];
}

/** SHA-256 (hex) of the client certificate a TLS listener verified; null for plain TCP or no verified certificate. */
function peerCertSha256(socket: net.Socket): string | null {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return null;
  const cert = socket.getPeerCertificate();
  return cert?.raw ? createHash('sha256').update(cert.raw).digest('hex') : null;
}

/** Full jitter (AWS architecture blog): a uniform delay in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

interface Dialer {
  target: DialTarget;
  stopped: boolean;
  timer: NodeJS.Timeout | null;
  socket: net.Socket | null;
  /** aborts a driver's dial in progress */
  abort: AbortController | null;
  attempt: number;
}

export class SessionManager extends EventEmitter<ManagerEvents> {
  private readonly dialers = new Map<string, Dialer>();
  private readonly links = new Map<string, DeviceSession>();
  private readonly servers: net.Server[] = [];
  private readonly perAddress = new Map<string, number>();
  private readonly authFailures = new Map<string, { count: number; since: number; blockedUntil: number }>();
  private connCount = 0;
  private closing = false;
  /** dials in progress (connect + handshake), and dialers waiting for a slot, in order */
  private dialing = 0;
  private readonly dialQueue = new Set<Dialer>();
  private readonly log: Logger;

  constructor(private readonly o: ManagerOptions) {
    super();
    this.log = o.log;
  }

  get onlineCount(): number {
    return this.links.size;
  }

  link(terminalId: string): DeviceSession | undefined {
    return this.links.get(terminalId);
  }

  targets(): DialTarget[] {
    return [...this.dialers.values()].map((d) => d.target);
  }

  /** The dial target of one terminal (a map lookup: adding N terminals must not list all N each time). */
  target(id: string): DialTarget | undefined {
    return this.dialers.get(id)?.target;
  }

  // ------------------------------------------------------------ dialling

  addTarget(target: DialTarget): void {
    if (this.dialers.has(target.id)) return;
    const d: Dialer = { target, stopped: false, timer: null, socket: null, abort: null, attempt: 0 };
    this.dialers.set(target.id, d);
    this.dial(d);
  }

  removeTarget(id: string): void {
    const d = this.dialers.get(id);
    if (!d) return;
    d.stopped = true;
    if (d.timer) clearTimeout(d.timer);
    this.dialQueue.delete(d);
    d.socket?.destroy();
    d.abort?.abort();
    this.dialers.delete(id);
    this.links.get(id)?.close('terminal removed from configuration');
  }

  /** Dials now if a slot is free, else when one is (in the order asked). */
  private dial(d: Dialer): void {
    if (d.stopped || this.closing) return;
    if (this.dialing >= (this.o.maxConcurrentDials ?? DEFAULT_MAX_CONCURRENT_DIALS)) {
      this.dialQueue.add(d);
      return;
    }
    this.dialing++;
    let released = false;
    this.dialNow(d, () => {
      if (released) return;
      released = true;
      this.dialing--;
      this.nextDial();
    });
  }

  private nextDial(): void {
    while (this.dialQueue.size > 0 && this.dialing < (this.o.maxConcurrentDials ?? DEFAULT_MAX_CONCURRENT_DIALS)) {
      const d: Dialer = this.dialQueue.values().next().value!;
      this.dialQueue.delete(d);
      this.dial(d);
    }
  }

  /** dials in progress and dialers waiting for a slot */
  get dialState(): { dialing: number; waiting: number } {
    return { dialing: this.dialing, waiting: this.dialQueue.size };
  }

  /** One dial; `release` is called once, when it succeeded or failed. */
  private dialNow(d: Dialer, release: () => void): void {
    if (d.stopped || this.closing) return release();
    const { host, port, id } = d.target;
    const log = this.log.child({ terminal: id });
    const protocol = d.target.protocol ?? TERMSYNC;
    if (protocol !== TERMSYNC) return this.dialDriver(d, protocol, log, release);
    const useTls = this.o.dialTls !== undefined;
    const socket = useTls
      ? tls.connect({
          host,
          port,
          ca: this.o.dialTls!.ca,
          cert: this.o.dialTls!.cert,
          key: this.o.dialTls!.key,
          rejectUnauthorized: true,
          // A pinned terminal certificate is checked in addition to the CA chain.
          checkServerIdentity: (_h, cert) => {
            if (!d.target.pin) return undefined;
            const fp = createHash('sha256').update(cert.raw).digest('hex');
            return fp === d.target.pin.replace(/:/g, '').toLowerCase() ? undefined : new Error(`certificate pin mismatch for terminal ${id}`);
          },
        })
      : net.connect({ host, port });
    d.socket = socket;
    const connectTimer = setTimeout(() => socket.destroy(new Error('connect timed out')), this.o.connectTimeoutMs ?? 5000);
    let failed = false;
    const retry = (why: string) => {
      if (failed) return;
      failed = true;
      release();
      clearTimeout(connectTimer);
      socket.destroy();
      d.socket = null;
      this.scheduleRedial(d, why);
    };
    socket.once('error', (e) => retry(e.message));
    socket.once(useTls ? 'secureConnect' : 'connect', async () => {
      clearTimeout(connectTimer);
      try {
        const conn = await TerminalConnection.handshake({
          socket,
          keyFor: this.o.keyFor,
          heartbeatSec: this.o.heartbeatSec,
          requestTimeoutMs: this.o.requestTimeoutMs,
          handshakeDeadlineMs: this.o.handshakeDeadlineMs,
          log,
          logFrames: this.o.logFrames,
        });
        release();
        if (d.stopped || this.closing) {
          conn.close('shutting down');
          return;
        }
        d.attempt = 0;
        failed = true; // from here on, the session's close drives the redial
        try {
          this.adopt(id, sessionOf(conn), 'dial', (reason) => {
            d.socket = null;
            this.scheduleRedial(d, reason);
          });
        } catch (e) {
          // the session's owner could not take it (e.g. the database failed): end it, which redials
          log.error({ err: (e as Error).message }, 'session could not be started; closing it');
          conn.close(`session could not be started: ${(e as Error).message}`);
        }
      } catch (e) {
        log.warn({ reason: (e as HandshakeError).reason, err: (e as Error).message }, 'handshake with terminal failed');
        retry((e as Error).message);
      }
    });
  }

  /** Dials a terminal of another protocol through its driver; the same redial policy. */
  private dialDriver(d: Dialer, protocol: string, log: Logger, release: () => void): void {
    const { host, port, id } = d.target;
    const driver = this.o.drivers?.get(protocol);
    if (!driver) {
      log.error({ protocol }, 'no driver for this protocol; the terminal is not dialled');
      return release();
    }
    const abort = new AbortController();
    d.abort = abort;
    driver.dial({ terminalId: id, host, port, key: d.target.key ?? Buffer.alloc(0), signal: abort.signal }).then(
      (session) => {
        release();
        if (d.abort === abort) d.abort = null;
        if (d.stopped || this.closing) {
          void session.close('shutting down');
          return;
        }
        d.attempt = 0;
        try {
          this.adopt(id, session, 'dial', (reason) => this.scheduleRedial(d, reason));
        } catch (e) {
          log.error({ err: (e as Error).message }, 'session could not be started; closing it');
          void session.close(`session could not be started: ${(e as Error).message}`);
        }
      },
      (e: Error) => {
        release();
        if (d.abort === abort) d.abort = null;
        log.warn({ protocol, err: e.message }, 'connecting to terminal failed');
        this.scheduleRedial(d, e.message);
      },
    );
  }

  private scheduleRedial(d: Dialer, why: string): void {
    if (d.stopped || this.closing) return;
    const delay = backoffDelay(d.attempt, this.o.reconnectMinMs ?? 500, this.o.reconnectMaxMs ?? 30_000, this.o.random);
    d.attempt++;
    this.log.debug({ terminal: d.target.id, delayMs: delay, attempt: d.attempt, why }, 'reconnect scheduled');
    this.emit('reconnecting', d.target.id, delay, d.attempt);
    d.timer = setTimeout(() => {
      d.timer = null;
      this.dial(d);
    }, delay);
  }

  /** Registers an authenticated session; an older session of the same terminal is closed. */
  private adopt(id: string, session: DeviceSession, direction: 'dial' | 'listen', onGone?: (reason: string) => void, note?: unknown): void {
    const old = this.links.get(id);
    this.links.set(id, session);
    if (old) void old.close('replaced by a new session of the same terminal');
    session.onClose((reason) => {
      if (this.links.get(id) === session) {
        this.links.delete(id);
        this.emit('offline', id, reason);
      }
      onGone?.(reason);
    });
    this.emit('online', id, session, direction, note);
  }

  // ------------------------------------------------------------ listening

  /** Accepts terminals that dial in, on TCP or (with `tlsOpts`) TLS. Resolves with the bound port. */
  listen(host: string, port: number, tlsOpts?: ListenTls): Promise<number> {
    const onSocket = (socket: net.Socket) => this.accept(socket);
    const server = tlsOpts
      ? tls.createServer({ cert: tlsOpts.cert, key: tlsOpts.key, ca: tlsOpts.ca, requestCert: tlsOpts.requireClientCert ?? false, rejectUnauthorized: tlsOpts.requireClientCert ?? false }, onSocket)
      : net.createServer(onSocket);
    if (tlsOpts)
      // the verification failure (e.g. CERT_HAS_EXPIRED) is on the socket; the error itself often just says "socket hang up"
      server.on('tlsClientError', (e, s) =>
        this.log.warn({ err: e.message, reason: s.authorizationError ?? undefined, remote: `${s.remoteAddress}:${s.remotePort}` }, 'TLS handshake refused'),
      );
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.error({ err: e.message }, 'listener error'));
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  private accept(socket: net.Socket): void {
    const addr = socket.remoteAddress ?? 'unknown';
    const remote = `${addr}:${socket.remotePort}`;
    const now = Date.now();
    const af = this.authFailures.get(addr);
    const perAddr = this.perAddress.get(addr) ?? 0;
    let refuse: string | null = null;
    if (this.closing) refuse = 'shutting down';
    else if (af && af.blockedUntil > now) refuse = 'too many failed authentications from this address';
    else if (this.connCount >= (this.o.maxConns ?? 2000)) refuse = 'global connection limit reached';
    else if (perAddr >= (this.o.maxConnsPerAddress ?? 16)) refuse = 'per-address connection limit reached';
    if (refuse) {
      this.log.debug({ remote, reason: refuse }, 'connection refused');
      socket.destroy();
      return;
    }
    this.connCount++;
    this.perAddress.set(addr, perAddr + 1);
    socket.once('close', () => {
      this.connCount--;
      const n = (this.perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(addr);
      else this.perAddress.set(addr, n);
    });
    socket.on('error', () => {});
    TerminalConnection.handshake({
      socket,
      keyFor: this.o.keyFor,
      heartbeatSec: this.o.heartbeatSec,
      requestTimeoutMs: this.o.requestTimeoutMs,
      handshakeDeadlineMs: this.o.handshakeDeadlineMs,
      log: this.log.child({ remote }),
      logFrames: this.o.logFrames,
    }).then(
      (conn) => {
        if (this.closing) return conn.close('shutting down');
        const peer: PeerCredential = { remote, address: plainAddress(addr), certSha256: peerCertSha256(socket) };
        try {
          const r = this.o.resolveDialIn(conn.hello, peer);
          const { id, note } = typeof r === 'string' ? { id: r, note: undefined } : r;
          const current = this.links.get(id);
          if (current && !current.closed && (this.o.onConflict?.(id, peer, current) ?? 'refuse') === 'refuse') {
            // the session that holds the ID keeps it (and its pushes); the newcomer is told why and closed
            conn.close(`device ID ${conn.hello.deviceId} already has a live session (from ${current.remote})`);
            this.emit('conflict', id, peer, current.remote);
            return;
          }
          this.adopt(id, sessionOf(conn), 'listen', undefined, note);
        } catch (e) {
          if (e instanceof SessionRefused) {
            // the owner logs and records the refusal at a bounded rate; a peer retrying in a loop is a debug line each time
            this.log.debug({ remote, deviceId: conn.hello.deviceId, reason: e.message }, 'terminal session refused');
            conn.close(e.message);
            return;
          }
          // e.g. a new terminal cannot be recorded while the database fails: it dials again later
          this.log.error({ remote, err: (e as Error).message }, 'session could not be started; closing it');
          conn.close(`session could not be started: ${(e as Error).message}`);
        }
      },
      (e: HandshakeError) => {
        if (e.reason === 'auth-failed' || e.reason === 'unknown-key') this.noteAuthFailure(addr);
        this.log.warn({ remote, reason: e.reason, err: e.message }, 'terminal refused during handshake');
      },
    );
  }

  private noteAuthFailure(addr: string): void {
    const now = Date.now();
    const limit = this.o.authFailLimit ?? 5;
    const window = this.o.authBlockMs ?? 60_000;
    let f = this.authFailures.get(addr);
    if (!f || now - f.since > window) f = { count: 0, since: now, blockedUntil: 0 };
    f.count++;
    if (f.count >= limit) {
      f.blockedUntil = now + window;
      this.log.warn({ address: addr, failures: f.count, blockedMs: window }, 'address blocked after failed authentications');
    }
    this.authFailures.set(addr, f);
    if (this.authFailures.size > 10_000) this.authFailures.delete(this.authFailures.keys().next().value!);
  }

  /** Stops accepting and dialling; closes every session with BYE. */
  async close(): Promise<void> {
    this.closing = true;
    this.dialQueue.clear();
    for (const s of this.servers) s.close();
    for (const d of this.dialers.values()) {
      d.stopped = true;
      if (d.timer) clearTimeout(d.timer);
      d.socket?.destroy();
      d.abort?.abort();
    }
    await Promise.all([...this.links.values()].map((l) => l.close('shutdown')));
  }
}
