// The gateway daemon: one Store, one SessionManager, one SyncEngine, wired
// together. Sessions come and go; the engine syncs; the store remembers. The
// admin API (src/admin) and the CLI drive it through the methods below.
//
// Terminals speak one of several protocols. Each protocol is a TerminalDriver
// (src/sync/ports.ts) in the daemon's driver registry, keyed by its name; a
// terminal's `protocol` (stored with it, default 'termsync') names its driver,
// and every driver hands the engine the same DeviceSession.
import type { Logger } from 'pino';
import type { Hello } from './codec/index.js';
import { validateUser, type UserRecord } from './model/user.js';
import { DEFAULT_EVENT_LIMITS } from './store/event-limits.js';
import { DEFAULT_RETENTION, EventMaintenance } from './store/retention.js';
import { Store } from './store/store.js';
import { SqliteSiteStore } from './store/sqlite-backend.js';
import type { SyncMode, TerminalRow } from './store/types.js';
import { SyncEngine, type EngineTuning } from './sync/engine.js';
import type { DeviceSession, TerminalDriver } from './sync/ports.js';
import { checkProtocol, closeDrivers, driverRegistry, forgetTarget, targetChanged } from './drivers/registry.js';
import { describeBinding, parseBinding, type BindingPolicy, type Cidr, type IdentityBinding, type PeerCredential } from './terminal/identity.js';
import { DialInAdmission, SessionEvent } from './terminal/admission.js';
import { SessionManager, SessionRefused, type DialTarget, type DialTls, type ListenTls } from './terminal/manager.js';

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
  /** new device IDs recorded (auto-approved or pending) at most this fast; beyond it a new device is refused. Default 60/min */
  newDeviceRate?: { ratePerSec: number; burst: number } | null;
  /** auto-approve only terminals whose source address is in one of these ranges (empty: any) */
  autoApproveFrom?: Cidr[];
  /** how wide an address binding is (a site-key terminal's ID is bound to its source address) */
  identity?: BindingPolicy;
  /** the monitoring log's bounds: retention by count and age, per-terminal rate limits (null: no limits) */
  events?: { keep?: number; maxAgeDays?: number; ratePerSec?: number; burst?: number; intervalMs?: number } | null;
  busyTimeoutMs?: number;
  synchronous?: 'NORMAL' | 'FULL';
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  logFrames?: boolean;
  maxConnsPerAddress?: number;
  maxConns?: number;
  /** dials (connect + handshake) in progress at once; the other terminals wait their turn (default 256) */
  maxConcurrentDials?: number;
  handshakeDeadlineMs?: number;
  dbRetryMs?: number;
  /** the sync engine's bounds on what a terminal may send (window, user lists, reconcile deadline, queue shares) */
  engine?: EngineTuning;
  /**
   * Drivers of further protocols, registered by their `protocol` name beside
   * the built-in termsync driver (a terminal names its driver in
   * DialTarget.protocol). Dial only: terminals that dial in speak termsync.
   */
  drivers?: TerminalDriver[];
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
  /** the driver that speaks to it ('termsync', 'zk', ...) */
  protocol: string;
}

/** the session and admission events (src/terminal/admission.ts, shared with the cluster node) */
export const DaemonEvent = SessionEvent;

/** how often tombstones every terminal's feed cursor has passed are collected */
const TOMBSTONE_GC_MS = 60_000;

/** How a dial-in session was admitted (resolveDialIn's note to onOnline). */
interface Admission {
  /** the binding this session presented */
  presented: IdentityBinding;
  /** the ID is bound to something else: hold the session pending until approved */
  mismatch: boolean;
}

export class Daemon {
  readonly store: Store;
  readonly engine: SyncEngine;
  readonly manager: SessionManager;
  /** the driver registry: protocol name -> driver ('termsync' always; see DaemonOptions.drivers) */
  readonly drivers: ReadonlyMap<string, TerminalDriver>;
  readonly listenPorts: number[] = [];
  /** retention and rate-limit summaries of the monitoring log (null with events: null) */
  readonly eventUpkeep: EventMaintenance | null;
  private readonly log: Logger;
  private readonly online = new Set<string>();
  private readonly pendingLinks = new Map<string, DeviceSession>();
  /** what each pending session presented: approving it binds the ID to this */
  private readonly pendingBindings = new Map<string, Admission>();
  private readonly admission: DialInAdmission;
  private stopped = false;
  private gcTimer: NodeJS.Timeout | null = null;

