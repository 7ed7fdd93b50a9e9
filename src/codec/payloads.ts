// Payload layouts of every command (PROTOCOL.md section 5). Each command has an
// encodeX/decodeX pair. Decoders validate every field and throw only
// ProtocolError; encoders validate the same rules so a bad payload never goes on
// the wire. Fixed heads are declared with binary-parser; variable parts are read
// by hand with explicit bounds checks (a count is checked against the bytes that
// are really there before anything is allocated for it).
import { Parser } from 'binary-parser';
import {
  Command,
  DIGEST_BYTES,
  FrameKind,
  EVENT_RECORD_SIZE,
  LIMITS,
  LIST_ENTRY_SIZE,
  MAX_ERROR_MESSAGE,
  NONCE_BYTES,
  PROOF_BYTES,
  USER_HEADER_SIZE,
} from './constants.js';
import { ProtocolError, guard } from './errors.js';
import { checkAscending, decodeEvents, writeEvent, type EventRecord } from './events.js';
import { checkBuf, checkInt, need, readChar, readUserId, writeChar, writeUserId } from './text.js';

// ------------------------------------------------------------------ helpers

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isBuf(b: unknown, what: string): Buffer {
  if (!Buffer.isBuffer(b)) throw new ProtocolError('BAD_PAYLOAD', `${what}: payload must be a Buffer`);
  return b;
}

/** Checks the payload size: exact layouts reject extra bytes, extensible ones (PROTOCOL.md 2.1) ignore them. */
function size(b: Buffer, n: number, what: string, extensible: boolean): void {
  if (b.length < n) throw new ProtocolError('TRUNCATED', `${what}: payload is ${b.length} bytes, expected ${n}`);
  if (!extensible && b.length > n) throw new ProtocolError('TRAILING_BYTES', `${what}: payload is ${b.length} bytes, expected ${n}`);
}

function exactEnd(b: Buffer, p: number, what: string): void {
  if (b.length > p) throw new ProtocolError('TRAILING_BYTES', `${what}: ${b.length - p} unexpected bytes after offset ${p}`);
}

function count(n: number, min: number, max: number, what: string): number {
  if (n < min || n > max) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${what}: count ${n}, must be ${min}..${max}`);
  return n;
}

function bytesField(v: unknown, n: number, field: string): Buffer {
  const b = checkBuf(v, field);
  if (b.length !== n) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: ${b.length} bytes, must be ${n}`);
  return b;
}

function list<T>(v: unknown, min: number, max: number, field: string): T[] {
  if (!Array.isArray(v)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${field}: must be an array`);
  count(v.length, min, max, field);
  return v as T[];
}

const copy = (b: Buffer, start: number, end: number) => Buffer.from(b.subarray(start, end));

/** the i16 statuses of command results: 0 or a negative code */
function statusValue(v: unknown, field: string): number {
  return checkInt(v, -0x8000, 0, field);
}

// ------------------------------------------------------------------ HELLO

export const HELLO_SIZE = 68;
export const HELLO_RESPONSE_SIZE = 52;
export const INFO_SIZE = 68;

export interface Hello {
  deviceId: number;
  minVersion: number;
  maxVersion: number;
  maxUsersPerBatch: number;
  userCapacity: number;
  logCapacity: number;
  capabilities: number;
  model: string;
  firmware: string;
  nonce: Buffer;
}

/** HELLO capability bits */
export const CAP_PHOTO = 0x1;
export const CAP_FACES = 0x2;
export const CAP_TLS = 0x4;

export const helloParser = new Parser()
  .endianness('little')
  .uint32('deviceId')
  .uint8('minVersion')
  .uint8('maxVersion')
  .uint16('maxUsersPerBatch')
  .uint32('userCapacity')
  .uint32('logCapacity')
  .uint32('capabilities')
  .buffer('model', { length: LIMITS.modelBytes })
  .buffer('firmware', { length: LIMITS.firmwareBytes })
  .buffer('nonce', { length: NONCE_BYTES });

function checkHello(h: Hello, what: string): void {
  if (h.deviceId === 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${what}.deviceId: must be non-zero`);
  if (h.minVersion > h.maxVersion)
    throw new ProtocolError('FIELD_OUT_OF_RANGE', `${what}: minVersion ${h.minVersion} is above maxVersion ${h.maxVersion}`);
  count(h.maxUsersPerBatch, 1, LIMITS.maxBatch, `${what}.maxUsersPerBatch`);
}

export function encodeHello(h: Hello): Buffer {
  return guard('HELLO request', () => {
    const out = Buffer.alloc(HELLO_SIZE);
    out.writeUInt32LE(checkInt(h.deviceId, 1, 0xffffffff, 'hello.deviceId'), 0);
    out[4] = checkInt(h.minVersion, 0, 0xff, 'hello.minVersion');
    out[5] = checkInt(h.maxVersion, 0, 0xff, 'hello.maxVersion');
    out.writeUInt16LE(checkInt(h.maxUsersPerBatch, 1, LIMITS.maxBatch, 'hello.maxUsersPerBatch'), 6);
    out.writeUInt32LE(checkInt(h.userCapacity, 0, 0xffffffff, 'hello.userCapacity'), 8);
    out.writeUInt32LE(checkInt(h.logCapacity, 0, 0xffffffff, 'hello.logCapacity'), 12);
    out.writeUInt32LE(checkInt(h.capabilities, 0, 0xffffffff, 'hello.capabilities'), 16);
    writeChar(out, 20, LIMITS.modelBytes, h.model, 'hello.model');
    writeChar(out, 36, LIMITS.firmwareBytes, h.firmware, 'hello.firmware');
    bytesField(h.nonce, NONCE_BYTES, 'hello.nonce').copy(out, 52);
    checkHello(h, 'hello');
    return out;
  });
}

