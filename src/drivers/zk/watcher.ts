// Keeps one ZK terminal in view: connects (and reconnects with backoff), reads
// the user table and templates at every (re)connect, on a poll interval, and
// whenever the terminal announces a new user (EF_ENROLLUSER), and reports what
// changed or disappeared since the last read (the tracker's diff, mapped to
// termsync users). Writes and deletes go through here too, so the tracker knows
// them and they never come back as device changes.
//
// This is the layer the sync engine's port will wrap: it speaks termsync users
// and user IDs, never uids or frames.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { UserRecord } from '../../model/user.js';
import { ZkClient, ZkError, type ZkClientOptions, type ZkDeviceInfo, type ZkRealtimeEvent } from './client.js';
import { EventFlag } from './constants.js';
import { userToZk, zkToUser, type ToZk, type ZkExtras } from './mapping.js';
import type { ZkTemplate, ZkUser } from './records.js';
import { ZkChangeTracker, zkUserDigest } from './tracker.js';

export const DEFAULT_ZK_POLL_MS = 30_000;

export interface ZkWatcherOptions {
  /** the terminal's name in the tracker and in logs */
  terminal: string;
  client: ZkClientOptions;
  /** read and diff the table this often (default 30 s); 0 = only at connect and on events */
  pollMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** shared between watchers so a daemon can persist it; one per watcher by default */
  tracker?: ZkChangeTracker;
  logger?: Logger;
}

export interface ZkSeenUser {
  user: UserRecord;
  extras: ZkExtras;
  /** the record as the terminal holds it */
  zk: ZkUser;
}

export type ZkScanReason = 'connect' | 'poll' | 'enroll-event' | 'manual';

export interface ZkScan {
  reason: ZkScanReason;
  /** true on the first read of this terminal (every user is reported) */
  firstRead: boolean;
  /** users new or changed on the terminal (not by termsync) */
  changed: ZkSeenUser[];
  /** user IDs gone from the terminal (not deleted by termsync) */
  deleted: string[];
  /** termsync's own writes and deletes that the read confirmed */
  confirmed: string[];
  userCount: number;
}

export class ZkWatcher extends EventEmitter {
  readonly terminal: string;
  readonly tracker: ZkChangeTracker;
  private readonly opts: ZkWatcherOptions;
  private readonly log: Logger | undefined;
  private client: ZkClient | undefined;
  private stopped = true;
  private backoff = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<ZkScan> | undefined;
  private rescan: ZkScanReason | undefined;
  /** scans, writes and deletes run one at a time, so a write never lands between a scan's read and its diff */
  private lock: Promise<unknown> = Promise.resolve();
  /** the terminal's users as last read, by user ID */
  private current = new Map<string, ZkUser>();
  info: ZkDeviceInfo | undefined;

  constructor(o: ZkWatcherOptions) {
    super();
    this.opts = o;
    this.terminal = o.terminal;
    this.tracker = o.tracker ?? new ZkChangeTracker();
    this.log = o.logger;
  }

  get connected(): boolean {
    return !!this.client?.connected;
  }

  /** Starts connecting (and keeps reconnecting until stop). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.reconnectTimer = undefined;
    this.pollTimer = undefined;
    const c = this.client;
    this.client = undefined;
    await this.scanning?.catch(() => undefined);
    await c?.close();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let c: ZkClient | undefined;
    try {
      c = await ZkClient.connect(this.opts.client);
      if (this.stopped) {
        await c.close();
        return;
      }
      this.client = c;
      c.on('closed', (e: ZkError) => this.onClosed(c!, e));
      c.on('event', (e: ZkRealtimeEvent) => {
        if (e.flag === EventFlag.ENROLLUSER) this.scanSoon('enroll-event');
      });
      this.info = await c.deviceInfo();
      await c.registerEvents(EventFlag.ENROLLUSER);
      this.backoff = 0;
      this.emit('connected', this.info);
      await this.scan('connect');
      const pollMs = this.opts.pollMs ?? DEFAULT_ZK_POLL_MS;
      if (pollMs > 0 && !this.stopped) {
        this.pollTimer = setInterval(() => this.scanSoon('poll'), pollMs);
        this.pollTimer.unref();
      }
    } catch (e) {
      this.log?.warn({ terminal: this.terminal, err: (e as Error).message }, 'ZK terminal: connect failed');
      if (c && this.client === c) c.destroy();
      else if (!this.client) this.scheduleReconnect();
    }
  }

  private onClosed(c: ZkClient, e: ZkError): void {
    if (this.client !== c) return;
    this.client = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.emit('disconnected', e);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const min = this.opts.reconnectMinMs ?? 250;
    const max = this.opts.reconnectMaxMs ?? 10_000;
    const base = Math.min(max, min * 2 ** this.backoff++);
    const ms = base * (0.8 + Math.random() * 0.4);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, ms);
    this.reconnectTimer.unref();
  }

  /** A scan as soon as the current one (if any) is done; errors are logged (the session closes itself). */
  private scanSoon(reason: ZkScanReason): void {
    if (this.scanning) {
      this.rescan ??= reason;
      return;
    }
    this.scan(reason).catch((e) => this.log?.warn({ terminal: this.terminal, reason, err: (e as Error).message }, 'ZK terminal: scan failed'));
  }

