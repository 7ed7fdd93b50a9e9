// Application-level liveness (PROTOCOL.md 4.2). TCP keepalive cannot see a hung
// terminal whose kernel still answers, so the server pings every interval and
// declares the session dead once nothing at all has arrived for 1.5 intervals.
//
// Ten thousand sessions must not mean ten thousand interval timers each firing
// four times an interval: every session's next moment of interest (its next
// ping, or the moment it would have been silent too long) sits in one bucket
// of a shared timer wheel, and the wheel's single timer visits only the
// sessions due in the buckets it passes, about once an interval per session.
// Receiving bytes only stores a time (no timer is touched); a visited session
// works out from its times whether to ping, to die, or when to come back.
// Timers are injectable so the logic is tested with fake clocks.

export interface HeartbeatOptions {
  intervalMs: number;
  ping: () => void;
  dead: (silentMs: number) => void;
  now?: () => number;
  /** with a fake clock: the wheel's one timer (each Heartbeat given these gets a wheel of its own) */
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (h: unknown) => void;
  /** runs `fn` after I/O already waiting has been read (default setImmediate) */
  afterPendingIo?: (fn: () => void) => void;
  /** the wheel to sit in (default: the process's shared wheel for this interval; tests pass their own) */
  wheel?: TimerWheel;
}

/** What a wheel schedules: visited at (or just after) the time it asked for. */
interface WheelEntry {
  /** returns the next time it wants a visit, or null to leave the wheel */
  visit(now: number): number | null;
  /** the bucket it sits in (-1: none) */
  slot: number;
}

export interface TimerWheelOptions {
  /** bucket width: an entry is visited at most this late */
  tickMs: number;
  now?: () => number;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (h: unknown) => void;
}

/**
 * Buckets of entries by due tick, one interval timer that runs only while
 * something is scheduled. Scheduling and unscheduling are O(1); a tick costs
 * the entries due in it (and one look at every bucket it passes).
 */
export class TimerWheel {
  private readonly buckets = new Map<number, Set<WheelEntry>>();
  private size = 0;
  /** the last tick whose bucket was processed */
  private cursor: number;
  private handle: unknown = null;
  private readonly now: () => number;

  constructor(private readonly o: TimerWheelOptions) {
    this.now = o.now ?? Date.now;
    this.cursor = Math.floor(this.now() / o.tickMs);
  }

  /** entries scheduled */
  get count(): number {
    return this.size;
  }

  /** true while the wheel's timer runs */
  get running(): boolean {
    return this.handle !== null;
  }

  schedule(e: WheelEntry, at: number): void {
    this.unschedule(e);
    // never in a bucket already passed: at the earliest the next one
    const slot = Math.max(this.cursor + 1, Math.ceil(at / this.o.tickMs));
    let b = this.buckets.get(slot);
    if (!b) this.buckets.set(slot, (b = new Set()));
    b.add(e);
    e.slot = slot;
    this.size++;
    if (this.handle === null) this.startTimer();
  }

  unschedule(e: WheelEntry): void {
    if (e.slot < 0) return;
    const b = this.buckets.get(e.slot);
    if (b?.delete(e)) {
      this.size--;
      if (b.size === 0) this.buckets.delete(e.slot);
    }
    e.slot = -1;
    if (this.size === 0) this.stopTimer();
  }

  /** Processes every bucket up to now (the timer calls it; tests may too). */
  tick(): void {
    const now = this.now();
    const last = Math.floor(now / this.o.tickMs);
    // after a long stall of the event loop only the buckets that exist are looked at
    const span = last - this.cursor;
    const slots = span > this.buckets.size ? [...this.buckets.keys()].filter((s) => s <= last).sort((a, b) => a - b) : null;
    const visitSlot = (slot: number) => {
      const b = this.buckets.get(slot);
      if (!b) return;
      this.buckets.delete(slot);
      for (const e of b) {
        e.slot = -1;
        this.size--;
      }
      for (const e of b) {
        const next = e.visit(now);
        if (next !== null && e.slot < 0) this.schedule(e, next);
      }
    };
    if (slots) {
      for (const s of slots) {
        this.cursor = s;
        visitSlot(s);
      }
    } else {
      for (let s = this.cursor + 1; s <= last; s++) {
        this.cursor = s;
        visitSlot(s);
      }
    }
    this.cursor = Math.max(this.cursor, last);
    if (this.size === 0) this.stopTimer();
  }

