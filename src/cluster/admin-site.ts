// The admin port (src/admin/site.ts) of one daemon of several on one
// PostgreSQL database: the whole site is in the shared database, so this
// daemon's admin API and console show every terminal, with the daemon that
// drives it (the owner of its live lease, src/store/pg/leases.ts).
//
// What each action does when another daemon drives the terminal (the README's
// "Admin API and console on several daemons" says the same):
// - users (put, delete), access groups, a retry of refused pushes: rows
//   written here; the feed and NOTIFY wake the daemon that holds the
//   terminal, which pushes;
// - approval of a dial-in terminal (ClusterNode.approve): a session held
//   pending here is bound and driven at once; elsewhere a row write, and the
//   terminal is driven when it dials again;
// - the sync mode: stored here and taken at once; every daemon's admin site
//   reads the stored mode every second and follows it;
// - a resync, a retry of failed pulls: they need the live session, so they
//   run here when this daemon drives the terminal, else 409 naming the owner;
// - removing a terminal: a dial-in terminal driven by nobody (or by this
//   daemon, whose session ends) is removed; one another daemon drives is 409
//   naming it; a terminal the daemons dial comes from the flag file every
//   daemon carries, so it is removed (or added) there, not here (409);
// - a backup: PostgreSQL's own tools (501).
import type { Logger } from 'pino';
import type { TerminalState } from '../daemon.js';
import { validateUser, type UserRecord } from '../model/user.js';
import { ActionRefused, targetsIn, type AdminHealth, type AdminSite, type AdminTerminal, type LeaseView } from '../admin/site.js';
import type { PgSiteStore } from '../store/pg/backend.js';
import { LeaseTable } from '../store/pg/leases.js';
import type { SyncMode, TerminalRow } from '../store/types.js';
import type { DialTarget } from '../terminal/manager.js';
import type { ClusterNode } from './node.js';

/** how often the stored sync mode is read, to follow a change made through another daemon */
const SYNC_MODE_POLL_MS = 1000;
/** how long the event stream waits for a missing event ID (another daemon's transaction still committing) */
const EVENT_GAP_HOLD_MS = 5000;

export interface ClusterAdminSiteOptions {
  node: ClusterNode;
  log: Logger;
  /** sync mode poll, ms (default 1000; 0: none) */
  syncModePollMs?: number;
}

export class ClusterAdminSite implements AdminSite {
  readonly kind = 'postgres' as const;
  readonly daemonId: string;
  readonly store: PgSiteStore;
  readonly dbPath = null;
  readonly eventGapHoldMs = EVENT_GAP_HOLD_MS;

  private readonly node: ClusterNode;
  private readonly leases: LeaseTable;
  private readonly log: Logger;
  private modeTimer: NodeJS.Timeout | null = null;
  private modeReading = false;

  constructor(o: ClusterAdminSiteOptions) {
    this.node = o.node;
    this.store = o.node.store;
    this.daemonId = this.store.writerId;
    this.leases = new LeaseTable(this.store.db);
    this.log = o.log;
    const every = o.syncModePollMs ?? SYNC_MODE_POLL_MS;
    if (every > 0) {
      this.modeTimer = setInterval(() => void this.followSyncMode(), every);
      this.modeTimer.unref();
    }
  }

  get engine() {
    return this.node.engine;
  }
  /** the node's driver registry (a terminal the daemons dial is added in the flag file: these shape the refusal) */
  get drivers() {
    return this.node.drivers;
  }
  get manager() {
    return this.node.manager;
  }

  /** takes the stored sync mode when another daemon changed it */
  private async followSyncMode(): Promise<void> {
    if (this.modeReading) return;
    this.modeReading = true;
    try {
      const stored = await this.store.getSyncMode();
      if (stored !== this.engine.syncMode) {
        this.log.info({ syncMode: stored, from: this.engine.syncMode }, 'sync mode changed through another daemon: taken');
        this.engine.useSyncMode(stored);
      }
    } catch {
      // the database is unreachable: the next poll tries again
    } finally {
      this.modeReading = false;
    }
  }

  close(): void {
    if (this.modeTimer) clearInterval(this.modeTimer);
    this.modeTimer = null;
  }

  async health(): Promise<AdminHealth> {
    return { db: await this.store.healthy(), terminalsOnline: this.engine.laneDepths().online };
  }

  async terminals(): Promise<AdminTerminal[]> {
    const [rows, leases, owed] = await Promise.all([this.store.listTerminals(), this.leases.list(), this.store.owedCounts()]);
    const byId = new Map(leases.map((l) => [l.terminalId, l]));
    return rows.map((t) => {
      const l = byId.get(t.id);
      const lease: LeaseView | null = l ? { owner: l.owner, token: l.token, expiresAt: Number.isFinite(l.expiresAt) ? l.expiresAt : null, live: l.live } : null;
      const owner = l?.live ? l.owner : null;
      return {
        id: t.id,
        deviceId: t.deviceId,
        address: t.address,
        direction: t.direction,
        state: this.stateOf(t, owner),
        approved: t.approved,
        lastEventId: t.cursor,
        lastSeen: t.lastSeen,
        pushesOwed: owed.byTerminal[t.id] ?? 0,
        model: t.model,
        firmware: t.firmware,
        accessGroups: t.accessGroups,
        protocol: t.protocol,
        owner,
        lease,
      };
    });
  }

