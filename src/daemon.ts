// The gateway daemon: one Store, one SessionManager, one SyncEngine, wired
// together. Sessions come and go; the engine syncs; the store remembers. The
// admin API (src/admin) and the CLI drive it through the methods below.
import type { Logger } from 'pino';
import type { Hello } from './codec/index.js';
import { validateUser, type UserRecord } from './model/user.js';
import { Store } from './store/store.js';
import type { SyncMode, TerminalRow } from './store/types.js';
import { SyncEngine, type EngineTuning } from './sync/engine.js';
import type { TerminalLink } from './sync/ports.js';
import { SessionManager, type DialTarget, type DialTls, type ListenTls } from './terminal/manager.js';

export interface DaemonOptions {
  db: string;
  log: Logger;
  commKey: Buffer;
  /** comm keys for particular terminals (by device ID), overriding the site key */
  terminalKeys?: Map<number, Buffer>;
  terminals?: DialTarget[];
  listen?: { host: string; port: number }[];
  tlsListen?: { host: string; port: number; tls: ListenTls }[];
  dialTls?: DialTls;
  /** sets (and persists) the sync mode at start; otherwise the stored one applies */
  syncMode?: SyncMode;
  heartbeatSec?: number;
  requestTimeoutMs?: number;
  concurrency?: number;
  autoApprove?: boolean;
  busyTimeoutMs?: number;
  synchronous?: 'NORMAL' | 'FULL';
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  logFrames?: boolean;
  maxConnsPerAddress?: number;
  maxConns?: number;
  handshakeDeadlineMs?: number;
  dbRetryMs?: number;
  /** the sync engine's bounds on what a terminal may send (window, user lists, reconcile deadline, queue shares) */
  engine?: EngineTuning;
}

export type TerminalState = 'online' | 'offline' | 'pending';

export interface TerminalView {
  id: string;
  deviceId: number | null;
  address: string | null;
  direction: 'dial' | 'listen';
  state: TerminalState;
  approved: boolean;
  lastEventId: number;
  lastSeen: number | null;
  pushesOwed: number;
  model: string | null;
  firmware: string | null;
  accessGroups: number[];
}

export const DaemonEvent = {
  TERMINAL_ONLINE: 'TERMINAL_ONLINE',
  TERMINAL_OFFLINE: 'TERMINAL_OFFLINE',
  TERMINAL_PENDING: 'TERMINAL_PENDING',
} as const;

export class Daemon {
  readonly store: Store;
  readonly engine: SyncEngine;
  readonly manager: SessionManager;
  readonly listenPorts: number[] = [];
  private readonly log: Logger;
  private readonly online = new Set<string>();
  private readonly pendingLinks = new Map<string, TerminalLink>();
  private stopped = false;

