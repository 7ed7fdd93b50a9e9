// User records (PROTOCOL.md 6.2): a 48-byte header, then the parts named by
// infoMask in ascending bit order. decodeUser validates every rule of 6.2 and
// throws only ProtocolError (status INVALID_USER); encodeUser enforces the same
// rules so that a bad record never goes on the wire.
import { createHash } from 'node:crypto';
import { Parser } from 'binary-parser';
import {
  CARD_SIZE,
  DIGEST_BYTES,
  FACE_HEAD_SIZE,
  FINGER_SIZE,
  INFO_MASK_ALL_PARTS,
  InfoMask,
  JOB_SIZE,
  LIMITS,
  SETTING_SIZE,
  Status,
  USER_FORMAT_VERSION,
  USER_HEADER_SIZE,
} from './constants.js';
import { ProtocolError, guard } from './errors.js';
import { checkBuf, checkInt, need, readChar, readUserId, writeChar, writeUserId } from './text.js';
import { emptyUser, type UserRecord } from '../model/user.js';

export type { UserRecord };

interface UserHeader {
  userId: Buffer;
  formatVersion: number;
  flag: number;
  version: number;
  infoMask: number;
  numCards: number;
  numFingers: number;
  numFaces: number;
  numAccessGroups: number;
  numJobCodes: number;
  reserved: number;
  authGroupId: number;
}

/** the 48-byte header; the user ID stays raw bytes and is validated by readUserId */
export const userHeaderParser = new Parser()
  .endianness('little')
  .buffer('userId', { length: LIMITS.userIdBytes })
  .uint8('formatVersion')
  .uint8('flag')
  .uint16('version')
  .uint16('infoMask')
  .uint8('numCards')
  .uint8('numFingers')
  .uint8('numFaces')
  .uint8('numAccessGroups')
  .uint8('numJobCodes')
  .uint8('reserved')
  .uint32('authGroupId');

const PIN_ZERO = Buffer.alloc(LIMITS.pinHashBytes);

function tooMany(code: ProtocolError['code'], what: string, n: number, max: number): ProtocolError {
  return new ProtocolError(code, `user.${what}: ${n} entries, at most ${max} allowed`, Status.INVALID_USER);
}

/** Normalizes the mask a caller asks for: only version-1 parts, DATA always present. */
function partsOf(infoMask: number): number {
  checkInt(infoMask, 0, 0xffff, 'infoMask');
  return (infoMask & INFO_MASK_ALL_PARTS) | InfoMask.DATA;
}

/** Encodes a user record with the parts named by infoMask (INFO_MASK_ANY works: unknown bits are dropped). */
export function encodeUser(u: UserRecord, infoMask: number = INFO_MASK_ALL_PARTS): Buffer {
  return guard('user record', () => encodeUserUnguarded(u, infoMask), Status.INVALID_USER);
}

