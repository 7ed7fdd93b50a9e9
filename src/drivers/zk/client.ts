// A client of one ZK terminal over TCP 4370.
//
// One request at a time (the protocol has no pipelining): each request carries
// the session id the device gave at CONNECT and a reply id the device echoes.
// Frames are framed by their length (ZkFrameDecoder), so replies split anywhere
// or packed several to a read are both fine. A reply with another reply id (a
// late answer to a request that timed out) is skipped; a realtime event
// (command 500, reply id 0) goes to the event listeners and is acknowledged with
// ACK_OK at once. A request that gets no frame within `timeoutMs` fails with
// ZkError TIMEOUT and the connection is closed: after a silent device the
// position in the reply stream cannot be trusted.
//
// Users are keyed by user ID, never by the device-internal uid: the client keeps
// the terminal's uid map (refreshed by every table read) and hands out free uids
// for new users.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Logger } from 'pino';
import { encodeZkFrame, makeCommKey, ZkFrameDecoder, ZkProtocolError, type ZkFrame } from './codec.js';
import { Cmd, codeName, EventFlag, Reply, SAVE_USERTEMPS_DATA, Table, ZK_DEFAULT_PORT, ZK_READ_CHUNK, ZK_UPLOAD_CHUNK } from './constants.js';
import {
  decodeFreeSizes,
  decodeTemplateTable,
  decodeUserTable,
  encodePrepareBuffer,
  encodeReadBuffer,
  encodeUploadBuffer,
  encodeUserRecord,
  optionValue,
  readChunks,
  replyText,
  type FreeSizes,
  type ZkRecordSize,
  type ZkTemplate,
  type ZkUser,
} from './records.js';

export type ZkErrorCode =
  /** no frame within the request timeout */
  | 'TIMEOUT'
  /** the TCP connection could not be made */
  | 'CONNECT_FAILED'
  /** the connection closed (or was closed) */
  | 'CLOSED'
  /** the comm key was refused */
  | 'UNAUTHORIZED'
  /** the device answered ACK_ERROR (refused the command) */
  | 'REFUSED'
  /** a reply code or frame the request does not allow */
  | 'UNEXPECTED_REPLY'
  /** the byte stream or a table could not be decoded */
  | 'PROTOCOL'
  /** no such user on the terminal */
  | 'NOT_FOUND'
  /** a user that cannot go to this terminal (ID too long, table full) */
  | 'INVALID';

export class ZkError extends Error {
  constructor(
    readonly code: ZkErrorCode,
    message: string,
    /** the reply code, when the device answered */
    readonly reply?: number,
  ) {
    super(message);
    this.name = 'ZkError';
  }
}

export interface ZkClientOptions {
  host: string;
  port?: number;
  /** comm key password (0 = none) */
  password?: number;
  /** longest wait for any frame of a reply, ms (default 10000) */
  timeoutMs?: number;
  /** TCP connect timeout, ms (default timeoutMs) */
  connectTimeoutMs?: number;
  logger?: Logger;
}

export interface ZkDeviceInfo {
  firmware: string;
  serialNumber: string;
  platform: string;
  deviceName: string;
  counts: FreeSizes;
}

export interface ZkRealtimeEvent {
  /** the event flag (EventFlag.*), carried in the session field */
  flag: number;
  data: Buffer;
}

export interface ZkReadResult {
  users: ZkUser[];
  recordSize: ZkRecordSize;
}

/** reply ids of this many earlier requests count as late answers */
const RECENT_REPLIES = 16;

interface Waiter {
  resolve(f: ZkFrame): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** The device's uid for each user ID it holds, and the free uids. */
export class ZkUidMap {
  private readonly byId = new Map<string, number>();
  private readonly byUid = new Map<number, string>();

  /** Replaces the map with a fresh read of the terminal's table. */
  load(users: ZkUser[]): void {
    this.byId.clear();
    this.byUid.clear();
    for (const u of users) this.set(u.userId, u.uid);
  }