  static async start(o: DaemonOptions): Promise<Daemon> {
    const store = Store.open(o.db, { busyTimeoutMs: o.busyTimeoutMs, synchronous: o.synchronous, logger: o.log, checkpointInWorker: true });
    const d = new Daemon(o, store);
    try {
      await d.begin(o);
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  private constructor(
    private readonly o: DaemonOptions,
    store: Store,
  ) {
    this.log = o.log;
    this.store = store;
    if (o.syncMode) store.setSyncMode(o.syncMode);
    // Sessions are not live after a restart until they reconnect.
    for (const t of store.listTerminals()) if (t.state !== 'offline') store.updateTerminal(t.id, { state: 'offline' });
    this.engine = new SyncEngine({ ...o.engine, store, log: o.log.child({ component: 'sync' }), concurrency: o.concurrency ?? o.engine?.concurrency, dbRetryMs: o.dbRetryMs ?? o.engine?.dbRetryMs });
    this.manager = new SessionManager({
      keyFor: (deviceId) => o.terminalKeys?.get(deviceId) ?? o.commKey,
      resolveDialIn: (hello, remote) => this.resolveDialIn(hello, remote),
      log: o.log.child({ component: 'sessions' }),
      heartbeatSec: o.heartbeatSec ?? 10,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      logFrames: o.logFrames,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
      dialTls: o.dialTls,
      maxConnsPerAddress: o.maxConnsPerAddress,
      maxConns: o.maxConns,
      handshakeDeadlineMs: o.handshakeDeadlineMs,
    });
    this.manager.on('online', (id, link) => this.onOnline(id, link));
    this.manager.on('offline', (id, reason) => this.onOffline(id, reason));
  }

  private async begin(o: DaemonOptions): Promise<void> {
    for (const t of o.terminals ?? []) this.addTerminal(t);
    for (const l of o.listen ?? []) this.listenPorts.push(await this.manager.listen(l.host, l.port));
    for (const l of o.tlsListen ?? []) this.listenPorts.push(await this.manager.listen(l.host, l.port, l.tls));
  }

  // ------------------------------------------------------------- terminals

  /** Adds (or updates) a terminal the server dials, approved. */
  addTerminal(t: DialTarget, accessGroups?: number[]): TerminalRow {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(t.id)) throw new Error(`terminal ID ${JSON.stringify(t.id)} must be 1..64 letters, digits, '.', '_' or '-'`);
    const row = this.store.upsertTerminal({ id: t.id, direction: 'dial', address: `${t.host}:${t.port}`, approved: true, ...(accessGroups ? { accessGroups } : {}) });
    const known = this.manager.targets().find((x) => x.id === t.id);
    if (known && (known.host !== t.host || known.port !== t.port)) this.manager.removeTarget(t.id);
    this.manager.addTarget(t);
    return row;
  }

  /** Removes a terminal: its session ends, its outbox entries go; the server's users stay. */
  removeTerminal(id: string): boolean {
    this.manager.removeTarget(id);
    this.pendingLinks.get(id)?.close('terminal removed');
    this.pendingLinks.delete(id);
    this.engine.forget(id);
    this.online.delete(id);
    return this.store.deleteTerminal(id);
  }

  /** Approves a pending dial-in terminal; its live session starts syncing at once. */
  approve(id: string): boolean {
    const row = this.store.getTerminal(id);
    if (!row) return false;
    this.store.updateTerminal(id, { approved: true });
    const link = this.pendingLinks.get(id);
    if (link && !link.closed) {
      this.pendingLinks.delete(id);
      this.goOnline(id, link);
    }
    return true;
  }

  setTerminalGroups(id: string, accessGroups: number[]): boolean {
    return this.store.updateTerminal(id, { accessGroups }) !== null;
  }

  terminals(): TerminalView[] {
    const owed = this.store.outboxCounts().byTerminal;
    return this.store.listTerminals().map((t) => ({
      id: t.id,
      deviceId: t.deviceId,
      address: t.address,
      direction: t.direction,
      state: (this.online.has(t.id) ? 'online' : this.pendingLinks.has(t.id) ? 'pending' : 'offline') as TerminalState,
      approved: t.approved,
      lastEventId: t.cursor,
      lastSeen: t.lastSeen,
      pushesOwed: owed[t.id] ?? 0,
      model: t.model,
      firmware: t.firmware,
      accessGroups: t.accessGroups,
    }));
  }

  private resolveDialIn(hello: Hello, remote: string): string {
    const known = this.store.getTerminalByDeviceId(hello.deviceId);
    if (known) return known.id;
    const id = String(hello.deviceId);
    this.store.upsertTerminal({ id, direction: 'listen', deviceId: hello.deviceId, address: remote, approved: this.o.autoApprove ?? false });
    return id;
  }

  private onOnline(id: string, link: TerminalLink): void {
    const row = this.store.getTerminal(id);
    const ident = link.identity;
    // Row updates are best effort: a database that refuses writes must not keep a
    // terminal from syncing once it works again (the sync engine retries its own writes).
    this.tryWrite(id, () =>
      this.store.updateTerminal(id, {
        deviceId: ident.deviceId,
        model: ident.model,
        firmware: ident.firmware,
        userCapacity: ident.userCapacity,
        maxBatch: ident.maxBatch,
        lastSeen: Date.now(),
        ...(row?.direction === 'listen' ? { address: link.remote } : {}),
      }),
    );
    if (!row || !row.approved) {
      this.pendingLinks.set(id, link);
      this.tryWrite(id, () => this.store.updateTerminal(id, { state: 'pending' }));
      this.store.recordEventDurably({ type: DaemonEvent.TERMINAL_PENDING, terminalId: id, detail: JSON.stringify({ deviceId: ident.deviceId, remote: link.remote }) });
      this.log.warn({ terminal: id, deviceId: ident.deviceId, remote: link.remote }, 'unknown terminal held as pending until approved');
      link.onClose(() => this.pendingLinks.get(id) === link && this.pendingLinks.delete(id));
      return;
    }
    this.goOnline(id, link);
  }

  private goOnline(id: string, link: TerminalLink): void {
    this.online.add(id);
    this.tryWrite(id, () => this.store.updateTerminal(id, { state: 'online', lastSeen: Date.now() }));
    this.store.recordEventDurably({ type: DaemonEvent.TERMINAL_ONLINE, terminalId: id, detail: JSON.stringify({ remote: link.remote }) });
    this.log.info({ terminal: id, remote: link.remote, deviceId: link.identity.deviceId }, 'terminal online');
    void this.engine.attach(id, link);
  }

  private tryWrite(id: string, fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      this.log.warn({ terminal: id, err: (e as Error).message }, 'terminal state not saved: the database refused the write');
    }
  }

