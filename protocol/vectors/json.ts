// The JSON form of decoded payloads used by the golden vectors (PROTOCOL.md
// section 9): byte strings are lower-case hex; everything else is as decoded.
// Shared by generate.ts and test/codec-vectors.test.ts.

/** Decoded value -> JSON: Buffers become lower-case hex, recursively. */
export function jsonify(v: unknown): any {
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (Array.isArray(v)) return v.map(jsonify);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonify(x);
    return o;
  }
  return v;
}

/** fields that hold a byte string */
const BYTE_FIELDS = new Set(['nonce', 'proof', 'digest', 'record', 'photo', 'pinHash', 'data']);
/** fields that hold an array of byte strings */
const BYTE_LIST_FIELDS = new Set(['templates', 'records']);

/** JSON -> value the encoders take: the inverse of jsonify for the codec's field names. */
export function hydrate(v: any): any {
  if (Array.isArray(v)) return v.map(hydrate);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (BYTE_FIELDS.has(k) && typeof x === 'string') o[k] = Buffer.from(x, 'hex');
      else if (BYTE_LIST_FIELDS.has(k) && Array.isArray(x)) o[k] = x.map((s) => (typeof s === 'string' ? Buffer.from(s, 'hex') : hydrate(s)));
      else o[k] = hydrate(x);
    }
    return o;
  }
  return v;
}

export interface Vector {
  name: string;
  hex: string;
  /** version: the frame's protocol version byte (1 = protocol 1.0 and every handshake frame, 2 = a protocol 1.1 session) */
  frame: { version: number; kind: number; seq: number; command: number; status: number };
  /** decoded payload fields; {} for an empty payload, { message } for ERROR frames */
  payload: any;
  /** handshake vectors: the comm key and device the proofs were computed with */
  auth?: { commKey: string; deviceId: number; nonceT: string; nonceS: string };
  /** what the vector shows, where the name alone does not say it */
  about?: string;
}

/** An input a receiver must refuse (protocol/vectors/malformed.json). */
export interface MalformedVector {
  name: string;
  /** a complete frame with sound framing (magic, version, kind, length, CRC) */
  hex: string;
  /** "payload": decoding the frame's payload fails; "record": the payload decodes, the first user record in it does not */
  where: 'payload' | 'record';
  /** the reference decoder's ProtocolError code */
  error: string;
  /** the status to answer or close with (PROTOCOL.md 2.1, 4.4) */
  status: number;
  about: string;
}

/** A payload longer than its layout, whose extension bytes a receiver ignores (protocol/vectors/extensions.json). */
export interface ExtensionVector {
  name: string;
  hex: string;
  frame: Vector['frame'];
  /** the payload as decoded: the extension bytes are not part of it */
  payload: any;
  /** the extension bytes at the end of the payload, hex */
  extension: string;
}

// ---------------------------------------------------------------- payload <-> JSON by command

import {
  Command,
  FrameKind,
  decodeFramePayload,
  decodeUser,
  encodeAuth,
  encodeDeleteUsersRequest,
  encodeErrorPayload,
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
  type Frame,
} from '../../src/codec/index.js';

const userJson = (record: Buffer) => {
  const d = decodeUser(record);
  return { infoMask: d.infoMask, user: jsonify(d.user) };
};

/** The JSON `payload` of a vector: the decoded payload, with user records also shown decoded. */
export function describePayload(f: Frame): any {
  const v = decodeFramePayload(f) as any;
  if (f.kind === FrameKind.ERROR) return { message: v };
  if (v === undefined) return {};
  const j = jsonify(v);
  if (f.kind === FrameKind.RESPONSE && f.command === Command.GET_USERS)
    j.results = v.results.map((r: { status: number; record: Buffer }) =>
      r.status === 0 ? { ...jsonify(r), ...userJson(r.record) } : jsonify(r),
    );
  if (f.kind === FrameKind.REQUEST && f.command === Command.PUT_USERS) j.users = v.records.map(userJson);
  return j;
}

/** Re-encodes a vector's payload from its JSON form. */
export function encodePayload(frame: Vector['frame'], json: any): Buffer {
  const p = hydrate(json);
  const { kind, command, status } = frame;
  if (kind === FrameKind.ERROR) return encodeErrorPayload(p.message);
  if (kind === FrameKind.RESPONSE && status !== 0) return Buffer.alloc(0);
  const key = `${kind}:${command}`;
  const R = FrameKind.REQUEST;
  const A = FrameKind.RESPONSE;
  const E = FrameKind.EVENT;
  const table: Record<string, () => Buffer> = {
    [`${R}:${Command.HELLO}`]: () => encodeHello(p),
    [`${A}:${Command.HELLO}`]: () => encodeHelloResponse(p),
    [`${R}:${Command.AUTH}`]: () => encodeAuth(p),
    [`${R}:${Command.GET_LOG}`]: () => encodeGetLogRequest(p),
    [`${A}:${Command.GET_LOG}`]: () => encodeGetLogResponse(p),
    [`${A}:${Command.GET_INFO}`]: () => encodeInfo(p),
    [`${R}:${Command.SUBSCRIBE_LOG}`]: () => encodeSubscribeRequest(p),
    [`${A}:${Command.SUBSCRIBE_LOG}`]: () => encodeSubscribeResponse(p),
    [`${E}:${Command.LOG_EVENT}`]: () => encodeLogEvent(p),
    [`${E}:${Command.LOG_ACK}`]: () => encodeLogAck(p),
    [`${R}:${Command.LIST_USERS}`]: () => encodeListUsersRequest(p),
    [`${A}:${Command.LIST_USERS}`]: () => encodeListUsersResponse(p),
    [`${R}:${Command.GET_USERS}`]: () => encodeGetUsersRequest(p),
    [`${A}:${Command.GET_USERS}`]: () => encodeGetUsersResponse(p),
    [`${R}:${Command.PUT_USERS}`]: () => encodePutUsersRequest({ overwrite: p.overwrite, records: p.records }),
    [`${A}:${Command.PUT_USERS}`]: () => encodeStatusList(p),
    [`${R}:${Command.DELETE_USERS}`]: () => encodeDeleteUsersRequest(p),
    [`${A}:${Command.DELETE_USERS}`]: () => encodeStatusList(p),
  };
  const enc = table[key];
  return enc ? enc() : Buffer.alloc(0); // the empty payloads: PING, BYE, GET_INFO request, AUTH response
}
