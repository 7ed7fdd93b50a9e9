// Payload and record codecs: round trips, the validity rules of PROTOCOL.md 6.2,
// a table of malformed inputs with the exact error each must produce, and
// fast-check properties.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Command,
  EVENT_RECORD_SIZE,
  EventCode,
  FrameKind,
  INFO_MASK_ALL_PARTS,
  INFO_MASK_ANY,
  InfoMask,
  LIMITS,
  ProtocolError,
  Status,
  USER_HEADER_SIZE,
  decodeAuth,
  decodeDeleteUsersRequest,
  decodeErrorPayload,
  decodeEvents,
  decodeFramePayload,
  decodeGetLogRequest,
  decodeGetLogResponse,
  decodeGetUsersRequest,
  decodeGetUsersResponse,
  decodeHello,
  decodeHelloResponse,
  decodeInfo,
  decodeListUsersRequest,
  decodeListUsersResponse,
  decodeLogAck,
  decodeLogEvent,
  decodePutUsersRequest,
  decodeStatusList,
  decodeSubscribeRequest,
  decodeSubscribeResponse,
  decodeUser,
  effectiveWindow,
  encodeAuth,
  encodeDeleteUsersRequest,
  encodeErrorPayload,
  encodeEvent,
  encodeEvents,
  encodeGetLogRequest,
  encodeGetLogResponse,
  encodeGetUsersRequest,
  encodeGetUsersResponse,
  encodeHello,
  encodeHelloResponse,
  encodeInfo,
  encodeListUsersRequest,
  encodeListUsersResponse,
  encodeLogAck,
  encodeLogEvent,
  encodePutUsersRequest,
  encodeStatusList,
  encodeSubscribeRequest,
  encodeSubscribeResponse,
  encodeUser,
  eventRecordParser,
  userDigest,
  type EventRecord,
  type Hello,
  type TerminalInfo,
  type UserRecord,
} from '../src/codec/index.js';
import { emptyUser, hashPin, structuredCloneUser, userIdProblem } from '../src/model/user.js';

function protocolError(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw new Error(`expected a ProtocolError, got ${String(e)}`);
    return e;
  }
  throw new Error('expected a ProtocolError, nothing was thrown');
}

const seeded = (seed: string, n: number) => {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
};

function fullUser(): UserRecord {
  return {
    ...emptyUser('ana lima, 7'),
    flag: 0x02,
    version: 9,
    authGroupId: 12,
    setting: { startTime: 1, endTime: 2, fingerAuthMode: 3, cardAuthMode: 4, idAuthMode: 5, securityLevel: 5 },
    name: 'Ana Lima 李',
    photo: seeded('photo', 100),
    pinHash: hashPin('123456'),
    cards: [
      { type: 1, data: Buffer.from([0x42]) },
      { type: 0x0d, data: seeded('card', 32) },
    ],
    fingers: [{ index: 9, flag: 1, templates: [seeded('t0', 384), seeded('t1', 384)] }],
    faces: [{ index: 0, flag: 0, data: seeded('face', 77) }],
    accessGroups: [0, 0xffffffff],
    jobCodes: [{ code: 3, label: 'Nachtschicht ü' }],
    phrase: 'Olá',
  };
}

/** the user as decodeUser returns it from a record that carries only `mask` */
function vacate(u: UserRecord, mask: number): UserRecord {
  const v = structuredCloneUser(u);
  const e = emptyUser(u.id);
  if (!(mask & InfoMask.SETTING)) v.setting = e.setting;
  if (!(mask & InfoMask.NAME)) v.name = '';
  if (!(mask & InfoMask.PHOTO)) v.photo = e.photo;
  if (!(mask & InfoMask.PIN)) v.pinHash = e.pinHash;
  if (!(mask & InfoMask.CARD)) v.cards = [];
  if (!(mask & InfoMask.FINGER)) v.fingers = [];
  if (!(mask & InfoMask.FACE)) v.faces = [];
  if (!(mask & InfoMask.ACCESS_GROUP)) v.accessGroups = [];
  if (!(mask & InfoMask.JOB)) v.jobCodes = [];
  if (!(mask & InfoMask.PHRASE)) v.phrase = '';
  return v;
}

const hello: Hello = {
  deviceId: 77,
  minVersion: 1,
  maxVersion: 3,
  maxUsersPerBatch: 1000,
  userCapacity: 500_000,
  logCapacity: 1,
  capabilities: 7,
  model: 'sixteen bytes!!!',
  firmware: 'v∞',
  nonce: seeded('n', 16),
};
const info: TerminalInfo = {
  deviceId: 1,
  userCount: 2,
  userCapacity: 3,
  logEpoch: 0xffffffff,
  firstEventId: 5,
  lastEventId: 6,
  logCapacity: 7,
  time: 8,
  maxUsersPerBatch: 1,
  model: '',
  firmware: 'x',
};
const event = (id: number, userId = 'u1'): EventRecord => ({ id, dateTime: 1_700_000_000, deviceId: 9, userId, code: EventCode.USER_ENROLL_SUCCESS, param: 1, flags: 0xff });