  private onOffline(id: string, reason: string): void {
    if (!this.online.delete(id)) return;
    this.engine.detach(id);
    if (this.stopped) return;
    try {
      this.store.updateTerminal(id, { state: 'offline', lastSeen: Date.now() });
    } catch {
      // the database may be failing; the event below is kept in memory then
    }
    this.store.recordEventDurably({ type: DaemonEvent.TERMINAL_OFFLINE, terminalId: id, detail: JSON.stringify({ reason }) });
    this.log.info({ terminal: id, reason }, 'terminal offline');
  }

  // ----------------------------------------------------------------- users

  /** A server-side create or change: stored, then pushed to the terminals in scope. */
  putUser(u: UserRecord): { created: boolean; changed: boolean; pushedTo: string[] } {
    const problem = validateUser(u);
    if (problem) throw new Error(problem);
    const pushTo = this.engine.targetsFor(u);
    const r = this.store.putUserFromServer(u, { pushTo });
    const pushedTo = r.changed ? pushTo : [];
    this.engine.kickPushes(pushedTo);
    return { created: r.created, changed: r.changed, pushedTo };
  }

  /** A server-side delete: the user goes from the database and from the terminals in scope. */
  deleteUser(id: string): boolean {
    const u = this.store.getUser(id);
    if (!u) return false;
    const pushTo = this.engine.targetsFor(u);
    this.store.deleteUser(id, { pushTo });
    this.engine.kickPushes(pushTo);
    return true;
  }

  setSyncMode(mode: SyncMode): void {
    this.engine.setSyncMode(mode);
  }

  /** Full resync of one terminal (user-list diff). False when it is not online. */
  resync(id: string): boolean {
    return this.engine.requestReconcile(id);
  }

  // -------------------------------------------------------------- lifecycle

  /**
   * Orderly stop: no new sessions, running sync jobs get `deadlineMs` to finish
   * (what does not finish stays in the outbox), sessions end with BYE, the
   * database closes.
   */
  async stop(deadlineMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const finished = await this.engine.stop(deadlineMs);
    if (!finished) this.log.warn({ deadlineMs }, 'sync jobs still running at shutdown; their pushes stay in the outbox');
    await this.manager.close();
    for (const id of this.online) {
      try {
        this.store.updateTerminal(id, { state: 'offline' });
      } catch {
        // closing anyway
      }
    }
    this.store.flushPendingEvents();
    await this.store.stopCheckpointer();
    this.store.close();
  }
}
