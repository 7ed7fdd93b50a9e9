// Codec rules PROTOCOL.md 1.1 made explicit: frame versions 1 and 2 (and a 1.0
// peer reading only 1), event IDs strictly ascending inside a GET_LOG page or a
// LOG_EVENT, and the comm-key file format (4.5).
import { describe, expect, it } from 'vitest';
import {
  Command,
  FrameDecoder,
  FrameKind,
  MAX_PROTOCOL_VERSION,
  PROTOCOL_1_0,
  PROTOCOL_1_1,
  Status,
  decodeGetLogResponse,
  decodeLogEvent,
  encodeFrame,
  encodeGetLogResponse,
  encodeLogEvent,
  isProtocolError,
  protocolVersionName,
  type EventRecord,
} from '../src/codec/index.js';
import { CommKeyError, parseCommKey } from '../src/sim/devkey.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (isProtocolError(e)) return e.code;
    throw e;
  }
  return undefined;
}

const ev = (id: number): EventRecord => ({ id, dateTime: 1_700_000_000, deviceId: 7, userId: `u${id}`, code: 0x2000, param: 1, flags: 0 });

describe('frame versions (PROTOCOL.md 3)', () => {
  const ping = (version: number) => encodeFrame({ version, kind: FrameKind.REQUEST, seq: 1, command: Command.PING });

  it('wire numbers 1 and 2 are protocols 1.0 and 1.1, and this code speaks both', () => {
    expect([PROTOCOL_1_0, PROTOCOL_1_1, MAX_PROTOCOL_VERSION]).toEqual([1, 2, 2]);
    expect([protocolVersionName(1), protocolVersionName(2)]).toEqual(['1.0', '1.1']);
    const d = new FrameDecoder();
    expect(d.feed(Buffer.concat([ping(1), ping(2)])).map((f) => f.version)).toEqual([1, 2]);
  });

  it('a decoder limited to 1.0 refuses a version-2 frame with BAD_VERSION (answered UNSUPPORTED_VERSION)', () => {
    const d = new FrameDecoder({ maxVersion: PROTOCOL_1_0 });
    expect(d.feed(ping(1))).toHaveLength(1);
    let err: unknown;
    try {
      d.feed(ping(2));
    } catch (e) {
      err = e;
    }
    expect(isProtocolError(err) && [err.code, err.status]).toEqual(['BAD_VERSION', Status.UNSUPPORTED_VERSION]);
    expect(() => new FrameDecoder({ maxVersion: 3 })).toThrow(RangeError);
    expect(() => new FrameDecoder({ maxVersion: 0 })).toThrow(RangeError);
  });
});

describe('event IDs strictly ascend inside one GET_LOG page or LOG_EVENT (PROTOCOL.md 5)', () => {
  it('encoders refuse IDs that go down or repeat', () => {
    expect(codeOf(() => encodeLogEvent({ logEpoch: 1, events: [ev(5), ev(4)] }))).toBe('EVENTS_NOT_ASCENDING');
    expect(codeOf(() => encodeLogEvent({ logEpoch: 1, events: [ev(5), ev(5)] }))).toBe('EVENTS_NOT_ASCENDING');
    expect(codeOf(() => encodeGetLogResponse({ logEpoch: 1, firstEventId: 1, lastEventId: 9, events: [ev(9), ev(2)] }))).toBe('EVENTS_NOT_ASCENDING');
    // gaps are fine (a ring that overwrote events)
    expect(decodeLogEvent(encodeLogEvent({ logEpoch: 1, events: [ev(5), ev(9)] })).events.map((e) => e.id)).toEqual([5, 9]);
  });

  it('decoders refuse them with BAD_PAYLOAD', () => {
    const le = encodeLogEvent({ logEpoch: 1, events: [ev(5), ev(6)] });
    le.writeUInt32LE(4, 8 + 48);
    expect(codeOf(() => decodeLogEvent(le))).toBe('EVENTS_NOT_ASCENDING');
    const page = encodeGetLogResponse({ logEpoch: 1, firstEventId: 1, lastEventId: 6, events: [ev(5), ev(6)] });
    page.writeUInt32LE(5, 16 + 48);
    expect(codeOf(() => decodeGetLogResponse(page))).toBe('EVENTS_NOT_ASCENDING');
    try {
      decodeLogEvent(le);
    } catch (e) {
      expect(isProtocolError(e) && e.status).toBe(Status.BAD_PAYLOAD);
    }
  });
});

