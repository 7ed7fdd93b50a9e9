// Data layouts carried inside ZK frames (ZK-PROTOCOL.md sections 5-9): user
// records of 72 and 28 bytes, the user and template tables of a buffered read,
// the upload buffer of command 110, realtime events, device counters and the
// device's time encoding. Pure functions on Buffers, no I/O.
//
// Unknown bytes survive a round trip: a decoded user keeps the record it came
// from (`raw`), and encoding starts from those bytes, overwriting only the fields
// whose value changed. Bytes after a string's NUL (real firmware leaves garbage
// there) and the timezone bytes 40..47 thus go back to the device as they came.
import { PRIV_DISABLED, U28, U72, USER_RECORD_28, USER_RECORD_72, ZK_READ_CHUNK } from './constants.js';
import { ZkProtocolError } from './codec.js';

export type ZkRecordSize = typeof USER_RECORD_72 | typeof USER_RECORD_28;

/** One user as a ZK terminal holds it. */
export interface ZkUser {
  /** device-internal index (1..65535); differs between terminals for the same person */
  uid: number;
  /** privilege byte: bit 0 disabled, bits 1-3 level (0 user, 2 enroller, 6 manager, 14 admin) */
  privilege: number;
  /** plain password as stored on the device (up to 7 bytes in a 72-byte record, 4 in a 28-byte one) */
  password: string;
  /** up to 23 bytes of UTF-8 in a 72-byte record, 7 in a 28-byte one */
  name: string;
  /** card number, u32 (0 = none) */
  card: number;
  /** group byte */
  group: number;
  /** the user ID (PIN) string; digits only in a 28-byte record */
  userId: string;
  /** the record this user was read from, carried through when it is written back */
  raw?: Buffer;
}

/** A fingerprint template as a ZK terminal holds it (vendor-specific bytes). */
export interface ZkTemplate {
  uid: number;
  /** finger index 0..9 */
  finger: number;
  /** 0 invalid, 1 valid, 3 duress */
  flag: number;
  template: Buffer;
}

export function isDisabled(u: Pick<ZkUser, 'privilege'>): boolean {
  return (u.privilege & PRIV_DISABLED) !== 0;
}

/** Text up to the first NUL (or the whole field), decoded as UTF-8. */
function cString(b: Buffer, off: number, len: number): string {
  const field = b.subarray(off, off + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? field.length : nul).toString('utf8');
}

/** The longest prefix of `s` whose UTF-8 fits `maxBytes`, never splitting a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  let out = '';
  let used = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (used + n > maxBytes) break;
    out += ch;
    used += n;
  }
  return out;
}

function writeCString(b: Buffer, off: number, len: number, s: string, what: string): void {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.includes(0)) throw new ZkProtocolError('BAD_RECORD', `${what} must not contain NUL`);
  if (bytes.length > len - 1) throw new ZkProtocolError('BAD_RECORD', `${what} is longer than ${len - 1} bytes`);
  b.fill(0, off, off + len);
  bytes.copy(b, off);
}

function checkInt(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new ZkProtocolError('BAD_RECORD', `${what} ${v} is out of range 0..${max}`);
}

/** Decodes one user record; the size is the record's length (72 or 28). */
export function decodeUserRecord(rec: Buffer): ZkUser {
  if (rec.length === USER_RECORD_72) {
    return {
      uid: rec.readUInt16LE(U72.uid),
      privilege: rec[U72.privilege],
      password: cString(rec, U72.password, U72.passwordBytes),
      name: cString(rec, U72.name, U72.nameBytes),
      card: rec.readUInt32LE(U72.card),
      group: rec[U72.group],
      userId: cString(rec, U72.userId, U72.userIdBytes),
      raw: Buffer.from(rec),
    };
  }
  if (rec.length === USER_RECORD_28) {
    return {
      uid: rec.readUInt16LE(U28.uid),
      privilege: rec[U28.privilege],
      password: cString(rec, U28.password, U28.passwordBytes),
      name: cString(rec, U28.name, U28.nameBytes),
      card: rec.readUInt32LE(U28.card),
      group: rec[U28.group],
      userId: String(rec.readUInt32LE(U28.userId)),
      raw: Buffer.from(rec),
    };
  }
  throw new ZkProtocolError('BAD_RECORD', `a user record is 72 or 28 bytes, got ${rec.length}`);
}

