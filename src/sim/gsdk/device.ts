// One Suprema terminal as the mock device gateway holds it: its users (as the
// gateway's UserInfo), its event log (IDs that only grow), and what a person
// at it can do. Like a real terminal (and the termsync simulator's), it logs
// every user change, the ones written through the gateway included: enroll
// 0x2000, update 0x2200, delete 0x2400. Only changes made at the terminal
// carry changedOnDevice (when the gateway sends that field at all).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CARD_DATA_SIZE, EventCode, FINGER_TEMPLATE_SIZE } from '../../drivers/gsdk/constants.js';
import type { EventLog, UserInfo } from '../../drivers/gsdk/proto.js';

export class GsdkSimError extends Error {
  constructor(
    /** a gRPC status code */
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'GsdkSimError';
  }
}

/** gRPC status codes the mock answers with. */
export const Code = { NOT_FOUND: 5, ALREADY_EXISTS: 6, RESOURCE_EXHAUSTED: 8, INVALID_ARGUMENT: 3, UNAVAILABLE: 14 } as const;

/** A user as a test writes it at the terminal: hex for bytes, the PIN in plain (the terminal keeps its hash). */
export interface GsdkUserJson {
  id: string;
  name?: string;
  pin?: string;
  cards?: { type?: number; data: string }[];
  fingers?: { index: number; flag?: number; templates: [string, string] }[];
  accessGroups?: number[];
  authGroupId?: number;
  startTime?: number;
  endTime?: number;
  securityLevel?: number;
  photo?: string;
}

export interface GsdkSimDeviceOptions {
  deviceID: number;
  /** the address the gateway dials it at (server-to-device mode) */
  ip?: string;
  port?: number;
  model?: string;
  firmware?: string;
  capacity?: number;
  alphanumericIds?: boolean;
}

/** The terminal's own hash of a PIN (not SHA-256 of it: a PIN read back is never the PIN). */
export function devicePinHash(pin: Buffer): Buffer {
  return createHash('sha256').update('mock-suprema-pin\0').update(pin).digest();
}

export function emptyInfo(id: string): UserInfo {
  return {
    hdr: { ID: id, numOfCard: 0, numOfFinger: 0, numOfFace: 0, authGroupID: 0 },
    setting: { startTime: 0, endTime: 0, fingerAuthMode: 0, cardAuthMode: 0, IDAuthMode: 0, securityLevel: 0 },
    name: '',
    cards: [],
    fingers: [],
    accessGroupIDs: [],
    PIN: Buffer.alloc(0),
    photo: Buffer.alloc(0),
  };
}

function cloneInfo(u: UserInfo): UserInfo {
  return {
    hdr: { ...u.hdr },
    setting: { ...u.setting },
    name: u.name,
    cards: u.cards.map((c) => ({ type: c.type, size: c.size, data: Buffer.from(c.data) })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: f.templates.map((t) => Buffer.from(t)) })),
    accessGroupIDs: [...u.accessGroupIDs],
    PIN: Buffer.from(u.PIN),
    photo: Buffer.from(u.photo),
  };
}

/** Fills a UserInfo from a decoded request (absent fields: their zero values). */
export function normalizeInfo(raw: Partial<UserInfo>): UserInfo {
  const id = raw.hdr?.ID ?? '';
  const u = emptyInfo(id);
  if (raw.hdr) u.hdr = { ...u.hdr, ...raw.hdr };
  if (raw.setting) u.setting = { ...u.setting, ...raw.setting };
  u.name = raw.name ?? '';
  u.cards = (raw.cards ?? []).map((c) => {
    const d = Buffer.alloc(CARD_DATA_SIZE);
    const src = Buffer.from(c.data ?? []);
    src.copy(d, Math.max(0, CARD_DATA_SIZE - src.length), Math.max(0, src.length - CARD_DATA_SIZE));
    return { type: c.type ?? 1, size: CARD_DATA_SIZE, data: d };
  });
  u.fingers = (raw.fingers ?? []).map((f) => ({ index: f.index ?? 0, flag: f.flag ?? 0, templates: (f.templates ?? []).map((t) => Buffer.from(t)) }));
  u.accessGroupIDs = [...(raw.accessGroupIDs ?? [])];
  u.PIN = Buffer.from(raw.PIN ?? []);
  u.photo = Buffer.from(raw.photo ?? []);
  u.hdr.numOfCard = u.cards.length;
  u.hdr.numOfFinger = u.fingers.length;
  return u;
}

