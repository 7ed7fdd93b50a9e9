// Generates the golden vectors of PROTOCOL.md section 9. Deterministic: fixed
// nonces, keys and pseudo-random bytes derived from SHA-256 of fixed seeds.
// Run: npx tsx protocol/vectors/generate.ts
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Command,
  EventCode,
  FrameDecoder,
  FrameKind,
  InfoMask,
  INFO_MASK_ANY,
  MAX_SUBSCRIBE_WINDOW,
  PROTOCOL_1_0,
  PROTOCOL_1_1,
  ProtocolError,
  decodeFramePayload,
  decodeUser,
  type Frame,
  ORIGIN_DEVICE,
  ORIGIN_SERVER,
  PROOF_LABEL_SERVER,
  PROOF_LABEL_TERMINAL,
  Status,
  UserFlag,
  computeProof,
  encodeAuth,
  encodeDeleteUsersRequest,
  encodeErrorPayload,
  encodeFrame,
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
  userDigest,
  type EventRecord,
  type UserRecord,
} from '../../src/codec/index.js';
import { emptyUser, hashPin } from '../../src/model/user.js';
import { describePayload, type ExtensionVector, type MalformedVector, type Vector } from './json.js';

/** deterministic bytes: SHA-256(seed ‖ counter) chained */
function bytes(seed: string, n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < n; i++) parts.push(createHash('sha256').update(`${seed}/${i}`).digest());
  return Buffer.concat(parts).subarray(0, n);
}

const DEVICE_ID = 538_000_123;
const COMM_KEY = Buffer.from('termsync golden-vector comm key!', 'ascii'); // 32 bytes
const NONCE_T = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const NONCE_S = Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f', 'hex');
const LOG_EPOCH = 0x5eed1234;
const HANDSHAKE = { commKey: COMM_KEY.toString('hex'), deviceId: DEVICE_ID, nonceT: NONCE_T.toString('hex'), nonceS: NONCE_S.toString('hex') };

// ---------------------------------------------------------------- sample data

const ana: UserRecord = {
  ...emptyUser('1001'),
  name: 'Ana Lima',
  authGroupId: 0,
  setting: { startTime: 1_700_000_000, endTime: 1_893_456_000, fingerAuthMode: 1, cardAuthMode: 2, idAuthMode: 0, securityLevel: 3 },
  pinHash: hashPin('4321'),
  cards: [
    { type: 0x01, data: Buffer.from('04a2249a6b5c80', 'hex') }, // CSN, 7-byte UID
    { type: 0x0a, data: Buffer.from('02a3c5f1', 'hex') }, // Wiegand 26-bit
  ],
  fingers: [
    { index: 1, flag: 0, templates: [bytes('ana/finger1/t0', 384), bytes('ana/finger1/t1', 384)] },
    { index: 6, flag: 0x01, templates: [bytes('ana/finger6/t0', 384), bytes('ana/finger6/t1', 384)] },
  ],
  accessGroups: [1, 7, 42],
  jobCodes: [{ code: 100, label: 'Day shift' }],
};

const zoe: UserRecord = {
  ...emptyUser('ext, contractor 7'), // spaces and commas are valid in user IDs
  flag: UserFlag.DISABLED,
  name: 'Zoë Müller',
  authGroupId: 5,
  photo: Buffer.concat([Buffer.from('ffd8ffe000104a464946', 'hex'), bytes('zoe/photo', 40), Buffer.from('ffd9', 'hex')]),
  cards: [{ type: 0x06, data: bytes('zoe/qr', 16) }],
  faces: [{ index: 0, flag: 0, data: bytes('zoe/face0', 24) }],
  accessGroups: [3],
  phrase: 'Welcome back',
};

/** Ana as a terminal holds her after an edit on the device */
const anaOnDevice: UserRecord = { ...ana, flag: UserFlag.CREATED_ON_DEVICE, version: 3, name: 'Ana P. Lima' };

const ev = (id: number, userId: string, code: number, param: number, flags = 0x08 /* UTC+1 */): EventRecord => ({
  id,
  dateTime: 1_700_000_000 + id * 7,
  deviceId: DEVICE_ID,
  userId,
  code,
  param,
  flags,
});

// ---------------------------------------------------------------- vectors

const files: Record<string, unknown[]> = {};

