// The ZK driver's DeviceSession (src/sync/ports.ts): one authenticated
// connection to one ZK terminal, in the domain's terms.
//
// A ZK terminal has no event log: it announces a user enrolled at it
// (EF_ENROLLUSER) and nothing else. So every read of the user table (at the
// session's start, on the poll, on EF_ENROLLUSER, and whenever the engine lists
// or pulls users) is diffed against what the driver last saw from that
// terminal (ZkChangeTracker), and what changed becomes facts: 'user-changed'
// for users new or different, 'user-deleted' for users gone. Refs are poll
// generations of this session (ascending); the epoch is new with every
// session, so the engine compares user lists at every connect. Writes and
// deletes the server made are noted in the tracker before the next read, so
// they never come back as facts (no echo).
//
// Reads, writes and deletes run one at a time (a write never lands between a
// read and its diff). Users are keyed by user ID; the terminal's uid map lives
// in the client and is read again with every session.
import type { Logger } from 'pino';
import type { UserRecord } from '../../model/user.js';
import {
  DriverError,
  type DeviceFact,
  type DeviceIdentity,
  type DeviceSession,
  type DriverCapabilities,
  type FeedState,
  type ReadResult,
  type UserListing,
  type WriteResult,
} from '../../sync/ports.js';
import { ZkError, type ZkClient, type ZkDeviceInfo, type ZkRealtimeEvent } from './client.js';
import { EventFlag } from './constants.js';
import { userToZk, zkToUser, ZK_PARTS, ZkMappingError, type ZkExtras } from './mapping.js';
import type { ZkTemplate, ZkUser } from './records.js';
import { ZkChangeTracker, zkUserDigest } from './tracker.js';

export const PROTOCOL = 'zk';

/** Most users per read or write request the engine hands over (each user is its own ZK command anyway). */
export const ZK_MAX_BATCH = 50;

/** longest wait for the goodbye (EXIT) when a session is closed */
const CLOSE_GRACE_MS = 1_000;

/** A table read this recent answers getUsers without reading again (the engine pulls right after a fact). */
const FRESH_READ_MS = 1_000;

/** What the driver shares between the sessions of all its terminals. */
export interface ZkDriverMemory {
  /** what each terminal (by terminal ID) last showed; kept across reconnects */
  tracker: ZkChangeTracker;
  /** what ZK terminals told about a user beyond the termsync record (plain password, level, group, templates), by user ID */
  extras: Map<string, ZkExtras>;
}

export interface ZkSessionOptions {
  terminalId: string;
  remote: string;
  client: ZkClient;
  info: ZkDeviceInfo;
  memory: ZkDriverMemory;
  /** read and diff the table this often, ms; 0 = only on events and on the engine's reads */
  pollMs: number;
  log?: Logger;
}

let lastEpoch = 0;
/** A new epoch for every session: above every one handed out before (time-based, so also above those of an earlier run). */
function newEpoch(): number {
  lastEpoch = Math.max(lastEpoch + 1, Math.floor(Date.now() / 1000));
  return lastEpoch;
}

/** A failed ZK request as the port's reason. */
export function zkReason(e: unknown): DriverError {
  if (e instanceof DriverError) return e;
  if (e instanceof ZkError) {
    switch (e.code) {
      case 'TIMEOUT':
      case 'CLOSED':
      case 'CONNECT_FAILED':
        return new DriverError('transport', e.message);
      case 'UNAUTHORIZED':
      case 'INVALID':
        return new DriverError('invalid', e.message);
      case 'NOT_FOUND':
        return new DriverError('not-found', e.message);
      case 'REFUSED':
        return new DriverError('invalid', e.message);
      case 'PROTOCOL':
      case 'UNEXPECTED_REPLY':
        return new DriverError('unreadable', e.message);
    }
  }
  return new DriverError('transport', (e as Error).message);
}

interface Snapshot {
  at: number;
  users: Map<string, ZkUser>;
  templates: ZkTemplate[];
}

type ScanCause = 'connect' | 'poll' | 'EF_ENROLLUSER' | 'list' | 'read';

