// char[N] fields and user IDs (PROTOCOL.md conventions and 6.2): UTF-8 text padded
// with NUL; the text ends at the first NUL and every byte after it must be NUL.
import { LIMITS } from './constants.js';
import { ProtocolError } from './errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Decodes char[n] at b[off..off+n). The caller has checked that the bytes exist. */
export function readChar(b: Buffer, off: number, n: number, field: string): string {
  const stop = off + n;
  let end = off;
  let ascii = true;
  while (end < stop) {
    const c = b[end];
    if (c === 0) break;
    if (c > 0x7f) ascii = false;
    end++;
  }
  for (let i = end + 1; i < stop; i++) {
    if (b[i] !== 0) throw new ProtocolError('BAD_PADDING', `${field}: byte ${i - off} after the NUL terminator is not NUL`);
  }
  if (end === off) return '';
  if (ascii) return b.toString('latin1', off, end);
  try {
    return utf8.decode(b.subarray(off, end));
  } catch {
    throw new ProtocolError('INVALID_UTF8', `${field}: text is not valid UTF-8`);
  }
}

/** Checks a string for a char[n] field; returns its UTF-8 bytes. */
export function charBytes(s: unknown, n: number, field: string): Buffer {
  if (typeof s !== 'string') throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: must be a string`);
  if (s.includes('\0')) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: must not contain NUL`);
  if (LONE_SURROGATE.test(s)) throw new ProtocolError('INVALID_UTF8', `${field}: holds a lone surrogate (not encodable as UTF-8)`);
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length > n) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: ${bytes.length} bytes of UTF-8, at most ${n} allowed`);
  return bytes;
}

/** Writes char[n] at out[off..off+n), NUL padded. */
export function writeChar(out: Buffer, off: number, n: number, s: unknown, field: string): void {
  const bytes = charBytes(s, n, field);
  bytes.copy(out, off);
  out.fill(0, off + bytes.length, off + n);
}

function userIdCheck(id: string, field: string, allowEmpty: boolean): void {
  if (id.length === 0) {
    if (allowEmpty) return;
    throw new ProtocolError('INVALID_USER_ID', `${field}: user ID is empty`);
  }
  if (CONTROL.test(id)) throw new ProtocolError('INVALID_USER_ID', `${field}: user ID contains a control character`);
}

/** Decodes a user ID char[32]; 32 bytes without a terminator are allowed. */
export function readUserId(b: Buffer, off: number, field: string, allowEmpty = false): string {
  let id: string;
  try {
    id = readChar(b, off, LIMITS.userIdBytes, field);
  } catch (e) {
    if (e instanceof ProtocolError && e.code === 'INVALID_UTF8') throw new ProtocolError('INVALID_USER_ID', `${field}: user ID is not valid UTF-8`);
    throw e;
  }
  userIdCheck(id, field, allowEmpty);
  return id;
}

export function writeUserId(out: Buffer, off: number, id: unknown, field: string, allowEmpty = false): void {
  if (typeof id !== 'string') throw new ProtocolError('INVALID_USER_ID', `${field}: user ID must be a string`);
  userIdCheck(id, field, allowEmpty);
  let bytes: Buffer;
  try {
    bytes = charBytes(id, LIMITS.userIdBytes, field);
  } catch (e) {
    if (e instanceof ProtocolError) throw new ProtocolError('INVALID_USER_ID', e.message);
    throw e;
  }
  bytes.copy(out, off);
  out.fill(0, off + bytes.length, off + LIMITS.userIdBytes);
}

/** Integer range check for encoders. */
export function checkInt(v: unknown, min: number, max: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: ${String(v)} is not an integer in ${min}..${max}`);
  return v;
}

/** Throws TRUNCATED unless b holds `need` bytes from `off`. */
export function need(b: Buffer, off: number, n: number, field: string): void {
  if (off + n > b.length)
    throw new ProtocolError('TRUNCATED', `${field}: needs ${n} bytes at offset ${off}, payload has ${Math.max(0, b.length - off)}`);
}

export function checkBuf(v: unknown, field: string): Buffer {
  if (!Buffer.isBuffer(v)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: must be a Buffer`);
  return v;
}
