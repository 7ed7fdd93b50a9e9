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
import { describePayload, type Vector } from './json.js';

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

const files: Record<string, Vector[]> = {};

function add(file: string, name: string, kind: FrameKind, seq: number, command: number, status: number, payload: Buffer, extra: Partial<Vector> = {}): void {
  const hex = encodeFrame({ kind, seq, command, status, payload });
  const frames = new FrameDecoder().feed(hex);
  if (frames.length !== 1) throw new Error(`${name}: did not decode to one frame`);
  const f = frames[0];
  (files[file] ??= []).push({
    name,
    hex: hex.toString('hex'),
    frame: { kind, seq, command, status },
    payload: describePayload(f),
    ...extra,
  });
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

const dir = dirname(fileURLToPath(import.meta.url));
let total = 0;
for (const [name, vectors] of Object.entries(files)) {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(vectors, null, 2) + '\n');
  total += vectors.length;
}
process.stderr.write(`wrote ${total} vectors in ${Object.keys(files).length} files to ${dir}\n`);
