// One daemon of several on PostgreSQL (`termsync run --db postgres://...`,
// src/cluster/run.ts): the sessions (SessionManager, with the same driver
// registry as the single daemon: termsync, ZK, G-SDK), the sync engine on the
// PostgreSQL SiteStore, and the terminal leases that decide which of the
// shared dial targets this daemon drives. A lease taken adds the target (the
// manager dials it, the engine attaches the session); a lease lost or given
// back removes it (session closed, engine detached, a G-SDK terminal let go
// at the device gateway). Every lease change is a monitoring event
// (TERMINAL_LEASE_ACQUIRED / TERMINAL_LEASE_LOST).
//
// Fencing: the engine passes leases.token(T) as the `fence` of every cursor
// write of terminal T (EngineOptions.fenceFor); a write after the lease was
// lost (locally expired, or taken by another daemon: the database refuses the
// stale token) fails with LeaseLostError and closes only that session.
//
// Dial-in terminals (--listen, --tls-listen) are admitted by the single
// daemon's rules (src/terminal/admission.ts: identity binding, new-device
// rate, --auto-approve-from); one not approved, or not presenting what its ID
// is bound to, is held pending until approved (approve()). An admitted one is
// driven by the daemon it reached if its lease is free (or expired); if
// another daemon holds it the session is closed with the owner named, and the
// terminal dials again (e.g. through the balancer). The lease goes back when
// the session ends.
import type { Logger } from 'pino';
import { SessionManager, SessionRefused, type DialTarget, type ListenTls, type ManagerOptions } from '../terminal/manager.js';
import type { DeviceSession, TerminalDriver } from '../sync/ports.js';
import type { PgSiteStore } from '../store/pg/backend.js';
import type { SyncMode } from '../store/types.js';
import { SyncEngine, type EngineTuning } from '../sync/engine.js';
import { checkProtocol, closeDrivers, driverRegistry, forgetTarget, targetChanged, TERMSYNC } from '../drivers/registry.js';
import { DialInAdmission, SessionEvent, type AdmissionOptions } from '../terminal/admission.js';
import { describeBinding, type IdentityBinding, type PeerCredential } from '../terminal/identity.js';
import { LeaseManager, type LeaseLossReason } from './leases.js';

/** Monitoring events of the terminal leases (detail: JSON, see the README's "Monitoring events"). */
export const LeaseEvent = {
  /** detail: daemon, token (the fencing token), previousOwner (null: the lease was free), dialIn */
  TERMINAL_LEASE_ACQUIRED: 'TERMINAL_LEASE_ACQUIRED',
  /** detail: daemon, reason ('expired' | 'taken' | 'released' | 'database unreachable'), stopping */
  TERMINAL_LEASE_LOST: 'TERMINAL_LEASE_LOST',
} as const;

const LOSS_WORDS: Record<LeaseLossReason, string> = {
  taken: 'taken',
  expired: 'expired',
  unreachable: 'database unreachable',
  released: 'released',
  stopped: 'released',
};

export interface ClusterNodeOptions {
  store: PgSiteStore;
  /** every terminal of the site (the same flag file on every daemon) */
  targets: readonly DialTarget[];
  commKey: Buffer;
  /** comm keys of particular termsync terminals (by device ID), overriding the site key */
  terminalKeys?: Map<number, Buffer>;
  leaseSec: number;
  renewEveryMs?: number;
  log: Logger;
  heartbeatSec?: number;
  requestTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  maxConcurrentDials?: number;
  logFrames?: boolean;
  engine?: EngineTuning;
  /** drivers beside termsync (src/drivers/registry.ts configuredDrivers: ZK, G-SDK) */
  drivers?: TerminalDriver[];
  /** accept terminals that dial in on this address (plain TCP) */
  listen?: { host: string; port: number };
  /** accept terminals that dial in over TLS */
  tlsListen?: { host: string; port: number; tls: ListenTls }[];
  /** dial-in terminals not yet known are approved (shorthand for admission.autoApprove) */
  autoApprove?: boolean;
  /** the dial-in admission rules (identity binding, new-device rate, auto-approve ranges) */
  admission?: Omit<AdmissionOptions, 'ownKeys'>;
}

/** What the sessions manager hands the 'online' listener for a dial-in session. */
interface DialInNote {
  dialIn: true;
  deviceId: number;
  peer: PeerCredential;
}

/** A dial-in session held until an administrator approves its terminal. */
interface Held {
  link: DeviceSession;
  presented: IdentityBinding;
  bound: IdentityBinding | null;
  mismatch: boolean;
  deviceId: number;
}