describe('round trips of every payload', () => {
  const cases: [string, (x: any) => Buffer, (b: Buffer) => unknown, unknown][] = [
    ['HELLO', encodeHello, decodeHello, hello],
    ['HELLO response', encodeHelloResponse, decodeHelloResponse, { version: 1, heartbeatSec: 65535, nonce: seeded('s', 16), proof: seeded('p', 32) }],
    ['AUTH', encodeAuth, decodeAuth, { proof: seeded('p', 32) }],
    ['GET_INFO response', encodeInfo, decodeInfo, info],
    ['GET_LOG request', encodeGetLogRequest, decodeGetLogRequest, { afterId: 0xffffffff, maxCount: 1000 }],
    ['GET_LOG response (1000 events)', encodeGetLogResponse, decodeGetLogResponse, { logEpoch: 1, firstEventId: 2, lastEventId: 3, events: Array.from({ length: 1000 }, (_, i) => event(i + 1, i % 3 ? `user ${i}` : '')) }],
    ['SUBSCRIBE_LOG request', encodeSubscribeRequest, decodeSubscribeRequest, { afterId: 5, window: 4096 }],
    ['SUBSCRIBE_LOG response', encodeSubscribeResponse, decodeSubscribeResponse, { logEpoch: 1, firstEventId: 0, lastEventId: 0 }],
    ['LOG_EVENT', encodeLogEvent, decodeLogEvent, { logEpoch: 3, events: [event(1), event(2, 'Zoë, née X')] }],
    ['LOG_ACK', encodeLogAck, decodeLogAck, { lastEventId: 123 }],
    ['LIST_USERS request', encodeListUsersRequest, decodeListUsersRequest, { afterUserId: 'x'.repeat(32), maxCount: 1 }],
    ['LIST_USERS response', encodeListUsersResponse, decodeListUsersResponse, { total: 9, more: false, entries: [{ userId: 'a b', flag: 0x80, version: 65535, digest: seeded('d', 12) }] }],
    ['GET_USERS request', encodeGetUsersRequest, decodeGetUsersRequest, { infoMask: INFO_MASK_ANY, userIds: ['1', '2', 'ü'] }],
    ['GET_USERS response', encodeGetUsersResponse, decodeGetUsersResponse, { results: [{ status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) }, { status: 0, record: encodeUser(fullUser()) }] }],
    ['PUT_USERS request', encodePutUsersRequest, decodePutUsersRequest, { overwrite: false, records: [encodeUser(fullUser()), encodeUser(emptyUser('b'), InfoMask.DATA)] }],
    ['status list', encodeStatusList, decodeStatusList, { statuses: [0, Status.USER_FULL, Status.DUPLICATE_CARD, Status.DUPLICATE_USER_ID, Status.INVALID_USER] }],
    ['DELETE_USERS request', encodeDeleteUsersRequest, decodeDeleteUsersRequest, { userIds: ['x'] }],
  ];
  it.each(cases)('%s', (_n, enc, dec, value) => {
    const bytes = enc(value);
    expect(dec(bytes)).toEqual(value);
    expect(enc(dec(bytes))).toEqual(bytes);
  });

  it('ERROR payload: UTF-8 message, cut at a character boundary at 256 bytes', () => {
    expect(decodeErrorPayload(encodeErrorPayload('bad thing ✓'))).toBe('bad thing ✓');
    const long = encodeErrorPayload('é'.repeat(200));
    expect(long.length).toBe(256);
    expect(decodeErrorPayload(long)).toBe('é'.repeat(128));
    const odd = encodeErrorPayload('x' + '€'.repeat(100)); // 1 + 300 bytes: cut must not split a 3-byte character
    expect(odd.length).toBeLessThanOrEqual(256);
    expect(decodeErrorPayload(odd)).toBe('x' + '€'.repeat(85));
  });

  it('sizes match the protocol tables', () => {
    expect(encodeHello(hello).length).toBe(68);
    expect(encodeHelloResponse({ version: 1, heartbeatSec: 1, nonce: seeded('s', 16), proof: seeded('p', 32) }).length).toBe(52);
    expect(encodeInfo(info).length).toBe(68);
    expect(encodeGetLogRequest({ afterId: 1, maxCount: 1 }).length).toBe(8);
    expect(encodeListUsersRequest({ afterUserId: '', maxCount: 1 }).length).toBe(36);
    expect(encodeEvent(event(1)).length).toBe(EVENT_RECORD_SIZE);
    expect(encodeUser(emptyUser('a'), InfoMask.DATA).length).toBe(USER_HEADER_SIZE);
    expect(encodeUser(emptyUser('a')).length).toBe(48 + 12 + 192 + 4 + 32 + 128);
  });

  it('decodeFramePayload dispatches by kind and command', () => {
    expect(decodeFramePayload({ kind: FrameKind.EVENT, command: Command.LOG_ACK, status: 0, payload: encodeLogAck({ lastEventId: 4 }) })).toEqual({ lastEventId: 4 });
    expect(decodeFramePayload({ kind: FrameKind.RESPONSE, command: Command.PUT_USERS, status: 0, payload: encodeStatusList({ statuses: [0] }) })).toEqual({ statuses: [0] });
    expect(decodeFramePayload({ kind: FrameKind.ERROR, command: 0, status: -1, payload: Buffer.from('oops') })).toBe('oops');
    expect(decodeFramePayload({ kind: FrameKind.RESPONSE, command: Command.GET_LOG, status: Status.BUSY, payload: Buffer.alloc(0) })).toBeUndefined();
    expect(decodeFramePayload({ kind: FrameKind.REQUEST, command: Command.PING, status: 0, payload: Buffer.alloc(0) })).toBeUndefined();
    expect(protocolError(() => decodeFramePayload({ kind: FrameKind.REQUEST, command: 0x0099, status: 0, payload: Buffer.alloc(0) })).code).toBe('UNKNOWN_COMMAND');
    expect(protocolError(() => decodeFramePayload({ kind: FrameKind.EVENT, command: Command.GET_LOG, status: 0, payload: Buffer.alloc(0) })).code).toBe('UNKNOWN_COMMAND');
    expect(protocolError(() => decodeFramePayload({ kind: FrameKind.REQUEST, command: Command.PING, status: 0, payload: Buffer.alloc(1) })).code).toBe('TRAILING_BYTES');
    // GET_INFO requests may be extended
    expect(decodeFramePayload({ kind: FrameKind.REQUEST, command: Command.GET_INFO, status: 0, payload: Buffer.alloc(3) })).toBeUndefined();
  });

  it('SUBSCRIBE_LOG window 0 means 256', () => {
    expect(effectiveWindow(decodeSubscribeRequest(encodeSubscribeRequest({ afterId: 0, window: 0 })).window)).toBe(256);
  });
});