export function decodeHello(b: Buffer): Hello {
  return guard('HELLO request', () => {
    size(isBuf(b, 'HELLO request'), HELLO_SIZE, 'HELLO request', true);
    const r = helloParser.parse(b) as Omit<Hello, 'model' | 'firmware'> & { model: Buffer; firmware: Buffer };
    const h: Hello = {
      deviceId: r.deviceId,
      minVersion: r.minVersion,
      maxVersion: r.maxVersion,
      maxUsersPerBatch: r.maxUsersPerBatch,
      userCapacity: r.userCapacity,
      logCapacity: r.logCapacity,
      capabilities: r.capabilities,
      model: readChar(b, 20, LIMITS.modelBytes, 'hello.model'),
      firmware: readChar(b, 36, LIMITS.firmwareBytes, 'hello.firmware'),
      nonce: copy(b, 52, 68),
    };
    checkHello(h, 'hello');
    return h;
  });
}

export interface HelloResponse {
  version: number;
  heartbeatSec: number;
  nonce: Buffer;
  proof: Buffer;
}

export const helloResponseParser = new Parser()
  .endianness('little')
  .uint8('version')
  .uint8('reserved')
  .uint16('heartbeatSec')
  .buffer('nonce', { length: NONCE_BYTES })
  .buffer('proof', { length: PROOF_BYTES });

export function encodeHelloResponse(r: HelloResponse): Buffer {
  return guard('HELLO response', () => {
    const out = Buffer.alloc(HELLO_RESPONSE_SIZE);
    out[0] = checkInt(r.version, 1, 0xff, 'helloResponse.version');
    out.writeUInt16LE(checkInt(r.heartbeatSec, 0, 0xffff, 'helloResponse.heartbeatSec'), 2);
    bytesField(r.nonce, NONCE_BYTES, 'helloResponse.nonce').copy(out, 4);
    bytesField(r.proof, PROOF_BYTES, 'helloResponse.proof').copy(out, 20);
    return out;
  });
}