function decodeOne(hex: Buffer, name: string): Frame {
  const frames = new FrameDecoder().feed(hex);
  if (frames.length !== 1) throw new Error(`${name}: did not decode to one frame`);
  return frames[0];
}

/** Adds a vector; `extra.frameVersion` sets the frame's version byte (default 1). */
function add(
  file: string,
  name: string,
  kind: FrameKind,
  seq: number,
  command: number,
  status: number,
  payload: Buffer,
  extra: Partial<Vector> & { frameVersion?: number } = {},
): void {
  const { frameVersion = PROTOCOL_1_0, ...rest } = extra;
  const hex = encodeFrame({ version: frameVersion, kind, seq, command, status, payload });
  const f = decodeOne(hex, name);
  (files[file] ??= []).push({
    name,
    hex: hex.toString('hex'),
    frame: { version: frameVersion, kind, seq, command, status },
    payload: describePayload(f),
    ...rest,
  } satisfies Vector);
}

/** A frame of a protocol 1.1 session (frame version 2). */
function add11(name: string, kind: FrameKind, seq: number, command: number, status: number, payload: Buffer, extra: Partial<Vector> = {}): void {
  add('v1_1', name, kind, seq, command, status, payload, { ...extra, frameVersion: PROTOCOL_1_1 });
}

/** An input a receiver must refuse; checked here against the reference decoder. */
function malformed(name: string, kind: FrameKind, seq: number, command: number, status: number, payload: Buffer, where: 'payload' | 'record', about: string): void {
  const hex = encodeFrame({ version: PROTOCOL_1_1, kind, seq, command, status, payload });
  const f = decodeOne(hex, name);
  let err: unknown;
  try {
    const v = decodeFramePayload(f) as { results?: { record: Buffer }[]; records?: Buffer[] };
    if (where === 'record') decodeUser(v.results?.[0]?.record ?? v.records![0]);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ProtocolError)) throw new Error(`${name}: the reference decoder accepted it`);
  (files.malformed ??= []).push({ name, hex: hex.toString('hex'), where, error: err.code, status: err.status, about } satisfies MalformedVector);
}

/** A payload followed by extension bytes a receiver ignores (PROTOCOL.md 2.2). */
function extended(name: string, kind: FrameKind, seq: number, command: number, payload: Buffer, extension: Buffer): void {
  const hex = encodeFrame({ version: PROTOCOL_1_1, kind, seq, command, payload: Buffer.concat([payload, extension]) });
  const f = decodeOne(hex, name);
  (files.extensions ??= []).push({
    name,
    hex: hex.toString('hex'),
    frame: { version: PROTOCOL_1_1, kind, seq, command, status: 0 },
    payload: describePayload(f),
    extension: extension.toString('hex'),
  } satisfies ExtensionVector);
}
const { REQUEST, RESPONSE, EVENT, ERROR } = FrameKind;
const EMPTY = Buffer.alloc(0);

// handshake
add(
  'handshake',
  'HELLO request',
  REQUEST,
  1,
  Command.HELLO,
  0,
  encodeHello({
    deviceId: DEVICE_ID,
    minVersion: 1,
    maxVersion: 1,
    maxUsersPerBatch: 50,
    userCapacity: 50_000,
    logCapacity: 100_000,
    capabilities: 0x1 | 0x4,
    model: 'TS-2 Entry',
    firmware: '1.4.2',
    nonce: NONCE_T,
  }),
  { auth: HANDSHAKE },
);
add(
  'handshake',
  'HELLO response with proofS',
  RESPONSE,
  1,
  Command.HELLO,
  0,
  encodeHelloResponse({ version: 1, heartbeatSec: 30, nonce: NONCE_S, proof: computeProof(COMM_KEY, PROOF_LABEL_SERVER, NONCE_T, NONCE_S, DEVICE_ID) }),
  { auth: HANDSHAKE },
);
add('handshake', 'HELLO response UNSUPPORTED_VERSION', RESPONSE, 1, Command.HELLO, Status.UNSUPPORTED_VERSION, EMPTY);
add(
  'handshake',
  'AUTH request with proofT',
  REQUEST,
  2,
  Command.AUTH,
  0,
  encodeAuth({ proof: computeProof(COMM_KEY, PROOF_LABEL_TERMINAL, NONCE_S, NONCE_T, DEVICE_ID) }),
  { auth: HANDSHAKE },
);
add('handshake', 'AUTH response OK', RESPONSE, 2, Command.AUTH, 0, EMPTY);
add('handshake', 'AUTH response AUTH_FAILED', RESPONSE, 2, Command.AUTH, Status.AUTH_FAILED, EMPTY);

