// The user record as termsync holds it in memory: one shape for the codec, the
// simulator, the store and the admin API. The JSON form (userToJson /
// userFromJson) is the one documented in the README.
import { createHash } from 'node:crypto';
import { USER_DISABLED, USER_LIMITS as LIMITS } from './limits.js';

export { USER_DISABLED, USER_LIMITS } from './limits.js';

export interface UserSetting {
  startTime: number; // Unix seconds, 0 = unset
  endTime: number;
  fingerAuthMode: number;
  cardAuthMode: number;
  idAuthMode: number;
  securityLevel: number; // 0 default .. 5
}

export interface Card {
  type: number;
  data: Buffer; // 1..32 bytes
}

export interface Finger {
  index: number;
  flag: number;
  templates: [Buffer, Buffer]; // 384 bytes each
}

export interface Face {
  index: number;
  flag: number;
  data: Buffer;
}

export interface JobCode {
  code: number;
  label: string;
}

export interface UserRecord {
  id: string;
  /** device-side flag byte (created/updated on device, disabled); the server stores 0 or DISABLED */
  flag: number;
  /** device-side change counter; informational on the server */
  version: number;
  authGroupId: number;
  setting: UserSetting;
  name: string;
  photo: Buffer; // empty = none
  pinHash: Buffer; // empty = no PIN, else 32 bytes (SHA-256 of the PIN)
  cards: Card[];
  fingers: Finger[];
  faces: Face[];
  accessGroups: number[];
  jobCodes: JobCode[];
  phrase: string;
}

export function emptySetting(): UserSetting {
  return { startTime: 0, endTime: 0, fingerAuthMode: 0, cardAuthMode: 0, idAuthMode: 0, securityLevel: 0 };
}

export function emptyUser(id: string): UserRecord {
  return {
    id,
    flag: 0,
    version: 0,
    authGroupId: 0,
    setting: emptySetting(),
    name: '',
    photo: Buffer.alloc(0),
    pinHash: Buffer.alloc(0),
    cards: [],
    fingers: [],
    faces: [],
    accessGroups: [],
    jobCodes: [],
    phrase: '',
  };
}

export function hashPin(pin: string): Buffer {
  return createHash('sha256').update(pin, 'utf8').digest();
}

/** The PIN hash field is "set" when it holds 32 bytes that are not all zero. */
export function hasPin(u: UserRecord): boolean {
  return u.pinHash.length === LIMITS.pinHashBytes && u.pinHash.some((b) => b !== 0);
}

/** An administrator disabled the user (the one flag bit the server keeps). */
export function isDisabled(u: UserRecord): boolean {
  return (u.flag & USER_DISABLED) !== 0;
}

// ---------------------------------------------------------------- JSON form

export class UserJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserJsonError';
  }
}

export interface UserJson {
  id: string;
  name?: string;
  startTime?: number;
  endTime?: number;
  securityLevel?: number;
  fingerAuthMode?: number;
  cardAuthMode?: number;
  idAuthMode?: number;
  authGroupId?: number;
  disabled?: boolean;
  cards?: { type: number; data: string }[];
  fingers?: { index: number; flag?: number; templates: [string, string] }[];
  faces?: { index: number; flag?: number; data: string }[];
  accessGroups?: number[];
  jobCodes?: { code: number; label: string }[];
  phrase?: string;
  photo?: string;
  /** input only: the plain PIN; stored and sent as SHA-256 */
  pin?: string;
  /** input only: the PIN's SHA-256 as hex (used by import/export) */
  pinHash?: string;
  /** output only */
  pinSet?: boolean;
}

const hex = (b: Buffer) => b.toString('hex');

export function userToJson(u: UserRecord): UserJson {
  return {
    id: u.id,
    name: u.name,
    startTime: u.setting.startTime,
    endTime: u.setting.endTime,
    securityLevel: u.setting.securityLevel,
    fingerAuthMode: u.setting.fingerAuthMode,
    cardAuthMode: u.setting.cardAuthMode,
    idAuthMode: u.setting.idAuthMode,
    authGroupId: u.authGroupId,
    disabled: isDisabled(u),
    cards: u.cards.map((c) => ({ type: c.type, data: hex(c.data) })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: [hex(f.templates[0]), hex(f.templates[1])] })),
    faces: u.faces.map((f) => ({ index: f.index, flag: f.flag, data: hex(f.data) })),
    accessGroups: [...u.accessGroups],
    jobCodes: u.jobCodes.map((j) => ({ ...j })),
    phrase: u.phrase,
    photo: hex(u.photo),
    pinSet: hasPin(u),
  };
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new UserJsonError(`${field} must be an integer in ${min}..${max}`);
  }
  return v;
}