describe('user records', () => {
  it('round-trips every part', () => {
    const u = fullUser();
    const { user, infoMask } = decodeUser(encodeUser(u));
    expect(infoMask).toBe(INFO_MASK_ALL_PARTS);
    expect(user).toEqual(u);
  });

  it('round-trips a record at every limit (8 cards, 10 fingers, 5 faces of 32 KiB, 16 groups, 16 job codes, 16 KiB photo)', () => {
    const u: UserRecord = {
      ...fullUser(),
      id: 'é'.repeat(16), // 32 bytes of UTF-8: no terminator
      name: '名'.repeat(64), // 192 bytes
      phrase: 'p'.repeat(128),
      photo: seeded('big photo', LIMITS.photoBytes),
      cards: Array.from({ length: 8 }, (_, i) => ({ type: i + 1, data: seeded(`c${i}`, i * 4 + 1) })),
      fingers: Array.from({ length: 10 }, (_, i) => ({ index: i, flag: i & 1, templates: [seeded(`f${i}a`, 384), seeded(`f${i}b`, 384)] as [Buffer, Buffer] })),
      faces: Array.from({ length: 5 }, (_, i) => ({ index: i, flag: 0, data: seeded(`face${i}`, LIMITS.faceDataBytes) })),
      accessGroups: Array.from({ length: 16 }, (_, i) => i * 1000),
      jobCodes: Array.from({ length: 16 }, (_, i) => ({ code: i, label: 'l'.repeat(48) })),
    };
    const bytes = encodeUser(u);
    expect(decodeUser(bytes).user).toEqual(u);
  });

  it('an empty PIN is 32 zero bytes on the wire, and 32 zero bytes decode to no PIN', () => {
    const u = { ...emptyUser('p'), pinHash: Buffer.alloc(0) };
    const b = encodeUser(u, InfoMask.DATA | InfoMask.PIN);
    expect(b.subarray(48)).toEqual(Buffer.alloc(32));
    expect(decodeUser(b).user.pinHash.length).toBe(0);
  });

  it('card data is padded to 32 bytes with the size byte telling its length', () => {
    const b = encodeUser({ ...emptyUser('c'), cards: [{ type: 2, data: Buffer.from('abc') }] }, InfoMask.DATA | InfoMask.CARD);
    expect(b.subarray(48).toString('hex')).toBe('0203' + Buffer.from('abc').toString('hex') + '00'.repeat(29));
  });

  it('a partial infoMask leaves the absent parts vacant; INFO_MASK_ANY encodes every part', () => {
    const u = fullUser();
    const mask = InfoMask.DATA | InfoMask.NAME | InfoMask.CARD;
    const d = decodeUser(encodeUser(u, mask));
    expect(d.infoMask).toBe(mask);
    expect(d.user).toEqual(vacate(u, mask));
    expect(d.user.fingers).toEqual([]);
    expect(d.user.accessGroups).toEqual([]);
    expect(decodeUser(encodeUser(u, INFO_MASK_ANY)).infoMask).toBe(INFO_MASK_ALL_PARTS);
    expect(decodeUser(encodeUser(u, 0)).infoMask).toBe(InfoMask.DATA); // DATA is always present
  });

  it('a user ID of exactly 32 bytes needs no terminator; spaces and commas are allowed', () => {
    const b = encodeUser(emptyUser('x'), InfoMask.DATA);
    b.write('0123456789, abcdefghij klmnopqrs', 0, 'utf8');
    expect(decodeUser(b).user.id).toBe('0123456789, abcdefghij klmnopqrs');
  });

  describe('userDigest', () => {
    it('is the first 12 bytes of SHA-256 over the canonical record (all parts, flag 0, version 0)', () => {
      const u = fullUser();
      const canonical = encodeUser({ ...u, flag: 0, version: 0 }, INFO_MASK_ALL_PARTS);
      expect(userDigest(u)).toEqual(createHash('sha256').update(canonical).digest().subarray(0, 12));
      expect(userDigest(u).length).toBe(12);
    });
    it('ignores flag and version, and changes with any data', () => {
      const u = fullUser();
      expect(userDigest({ ...u, flag: 0x81, version: 1234 })).toEqual(userDigest(u));
      expect(userDigest({ ...u, name: 'Ana Lima' })).not.toEqual(userDigest(u));
      expect(userDigest({ ...u, accessGroups: [0] })).not.toEqual(userDigest(u));
      // a record received with all parts digests the same as the original
      expect(userDigest(decodeUser(encodeUser(u)).user)).toEqual(userDigest(u));
    });
  });
});

// ---------------------------------------------------------------- malformed inputs

/** a record with DATA|SETTING|NAME|CARD, one card: offsets name 60, card 252 */
const MASK = InfoMask.DATA | InfoMask.SETTING | InfoMask.NAME | InfoMask.CARD;
const NAME_AT = 48 + 12;
const CARD_AT = NAME_AT + 192;
function rec(edit: (b: Buffer) => Buffer | void): Buffer {
  const b = encodeUser({ ...fullUser(), name: 'abc', cards: [{ type: 1, data: Buffer.from('0102', 'hex') }] }, MASK);
  return edit(b) ?? b;
}
const withHeader = (i: number, v: number) => rec((b) => void (b[i] = v));