export class ClusterNode {
  readonly engine: SyncEngine;
  readonly manager: SessionManager;
  readonly leases: LeaseManager;
  /** protocol name -> driver (src/drivers/registry.ts) */
  readonly drivers: ReadonlyMap<string, TerminalDriver>;
  readonly listenPorts: number[] = [];
  /** dial-in sessions refused because another daemon holds the lease */
  refusedDialIns = 0;
  private readonly byId: Map<string, DialTarget>;
  private readonly admission: DialInAdmission;
  private readonly pending = new Map<string, Held>();
  /** dial-in sessions this daemon drives */
  private readonly dialIns = new Map<string, DeviceSession>();
  /** terminals whose session the engine drives here */
  private readonly online = new Set<string>();
  private readonly log: Logger;
  private stopping = false;

  get store(): PgSiteStore {
    return this.o.store;
  }

  get daemonId(): string {
    return this.o.store.writerId;
  }

  private constructor(private readonly o: ClusterNodeOptions) {
    const log = (this.log = o.log);
    this.byId = new Map(o.targets.map((t) => [t.id, t]));
    this.drivers = driverRegistry({ log, heartbeatSec: o.heartbeatSec, requestTimeoutMs: o.requestTimeoutMs, logFrames: o.logFrames }, o.drivers);
    for (const t of o.targets) checkProtocol(this.drivers, t);
    this.admission = new DialInAdmission({ autoApprove: o.autoApprove, ...o.admission, ownKeys: o.terminalKeys });
    const managerOpts: ManagerOptions = {
      drivers: this.drivers,
      keyFor: (deviceId) => o.terminalKeys?.get(deviceId) ?? o.commKey,
      // the admission needs the database (asynchronous): it is decided once the session is up, see 'online'
      resolveDialIn: (hello, peer) => {
        const id = String(hello.deviceId);
        if (this.byId.has(id)) {
          void this.recordEvent({ type: SessionEvent.PEER_IDENTITY_MISMATCH, terminalId: id, detail: JSON.stringify({ remote: peer.remote, reason: `device ${id} is a terminal the server dials; it may not dial in` }) });
          throw new SessionRefused(`device ${id} is a terminal the server dials; dial-in refused`);
        }
        const note: DialInNote = { dialIn: true, deviceId: hello.deviceId, peer };
        return { id, note };
      },
      // only a held (pending, mismatched) session may be replaced, by one presenting what the ID is bound to
      onConflict: (id, peer, current) => {
        const held = this.pending.get(id);
        return held && held.link === current && held.mismatch && this.admission.mayReplace(held.bound, held.deviceId, peer) ? 'replace' : 'refuse';
      },
      log: log.child({ component: 'sessions' }),
      heartbeatSec: o.heartbeatSec ?? 10,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      logFrames: o.logFrames,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
      maxConcurrentDials: o.maxConcurrentDials,
    };
    this.manager = new SessionManager(managerOpts);
    this.engine = new SyncEngine({ ...o.engine, store: o.store, log: log.child({ component: 'sync' }), fenceFor: (id) => this.leases.token(id) });
    this.leases = new LeaseManager({
      db: o.store.db,
      daemonId: o.store.writerId,
      leaseSec: o.leaseSec,
      renewEveryMs: o.renewEveryMs,
      terminals: () => [...this.byId.keys()],
      logger: log.child({ component: 'leases' }),
      onAcquire: (id, token, previous) => {
        void this.recordEvent({ type: LeaseEvent.TERMINAL_LEASE_ACQUIRED, terminalId: id, detail: JSON.stringify({ daemon: this.daemonId, token, previousOwner: previous }) });
        const t = this.byId.get(id);
        if (t) this.manager.addTarget(t);
      },
      onLose: (id, reason) => this.leaseLost(id, reason),
    });
    this.manager.on('online', (id, link, _dir, note) => {
      if ((note as DialInNote | undefined)?.dialIn) {
        void this.dialedIn(id, link, note as DialInNote);
        return;
      }
      // a session that came up just as the lease went: not ours to drive
      if (this.leases.token(id) === undefined) {
        void link.close('terminal lease not held by this daemon');
        return;
      }
      this.attach(id, link, 'dial');
    });
    this.manager.on('conflict', (id, peer, currentRemote) => {
      log.warn({ terminal: id, remote: peer.remote, current: currentRemote }, 'a second session claimed a terminal that is online: refused; the current session keeps running');
      void this.recordEvent({ type: SessionEvent.PEER_IDENTITY_CONFLICT, terminalId: id, detail: JSON.stringify({ remote: peer.remote, current: currentRemote }) });
    });
    this.manager.on('offline', (id, why) => void this.offline(id, why));
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    const n = new ClusterNode(o);
    // every daemon may register the terminals: the rows are the same
    for (const t of o.targets) await n.register(t);
    await n.engine.setSyncMode(await o.store.getSyncMode());
    await n.leases.start();
    try {
      if (o.listen) n.listenPorts.push(await n.manager.listen(o.listen.host, o.listen.port));
      for (const l of o.tlsListen ?? []) n.listenPorts.push(await n.manager.listen(l.host, l.port, l.tls));
    } catch (e) {
      await n.stop();
      throw e;
    }
    return n;
  }

