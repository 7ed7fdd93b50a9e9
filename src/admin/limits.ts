// Bounds of the admin listener, so that one client (a local process, a page
// holding many event streams) cannot take it over and /healthz keeps
// answering:
//
// - connections per client address: past the cap, the oldest connection of
//   that address that is not an event stream is closed to make room (idle
//   keep-alive connections and ones still sending headers first). The newest
//   connection always gets its chance, so a health check from the same address
//   as an attacker is still served; the attacker only loses its own oldest
//   connections. A total cap works the same way across addresses.
// - headers: a client has `headersTimeout` to send a request's headers (node's
//   own check, run every `connectionsCheckingInterval`).
// - event streams per address: counted here, refused (429) past the cap by the
//   stream route.
// - new connections per address and second (a token bucket with a burst of
//   twice the rate), checked before any HTTP work: the listener accepts
//   sockets paused, and one over its address's rate is never read, never given
//   to the HTTP server; it is held unread for a short while (so a client that
//   reconnects whenever it is closed does not spin) and then reset, and past a
//   cap on held sockets it is reset at once. A client churning thousands of
//   connections a second then costs an accept and a reset each, not an HTTP
//   set-up, an eviction and a tear-down. A health check from another address
//   is not affected; one from the churning address competes for its rate.
import type net from 'node:net';
import { TokenBucket } from '../rate-limit.js';

export interface ListenerLimits {
  /** most open connections from one client address (default 64) */
  maxConnsPerAddress?: number;
  /** most open connections in total (default 512) */
  maxConns?: number;
  /** most live event streams from one client address (default 8) */
  maxStreamsPerAddress?: number;
  /** new connections per second from one client address (default 100; burst twice that); 0: no limit */
  connectRatePerAddress?: number;
  /** how long a connection over its address's rate is held unread before it is reset, ms (default 5000) */
  refusedHoldMs?: number;
  /** most refused connections held at once (default 1024); past it they are reset at once */
  maxHeldRefused?: number;
  /** clock (tests) */
  now?: () => number;
}

export const LISTENER_DEFAULTS = { maxConnsPerAddress: 64, maxConns: 512, maxStreamsPerAddress: 8, connectRatePerAddress: 100, refusedHoldMs: 5000, maxHeldRefused: 1024 } as const;

interface Conn {
  socket: net.Socket;
  address: string;
  /** a request is being read or answered */
  busy: boolean;
  /** an event stream: never closed to make room */
  stream: boolean;
}

export class ConnectionGuard {
  readonly maxConnsPerAddress: number;
  readonly maxConns: number;
  readonly maxStreamsPerAddress: number;
  /** by address, oldest first (a Set keeps insertion order) */
  private readonly byAddress = new Map<string, Set<Conn>>();
  private readonly bySocket = new WeakMap<net.Socket, Conn>();
  private readonly streams = new Map<string, number>();
  private total = 0;
  /** connections closed to make room, since start (for logs and tests) */
  evicted = 0;
  /** connections refused for their address's connect rate, since start */
  refused = 0;
  readonly connectRatePerAddress: number;
  readonly refusedHoldMs: number;
  readonly maxHeldRefused: number;
  private readonly now: () => number;
  /** connect-rate buckets by address; full ones are forgotten by the sweep */
  private readonly rates = new Map<string, TokenBucket>();
  /** refused sockets held unread, with the time they came, oldest first */
  private readonly held = new Map<net.Socket, number>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(o: ListenerLimits = {}) {
    this.maxConnsPerAddress = o.maxConnsPerAddress ?? LISTENER_DEFAULTS.maxConnsPerAddress;
    this.maxConns = o.maxConns ?? LISTENER_DEFAULTS.maxConns;
    this.maxStreamsPerAddress = o.maxStreamsPerAddress ?? LISTENER_DEFAULTS.maxStreamsPerAddress;
    this.connectRatePerAddress = o.connectRatePerAddress ?? LISTENER_DEFAULTS.connectRatePerAddress;
    this.refusedHoldMs = o.refusedHoldMs ?? LISTENER_DEFAULTS.refusedHoldMs;
    this.maxHeldRefused = o.maxHeldRefused ?? LISTENER_DEFAULTS.maxHeldRefused;
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.total;
  }

