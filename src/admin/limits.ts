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
import type net from 'node:net';

export interface ListenerLimits {
  /** most open connections from one client address (default 64) */
  maxConnsPerAddress?: number;
  /** most open connections in total (default 512) */
  maxConns?: number;
  /** most live event streams from one client address (default 8) */
  maxStreamsPerAddress?: number;
}

export const LISTENER_DEFAULTS = { maxConnsPerAddress: 64, maxConns: 512, maxStreamsPerAddress: 8 } as const;

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

  constructor(o: ListenerLimits = {}) {
    this.maxConnsPerAddress = o.maxConnsPerAddress ?? LISTENER_DEFAULTS.maxConnsPerAddress;
    this.maxConns = o.maxConns ?? LISTENER_DEFAULTS.maxConns;
    this.maxStreamsPerAddress = o.maxStreamsPerAddress ?? LISTENER_DEFAULTS.maxStreamsPerAddress;
  }

  get size(): number {
    return this.total;
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