function hexBytes(v: unknown, field: string, maxBytes: number, exact?: number): Buffer {
  if (typeof v !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(v)) throw new UserJsonError(`${field} must be a hex string`);
  const b = Buffer.from(v, 'hex');
  if (exact !== undefined && b.length !== exact) throw new UserJsonError(`${field} must be ${exact} bytes`);
  if (b.length > maxBytes) throw new UserJsonError(`${field} is longer than ${maxBytes} bytes`);
  return b;
}

function text(v: unknown, field: string, maxBytes: number): string {
  if (typeof v !== 'string') throw new UserJsonError(`${field} must be a string`);
  if (Buffer.byteLength(v, 'utf8') > maxBytes) throw new UserJsonError(`${field} is longer than ${maxBytes} bytes of UTF-8`);
  if (v.includes('\0')) throw new UserJsonError(`${field} must not contain NUL`);
  return v;
}

function list<T>(v: unknown, field: string, max: number, each: (x: any, i: number) => T): T[] {
  if (!Array.isArray(v)) throw new UserJsonError(`${field} must be an array`);
  if (v.length > max) throw new UserJsonError(`${field} holds at most ${max} entries`);
  return v.map((x, i) => {
    if (typeof x !== 'object' && field !== 'accessGroups') throw new UserJsonError(`${field}[${i}] must be an object`);
    return each(x, i);
  });
}