// session upkeep
add('session', 'PING request from the server', REQUEST, 9, Command.PING, 0, EMPTY);
add('session', 'PING response', RESPONSE, 9, Command.PING, 0, EMPTY);
add('session', 'BYE request', REQUEST, 10, Command.BYE, 0, EMPTY);
add('session', 'BYE response', RESPONSE, 10, Command.BYE, 0, EMPTY);

// GET_INFO
add('get_info', 'GET_INFO request', REQUEST, 1, Command.GET_INFO, 0, EMPTY);
add(
  'get_info',
  'GET_INFO response',
  RESPONSE,
  1,
  Command.GET_INFO,
  0,
  encodeInfo({
    deviceId: DEVICE_ID,
    userCount: 1234,
    userCapacity: 50_000,
    logEpoch: LOG_EPOCH,
    firstEventId: 1,
    lastEventId: 103,
    logCapacity: 100_000,
    time: 1_700_000_800,
    maxUsersPerBatch: 50,
    model: 'TS-2 Entry',
    firmware: '1.4.2',
  }),
);

// GET_LOG
add('get_log', 'GET_LOG request after 100', REQUEST, 2, Command.GET_LOG, 0, encodeGetLogRequest({ afterId: 100, maxCount: 500 }));
add(
  'get_log',
  'GET_LOG response with 3 events',
  RESPONSE,
  2,
  Command.GET_LOG,
  0,
  encodeGetLogResponse({
    logEpoch: LOG_EPOCH,
    firstEventId: 1,
    lastEventId: 103,
    events: [
      ev(101, '1001', EventCode.USER_ENROLL_SUCCESS, ORIGIN_DEVICE),
      ev(102, 'ext, contractor 7', EventCode.USER_UPDATE_SUCCESS, ORIGIN_SERVER),
      ev(103, '', EventCode.TCP_DISCONNECTED, 0, 0x00),
    ],
  }),
);
add('get_log', 'GET_LOG response, caught up (no events)', RESPONSE, 3, Command.GET_LOG, 0, encodeGetLogResponse({ logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 103, events: [] }));
add('get_log', 'GET_LOG response BUSY', RESPONSE, 4, Command.GET_LOG, Status.BUSY, EMPTY);

// realtime log
add('realtime_log', 'SUBSCRIBE_LOG request after 103, window 256', REQUEST, 5, Command.SUBSCRIBE_LOG, 0, encodeSubscribeRequest({ afterId: 103, window: 256 }));
add('realtime_log', 'SUBSCRIBE_LOG request, default window (0)', REQUEST, 6, Command.SUBSCRIBE_LOG, 0, encodeSubscribeRequest({ afterId: 0, window: 0 }));
add('realtime_log', 'SUBSCRIBE_LOG response', RESPONSE, 5, Command.SUBSCRIBE_LOG, 0, encodeSubscribeResponse({ logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 103 }));
add(
  'realtime_log',
  'LOG_EVENT with 3 events',
  EVENT,
  3,
  Command.LOG_EVENT,
  0,
  encodeLogEvent({
    logEpoch: LOG_EPOCH,
    events: [
      ev(104, 'Zoë', EventCode.USER_UPDATE_SUCCESS, ORIGIN_DEVICE),
      ev(105, '1002', EventCode.USER_ENROLL_FAIL | 0x03, ORIGIN_DEVICE),
      ev(106, '1002', EventCode.USER_DELETE_SUCCESS, ORIGIN_DEVICE, 0x80 | (5 << 3) | 0x04), // UTC-5:30
    ],
  }),
);
add('realtime_log', 'LOG_EVENT with 1 event', EVENT, 4, Command.LOG_EVENT, 0, encodeLogEvent({ logEpoch: LOG_EPOCH, events: [ev(107, '', EventCode.SYSTEM_STARTED, 0)] }));
add('realtime_log', 'LOG_ACK', EVENT, 7, Command.LOG_ACK, 0, encodeLogAck({ lastEventId: 106 }));