describe('malformed user records: each with its exact error (status INVALID_USER)', () => {
  const cases: [string, Buffer, string][] = [
    ['user id with a control character', rec((b) => void b.fill(0, 0, 32).write('ab\x01c', 0, 'latin1')), 'INVALID_USER_ID'],
    ['user id with DEL (0x7f)', rec((b) => void b.fill(0, 0, 32).write('ab\x7fc', 0, 'latin1')), 'INVALID_USER_ID'],
    ['user id with a tab', rec((b) => void b.fill(0, 0, 32).write('a\tb', 0, 'latin1')), 'INVALID_USER_ID'],
    ['empty user id', rec((b) => void b.fill(0, 0, 32)), 'INVALID_USER_ID'],
    ['user id of invalid UTF-8', rec((b) => void b.fill(0, 0, 32).writeUInt16BE(0xc328, 0)), 'INVALID_USER_ID'],
    ['user id with a non-NUL byte after its terminator', rec((b) => void (b[31] = 0x41)), 'BAD_PADDING'],
    ['header cut short (47 bytes)', rec((b) => b.subarray(0, 47)), 'TRUNCATED'],
    ['formatVersion 2', withHeader(32, 2), 'BAD_FORMAT_VERSION'],
    ['infoMask without DATA', rec((b) => void b.writeUInt16LE(MASK & ~InfoMask.DATA, 36)), 'BAD_INFO_MASK'],
    ['infoMask with a part unknown in version 1', rec((b) => void b.writeUInt16LE(MASK | 0x0800, 36)), 'BAD_INFO_MASK'],
    ['a finger count while FINGER is not in infoMask', withHeader(39, 1), 'BAD_INFO_MASK'],
    ['9 cards', withHeader(38, 9), 'TOO_MANY_CARDS'],
    ['11 fingers', withHeader(39, 11), 'TOO_MANY_FINGERS'],
    ['6 faces', withHeader(40, 6), 'TOO_MANY_FACES'],
    ['17 access groups', withHeader(41, 17), 'TOO_MANY_ACCESS_GROUPS'],
    ['17 job codes', withHeader(42, 17), 'TOO_MANY_JOB_CODES'],
    ['card count larger than the record (3 cards, 1 present)', withHeader(38, 3), 'TRUNCATED'],
    ['trailing garbage after the last part', rec((b) => Buffer.concat([b, Buffer.from([0])])), 'TRAILING_BYTES'],
    ['a part missing (record ends after the name)', rec((b) => b.subarray(0, CARD_AT)), 'TRUNCATED'],
    ['name of invalid UTF-8', rec((b) => void b.writeUInt16BE(0xc328, NAME_AT)), 'INVALID_UTF8'],
    ['name with a lone continuation byte', rec((b) => void (b[NAME_AT + 1] = 0x80)), 'INVALID_UTF8'],
    ['name with a non-NUL byte after its terminator', rec((b) => void (b[NAME_AT + 100] = 0x78)), 'BAD_PADDING'],
    ['securityLevel 6', rec((b) => void (b[48 + 11] = 6)), 'FIELD_OUT_OF_RANGE'],
    ['card type 0', rec((b) => void (b[CARD_AT] = 0)), 'FIELD_OUT_OF_RANGE'],
    ['card size 0', rec((b) => void (b[CARD_AT + 1] = 0)), 'FIELD_OUT_OF_RANGE'],
    ['card size 33', rec((b) => void (b[CARD_AT + 1] = 33)), 'FIELD_OUT_OF_RANGE'],
    ['card data not zero after its size', rec((b) => void (b[CARD_AT + 2 + 5] = 1)), 'BAD_PADDING'],
    ['photo size 16385', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.PHOTO); b.writeUInt32LE(16385, 48); return b; })(), 'FIELD_OUT_OF_RANGE'],
    ['photo size larger than the record', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.PHOTO); b.writeUInt32LE(16000, 48); return b; })(), 'TRUNCATED'],
    ['finger index 10', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.FINGER); b[48] = 10; return b; })(), 'FIELD_OUT_OF_RANGE'],
    ['face size 0', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.FACE); b.writeUInt32LE(0, 52); return b; })(), 'FIELD_OUT_OF_RANGE'],
    ['face size 0xFFFFFFFF', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.FACE); b.writeUInt32LE(0xffffffff, 52); return b; })(), 'FIELD_OUT_OF_RANGE'],
    ['job label of invalid UTF-8', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.JOB); b[52] = 0xff; return b; })(), 'INVALID_UTF8'],
    ['phrase with a non-NUL byte after its terminator', (() => { const b = encodeUser(fullUser(), InfoMask.DATA | InfoMask.PHRASE); b[b.length - 1] = 1; return b; })(), 'BAD_PADDING'],
  ];
  it.each(cases)('%s', (_n, bytes, code) => {
    const e = protocolError(() => decodeUser(bytes));
    expect(e.code).toBe(code);
    expect(e.status).toBe(Status.INVALID_USER);
  });

  it('a non-Buffer input is a typed error too', () => {
    expect(protocolError(() => decodeUser(undefined as any)).code).toBe('BAD_PAYLOAD');
    expect(protocolError(() => decodeUser('abc' as any)).code).toBe('BAD_PAYLOAD');
  });
});