  private startTimer(): void {
    const si = this.o.setInterval ?? ((fn, ms) => setInterval(fn, ms).unref());
    // buckets passed while no timer ran were empty
    this.cursor = Math.max(this.cursor, Math.floor(this.now() / this.o.tickMs) - 1);
    this.handle = si(() => this.tick(), this.o.tickMs);
  }

  private stopTimer(): void {
    if (this.handle === null) return;
    (this.o.clearInterval ?? ((h) => clearInterval(h as NodeJS.Timeout)))(this.handle);
    this.handle = null;
  }
}

/** The process's wheels, one per tick width (sessions usually share one heartbeat interval). */
const sharedWheels = new Map<number, TimerWheel>();

export function sharedWheel(tickMs: number): TimerWheel {
  let w = sharedWheels.get(tickMs);
  if (!w) sharedWheels.set(tickMs, (w = new TimerWheel({ tickMs })));
  return w;
}

export class Heartbeat implements WheelEntry {
  slot = -1;
  private lastRx: number;
  private lastPing = 0;
  private active = false;
  /** a deferred dead check is waiting for pending I/O */
  private deferred = false;
  private readonly now: () => number;
  private readonly wheel: TimerWheel;

  constructor(private readonly o: HeartbeatOptions) {
    this.now = o.now ?? Date.now;
    this.lastRx = this.now();
    // Visits at most a quarter interval late: detection within 1.5 + 0.25 intervals, as with a per-session timer.
    const tickMs = Math.max(10, Math.floor(o.intervalMs / 4));
    this.wheel = o.wheel ?? (o.setInterval ? new TimerWheel({ tickMs, now: this.now, setInterval: o.setInterval, clearInterval: o.clearInterval }) : sharedWheel(tickMs));
  }

  /** The dead-session threshold: 1.5 intervals. */
  get deadAfterMs(): number {
    return this.o.intervalMs * 1.5;
  }

  start(): void {
    this.lastRx = this.lastPing = this.now();
    this.active = true;
    this.wheel.schedule(this, this.nextDue());
  }

  /** Any received byte is a sign of life. */
  touch(): void {
    this.lastRx = this.now();
  }

  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.wheel.unschedule(this);
  }

  private nextDue(): number {
    return Math.min(this.lastPing + this.o.intervalMs, this.lastRx + this.deadAfterMs);
  }

  /** The wheel's visit: die, ping, or say when to come back. */
  visit(now: number): number | null {
    if (!this.active) return null;
    if (now - this.lastRx >= this.deadAfterMs) {
      if (this.deferred) return null;
      // After the event loop was blocked (a busy host), the timer may fire before
      // bytes that already arrived were read: look once more after pending I/O.
      this.deferred = true;
      (this.o.afterPendingIo ?? setImmediate)(() => {
        this.deferred = false;
        if (!this.active) return;
        const silent = this.now() - this.lastRx;
        if (silent < this.deadAfterMs) {
          this.wheel.schedule(this, this.nextDue());
          return;
        }
        this.stop();
        this.o.dead(silent);
      });
      return null;
    }
    if (now - this.lastPing >= this.o.intervalMs) {
      // keep the period (a visit may come up to a tick late); after a stall, count from now
      this.lastPing += this.o.intervalMs;
      if (now - this.lastPing >= this.o.intervalMs) this.lastPing = now;
      this.o.ping();
    }
    return this.active ? this.nextDue() : null;
  }
}