// LIST_USERS
add('list_users', 'LIST_USERS request from the beginning', REQUEST, 8, Command.LIST_USERS, 0, encodeListUsersRequest({ afterUserId: '', maxCount: 1000 }));
add('list_users', 'LIST_USERS request after "1001"', REQUEST, 9, Command.LIST_USERS, 0, encodeListUsersRequest({ afterUserId: '1001', maxCount: 2 }));
add(
  'list_users',
  'LIST_USERS response with 2 entries and more',
  RESPONSE,
  8,
  Command.LIST_USERS,
  0,
  encodeListUsersResponse({
    total: 3,
    more: true,
    entries: [
      { userId: '1001', flag: anaOnDevice.flag, version: anaOnDevice.version, digest: userDigest(anaOnDevice) },
      { userId: 'ext, contractor 7', flag: zoe.flag, version: zoe.version, digest: userDigest(zoe) },
    ],
  }),
);
add('list_users', 'LIST_USERS response, last page empty', RESPONSE, 9, Command.LIST_USERS, 0, encodeListUsersResponse({ total: 3, more: false, entries: [] }));

// GET_USERS
add('get_users', 'GET_USERS request for 2 users, all parts', REQUEST, 10, Command.GET_USERS, 0, encodeGetUsersRequest({ infoMask: INFO_MASK_ANY, userIds: ['1001', '1002'] }));
add(
  'get_users',
  'GET_USERS response: one found, one USER_NOT_FOUND',
  RESPONSE,
  10,
  Command.GET_USERS,
  0,
  encodeGetUsersResponse({ results: [{ status: 0, record: encodeUser(anaOnDevice) }, { status: Status.USER_NOT_FOUND, record: EMPTY }] }),
);
const partial = InfoMask.DATA | InfoMask.NAME | InfoMask.CARD;
add('get_users', 'GET_USERS request for name and cards', REQUEST, 11, Command.GET_USERS, 0, encodeGetUsersRequest({ infoMask: partial, userIds: ['ext, contractor 7'] }));
add('get_users', 'GET_USERS response with a partial record', RESPONSE, 11, Command.GET_USERS, 0, encodeGetUsersResponse({ results: [{ status: 0, record: encodeUser(zoe, partial) }] }));

// PUT_USERS
add('put_users', 'PUT_USERS request with 2 users (overwrite)', REQUEST, 12, Command.PUT_USERS, 0, encodePutUsersRequest({ overwrite: true, records: [encodeUser(ana), encodeUser(zoe)] }));
add('put_users', 'PUT_USERS response: OK and DUPLICATE_CARD', RESPONSE, 12, Command.PUT_USERS, 0, encodeStatusList({ statuses: [Status.OK, Status.DUPLICATE_CARD] }));
add('put_users', 'PUT_USERS response USER_FULL for the whole request', RESPONSE, 13, Command.PUT_USERS, Status.USER_FULL, EMPTY);

// DELETE_USERS
add('delete_users', 'DELETE_USERS request for 2 users', REQUEST, 14, Command.DELETE_USERS, 0, encodeDeleteUsersRequest({ userIds: ['1002', 'ext, contractor 7'] }));
add('delete_users', 'DELETE_USERS response: USER_NOT_FOUND and OK', RESPONSE, 14, Command.DELETE_USERS, 0, encodeStatusList({ statuses: [Status.USER_NOT_FOUND, Status.OK] }));

// ERROR frames
add('errors', 'ERROR UNKNOWN_COMMAND echoing the request', ERROR, 15, 0x0099, Status.UNKNOWN_COMMAND, encodeErrorPayload('unknown command 0x0099'));
add('errors', 'ERROR BAD_PAYLOAD', ERROR, 16, Command.GET_LOG, Status.BAD_PAYLOAD, encodeErrorPayload('GET_LOG request: getLog.maxCount: count 0, must be 1..1000'));
add('errors', 'ERROR BAD_FRAME before closing (seq and command unknown)', ERROR, 0, 0, Status.BAD_FRAME, encodeErrorPayload('frame magic is 0x4745, expected 0x5453 ("TS")'));
add('errors', 'ERROR FRAME_TOO_LARGE', ERROR, 0, 0, Status.FRAME_TOO_LARGE, encodeErrorPayload('frame length 300 exceeds the limit of 256 bytes'));
add('errors', 'ERROR NOT_AUTHENTICATED', ERROR, 1, Command.GET_INFO, Status.NOT_AUTHENTICATED, encodeErrorPayload(''));
add('errors', 'ERROR BUSY, empty message', ERROR, 20, Command.GET_USERS, Status.BUSY, EMPTY);