/**
 * Encodes a user as a record of `size` bytes. When `u.raw` has that size, the
 * record starts from it and only fields whose value differs are rewritten.
 */
export function encodeUserRecord(u: ZkUser, size: ZkRecordSize = USER_RECORD_72): Buffer {
  checkInt(u.uid, 0xffff, 'uid');
  checkInt(u.privilege, 0xff, 'privilege');
  checkInt(u.card, 0xffffffff, 'card');
  checkInt(u.group, 0xff, 'group');
  const base = u.raw && u.raw.length === size ? decodeUserRecord(u.raw) : undefined;
  // a record read from a device is written back as it came, even a odd one
  if (u.userId.length === 0 && base?.userId !== '') throw new ZkProtocolError('BAD_RECORD', 'the user id must not be empty');
  const b = base ? Buffer.from(u.raw!) : Buffer.alloc(size);
  if (size === USER_RECORD_72) {
    b.writeUInt16LE(u.uid, U72.uid);
    b[U72.privilege] = u.privilege;
    if (base?.password !== u.password) writeCString(b, U72.password, U72.passwordBytes, u.password, 'password');
    if (base?.name !== u.name) writeCString(b, U72.name, U72.nameBytes, u.name, 'name');
    b.writeUInt32LE(u.card, U72.card);
    b[U72.group] = u.group;
    if (base?.userId !== u.userId) writeCString(b, U72.userId, U72.userIdBytes, u.userId, 'user id');
    return b;
  }
  if (size === USER_RECORD_28) {
    if (base?.userId !== u.userId && !/^[0-9]{1,10}$/.test(u.userId) || Number(u.userId) > 0xffffffff || String(Number(u.userId)) !== u.userId)
      throw new ZkProtocolError('BAD_RECORD', `a 28-byte record holds a numeric user id (1..4294967295 without leading zeros), got ${JSON.stringify(u.userId)}`);
    b.writeUInt16LE(u.uid, U28.uid);
    b[U28.privilege] = u.privilege;
    if (base?.password !== u.password) writeCString(b, U28.password, U28.passwordBytes, u.password, 'password');
    if (base?.name !== u.name) writeCString(b, U28.name, U28.nameBytes, u.name, 'name');
    b.writeUInt32LE(u.card, U28.card);
    b[U28.group] = u.group;
    b.writeUInt32LE(Number(u.userId), U28.userId);
    return b;
  }
  throw new ZkProtocolError('BAD_RECORD', `a user record is 72 or 28 bytes, not ${size as number}`);
}

/** A text field: printable bytes, then NUL padding only. */
function textField(f: Buffer, mustHaveText: boolean): boolean {
  const nul = f.indexOf(0);
  const end = nul < 0 ? f.length : nul;
  if (mustHaveText && end === 0) return false;
  for (let i = 0; i < end; i++) if (f[i] < 0x20 || f[i] === 0x7f) return false;
  return nul < 0 || f.subarray(nul).every((x) => x === 0);
}

/** How many records of `size` bytes look like real user records (uid set, user id present). */
function plausibleCount(body: Buffer, size: 72 | 28): number {
  let n = 0;
  for (let p = 0; p + size <= body.length; p += size) {
    const r = body.subarray(p, p + size);
    if (r.readUInt16LE(0) === 0) continue;
    if (size === 72 ? textField(r.subarray(U72.userId, U72.userId + U72.userIdBytes), true) && textField(r.subarray(U72.name, U72.name + U72.nameBytes), false) : r.readUInt32LE(U28.userId) !== 0 && textField(r.subarray(U28.name, U28.name + U28.nameBytes), false))
      n++;
  }
  return n;
}