describe('encoders refuse records that would break the rules', () => {
  const u = fullUser();
  const cases: [string, UserRecord, string][] = [
    ['9 cards', { ...u, cards: Array.from({ length: 9 }, () => ({ type: 1, data: Buffer.from([1]) })) }, 'TOO_MANY_CARDS'],
    ['11 fingers', { ...u, fingers: Array.from({ length: 11 }, () => u.fingers[0]) }, 'TOO_MANY_FINGERS'],
    ['6 faces', { ...u, faces: Array.from({ length: 6 }, () => u.faces[0]) }, 'TOO_MANY_FACES'],
    ['17 access groups', { ...u, accessGroups: Array.from({ length: 17 }, () => 1) }, 'TOO_MANY_ACCESS_GROUPS'],
    ['17 job codes', { ...u, jobCodes: Array.from({ length: 17 }, () => ({ code: 1, label: '' })) }, 'TOO_MANY_JOB_CODES'],
    ['a 33-byte user id', { ...u, id: 'x'.repeat(33) }, 'INVALID_USER_ID'],
    ['an empty user id', { ...u, id: '' }, 'INVALID_USER_ID'],
    ['a user id with a newline', { ...u, id: 'a\nb' }, 'INVALID_USER_ID'],
    ['a name of 193 bytes', { ...u, name: 'n'.repeat(193) }, 'FIELD_OUT_OF_RANGE'],
    ['a name with NUL', { ...u, name: 'a\0b' }, 'FIELD_OUT_OF_RANGE'],
    ['a name with a lone surrogate', { ...u, name: 'a\ud800' }, 'INVALID_UTF8'],
    ['empty card data', { ...u, cards: [{ type: 1, data: Buffer.alloc(0) }] }, 'FIELD_OUT_OF_RANGE'],
    ['33 bytes of card data', { ...u, cards: [{ type: 1, data: Buffer.alloc(33, 1) }] }, 'FIELD_OUT_OF_RANGE'],
    ['card type 0', { ...u, cards: [{ type: 0, data: Buffer.alloc(3, 1) }] }, 'FIELD_OUT_OF_RANGE'],
    ['a 383-byte template', { ...u, fingers: [{ index: 0, flag: 0, templates: [Buffer.alloc(383), Buffer.alloc(384)] }] }, 'FIELD_OUT_OF_RANGE'],
    ['finger index 10', { ...u, fingers: [{ ...u.fingers[0], index: 10 }] }, 'FIELD_OUT_OF_RANGE'],
    ['a 31-byte PIN hash', { ...u, pinHash: Buffer.alloc(31, 1) }, 'FIELD_OUT_OF_RANGE'],
    ['a photo over 16 KiB', { ...u, photo: Buffer.alloc(16385) }, 'FIELD_OUT_OF_RANGE'],
    ['an empty face', { ...u, faces: [{ index: 0, flag: 0, data: Buffer.alloc(0) }] }, 'FIELD_OUT_OF_RANGE'],
    ['securityLevel 6', { ...u, setting: { ...u.setting, securityLevel: 6 } }, 'FIELD_OUT_OF_RANGE'],
    ['a negative access group', { ...u, accessGroups: [-1] }, 'FIELD_OUT_OF_RANGE'],
    ['a fractional version', { ...u, version: 1.5 }, 'FIELD_OUT_OF_RANGE'],
    ['flag 256', { ...u, flag: 256 }, 'FIELD_OUT_OF_RANGE'],
    ['a photo that is not a Buffer', { ...u, photo: 'ffd8' as any }, 'FIELD_OUT_OF_RANGE'],
  ];
  it.each(cases)('%s', (_n, bad, code) => {
    const e = protocolError(() => encodeUser(bad));
    expect(e.code).toBe(code);
    expect(e.status).toBe(Status.INVALID_USER);
  });

  it('payload encoders refuse limit violations too', () => {
    expect(protocolError(() => encodeGetLogRequest({ afterId: 0, maxCount: 0 })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeGetLogResponse({ logEpoch: 0, firstEventId: 0, lastEventId: 0, events: Array.from({ length: 1001 }, (_, i) => event(i)) })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeLogEvent({ logEpoch: 0, events: [] })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeLogEvent({ logEpoch: 0, events: [event(1, 'a\u0000')] })).code).toBe('INVALID_USER_ID');
    expect(protocolError(() => encodeGetUsersRequest({ infoMask: 0xffff, userIds: [] })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeGetUsersRequest({ infoMask: 0xffff, userIds: ['ok', 'x'.repeat(33)] })).code).toBe('INVALID_USER_ID');
    expect(protocolError(() => encodePutUsersRequest({ overwrite: true, records: [Buffer.alloc(10)] })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeGetUsersResponse({ results: [{ status: Status.USER_NOT_FOUND, record: encodeUser(fullUser()) }] })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeStatusList({ statuses: [1] })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeHello({ ...hello, deviceId: 0 })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeHello({ ...hello, nonce: Buffer.alloc(15) })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeHello({ ...hello, model: 'seventeen bytes!!' })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeSubscribeRequest({ afterId: 0, window: 4097 })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeAuth({ proof: Buffer.alloc(31) })).code).toBe('FIELD_OUT_OF_RANGE');
    expect(protocolError(() => encodeHello(null as any)).code).toBe('BAD_PAYLOAD');
  });
});