  private register(t: DialTarget): Promise<unknown> {
    return this.o.store.upsertTerminal({ id: t.id, direction: 'dial', address: `${t.host}:${t.port}`, approved: true, protocol: t.protocol ?? TERMSYNC });
  }

  /** best effort: a monitoring event, kept in memory while the database refuses writes */
  private recordEvent(ev: { type: string; terminalId?: string; detail?: string }): Promise<unknown> {
    return this.o.store.recordEventDurably(ev).catch((e: unknown) => this.log.warn({ type: ev.type, err: (e as Error).message }, 'monitoring event not recorded'));
  }

  private async leaseLost(id: string, reason: LeaseLossReason): Promise<void> {
    const t = this.byId.get(id);
    this.manager.removeTarget(id);
    this.engine.detach(id);
    // A lease given back (fair share, stop): a driver that holds the terminal
    // outside this process (the G-SDK device gateway's connection) lets it go
    // before the lease is free, so the next owner's dial never races with it.
    // A lease taken or expired may be another daemon's already: its
    // connection at the gateway is left alone.
    if (reason === 'released' || reason === 'stopped') {
      if (t) await forgetTarget(this.drivers, t, this.log);
      // still ours until given back: the state column says nobody drives it now
      await this.markOffline(id);
    }
    const link = this.dialIns.get(id);
    if (link) {
      this.dialIns.delete(id);
      void link.close(`terminal lease lost (${LOSS_WORDS[reason]}); dial again`);
    }
    await this.recordEvent({ type: LeaseEvent.TERMINAL_LEASE_LOST, terminalId: id, detail: JSON.stringify({ daemon: this.daemonId, reason: LOSS_WORDS[reason], ...(reason === 'stopped' ? { stopping: true } : {}) }) });
  }

  private async markOffline(id: string): Promise<void> {
    try {
      const row = await this.o.store.getTerminal(id);
      if (row && row.state === 'online') await this.o.store.upsertTerminal({ id, direction: row.direction, state: 'offline', lastSeen: Date.now() });
    } catch (e) {
      this.log.warn({ terminal: id, err: (e as Error).message }, 'terminal state not saved: the database refused the write');
    }
  }

  /** A session of a terminal whose lease this daemon holds: state and event written, the engine drives it. */
  private attach(id: string, link: DeviceSession, direction: 'dial' | 'listen'): void {
    const ident = link.identity;
    this.log.info({ terminal: id, remote: link.remote, daemon: this.daemonId }, 'terminal online');
    void this.o.store
      .upsertTerminal({
        id,
        direction,
        state: 'online',
        lastSeen: Date.now(),
        // the device ID column identifies termsync terminals that dial in; other protocols number their devices otherwise
        ...((ident.protocol ?? TERMSYNC) === TERMSYNC ? { deviceId: ident.deviceId } : {}),
        model: ident.model,
        firmware: ident.firmware,
        userCapacity: ident.userCapacity,
        maxBatch: link.capabilities.maxBatch,
        protocol: ident.protocol,
        ...(direction === 'listen' ? { address: link.remote } : {}),
      })
      .catch((e: unknown) => this.log.warn({ terminal: id, err: (e as Error).message }, 'terminal state not saved: the database refused the write'));
    void this.recordEvent({ type: SessionEvent.TERMINAL_ONLINE, terminalId: id, detail: JSON.stringify({ remote: link.remote, daemon: this.daemonId }) });
    this.online.add(id);
    void this.engine.attach(id, link);
  }