// ---------------------------------------------------------------- protocol 1.1 (frame version 2 after the handshake)

const helloV11 = {
  deviceId: DEVICE_ID,
  minVersion: PROTOCOL_1_0,
  maxVersion: PROTOCOL_1_1,
  maxUsersPerBatch: 50,
  userCapacity: 50_000,
  logCapacity: 100_000,
  capabilities: 0x1 | 0x4,
  model: 'TS-2 Entry',
  firmware: '1.5.0',
  nonce: NONCE_T,
};
add('v1_1', 'HELLO request from a 1.1 terminal (versions 1..2; frame version 1)', REQUEST, 1, Command.HELLO, 0, encodeHello(helloV11), { auth: HANDSHAKE });
add(
  'v1_1',
  'HELLO response from a 1.1 server choosing version 2 (frame version 1)',
  RESPONSE,
  1,
  Command.HELLO,
  0,
  encodeHelloResponse({ version: PROTOCOL_1_1, heartbeatSec: 30, nonce: NONCE_S, proof: computeProof(COMM_KEY, PROOF_LABEL_SERVER, NONCE_T, NONCE_S, DEVICE_ID) }),
  { auth: HANDSHAKE },
);
add(
  'v1_1',
  'HELLO response from a 1.0 server to a 1.1 terminal: version 1',
  RESPONSE,
  1,
  Command.HELLO,
  0,
  encodeHelloResponse({ version: PROTOCOL_1_0, heartbeatSec: 30, nonce: NONCE_S, proof: computeProof(COMM_KEY, PROOF_LABEL_SERVER, NONCE_T, NONCE_S, DEVICE_ID) }),
  { auth: HANDSHAKE, about: 'the same terminal then sends every later frame with version 1' },
);
add('v1_1', 'ERROR BAD_PAYLOAD refusing a HELLO with device ID 0 (frame version 1)', ERROR, 1, Command.HELLO, Status.BAD_PAYLOAD, encodeErrorPayload('hello.deviceId: must be non-zero'), {
  frameVersion: PROTOCOL_1_0,
  about: 'the server closes the connection after it',
});
add11('GET_INFO request in a 1.1 session (frame version 2)', REQUEST, 1, Command.GET_INFO, 0, EMPTY);
add11('PING request from the terminal (counts as traffic for the server heartbeat)', REQUEST, 3, Command.PING, 0, EMPTY);
add11('PING response from the server', RESPONSE, 3, Command.PING, 0, EMPTY);

// PUT_USERS and the flag byte: a record sent with CREATED|UPDATED|DISABLED and version 77 is stored with flag 0x80 and version 77
const zoeFromServer: UserRecord = { ...zoe, flag: UserFlag.DISABLED | UserFlag.CREATED_ON_DEVICE | UserFlag.UPDATED_ON_DEVICE, version: 77 };
add11('PUT_USERS request: a disabled user with flag 0x83 and version 77', REQUEST, 20, Command.PUT_USERS, 0, encodePutUsersRequest({ overwrite: true, records: [encodeUser(zoeFromServer)] }), {
  about: 'the terminal stores flag 0x80 (DISABLED kept, CREATED and UPDATED cleared) and version 77',
});
add11('PUT_USERS response OK', RESPONSE, 20, Command.PUT_USERS, 0, encodeStatusList({ statuses: [Status.OK] }));
const zoeStored: UserRecord = { ...zoe, flag: UserFlag.DISABLED, version: 77 };
add11('GET_USERS response: the user as stored after that PUT_USERS', RESPONSE, 21, Command.GET_USERS, 0, encodeGetUsersResponse({ results: [{ status: 0, record: encodeUser(zoeStored) }] }));
add11(
  'LIST_USERS response: the disabled user; the digest equals that of the same user enabled',
  RESPONSE,
  22,
  Command.LIST_USERS,
  0,
  encodeListUsersResponse({ total: 1, more: false, entries: [{ userId: zoeStored.id, flag: zoeStored.flag, version: zoeStored.version, digest: userDigest(zoeStored) }] }),
  { about: `the digest is computed with flag 0: ${userDigest({ ...zoeStored, flag: 0 }).toString('hex')} is the digest of the enabled user too; compare flag & 0x80 as well` },
);
if (!userDigest(zoeStored).equals(userDigest({ ...zoeStored, flag: 0 }))) throw new Error('digest must ignore the flag');