describe('malformed payloads: each with its exact error (status BAD_PAYLOAD)', () => {
  const log3 = encodeGetLogResponse({ logEpoch: 1, firstEventId: 1, lastEventId: 3, events: [event(1), event(2), event(3)] });
  const logEv = encodeLogEvent({ logEpoch: 1, events: [event(1), event(2)] });
  const list2 = encodeListUsersResponse({ total: 2, more: true, entries: [{ userId: 'a', flag: 0, version: 0, digest: Buffer.alloc(12) }, { userId: 'b', flag: 0, version: 0, digest: Buffer.alloc(12) }] });
  const get2 = encodeGetUsersRequest({ infoMask: 0xffff, userIds: ['a', 'b'] });
  const getResp = encodeGetUsersResponse({ results: [{ status: 0, record: encodeUser(emptyUser('a'), InfoMask.DATA) }, { status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) }] });
  const put = encodePutUsersRequest({ overwrite: true, records: [encodeUser(emptyUser('a'), InfoMask.DATA)] });
  const del = encodeDeleteUsersRequest({ userIds: ['a'] });
  const ed = (b: Buffer, f: (c: Buffer) => void) => { const c = Buffer.from(b); f(c); return c; };
  const cat = (b: Buffer, extra: number[]) => Buffer.concat([b, Buffer.from(extra)]);

  const cases: [string, (b: Buffer) => unknown, Buffer, string][] = [
    ['HELLO of 67 bytes', decodeHello, encodeHello(hello).subarray(0, 67), 'TRUNCATED'],
    ['HELLO with deviceId 0', decodeHello, ed(encodeHello(hello), (c) => c.writeUInt32LE(0, 0)), 'FIELD_OUT_OF_RANGE'],
    ['HELLO with minVersion above maxVersion', decodeHello, ed(encodeHello(hello), (c) => (c[4] = 9)), 'FIELD_OUT_OF_RANGE'],
    ['HELLO with maxUsersPerBatch 0', decodeHello, ed(encodeHello(hello), (c) => c.writeUInt16LE(0, 6)), 'FIELD_OUT_OF_RANGE'],
    ['HELLO with maxUsersPerBatch 1001', decodeHello, ed(encodeHello(hello), (c) => c.writeUInt16LE(1001, 6)), 'FIELD_OUT_OF_RANGE'],
    ['HELLO with a model of invalid UTF-8', decodeHello, ed(encodeHello(hello), (c) => (c[20] = 0xfe)), 'INVALID_UTF8'],
    ['HELLO with a firmware padding byte', decodeHello, ed(encodeHello(hello), (c) => (c[51] = 0x20)), 'BAD_PADDING'],
    ['HELLO response of 51 bytes', decodeHelloResponse, Buffer.alloc(51), 'TRUNCATED'],
    ['HELLO response with version 0', decodeHelloResponse, Buffer.alloc(52), 'FIELD_OUT_OF_RANGE'],
    ['AUTH of 31 bytes', decodeAuth, Buffer.alloc(31), 'TRUNCATED'],
    ['AUTH of 33 bytes', decodeAuth, Buffer.alloc(33), 'TRAILING_BYTES'],
    ['GET_INFO response with maxUsersPerBatch 0', decodeInfo, ed(encodeInfo(info), (c) => c.writeUInt16LE(0, 32)), 'FIELD_OUT_OF_RANGE'],
    ['GET_INFO response of 40 bytes', decodeInfo, encodeInfo(info).subarray(0, 40), 'TRUNCATED'],
    ['GET_LOG request with maxCount 0', decodeGetLogRequest, Buffer.alloc(8), 'FIELD_OUT_OF_RANGE'],
    ['GET_LOG request with maxCount 1001', decodeGetLogRequest, ed(Buffer.alloc(8), (c) => c.writeUInt16LE(1001, 4)), 'FIELD_OUT_OF_RANGE'],
    ['GET_LOG response with count 1001', decodeGetLogResponse, ed(log3, (c) => c.writeUInt16LE(1001, 12)), 'FIELD_OUT_OF_RANGE'],
    ['GET_LOG response: count larger than the payload', decodeGetLogResponse, ed(log3, (c) => c.writeUInt16LE(4, 12)), 'TRUNCATED'],
    ['GET_LOG response: count 1000, 3 events present', decodeGetLogResponse, ed(log3, (c) => c.writeUInt16LE(1000, 12)), 'TRUNCATED'],
    ['GET_LOG response: an event user id with a control character', decodeGetLogResponse, ed(log3, (c) => (c[16 + 48 + 13] = 0x1b)), 'INVALID_USER_ID'],
    ['GET_LOG response: an event user id with garbage after the terminator', decodeGetLogResponse, ed(log3, (c) => (c[16 + 12 + 31] = 0x31)), 'BAD_PADDING'],
    ['GET_LOG response of 15 bytes', decodeGetLogResponse, log3.subarray(0, 15), 'TRUNCATED'],
    ['SUBSCRIBE_LOG request with window 4097', decodeSubscribeRequest, ed(Buffer.alloc(8), (c) => c.writeUInt16LE(4097, 4)), 'FIELD_OUT_OF_RANGE'],
    ['SUBSCRIBE_LOG response of 11 bytes', decodeSubscribeResponse, Buffer.alloc(11), 'TRUNCATED'],
    ['LOG_EVENT with count 0', decodeLogEvent, ed(logEv, (c) => c.writeUInt16LE(0, 4)), 'FIELD_OUT_OF_RANGE'],
    ['LOG_EVENT: count larger than the payload', decodeLogEvent, ed(logEv, (c) => c.writeUInt16LE(3, 4)), 'TRUNCATED'],
    ['LOG_EVENT with trailing bytes', decodeLogEvent, cat(logEv, [0]), 'TRAILING_BYTES'],
    ['LOG_ACK of 5 bytes', decodeLogAck, Buffer.alloc(5), 'TRAILING_BYTES'],
    ['LOG_ACK of 3 bytes', decodeLogAck, Buffer.alloc(3), 'TRUNCATED'],
    ['LIST_USERS request with maxCount 0', decodeListUsersRequest, Buffer.alloc(36), 'FIELD_OUT_OF_RANGE'],
    ['LIST_USERS request with an afterUserId of invalid UTF-8', decodeListUsersRequest, ed(encodeListUsersRequest({ afterUserId: '', maxCount: 5 }), (c) => (c[0] = 0xc0)), 'INVALID_USER_ID'],
    ['LIST_USERS response with more = 2', decodeListUsersResponse, ed(list2, (c) => (c[6] = 2)), 'FIELD_OUT_OF_RANGE'],
    ['LIST_USERS response: count larger than the payload', decodeListUsersResponse, ed(list2, (c) => c.writeUInt16LE(3, 4)), 'TRUNCATED'],
    ['LIST_USERS response: an empty user id', decodeListUsersResponse, ed(list2, (c) => (c[8] = 0)), 'INVALID_USER_ID'],
    ['GET_USERS request with count 0', decodeGetUsersRequest, ed(get2, (c) => c.writeUInt16LE(0, 2)), 'FIELD_OUT_OF_RANGE'],
    ['GET_USERS request with count 1001', decodeGetUsersRequest, ed(get2, (c) => c.writeUInt16LE(1001, 2)), 'FIELD_OUT_OF_RANGE'],
    ['GET_USERS request: count larger than the payload', decodeGetUsersRequest, ed(get2, (c) => c.writeUInt16LE(3, 2)), 'TRUNCATED'],
    ['GET_USERS request with trailing bytes', decodeGetUsersRequest, cat(get2, [1]), 'TRAILING_BYTES'],
    ['GET_USERS request: a user id with a control character', decodeGetUsersRequest, ed(get2, (c) => (c[4 + 32] = 0x0a)), 'INVALID_USER_ID'],
    ['GET_USERS response: count larger than the payload', decodeGetUsersResponse, ed(getResp, (c) => c.writeUInt16LE(3, 0)), 'TRUNCATED'],
    ['GET_USERS response: record length 0xFFFFFFFF', decodeGetUsersResponse, ed(getResp, (c) => c.writeUInt32LE(0xffffffff, 8)), 'TRUNCATED'],
    ['GET_USERS response: a record shorter than a header', decodeGetUsersResponse, ed(getResp, (c) => c.writeUInt32LE(47, 8)), 'FIELD_OUT_OF_RANGE'],
    ['GET_USERS response: USER_NOT_FOUND with a record', decodeGetUsersResponse, ed(getResp, (c) => c.writeInt16LE(Status.USER_NOT_FOUND, 4)), 'FIELD_OUT_OF_RANGE'],
    ['GET_USERS response: a positive status', decodeGetUsersResponse, ed(getResp, (c) => c.writeInt16LE(5, 4 + 8 + 48)), 'FIELD_OUT_OF_RANGE'],
    ['GET_USERS response with trailing bytes', decodeGetUsersResponse, cat(getResp, [0, 0]), 'TRAILING_BYTES'],
    ['PUT_USERS request with overwrite 2', decodePutUsersRequest, ed(put, (c) => (c[0] = 2)), 'FIELD_OUT_OF_RANGE'],
    ['PUT_USERS request with count 0', decodePutUsersRequest, ed(put, (c) => c.writeUInt16LE(0, 2)), 'FIELD_OUT_OF_RANGE'],
    ['PUT_USERS request: count larger than the payload', decodePutUsersRequest, ed(put, (c) => c.writeUInt16LE(2, 2)), 'TRUNCATED'],
    ['PUT_USERS request: record length beyond the payload', decodePutUsersRequest, ed(put, (c) => c.writeUInt32LE(49, 4)), 'TRUNCATED'],
    ['PUT_USERS request with trailing bytes', decodePutUsersRequest, cat(put, [9]), 'TRAILING_BYTES'],
    ['status list with a positive status', decodeStatusList, Buffer.from('010000000100', 'hex'), 'FIELD_OUT_OF_RANGE'],
    ['status list: count larger than the payload', decodeStatusList, Buffer.from('0200000000', 'hex'), 'TRUNCATED'],
    ['DELETE_USERS request: count larger than the payload', decodeDeleteUsersRequest, ed(del, (c) => c.writeUInt16LE(2, 0)), 'TRUNCATED'],
    ['DELETE_USERS request with count 0', decodeDeleteUsersRequest, ed(del, (c) => c.writeUInt16LE(0, 0)), 'FIELD_OUT_OF_RANGE'],
    ['DELETE_USERS request: a user id of 32 bytes then garbage', decodeDeleteUsersRequest, cat(del, [0x41]), 'TRAILING_BYTES'],
    ['ERROR message of 257 bytes', (b) => decodeErrorPayload(b), Buffer.alloc(257, 0x41), 'FIELD_OUT_OF_RANGE'],
    ['ERROR message of invalid UTF-8', (b) => decodeErrorPayload(b), Buffer.from('ff', 'hex'), 'INVALID_UTF8'],
  ];
  it.each(cases)('%s', (_n, dec, bytes, code) => {
    const e = protocolError(() => dec(bytes));
    expect(e.code).toBe(code);
    expect(e.status).toBe(Status.BAD_PAYLOAD);
    expect(e.message).toMatch(/\w+/);
  });

  it('extensible layouts ignore extra trailing bytes (PROTOCOL.md 2.1)', () => {
    const more = (b: Buffer) => Buffer.concat([b, Buffer.from('00ff00ff', 'hex')]);
    expect(decodeHello(more(encodeHello(hello)))).toEqual(hello);
    expect(decodeInfo(more(encodeInfo(info)))).toEqual(info);
    expect(decodeGetLogRequest(more(encodeGetLogRequest({ afterId: 3, maxCount: 4 })))).toEqual({ afterId: 3, maxCount: 4 });
    expect(decodeGetLogResponse(more(log3)).events).toHaveLength(3);
    expect(decodeSubscribeRequest(more(encodeSubscribeRequest({ afterId: 3, window: 4 })))).toEqual({ afterId: 3, window: 4 });
    expect(decodeListUsersResponse(more(list2)).entries).toHaveLength(2);
  });

  it('every decoder rejects a non-Buffer with a typed error', () => {
    for (const dec of [decodeHello, decodeHelloResponse, decodeAuth, decodeInfo, decodeGetLogRequest, decodeGetLogResponse, decodeSubscribeRequest, decodeSubscribeResponse, decodeLogEvent, decodeLogAck, decodeListUsersRequest, decodeListUsersResponse, decodeGetUsersRequest, decodeGetUsersResponse, decodePutUsersRequest, decodeStatusList, decodeDeleteUsersRequest, decodeErrorPayload]) {
      expect(protocolError(() => dec(null as any)).code).toBe('BAD_PAYLOAD');
    }
  });
});