  private async offline(id: string, why: string): Promise<void> {
    const wasDriven = this.online.delete(id);
    this.engine.detach(id);
    if (this.dialIns.get(id)?.closed) this.dialIns.delete(id);
    if (this.stopping) return;
    if (wasDriven) {
      this.log.info({ terminal: id, reason: why, daemon: this.daemonId }, 'terminal offline');
      // the lease holder keeps the state column: a lease already gone may be another daemon's, online there
      if (this.leases.token(id) !== undefined) void this.markOffline(id);
      void this.recordEvent({ type: SessionEvent.TERMINAL_OFFLINE, terminalId: id, detail: JSON.stringify({ reason: why, daemon: this.daemonId }) });
    }
    // a dial-in terminal's lease goes back when its session ends: it may reach another daemon next
    if (!this.byId.has(id) && !this.dialIns.has(id)) {
      try {
        if (await this.leases.unclaim(id)) await this.recordEvent({ type: LeaseEvent.TERMINAL_LEASE_LOST, terminalId: id, detail: JSON.stringify({ daemon: this.daemonId, reason: 'released', sessionEnded: true }) });
      } catch (e) {
        this.log.warn({ terminal: id, err: (e as Error).message }, 'dial-in lease not given back; it expires after the TTL');
      }
    }
  }

  /** A terminal dialed in here: admitted by the site's rules, then driven if its lease is free (or ours). */
  private async dialedIn(id: string, link: DeviceSession, note: DialInNote): Promise<void> {
    const log = this.log;
    const { peer, deviceId } = note;
    try {
      const known = await this.o.store.getTerminal(id);
      const d = this.admission.decide(known, deviceId, peer);
      if (d.kind === 'refuse') {
        if (d.mismatch) await this.recordEvent({ type: SessionEvent.PEER_IDENTITY_MISMATCH, terminalId: d.mismatch.terminalId, detail: JSON.stringify({ remote: peer.remote, reason: d.mismatch.why }) });
        if (d.rateLimited) {
          const detail = this.admission.noteRefusedNewDevice(deviceId, peer);
          if (detail) {
            log.warn({ deviceId, remote: peer.remote, refused: detail.refusedSinceLast }, 'new device IDs arrive faster than --auto-approve-rate: refused');
            await this.recordEvent({ type: SessionEvent.NEW_DEVICE_REFUSED, detail: JSON.stringify(detail) });
          }
        }
        await link.close(d.reason);
        return;
      }
      if (d.kind === 'new') {
        if (d.outsideCidr) log.warn({ terminal: id, remote: peer.remote }, 'not auto-approved: the address is outside --auto-approve-from');
        await this.o.store.upsertTerminal({ id, direction: 'listen', deviceId, address: peer.remote, approved: d.approved, identity: JSON.stringify(d.presented), protocol: TERMSYNC });
      } else if (d.bind) {
        await this.o.store.upsertTerminal({ id, direction: 'listen', identity: JSON.stringify(d.presented) });
        log.info({ terminal: id, binding: describeBinding(d.presented) }, 'terminal bound to the credential of its session');
      }
      const approved = d.kind === 'new' ? d.approved : known!.approved;
      const mismatch = d.kind === 'known' && d.mismatch;
      if (!approved || mismatch) {
        this.hold(id, link, { link, presented: d.presented, bound: d.kind === 'known' ? d.bound : null, mismatch, deviceId });
        return;
      }
      await this.driveDialIn(id, link);
    } catch (e) {
      log.warn({ terminal: id, err: (e as Error).message }, 'dial-in terminal could not be admitted; session closed');
      await link.close(`terminal not admitted: ${(e as Error).message}`);
    }
  }

  private hold(id: string, link: DeviceSession, h: Held): void {
    this.pending.set(id, h);
    if (h.mismatch) {
      const why = `bound to ${h.bound ? describeBinding(h.bound) : '?'}; this session presented ${describeBinding(h.presented)}: held pending until approved`;
      this.log.warn({ terminal: id, remote: link.remote, reason: why }, 'terminal identity does not match');
      void this.recordEvent({ type: SessionEvent.PEER_IDENTITY_MISMATCH, terminalId: id, detail: JSON.stringify({ remote: link.remote, reason: why }) });
    }
    this.log.warn({ terminal: id, deviceId: h.deviceId, remote: link.remote }, h.mismatch ? 'terminal held as pending until approved: its identity does not match' : 'unknown terminal held as pending until approved');
    void this.recordEvent({ type: SessionEvent.TERMINAL_PENDING, terminalId: id, detail: JSON.stringify({ deviceId: h.deviceId, remote: link.remote }) });
    link.onClose(() => {
      if (this.pending.get(id)?.link === link) this.pending.delete(id);
    });
  }