export interface UserTable {
  users: ZkUser[];
  /** the record size measured from the data */
  recordSize: ZkRecordSize;
}

/**
 * Decodes a user table as a buffered read returns it: u32 byte count, then
 * records. The record size is measured: byte count / `count` when the user count
 * is known (GET_FREE_SIZES), else the size that divides the byte count (72 when
 * both do and the records look like 72-byte ones).
 */
export function decodeUserTable(table: Buffer, count?: number): UserTable {
  if (table.length < 4) throw new ZkProtocolError('BAD_TABLE', `a table starts with a u32 byte count; got ${table.length} bytes`);
  const total = table.readUInt32LE(0);
  if (total > table.length - 4)
    throw new ZkProtocolError('BAD_TABLE', `the table says ${total} bytes of records but holds ${table.length - 4}`);
  const body = table.subarray(4, 4 + total);
  if (total === 0) return { users: [], recordSize: USER_RECORD_72 };
  let size: number | undefined;
  if (count !== undefined && count > 0 && total % count === 0 && (total / count === 72 || total / count === 28)) size = total / count;
  else {
    const by72 = total % 72 === 0;
    const by28 = total % 28 === 0;
    if (by72 && by28) {
      // both divide (multiples of 504 bytes): the layout under which more records look real
      size = plausibleCount(body, 72) / (total / 72) >= plausibleCount(body, 28) / (total / 28) ? 72 : 28;
    } else if (by72) size = 72;
    else if (by28) size = 28;
  }
  if (size === undefined)
    throw new ZkProtocolError('BAD_TABLE', `a user table of ${total} bytes is not a whole number of 72- or 28-byte records`);
  const users: ZkUser[] = [];
  for (let p = 0; p < total; p += size) users.push(decodeUserRecord(body.subarray(p, p + size)));
  return { users, recordSize: size as ZkRecordSize };
}

/** Encodes a user table (u32 byte count + records), as the simulator serves it. */
export function encodeUserTable(users: ZkUser[], size: ZkRecordSize = USER_RECORD_72): Buffer {
  const recs = users.map((u) => encodeUserRecord(u, size));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(recs.length * size, 0);
  return Buffer.concat([head, ...recs]);
}

/** Largest template the codec accepts (real ones are 0.5 to 2 KiB). */
export const MAX_TEMPLATE_BYTES = 16 * 1024;

/** Decodes the template table: u32 byte count, then entries u16 size (template + 6), u16 uid, u8 finger, u8 flag, template. */
export function decodeTemplateTable(table: Buffer): ZkTemplate[] {
  if (table.length < 4) throw new ZkProtocolError('BAD_TABLE', `a table starts with a u32 byte count; got ${table.length} bytes`);
  const total = table.readUInt32LE(0);
  if (total > table.length - 4)
    throw new ZkProtocolError('BAD_TABLE', `the template table says ${total} bytes but holds ${table.length - 4}`);
  const out: ZkTemplate[] = [];
  let p = 4;
  const end = 4 + total;
  while (p < end) {
    if (end - p < 6) throw new ZkProtocolError('BAD_TABLE', `a template entry needs 6 header bytes; ${end - p} left`);
    const size = table.readUInt16LE(p);
    if (size < 6 || p + size > end) throw new ZkProtocolError('BAD_TABLE', `template entry size ${size} does not fit the table`);
    out.push({ uid: table.readUInt16LE(p + 2), finger: table[p + 4], flag: table[p + 5], template: Buffer.from(table.subarray(p + 6, p + size)) });
    p += size;
  }
  return out;
}

export function encodeTemplateTable(tpls: ZkTemplate[]): Buffer {
  const parts: Buffer[] = [];
  for (const t of tpls) {
    checkTemplate(t);
    const h = Buffer.alloc(6);
    h.writeUInt16LE(t.template.length + 6, 0);
    h.writeUInt16LE(t.uid, 2);
    h[4] = t.finger;
    h[5] = t.flag;
    parts.push(h, t.template);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length, 0);
  return Buffer.concat([head, body]);
}