// ---------------------------------------------------------------- properties

const userIdArb = fc
  .oneof(
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 32 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
    fc.constantFrom('a, b', ' lead', 'trail ', '1001', 'é'.repeat(16)),
  )
  .filter((s) => userIdProblem(s) === null);
const textArb = (maxBytes: number) =>
  fc.string({ unit: fc.oneof(fc.constantFrom('a', ' ', 'é', '名', '😀', ','), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: maxBytes / 2 })
    .map((s) => s.replace(/\0/g, ''))
    .filter((s) => Buffer.byteLength(s) <= maxBytes);
const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u8 = fc.integer({ min: 0, max: 255 });

const userArb: fc.Arbitrary<UserRecord> = fc.record({
  id: userIdArb,
  flag: u8,
  version: fc.integer({ min: 0, max: 0xffff }),
  authGroupId: u32,
  setting: fc.record({ startTime: u32, endTime: u32, fingerAuthMode: u8, cardAuthMode: u8, idAuthMode: u8, securityLevel: fc.integer({ min: 0, max: 5 }) }),
  name: textArb(LIMITS.nameBytes),
  photo: bytesArb(0, 300),
  pinHash: fc.oneof(fc.constant(Buffer.alloc(0)), bytesArb(32, 32).filter((b) => b.some((x) => x !== 0))),
  cards: fc.array(fc.record({ type: fc.integer({ min: 1, max: 255 }), data: bytesArb(1, 32) }), { maxLength: 8 }),
  fingers: fc.array(fc.record({ index: fc.integer({ min: 0, max: 9 }), flag: u8, templates: fc.tuple(bytesArb(384, 384), bytesArb(384, 384)) }), { maxLength: 3 }),
  faces: fc.array(fc.record({ index: u8, flag: u8, data: bytesArb(1, 200) }), { maxLength: 5 }),
  accessGroups: fc.array(u32, { maxLength: 16 }),
  jobCodes: fc.array(fc.record({ code: u32, label: textArb(LIMITS.jobLabelBytes) }), { maxLength: 16 }),
  phrase: textArb(LIMITS.phraseBytes),
});

const eventArb: fc.Arbitrary<EventRecord> = fc.record({
  id: u32,
  dateTime: u32,
  deviceId: u32,
  userId: fc.oneof(fc.constant(''), userIdArb),
  code: fc.integer({ min: 0, max: 0xffff }),
  param: u8,
  flags: u8,
});

describe('properties (fast-check, fixed seeds)', () => {
  it('decodeUser(encodeUser(u, mask)) returns u with the parts outside mask vacant', () => {
    fc.assert(
      fc.property(userArb, fc.integer({ min: 0, max: 0xffff }), (u, mask) => {
        const d = decodeUser(encodeUser(u, mask));
        const parts = (mask & INFO_MASK_ALL_PARTS) | InfoMask.DATA;
        expect(d.infoMask).toBe(parts);
        expect(d.user).toEqual(vacate(u, parts));
        expect(decodeUser(encodeUser(u)).user).toEqual(u);
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it('decodeEvents(encodeEvents(es)) returns es, and equals the binary-parser reference', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 40 }), fc.nat({ max: 5 }), (es, pad) => {
        const buf = Buffer.concat([Buffer.alloc(pad, 0xee), encodeEvents(es)]);
        const fast = decodeEvents(buf, pad, es.length);
        expect(fast).toEqual(es);
        const ref = es.map((_, i) => eventRecordParser.parse(buf.subarray(pad + i * 48, pad + (i + 1) * 48)));
        expect(fast).toEqual(ref);
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('on arbitrary 48-byte records the fast decoder either equals the reference or throws a typed error', () => {
    const recordArb = fc.tuple(bytesArb(12, 12), fc.oneof(bytesArb(32, 32), userIdArb.map((s) => Buffer.concat([Buffer.from(s), Buffer.alloc(32 - Buffer.byteLength(s))]))), bytesArb(4, 4));
    fc.assert(
      fc.property(recordArb, ([head, id, tail]) => {
        const b = Buffer.concat([head, id, tail]);
        let fast: EventRecord | undefined;
        try {
          fast = decodeEvents(b, 0, 1)[0];
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
          return;
        }
        expect(fast).toEqual(eventRecordParser.parse(b));
      }),
      { numRuns: 2000, seed: 13 },
    );
  });

  it('user IDs that the JSON validator accepts are exactly the ones the codec accepts', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        let ok = true;
        try {
          encodeUser(emptyUser(s), InfoMask.DATA);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
          ok = false;
        }
        expect(ok).toBe(userIdProblem(s) === null && !/[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '')));
      }),
      { numRuns: 1000, seed: 17 },
    );
  });
});