  /** claims the lease of an admitted dial-in terminal and drives it, or closes the session naming the owner */
  private async driveDialIn(id: string, link: DeviceSession): Promise<void> {
    const r = await this.leases.claim(id);
    if ('owner' in r) {
      this.refusedDialIns++;
      this.log.info({ terminal: id, owner: r.owner }, 'dial-in terminal driven by another daemon; session closed');
      await link.close(`terminal ${id} is driven by daemon ${r.owner}; dial again (another daemon)`);
      return;
    }
    if (r.fresh) await this.recordEvent({ type: LeaseEvent.TERMINAL_LEASE_ACQUIRED, terminalId: id, detail: JSON.stringify({ daemon: this.daemonId, token: r.token, previousOwner: r.previous ?? null, dialIn: true }) });
    if (link.closed) {
      void this.offline(id, 'session ended while the lease was claimed');
      return;
    }
    this.dialIns.set(id, link);
    this.attach(id, link, 'listen');
  }

  /**
   * Approves a dial-in terminal: a session held here (pending) is bound to
   * what it presented and starts syncing (its lease claimed). False: unknown.
   */
  async approve(id: string): Promise<boolean> {
    const row = await this.o.store.getTerminal(id);
    if (!row) return false;
    const held = this.pending.get(id);
    const live = held && !held.link.closed ? held : undefined;
    await this.o.store.upsertTerminal({ id, direction: row.direction, approved: true, ...(live ? { identity: JSON.stringify(live.presented), address: live.link.remote } : {}) });
    if (live) {
      this.pending.delete(id);
      this.log.info({ terminal: id, binding: describeBinding(live.presented) }, 'terminal approved and bound to the credential of its session');
      await this.driveDialIn(id, live.link);
    }
    return true;
  }

  /** the terminals held pending on this daemon (dial-in sessions waiting for approval) */
  pendingTerminals(): string[] {
    return [...this.pending.keys()].sort();
  }

  // ------------------------------------------------------- reload (SIGHUP)

  /** Adds (or changes) a terminal of the flag file: leasable from the next heartbeat (run now). */
  async addTerminal(t: DialTarget): Promise<void> {
    checkProtocol(this.drivers, t);
    const before = this.byId.get(t.id);
    this.byId.set(t.id, t);
    await this.register(t);
    if (before && targetChanged(before, t) && this.manager.target(t.id)) {
      // held here: redial with the new address or key
      this.manager.removeTarget(t.id);
      await forgetTarget(this.drivers, before, this.log);
      this.manager.addTarget(t);
    }
    if (!before) await this.leases.tick().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'lease heartbeat failed'));
  }

  /**
   * Removes a terminal of the flag file: this daemon stops leasing it; a lease
   * held is given back and the session closed now. Its row and cursors stay
   * in the database (other daemons may still list it until they reload too).
   */
  async removeTerminal(id: string): Promise<void> {
    const t = this.byId.get(id);
    if (!t) return;
    this.byId.delete(id);
    if (this.leases.token(id) !== undefined) {
      this.manager.removeTarget(id);
      await forgetTarget(this.drivers, t, this.log);
    }
    // its lane goes (cursors and owed set stay in the database)
    this.engine.forget(id);
    // the heartbeat gives back leases of terminals this daemon no longer knows (onLose 'released')
    await this.leases.tick().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'lease heartbeat failed'));
  }

  /** writes the sync mode to the database and applies it here (the other daemons take it when they reload or restart) */
  setSyncMode(mode: SyncMode): Promise<void> {
    return this.engine.setSyncMode(mode);
  }

  // -------------------------------------------------------------- lifecycle

  /** a clean stop: leases given back (recorded), sessions closed, engine stopped */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.leases.stop();
    await this.manager.close();
    await this.engine.stop();
    closeDrivers(this.drivers);
    await this.o.store.flushPendingEvents().catch(() => 0);
    await this.o.store.flushSuppressedEvents().catch(() => 0);
  }

  /**
   * What a crash looks like to the other daemons (tests): no more heartbeats,
   * no lease given back, the sessions cut.
   */
  async crash(): Promise<void> {
    this.stopping = true;
    this.leases.halt();
    await this.manager.close();
    await this.engine.stop(0).catch(() => false);
    closeDrivers(this.drivers);
  }
}