  static async start(o: DaemonOptions): Promise<Daemon> {
    const ev = o.events === null ? null : { ...DEFAULT_RETENTION, ...DEFAULT_EVENT_LIMITS, ...o.events };
    const store = Store.open(o.db, {
      busyTimeoutMs: o.busyTimeoutMs,
      synchronous: o.synchronous,
      logger: o.log,
      checkpointInWorker: true,
      eventLimits: ev ? { ratePerSec: ev.ratePerSec, burst: ev.burst } : null,
    });
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
    const ev = o.events === null ? null : { ...DEFAULT_RETENTION, ...o.events };
    this.eventUpkeep = ev ? new EventMaintenance(store, { keep: ev.keep, maxAgeDays: ev.maxAgeDays, intervalMs: ev.intervalMs }, o.log.child({ component: 'events' })) : null;
    this.admission = new DialInAdmission({ autoApprove: o.autoApprove, newDeviceRate: o.newDeviceRate, autoApproveFrom: o.autoApproveFrom, identity: o.identity, ownKeys: o.terminalKeys });
    if (o.syncMode) store.setSyncMode(o.syncMode);
    // Sessions are not live after a restart until they reconnect.
    for (const t of store.listTerminals()) if (t.state !== 'offline') store.updateTerminal(t.id, { state: 'offline' });
    this.engine = new SyncEngine({
      ...o.engine,
      store: new SqliteSiteStore(store),
      syncMode: store.getSyncMode(),
      log: o.log.child({ component: 'sync' }),
      concurrency: o.concurrency ?? o.engine?.concurrency,
      dbRetryMs: o.dbRetryMs ?? o.engine?.dbRetryMs,
    });
    this.drivers = driverRegistry({ log: o.log, heartbeatSec: o.heartbeatSec, requestTimeoutMs: o.requestTimeoutMs, handshakeDeadlineMs: o.handshakeDeadlineMs, logFrames: o.logFrames }, o.drivers);
    this.manager = new SessionManager({
      drivers: this.drivers,
      keyFor: (deviceId) => o.terminalKeys?.get(deviceId) ?? o.commKey,
      resolveDialIn: (hello, peer) => this.resolveDialIn(hello, peer),
      onConflict: (id, peer, current) => this.onConflict(id, peer, current),
      log: o.log.child({ component: 'sessions' }),
      heartbeatSec: o.heartbeatSec ?? 10,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      logFrames: o.logFrames,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
      dialTls: o.dialTls,
      maxConnsPerAddress: o.maxConnsPerAddress,
      maxConns: o.maxConns,
      maxConcurrentDials: o.maxConcurrentDials,
      handshakeDeadlineMs: o.handshakeDeadlineMs,
    });
    this.manager.on('online', (id, link, _dir, note) => this.onOnline(id, link, note as Admission | undefined));
    this.manager.on('conflict', (id, peer, currentRemote) => this.onIdentityConflict(id, peer, currentRemote));
    this.manager.on('offline', (id, reason) => this.onOffline(id, reason));
  }

  private async begin(o: DaemonOptions): Promise<void> {
    this.eventUpkeep?.start();
    this.gcTimer = setInterval(() => this.collectTombstones(), TOMBSTONE_GC_MS);
    this.gcTimer.unref();
    for (const t of o.terminals ?? []) this.addTerminal(t);
    this.redialStoredTerminals(new Set((o.terminals ?? []).map((t) => t.id)));
    for (const l of o.listen ?? []) this.listenPorts.push(await this.manager.listen(l.host, l.port));
    for (const l of o.tlsListen ?? []) this.listenPorts.push(await this.manager.listen(l.host, l.port, l.tls));
  }

  // ------------------------------------------------------------- terminals