export function decodeHelloResponse(b: Buffer): HelloResponse {
  return guard('HELLO response', () => {
    size(isBuf(b, 'HELLO response'), HELLO_RESPONSE_SIZE, 'HELLO response', true);
    const r = helloResponseParser.parse(b) as { version: number; heartbeatSec: number };
    if (r.version === 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', 'helloResponse.version: 0 is not a protocol version');
    return { version: r.version, heartbeatSec: r.heartbeatSec, nonce: copy(b, 4, 20), proof: copy(b, 20, 52) };
  });
}

// ------------------------------------------------------------------ AUTH

export interface Auth {
  proof: Buffer;
}

export function encodeAuth(a: Auth): Buffer {
  return guard('AUTH request', () => Buffer.from(bytesField(a.proof, PROOF_BYTES, 'auth.proof')));
}

export function decodeAuth(b: Buffer): Auth {
  return guard('AUTH request', () => {
    size(isBuf(b, 'AUTH request'), PROOF_BYTES, 'AUTH request', false);
    return { proof: copy(b, 0, PROOF_BYTES) };
  });
}

// ------------------------------------------------------------------ GET_INFO

export interface TerminalInfo {
  deviceId: number;
  userCount: number;
  userCapacity: number;
  logEpoch: number;
  firstEventId: number;
  lastEventId: number;
  logCapacity: number;
  time: number;
  maxUsersPerBatch: number;
  model: string;
  firmware: string;
}

export const infoParser = new Parser()
  .endianness('little')
  .uint32('deviceId')
  .uint32('userCount')
  .uint32('userCapacity')
  .uint32('logEpoch')
  .uint32('firstEventId')
  .uint32('lastEventId')
  .uint32('logCapacity')
  .uint32('time')
  .uint16('maxUsersPerBatch')
  .uint16('reserved')
  .buffer('model', { length: LIMITS.modelBytes })
  .buffer('firmware', { length: LIMITS.firmwareBytes });

const U32_INFO_FIELDS = ['deviceId', 'userCount', 'userCapacity', 'logEpoch', 'firstEventId', 'lastEventId', 'logCapacity', 'time'] as const;

export function encodeInfo(i: TerminalInfo): Buffer {
  return guard('GET_INFO response', () => {
    const out = Buffer.alloc(INFO_SIZE);
    U32_INFO_FIELDS.forEach((k, n) => out.writeUInt32LE(checkInt(i[k], 0, 0xffffffff, `info.${k}`), n * 4));
    if (i.deviceId === 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', 'info.deviceId: must be non-zero');
    out.writeUInt16LE(checkInt(i.maxUsersPerBatch, 1, LIMITS.maxBatch, 'info.maxUsersPerBatch'), 32);
    writeChar(out, 36, LIMITS.modelBytes, i.model, 'info.model');
    writeChar(out, 52, LIMITS.firmwareBytes, i.firmware, 'info.firmware');
    return out;
  });
}

export function decodeInfo(b: Buffer): TerminalInfo {
  return guard('GET_INFO response', () => {
    size(isBuf(b, 'GET_INFO response'), INFO_SIZE, 'GET_INFO response', true);
    const r = infoParser.parse(b) as Record<string, number>;
    if (r.deviceId === 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', 'info.deviceId: must be non-zero');
    count(r.maxUsersPerBatch, 1, LIMITS.maxBatch, 'info.maxUsersPerBatch');
    return {
      deviceId: r.deviceId,
      userCount: r.userCount,
      userCapacity: r.userCapacity,
      logEpoch: r.logEpoch,
      firstEventId: r.firstEventId,
      lastEventId: r.lastEventId,
      logCapacity: r.logCapacity,
      time: r.time,
      maxUsersPerBatch: r.maxUsersPerBatch,
      model: readChar(b, 36, LIMITS.modelBytes, 'info.model'),
      firmware: readChar(b, 52, LIMITS.firmwareBytes, 'info.firmware'),
    };
  });
}

// ------------------------------------------------------------------ GET_LOG

export interface GetLogRequest {
  afterId: number;
  maxCount: number;
}

export const getLogRequestParser = new Parser().endianness('little').uint32('afterId').uint16('maxCount').uint16('reserved');

export function encodeGetLogRequest(r: GetLogRequest): Buffer {
  return guard('GET_LOG request', () => {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(checkInt(r.afterId, 0, 0xffffffff, 'getLog.afterId'), 0);
    out.writeUInt16LE(checkInt(r.maxCount, 1, LIMITS.maxLogCount, 'getLog.maxCount'), 4);
    return out;
  });
}

export function decodeGetLogRequest(b: Buffer): GetLogRequest {
  return guard('GET_LOG request', () => {
    size(isBuf(b, 'GET_LOG request'), 8, 'GET_LOG request', true);
    const r = getLogRequestParser.parse(b) as { afterId: number; maxCount: number };
    return { afterId: r.afterId, maxCount: count(r.maxCount, 1, LIMITS.maxLogCount, 'getLog.maxCount') };
  });
}

export interface LogPosition {
  logEpoch: number;
  firstEventId: number;
  lastEventId: number;
}

export interface GetLogResponse extends LogPosition {
  events: EventRecord[];
}

export const GET_LOG_HEAD_SIZE = 16;
export const getLogHeadParser = new Parser()
  .endianness('little')
  .uint32('logEpoch')
  .uint32('firstEventId')
  .uint32('lastEventId')
  .uint16('count')
  .uint16('reserved');

function writePosition(out: Buffer, r: LogPosition, what: string): void {
  out.writeUInt32LE(checkInt(r.logEpoch, 0, 0xffffffff, `${what}.logEpoch`), 0);
  out.writeUInt32LE(checkInt(r.firstEventId, 0, 0xffffffff, `${what}.firstEventId`), 4);
  out.writeUInt32LE(checkInt(r.lastEventId, 0, 0xffffffff, `${what}.lastEventId`), 8);
}

export function encodeGetLogResponse(r: GetLogResponse): Buffer {
  return guard('GET_LOG response', () => {
    const events = list<EventRecord>(r.events, 0, LIMITS.maxLogCount, 'getLogResponse.events');
    checkAscending(events, 'getLogResponse.events');
    const out = Buffer.alloc(GET_LOG_HEAD_SIZE + events.length * EVENT_RECORD_SIZE);
    writePosition(out, r, 'getLogResponse');
    out.writeUInt16LE(events.length, 12);
    for (let i = 0; i < events.length; i++) writeEvent(out, GET_LOG_HEAD_SIZE + i * EVENT_RECORD_SIZE, events[i], `getLogResponse.events[${i}]`);
    return out;
  });
}

export function decodeGetLogResponse(b: Buffer): GetLogResponse {
  return guard('GET_LOG response', () => {
    size(isBuf(b, 'GET_LOG response'), GET_LOG_HEAD_SIZE, 'GET_LOG response', true);
    const h = getLogHeadParser.parse(b) as LogPosition & { count: number };
    const n = count(h.count, 0, LIMITS.maxLogCount, 'getLogResponse.events');
    // extra bytes after the events are an extension and ignored (PROTOCOL.md 2.1)
    const events = decodeEvents(b, GET_LOG_HEAD_SIZE, n);
    checkAscending(events, 'getLogResponse.events');
    return { logEpoch: h.logEpoch, firstEventId: h.firstEventId, lastEventId: h.lastEventId, events };
  });
}

// ------------------------------------------------------------------ SUBSCRIBE_LOG, LOG_EVENT, LOG_ACK

/** SUBSCRIBE_LOG window 0 means this many events */
export const DEFAULT_SUBSCRIBE_WINDOW = 256;
export const MAX_SUBSCRIBE_WINDOW = 4096;

export interface SubscribeRequest {
  afterId: number;
  /** 1..4096, or 0 for the default of 256 (see effectiveWindow) */
  window: number;
}

export function effectiveWindow(window: number): number {
  return window === 0 ? DEFAULT_SUBSCRIBE_WINDOW : window;
}

export const subscribeRequestParser = new Parser().endianness('little').uint32('afterId').uint16('window').uint16('reserved');

export function encodeSubscribeRequest(r: SubscribeRequest): Buffer {
  return guard('SUBSCRIBE_LOG request', () => {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(checkInt(r.afterId, 0, 0xffffffff, 'subscribe.afterId'), 0);
    out.writeUInt16LE(checkInt(r.window, 0, MAX_SUBSCRIBE_WINDOW, 'subscribe.window'), 4);
    return out;
  });
}

export function decodeSubscribeRequest(b: Buffer): SubscribeRequest {
  return guard('SUBSCRIBE_LOG request', () => {
    size(isBuf(b, 'SUBSCRIBE_LOG request'), 8, 'SUBSCRIBE_LOG request', true);
    const r = subscribeRequestParser.parse(b) as SubscribeRequest;
    if (r.window > MAX_SUBSCRIBE_WINDOW)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `subscribe.window: ${r.window}, must be 0..${MAX_SUBSCRIBE_WINDOW}`);
    return { afterId: r.afterId, window: r.window };
  });
}

export type SubscribeResponse = LogPosition;

export const logPositionParser = new Parser().endianness('little').uint32('logEpoch').uint32('firstEventId').uint32('lastEventId');

export function encodeSubscribeResponse(r: SubscribeResponse): Buffer {
  return guard('SUBSCRIBE_LOG response', () => {
    const out = Buffer.alloc(12);
    writePosition(out, r, 'subscribeResponse');
    return out;
  });
}

export function decodeSubscribeResponse(b: Buffer): SubscribeResponse {
  return guard('SUBSCRIBE_LOG response', () => {
    size(isBuf(b, 'SUBSCRIBE_LOG response'), 12, 'SUBSCRIBE_LOG response', true);
    const r = logPositionParser.parse(b) as LogPosition;
    return { logEpoch: r.logEpoch, firstEventId: r.firstEventId, lastEventId: r.lastEventId };
  });
}

export interface LogEvent {
  logEpoch: number;
  events: EventRecord[];
}

export const LOG_EVENT_HEAD_SIZE = 8;
export const logEventHeadParser = new Parser().endianness('little').uint32('logEpoch').uint16('count').uint16('reserved');

export function encodeLogEvent(r: LogEvent): Buffer {
  return guard('LOG_EVENT', () => {
    const events = list<EventRecord>(r.events, 1, LIMITS.maxLogCount, 'logEvent.events');
    checkAscending(events, 'logEvent.events');
    const out = Buffer.alloc(LOG_EVENT_HEAD_SIZE + events.length * EVENT_RECORD_SIZE);
    out.writeUInt32LE(checkInt(r.logEpoch, 0, 0xffffffff, 'logEvent.logEpoch'), 0);
    out.writeUInt16LE(events.length, 4);
    for (let i = 0; i < events.length; i++) writeEvent(out, LOG_EVENT_HEAD_SIZE + i * EVENT_RECORD_SIZE, events[i], `logEvent.events[${i}]`);
    return out;
  });
}

export function decodeLogEvent(b: Buffer): LogEvent {
  return guard('LOG_EVENT', () => {
    size(isBuf(b, 'LOG_EVENT'), LOG_EVENT_HEAD_SIZE, 'LOG_EVENT', true);
    const h = logEventHeadParser.parse(b) as { logEpoch: number; count: number };
    const n = count(h.count, 1, LIMITS.maxLogCount, 'logEvent.events');
    const events = decodeEvents(b, LOG_EVENT_HEAD_SIZE, n);
    exactEnd(b, LOG_EVENT_HEAD_SIZE + n * EVENT_RECORD_SIZE, 'LOG_EVENT');
    checkAscending(events, 'logEvent.events');
    return { logEpoch: h.logEpoch, events };
  });
}

export interface LogAck {
  lastEventId: number;
}

export function encodeLogAck(r: LogAck): Buffer {
  return guard('LOG_ACK', () => {
    const out = Buffer.alloc(4);
    out.writeUInt32LE(checkInt(r.lastEventId, 0, 0xffffffff, 'logAck.lastEventId'), 0);
    return out;
  });
}

export function decodeLogAck(b: Buffer): LogAck {
  return guard('LOG_ACK', () => {
    size(isBuf(b, 'LOG_ACK'), 4, 'LOG_ACK', false);
    return { lastEventId: b.readUInt32LE(0) };
  });
}

// ------------------------------------------------------------------ LIST_USERS

export interface ListUsersRequest {
  /** '' = from the beginning */
  afterUserId: string;
  maxCount: number;
}

export const LIST_USERS_REQUEST_SIZE = 36;
export const LIST_USERS_HEAD_SIZE = 8;

export function encodeListUsersRequest(r: ListUsersRequest): Buffer {
  return guard('LIST_USERS request', () => {
    const out = Buffer.alloc(LIST_USERS_REQUEST_SIZE);
    writeUserId(out, 0, r.afterUserId, 'listUsers.afterUserId', true);
    out.writeUInt16LE(checkInt(r.maxCount, 1, LIMITS.maxListCount, 'listUsers.maxCount'), 32);
    return out;
  });
}

export const listUsersRequestParser = new Parser()
  .endianness('little')
  .buffer('afterUserId', { length: LIMITS.userIdBytes })
  .uint16('maxCount')
  .uint16('reserved');

export function decodeListUsersRequest(b: Buffer): ListUsersRequest {
  return guard('LIST_USERS request', () => {
    size(isBuf(b, 'LIST_USERS request'), LIST_USERS_REQUEST_SIZE, 'LIST_USERS request', true);
    const r = listUsersRequestParser.parse(b) as { maxCount: number };
    return {
      afterUserId: readUserId(b, 0, 'listUsers.afterUserId', true),
      maxCount: count(r.maxCount, 1, LIMITS.maxListCount, 'listUsers.maxCount'),
    };
  });
}

export interface ListUsersEntry {
  userId: string;
  flag: number;
  version: number;
  /** 12 bytes: see userDigest */
  digest: Buffer;
}

export interface ListUsersResponse {
  total: number;
  more: boolean;
  entries: ListUsersEntry[];
}

export const listUsersHeadParser = new Parser().endianness('little').uint32('total').uint16('count').uint8('more').uint8('reserved');

/** one 48-byte entry (reference declaration; decodeListUsersResponse validates the user ID) */
export const listEntryParser = new Parser()
  .endianness('little')
  .buffer('userId', { length: LIMITS.userIdBytes })
  .uint8('flag')
  .uint8('reserved')
  .uint16('version')
  .buffer('digest', { length: DIGEST_BYTES });

export function encodeListUsersResponse(r: ListUsersResponse): Buffer {
  return guard('LIST_USERS response', () => {
    const entries = list<ListUsersEntry>(r.entries, 0, LIMITS.maxListCount, 'listUsersResponse.entries');
    if (typeof r.more !== 'boolean') throw new ProtocolError('FIELD_OUT_OF_RANGE', 'listUsersResponse.more: must be a boolean');
    const out = Buffer.alloc(LIST_USERS_HEAD_SIZE + entries.length * LIST_ENTRY_SIZE);
    out.writeUInt32LE(checkInt(r.total, 0, 0xffffffff, 'listUsersResponse.total'), 0);
    out.writeUInt16LE(entries.length, 4);
    out[6] = r.more ? 1 : 0;
    let p = LIST_USERS_HEAD_SIZE;
    entries.forEach((e, i) => {
      const f = `listUsersResponse.entries[${i}]`;
      writeUserId(out, p, e.userId, `${f}.userId`);
      out[p + 32] = checkInt(e.flag, 0, 0xff, `${f}.flag`);
      out.writeUInt16LE(checkInt(e.version, 0, 0xffff, `${f}.version`), p + 34);
      bytesField(e.digest, DIGEST_BYTES, `${f}.digest`).copy(out, p + 36);
      p += LIST_ENTRY_SIZE;
    });
    return out;
  });
}

export function decodeListUsersResponse(b: Buffer): ListUsersResponse {
  return guard('LIST_USERS response', () => {
    size(isBuf(b, 'LIST_USERS response'), LIST_USERS_HEAD_SIZE, 'LIST_USERS response', true);
    const h = listUsersHeadParser.parse(b) as { total: number; count: number; more: number };
    const n = count(h.count, 0, LIMITS.maxListCount, 'listUsersResponse.entries');
    if (h.more > 1) throw new ProtocolError('FIELD_OUT_OF_RANGE', `listUsersResponse.more: ${h.more}, must be 0 or 1`);
    need(b, LIST_USERS_HEAD_SIZE, n * LIST_ENTRY_SIZE, `listUsersResponse.entries (count ${n})`);
    const entries: ListUsersEntry[] = [];
    for (let i = 0, p = LIST_USERS_HEAD_SIZE; i < n; i++, p += LIST_ENTRY_SIZE) {
      entries.push({
        userId: readUserId(b, p, `listUsersResponse.entries[${i}].userId`),
        flag: b[p + 32],
        version: b.readUInt16LE(p + 34),
        digest: copy(b, p + 36, p + 36 + DIGEST_BYTES),
      });
    }
    return { total: h.total, more: h.more === 1, entries };
  });
}

// ------------------------------------------------------------------ GET_USERS

export interface GetUsersRequest {
  /** parts wanted; INFO_MASK_ANY (0xFFFF) = all */
  infoMask: number;
  userIds: string[];
}

export const countHeadParser = new Parser().endianness('little').uint16('count').uint16('reserved');

function writeIds(out: Buffer, p: number, ids: string[], what: string): void {
  ids.forEach((id, i) => writeUserId(out, p + i * LIMITS.userIdBytes, id, `${what}[${i}]`));
}

function readIds(b: Buffer, p: number, n: number, what: string): string[] {
  need(b, p, n * LIMITS.userIdBytes, `${what} (count ${n})`);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(readUserId(b, p + i * LIMITS.userIdBytes, `${what}[${i}]`));
  exactEnd(b, p + n * LIMITS.userIdBytes, what);
  return ids;
}

export function encodeGetUsersRequest(r: GetUsersRequest): Buffer {
  return guard('GET_USERS request', () => {
    const ids = list<string>(r.userIds, 1, LIMITS.maxBatch, 'getUsers.userIds');
    const out = Buffer.alloc(4 + ids.length * LIMITS.userIdBytes);
    out.writeUInt16LE(checkInt(r.infoMask, 0, 0xffff, 'getUsers.infoMask'), 0);
    out.writeUInt16LE(ids.length, 2);
    writeIds(out, 4, ids, 'getUsers.userIds');
    return out;
  });
}

export const getUsersRequestHeadParser = new Parser().endianness('little').uint16('infoMask').uint16('count');

export function decodeGetUsersRequest(b: Buffer): GetUsersRequest {
  return guard('GET_USERS request', () => {
    size(isBuf(b, 'GET_USERS request'), 4, 'GET_USERS request', true);
    const h = getUsersRequestHeadParser.parse(b) as { infoMask: number; count: number };
    const n = count(h.count, 1, LIMITS.maxBatch, 'getUsers.userIds');
    return { infoMask: h.infoMask, userIds: readIds(b, 4, n, 'getUsers.userIds') };
  });
}

export interface GetUsersResult {
  /** 0 or USER_NOT_FOUND (any negative code is carried through) */
  status: number;
  /** raw user record (decode with decodeUser); empty when status != 0 */
  record: Buffer;
}

export interface GetUsersResponse {
  results: GetUsersResult[];
}

export const recordHeadParser = new Parser().endianness('little').int16('status').uint16('reserved').uint32('length');

export function encodeGetUsersResponse(r: GetUsersResponse): Buffer {
  return guard('GET_USERS response', () => {
    const results = list<GetUsersResult>(r.results, 0, LIMITS.maxBatch, 'getUsersResponse.results');
    let total = 4;
    results.forEach((x, i) => {
      const f = `getUsersResponse.results[${i}]`;
      const st = statusValue(x.status, `${f}.status`);
      const rec = checkBuf(x.record, `${f}.record`);
      if (st !== 0 && rec.length !== 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${f}: a failed result carries no record`);
      if (st === 0 && rec.length < USER_HEADER_SIZE)
        throw new ProtocolError('FIELD_OUT_OF_RANGE', `${f}.record: ${rec.length} bytes, a user record has at least ${USER_HEADER_SIZE}`);
      total += 8 + rec.length;
    });
    const out = Buffer.alloc(total);
    out.writeUInt16LE(results.length, 0);
    let p = 4;
    for (const x of results) {
      out.writeInt16LE(x.status, p);
      out.writeUInt32LE(x.record.length, p + 4);
      x.record.copy(out, p + 8);
      p += 8 + x.record.length;
    }
    return out;
  });
}

export function decodeGetUsersResponse(b: Buffer): GetUsersResponse {
  return guard('GET_USERS response', () => {
    size(isBuf(b, 'GET_USERS response'), 4, 'GET_USERS response', true);
    const n = count(b.readUInt16LE(0), 0, LIMITS.maxBatch, 'getUsersResponse.results');
    need(b, 4, n * 8, `getUsersResponse.results (count ${n})`); // the smallest possible body
    const results: GetUsersResult[] = [];
    let p = 4;
    for (let i = 0; i < n; i++) {
      const f = `getUsersResponse.results[${i}]`;
      need(b, p, 8, f);
      const status = b.readInt16LE(p);
      const len = b.readUInt32LE(p + 4);
      if (status > 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${f}.status: ${status}, must be 0 or negative`);
      if (status !== 0 && len !== 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `${f}: status ${status} with a ${len}-byte record`);
      if (status === 0 && len < USER_HEADER_SIZE)
        throw new ProtocolError('FIELD_OUT_OF_RANGE', `${f}.length: ${len}, a user record has at least ${USER_HEADER_SIZE} bytes`);
      need(b, p + 8, len, `${f}.record`);
      results.push({ status, record: copy(b, p + 8, p + 8 + len) });
      p += 8 + len;
    }
    exactEnd(b, p, 'GET_USERS response');
    return { results };
  });
}

// ------------------------------------------------------------------ PUT_USERS

export interface PutUsersRequest {
  /** true: replace an existing user; false: an existing user ID fails with DUPLICATE_USER_ID */
  overwrite: boolean;
  /** pre-encoded user records (encodeUser), so one encoding can go to many terminals */
  records: Buffer[];
}

export const putUsersHeadParser = new Parser().endianness('little').uint8('overwrite').uint8('reserved').uint16('count');

export function encodePutUsersRequest(r: PutUsersRequest): Buffer {
  return guard('PUT_USERS request', () => {
    const records = list<Buffer>(r.records, 1, LIMITS.maxBatch, 'putUsers.records');
    if (typeof r.overwrite !== 'boolean') throw new ProtocolError('FIELD_OUT_OF_RANGE', 'putUsers.overwrite: must be a boolean');
    let total = 4;
    records.forEach((rec, i) => {
      checkBuf(rec, `putUsers.records[${i}]`);
      if (rec.length < USER_HEADER_SIZE)
        throw new ProtocolError('FIELD_OUT_OF_RANGE', `putUsers.records[${i}]: ${rec.length} bytes, a user record has at least ${USER_HEADER_SIZE}`);
      total += 4 + rec.length;
    });
    const out = Buffer.alloc(total);
    out[0] = r.overwrite ? 1 : 0;
    out.writeUInt16LE(records.length, 2);
    let p = 4;
    for (const rec of records) {
      out.writeUInt32LE(rec.length, p);
      rec.copy(out, p + 4);
      p += 4 + rec.length;
    }
    return out;
  });
}

/**
 * A PUT_USERS request as the parts of its payload (see encodeFrameParts): a
 * small buffer of its own for the head and the length prefixes, and the
 * records themselves, not copied. Same checks as encodePutUsersRequest.
 */
export function encodePutUsersParts(r: PutUsersRequest): Buffer[] {
  return guard('PUT_USERS request', () => {
    const records = list<Buffer>(r.records, 1, LIMITS.maxBatch, 'putUsers.records');
    if (typeof r.overwrite !== 'boolean') throw new ProtocolError('FIELD_OUT_OF_RANGE', 'putUsers.overwrite: must be a boolean');
    records.forEach((rec, i) => {
      checkBuf(rec, `putUsers.records[${i}]`);
      if (rec.length < USER_HEADER_SIZE)
        throw new ProtocolError('FIELD_OUT_OF_RANGE', `putUsers.records[${i}]: ${rec.length} bytes, a user record has at least ${USER_HEADER_SIZE}`);
    });
    const small = Buffer.alloc(4 + 4 * records.length);
    small[0] = r.overwrite ? 1 : 0;
    small.writeUInt16LE(records.length, 2);
    const parts: Buffer[] = [small.subarray(0, 4)];
    records.forEach((rec, i) => {
      const at = 4 + 4 * i;
      small.writeUInt32LE(rec.length, at);
      parts.push(small.subarray(at, at + 4), rec);
    });
    return parts;
  });
}

/**
 * One record of a PUT_USERS payload with its u32 length prefix, as it goes on
 * the wire: made once per record and cached, then sent as a part of every
 * terminal's request (encodePutUsersPrefixed). Same checks as encodePutUsersRequest.
 */
export function prefixPutUsersRecord(rec: Buffer): Buffer {
  return guard('PUT_USERS request', () => {
    checkBuf(rec, 'putUsers.record');
    if (rec.length < USER_HEADER_SIZE) throw new ProtocolError('FIELD_OUT_OF_RANGE', `putUsers.record: ${rec.length} bytes, a user record has at least ${USER_HEADER_SIZE}`);
    const out = Buffer.allocUnsafe(4 + rec.length);
    out.writeUInt32LE(rec.length, 0);
    rec.copy(out, 4);
    return out;
  });
}

/** A PUT_USERS payload as parts: its 4-byte head, then the records made by prefixPutUsersRecord, not copied. */
export function encodePutUsersPrefixed(overwrite: boolean, prefixed: readonly Buffer[]): Buffer[] {
  if (prefixed.length < 1 || prefixed.length > LIMITS.maxBatch) throw new ProtocolError('FIELD_OUT_OF_RANGE', `putUsers.records: ${prefixed.length} records, 1..${LIMITS.maxBatch} allowed`);
  const head = Buffer.alloc(4);
  head[0] = overwrite ? 1 : 0;
  head.writeUInt16LE(prefixed.length, 2);
  return [head, ...prefixed];
}

/**
 * Splits a PUT_USERS request into its records. The records themselves are not
 * decoded here: a malformed record fails alone with INVALID_USER (decodeUser),
 * while a malformed envelope fails the whole request with BAD_PAYLOAD.
 */
export function decodePutUsersRequest(b: Buffer): PutUsersRequest {
  return guard('PUT_USERS request', () => {
    size(isBuf(b, 'PUT_USERS request'), 4, 'PUT_USERS request', true);
    const h = putUsersHeadParser.parse(b) as { overwrite: number; count: number };
    if (h.overwrite > 1) throw new ProtocolError('FIELD_OUT_OF_RANGE', `putUsers.overwrite: ${h.overwrite}, must be 0 or 1`);
    const n = count(h.count, 1, LIMITS.maxBatch, 'putUsers.records');
    need(b, 4, n * 4, `putUsers.records (count ${n})`);
    const records: Buffer[] = [];
    let p = 4;
    for (let i = 0; i < n; i++) {
      need(b, p, 4, `putUsers.records[${i}].length`);
      const len = b.readUInt32LE(p);
      need(b, p + 4, len, `putUsers.records[${i}]`);
      records.push(copy(b, p + 4, p + 4 + len));
      p += 4 + len;
    }
    exactEnd(b, p, 'PUT_USERS request');
    return { overwrite: h.overwrite === 1, records };
  });
}

// ------------------------------------------------------------------ status lists (PUT_USERS / DELETE_USERS responses)

export interface StatusList {
  statuses: number[];
}

export function encodeStatusList(r: StatusList): Buffer {
  return guard('status list', () => {
    const st = list<number>(r.statuses, 0, LIMITS.maxBatch, 'statusList.statuses');
    const out = Buffer.alloc(4 + st.length * 2);
    out.writeUInt16LE(st.length, 0);
    st.forEach((s, i) => out.writeInt16LE(statusValue(s, `statusList.statuses[${i}]`), 4 + i * 2));
    return out;
  });
}

export function decodeStatusList(b: Buffer): StatusList {
  return guard('status list', () => {
    size(isBuf(b, 'status list'), 4, 'status list', true);
    const h = countHeadParser.parse(b) as { count: number };
    const n = count(h.count, 0, LIMITS.maxBatch, 'statusList.statuses');
    need(b, 4, n * 2, `statusList.statuses (count ${n})`);
    const statuses: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = b.readInt16LE(4 + i * 2);
      if (s > 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `statusList.statuses[${i}]: ${s}, must be 0 or negative`);
      statuses.push(s);
    }
    exactEnd(b, 4 + n * 2, 'status list');
    return { statuses };
  });
}

// ------------------------------------------------------------------ DELETE_USERS

export interface DeleteUsersRequest {
  userIds: string[];
}

export function encodeDeleteUsersRequest(r: DeleteUsersRequest): Buffer {
  return guard('DELETE_USERS request', () => {
    const ids = list<string>(r.userIds, 1, LIMITS.maxBatch, 'deleteUsers.userIds');
    const out = Buffer.alloc(4 + ids.length * LIMITS.userIdBytes);
    out.writeUInt16LE(ids.length, 0);
    writeIds(out, 4, ids, 'deleteUsers.userIds');
    return out;
  });
}

export function decodeDeleteUsersRequest(b: Buffer): DeleteUsersRequest {
  return guard('DELETE_USERS request', () => {
    size(isBuf(b, 'DELETE_USERS request'), 4, 'DELETE_USERS request', true);
    const h = countHeadParser.parse(b) as { count: number };
    const n = count(h.count, 1, LIMITS.maxBatch, 'deleteUsers.userIds');
    return { userIds: readIds(b, 4, n, 'deleteUsers.userIds') };
  });
}

// ------------------------------------------------------------------ ERROR frames

/**
 * The payload of an ERROR frame: a UTF-8 message for logs. Messages longer than
 * MAX_ERROR_MESSAGE bytes are cut at a character boundary (they are only for logs).
 */
export function encodeErrorPayload(message: string): Buffer {
  return guard('ERROR payload', () => {
    if (typeof message !== 'string') throw new ProtocolError('FIELD_OUT_OF_RANGE', 'error message: must be a string');
    // Buffer.from replaces lone surrogates with U+FFFD, so the bytes are always valid UTF-8
    let b = Buffer.from(message, 'utf8');
    if (b.length <= MAX_ERROR_MESSAGE) return b;
    let end = MAX_ERROR_MESSAGE;
    while (end > 0 && (b[end] & 0xc0) === 0x80) end--; // do not split a multi-byte character
    b = Buffer.from(b.subarray(0, end));
    return b;
  });
}

export function decodeErrorPayload(b: Buffer): string {
  return guard('ERROR payload', () => {
    isBuf(b, 'ERROR payload');
    if (b.length > MAX_ERROR_MESSAGE)
      throw new ProtocolError('FIELD_OUT_OF_RANGE', `error message: ${b.length} bytes, at most ${MAX_ERROR_MESSAGE}`);
    try {
      return utf8.decode(b);
    } catch {
      throw new ProtocolError('INVALID_UTF8', 'error message: not valid UTF-8');
    }
  });
}

// ------------------------------------------------------------------ empty payloads and dispatch

/** PING, BYE, AUTH response, GET_INFO request: no payload (GET_INFO requests may be extended). */
export function encodeEmpty(): Buffer {
  return Buffer.alloc(0);
}

export function decodeEmpty(b: Buffer, what = 'empty payload', extensible = false): void {
  guard(what, () => size(isBuf(b, what), 0, what, extensible));
}

type Decoder = (b: Buffer) => unknown;

const REQUEST_DECODERS: Record<number, Decoder> = {
  [Command.HELLO]: decodeHello,
  [Command.AUTH]: decodeAuth,
  [Command.PING]: (b) => decodeEmpty(b, 'PING request'),
  [Command.BYE]: (b) => decodeEmpty(b, 'BYE request'),
  [Command.GET_INFO]: (b) => decodeEmpty(b, 'GET_INFO request', true),
  [Command.GET_LOG]: decodeGetLogRequest,
  [Command.SUBSCRIBE_LOG]: decodeSubscribeRequest,
  [Command.LIST_USERS]: decodeListUsersRequest,
  [Command.GET_USERS]: decodeGetUsersRequest,
  [Command.PUT_USERS]: decodePutUsersRequest,
  [Command.DELETE_USERS]: decodeDeleteUsersRequest,
};

const RESPONSE_DECODERS: Record<number, Decoder> = {
  [Command.HELLO]: decodeHelloResponse,
  [Command.AUTH]: (b) => decodeEmpty(b, 'AUTH response'),
  [Command.PING]: (b) => decodeEmpty(b, 'PING response'),
  [Command.BYE]: (b) => decodeEmpty(b, 'BYE response'),
  [Command.GET_INFO]: decodeInfo,
  [Command.GET_LOG]: decodeGetLogResponse,
  [Command.SUBSCRIBE_LOG]: decodeSubscribeResponse,
  [Command.LIST_USERS]: decodeListUsersResponse,
  [Command.GET_USERS]: decodeGetUsersResponse,
  [Command.PUT_USERS]: decodeStatusList,
  [Command.DELETE_USERS]: decodeStatusList,
};

const EVENT_DECODERS: Record<number, Decoder> = {
  [Command.LOG_EVENT]: decodeLogEvent,
  [Command.LOG_ACK]: decodeLogAck,
};

/**
 * Decodes the payload of a frame by kind and command: the object the matching
 * decodeX returns (undefined for empty payloads, the message string for ERROR).
 * A RESPONSE with a non-zero status carries no payload to decode and returns
 * undefined. Throws ProtocolError UNKNOWN_COMMAND for a command without a layout.
 */
export function decodeFramePayload(f: { kind: FrameKind; command: number; status: number; payload: Buffer }): unknown {
  if (f.kind === FrameKind.ERROR) return decodeErrorPayload(f.payload);
  if (f.kind === FrameKind.RESPONSE && f.status !== 0) return undefined;
  const table = f.kind === FrameKind.REQUEST ? REQUEST_DECODERS : f.kind === FrameKind.RESPONSE ? RESPONSE_DECODERS : EVENT_DECODERS;
  const dec = Object.prototype.hasOwnProperty.call(table, f.command) ? table[f.command] : undefined;
  if (!dec) throw new ProtocolError('UNKNOWN_COMMAND', `command 0x${f.command.toString(16).padStart(4, '0')} has no ${FrameKind[f.kind] ?? 'frame'} layout`);
  return dec(f.payload);
}
