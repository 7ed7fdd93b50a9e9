// The admin port (site.ts) of one daemon on its SQLite file: a thin adapter
// over the Daemon's methods and its synchronous Store, which stay as they are.
// This daemon drives every terminal, so no terminal has an owner or a lease,
// and every action that needs a live session is taken here or answered 409
// when the terminal is not online.
import type { Daemon } from '../daemon.js';
import type { UserRecord } from '../model/user.js';
import type { SiteStore } from '../store/backend.js';
import { SqliteSiteStore } from '../store/sqlite-backend.js';
import type { DiskUsage, SyncMode, TerminalRow } from '../store/types.js';
import type { DialTarget } from '../terminal/manager.js';
import { ActionRefused, type AdminHealth, type AdminSite, type AdminTerminal } from './site.js';

export class DaemonAdminSite implements AdminSite {
  readonly kind = 'sqlite' as const;
  readonly daemonId = null;
  readonly store: SiteStore;
  readonly eventGapHoldMs = 0;

  constructor(readonly daemon: Daemon) {
    this.store = new SqliteSiteStore(daemon.store);
  }

  get engine() {
    return this.daemon.engine;
  }
  get manager() {
    return this.daemon.manager;
  }
  get drivers() {
    return this.daemon.drivers;
  }
  get dbPath(): string {
    return this.daemon.store.path;
  }

  async health(): Promise<AdminHealth> {
    return { db: this.daemon.store.healthy(), terminalsOnline: this.daemon.engine.laneDepths().online };
  }

  async terminals(): Promise<AdminTerminal[]> {
    return this.daemon.terminals().map((t) => ({ ...t, owner: null, lease: null }));
  }

  dialTarget(id: string): DialTarget | undefined {
    return this.daemon.manager.target(id);
  }

  async addTerminal(t: DialTarget, accessGroups?: number[]): Promise<TerminalRow> {
    // remembered as added through the API: dialled again after a restart
    return this.daemon.addTerminal(t, accessGroups, 'api');
  }

  async removeTerminal(id: string): Promise<boolean> {
    return this.daemon.removeTerminal(id);
  }

  async approve(id: string): Promise<boolean> {
    return this.daemon.approve(id);
  }

  async setTerminalGroups(id: string, accessGroups: number[]): Promise<boolean> {
    return this.daemon.setTerminalGroups(id, accessGroups);
  }

  async resync(id: string): Promise<void> {
    if (!this.daemon.resync(id)) throw new ActionRefused(409, `terminal ${JSON.stringify(id)} is not online; a resync needs a live session`);
  }

  async retryPulls(id: string, userId?: string): Promise<{ queued: number }> {
    const r = await this.daemon.engine.retryPulls(id, userId);
    if (!r.online) throw new ActionRefused(409, `terminal ${JSON.stringify(id)} is not online; its failed pulls are retried when its session starts`);
    return { queued: r.queued };
  }

  async putUser(u: UserRecord): Promise<{ created: boolean; changed: boolean; pushedTo: string[] }> {
    return this.daemon.putUser(u);
  }

  async deleteUser(id: string): Promise<boolean> {
    return this.daemon.deleteUser(id);
  }

  async targetsFor(u: UserRecord): Promise<string[]> {
    return this.daemon.targetsFor(u);
  }

  syncMode(): SyncMode {
    return this.daemon.engine.syncMode;
  }

  async setSyncMode(mode: SyncMode): Promise<void> {
    this.daemon.setSyncMode(mode);
  }

  async retryPushFailures(terminalId: string, userId?: string): Promise<{ retried: number; cleared: number }> {
    const store = this.daemon.store;
    const failures = store.listPushFailures({ terminalId, userId, limit: 100_000 });
    const users = failures.map((f) => f.userId).filter((id) => store.hasUser(id));
    if (users.length) store.enqueueMany([terminalId], users);
    const cleared = store.clearPushFailures(terminalId, userId);
    this.daemon.engine.kickPushes([terminalId]);
    return { retried: users.length, cleared };
  }

  async disk(): Promise<DiskUsage> {
    return this.daemon.store.diskUsage();
  }

  pendingEventCount(): number {
    return this.daemon.store.pendingEventCount;
  }

  async backup(dest: string): Promise<{ totalPages: number; remainingPages: number }> {
    return this.daemon.store.backup(dest);
  }

  onActivity(fn: () => void): () => void {
    return this.daemon.engine.onActivity(() => fn());
  }
}
