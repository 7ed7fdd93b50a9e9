// One simulated ZK terminal: its user table (by the device-internal uid), its
// fingerprint templates, its attendance counter, on-device actions for the
// control API, and the faults. The wire side is in session.ts.
//
// Like a real terminal, an enroll made at the device raises EF_ENROLLUSER for
// registered clients; an edit or a delete made at the device raises nothing.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { PRIV_DISABLED, U72, USER_RECORD_72 } from '../../drivers/zk/constants.js';
import { truncateUtf8, type ZkRecordSize, type ZkTemplate, type ZkUser } from '../../drivers/zk/records.js';
import { delay } from '../timing.js';

export interface ZkTimingModel {
  /** fixed cost of every command or on-device action */
  perCommandMs: number;
  /** per user written (USER_WRQ, an upload, an on-device action) */
  perUserWriteMs: number;
  /** per user record served by a table read */
  perUserReadMs: number;
  /** per template written by an upload */
  perTemplateWriteMs: number;
  /** pause between the frames of a multi-frame answer (lets one-frame-per-read clients keep up; 0 = back to back) */
  frameGapMs: number;
}

/** Roughly a TFT terminal on a LAN. */
export const DEFAULT_ZK_TIMING: ZkTimingModel = { perCommandMs: 2, perUserWriteMs: 3, perUserReadMs: 0.05, perTemplateWriteMs: 3, frameGapMs: 1 };
export const ZERO_ZK_TIMING: ZkTimingModel = { perCommandMs: 0, perUserWriteMs: 0, perUserReadMs: 0, perTemplateWriteMs: 0, frameGapMs: 0 };

export const DEFAULT_ZK_USER_CAPACITY = 10_000;
export const DEFAULT_ZK_FINGER_CAPACITY = 3_000;

export class ZkSimError extends Error {
  constructor(
    readonly httpStatus: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
    this.name = 'ZkSimError';
  }
}

export interface ZkSimTerminalOptions {
  index: number;
  serialNumber?: string;
  firmware?: string;
  platform?: string;
  deviceName?: string;
  /** comm key password (0 = none) */
  password?: number;
  recordSize?: ZkRecordSize;
  /** the first uid this terminal hands out (uid numbering differs between terminals) */
  uidStart?: number;
  userCapacity?: number;
  fingerCapacity?: number;
  /** tables up to this many bytes are answered with one direct CMD_DATA frame (0 = always chunked) */
  directDataMax?: number;
  /** EF_ATTLOG payload size: 32 (24-byte user id) or 12 (numeric user id) */
  attlogSize?: 12 | 32;
  timing?: Partial<ZkTimingModel>;
  logger?: Logger;
}

/** The JSON form of a ZK user in the control API. */
export interface ZkUserJson {
  id: string;
  uid: number;
  name: string;
  privilege: number;
  disabled: boolean;
  password: string;
  card: number;
  group: number;
  fingers: { index: number; flag: number; template: string }[];
}

export class ZkSimTerminal extends EventEmitter {
  readonly index: number;
  readonly serialNumber: string;
  readonly firmware: string;
  readonly platform: string;
  readonly deviceName: string;
  readonly password: number;
  readonly recordSize: ZkRecordSize;
  readonly uidStart: number;
  readonly userCapacity: number;
  readonly fingerCapacity: number;
  readonly directDataMax: number;
  readonly attlogSize: 12 | 32;
  readonly timing: ZkTimingModel;
  readonly log: Logger | undefined;
  /** users by uid */
  private readonly users = new Map<number, ZkUser>();
  /** templates by uid, then finger */
  private readonly tpls = new Map<number, Map<number, ZkTemplate>>();
  attendanceRecords = 0;
  /** sessions currently connected (the listener keeps this up to date) */
  connections = 0;
  /** event acknowledgements received from clients */
  acksReceived = 0;
  /** a client disabled the terminal (DISABLEDEVICE): on-device actions wait until it is enabled again */
  private disabledBy: object | undefined;
  private enabledWaiters: (() => void)[] = [];
  stallUntil = 0;
  blackholeUntil = 0;
  refuseUntil = 0;
  private corruptNext = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(o: ZkSimTerminalOptions) {
    super();
    this.index = o.index;
    this.serialNumber = o.serialNumber ?? `ZKSIM${String(o.index).padStart(8, '0')}`;
    this.firmware = o.firmware ?? 'Ver 6.60 Apr 28 2015';
    this.platform = o.platform ?? 'ZMM220_TFT';
    this.deviceName = o.deviceName ?? 'termsync ZK sim';
    this.password = o.password ?? 0;
    this.recordSize = o.recordSize ?? USER_RECORD_72;
    this.uidStart = o.uidStart ?? 1;
    if (!Number.isInteger(this.uidStart) || this.uidStart < 1 || this.uidStart > 0xffff) throw new RangeError('uidStart must be 1..65535');
    this.userCapacity = o.userCapacity ?? DEFAULT_ZK_USER_CAPACITY;
    this.fingerCapacity = o.fingerCapacity ?? DEFAULT_ZK_FINGER_CAPACITY;
    this.directDataMax = o.directDataMax ?? 0;
    this.attlogSize = o.attlogSize ?? 32;
    this.timing = { ...DEFAULT_ZK_TIMING, ...(o.timing ?? {}) };
    this.log = o.logger;
  }