  /**
   * Terminals added through the admin API are dialled again after a restart,
   * with the address, protocol, pin and key they were added with (a terminal
   * also in the flag file is the flag file's). Terminals recorded before the
   * origin was kept are only named in the log.
   */
  private redialStoredTerminals(fromFlags: ReadonlySet<string>): void {
    for (const t of this.store.dialTerminalsAddedBy('api')) {
      if (fromFlags.has(t.id)) continue;
      const at = (t.address ?? '').lastIndexOf(':');
      const host = at > 0 ? t.address!.slice(0, at).replace(/^\[(.*)\]$/, '$1') : '';
      const port = at > 0 ? Number(t.address!.slice(at + 1)) : NaN;
      if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
        this.log.warn({ terminal: t.id, address: t.address }, 'terminal added through the admin API has no address it can be dialled at; not dialled');
        continue;
      }
      try {
        this.addTerminal({ id: t.id, host, port, protocol: t.protocol, ...(t.dialKey ? { key: t.dialKey } : {}), ...(t.dialPin ? { pin: t.dialPin } : {}) }, undefined, 'api');
      } catch (e) {
        this.log.warn({ terminal: t.id, err: (e as Error).message }, 'terminal added through the admin API not dialled');
      }
    }
    const unknown = this.store.dialTerminalsAddedBy(null).filter((t) => !fromFlags.has(t.id));
    if (unknown.length)
      this.log.warn({ terminals: unknown.map((t) => t.id) }, 'terminals recorded by an earlier version are in neither the flag file nor known to be added through the admin API: not dialled; add them again (flag file or `termsync terminals add`)');
  }

  /**
   * Adds (or updates) a terminal the server dials, approved. `addedBy` 'api':
   * it is remembered with how to dial it, and dialled again after a restart;
   * 'flags': the flag file names it at every start.
   */
  addTerminal(t: DialTarget, accessGroups?: number[], addedBy: 'flags' | 'api' = 'flags'): TerminalRow {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(t.id)) throw new Error(`terminal ID ${JSON.stringify(t.id)} must be 1..64 letters, digits, '.', '_' or '-'`);
    const protocol = checkProtocol(this.drivers, t);
    const row = this.store.upsertDialTerminal(
      { id: t.id, direction: 'dial', address: `${t.host}:${t.port}`, approved: true, protocol, ...(accessGroups ? { accessGroups } : {}) },
      { addedBy, pin: t.pin, key: t.key },
    );
    const known = this.manager.target(t.id);
    if (known && targetChanged(known, t)) {
      this.manager.removeTarget(t.id);
      void forgetTarget(this.drivers, known, this.log);
    }
    this.manager.addTarget(t);
    return row;
  }

  /** Removes a terminal: its session ends, its feed cursor and owed set go; the server's users stay. */
  removeTerminal(id: string): boolean {
    const known = this.manager.target(id);
    this.manager.removeTarget(id);
    if (known) void forgetTarget(this.drivers, known, this.log);
    this.pendingLinks.get(id)?.close('terminal removed');
    this.pendingLinks.delete(id);
    this.pendingBindings.delete(id);
    this.engine.forget(id);
    this.online.delete(id);
    const removed = this.store.deleteTerminal(id);
    // its cursor may have been the last one behind some tombstones
    if (removed) this.collectTombstones();
    return removed;
  }

  /** Removes the tombstones every terminal's feed cursor has passed (also every TOMBSTONE_GC_MS). */
  collectTombstones(): number {
    try {
      return this.store.collectTombstones();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'tombstones not collected: the database refused the write');
      return 0;
    }
  }

  /** Approves a pending dial-in terminal; its live session starts syncing at once. */
  approve(id: string): boolean {
    const row = this.store.getTerminal(id);
    if (!row) return false;
    const link = this.pendingLinks.get(id);
    const held = link && !link.closed ? this.pendingBindings.get(id) : undefined;
    // approving a held session approves what it presented: the ID is bound to that from now on
    this.store.updateTerminal(id, { approved: true, ...(held ? { identity: JSON.stringify(held.presented), address: link!.remote } : {}) });
    if (held) this.log.info({ terminal: id, binding: describeBinding(held.presented) }, 'terminal approved and bound to the credential of its session');
    if (link && !link.closed) {
      this.pendingLinks.delete(id);
      this.pendingBindings.delete(id);
      this.goOnline(id, link);
    }
    return true;
  }

  setTerminalGroups(id: string, accessGroups: number[]): boolean {
    return this.store.updateTerminal(id, { accessGroups }) !== null;
  }

  terminals(): TerminalView[] {
    const owed = this.store.owedCounts().byTerminal;
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
      protocol: t.protocol,
    }));
  }

  /**
   * A dial-in session authenticated: which terminal is it? A known device ID
   * must present what it is bound to (src/terminal/identity.ts), or it is held
   * pending; a device ID the server dials may not dial in; a new device ID is
   * recorded (auto-approved when --auto-approve allows its address) within
   * the rate of new device IDs, else refused.
   */
  private resolveDialIn(hello: Hello, peer: PeerCredential): { id: string; note: Admission } {
    const d = this.admission.decide(this.store.getTerminalByDeviceId(hello.deviceId), hello.deviceId, peer);
    switch (d.kind) {
      case 'refuse':
        if (d.mismatch) this.recordMismatch(d.mismatch.terminalId, peer, d.mismatch.why);
        if (d.rateLimited) this.noteNewDeviceRefused(hello.deviceId, peer);
        throw new SessionRefused(d.reason);
      case 'known':
        if (d.bind) {
          this.tryWrite(d.id, () => this.store.updateTerminal(d.id, { identity: JSON.stringify(d.presented) }));
          this.log.info({ terminal: d.id, binding: describeBinding(d.presented) }, 'terminal bound to the credential of its session');
        }
        return { id: d.id, note: { presented: d.presented, mismatch: d.mismatch } };
      case 'new':
        if (d.outsideCidr) this.log.warn({ terminal: d.id, remote: peer.remote }, 'not auto-approved: the address is outside --auto-approve-from');
        this.store.upsertTerminal({ id: d.id, direction: 'listen', deviceId: hello.deviceId, address: peer.remote, approved: d.approved, identity: JSON.stringify(d.presented) });
        return { id: d.id, note: { presented: d.presented, mismatch: false } };
    }
  }

  /** Only a pending session may be replaced, and only by one that presents what the ID is bound to. */
  private onConflict(id: string, peer: PeerCredential, current: DeviceSession): 'refuse' | 'replace' {
    const held = this.pendingBindings.get(id);
    if (this.pendingLinks.get(id) !== current || !held?.mismatch) return 'refuse';
    const row = this.store.getTerminal(id);
    return this.admission.mayReplace(parseBinding(row?.identity ?? null), row?.deviceId ?? null, peer) ? 'replace' : 'refuse';
  }

  private onIdentityConflict(id: string, peer: PeerCredential, currentRemote: string): void {
    const r = this.store.recordEventDurably({ type: DaemonEvent.PEER_IDENTITY_CONFLICT, terminalId: id, detail: JSON.stringify({ remote: peer.remote, current: currentRemote }) });
    // a peer retrying in a loop is logged as often as its events are written (the rest are counted in EVENTS_SUPPRESSED)
    if (!('suppressed' in r))
      this.log.warn({ terminal: id, remote: peer.remote, current: currentRemote }, 'a second session claimed a terminal that is online: refused; the current session keeps running');
  }

  private recordMismatch(id: string, peer: PeerCredential, why: string): void {
    const r = this.store.recordEventDurably({ type: DaemonEvent.PEER_IDENTITY_MISMATCH, terminalId: id, detail: JSON.stringify({ remote: peer.remote, reason: why }) });
    if (!('suppressed' in r))
      this.log.warn({ terminal: id, remote: peer.remote, reason: why }, 'terminal identity does not match');
  }

  private noteNewDeviceRefused(deviceId: number, peer: PeerCredential): void {
    // one log line and one event a minute at most, however fast new IDs arrive
    const detail = this.admission.noteRefusedNewDevice(deviceId, peer);
    if (!detail) return;
    this.log.warn({ deviceId, remote: peer.remote, refused: detail.refusedSinceLast }, 'new device IDs arrive faster than --auto-approve-rate: refused');
    this.store.recordEventDurably({ type: DaemonEvent.NEW_DEVICE_REFUSED, detail: JSON.stringify(detail) });
  }

  private onOnline(id: string, link: DeviceSession, admission?: Admission): void {
    const row = this.store.getTerminal(id);
    const ident = link.identity;
    // Row updates are best effort: a database that refuses writes must not keep a
    // terminal from syncing once it works again (the sync engine retries its own writes).
    // A session that does not match the ID's binding changes nothing of the row until approved.
    const goesOnline = row !== null && row.approved && !admission?.mismatch;
    // A terminal that goes online gets its identity and its state in one write (one transaction per connect, not two).
    if (!admission?.mismatch)
      this.tryWrite(id, () =>
        this.store.updateTerminal(id, {
          ...(goesOnline ? { state: 'online' as const } : {}),
          deviceId: ident.deviceId,
          model: ident.model,
          firmware: ident.firmware,
          userCapacity: ident.userCapacity,
          maxBatch: link.capabilities.maxBatch,
          protocol: ident.protocol,
          lastSeen: Date.now(),
          ...(row?.direction === 'listen' ? { address: link.remote } : {}),
        }),
      );
    if (!row || !row.approved || admission?.mismatch) {
      if (admission?.mismatch) {
        const bound = parseBinding(row?.identity ?? null);
        this.recordMismatch(id, { remote: link.remote, address: '', certSha256: null }, `bound to ${bound ? describeBinding(bound) : '?'}; this session presented ${describeBinding(admission.presented)}: held pending until approved`);
      }
      this.pendingLinks.set(id, link);
      if (admission) this.pendingBindings.set(id, admission);
      this.tryWrite(id, () => this.store.updateTerminal(id, { state: 'pending' }));
      this.store.recordEventDurably({ type: DaemonEvent.TERMINAL_PENDING, terminalId: id, detail: JSON.stringify({ deviceId: ident.deviceId, remote: link.remote }) });
      this.log.warn({ terminal: id, deviceId: ident.deviceId, remote: link.remote }, admission?.mismatch ? 'terminal held as pending until approved: its identity does not match' : 'unknown terminal held as pending until approved');
      link.onClose(() => {
        if (this.pendingLinks.get(id) !== link) return;
        this.pendingLinks.delete(id);
        this.pendingBindings.delete(id);
      });
      return;
    }
    this.goOnline(id, link, true);
  }

  /** `stateWritten`: the caller already saved state 'online' and lastSeen. */
  private goOnline(id: string, link: DeviceSession, stateWritten = false): void {
    this.online.add(id);
    if (!stateWritten) this.tryWrite(id, () => this.store.updateTerminal(id, { state: 'online', lastSeen: Date.now() }));
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

  /**
   * A server-side create or change: stored with its feed entry (one write,
   * whatever the number of terminals); every terminal in scope reads it from
   * the feed. `pushedTo`: the terminals in scope now.
   */
  putUser(u: UserRecord): { created: boolean; changed: boolean; pushedTo: string[] } {
    const problem = validateUser(u);
    if (problem) throw new Error(problem);
    const r = this.store.putUserFromServer(u);
    return { created: r.created, changed: r.changed, pushedTo: r.changed ? this.targetsFor(u) : [] };
  }

  /** A server-side delete: the user goes from the database (a tombstone in the feed) and from the terminals. */
  deleteUser(id: string): boolean {
    return this.store.deleteUser(id);
  }

  /** Terminals a server-side change of this user goes to, per the sync mode (approved, in scope). */
  targetsFor(user: UserRecord): string[] {
    const mode = this.engine.syncMode;
    if (mode === 'off') return [];
    const groups = new Set(user.accessGroups);
    return this.store
      .listTerminals()
      .filter((t) => t.approved && (mode !== 'specific' || t.accessGroups.some((g) => groups.has(g))))
      .map((t) => t.id);
  }

  setSyncMode(mode: SyncMode): void {
    this.store.setSyncMode(mode);
    this.engine.useSyncMode(mode);
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
    if (this.gcTimer) clearInterval(this.gcTimer);
    const finished = await this.engine.stop(deadlineMs);
    if (!finished) this.log.warn({ deadlineMs }, 'sync jobs still running at shutdown; their pushes stay in the outbox');
    await this.manager.close();
    // a driver that holds a connection of its own (the G-SDK driver's device gateway channel) lets it go
    closeDrivers(this.drivers);
    for (const id of this.online) {
      try {
        this.store.updateTerminal(id, { state: 'offline' });
      } catch {
        // closing anyway
      }
    }
    await this.eventUpkeep?.stop();
    this.store.flushPendingEvents();
    this.store.flushSuppressedEvents();
    await this.store.stopCheckpointer();
    this.store.close();
  }
}