// whole-request failures and BUSY
add11('PUT_USERS response USER_FULL for the whole request (every record USER_FULL)', RESPONSE, 23, Command.PUT_USERS, Status.USER_FULL, EMPTY);
add11('GET_USERS response BUSY (a terminal sends BUSY as a RESPONSE; retry later)', RESPONSE, 24, Command.GET_USERS, Status.BUSY, EMPTY);
add11('ERROR BUSY naming the GET_USERS request (a server treats it as the RESPONSE above)', ERROR, 24, Command.GET_USERS, Status.BUSY, encodeErrorPayload('busy'));
add11('GET_USERS response TIMEOUT (-601; retry later)', RESPONSE, 25, Command.GET_USERS, Status.TIMEOUT, EMPTY);
add11('GET_USERS response FRAME_TOO_LARGE (ask for half as many users)', RESPONSE, 26, Command.GET_USERS, Status.FRAME_TOO_LARGE, EMPTY);
add11('DELETE_USERS response USER_NOT_FOUND for the whole request', RESPONSE, 27, Command.DELETE_USERS, Status.USER_NOT_FOUND, EMPTY);

// the realtime log: the largest window, and a log reset during the subscription
add11('SUBSCRIBE_LOG request with the largest window (4096)', REQUEST, 30, Command.SUBSCRIBE_LOG, 0, encodeSubscribeRequest({ afterId: 107, window: MAX_SUBSCRIBE_WINDOW }));
const NEW_EPOCH = 0x0badcafe;
add11(
  'LOG_EVENT after a log reset during the subscription: the new epoch, IDs from 1',
  EVENT,
  31,
  Command.LOG_EVENT,
  0,
  encodeLogEvent({ logEpoch: NEW_EPOCH, events: [ev(1, '', EventCode.FACTORY_RESET, 0), ev(2, '2001', EventCode.USER_ENROLL_SUCCESS, ORIGIN_DEVICE)] }),
  { about: 'sent only once every event of the old epoch was acknowledged; the server reconciles by LIST_USERS and goes on' },
);
add11('LOG_ACK of the new epoch', EVENT, 40, Command.LOG_ACK, 0, encodeLogAck({ lastEventId: 2 }));

// ---------------------------------------------------------------- inputs a receiver must refuse

