// Application-level liveness (PROTOCOL.md 4.2). TCP keepalive cannot see a hung
// terminal whose kernel still answers, so the server pings every interval and
// declares the session dead once nothing at all has arrived for 1.5 intervals.
// Timers are injectable so the logic is tested with fake clocks.

export interface HeartbeatOptions {
  intervalMs: number;
  ping: () => void;
  dead: (silentMs: number) => void;
  now?: () => number;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (h: unknown) => void;
  /** runs `fn` after I/O already waiting has been read (default setImmediate) */
  afterPendingIo?: (fn: () => void) => void;
}

export class Heartbeat {
  private lastRx: number;
  private handle: unknown = null;
  private readonly now: () => number;

  constructor(private readonly o: HeartbeatOptions) {
    this.now = o.now ?? Date.now;
    this.lastRx = this.now();
  }

  /** The dead-session threshold: 1.5 intervals. */
  get deadAfterMs(): number {
    return this.o.intervalMs * 1.5;
  }

  start(): void {
    this.lastRx = this.now();
    // Checking every quarter interval bounds detection at 1.5 + 0.25 intervals in the
    // worst case of timer granularity; the check itself is exact against lastRx.
    const tick = Math.max(10, Math.floor(this.o.intervalMs / 4));
    let sinceRing = 0;
    const si = this.o.setInterval ?? ((fn, ms) => setInterval(fn, ms).unref());
    this.handle = si(() => {
      if (this.now() - this.lastRx >= this.deadAfterMs) {
        // After the event loop was blocked (a busy host), the timer may fire before
        // bytes that already arrived were read: look once more after pending I/O.
        (this.o.afterPendingIo ?? setImmediate)(() => {
          const silent = this.now() - this.lastRx;
          if (this.handle === null || silent < this.deadAfterMs) return;
          this.stop();
          this.o.dead(silent);
        });
        return;
      }
      sinceRing += tick;
      if (sinceRing >= this.o.intervalMs) {
        sinceRing = 0;
        this.o.ping();
      }
    }, tick);
  }

  /** Any received byte is a sign of life. */
  touch(): void {
    this.lastRx = this.now();
  }

  stop(): void {
    if (this.handle === null) return;
    (this.o.clearInterval ?? ((h) => clearInterval(h as NodeJS.Timeout)))(this.handle);
    this.handle = null;
  }
}