function checkTemplate(t: ZkTemplate): void {
  checkInt(t.uid, 0xffff, 'template uid');
  checkInt(t.finger, 9, 'finger index');
  checkInt(t.flag, 0xff, 'template flag');
  if (t.template.length === 0 || t.template.length > MAX_TEMPLATE_BYTES)
    throw new ZkProtocolError('BAD_RECORD', `a template is 1..${MAX_TEMPLATE_BYTES} bytes, got ${t.template.length}`);
}

export interface UploadBuffer {
  users: ZkUser[];
  recordSize: ZkRecordSize;
  templates: ZkTemplate[];
}

/**
 * The buffer uploaded before command 110 (save users and templates):
 * head (u32 user part size, u32 table part size, u32 template part size);
 * per user 0x02 + record; per template 8 bytes (u8 2, u16 uid, u8 0x10 + finger,
 * u32 offset into the template part); per template u16 length + bytes.
 * The flag of a template does not travel (the device stores it as valid).
 */
export function encodeUploadBuffer(users: ZkUser[], templates: ZkTemplate[], size: ZkRecordSize = USER_RECORD_72): Buffer {
  const userPart = Buffer.concat(users.map((u) => Buffer.concat([Buffer.from([2]), encodeUserRecord(u, size)])));
  const table = Buffer.alloc(templates.length * 8);
  const tplParts: Buffer[] = [];
  let off = 0;
  templates.forEach((t, i) => {
    checkTemplate(t);
    table[i * 8] = 2;
    table.writeUInt16LE(t.uid, i * 8 + 1);
    table[i * 8 + 3] = 0x10 + t.finger;
    table.writeUInt32LE(off, i * 8 + 4);
    const h = Buffer.alloc(2);
    h.writeUInt16LE(t.template.length, 0);
    tplParts.push(h, t.template);
    off += 2 + t.template.length;
  });
  const tplPart = Buffer.concat(tplParts);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(userPart.length, 0);
  head.writeUInt32LE(table.length, 4);
  head.writeUInt32LE(tplPart.length, 8);
  return Buffer.concat([head, userPart, table, tplPart]);
}

export function decodeUploadBuffer(buf: Buffer): UploadBuffer {
  if (buf.length < 12) throw new ZkProtocolError('BAD_TABLE', `an upload buffer starts with 12 bytes of sizes; got ${buf.length}`);
  const nu = buf.readUInt32LE(0);
  const nt = buf.readUInt32LE(4);
  const np = buf.readUInt32LE(8);
  if (12 + nu + nt + np !== buf.length)
    throw new ZkProtocolError('BAD_TABLE', `upload sizes ${nu}+${nt}+${np} do not match the ${buf.length - 12} bytes that follow`);
  let recordSize: ZkRecordSize;
  if (nu % 73 === 0) recordSize = USER_RECORD_72;
  else if (nu % 29 === 0) recordSize = USER_RECORD_28;
  else throw new ZkProtocolError('BAD_TABLE', `an upload user part of ${nu} bytes is not whole 73- or 29-byte entries`);
  if (nt % 8 !== 0) throw new ZkProtocolError('BAD_TABLE', `an upload template index of ${nt} bytes is not whole 8-byte entries`);
  const users: ZkUser[] = [];
  for (let p = 12; p < 12 + nu; p += recordSize + 1) {
    if (buf[p] !== 2) throw new ZkProtocolError('BAD_TABLE', `an upload user entry starts with 0x02, got 0x${buf[p].toString(16)}`);
    users.push(decodeUserRecord(buf.subarray(p + 1, p + 1 + recordSize)));
  }
  const tplBase = 12 + nu + nt;
  const templates: ZkTemplate[] = [];
  for (let p = 12 + nu; p < tplBase; p += 8) {
    const fcode = buf[p + 3];
    const off = buf.readUInt32LE(p + 4);
    if (fcode < 0x10 || fcode > 0x19) throw new ZkProtocolError('BAD_TABLE', `template index finger byte 0x${fcode.toString(16)} is not 0x10..0x19`);
    if (off + 2 > np) throw new ZkProtocolError('BAD_TABLE', `template offset ${off} is outside the ${np}-byte template part`);
    const len = buf.readUInt16LE(tplBase + off);
    if (len === 0 || off + 2 + len > np) throw new ZkProtocolError('BAD_TABLE', `template of ${len} bytes at ${off} does not fit the template part`);
    templates.push({ uid: buf.readUInt16LE(p + 1), finger: fcode - 0x10, flag: 1, template: Buffer.from(buf.subarray(tplBase + off + 2, tplBase + off + 2 + len)) });
  }
  return { users, recordSize, templates };
}

