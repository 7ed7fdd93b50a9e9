// ZK record <-> termsync user (README "ZKTeco terminals" has the table).
//
//   ZK (72-byte record)          termsync UserRecord
//   user_id (PIN string)    <->  id
//   name (23 bytes UTF-8)   <->  name (cut to 23 bytes at a character boundary)
//   privilege bit 0         <->  flag 0x80 (disabled)
//   privilege level, group  <->  ZkExtras (no termsync field)
//   password (plain)         ->  pinHash = SHA-256(password); plain kept in ZkExtras
//   card N (u32)            <->  cards[0] = {type 1, data = N as 4 bytes big-endian}
//   templates               <->  ZkExtras.templates (vendor format; never termsync fingers)
//
// A ZK terminal cannot carry photo, faces, access groups, job codes, phrase,
// settings, more than one card, or termsync-format fingerprints; userToZk lists
// what it left out so the caller can report it. Nothing is lost on the server:
// the merge keeps server fields, and this mapping only builds what goes out.
import { USER_DISABLED } from '../../model/limits.js';
import { UNTYPED_CARD_TYPE, type PartsSupport } from '../../model/parts.js';
import { emptyUser, hashPin, hasPin, type UserRecord } from '../../model/user.js';
import { PRIV_DISABLED, Privilege, U72, USER_RECORD_72 } from './constants.js';
import { truncateUtf8, type ZkRecordSize, type ZkTemplate, type ZkUser } from './records.js';

/** The card type a ZK card reads as: a ZK terminal keeps a number, no type (CSN, 1). */
export const ZK_CARD_TYPE = UNTYPED_CARD_TYPE;
const DISABLED_FLAG = USER_DISABLED;

/** The template format of ZK fingerprints (ZKFinger); never the model's. */
export const ZK_FINGER_FORMAT = 'zkfinger';

/**
 * What a ZK terminal (72-byte records) carries of a user, for the sync engine's
 * port: a 23-byte name, the disabled bit, a plain password, one untyped card of
 * up to 4 bytes. Its fingerprints are ZK templates: they do not fit the model's
 * Finger and travel beside the record (ZkExtras), so none of the model's fingers.
 */
export const ZK_PARTS: Readonly<PartsSupport> = Object.freeze({
  nameBytes: U72.nameBytes - 1,
  phraseBytes: 0,
  validity: false,
  authModes: false,
  securityLevel: false,
  authGroup: false,
  disabled: true,
  photo: false,
  pin: 'plain',
  cards: Object.freeze({ max: 1, maxDataBytes: 4, typed: false, rightAlignedMinBytes: 4 }),
  fingers: Object.freeze({ max: 0, format: ZK_FINGER_FORMAT }),
  faces: 0,
  accessGroups: 0,
  jobCodes: 0,
});

/** What a ZK terminal holds beyond the termsync record. */
export interface ZkExtras {
  /** privilege level bits (0 user, 2 enroller, 6 manager, 14 admin), without the disabled bit */
  level: number;
  group: number;
  /** the plain password as on the device ('' = none) */
  password: string;
  /** fingerprint templates in the terminal's own format (finger index, flag, bytes) */
  templates: { finger: number; flag: number; template: Buffer }[];
}

export interface FromZk {
  user: UserRecord;
  extras: ZkExtras;
}

/** The card data termsync stores for ZK card number `n`: 4 bytes big-endian (987654 -> 000f1206). */
export function cardDataOf(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** The ZK card number for a termsync card (its data, big-endian, whatever its type), or undefined when it cannot be one (over 4 bytes, or 0). */
export function cardNumberOf(c: { type: number; data: Buffer }): number | undefined {
  if (c.data.length === 0 || c.data.length > 4) return undefined;
  let n = 0;
  for (const b of c.data) n = n * 256 + b;
  return n === 0 ? undefined : n;
}

/** A ZK user (and its templates) as a termsync user plus what termsync has no field for. */
export function zkToUser(z: ZkUser, templates: ZkTemplate[] = []): FromZk {
  const u = emptyUser(z.userId);
  u.name = z.name;
  if (z.privilege & PRIV_DISABLED) u.flag |= DISABLED_FLAG;
  if (z.password !== '') u.pinHash = hashPin(z.password);
  if (z.card !== 0) u.cards = [{ type: ZK_CARD_TYPE, data: cardDataOf(z.card) }];
  return {
    user: u,
    extras: {
      level: z.privilege & 0x0e,
      group: z.group,
      password: z.password,
      templates: templates
        .filter((t) => t.uid === z.uid)
        .sort((a, b) => a.finger - b.finger)
        .map((t) => ({ finger: t.finger, flag: t.flag, template: Buffer.from(t.template) })),
    },
  };
}

/** Parts of a termsync user a ZK terminal cannot hold. */
export type ZkDroppedPart =
  | 'photo'
  | 'faces'
  | 'accessGroups'
  | 'jobCodes'
  | 'phrase'
  | 'setting'
  | 'authGroupId'
  | 'extraCards'
  | 'cardFormat'
  | 'fingers'
  | 'pin'
  | 'nameTruncated';

export interface ToZk {
  user: ZkUser;
  templates: ZkTemplate[];
  /** parts of the termsync user that did not go to the terminal */
  dropped: ZkDroppedPart[];
}

export class ZkMappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZkMappingError';
  }
}