  get disabled(): boolean {
    return this.disabledBy !== undefined;
  }

  /** DISABLEDEVICE (by `session`) / ENABLEDEVICE; a session that ends enables what it disabled, as terminals do. */
  setDisabled(session: object, on: boolean): void {
    if (on) this.disabledBy = session;
    else if (this.disabledBy !== undefined) {
      this.disabledBy = undefined;
      for (const w of this.enabledWaiters.splice(0)) w();
    }
  }

  sessionEnded(session: object): void {
    if (this.disabledBy === session) this.setDisabled(session, false);
  }

  /**
   * An action of the person at the terminal: while a client holds the terminal
   * disabled (it shows "working" and takes no input) it waits, as the person
   * would, and runs once the terminal is enabled again.
   */
  private async atDevice<T>(fn: () => T): Promise<T> {
    for (;;) {
      while (this.disabled) await new Promise<void>((r) => this.enabledWaiters.push(r));
      const WAIT = Symbol('wait');
      const r = await this.run(this.actionCost(), () => (this.disabled ? WAIT : fn()));
      if (r !== WAIT) return r as T;
    }
  }

  /** Serves one command or action at a time, after the timing model's delay. */
  run<T>(ms: number, fn: () => T): Promise<T> {
    const next = this.queue.then(async () => {
      await delay(ms);
      return fn();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  // ------------------------------------------------------------ reading

  get userCount(): number {
    return this.users.size;
  }

  get templateCount(): number {
    let n = 0;
    for (const m of this.tpls.values()) n += m.size;
    return n;
  }

  /** Users in uid order (the order a table read returns). */
  listUsers(): ZkUser[] {
    return [...this.users.values()].sort((a, b) => a.uid - b.uid);
  }

  allTemplates(): ZkTemplate[] {
    const out: ZkTemplate[] = [];
    for (const uid of [...this.tpls.keys()].sort((a, b) => a - b)) out.push(...[...this.tpls.get(uid)!.values()].sort((a, b) => a.finger - b.finger));
    return out;
  }

  userByUid(uid: number): ZkUser | undefined {
    return this.users.get(uid);
  }

  userById(userId: string): ZkUser | undefined {
    for (const u of this.users.values()) if (u.userId === userId) return u;
    return undefined;
  }

  templatesOf(uid: number): ZkTemplate[] {
    return [...(this.tpls.get(uid)?.values() ?? [])].sort((a, b) => a.finger - b.finger);
  }

  template(uid: number, finger: number): ZkTemplate | undefined {
    return this.tpls.get(uid)?.get(finger);
  }

  /** The next uid this terminal hands out: above every uid in use, from uidStart. */
  allocateUid(): number {
    let max = this.uidStart - 1;
    for (const uid of this.users.keys()) if (uid > max) max = uid;
    if (max < 0xffff) return max + 1;
    for (let uid = this.uidStart; uid <= 0xffff; uid++) if (!this.users.has(uid)) return uid;
    for (let uid = 1; uid < this.uidStart; uid++) if (!this.users.has(uid)) return uid;
    throw new ZkSimError(409, 'no free uid left');
  }

  toJson(u: ZkUser): ZkUserJson {
    return {
      id: u.userId,
      uid: u.uid,
      name: u.name,
      privilege: u.privilege & 0x0e,
      disabled: (u.privilege & PRIV_DISABLED) !== 0,
      password: u.password,
      card: u.card,
      group: u.group,
      fingers: this.templatesOf(u.uid).map((t) => ({ index: t.finger, flag: t.flag, template: t.template.toString('hex') })),
    };
  }

  // ------------------------------------------------------------ writes from the protocol

  /**
   * Stores a record written by a client (USER_WRQ or an upload): the uid picks
   * the slot. Returns an error text when the terminal refuses it.
   */
  storeRecord(u: ZkUser): string | null {
    const problem = this.recordProblem(u);
    if (problem) return problem;
    this.users.set(u.uid, { ...u, raw: u.raw ? Buffer.from(u.raw) : undefined });
    this.emit('changed');
    return null;
  }

  private recordProblem(u: ZkUser): string | null {
    if (u.uid === 0) return 'uid 0 is not a slot';
    if (u.userId === '') return 'empty user id';
    const same = this.userById(u.userId);
    if (same && same.uid !== u.uid) return `user id ${u.userId} is held by uid ${same.uid}`;
    if (!this.users.has(u.uid) && this.users.size >= this.userCapacity) return 'user table full';
    if (u.card !== 0) for (const o of this.users.values()) if (o.uid !== u.uid && o.card === u.card) return `card ${u.card} is held by user ${o.userId}`;
    return null;
  }

  deleteUid(uid: number): boolean {
    if (!this.users.delete(uid)) return false;
    this.tpls.delete(uid);
    this.emit('changed');
    return true;
  }

  storeTemplate(t: ZkTemplate): string | null {
    if (!this.users.has(t.uid)) return `no user with uid ${t.uid}`;
    let m = this.tpls.get(t.uid);
    if (!m?.has(t.finger) && this.templateCount >= this.fingerCapacity) return 'template storage full';
    if (!m) this.tpls.set(t.uid, (m = new Map()));
    m.set(t.finger, { ...t, template: Buffer.from(t.template) });
    this.emit('changed');
    return null;
  }

  deleteTemplate(uid: number, finger: number): boolean {
    const m = this.tpls.get(uid);
    if (!m?.delete(finger)) return false;
    if (m.size === 0) this.tpls.delete(uid);
    this.emit('changed');
    return true;
  }

  // ------------------------------------------------------------ on-device actions (control API)

  private parseUser(body: unknown, base: ZkUser | undefined, uid: number): { user: ZkUser; fingers?: ZkTemplate[] } {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ZkSimError(400, 'a user must be a JSON object');
    const o = body as Record<string, unknown>;
    const id = o.id ?? base?.userId;
    const idMax = this.recordSize === USER_RECORD_72 ? U72.userIdBytes - 1 : 10;
    if (typeof id !== 'string' || id === '' || Buffer.byteLength(id) > idMax || /[\u0000-\u001f]/.test(id))
      throw new ZkSimError(400, `id must be a string of 1..${idMax} bytes`);
    if (this.recordSize !== USER_RECORD_72 && (!/^[1-9][0-9]*$/.test(id) || Number(id) > 0xffffffff)) throw new ZkSimError(400, 'this terminal holds numeric user ids only');
    const int = (k: string, max: number, dflt: number): number => {
      const v = o[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new ZkSimError(400, `${k} must be an integer in 0..${max}`);
      return v;
    };
    const str = (k: string, maxBytes: number, dflt: string, cut: boolean): string => {
      const v = o[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'string' || v.includes('\0')) throw new ZkSimError(400, `${k} must be a string without NUL`);
      if (Buffer.byteLength(v) > maxBytes) {
        if (cut) return truncateUtf8(v, maxBytes);
        throw new ZkSimError(400, `${k} is longer than ${maxBytes} bytes`);
      }
      return v;
    };
    const wide = this.recordSize === USER_RECORD_72;
    let privilege = base ? base.privilege : 0;
    if (o.privilege !== undefined) privilege = (int('privilege', 14, 0) & 0x0e) | (privilege & PRIV_DISABLED);
    if (o.disabled !== undefined) {
      if (typeof o.disabled !== 'boolean') throw new ZkSimError(400, 'disabled must be true or false');
      privilege = o.disabled ? privilege | PRIV_DISABLED : privilege & ~PRIV_DISABLED;
    }
    const user: ZkUser = {
      uid,
      privilege,
      // the keypad takes what fits; the name is cut to the field like the terminal's editor does
      password: str('password', wide ? 7 : 4, base?.password ?? '', false),
      name: str('name', wide ? 23 : 7, base?.name ?? '', true),
      card: int('card', 0xffffffff, base?.card ?? 0),
      group: int('group', 255, base?.group ?? 1),
      userId: id,
      raw: base?.raw,
    };
    const parseFingers = (v: unknown, what: string): ZkTemplate[] => {
      if (!Array.isArray(v)) throw new ZkSimError(400, `${what} must be an array`);
      return v.map((f: any, i: number) => {
        if (typeof f !== 'object' || f === null) throw new ZkSimError(400, `${what}[${i}] must be an object`);
        if (!Number.isInteger(f.index) || f.index < 0 || f.index > 9) throw new ZkSimError(400, `${what}[${i}].index must be 0..9`);
        if (typeof f.template !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(f.template) || f.template.length > 2 * 16384)
          throw new ZkSimError(400, `${what}[${i}].template must be hex, 1..16384 bytes`);
        const flag = f.flag ?? 1;
        if (!Number.isInteger(flag) || flag < 0 || flag > 255) throw new ZkSimError(400, `${what}[${i}].flag must be 0..255`);
        return { uid, finger: f.index, flag, template: Buffer.from(f.template, 'hex') };
      });
    };
    let fingers: ZkTemplate[] | undefined;
    if (o.fingers !== undefined) fingers = parseFingers(o.fingers, 'fingers');
    if (o.addFingers !== undefined) fingers = [...(fingers ?? (base ? this.templatesOf(uid) : [])), ...parseFingers(o.addFingers, 'addFingers')];
    if (fingers && new Set(fingers.map((f) => f.finger)).size !== fingers.length) throw new ZkSimError(400, 'a finger index is listed twice');
    return { user, fingers };
  }

  private actionCost(): number {
    return this.timing.perCommandMs + this.timing.perUserWriteMs;
  }

  /** On-device enroll: a new user (uid from this terminal's numbering unless given); raises EF_ENROLLUSER. Waits while a client holds the terminal disabled. */
  enroll(body: unknown): Promise<ZkUser> {
    return this.atDevice(() => {
      const o = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
      if (typeof o.id === 'string' && this.userById(o.id)) throw new ZkSimError(409, `user ${o.id} exists on terminal ${this.index}`);
      let uid: number;
      if (o.uid !== undefined) {
        if (typeof o.uid !== 'number' || !Number.isInteger(o.uid) || o.uid < 1 || o.uid > 0xffff) throw new ZkSimError(400, 'uid must be 1..65535');
        if (this.users.has(o.uid)) throw new ZkSimError(409, `uid ${o.uid} is in use on terminal ${this.index}`);
        uid = o.uid;
      } else uid = this.allocateUid();
      const { user, fingers } = this.parseUser(body, undefined, uid);
      const problem = this.recordProblem(user);
      if (problem) throw new ZkSimError(409, problem);
      if (fingers && this.templateCount + fingers.length > this.fingerCapacity) throw new ZkSimError(409, 'template storage full');
      this.users.set(uid, user);
      for (const f of fingers ?? []) this.storeTemplate(f);
      this.emit('changed');
      this.emit('enrolled', uid);
      return user;
    });
  }

  /** On-device edit: fields replace (fingers replace, addFingers append). No event, as on a real terminal. */
  edit(userId: string, body: unknown): Promise<ZkUser> {
    return this.atDevice(() => {
      const cur = this.userById(userId);
      if (!cur) throw new ZkSimError(404, `no user ${JSON.stringify(userId)} on terminal ${this.index}`);
      if (typeof body === 'object' && body !== null && 'id' in body && (body as { id: unknown }).id !== userId)
        throw new ZkSimError(400, 'the user id cannot be changed by an edit');
      if (typeof body === 'object' && body !== null && 'uid' in body) throw new ZkSimError(400, 'the uid cannot be changed by an edit');
      const { user, fingers } = this.parseUser(body, cur, cur.uid);
      const problem = this.recordProblem(user);
      if (problem) throw new ZkSimError(409, problem);
      this.users.set(cur.uid, user);
      if (fingers) {
        this.tpls.delete(cur.uid);
        for (const f of fingers) {
          const p = this.storeTemplate(f);
          if (p) throw new ZkSimError(409, p);
        }
      }
      this.emit('changed');
      return user;
    });
  }

  /** On-device delete. No event, as on a real terminal. */
  remove(userId: string): Promise<void> {
    return this.atDevice(() => {
      const cur = this.userById(userId);
      if (!cur) throw new ZkSimError(404, `no user ${JSON.stringify(userId)} on terminal ${this.index}`);
      this.deleteUid(cur.uid);
    });
  }

  /** A punch at the terminal: raises EF_ATTLOG for registered clients. */
  punch(userId: string, status = 0, punch = 0): Promise<void> {
    return this.run(this.timing.perCommandMs, () => {
      if (!this.userById(userId)) throw new ZkSimError(404, `no user ${JSON.stringify(userId)} on terminal ${this.index}`);
      this.attendanceRecords++;
      this.emit('punched', { userId, status, punch, time: new Date() });
    });
  }

  /** Factory reset: every user, template and record gone. */
  factoryReset(): void {
    this.users.clear();
    this.tpls.clear();
    this.attendanceRecords = 0;
    this.emit('changed');
  }

  // ------------------------------------------------------------ faults

  dropConnections(): void {
    this.emit('drop');
  }
  stall(ms: number): void {
    this.stallUntil = Date.now() + ms;
  }
  blackhole(ms: number): void {
    this.blackholeUntil = Date.now() + ms;
  }
  refuse(ms: number): void {
    this.refuseUntil = Date.now() + ms;
    this.emit('refuse', this.refuseUntil);
  }
  corruptNextFrame(): void {
    this.corruptNext = true;
  }
  /** true once per corrupt fault: the caller corrupts the frame it is about to send */
  takeCorrupt(): boolean {
    const c = this.corruptNext;
    this.corruptNext = false;
    return c;
  }
  get blackholed(): boolean {
    return this.blackholeUntil > Date.now();
  }
}