function encodeUserUnguarded(u: UserRecord, infoMask: number): Buffer {
  const mask = partsOf(infoMask);
  const has = (bit: number) => (mask & bit) !== 0;
  const cards = has(InfoMask.CARD) ? u.cards : [];
  const fingers = has(InfoMask.FINGER) ? u.fingers : [];
  const faces = has(InfoMask.FACE) ? u.faces : [];
  const groups = has(InfoMask.ACCESS_GROUP) ? u.accessGroups : [];
  const jobs = has(InfoMask.JOB) ? u.jobCodes : [];
  if (cards.length > LIMITS.cards) throw tooMany('TOO_MANY_CARDS', 'cards', cards.length, LIMITS.cards);
  if (fingers.length > LIMITS.fingers) throw tooMany('TOO_MANY_FINGERS', 'fingers', fingers.length, LIMITS.fingers);
  if (faces.length > LIMITS.faces) throw tooMany('TOO_MANY_FACES', 'faces', faces.length, LIMITS.faces);
  if (groups.length > LIMITS.accessGroups) throw tooMany('TOO_MANY_ACCESS_GROUPS', 'accessGroups', groups.length, LIMITS.accessGroups);
  if (jobs.length > LIMITS.jobCodes) throw tooMany('TOO_MANY_JOB_CODES', 'jobCodes', jobs.length, LIMITS.jobCodes);

  let size = USER_HEADER_SIZE;
  if (has(InfoMask.SETTING)) size += SETTING_SIZE;
  if (has(InfoMask.NAME)) size += LIMITS.nameBytes;
  if (has(InfoMask.PHOTO)) {
    checkBuf(u.photo, 'user.photo');
    if (u.photo.length > LIMITS.photoBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.photo: ${u.photo.length} bytes, at most ${LIMITS.photoBytes} allowed`);
    size += 4 + u.photo.length;
  }
  if (has(InfoMask.PIN)) size += LIMITS.pinHashBytes;
  size += cards.length * CARD_SIZE + fingers.length * FINGER_SIZE;
  for (let i = 0; i < faces.length; i++) {
    const d = checkBuf(faces[i].data, `user.faces[${i}].data`);
    if (d.length < 1 || d.length > LIMITS.faceDataBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.faces[${i}].data: ${d.length} bytes, must be 1..${LIMITS.faceDataBytes}`);
    size += FACE_HEAD_SIZE + d.length;
  }
  size += groups.length * 4 + jobs.length * JOB_SIZE;
  if (has(InfoMask.PHRASE)) size += LIMITS.phraseBytes;

  const out = Buffer.alloc(size);
  writeUserId(out, 0, u.id, 'user.id');
  out[32] = USER_FORMAT_VERSION;
  out[33] = checkInt(u.flag, 0, 0xff, 'user.flag');
  out.writeUInt16LE(checkInt(u.version, 0, 0xffff, 'user.version'), 34);
  out.writeUInt16LE(mask, 36);
  out[38] = cards.length;
  out[39] = fingers.length;
  out[40] = faces.length;
  out[41] = groups.length;
  out[42] = jobs.length;
  out[43] = 0;
  out.writeUInt32LE(checkInt(u.authGroupId, 0, 0xffffffff, 'user.authGroupId'), 44);
  let p = USER_HEADER_SIZE;

  if (has(InfoMask.SETTING)) {
    const s = u.setting;
    out.writeUInt32LE(checkInt(s.startTime, 0, 0xffffffff, 'user.setting.startTime'), p);
    out.writeUInt32LE(checkInt(s.endTime, 0, 0xffffffff, 'user.setting.endTime'), p + 4);
    out[p + 8] = checkInt(s.fingerAuthMode, 0, 0xff, 'user.setting.fingerAuthMode');
    out[p + 9] = checkInt(s.cardAuthMode, 0, 0xff, 'user.setting.cardAuthMode');
    out[p + 10] = checkInt(s.idAuthMode, 0, 0xff, 'user.setting.idAuthMode');
    out[p + 11] = checkInt(s.securityLevel, 0, LIMITS.securityLevelMax, 'user.setting.securityLevel');
    p += SETTING_SIZE;
  }
  if (has(InfoMask.NAME)) {
    writeChar(out, p, LIMITS.nameBytes, u.name, 'user.name');
    p += LIMITS.nameBytes;
  }
  if (has(InfoMask.PHOTO)) {
    out.writeUInt32LE(u.photo.length, p);
    u.photo.copy(out, p + 4);
    p += 4 + u.photo.length;
  }
  if (has(InfoMask.PIN)) {
    const pin = checkBuf(u.pinHash, 'user.pinHash');
    if (pin.length !== 0 && pin.length !== LIMITS.pinHashBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.pinHash: ${pin.length} bytes, must be empty or ${LIMITS.pinHashBytes}`);
    pin.copy(out, p); // empty leaves 32 zero bytes: no PIN
    p += LIMITS.pinHashBytes;
  }
  for (let i = 0; i < cards.length; i++, p += CARD_SIZE) {
    const c = cards[i];
    out[p] = checkInt(c.type, 1, 0xff, `user.cards[${i}].type`);
    const d = checkBuf(c.data, `user.cards[${i}].data`);
    if (d.length < 1 || d.length > LIMITS.cardDataBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.cards[${i}].data: ${d.length} bytes, must be 1..${LIMITS.cardDataBytes}`);
    out[p + 1] = d.length;
    d.copy(out, p + 2);
  }
  for (let i = 0; i < fingers.length; i++, p += FINGER_SIZE) {
    const f = fingers[i];
    out[p] = checkInt(f.index, 0, 9, `user.fingers[${i}].index`);
    out[p + 1] = checkInt(f.flag, 0, 0xff, `user.fingers[${i}].flag`);
    if (!Array.isArray(f.templates) || f.templates.length !== 2)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.fingers[${i}].templates: must hold two templates`);
    for (let k = 0; k < 2; k++) {
      const t = checkBuf(f.templates[k], `user.fingers[${i}].templates[${k}]`);
      if (t.length !== LIMITS.fingerTemplateBytes)
        throw new ProtocolError(
          'FIELD_OUT_OF_RANGE',
          `user.fingers[${i}].templates[${k}]: ${t.length} bytes, must be ${LIMITS.fingerTemplateBytes}`,
        );
      t.copy(out, p + 4 + k * LIMITS.fingerTemplateBytes);
    }
  }
  for (let i = 0; i < faces.length; i++) {
    const f = faces[i];
    out[p] = checkInt(f.index, 0, 0xff, `user.faces[${i}].index`);
    out[p + 1] = checkInt(f.flag, 0, 0xff, `user.faces[${i}].flag`);
    out.writeUInt32LE(f.data.length, p + 4);
    f.data.copy(out, p + FACE_HEAD_SIZE);
    p += FACE_HEAD_SIZE + f.data.length;
  }
  for (let i = 0; i < groups.length; i++, p += 4) out.writeUInt32LE(checkInt(groups[i], 0, 0xffffffff, `user.accessGroups[${i}]`), p);
  for (let i = 0; i < jobs.length; i++, p += JOB_SIZE) {
    out.writeUInt32LE(checkInt(jobs[i].code, 0, 0xffffffff, `user.jobCodes[${i}].code`), p);
    writeChar(out, p + 4, LIMITS.jobLabelBytes, jobs[i].label, `user.jobCodes[${i}].label`);
  }
  if (has(InfoMask.PHRASE)) {
    writeChar(out, p, LIMITS.phraseBytes, u.phrase, 'user.phrase');
    p += LIMITS.phraseBytes;
  }
  if (p !== size) throw new Error(`user record size mismatch: wrote ${p} of ${size}`); // a bug here, not bad input
  return out;
}

export interface DecodedUser {
  user: UserRecord;
  /** the parts the record carried; parts not named are vacant in `user` */
  infoMask: number;
}

/** Decodes and validates one user record (the whole buffer). Throws ProtocolError with status INVALID_USER. */
export function decodeUser(buf: Buffer): DecodedUser {
  return guard('user record', () => decodeUserUnguarded(buf), Status.INVALID_USER);
}

const copy = (b: Buffer, start: number, end: number) => Buffer.from(b.subarray(start, end));

function decodeUserUnguarded(buf: Buffer): DecodedUser {
  if (!Buffer.isBuffer(buf)) throw new ProtocolError('BAD_PAYLOAD', 'user record: must be a Buffer');
  need(buf, 0, USER_HEADER_SIZE, 'user record header');
  const h = userHeaderParser.parse(buf) as UserHeader;
  const id = readUserId(buf, 0, 'user.id');
  if (h.formatVersion !== USER_FORMAT_VERSION)
    throw new ProtocolError('BAD_FORMAT_VERSION', `user ${JSON.stringify(id)}: formatVersion ${h.formatVersion}, expected ${USER_FORMAT_VERSION}`);
  const mask = h.infoMask;
  if ((mask & InfoMask.DATA) === 0) throw new ProtocolError('BAD_INFO_MASK', `user ${JSON.stringify(id)}: infoMask 0x${mask.toString(16)} lacks DATA (0x0001)`);
  if ((mask & ~INFO_MASK_ALL_PARTS) !== 0)
    throw new ProtocolError('BAD_INFO_MASK', `user ${JSON.stringify(id)}: infoMask 0x${mask.toString(16)} names parts unknown in version 1`);
  const has = (bit: number) => (mask & bit) !== 0;
  const counts: [keyof UserHeader, number, number, ProtocolError['code'], string][] = [
    ['numCards', InfoMask.CARD, LIMITS.cards, 'TOO_MANY_CARDS', 'cards'],
    ['numFingers', InfoMask.FINGER, LIMITS.fingers, 'TOO_MANY_FINGERS', 'fingers'],
    ['numFaces', InfoMask.FACE, LIMITS.faces, 'TOO_MANY_FACES', 'faces'],
    ['numAccessGroups', InfoMask.ACCESS_GROUP, LIMITS.accessGroups, 'TOO_MANY_ACCESS_GROUPS', 'accessGroups'],
    ['numJobCodes', InfoMask.JOB, LIMITS.jobCodes, 'TOO_MANY_JOB_CODES', 'jobCodes'],
  ];
  for (const [key, bit, max, code, what] of counts) {
    const n = h[key] as number;
    if (n > max) throw tooMany(code, what, n, max);
    if (n !== 0 && !has(bit))
      throw new ProtocolError('BAD_INFO_MASK', `user.${key} is ${n} but infoMask 0x${mask.toString(16)} lacks that part`);
  }

  const u = emptyUser(id);
  u.flag = h.flag;
  u.version = h.version;
  u.authGroupId = h.authGroupId;
  let p = USER_HEADER_SIZE;

  if (has(InfoMask.SETTING)) {
    need(buf, p, SETTING_SIZE, 'user.setting');
    const level = buf[p + 11];
    if (level > LIMITS.securityLevelMax)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.setting.securityLevel: ${level}, at most ${LIMITS.securityLevelMax}`);
    u.setting = {
      startTime: buf.readUInt32LE(p),
      endTime: buf.readUInt32LE(p + 4),
      fingerAuthMode: buf[p + 8],
      cardAuthMode: buf[p + 9],
      idAuthMode: buf[p + 10],
      securityLevel: level,
    };
    p += SETTING_SIZE;
  }
  if (has(InfoMask.NAME)) {
    need(buf, p, LIMITS.nameBytes, 'user.name');
    u.name = readChar(buf, p, LIMITS.nameBytes, 'user.name');
    p += LIMITS.nameBytes;
  }
  if (has(InfoMask.PHOTO)) {
    need(buf, p, 4, 'user.photo size');
    const n = buf.readUInt32LE(p);
    if (n > LIMITS.photoBytes) throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.photo: size ${n}, at most ${LIMITS.photoBytes}`);
    need(buf, p + 4, n, 'user.photo');
    u.photo = copy(buf, p + 4, p + 4 + n);
    p += 4 + n;
  }
  if (has(InfoMask.PIN)) {
    need(buf, p, LIMITS.pinHashBytes, 'user.pinHash');
    const pin = buf.subarray(p, p + LIMITS.pinHashBytes);
    u.pinHash = pin.equals(PIN_ZERO) ? Buffer.alloc(0) : Buffer.from(pin);
    p += LIMITS.pinHashBytes;
  }
  need(buf, p, h.numCards * CARD_SIZE, 'user.cards');
  for (let i = 0; i < h.numCards; i++, p += CARD_SIZE) {
    const type = buf[p];
    const size = buf[p + 1];
    if (type === 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.cards[${i}].type: 0 is not a card type`);
    if (size < 1 || size > LIMITS.cardDataBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.cards[${i}].size: ${size}, must be 1..${LIMITS.cardDataBytes}`);
    for (let k = p + 2 + size; k < p + CARD_SIZE; k++)
      if (buf[k] !== 0) throw new ProtocolError('BAD_PADDING', `user.cards[${i}].data: byte ${k - p - 2} after size ${size} is not 0`);
    u.cards.push({ type, data: copy(buf, p + 2, p + 2 + size) });
  }
  need(buf, p, h.numFingers * FINGER_SIZE, 'user.fingers');
  for (let i = 0; i < h.numFingers; i++, p += FINGER_SIZE) {
    const index = buf[p];
    if (index > 9) throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.fingers[${i}].index: ${index}, must be 0..9`);
    const t = LIMITS.fingerTemplateBytes;
    u.fingers.push({ index, flag: buf[p + 1], templates: [copy(buf, p + 4, p + 4 + t), copy(buf, p + 4 + t, p + 4 + 2 * t)] });
  }
  for (let i = 0; i < h.numFaces; i++) {
    need(buf, p, FACE_HEAD_SIZE, `user.faces[${i}]`);
    const n = buf.readUInt32LE(p + 4);
    if (n < 1 || n > LIMITS.faceDataBytes)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `user.faces[${i}].size: ${n}, must be 1..${LIMITS.faceDataBytes}`);
    need(buf, p + FACE_HEAD_SIZE, n, `user.faces[${i}].data`);
    u.faces.push({ index: buf[p], flag: buf[p + 1], data: copy(buf, p + FACE_HEAD_SIZE, p + FACE_HEAD_SIZE + n) });
    p += FACE_HEAD_SIZE + n;
  }
  need(buf, p, h.numAccessGroups * 4, 'user.accessGroups');
  for (let i = 0; i < h.numAccessGroups; i++, p += 4) u.accessGroups.push(buf.readUInt32LE(p));
  need(buf, p, h.numJobCodes * JOB_SIZE, 'user.jobCodes');
  for (let i = 0; i < h.numJobCodes; i++, p += JOB_SIZE)
    u.jobCodes.push({ code: buf.readUInt32LE(p), label: readChar(buf, p + 4, LIMITS.jobLabelBytes, `user.jobCodes[${i}].label`) });
  if (has(InfoMask.PHRASE)) {
    need(buf, p, LIMITS.phraseBytes, 'user.phrase');
    u.phrase = readChar(buf, p, LIMITS.phraseBytes, 'user.phrase');
    p += LIMITS.phraseBytes;
  }
  if (p !== buf.length)
    throw new ProtocolError('TRAILING_BYTES', `user ${JSON.stringify(id)}: record is ${buf.length} bytes, its parts end at ${p}`);
  return { user: u, infoMask: mask };
}

/** LIST_USERS digest: first 12 bytes of SHA-256 over the canonical encoding (all parts, flag 0, version 0). */
export function userDigest(u: UserRecord): Buffer {
  const canonical = encodeUser({ ...u, flag: 0, version: 0 }, INFO_MASK_ALL_PARTS);
  return createHash('sha256').update(canonical).digest().subarray(0, DIGEST_BYTES);
}