  set(userId: string, uid: number): void {
    const old = this.byId.get(userId);
    if (old !== undefined) this.byUid.delete(old);
    this.byId.set(userId, uid);
    this.byUid.set(uid, userId);
  }

  remove(userId: string): void {
    const uid = this.byId.get(userId);
    if (uid === undefined) return;
    this.byId.delete(userId);
    this.byUid.delete(uid);
  }

  uidOf(userId: string): number | undefined {
    return this.byId.get(userId);
  }

  userIdOf(uid: number): string | undefined {
    return this.byUid.get(uid);
  }

  get size(): number {
    return this.byId.size;
  }

  /** A uid no user holds: above the highest in use (as terminals number new users), else the lowest free one. */
  allocate(): number {
    let max = 0;
    for (const uid of this.byUid.keys()) if (uid > max) max = uid;
    if (max < 0xffff) return max + 1;
    for (let uid = 1; uid <= 0xffff; uid++) if (!this.byUid.has(uid)) return uid;
    throw new ZkError('INVALID', 'the terminal has no free uid left');
  }
}

export class ZkClient extends EventEmitter {
  readonly host: string;
  readonly port: number;
  private readonly timeoutMs: number;
  private readonly log: Logger | undefined;
  private socket: net.Socket | undefined;
  private readonly decoder = new ZkFrameDecoder();
  private session = 0;
  private replyId = 0;
  private inbox: ZkFrame[] = [];
  private waiter: Waiter | undefined;
  private failure: ZkError | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private loggedMismatches = 0;
  /** the terminal's uid for each user ID (refreshed by readUsers) */
  readonly uids = new ZkUidMap();
  /** record size measured by the last table read (72 until one was read) */
  recordSize: ZkRecordSize = 72;
  /** whether the terminal is disabled by us (no enrollment at the device meanwhile) */
  private disabledByUs = false;
  /** whether the uid map was read while the terminal was disabled (it cannot go stale until enable) */
  private mapFresh = false;
  /** registered for EF_ENROLLUSER: every enrollment at the device is announced to us */
  private enrollEventsOn = false;
  /** EF_ENROLLUSER events received, and their count when the uid map was last read */
  private enrollEvents = 0;
  private enrollEventsAtRead = -1;
  /** table reads done (for tests and stats) */
  tableReads = 0;
  /** frames skipped because their reply id belonged to an earlier request */
  staleFrames = 0;
  /** replies whose reply id was none we sent (taken as the answer) */
  foreignReplyIds = 0;
  /** realtime events received (each acknowledged) */
  eventsReceived = 0;

  private constructor(o: ZkClientOptions) {
    super();
    this.host = o.host;
    this.port = o.port ?? ZK_DEFAULT_PORT;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.log = o.logger;
  }

  /** Frames received whose checksum did not match (they were used anyway, and logged). */
  get checksumMismatches(): number {
    return this.decoder.checksumMismatches;
  }

  get connected(): boolean {
    return !!this.socket && !this.failure;
  }