malformed('GET_INFO response OK with an empty payload', RESPONSE, 1, Command.GET_INFO, 0, EMPTY, 'payload', 'a malformed answer: the server closes the session (an ERROR frame first is optional)');
{
  const h = encodeHello(helloV11);
  h.writeUInt32LE(0, 0);
  malformed('HELLO request with device ID 0', REQUEST, 1, Command.HELLO, 0, h, 'payload', 'the server answers ERROR BAD_PAYLOAD and closes');
  const h2 = encodeHello(helloV11);
  h2[4] = 2;
  h2[5] = 1;
  malformed('HELLO request with minVersion above maxVersion', REQUEST, 1, Command.HELLO, 0, h2, 'payload', 'the server answers ERROR BAD_PAYLOAD and closes');
}
{
  const up = encodeLogEvent({ logEpoch: LOG_EPOCH, events: [ev(108, '1001', EventCode.USER_UPDATE_SUCCESS, ORIGIN_DEVICE), ev(109, '1002', EventCode.USER_UPDATE_SUCCESS, ORIGIN_DEVICE)] });
  const down = Buffer.from(up);
  down.writeUInt32LE(107, 8 + 48); // the second event's ID goes below the first
  malformed('LOG_EVENT whose event IDs go down', EVENT, 5, Command.LOG_EVENT, 0, down, 'payload', 'within one epoch IDs strictly ascend; the server ends the session');
  const twice = Buffer.from(up);
  twice.writeUInt32LE(108, 8 + 48);
  malformed('LOG_EVENT with the same event ID twice', EVENT, 5, Command.LOG_EVENT, 0, twice, 'payload', 'within one epoch IDs strictly ascend; the server ends the session');
  const page = encodeGetLogResponse({ logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 109, events: [ev(108, '1001', EventCode.USER_UPDATE_SUCCESS, ORIGIN_DEVICE), ev(109, '', EventCode.SYSTEM_STARTED, 0)] });
  page.writeUInt32LE(100, 16 + 48);
  malformed('GET_LOG response whose event IDs go down', RESPONSE, 6, Command.GET_LOG, 0, page, 'payload', 'a malformed answer: the server closes the session');
}
{
  const sub = encodeSubscribeRequest({ afterId: 0, window: MAX_SUBSCRIBE_WINDOW });
  sub.writeUInt16LE(MAX_SUBSCRIBE_WINDOW + 1, 4);
  malformed('SUBSCRIBE_LOG request with window 4097', REQUEST, 7, Command.SUBSCRIBE_LOG, 0, sub, 'payload', 'the terminal answers ERROR BAD_PAYLOAD; the session continues');
}
malformed('LOG_ACK of 5 bytes', EVENT, 8, Command.LOG_ACK, 0, Buffer.from('6a00000000', 'hex'), 'payload', 'LOG_ACK is not extensible');
{
  const put = encodePutUsersRequest({ overwrite: true, records: [encodeUser(ana)] });
  malformed('PUT_USERS request with a trailing byte', REQUEST, 9, Command.PUT_USERS, 0, Buffer.concat([put, Buffer.from([0])]), 'payload', 'PUT_USERS is not extensible: ERROR BAD_PAYLOAD, the session continues');
}
{
  const rec = encodeUser(anaOnDevice);
  rec[32] = 2; // formatVersion 2: unknown to protocol 1.x
  malformed(
    'GET_USERS response whose record has formatVersion 2',
    RESPONSE,
    10,
    Command.GET_USERS,
    0,
    encodeGetUsersResponse({ results: [{ status: 0, record: rec }] }),
    'record',
    'the envelope is sound: this user cannot be pulled (a durable pull failure, USER_PULL_FAILED); the session goes on',
  );
  const card = encodeUser(ana);
  const cardStart = 48 + 12 + 192 + 4 + 32; // header, SETTING, NAME, PHOTO (size 0), PIN: the first card
  card[cardStart + 2 + 7] = 0xff; // a byte after the card's 7 data bytes
  malformed('PUT_USERS request whose record has non-zero card padding', REQUEST, 11, Command.PUT_USERS, 0, encodePutUsersRequest({ overwrite: true, records: [card] }), 'record', 'that record fails with INVALID_USER; the others are stored');
}
{
  const list = encodeListUsersResponse({ total: 0, more: false, entries: [] });
  list[6] = 2;
  malformed('LIST_USERS response with more = 2', RESPONSE, 12, Command.LIST_USERS, 0, list, 'payload', 'a malformed answer: the server closes the session');
}

// ---------------------------------------------------------------- extension bytes a receiver ignores

const EXT = Buffer.from('e1e2e3e4', 'hex');
extended('HELLO request with 4 extension bytes', REQUEST, 1, Command.HELLO, encodeHello(helloV11), EXT);
extended(
  'GET_INFO response with 4 extension bytes',
  RESPONSE,
  2,
  Command.GET_INFO,
  encodeInfo({ deviceId: DEVICE_ID, userCount: 1, userCapacity: 50_000, logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 2, logCapacity: 100_000, time: 1_700_000_900, maxUsersPerBatch: 50, model: 'TS-2 Entry', firmware: '1.5.0' }),
  EXT,
);
extended(
  'GET_LOG response with extension bytes after its event records',
  RESPONSE,
  3,
  Command.GET_LOG,
  encodeGetLogResponse({ logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 101, events: [ev(101, '1001', EventCode.USER_ENROLL_SUCCESS, ORIGIN_DEVICE)] }),
  EXT,
);
extended(
  'LIST_USERS response with extension bytes after its entries',
  RESPONSE,
  4,
  Command.LIST_USERS,
  encodeListUsersResponse({ total: 1, more: false, entries: [{ userId: '1001', flag: 0, version: 3, digest: userDigest(ana) }] }),
  EXT,
);
extended('SUBSCRIBE_LOG response with extension bytes', RESPONSE, 5, Command.SUBSCRIBE_LOG, encodeSubscribeResponse({ logEpoch: LOG_EPOCH, firstEventId: 1, lastEventId: 101 }), EXT);

const dir = dirname(fileURLToPath(import.meta.url));
let total = 0;
for (const [name, vectors] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(vectors, null, 2) + '\n');
  total += vectors.length;
}
process.stderr.write(`wrote ${total} vectors in ${Object.keys(files).length} files to ${dir}\n`);