// ---------------------------------------------------------------- buffered reads

/** Data of PREPARE_BUFFER (1503): u8 1, u16 inner command, u32 fct, u32 ext. */
export function encodePrepareBuffer(inner: number, fct: number, ext = 0): Buffer {
  const b = Buffer.alloc(11);
  b[0] = 1;
  b.writeUInt16LE(inner, 1);
  b.writeUInt32LE(fct, 3);
  b.writeUInt32LE(ext, 7);
  return b;
}

export function decodePrepareBuffer(b: Buffer): { inner: number; fct: number; ext: number } {
  if (b.length < 11) throw new ZkProtocolError('TRUNCATED', `PREPARE_BUFFER data is 11 bytes, got ${b.length}`);
  return { inner: b.readUInt16LE(1), fct: b.readUInt32LE(3), ext: b.readUInt32LE(7) };
}

/** Data of READ_BUFFER (1504): u32 start, u32 size. */
export function encodeReadBuffer(start: number, size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(start, 0);
  b.writeUInt32LE(size, 4);
  return b;
}

/** The chunks a client asks for to read `total` bytes: 65,472 bytes each, no empty chunk. */
export function readChunks(total: number, chunk = ZK_READ_CHUNK): { start: number; size: number }[] {
  const out: { start: number; size: number }[] = [];
  for (let start = 0; start < total; start += chunk) out.push({ start, size: Math.min(chunk, total - start) });
  return out;
}

// ---------------------------------------------------------------- device info

export interface FreeSizes {
  users: number;
  fingers: number;
  records: number;
  fingerCapacity: number;
  userCapacity: number;
  recordCapacity: number;
  /** the whole reply as int32s, for what this decoder does not name */
  ints: number[];
}

/** GET_FREE_SIZES reply: int32 LE array, [4] users, [6] fingers, [8] records, [14] finger cap., [15] user cap., [16] record cap. */
export function decodeFreeSizes(data: Buffer): FreeSizes {
  if (data.length < 68) throw new ZkProtocolError('TRUNCATED', `GET_FREE_SIZES data holds at least 68 bytes, got ${data.length}`);
  const ints: number[] = [];
  for (let p = 0; p + 4 <= data.length; p += 4) ints.push(data.readInt32LE(p));
  return { users: ints[4], fingers: ints[6], records: ints[8], fingerCapacity: ints[14], userCapacity: ints[15], recordCapacity: ints[16], ints };
}

export function encodeFreeSizes(s: Omit<FreeSizes, 'ints'>): Buffer {
  const b = Buffer.alloc(92);
  const put = (i: number, v: number) => b.writeInt32LE(v, i * 4);
  put(4, s.users);
  put(6, s.fingers);
  put(8, s.records);
  put(14, s.fingerCapacity);
  put(15, s.userCapacity);
  put(16, s.recordCapacity);
  put(17, s.fingerCapacity - s.fingers);
  put(18, s.userCapacity - s.users);
  put(19, s.recordCapacity - s.records);
  return b;
}