  /** Connects, sends CONNECT and, when the device asks for it, AUTH with the comm key. */
  static async connect(o: ZkClientOptions): Promise<ZkClient> {
    const c = new ZkClient(o);
    await c.open(o.connectTimeoutMs ?? c.timeoutMs);
    try {
      await c.handshake(o.password ?? 0);
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  private open(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: this.host, port: this.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new ZkError('CONNECT_FAILED', `no TCP connection to ${this.host}:${this.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        s.off('error', onErr);
        s.on('error', (e) => this.fail(new ZkError('CLOSED', `connection to ${this.host}:${this.port} failed: ${e.message}`)));
        s.on('close', () => this.fail(new ZkError('CLOSED', `connection to ${this.host}:${this.port} closed`)));
        s.on('data', (chunk: Buffer) => this.onData(chunk));
        this.socket = s;
        resolve();
      });
      const onErr = (e: Error) => {
        clearTimeout(timer);
        reject(new ZkError('CONNECT_FAILED', `cannot connect to ${this.host}:${this.port}: ${e.message}`));
      };
      s.once('error', onErr);
    });
  }

  private async handshake(password: number): Promise<void> {
    const r = await this.exchange(Cmd.CONNECT, undefined, true);
    this.session = r.session;
    if (r.command === Reply.ACK_OK) return;
    if (r.command !== Reply.ACK_UNAUTH) throw new ZkError('UNEXPECTED_REPLY', `CONNECT answered ${codeName(r.command)}`, r.command);
    const a = await this.exchange(Cmd.AUTH, makeCommKey(password, this.session));
    if (a.command === Reply.ACK_UNAUTH) throw new ZkError('UNAUTHORIZED', `the terminal at ${this.host}:${this.port} refused the comm key`, a.command);
    if (a.command !== Reply.ACK_OK) throw new ZkError('UNEXPECTED_REPLY', `AUTH answered ${codeName(a.command)}`, a.command);
  }

  // ------------------------------------------------------------ frames in

  private onData(chunk: Buffer): void {
    let frames: ZkFrame[];
    try {
      frames = this.decoder.feed(chunk);
    } catch (e) {
      this.fail(new ZkError('PROTOCOL', `unreadable bytes from ${this.host}:${this.port}: ${(e as ZkProtocolError).message}`));
      return;
    }
    for (const f of frames) {
      if (!f.checksumOk && this.decoder.checksumMismatches > this.loggedMismatches) {
        this.loggedMismatches = this.decoder.checksumMismatches;
        this.log?.warn({ terminal: `${this.host}:${this.port}`, command: f.command, mismatches: this.decoder.checksumMismatches }, 'ZK frame checksum mismatch (frame used)');
      }
      if (f.command === Cmd.REG_EVENT && f.reply === 0) {
        this.onEvent(f);
        continue;
      }
      this.inbox.push(f);
    }
    this.pump();
  }

  private onEvent(f: ZkFrame): void {
    this.eventsReceived++;
    if (f.session === EventFlag.ENROLLUSER) this.enrollEvents++;
    // every event is acknowledged, reply id 0, no data (and the device does not answer that)
    this.socket?.write(encodeZkFrame({ command: Reply.ACK_OK, session: this.session, reply: 0 }));
    const ev: ZkRealtimeEvent = { flag: f.session, data: f.data };
    this.emit('event', ev);
  }

  private pump(): void {
    const w = this.waiter;
    if (!w || this.inbox.length === 0) return;
    this.waiter = undefined;
    clearTimeout(w.timer);
    w.resolve(this.inbox.shift()!);
  }

  private fail(e: ZkError): void {
    if (this.failure) return;
    this.failure = e;
    this.socket?.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.emit('closed', e);
  }

  /**
   * The next frame of the reply to request `reply`. A frame carrying the reply id
   * of one of our recent requests is a late answer and is skipped; one carrying an
   * id we never sent is taken (firmware that numbers replies its own way) and
   * counted.
   */
  private async nextFrame(reply: number, what: string): Promise<ZkFrame> {
    for (;;) {
      if (this.failure) throw this.failure;
      const f =
        this.inbox.shift() ??
        (await new Promise<ZkFrame>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.waiter = undefined;
            const e = new ZkError('TIMEOUT', `${this.host}:${this.port} did not answer ${what} within ${this.timeoutMs} ms`);
            reject(e);
            this.fail(e);
          }, this.timeoutMs);
          this.waiter = { resolve, reject, timer };
        }));
      if (f.reply === reply) return f;
      const age = (reply - f.reply) & 0xffff;
      if (age > 0 && age <= RECENT_REPLIES) {
        this.staleFrames++;
        this.log?.debug({ terminal: `${this.host}:${this.port}`, expected: reply, got: f.reply, command: f.command }, 'ZK frame of an earlier request skipped');
        continue;
      }
      if (this.foreignReplyIds++ === 0)
        this.log?.warn({ terminal: `${this.host}:${this.port}`, expected: reply, got: f.reply, command: f.command }, 'ZK reply with a reply id we never sent (taken as the answer)');
      return f;
    }
  }

  // ------------------------------------------------------------ requests

  /** Sends one request and returns the first frame of its reply (callers run one at a time). */
  private async exchange(command: number, data?: Buffer, first = false): Promise<ZkFrame> {
    if (this.failure) throw this.failure;
    if (!this.socket) throw new ZkError('CLOSED', 'not connected');
    this.replyId = first ? 0 : (this.replyId + 1) & 0xffff;
    const reply = this.replyId;
    this.socket.write(encodeZkFrame({ command, session: this.session, reply, data }));
    return this.nextFrame(reply, codeName(command));
  }

  /** Runs `fn` when every earlier call has finished (one conversation at a time). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** A request whose reply must be ACK_OK; ACK_ERROR becomes REFUSED. Returns the reply data. */
  private async simple(command: number, data?: Buffer): Promise<Buffer> {
    const r = await this.exchange(command, data);
    if (r.command === Reply.ACK_OK) return r.data;
    if (r.command === Reply.ACK_ERROR) throw new ZkError('REFUSED', `${codeName(command)} was refused by the terminal`, r.command);
    if (r.command === Reply.ACK_UNAUTH) throw new ZkError('UNAUTHORIZED', `${codeName(command)}: the session is not authenticated`, r.command);
    throw new ZkError('UNEXPECTED_REPLY', `${codeName(command)} answered ${codeName(r.command)}`, r.command);
  }

  /** Reads the rest of a PREPARE_DATA / DATA... / ACK_OK answer whose first frame is `first`. */
  private async collectData(first: ZkFrame, reply: number, what: string, limit: number): Promise<Buffer> {
    if (first.data.length < 4) throw new ZkError('PROTOCOL', `${what}: PREPARE_DATA without a size`);
    const size = first.data.readUInt32LE(0);
    if (size > limit) throw new ZkError('PROTOCOL', `${what}: the terminal announced ${size} bytes, more than the ${limit} asked for`);
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    for (;;) {
      const f = await this.nextFrame(reply, what);
      if (f.command === Cmd.DATA) {
        if (got + f.data.length > size) throw new ZkError('PROTOCOL', `${what}: DATA frames exceed the announced ${size} bytes`);
        f.data.copy(buf, got);
        got += f.data.length;
        continue;
      }
      if (f.command === Reply.ACK_OK) {
        if (got !== size) throw new ZkError('PROTOCOL', `${what}: ${got} of ${size} announced bytes arrived`);
        return buf;
      }
      throw new ZkError('UNEXPECTED_REPLY', `${what}: ${codeName(f.command)} inside a data transfer`, f.command);
    }
  }

  /** The buffered read of a table: PREPARE_BUFFER, then READ_BUFFER chunks of 65,472 bytes, then FREE_DATA. */
  private async readTable(inner: number, fct: number, what: string): Promise<Buffer> {
    const r = await this.exchange(Cmd.PREPARE_BUFFER, encodePrepareBuffer(inner, fct));
    if (r.command === Cmd.DATA) return r.data; // a small table, sent at once
    if (r.command === Cmd.PREPARE_DATA) {
      // some firmware streams the table at once: PREPARE_DATA, DATA..., ACK_OK
      const data = await this.collectData(r, this.replyId, what, 64 * 1024 * 1024);
      await this.simple(Cmd.FREE_DATA).catch(() => undefined);
      return data;
    }
    if (r.command === Reply.ACK_ERROR) throw new ZkError('REFUSED', `${what}: the terminal refused the read`, r.command);
    if (r.command !== Reply.ACK_OK) throw new ZkError('UNEXPECTED_REPLY', `${what}: PREPARE_BUFFER answered ${codeName(r.command)}`, r.command);
    if (r.data.length < 5) throw new ZkError('PROTOCOL', `${what}: PREPARE_BUFFER's answer holds no size`);
    const total = r.data.readUInt32LE(1);
    if (total > 64 * 1024 * 1024) throw new ZkError('PROTOCOL', `${what}: a table of ${total} bytes is beyond any terminal`);
    const out = Buffer.allocUnsafe(total);
    let p = 0;
    try {
      for (const { start, size } of readChunks(total, ZK_READ_CHUNK)) {
        const first = await this.exchange(Cmd.READ_BUFFER, encodeReadBuffer(start, size));
        let chunk: Buffer;
        if (first.command === Cmd.PREPARE_DATA) chunk = await this.collectData(first, this.replyId, what, size);
        else if (first.command === Cmd.DATA) chunk = first.data;
        else throw new ZkError('UNEXPECTED_REPLY', `${what}: READ_BUFFER answered ${codeName(first.command)}`, first.command);
        if (chunk.length !== size) throw new ZkError('PROTOCOL', `${what}: asked for ${size} bytes at ${start}, got ${chunk.length}`);
        chunk.copy(out, p);
        p += chunk.length;
      }
    } finally {
      if (!this.failure) await this.simple(Cmd.FREE_DATA).catch(() => undefined);
    }
    // a device that announces an empty table: the same as a table of no records
    return total === 0 ? Buffer.alloc(4) : out;
  }

  // ------------------------------------------------------------ public operations

  /** Firmware, serial number, platform, name and the counters (users, fingers, records, capacities). */
  deviceInfo(): Promise<ZkDeviceInfo> {
    return this.serial(async () => {
      const firmware = replyText(await this.simple(Cmd.GET_VERSION));
      const opt = async (name: string) => {
        try {
          return optionValue(await this.simple(Cmd.OPTIONS_RRQ, Buffer.from(`${name}\0`, 'latin1')));
        } catch (e) {
          if (e instanceof ZkError && e.code === 'REFUSED') return '';
          throw e;
        }
      };
      const serialNumber = await opt('~SerialNumber');
      const platform = await opt('~Platform');
      const deviceName = await opt('~DeviceName');
      const counts = await this.counts();
      return { firmware, serialNumber, platform, deviceName, counts };
    });
  }

  private async counts(): Promise<FreeSizes> {
    const d = await this.simple(Cmd.GET_FREE_SIZES);
    try {
      return decodeFreeSizes(d);
    } catch (e) {
      throw new ZkError('PROTOCOL', `GET_FREE_SIZES: ${(e as Error).message}`);
    }
  }

  /** The device counters alone (users, fingers, records, capacities). */
  freeSizes(): Promise<FreeSizes> {
    return this.serial(() => this.counts());
  }

  /** The terminal shows "working" and takes no input at the device (around bulk work). */
  disable(): Promise<void> {
    return this.serial(async () => {
      await this.simple(Cmd.DISABLEDEVICE);
      this.disabledByUs = true;
    });
  }

  enable(): Promise<void> {
    return this.serial(async () => {
      this.disabledByUs = false;
      this.mapFresh = false;
      await this.simple(Cmd.ENABLEDEVICE);
    });
  }

  /** Runs `fn` with the terminal disabled, enabling it again whatever happens. */
  async withDisabled<T>(fn: () => Promise<T>): Promise<T> {
    await this.disable();
    try {
      return await fn();
    } finally {
      if (this.connected) await this.enable().catch(() => undefined);
    }
  }

  /** Reads the whole user table (record size measured) and refreshes the uid map. */
  readUsers(): Promise<ZkReadResult> {
    return this.serial(() => this.loadUsers());
  }

  private async loadUsers(): Promise<ZkReadResult> {
    const counts = await this.counts();
    const table = await this.readTable(Table.USERS.inner, Table.USERS.fct, 'reading users');
    let t: ZkReadResult;
    try {
      t = decodeUserTable(table, counts.users);
    } catch (e) {
      throw new ZkError('PROTOCOL', `reading users: ${(e as Error).message}`);
    }
    this.recordSize = t.recordSize;
    this.uids.load(t.users);
    this.enrollEventsAtRead = this.enrollEvents;
    this.tableReads++;
    this.mapFresh = this.disabledByUs;
    return t;
  }

  /**
   * Makes sure the uid map can be allocated from. Someone may enroll at the
   * device at any moment, taking the uid we would hand out, so the map is
   * trusted only when it was read while we hold the terminal disabled, or when
   * we are registered for EF_ENROLLUSER, none arrived since the read, and the
   * device's user count (one cheap round trip, after which any earlier
   * enrollment's event has arrived) still matches the map. Otherwise the table
   * is read again.
   */
  private async freshMap(): Promise<void> {
    if (this.mapFresh) return;
    if (this.enrollEventsOn && this.enrollEventsAtRead === this.enrollEvents) {
      const counts = await this.counts();
      if (this.enrollEventsAtRead === this.enrollEvents && counts.users === this.uids.size) return;
    }
    await this.loadUsers();
  }

  /**
   * Makes the uid map trustworthy now: confirmed by the enroll events and the
   * device's user count, or read again. Call it with the terminal disabled
   * (withDisabled) before writes or deletes by uid, so nobody at the device can
   * take or free a slot between the check and the write.
   */
  refreshMap(): Promise<void> {
    return this.serial(() => this.freshMap());
  }

  /** Reads every fingerprint template. */
  readTemplates(): Promise<ZkTemplate[]> {
    return this.serial(async () => {
      const table = await this.readTable(Table.TEMPLATES.inner, Table.TEMPLATES.fct, 'reading templates');
      try {
        return decodeTemplateTable(table);
      } catch (e) {
        throw new ZkError('PROTOCOL', `reading templates: ${(e as Error).message}`);
      }
    });
  }

  /** Reads one template (command 88); undefined when the user has none for that finger. */
  readTemplate(uid: number, finger: number): Promise<Buffer | undefined> {
    return this.serial(async () => {
      const q = Buffer.alloc(3);
      q.writeUInt16LE(uid, 0);
      q[2] = finger;
      const r = await this.exchange(Cmd.GET_USERTEMP, q);
      let data: Buffer;
      if (r.command === Reply.ACK_ERROR) return undefined;
      if (r.command === Cmd.PREPARE_DATA) data = await this.collectData(r, this.replyId, 'reading a template', 64 * 1024);
      else if (r.command === Cmd.DATA) data = r.data;
      else throw new ZkError('UNEXPECTED_REPLY', `reading a template: ${codeName(r.command)}`, r.command);
      // the device appends one byte after the template
      return data.length > 0 ? data.subarray(0, data.length - 1) : undefined;
    });
  }

  /**
   * Writes a user (creating it or overwriting its slot). The uid comes from the
   * uid map (a user the terminal holds keeps its uid; a new one gets a free uid,
   * from a map read while the terminal is disabled, or read again now);
   * `user.uid` is ignored. With templates, the user and its templates go in one
   * upload (command 110), which replaces the user's templates; without, USER_WRQ.
   * Returns the uid used.
   */
  writeUser(user: ZkUser, templates?: { finger: number; flag: number; template: Buffer }[]): Promise<number> {
    return this.serial(async () => {
      if (this.uids.uidOf(user.userId) === undefined) await this.freshMap();
      const uid = this.uids.uidOf(user.userId) ?? this.uids.allocate();
      const u = { ...user, uid };
      let rec: Buffer;
      try {
        rec = encodeUserRecord(u, this.recordSize);
      } catch (e) {
        throw new ZkError('INVALID', `user ${JSON.stringify(user.userId)} cannot be written: ${(e as Error).message}`);
      }
      if (templates && templates.length > 0) {
        let buf: Buffer;
        try {
          buf = encodeUploadBuffer([u], templates.map((t) => ({ ...t, uid })), this.recordSize);
        } catch (e) {
          throw new ZkError('INVALID', `user ${JSON.stringify(user.userId)}: ${(e as Error).message}`);
        }
        await this.simple(Cmd.FREE_DATA);
        const size = Buffer.alloc(4);
        size.writeUInt32LE(buf.length, 0);
        await this.simple(Cmd.PREPARE_DATA, size);
        for (let p = 0; p < buf.length; p += ZK_UPLOAD_CHUNK) await this.simple(Cmd.DATA, buf.subarray(p, p + ZK_UPLOAD_CHUNK));
        await this.simple(Cmd.SAVE_USERTEMPS, SAVE_USERTEMPS_DATA);
        await this.simple(Cmd.FREE_DATA);
      } else {
        await this.simple(Cmd.USER_WRQ, rec);
      }
      await this.simple(Cmd.REFRESHDATA);
      this.uids.set(user.userId, uid);
      return uid;
    });
  }

  /** Deletes one template of a user (command 19). Returns false when there was none. */
  deleteTemplate(userId: string, finger: number): Promise<boolean> {
    return this.serial(async () => {
      if (this.uids.uidOf(userId) === undefined) await this.freshMap();
      const uid = this.uids.uidOf(userId);
      if (uid === undefined) throw new ZkError('NOT_FOUND', `no user ${JSON.stringify(userId)} on the terminal`);
      const q = Buffer.alloc(3);
      q.writeUInt16LE(uid, 0);
      q[2] = finger;
      try {
        await this.simple(Cmd.DELETE_USERTEMP, q);
      } catch (e) {
        if (e instanceof ZkError && e.code === 'REFUSED') return false;
        throw e;
      }
      await this.simple(Cmd.REFRESHDATA);
      return true;
    });
  }

  /** Deletes a user by user ID (the uid from the map). NOT_FOUND when the terminal does not hold it. */
  deleteUser(userId: string): Promise<void> {
    return this.serial(async () => {
      if (this.uids.uidOf(userId) === undefined) await this.freshMap();
      const uid = this.uids.uidOf(userId);
      if (uid === undefined) throw new ZkError('NOT_FOUND', `no user ${JSON.stringify(userId)} on the terminal`);
      const q = Buffer.alloc(2);
      q.writeUInt16LE(uid, 0);
      try {
        await this.simple(Cmd.DELETE_USER, q);
      } catch (e) {
        if (e instanceof ZkError && e.code === 'REFUSED') {
          this.uids.remove(userId);
          throw new ZkError('NOT_FOUND', `the terminal holds no user ${JSON.stringify(userId)} (uid ${uid})`, e.reply);
        }
        throw e;
      }
      await this.simple(Cmd.REFRESHDATA);
      this.uids.remove(userId);
    });
  }

  /** Registers for realtime events (EventFlag bits; 0 unregisters). Events arrive as 'event' and are acknowledged. */
  registerEvents(mask: number): Promise<void> {
    return this.serial(async () => {
      const d = Buffer.alloc(4);
      d.writeUInt32LE(mask >>> 0, 0);
      await this.simple(Cmd.REG_EVENT, d);
      this.enrollEventsOn = (mask & EventFlag.ENROLLUSER) !== 0;
    });
  }

  /** EXIT, then close. Never throws. */
  async close(): Promise<void> {
    if (!this.failure && this.socket) {
      await this.serial(() => this.simple(Cmd.EXIT)).catch(() => undefined);
    }
    this.destroy();
  }

  /** Closes the connection at once. */
  destroy(): void {
    this.fail(new ZkError('CLOSED', 'the client closed the connection'));
  }
}