  /** Reads the table and templates now and reports what changed on the terminal. */
  scan(reason: ZkScanReason = 'manual'): Promise<ZkScan> {
    if (this.scanning) return this.scanning.then(() => this.scan(reason));
    const run = this.exclusive(() => this.doScan(reason)).finally(() => {
      this.scanning = undefined;
      const again = this.rescan;
      this.rescan = undefined;
      if (again && this.connected) this.scanSoon(again);
    });
    this.scanning = run;
    return run;
  }

  private async doScan(reason: ZkScanReason): Promise<ZkScan> {
    const c = this.need();
    const { users, recordSize } = await c.readUsers();
    const templates = await c.readTemplates();
    const diff = this.tracker.observe(this.terminal, { users, templates, recordSize });
    this.current = new Map(users.map((u) => [u.userId, u]));
    const changed = diff.changed.map((id) => {
      const zk = this.current.get(id)!;
      return { ...zkToUser(zk, templates), zk };
    });
    const scan: ZkScan = { reason, firstRead: diff.firstRead, changed, deleted: diff.deleted, confirmed: diff.confirmed, userCount: users.length };
    this.emit('scan', scan);
    return scan;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private need(): ZkClient {
    const c = this.client;
    if (!c?.connected) throw new ZkError('CLOSED', `ZK terminal ${this.terminal} is not connected`);
    return c;
  }

  /**
   * Writes a termsync user to the terminal (with the ZK-only parts from
   * `extras`, e.g. what another ZK terminal holds). The write is remembered so
   * the next scan does not report it. Returns what was written and left out.
   */
  putUser(u: UserRecord, extras?: ZkExtras): Promise<ToZk> {
    return this.exclusive(() => this.doPut(u, extras));
  }

  /**
   * Writes many users in one go: the terminal is disabled meanwhile (nobody can
   * enroll at it), its table read once for the uid map, then every user written.
   * Results in order; a user the terminal refuses gets its error, the rest go on.
   */
  putUsers(list: { user: UserRecord; extras?: ZkExtras }[]): Promise<(ToZk | Error)[]> {
    return this.exclusive(async () => {
      const c = this.need();
      return c.withDisabled(async () => {
        const { users } = await c.readUsers();
        this.current = new Map(users.map((u) => [u.userId, u]));
        const out: (ToZk | Error)[] = [];
        for (const { user, extras } of list) {
          try {
            out.push(await this.doPut(user, extras));
          } catch (e) {
            if (!(e instanceof Error) || !c.connected) throw e;
            out.push(e);
          }
        }
        return out;
      });
    });
  }

  private async doPut(u: UserRecord, extras?: ZkExtras): Promise<ToZk> {
    const c = this.need();
    const existing = this.current.get(u.id);
    const uid = c.uids.uidOf(u.id) ?? 0;
    const out = userToZk(u, { uid, extras, existing, recordSize: c.recordSize });
    // devices store uploaded templates as valid: remember them that way
    const templates = out.templates.map((t) => ({ ...t, flag: 1 }));
    const written = await c.writeUser(out.user, templates.length > 0 ? templates : undefined);
    const stored: ZkUser = { ...out.user, uid: written };
    const tpls: ZkTemplate[] = templates.map((t) => ({ ...t, uid: written }));
    this.tracker.noteWritten(this.terminal, u.id, zkUserDigest(stored, tpls, c.recordSize));
    this.current.set(u.id, stored);
    return { ...out, user: stored, templates: tpls };
  }

  /** Deletes a user by user ID; false when the terminal did not hold it. */
  deleteUser(userId: string): Promise<boolean> {
    return this.exclusive(() => this.doDelete(userId));
  }

  private async doDelete(userId: string): Promise<boolean> {
    const c = this.need();
    if (c.uids.uidOf(userId) === undefined) await c.readUsers();
    if (c.uids.uidOf(userId) === undefined) return false;
    this.tracker.noteDeleted(this.terminal, userId);
    try {
      await c.deleteUser(userId);
    } catch (e) {
      if (e instanceof ZkError && e.code === 'NOT_FOUND') return false;
      this.tracker.forgetWrite(this.terminal, userId);
      throw e;
    }
    this.current.delete(userId);
    return true;
  }
}