/** Validates a user ID as PROTOCOL.md section 6.2 defines it. Returns an error message or null. */
export function userIdProblem(id: unknown): string | null {
  if (typeof id !== 'string' || id.length === 0) return 'user id must be a non-empty string';
  if (Buffer.byteLength(id, 'utf8') > LIMITS.userIdBytes) return `user id is longer than ${LIMITS.userIdBytes} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(id)) return 'user id must not contain control characters';
  return null;
}

const isUint = (v: unknown, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function textProblem(v: unknown, field: string, maxBytes: number): string | null {
  if (typeof v !== 'string') return `${field} must be a string`;
  if (utf8Bytes(v) > maxBytes) return `${field} is longer than ${maxBytes} bytes of UTF-8`;
  if (v.includes('\0')) return `${field} must not contain NUL`;
  return null;
}

/**
 * The one check of a whole user record against the server's rules (USER_LIMITS):
 * the ID; text sizes; settings in range; photo size; a PIN hash of 0 or 32
 * bytes; at most 8 cards of 1..32 bytes, no card twice; at most 10 fingers with
 * indexes 0..9, none twice, two 384-byte templates each; at most 5 faces of
 * 1..32 KiB; at most 16 access groups and 16 job codes. Returns the first
 * problem as a sentence an administrator can act on, or null. The admin API,
 * the daemon and the simulator all call this; the wire codecs enforce their own
 * encoding on top.
 */
export function validateUser(u: UserRecord): string | null {
  const idErr = userIdProblem(u.id);
  if (idErr) return idErr;
  const t = textProblem(u.name, 'name', LIMITS.nameBytes) ?? textProblem(u.phrase, 'phrase', LIMITS.phraseBytes);
  if (t) return t;
  if (!isUint(u.flag, 0xff)) return 'flag must be a byte';
  if (!isUint(u.authGroupId, 0xffffffff)) return 'authGroupId must be an integer in 0..4294967295';
  const s = u.setting;
  if (!isUint(s.startTime, 0xffffffff) || !isUint(s.endTime, 0xffffffff)) return 'startTime and endTime must be Unix seconds (0 = unset)';
  for (const f of ['fingerAuthMode', 'cardAuthMode', 'idAuthMode'] as const) if (!isUint(s[f], 0xff)) return `${f} must be an integer in 0..255`;
  if (!isUint(s.securityLevel, LIMITS.securityLevelMax)) return `securityLevel must be an integer in 0..${LIMITS.securityLevelMax}`;
  if (!Buffer.isBuffer(u.photo) || u.photo.length > LIMITS.photoBytes) return `the photo is longer than ${LIMITS.photoBytes} bytes`;
  if (!Buffer.isBuffer(u.pinHash) || (u.pinHash.length !== 0 && u.pinHash.length !== LIMITS.pinHashBytes))
    return `the PIN hash must be empty or ${LIMITS.pinHashBytes} bytes`;

  if (u.cards.length > LIMITS.cards) return `a user holds at most ${LIMITS.cards} cards (got ${u.cards.length})`;
  const cards = new Set<string>();
  for (const c of u.cards) {
    if (!isUint(c.type, 0xff) || c.type < 1) return 'card type must be 1..255';
    if (!Buffer.isBuffer(c.data) || c.data.length < 1 || c.data.length > LIMITS.cardDataBytes) return `card data must be 1..${LIMITS.cardDataBytes} bytes`;
    // a card is identified by its data (the card number), whatever its type
    const k = c.data.toString('hex');
    if (cards.has(k)) return 'the same card is listed twice';
    cards.add(k);
  }
  if (u.fingers.length > LIMITS.fingers) return `a user holds at most ${LIMITS.fingers} fingers (got ${u.fingers.length})`;
  const fingers = new Set<number>();
  for (const f of u.fingers) {
    if (!isUint(f.index, LIMITS.fingerIndexMax)) return `finger index must be 0..${LIMITS.fingerIndexMax}`;
    if (fingers.has(f.index)) return `finger index ${f.index} is listed twice`;
    fingers.add(f.index);
    if (!isUint(f.flag, 0xff)) return `finger ${f.index}: flag must be a byte`;
    if (!Array.isArray(f.templates) || f.templates.length !== 2 || f.templates.some((x) => !Buffer.isBuffer(x) || x.length !== LIMITS.fingerTemplateBytes))
      return `finger ${f.index}: two templates of ${LIMITS.fingerTemplateBytes} bytes are needed`;
  }
  if (u.faces.length > LIMITS.faces) return `a user holds at most ${LIMITS.faces} faces (got ${u.faces.length})`;
  for (const f of u.faces) {
    if (!isUint(f.index, 0xff) || !isUint(f.flag, 0xff)) return 'face index and flag must be bytes';
    if (!Buffer.isBuffer(f.data) || f.data.length < 1 || f.data.length > LIMITS.faceDataBytes) return `face data must be 1..${LIMITS.faceDataBytes} bytes`;
  }
  if (u.accessGroups.length > LIMITS.accessGroups) return `a user holds at most ${LIMITS.accessGroups} access groups (got ${u.accessGroups.length})`;
  if (!u.accessGroups.every((g) => isUint(g, 0xffffffff))) return 'access groups must be integers in 0..4294967295';
  if (u.jobCodes.length > LIMITS.jobCodes) return `a user holds at most ${LIMITS.jobCodes} job codes (got ${u.jobCodes.length})`;
  for (const j of u.jobCodes) {
    if (!isUint(j.code, 0xffffffff)) return 'job codes must be integers in 0..4294967295';
    const l = textProblem(j.label, 'job code label', LIMITS.jobLabelBytes);
    if (l) return l;
  }
  return null;
}

/**
 * Parses the JSON form. `base` supplies the fields the JSON leaves out (a PATCH);
 * without it they are vacant.
 */
export function userFromJson(j: unknown, base?: UserRecord): UserRecord {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new UserJsonError('a user must be a JSON object');
  const o = j as Record<string, unknown>;
  const id = o.id ?? base?.id;
  const idErr = userIdProblem(id);
  if (idErr) throw new UserJsonError(idErr);
  const u: UserRecord = base ? structuredCloneUser(base) : emptyUser(id as string);
  u.id = id as string;
  if (o.name !== undefined) u.name = text(o.name, 'name', LIMITS.nameBytes);
  if (o.phrase !== undefined) u.phrase = text(o.phrase, 'phrase', LIMITS.phraseBytes);
  if (o.startTime !== undefined) u.setting.startTime = int(o.startTime, 'startTime', 0, 0xffffffff);
  if (o.endTime !== undefined) u.setting.endTime = int(o.endTime, 'endTime', 0, 0xffffffff);
  if (o.securityLevel !== undefined) u.setting.securityLevel = int(o.securityLevel, 'securityLevel', 0, LIMITS.securityLevelMax);
  if (o.fingerAuthMode !== undefined) u.setting.fingerAuthMode = int(o.fingerAuthMode, 'fingerAuthMode', 0, 255);
  if (o.cardAuthMode !== undefined) u.setting.cardAuthMode = int(o.cardAuthMode, 'cardAuthMode', 0, 255);
  if (o.idAuthMode !== undefined) u.setting.idAuthMode = int(o.idAuthMode, 'idAuthMode', 0, 255);
  if (o.authGroupId !== undefined) u.authGroupId = int(o.authGroupId, 'authGroupId', 0, 0xffffffff);
  if (o.disabled !== undefined) {
    if (typeof o.disabled !== 'boolean') throw new UserJsonError('disabled must be true or false');
    u.flag = o.disabled ? u.flag | USER_DISABLED : u.flag & ~USER_DISABLED;
  }
  if (o.cards !== undefined)
    u.cards = list(o.cards, 'cards', LIMITS.cards, (c, i) => {
      const data = hexBytes(c.data, `cards[${i}].data`, LIMITS.cardDataBytes);
      if (data.length === 0) throw new UserJsonError(`cards[${i}].data must not be empty`);
      return { type: int(c.type, `cards[${i}].type`, 1, 255), data };
    });
  if (o.fingers !== undefined)
    u.fingers = list(o.fingers, 'fingers', LIMITS.fingers, (f, i) => {
      if (!Array.isArray(f.templates) || f.templates.length !== 2) throw new UserJsonError(`fingers[${i}].templates must hold two hex templates`);
      const t = f.templates.map((t: unknown, k: number) => {
        const b = hexBytes(t, `fingers[${i}].templates[${k}]`, LIMITS.fingerTemplateBytes);
        const full = Buffer.alloc(LIMITS.fingerTemplateBytes);
        b.copy(full);
        return full;
      }) as [Buffer, Buffer];
      return { index: int(f.index, `fingers[${i}].index`, 0, LIMITS.fingerIndexMax), flag: int(f.flag ?? 0, `fingers[${i}].flag`, 0, 255), templates: t };
    });
  if (o.faces !== undefined)
    u.faces = list(o.faces, 'faces', LIMITS.faces, (f, i) => {
      const data = hexBytes(f.data, `faces[${i}].data`, LIMITS.faceDataBytes);
      if (data.length === 0) throw new UserJsonError(`faces[${i}].data must not be empty`);
      return { index: int(f.index, `faces[${i}].index`, 0, 255), flag: int(f.flag ?? 0, `faces[${i}].flag`, 0, 255), data };
    });
  if (o.accessGroups !== undefined)
    u.accessGroups = list(o.accessGroups, 'accessGroups', LIMITS.accessGroups, (g, i) => int(g, `accessGroups[${i}]`, 0, 0xffffffff));
  if (o.jobCodes !== undefined)
    u.jobCodes = list(o.jobCodes, 'jobCodes', LIMITS.jobCodes, (jc, i) => ({
      code: int(jc.code, `jobCodes[${i}].code`, 0, 0xffffffff),
      label: text(jc.label ?? '', `jobCodes[${i}].label`, LIMITS.jobLabelBytes),
    }));
  if (o.photo !== undefined) u.photo = hexBytes(o.photo, 'photo', LIMITS.photoBytes);
  if (o.pin !== undefined) {
    if (typeof o.pin !== 'string') throw new UserJsonError('pin must be a string');
    if (o.pin === '') u.pinHash = Buffer.alloc(0);
    else if (!/^[0-9]{4,16}$/.test(o.pin)) throw new UserJsonError('pin must be 4 to 16 digits');
    else u.pinHash = hashPin(o.pin);
  } else if (o.pinHash !== undefined) {
    u.pinHash = o.pinHash === '' ? Buffer.alloc(0) : hexBytes(o.pinHash, 'pinHash', 32, 32);
  }
  return u;
}

export function structuredCloneUser(u: UserRecord): UserRecord {
  return {
    ...u,
    setting: { ...u.setting },
    photo: Buffer.from(u.photo),
    pinHash: Buffer.from(u.pinHash),
    cards: u.cards.map((c) => ({ type: c.type, data: Buffer.from(c.data) })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: [Buffer.from(f.templates[0]), Buffer.from(f.templates[1])] })),
    faces: u.faces.map((f) => ({ index: f.index, flag: f.flag, data: Buffer.from(f.data) })),
    accessGroups: [...u.accessGroups],
    jobCodes: u.jobCodes.map((j) => ({ ...j })),
  };
}