/** Text of a reply up to the first NUL. */
export function replyText(data: Buffer): string {
  const nul = data.indexOf(0);
  return data.subarray(0, nul < 0 ? data.length : nul).toString('latin1');
}

/** OPTIONS_RRQ reply `name=value\0`: the value. */
export function optionValue(data: Buffer): string {
  const t = replyText(data);
  const eq = t.indexOf('=');
  return eq < 0 ? '' : t.slice(eq + 1);
}

// ---------------------------------------------------------------- time and events

export interface ZkDateTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The device's u32 time: a calendar of 12 months of 31 days from 2000. */
export function encodeZkTime(t: ZkDateTime): number {
  return ((((t.year % 100) * 12 * 31 + (t.month - 1) * 31 + t.day - 1) * 24 + t.hour) * 60 + t.minute) * 60 + t.second;
}

export function decodeZkTime(v: number): ZkDateTime {
  const second = v % 60;
  v = Math.floor(v / 60);
  const minute = v % 60;
  v = Math.floor(v / 60);
  const hour = v % 24;
  v = Math.floor(v / 24);
  const day = (v % 31) + 1;
  v = Math.floor(v / 31);
  const month = (v % 12) + 1;
  v = Math.floor(v / 12);
  return { year: v + 2000, month, day, hour, minute, second };
}

export interface AttendanceEvent {
  userId: string;
  status: number;
  punch: number;
  time: ZkDateTime;
  /** 12 (numeric user id) or 32 (24-byte user id string) */
  size: number;
}

function time6(b: Buffer, off: number): ZkDateTime {
  return { year: 2000 + b[off], month: b[off + 1], day: b[off + 2], hour: b[off + 3], minute: b[off + 4], second: b[off + 5] };
}

function putTime6(b: Buffer, off: number, t: ZkDateTime): void {
  b[off] = t.year - 2000;
  b[off + 1] = t.month;
  b[off + 2] = t.day;
  b[off + 3] = t.hour;
  b[off + 4] = t.minute;
  b[off + 5] = t.second;
}

/** EF_ATTLOG payload of 12 bytes (u32 user id) or 32 bytes (24-byte user id) and longer forms that extend the 32-byte one. */
export function decodeAttendanceEvent(b: Buffer): AttendanceEvent {
  if (b.length === 12) return { userId: String(b.readUInt32LE(0)), status: b[4], punch: b[5], time: time6(b, 6), size: 12 };
  if (b.length >= 32) return { userId: cString(b, 0, 24), status: b[24], punch: b[25], time: time6(b, 26), size: 32 };
  throw new ZkProtocolError('BAD_RECORD', `an attendance event is 12 or at least 32 bytes, got ${b.length}`);
}

export function encodeAttendanceEvent(e: Omit<AttendanceEvent, 'size'>, size: 12 | 32): Buffer {
  const b = Buffer.alloc(size);
  if (size === 12) {
    if (!/^[0-9]{1,10}$/.test(e.userId) || Number(e.userId) > 0xffffffff)
      throw new ZkProtocolError('BAD_RECORD', `a 12-byte attendance event holds a numeric user id, got ${JSON.stringify(e.userId)}`);
    b.writeUInt32LE(Number(e.userId), 0);
    b[4] = e.status;
    b[5] = e.punch;
    putTime6(b, 6, e.time);
  } else {
    writeCString(b, 0, 24, e.userId, 'user id');
    b[24] = e.status;
    b[25] = e.punch;
    putTime6(b, 26, e.time);
  }
  return b;
}

/** EF_ENROLLUSER payload: the new user's uid (u16). A hint to re-read the table, nothing more. */
export function decodeEnrollUserEvent(b: Buffer): { uid: number } {
  if (b.length < 2) throw new ZkProtocolError('BAD_RECORD', `EF_ENROLLUSER carries a u16 uid, got ${b.length} bytes`);
  return { uid: b.readUInt16LE(0) };
}