describe('the comm-key file (PROTOCOL.md 4.5)', () => {
  const hex32 = '7465726d73796e6320676f6c64656e2d766563746f7220636f6d6d206b657921';
  const raw = Buffer.from('termsync golden-vector comm key!', 'ascii');

  it('hex (an even number, at least 32, of digits) and the raw bytes hold the same key', () => {
    expect(parseCommKey(Buffer.from(hex32))).toEqual(raw);
    expect(parseCommKey(Buffer.from(`  ${hex32.toUpperCase()}\r\n`))).toEqual(raw); // case and surrounding ASCII whitespace
    expect(parseCommKey(raw)).toEqual(raw);
    expect(parseCommKey(Buffer.from('00112233445566778899aabbccddeeff'))).toEqual(Buffer.from('00112233445566778899aabbccddeeff', 'hex')); // 16 bytes
  });

  it('anything else is raw bytes minus one line ending', () => {
    expect(parseCommKey(Buffer.concat([raw, Buffer.from('\n')]))).toEqual(raw);
    expect(parseCommKey(Buffer.concat([raw, Buffer.from('\r\n')]))).toEqual(raw);
    expect(parseCommKey(Buffer.concat([raw, Buffer.from('\n\n')]))).toEqual(Buffer.concat([raw, Buffer.from('\n')])); // only one
    expect(parseCommKey(Buffer.from(` ${'ab'.repeat(20)}x`))).toEqual(Buffer.from(` ${'ab'.repeat(20)}x`)); // not all hex: raw, untrimmed
    const nbsp = Buffer.concat([Buffer.from(hex32), Buffer.from([0xa0])]); // 0xA0 is not ASCII whitespace: raw
    expect(parseCommKey(nbsp)).toEqual(nbsp);
  });

  it('a key under 16 bytes, and hex with too few or an odd number of digits, are refused with a message saying so', () => {
    expect(() => parseCommKey(Buffer.from('short key'))).toThrow(CommKeyError);
    // 30 hex digits are a 15-byte hex key, not 30 raw bytes
    expect(() => parseCommKey(Buffer.from('00112233445566778899aabbccddee\n'))).toThrow(/at least 16 bytes \(32 hex digits\), got 30 hex digits/);
    expect(() => parseCommKey(Buffer.from('0'.repeat(33)))).toThrow(/odd number of digits \(33\)/);
  });
});

describe('reserved fields are ignored by receivers, padding is checked (PROTOCOL.md 2.2)', () => {
  it('non-zero reserved bytes decode as if they were 0', async () => {
    const c = await import('../src/codec/index.js');
    const info = c.encodeInfo({ deviceId: 9, userCount: 1, userCapacity: 10, logEpoch: 3, firstEventId: 1, lastEventId: 2, logCapacity: 100, time: 5, maxUsersPerBatch: 50, model: 'm', firmware: 'f' });
    const infoR = Buffer.from(info);
    infoR.writeUInt16LE(0xbeef, 34); // GET_INFO reserved
    expect(c.decodeInfo(infoR)).toEqual(c.decodeInfo(info));
    const hr = c.encodeHelloResponse({ version: 2, heartbeatSec: 30, nonce: Buffer.alloc(16, 1), proof: Buffer.alloc(32, 2) });
    const hrR = Buffer.from(hr);
    hrR[1] = 0x7f; // HELLO response reserved
    expect(c.decodeHelloResponse(hrR)).toEqual(c.decodeHelloResponse(hr));
    const u = c.encodeUser({ ...(await import('../src/model/user.js')).emptyUser('r1'), name: 'R' });
    const uR = Buffer.from(u);
    uR[43] = 0x55; // user header reserved
    expect(c.decodeUser(uR)).toEqual(c.decodeUser(u));
    const lu = c.encodeListUsersResponse({ total: 1, more: false, entries: [{ userId: 'r1', flag: 0, version: 1, digest: Buffer.alloc(12, 3) }] });
    const luR = Buffer.from(lu);
    luR[7] = 1; // head reserved
    luR[8 + 33] = 9; // entry reserved
    expect(c.decodeListUsersResponse(luR)).toEqual(c.decodeListUsersResponse(lu));
    const sub = c.encodeSubscribeRequest({ afterId: 4, window: 10 });
    const subR = Buffer.from(sub);
    subR.writeUInt16LE(0xffff, 6);
    expect(c.decodeSubscribeRequest(subR)).toEqual(c.decodeSubscribeRequest(sub));
  });

  it('padding after a char[N] text is checked', async () => {
    const c = await import('../src/codec/index.js');
    const u = c.encodeUser({ ...(await import('../src/model/user.js')).emptyUser('p1'), name: 'Pad' });
    const bad = Buffer.from(u);
    bad[48 + 12 + 10] = 0x41; // a byte after the name's NUL
    expect(codeOf(() => c.decodeUser(bad))).toBe('BAD_PADDING');
  });
});