export class ZkSession implements DeviceSession {
  readonly identity: DeviceIdentity;
  readonly capabilities: DriverCapabilities;
  readonly remote: string;
  readonly epoch = newEpoch();
  private readonly client: ZkClient;
  private readonly o: ZkSessionOptions;
  private readonly tracker: ZkChangeTracker;
  private readonly closeFns: ((reason: string) => void)[] = [];
  private closeReason: string | undefined;
  /** the reason close() was called with, while it says goodbye */
  private closingReason: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  private snap: Snapshot = { at: 0, users: new Map(), templates: [] };
  /** poll generation: the ref of the facts found by the latest read */
  private gen = 0;
  private acked = 0;
  /** facts handed over and not acknowledged yet */
  private unacked: DeviceFact[] = [];
  /** most unacknowledged facts (WatchOptions.window) */
  private window = Number.MAX_SAFE_INTEGER;
  private onFacts: ((epoch: number, facts: DeviceFact[]) => void) | undefined;
  /** facts found and not handed over yet (before the feed starts, or beyond the window) */
  private held: DeviceFact[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private scanQueued = false;

  constructor(o: ZkSessionOptions) {
    this.o = o;
    this.client = o.client;
    this.remote = o.remote;
    this.tracker = o.memory.tracker;
    const i = o.info;
    this.identity = {
      protocol: PROTOCOL,
      serial: i.serialNumber || undefined,
      model: i.platform || i.deviceName || 'ZK terminal',
      firmware: i.firmware,
      userCapacity: i.counts.userCapacity > 0 ? i.counts.userCapacity : 0,
    };
    this.capabilities = { eventLog: 'none', realtime: 'new-users-only', listing: 'full-read', maxBatch: ZK_MAX_BATCH, parts: ZK_PARTS };
    this.client.on('closed', (e: ZkError) => this.ended(this.closingReason ?? e.message));
    this.client.on('event', (e: ZkRealtimeEvent) => {
      if (e.flag === EventFlag.ENROLLUSER) this.scanSoon('EF_ENROLLUSER');
    });
  }

  /** The first read of the session: the uid map and the baseline the polls diff against. */
  async start(): Promise<void> {
    await this.scan('connect');
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  onClose(fn: (reason: string) => void): void {
    if (this.closeReason !== undefined) fn(this.closeReason);
    else this.closeFns.push(fn);
  }

  /** Says goodbye (EXIT) when the connection still works, within a second; the session ends with `reason`. */
  async close(reason: string): Promise<void> {
    if (this.closeReason !== undefined) return;
    this.closingReason ??= reason;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.client.close(), new Promise<void>((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    this.ended(reason);
  }

  private ended(reason: string): void {
    if (this.closeReason !== undefined) return;
    this.closeReason = reason;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.client.destroy();
    for (const fn of this.closeFns.splice(0)) fn(reason);
  }

  // ------------------------------------------------------------ the feed

  async feedState(): Promise<FeedState & { userCount: number }> {
    try {
      const counts = await this.client.freeSizes();
      return { epoch: this.epoch, firstRef: 0, lastRef: this.gen, userCount: counts.users };
    } catch (e) {
      throw zkReason(e);
    }
  }

  /**
   * Starts the feed. `o.window`: most facts handed over and not acknowledged;
   * the rest wait here (in order) until ack() makes room, so a read that finds
   * many changes at once never floods the engine.
   */
  async watch(_afterRef: number, onFacts: (epoch: number, facts: DeviceFact[]) => void, o?: { window?: number }): Promise<FeedState> {
    if (this.closed) throw new DriverError('transport', `ZK terminal ${this.o.terminalId}: the session has ended`);
    this.onFacts = onFacts;
    if (o?.window !== undefined && o.window >= 1) this.window = o.window;
    if (this.o.pollMs > 0 && !this.pollTimer) {
      this.pollTimer = setInterval(() => this.scanSoon('poll'), this.o.pollMs);
      this.pollTimer.unref();
    }
    if (this.held.length) setImmediate(() => this.flush());
    return { epoch: this.epoch, firstRef: 0, lastRef: this.gen };
  }

  /** The facts of one read share its ref, and the window may split them: an ack covers every fact handed over up to `ref`. */
  ack(ref: number): void {
    if (ref > this.acked) this.acked = ref;
    this.unacked = this.unacked.filter((f) => f.ref > ref);
    if (this.held.length) this.flush();
  }

  private deliver(facts: DeviceFact[]): void {
    if (facts.length === 0 || this.closed) return;
    this.held.push(...facts);
    if (this.onFacts) this.flush();
  }

  /** Hands over held facts, as many as the window has room for. */
  private flush(): void {
    if (!this.onFacts || this.closed) return;
    const room = this.window - this.unacked.length;
    if (room <= 0 || this.held.length === 0) return;
    const batch = this.held.splice(0, room);
    this.unacked.push(...batch);
    try {
      this.onFacts(this.epoch, batch);
    } catch (e) {
      this.o.log?.error({ terminal: this.o.terminalId, err: (e as Error).message }, 'ZK facts handler failed');
    }
  }

  /** A read soon (after the one running, if any); a failure ends nothing here (a dead connection closes the session itself). */
  private scanSoon(cause: ScanCause): void {
    if (this.closed || this.scanQueued) return;
    this.scanQueued = true;
    this.exclusive(async () => {
      this.scanQueued = false;
      await this.doScan(cause);
    }).catch((e) => this.o.log?.warn({ terminal: this.o.terminalId, cause, err: (e as Error).message }, 'ZK terminal: reading the user table failed'));
  }

  private scan(cause: ScanCause): Promise<void> {
    return this.exclusive(() => this.doScan(cause));
  }

  /** Reads users and templates, diffs them against the last read of this terminal, and hands the differences over as facts. */
  private async doScan(cause: ScanCause): Promise<void> {
    const { users, recordSize } = await this.client.readUsers();
    const templates = await this.client.readTemplates();
    const diff = this.tracker.observe(this.o.terminalId, { users, templates, recordSize });
    this.snap = { at: Date.now(), users: new Map(users.map((u) => [u.userId, u])), templates };
    for (const id of diff.changed) this.learn(this.snap.users.get(id)!, templates);
    // The first read of a terminal since the daemon started is the baseline:
    // the engine compares user lists at every connect anyway.
    if (diff.firstRead || (diff.changed.length === 0 && diff.deleted.length === 0)) return;
    const ref = ++this.gen;
    const at = Date.now();
    const detail = cause === 'EF_ENROLLUSER' ? 'EF_ENROLLUSER' : `table read (${cause})`;
    const facts: DeviceFact[] = [
      ...diff.changed.map((userId): DeviceFact => ({ kind: 'user-changed', userId, ref, origin: 'device', at, detail })),
      ...diff.deleted.map((userId): DeviceFact => ({ kind: 'user-deleted', userId, ref, origin: 'device', at, detail: `table read (${cause}): user gone` })),
    ];
    this.deliver(facts);
  }

  /**
   * Keeps what a terminal holds beyond the termsync record (level, group, plain
   * password, templates) for a user changed at it, for writing the user to
   * other ZK terminals. A password read before stays when this terminal shows
   * none: it goes out only while it matches the server's PIN hash (userToZk).
   */
  private learn(u: ZkUser, templates: ZkTemplate[]): void {
    const now = zkToUser(u, templates).extras;
    const before = this.o.memory.extras.get(u.userId);
    if (now.password === '' && before?.password) now.password = before.password;
    this.o.memory.extras.set(u.userId, now);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(() => {
      if (this.closed) throw new DriverError('transport', `ZK terminal ${this.o.terminalId}: the session has ended (${this.closeReason})`);
      return fn();
    });
    this.lock = next.catch(() => undefined);
    return next;
  }

  // ------------------------------------------------------------ users

  async listUsers(): Promise<UserListing> {
    try {
      await this.scan('list');
    } catch (e) {
      throw zkReason(e);
    }
    const users = [...this.snap.users.values()].map((u) => zkToUser(u, this.snap.templates).user);
    return { kind: 'full-read', users };
  }

  async getUsers(userIds: string[]): Promise<ReadResult[]> {
    try {
      if (Date.now() - this.snap.at > FRESH_READ_MS) await this.scan('read');
    } catch (e) {
      throw zkReason(e);
    }
    return userIds.map((userId): ReadResult => {
      const z = this.snap.users.get(userId);
      if (!z) return { userId, user: null, reason: 'not-found', detail: `ZK terminal ${this.o.terminalId} holds no user ${JSON.stringify(userId)}` };
      return { userId, user: zkToUser(z, this.snap.templates).user };
    });
  }

  /**
   * Writes and deletes go by uid, so they run with the terminal disabled (nobody
   * at the device can enroll or delete meanwhile, which would take or free a
   * slot) and with the uid map confirmed first (enroll events and the user
   * count, or a fresh read): a user enrolled at the device is never overwritten.
   */
  private byUid<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(() =>
      this.client.withDisabled(async () => {
        await this.client.refreshMap();
        return fn();
      }),
    ).catch((e) => {
      throw zkReason(e);
    });
  }

  async putUsers(users: UserRecord[]): Promise<WriteResult[]> {
    return this.byUid(async () => {
      const out: WriteResult[] = [];
      for (const u of users) {
        if (!this.client.connected) {
          out.push({ ok: false, reason: 'transport', detail: `ZK terminal ${this.o.terminalId}: the connection closed` });
          continue;
        }
        out.push(await this.putOne(u));
      }
      return out;
    });
  }

  private async putOne(u: UserRecord): Promise<WriteResult> {
    const c = this.client;
    const existing = this.snap.users.get(u.id);
    let mapped;
    try {
      mapped = userToZk(u, { uid: c.uids.uidOf(u.id) ?? 0, extras: this.o.memory.extras.get(u.id), existing, recordSize: c.recordSize });
    } catch (e) {
      if (e instanceof ZkMappingError) return { ok: false, reason: 'invalid', detail: e.message };
      throw e;
    }
    const known = this.refusalFromTable(mapped.user);
    if (known) return known;
    // devices store uploaded templates as valid: remember them that way
    const templates = mapped.templates.map((t) => ({ ...t, flag: 1 }));
    try {
      const uid = await c.writeUser(mapped.user, templates.length > 0 ? templates : undefined);
      const stored: ZkUser = { ...mapped.user, uid };
      const tpls: ZkTemplate[] = templates.map((t) => ({ ...t, uid }));
      this.tracker.noteWritten(this.o.terminalId, u.id, zkUserDigest(stored, tpls, c.recordSize));
      this.snap.users.set(u.id, stored);
      this.snap.templates = [...this.snap.templates.filter((t) => t.uid !== uid), ...tpls];
      return { ok: true };
    } catch (e) {
      if (!(e instanceof ZkError)) throw e;
      if (e.code === 'INVALID') return { ok: false, reason: 'invalid', detail: e.message };
      if (e.code === 'REFUSED') return this.diagnose(mapped.user, e);
      return { ok: false, reason: zkReason(e).reason, detail: e.message };
    }
  }

  /** Why the terminal would refuse this record, from the table as last read (a ZK terminal answers a refusal without a reason). */
  private refusalFromTable(z: ZkUser): WriteResult | null {
    const users = this.snap.users;
    if (z.card !== 0) {
      for (const o of users.values()) {
        if (o.userId !== z.userId && o.card === z.card)
          return { ok: false, reason: 'duplicate-credential', detail: `card ${z.card} is held by user ${JSON.stringify(o.userId)} on ZK terminal ${this.o.terminalId}` };
      }
    }
    const cap = this.identity.userCapacity;
    if (!users.has(z.userId) && cap > 0 && users.size >= cap) return { ok: false, reason: 'full', detail: `ZK terminal ${this.o.terminalId} holds ${users.size} of ${cap} users` };
    return null;
  }

  /** After an ACK_ERROR: read the table again and say why, if it shows; else the record itself was not taken. */
  private async diagnose(z: ZkUser, e: ZkError): Promise<WriteResult> {
    try {
      const { users } = await this.client.readUsers();
      this.snap = { ...this.snap, at: 0, users: new Map(users.map((x) => [x.userId, x])) };
      const why = this.refusalFromTable(z);
      if (why) return why;
    } catch (re) {
      return { ok: false, reason: zkReason(re).reason, detail: (re as Error).message };
    }
    return { ok: false, reason: 'invalid', detail: `${e.message} (user ${JSON.stringify(z.userId)})` };
  }

  async deleteUsers(userIds: string[]): Promise<WriteResult[]> {
    return this.byUid(async () => {
      const out: WriteResult[] = [];
      for (const id of userIds) {
        if (!this.client.connected) {
          out.push({ ok: false, reason: 'transport', detail: `ZK terminal ${this.o.terminalId}: the connection closed` });
          continue;
        }
        this.tracker.noteDeleted(this.o.terminalId, id);
        try {
          await this.client.deleteUser(id);
          this.snap.users.delete(id);
          out.push({ ok: true });
        } catch (e) {
          if (!(e instanceof ZkError)) throw e;
          if (e.code !== 'NOT_FOUND') this.tracker.forgetWrite(this.o.terminalId, id);
          else this.snap.users.delete(id);
          out.push({ ok: false, reason: zkReason(e).reason, detail: e.message });
        }
      }
      return out;
    });
  }
}
