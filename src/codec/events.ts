// Event records (PROTOCOL.md 6.1), 48 bytes each. `decodeEvents` is the hot path
// (a GET_LOG page or LOG_EVENT batch holds up to 1000 records): it reads bytes
// straight out of the Buffer. `eventRecordParser` is the same layout declared with
// binary-parser; it is the readable reference the fast path is tested against.
import { Parser } from 'binary-parser';
import { EVENT_RECORD_SIZE, LIMITS } from './constants.js';
import { ProtocolError } from './errors.js';
import { checkInt, readUserId, writeUserId } from './text.js';
import type { EventRecord } from '../model/event.js';

export type { EventRecord };

/** Reference declaration (no validation: use decodeEvents on untrusted input). */
export const eventRecordParser = new Parser()
  .endianness('little')
  .uint32('id')
  .uint32('dateTime')
  .uint32('deviceId')
  .string('userId', { length: LIMITS.userIdBytes, encoding: 'utf8', stripNull: true })
  .uint16('code')
  .uint8('param')
  .uint8('flags');

/** Writes one event record at out[off..off+48). */
export function writeEvent(out: Buffer, off: number, e: EventRecord, field = 'event'): void {
  out.writeUInt32LE(checkInt(e.id, 0, 0xffffffff, `${field}.id`), off);
  out.writeUInt32LE(checkInt(e.dateTime, 0, 0xffffffff, `${field}.dateTime`), off + 4);
  out.writeUInt32LE(checkInt(e.deviceId, 0, 0xffffffff, `${field}.deviceId`), off + 8);
  writeUserId(out, off + 12, e.userId, `${field}.userId`, true);
  out.writeUInt16LE(checkInt(e.code, 0, 0xffff, `${field}.code`), off + 44);
  out[off + 46] = checkInt(e.param, 0, 0xff, `${field}.param`);
  out[off + 47] = checkInt(e.flags, 0, 0xff, `${field}.flags`);
}

export function encodeEvent(e: EventRecord): Buffer {
  const out = Buffer.alloc(EVENT_RECORD_SIZE);
  writeEvent(out, 0, e);
  return out;
}

export function encodeEvents(events: EventRecord[], field = 'events'): Buffer {
  const out = Buffer.alloc(events.length * EVENT_RECORD_SIZE);
  for (let i = 0; i < events.length; i++) writeEvent(out, i * EVENT_RECORD_SIZE, events[i], `${field}[${i}]`);
  return out;
}

/** the user ID field of a record: ASCII fast path, full validation otherwise */
function userIdAt(b: Buffer, p: number, i: number): string {
  if (b[p] === 0) {
    // non-user event: all 32 bytes must be NUL
    for (let k = 1; k < 32; k++) if (b[p + k] !== 0) return readUserId(b, p, `events[${i}].userId`, true);
    return '';
  }
  let end = p;
  const stop = p + 32;
  while (end < stop) {
    const c = b[end];
    if (c === 0) break;
    if (c < 0x20 || c >= 0x7f) return readUserId(b, p, `events[${i}].userId`, true);
    end++;
  }
  for (let k = end + 1; k < stop; k++) if (b[k] !== 0) return readUserId(b, p, `events[${i}].userId`, true);
  return b.toString('latin1', p, end);
}

/**
 * Throws EVENTS_NOT_ASCENDING unless the IDs strictly ascend (PROTOCOL.md 5: a
 * GET_LOG page and a LOG_EVENT frame carry events in ascending ID order, no ID twice).
 */
export function checkAscending(events: { id: number }[], what: string): void {
  for (let i = 1; i < events.length; i++)
    if (events[i].id <= events[i - 1].id)
      throw new ProtocolError(
        'EVENTS_NOT_ASCENDING',
        `${what}: event IDs must strictly ascend, but events[${i}].id ${events[i].id} follows ${events[i - 1].id}`,
      );
}

/**
 * Decodes `count` event records starting at buf[offset]. Throws ProtocolError
 * (TRUNCATED when the buffer is too short, or the user ID's validity error).
 */
export function decodeEvents(buf: Buffer, offset: number, count: number): EventRecord[] {
  if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0)
    throw new ProtocolError('FIELD_OUT_OF_RANGE', `events: bad offset ${offset} or count ${count}`);
  if (offset + count * EVENT_RECORD_SIZE > buf.length)
    throw new ProtocolError(
      'TRUNCATED',
      `events: count ${count} needs ${count * EVENT_RECORD_SIZE} bytes, payload has ${Math.max(0, buf.length - offset)}`,
    );
  const out: EventRecord[] = new Array(count);
  let p = offset;
  for (let i = 0; i < count; i++, p += EVENT_RECORD_SIZE) {
    out[i] = {
      id: (buf[p] | (buf[p + 1] << 8) | (buf[p + 2] << 16) | (buf[p + 3] << 24)) >>> 0,
      dateTime: (buf[p + 4] | (buf[p + 5] << 8) | (buf[p + 6] << 16) | (buf[p + 7] << 24)) >>> 0,
      deviceId: (buf[p + 8] | (buf[p + 9] << 8) | (buf[p + 10] << 16) | (buf[p + 11] << 24)) >>> 0,
      userId: userIdAt(buf, p + 12, i),
      code: buf[p + 44] | (buf[p + 45] << 8),
      param: buf[p + 46],
      flags: buf[p + 47],
    };
  }
  return out;
}
