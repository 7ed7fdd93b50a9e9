// Which daemon drives which terminal, when several daemons share one
// PostgreSQL database. Each terminal has one lease (src/store/pg/leases.ts):
// an owner, an expiry by the database's clock, and a fencing token that only
// grows. A daemon drives a terminal only while it holds the lease, and passes
// the token with every cursor write (the SiteStore `fence` parameter), which
// the database refuses once another daemon has taken the lease.
//
// Every heartbeat (a third of the TTL by default) a LeaseManager:
//   1. extends its own liveness row and every lease it still owns;
//   2. counts the live daemons and works out its fair share: the terminals
//      divided by the daemons, the remainder going to the first daemons by ID,
//      so the shares add up to exactly the number of terminals;
//   3. gives back leases above its share (after its owner hook stopped
//      driving them) and takes free or expired ones up to its share.
// A daemon that dies stops renewing: its leases expire after the TTL and the
// others take them at their next heartbeat (failover = TTL + one heartbeat at
// most). A daemon that comes back counts again, the others' shares shrink,
// they give back their extras and it takes them: the leases move back.
//
// The local view is conservative: a lease counts as held until the time the
// renewal was SENT plus the TTL minus a margin (the database set its expiry
// from a later instant), by the monotonic clock. A daemon that cannot reach
// the database drops its leases when that passes, before anyone else may take
// them. A daemon paused past its lease (SIGSTOP, a long GC) finds, on waking,
// its lease counted as lost locally, and its writes refused by the fence.
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { PgDatabase } from '../store/pg/db.js';
import { LeaseTable, type HeldLease } from '../store/pg/leases.js';

export const DEFAULT_LEASE_SEC = 10;

/**
 * Why a lease stopped being this daemon's: another daemon took it; it
 * expired locally (the daemon was paused past it); the database could not be
 * reached to renew it; given back (fair share, a terminal removed, a dial-in
 * session ended); given back at an orderly stop.
 */
export type LeaseLossReason = 'taken' | 'expired' | 'unreachable' | 'released' | 'stopped';

export interface LeaseManagerOptions {
  db: PgDatabase;
  /** unique per daemon process (e.g. host:pid:random) */
  daemonId: string;
  /** the lease TTL (--lease-sec), seconds; fractions allowed for tests */
  leaseSec?: number;
  /** heartbeat period, ms; default a third of the TTL */
  renewEveryMs?: number;
  /**
   * The terminals this daemon dials (every daemon may know every terminal):
   * these are shared out evenly. A terminal that dials in is claimed by the
   * daemon it reached (claim/unclaim) and does not count here.
   */
  terminals: () => readonly string[];
  /**
   * A lease was taken (or taken again after an outage with the same token):
   * start driving the terminal, writing with `token` as the fence.
   */
  onAcquire?: (terminalId: string, token: number, previousOwner: string | null) => void;
  /**
   * Stop driving the terminal. For 'released' this is awaited BEFORE the
   * lease is given back (close the session first); for the others the lease
   * is already gone or going.
   */
  onLose?: (terminalId: string, reason: LeaseLossReason) => void | Promise<void>;
  logger?: Logger;
}

export interface LeaseTickResult {
  live: number;
  share: number;
  held: number;
  acquired: string[];
  released: string[];
  lost: string[];
}

interface Local {
  token: number;
  /** performance.now() after which the lease no longer counts as held */
  validUntil: number;
}

/** the fraction of the TTL kept as a margin against the database's expiry */
const SAFETY = 0.1;

/** a fair share: terminals/daemons, the first (terminals mod daemons) daemons by ID one more */
export function fairShare(terminals: number, liveDaemonIds: readonly string[], me: string): number {
  const d = liveDaemonIds.length || 1;
  const rank = liveDaemonIds.indexOf(me);
  const base = Math.floor(terminals / d);
  const extra = terminals % d;
  return base + (rank >= 0 && rank < extra ? 1 : 0);
}

export class LeaseManager {
  readonly daemonId: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  private readonly table: LeaseTable;
  private readonly o: LeaseManagerOptions;
  private readonly held = new Map<string, Local>();
  /** dial-in terminals held through claim(): kept whatever the share */
  private readonly claimed = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private ticking: Promise<LeaseTickResult> | null = null;
  private tickStartedAt: number | null = null;
  private ensured = '';
  private stopped = false;
  /** consecutive heartbeats that failed (the database was unreachable) */
  failures = 0;