export interface ToZkOptions {
  /** the device-internal uid to write under (from the terminal's uid map) */
  uid: number;
  /** what is known beyond the termsync record (from a ZK terminal that held this user) */
  extras?: ZkExtras;
  /** the user as this terminal holds it now, if it does: its unknown bytes and password are kept */
  existing?: ZkUser;
  /** record size the terminal uses (default 72) */
  recordSize?: ZkRecordSize;
}

/** Whether a user ID fits a ZK terminal (72-byte: up to 23 bytes; 28-byte: a number). */
export function zkUserIdProblem(id: string, recordSize: ZkRecordSize = USER_RECORD_72): string | null {
  if (recordSize === USER_RECORD_72) {
    if (Buffer.byteLength(id, 'utf8') > U72.userIdBytes - 1) return `user id ${JSON.stringify(id)} is longer than the ${U72.userIdBytes - 1} bytes a ZK terminal holds`;
    return null;
  }
  if (!/^[1-9][0-9]{0,9}$/.test(id) || Number(id) > 0xffffffff) return `user id ${JSON.stringify(id)} is not a number this ZK terminal (28-byte records) can hold`;
  return null;
}

/** Builds the ZK record (and templates) for a termsync user. Throws ZkMappingError when the user ID cannot go to a ZK terminal. */
export function userToZk(u: UserRecord, opts: ToZkOptions): ToZk {
  const size = opts.recordSize ?? USER_RECORD_72;
  const idProblem = zkUserIdProblem(u.id, size);
  if (idProblem) throw new ZkMappingError(idProblem);
  const dropped: ZkDroppedPart[] = [];
  const nameBytes = size === USER_RECORD_72 ? U72.nameBytes - 1 : 7;
  const name = truncateUtf8(u.name, nameBytes);
  if (name !== u.name) dropped.push('nameTruncated');

  // like the model's fitForTerminal(ZK_PARTS): the first card that fits 4 bytes, its type not kept
  let card = 0;
  const fitting = u.cards.filter((c) => c.data.length <= 4);
  if (fitting.length > 0) {
    const n = cardNumberOf(fitting[0]);
    if (n === undefined) dropped.push('cardFormat');
    else card = n;
  }
  if (fitting.length < u.cards.length) dropped.push('cardFormat');
  if (fitting.length > 1) dropped.push('extraCards');

  // The server holds only a hash of the PIN: a plain password can go out only
  // when a ZK terminal told us one that matches it.
  const pwMax = size === USER_RECORD_72 ? 7 : 4;
  let password = '';
  if (hasPin(u)) {
    const candidates = [opts.extras?.password, opts.existing?.password].filter((p): p is string => !!p);
    const match = candidates.find((p) => hashPin(p).equals(u.pinHash) && Buffer.byteLength(p) <= pwMax);
    if (match !== undefined) password = match;
    else {
      dropped.push('pin');
      password = opts.existing?.password ?? '';
    }
  }

  const level = opts.extras?.level ?? (opts.existing ? opts.existing.privilege & 0x0e : Privilege.USER);
  const privilege = (level & 0x0e) | (u.flag & DISABLED_FLAG ? PRIV_DISABLED : 0);
  const group = opts.extras?.group ?? opts.existing?.group ?? 1;

  if (u.photo.length > 0) dropped.push('photo');
  if (u.faces.length > 0) dropped.push('faces');
  if (u.accessGroups.length > 0) dropped.push('accessGroups');
  if (u.jobCodes.length > 0) dropped.push('jobCodes');
  if (u.phrase !== '') dropped.push('phrase');
  if (u.authGroupId !== 0) dropped.push('authGroupId');
  const s = u.setting;
  if (s.startTime || s.endTime || s.fingerAuthMode || s.cardAuthMode || s.idAuthMode || s.securityLevel) dropped.push('setting');
  // termsync-format fingerprints are another maker's templates: they never go to a ZK terminal
  if (u.fingers.length > 0) dropped.push('fingers');

  const user: ZkUser = { uid: opts.uid, privilege, password, name, card, group, userId: u.id, raw: opts.existing?.raw };
  const templates = (opts.extras?.templates ?? []).map((t) => ({ uid: opts.uid, finger: t.finger, flag: t.flag, template: Buffer.from(t.template) }));
  return { user, templates, dropped };
}