  /**
   * Online: this daemon holds the lease and the session is up, or another
   * daemon holds it and its row says online (the owner keeps the row's state);
   * pending: waiting for approval; else offline.
   */
  private stateOf(t: TerminalRow, owner: string | null): TerminalState {
    if (!t.approved || this.node.pendingTerminals().includes(t.id)) return 'pending';
    if (owner === null) return 'offline';
    if (owner === this.daemonId) return this.manager.link(t.id) && this.node.leases.token(t.id) !== undefined ? 'online' : 'offline';
    return t.state === 'online' ? 'online' : 'offline';
  }

  /** the owner of the terminal's live lease, or null */
  private async ownerOf(id: string): Promise<string | null> {
    const l = (await this.leases.list()).find((x) => x.terminalId === id);
    return l?.live ? l.owner : null;
  }

  /** why an action that needs the live session cannot run here */
  private async notHere(id: string, what: string): Promise<ActionRefused> {
    const owner = await this.ownerOf(id);
    if (owner && owner !== this.daemonId) {
      return new ActionRefused(409, `terminal ${JSON.stringify(id)} is driven by daemon ${owner}: ${what} needs its live session; ask that daemon's admin API`);
    }
    return new ActionRefused(409, `terminal ${JSON.stringify(id)} is not online (no daemon has a live session with it); ${what} needs a live session`);
  }

  dialTarget(id: string): DialTarget | undefined {
    return this.manager.target(id);
  }

  async addTerminal(t: DialTarget): Promise<TerminalRow> {
    throw new ActionRefused(
      409,
      `with several daemons on PostgreSQL, the terminals they dial come from the flag file every daemon carries: add --terminal=${t.id}@${t.host}:${t.port} there on every daemon, then reload them (SIGHUP) or restart them one at a time`,
    );
  }

  async removeTerminal(id: string): Promise<boolean> {
    const row = await this.store.getTerminal(id);
    if (!row) return false;
    const owner = await this.ownerOf(id);
    if (owner && owner !== this.daemonId) {
      throw new ActionRefused(409, `terminal ${JSON.stringify(id)} is driven by daemon ${owner}; remove it through that daemon's admin API${row.direction === 'dial' ? ', or from the flag file of every daemon' : ''}`);
    }
    if (row.direction === 'dial' && this.manager.target(id)) {
      throw new ActionRefused(409, `terminal ${JSON.stringify(id)} is in this daemon's flag file (--terminal): remove it there on every daemon, then reload them (SIGHUP) or restart them one at a time`);
    }
    // a dial-in terminal driven here: its session ends (the node gives the lease back)
    this.manager.link(id)?.close('terminal removed');
    this.engine.forget(id);
    return this.store.deleteTerminal(id);
  }

  async approve(id: string): Promise<boolean> {
    // a session held pending here is bound to what it presented and driven at once; elsewhere this
    // is a row write, and the terminal is driven when it dials again (the daemon holding it keeps it pending)
    return this.node.approve(id);
  }

  async setTerminalGroups(id: string, accessGroups: number[]): Promise<boolean> {
    const row = await this.store.getTerminal(id);
    if (!row) return false;
    // the owner reads the groups at each push batch
    await this.store.upsertTerminal({ id, direction: row.direction, accessGroups });
    return true;
  }

  async resync(id: string): Promise<void> {
    if (this.node.leases.token(id) !== undefined && this.engine.requestReconcile(id)) return;
    throw await this.notHere(id, 'a resync');
  }

  async retryPulls(id: string, userId?: string): Promise<{ queued: number }> {
    if (this.node.leases.token(id) !== undefined) {
      const r = await this.engine.retryPulls(id, userId);
      if (r.online) return { queued: r.queued };
    }
    throw await this.notHere(id, 'pulling its failed users again');
  }

  async putUser(u: UserRecord): Promise<{ created: boolean; changed: boolean; pushedTo: string[] }> {
    const problem = validateUser(u);
    if (problem) throw new Error(problem);
    const r = await this.store.putUser(u);
    return { created: r.created, changed: r.changed, pushedTo: r.changed ? await this.targetsFor(u) : [] };
  }

  deleteUser(id: string): Promise<boolean> {
    return this.store.deleteUser(id);
  }

  async targetsFor(u: UserRecord): Promise<string[]> {
    return targetsIn(await this.store.listTerminals(), u, this.engine.syncMode);
  }

  syncMode(): SyncMode {
    return this.engine.syncMode;
  }

  async setSyncMode(mode: SyncMode): Promise<void> {
    await this.engine.setSyncMode(mode);
  }

  async retryPushFailures(terminalId: string, userId?: string): Promise<{ retried: number; cleared: number }> {
    const failures = await this.store.listPushFailures({ terminalId, userId, limit: 100_000 });
    const ids = [...new Set(failures.map((f) => f.userId))];
    const present = await Promise.all(ids.map(async (id) => ((await this.store.getUser(id)) ? id : null)));
    const users = present.filter((id): id is string => id !== null);
    // the owed entries wake the terminal's owner (NOTIFY), wherever it runs
    if (users.length) await this.store.owe(terminalId, users);
    const cleared = await this.store.clearPushFailures(terminalId, userId);
    this.engine.kickPushes([terminalId]);
    return { retried: users.length, cleared };
  }

  async disk(): Promise<null> {
    return null;
  }

  pendingEventCount(): number {
    return this.store.pendingEventCount;
  }

  async backup(): Promise<{ totalPages: number; remainingPages: number }> {
    throw new ActionRefused(501, 'the database is PostgreSQL: back it up with its own tools');
  }

  onActivity(fn: () => void): () => void {
    const a = this.engine.onActivity(() => fn());
    // another daemon's commit (NOTIFY) may carry its events too
    const b = this.store.onFeedChange(() => fn());
    return () => {
      a();
      b();
    };
  }
}