  /** refused connections held unread now */
  get heldRefused(): number {
    return this.held.size;
  }

  /**
   * A socket just accepted (paused, nothing read): true when its address is
   * within its connect rate; false when it is over and the guard took it (held
   * unread, then reset). Runs before any HTTP work.
   */
  gate(socket: net.Socket): boolean {
    if (this.connectRatePerAddress <= 0) return true;
    const address = socket.remoteAddress ?? '?';
    let b = this.rates.get(address);
    if (!b) {
      b = new TokenBucket(this.connectRatePerAddress, Math.max(1, 2 * this.connectRatePerAddress), this.now);
      this.rates.set(address, b);
    }
    this.startSweeper();
    if (b.take()) return true;
    this.refused++;
    if (this.held.size >= this.maxHeldRefused || this.refusedHoldMs <= 0) {
      reset(socket);
    } else {
      socket.on('error', () => {});
      this.held.set(socket, this.now());
    }
    return false;
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    const every = Math.max(50, Math.min(1000, Math.floor(this.refusedHoldMs / 4) || 1000));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Resets the held sockets whose time is up and forgets connect-rate buckets that are full again. */
  sweep(): void {
    const cutoff = this.now() - this.refusedHoldMs;
    for (const [s, at] of this.held) {
      if (at > cutoff) break;
      this.held.delete(s);
      reset(s);
    }
    for (const [a, b] of this.rates) if (b.full) this.rates.delete(a);
    if (this.held.size === 0 && this.rates.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Resets every held socket and stops the sweep (the listener is closing). */
  close(): void {
    for (const s of this.held.keys()) reset(s);
    this.held.clear();
    this.rates.clear();
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /** A new connection: makes room for it if its address (or the listener) is full. */
  admit(socket: net.Socket): void {
    const address = socket.remoteAddress ?? '?';
    let set = this.byAddress.get(address);
    if (!set) {
      set = new Set();
      this.byAddress.set(address, set);
    }
    if (set.size >= this.maxConnsPerAddress && !this.evictFrom(set)) {
      socket.destroy();
      return;
    }
    if (this.total >= this.maxConns) {
      // the fullest address gives up its oldest connection
      let fullest: Set<Conn> | null = null;
      for (const s of this.byAddress.values()) if (!fullest || s.size > fullest.size) fullest = s;
      if (!fullest || !this.evictFrom(fullest)) {
        socket.destroy();
        return;
      }
    }
    const c: Conn = { socket, address, busy: false, stream: false };
    set.add(c);
    this.bySocket.set(socket, c);
    this.total++;
    socket.once('close', () => {
      if (!set.delete(c)) return;
      this.total--;
      if (set.size === 0 && this.byAddress.get(address) === set) this.byAddress.delete(address);
    });
  }

  /** Closes the oldest connection that is not an event stream, idle ones first. False when every one is a stream. */
  private evictFrom(set: Set<Conn>): boolean {
    let victim: Conn | null = null;
    for (const c of set) {
      if (c.stream) continue;
      if (!c.busy) {
        victim = c;
        break;
      }
      victim ??= c;
    }
    if (!victim) return false;
    set.delete(victim);
    this.total--;
    this.evicted++;
    victim.socket.destroy();
    return true;
  }

  /** A request started on this socket (headers complete). */
  busy(socket: net.Socket): void {
    const c = this.bySocket.get(socket);
    if (c) c.busy = true;
  }

  /** The response on this socket finished: the connection is idle again. */
  idle(socket: net.Socket): void {
    const c = this.bySocket.get(socket);
    if (c && !c.stream) c.busy = false;
  }

  /**
   * Marks the socket as carrying an event stream. Returns a release function,
   * or null when the address already has its cap of streams.
   */
  openStream(socket: net.Socket): (() => void) | null {
    const address = socket.remoteAddress ?? '?';
    const n = this.streams.get(address) ?? 0;
    if (n >= this.maxStreamsPerAddress) return null;
    this.streams.set(address, n + 1);
    const c = this.bySocket.get(socket);
    if (c) c.stream = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(address) ?? 1) - 1;
      if (left <= 0) this.streams.delete(address);
      else this.streams.set(address, left);
    };
  }
}

/** Closes with a reset: no FIN exchange, no TIME_WAIT left on this side. */
function reset(s: net.Socket): void {
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}