  constructor(o: LeaseManagerOptions) {
    this.o = o;
    this.daemonId = o.daemonId;
    this.ttlMs = Math.round((o.leaseSec ?? DEFAULT_LEASE_SEC) * 1000);
    if (!(this.ttlMs >= 100)) throw new Error(`lease TTL must be at least 0.1 s, not ${o.leaseSec}`);
    this.renewEveryMs = o.renewEveryMs ?? Math.max(50, Math.floor(this.ttlMs / 3));
    if (this.renewEveryMs >= this.ttlMs * (1 - SAFETY)) throw new Error('the heartbeat must be well inside the lease TTL');
    this.table = new LeaseTable(o.db);
  }

  /** registers the daemon, runs the first heartbeat and keeps them coming */
  async start(): Promise<void> {
    this.stopped = false;
    await this.tick().catch((e: unknown) => this.o.logger?.warn({ err: (e as Error).message }, 'lease heartbeat failed'));
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick()
        .catch((e: unknown) => this.o.logger?.warn({ err: (e as Error).message, failures: this.failures }, 'lease heartbeat failed'))
        .finally(() => this.schedule());
    }, this.renewEveryMs);
    this.timer.unref?.();
  }

  /** the fencing token of a lease this daemon holds now; undefined: do not drive this terminal */
  token(terminalId: string): number | undefined {
    const l = this.held.get(terminalId);
    if (!l) return undefined;
    if (performance.now() >= l.validUntil) return undefined;
    return l.token;
  }

  /** the terminals this daemon holds now */
  heldTerminals(): string[] {
    const now = performance.now();
    return [...this.held].filter(([, l]) => now < l.validUntil).map(([id]) => id).sort();
  }

  /** one heartbeat (also called by the timer); concurrent calls share one run */
  tick(): Promise<LeaseTickResult> {
    if (!this.ticking) {
      this.tickStartedAt = performance.now();
      this.ticking = this.runTick().finally(() => {
        this.ticking = null;
        this.tickStartedAt = null;
      });
    }
    return this.ticking;
  }

  private async runTick(): Promise<LeaseTickResult> {
    const result: LeaseTickResult = { live: 0, share: 0, held: 0, acquired: [], released: [], lost: [] };
    const sentAt = performance.now();
    let renewed: HeldLease[];
    try {
      await this.table.heartbeat(this.daemonId, this.ttlMs, hostname(), process.pid);
      const ids = [...new Set(this.o.terminals())].sort();
      const key = ids.join('\n');
      if (key !== this.ensured) {
        await this.table.ensureTerminals(ids);
        this.ensured = key;
      }
      renewed = await this.table.renew(this.daemonId, this.ttlMs);
    } catch (e) {
      this.failures++;
      this.expireLocal(result);
      throw e;
    }
    this.failures = 0;
    const validUntil = sentAt + this.ttlMs * (1 - SAFETY);
    const renewedIds = new Set(renewed.map((l) => l.terminalId));
    // ours locally but no longer in the database: another daemon took them
    for (const id of [...this.held.keys()]) {
      if (!renewedIds.has(id)) this.lose(id, 'taken', result);
    }
    for (const l of renewed) {
      const had = this.held.get(l.terminalId);
      this.held.set(l.terminalId, { token: l.token, validUntil });
      // not held locally: an expired lease that nobody took meanwhile is ours again, same token
      if (!had || had.token !== l.token) {
        result.acquired.push(l.terminalId);
        this.o.onAcquire?.(l.terminalId, l.token, null);
      }
    }

    const known = this.o.terminals();
    const live = await this.table.liveDaemons();
    if (!live.includes(this.daemonId)) live.push(this.daemonId); // its own row may have expired this instant
    live.sort();
    const share = fairShare(new Set(known).size, live, this.daemonId);
    result.live = live.length;
    result.share = share;

    // leases above the share go back, and those of terminals this daemon no longer knows
    const knownSet = new Set(known);
    const unknown = [...this.held.keys()].filter((id) => !knownSet.has(id) && !this.claimed.has(id));
    const keep = [...this.held.keys()].filter((id) => knownSet.has(id) && !this.claimed.has(id)).sort();
    const surplus = Math.max(0, keep.length - share);
    const give = [...unknown, ...keep.slice(keep.length - surplus)];
    if (give.length) {
      for (const id of give) {
        this.held.delete(id);
        try {
          await this.o.onLose?.(id, 'released');
        } catch (e) {
          this.o.logger?.warn({ terminal: id, err: (e as Error).message }, 'stopping a terminal before giving its lease back failed');
        }
      }
      result.released = await this.table.release(this.daemonId, give);
    } else if (keep.length < share) {
      const free = known.filter((id) => !this.held.has(id));
      const sentAt2 = performance.now();
      const got = await this.table.acquire(this.daemonId, free, share - keep.length, this.ttlMs);
      const until = sentAt2 + this.ttlMs * (1 - SAFETY);
      for (const l of got) {
        this.held.set(l.terminalId, { token: l.token, validUntil: until });
        result.acquired.push(l.terminalId);
        this.o.onAcquire?.(l.terminalId, l.token, l.previous ?? null);
      }
    }
    result.held = this.held.size;
    if (result.acquired.length || result.released.length || result.lost.length) {
      this.o.logger?.info(
        { daemon: this.daemonId, live: result.live, share, held: result.held, acquired: result.acquired.length, released: result.released.length, lost: result.lost.length },
        'terminal leases changed',
      );
    }
    this.armExpiry();
    return result;
  }

  /**
   * A terminal dialed in to this daemon: takes its lease if it is free or
   * expired (or keeps it if already held). Otherwise returns the daemon that
   * drives it, for the reason the session is closed with. A claimed terminal
   * is renewed with the others and never given back for the fair share; it is
   * given back by unclaim() when its session ends.
   */
  async claim(terminalId: string): Promise<{ token: number; previous?: string | null; fresh: boolean } | { owner: string }> {
    const have = this.token(terminalId);
    if (have !== undefined) {
      this.claimed.add(terminalId);
      return { token: have, fresh: false };
    }
    const sentAt = performance.now();
    const r = await this.table.claim(this.daemonId, terminalId, this.ttlMs);
    if ('token' in r) {
      this.held.set(terminalId, { token: r.token, validUntil: sentAt + this.ttlMs * (1 - SAFETY) });
      this.claimed.add(terminalId);
      this.armExpiry();
      return { ...r, fresh: true };
    }
    return r;
  }

  /** the dial-in session ended: the lease goes back at once (the terminal may reach another daemon next) */
  async unclaim(terminalId: string): Promise<boolean> {
    if (!this.claimed.delete(terminalId)) return false;
    this.held.delete(terminalId);
    return (await this.table.release(this.daemonId, [terminalId])).length > 0;
  }

  private lose(id: string, reason: LeaseLossReason, result?: LeaseTickResult): void {
    this.claimed.delete(id);
    if (!this.held.delete(id)) return;
    result?.lost.push(id);
    this.o.logger?.warn({ terminal: id, reason }, 'terminal lease lost');
    void Promise.resolve()
      .then(() => this.o.onLose?.(id, reason))
      .catch((e: unknown) => this.o.logger?.warn({ terminal: id, err: (e as Error).message }, 'stopping a terminal after its lease was lost failed'));
  }

  /**
   * Drops every lease whose local validity passed: the database could not be
   * reached to renew it (a heartbeat failed or hangs), or the daemon was paused past it.
   */
  private expireLocal(result?: LeaseTickResult): void {
    const now = performance.now();
    // a heartbeat that failed, or one in flight for longer than a heartbeat period: the database does not answer
    const hanging = this.tickStartedAt !== null && now - this.tickStartedAt > this.renewEveryMs;
    const why: LeaseLossReason = this.failures > 0 || hanging ? 'unreachable' : 'expired';
    for (const [id, l] of [...this.held]) if (now >= l.validUntil) this.lose(id, why, result);
    this.armExpiry();
  }

  /** a timer at the earliest local expiry, so a lease is dropped on time even while the heartbeat hangs */
  private armExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (this.stopped || this.held.size === 0) return;
    let first = Infinity;
    for (const l of this.held.values()) first = Math.min(first, l.validUntil);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = null;
      this.expireLocal();
    }, Math.max(0, first - performance.now()) + 1);
    this.expiryTimer.unref?.();
  }

  /**
   * A clean stop: stops the heartbeat, calls onLose(id, 'stopped') for every
   * lease, gives them all back and leaves the daemons table, so the others
   * take the terminals at their next heartbeat instead of after the TTL.
   */
  async stop(): Promise<void> {
    this.halt();
    await this.ticking?.catch(() => {});
    const ids = [...this.held.keys()];
    this.held.clear();
    this.claimed.clear();
    for (const id of ids) await Promise.resolve(this.o.onLose?.(id, 'stopped')).catch(() => {});
    try {
      await this.table.leave(this.daemonId);
    } catch (e) {
      // the database is unreachable: the leases expire after the TTL instead
      this.o.logger?.warn({ err: (e as Error).message }, 'could not give the terminal leases back; they expire after the TTL');
    }
  }

  /** stops the heartbeat without giving anything back (what a crash looks like to the others) */
  halt(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.timer = null;
    this.expiryTimer = null;
  }
}