export class GsdkSimDevice extends EventEmitter {
  readonly deviceID: number;
  readonly ip: string;
  readonly port: number;
  readonly model: string;
  readonly firmware: string;
  readonly capacity: number;
  readonly alphanumericIds: boolean;
  /** switched on: it connects to the gateway when the gateway lets it */
  online = true;
  private readonly users = new Map<string, UserInfo>();
  private readonly log: EventLog[] = [];
  private nextId = 1;

  constructor(o: GsdkSimDeviceOptions) {
    super();
    this.deviceID = o.deviceID;
    this.ip = o.ip ?? `10.0.${(o.deviceID >> 8) & 0xff}.${o.deviceID & 0xff}`;
    this.port = o.port ?? 51211;
    this.model = o.model ?? 'BioStation 2 (mock)';
    this.firmware = o.firmware ?? '1.9.0-mock';
    this.capacity = o.capacity ?? 10_000;
    this.alphanumericIds = o.alphanumericIds ?? false;
  }

  get userCount(): number {
    return this.users.size;
  }

  get lastEventId(): number {
    return this.nextId - 1;
  }

  // ------------------------------------------------------------ reads

  userIds(): string[] {
    return [...this.users.keys()];
  }

  /** A copy of one user as the terminal holds it (PIN: the terminal's hash), or undefined. */
  user(id: string): UserInfo | undefined {
    const u = this.users.get(id);
    return u ? cloneInfo(u) : undefined;
  }

  /** Log events with ID >= start (0: from the oldest), at most `max` (0: all). */
  events(start: number, max: number): EventLog[] {
    const from = this.log.findIndex((e) => e.ID >= start);
    if (from < 0) return [];
    const out = this.log.slice(from, max > 0 ? from + max : undefined);
    return out.map((e) => ({ ...e }));
  }

  // ------------------------------------------------------------ writes

  private record(code: number, userID: string, onDevice: boolean): EventLog {
    const e: EventLog = {
      ID: this.nextId++,
      timestamp: Math.floor(Date.now() / 1000),
      deviceID: this.deviceID,
      userID,
      entityID: 0,
      eventCode: code,
      subCode: 0,
      TNAKey: 0,
      hasImage: false,
      changedOnDevice: onDevice,
    };
    this.log.push(e);
    this.emit('event', e);
    return e;
  }

  private check(u: UserInfo, pending: Map<string, UserInfo>): void {
    const id = u.hdr.ID;
    if (!id || Buffer.byteLength(id) > 32) throw new GsdkSimError(Code.INVALID_ARGUMENT, `invalid user ID ${JSON.stringify(id)}`);
    if (!this.alphanumericIds && (!/^[0-9]+$/.test(id) || /^0+$/.test(id))) throw new GsdkSimError(Code.INVALID_ARGUMENT, `user ID ${JSON.stringify(id)} is not numeric`);
    if (Buffer.byteLength(u.name) > 192) throw new GsdkSimError(Code.INVALID_ARGUMENT, `name of user ${id} is too long`);
    if (u.cards.length > 8 || u.accessGroupIDs.length > 16 || u.fingers.length > 10 || u.photo.length > 16_384 || u.PIN.length > 16)
      throw new GsdkSimError(Code.INVALID_ARGUMENT, `user ${id} exceeds a limit of the terminal`);
    for (const f of u.fingers) if (f.templates.length !== 2 || f.templates.some((t) => t.length > FINGER_TEMPLATE_SIZE)) throw new GsdkSimError(Code.INVALID_ARGUMENT, `user ${id}: a finger needs two templates of at most 384 bytes`);
    for (const c of u.cards) {
      for (const [other, o] of [...this.users, ...pending]) {
        if (other !== id && o.cards.some((x) => x.data.equals(c.data))) throw new GsdkSimError(Code.ALREADY_EXISTS, `duplicate credential: a card of user ${id} is held by user ${other}`);
      }
    }
    if (!this.users.has(id) && !pending.has(id) && this.users.size + pending.size >= this.capacity) throw new GsdkSimError(Code.RESOURCE_EXHAUSTED, `the terminal is full (${this.capacity} users)`);
  }

  private store(u: UserInfo, onDevice: boolean): void {
    const existed = this.users.has(u.hdr.ID);
    const stored = cloneInfo(u);
    if (u.PIN.length > 0) stored.PIN = devicePinHash(u.PIN);
    else if (existed && onDevice) stored.PIN = this.users.get(u.hdr.ID)!.PIN;
    this.users.set(u.hdr.ID, stored);
    this.record(existed ? EventCode.USER_UPDATE_SUCCESS : EventCode.USER_ENROLL_SUCCESS, u.hdr.ID, onDevice);
  }

  /** Enroll through the gateway: the whole batch is checked first, and refused as a whole. */
  enrollFromGateway(infos: UserInfo[], overwrite: boolean): void {
    const pending = new Map<string, UserInfo>();
    for (const u of infos) {
      if (!overwrite && this.users.has(u.hdr.ID)) throw new GsdkSimError(Code.ALREADY_EXISTS, `user ${u.hdr.ID} exists`);
      this.check(u, pending);
      pending.set(u.hdr.ID, u);
    }
    for (const u of infos) this.store(u, false);
  }

  /** Delete through the gateway: every ID must be held, else nothing is deleted. */
  deleteFromGateway(ids: string[]): void {
    for (const id of ids) if (!this.users.has(id)) throw new GsdkSimError(Code.NOT_FOUND, `user ${id} not found`);
    for (const id of ids) {
      this.users.delete(id);
      this.record(EventCode.USER_DELETE_SUCCESS, id, false);
    }
  }

  private fromJson(j: GsdkUserJson, base?: UserInfo): UserInfo {
    const u = base ? cloneInfo(base) : emptyInfo(j.id);
    u.PIN = Buffer.alloc(0);
    if (j.name !== undefined) u.name = j.name;
    if (j.pin !== undefined) u.PIN = Buffer.from(j.pin);
    if (j.cards) u.cards = normalizeInfo({ cards: j.cards.map((c) => ({ type: c.type ?? 1, size: 32, data: Buffer.from(c.data, 'hex') })) }).cards;
    if (j.fingers) u.fingers = j.fingers.map((f) => ({ index: f.index, flag: f.flag ?? 0, templates: [Buffer.from(f.templates[0], 'hex'), Buffer.from(f.templates[1], 'hex')] }));
    if (j.accessGroups) u.accessGroupIDs = [...j.accessGroups];
    if (j.authGroupId !== undefined) u.hdr.authGroupID = j.authGroupId;
    if (j.startTime !== undefined) u.setting.startTime = j.startTime;
    if (j.endTime !== undefined) u.setting.endTime = j.endTime;
    if (j.securityLevel !== undefined) u.setting.securityLevel = j.securityLevel;
    if (j.photo !== undefined) u.photo = Buffer.from(j.photo, 'hex');
    u.hdr.numOfCard = u.cards.length;
    u.hdr.numOfFinger = u.fingers.length;
    return u;
  }

  /** A person enrolls a user at the terminal (0x2000). */
  enroll(j: GsdkUserJson): UserInfo {
    if (this.users.has(j.id)) throw new GsdkSimError(Code.ALREADY_EXISTS, `user ${j.id} exists`);
    const u = this.fromJson(j);
    this.check(u, new Map());
    this.store(u, true);
    return this.user(j.id)!;
  }

  /** A person edits a user at the terminal (0x2200): the fields given replace the held ones. */
  edit(id: string, patch: Omit<GsdkUserJson, 'id'>): UserInfo {
    const held = this.users.get(id);
    if (!held) throw new GsdkSimError(Code.NOT_FOUND, `user ${id} not found`);
    const u = this.fromJson({ ...patch, id }, held);
    this.check(u, new Map());
    this.store(u, true);
    return this.user(id)!;
  }

  /** A person deletes a user at the terminal (0x2400). */
  remove(id: string): void {
    if (!this.users.delete(id)) throw new GsdkSimError(Code.NOT_FOUND, `user ${id} not found`);
    this.record(EventCode.USER_DELETE_SUCCESS, id, true);
  }

  /** The terminal's database is reset at the device: every user gone, DATABASE_RESET (0x4501) logged. */
  resetDatabase(): void {
    this.users.clear();
    this.record(0x4501, '', true);
  }

  /** The terminal's event log is cleared: IDs start again at 1. */
  clearLog(): void {
    this.log.length = 0;
    this.nextId = 1;
  }

  /** A user identifies at the terminal (0x1300): a log event that is no user change. */
  punch(id: string): void {
    this.record(EventCode.IDENTIFY_SUCCESS | 0x01, id, false);
  }
}
