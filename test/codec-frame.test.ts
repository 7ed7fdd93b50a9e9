// FrameDecoder / encodeFrame: header layout, CRC, splitting, limits, poisoning.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import {
  Command,
  FrameDecoder,
  FrameKind,
  HEADER_SIZE,
  MAX_PAYLOAD,
  MAX_PREAUTH_PAYLOAD,
  ProtocolError,
  Status,
  encodeFrame,
  encodeFrameParts,
  encodePutUsersParts,
  encodePutUsersPrefixed,
  encodePutUsersRequest,
  prefixPutUsersRecord,
  type Frame,
} from '../src/codec/index.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** the error a call throws (fails the test if it throws nothing or something untyped) */
function protocolError(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a ProtocolError, nothing was thrown');
}

function frame(overrides: Partial<Parameters<typeof encodeFrame>[0]> = {}): Buffer {
  return encodeFrame({ kind: FrameKind.REQUEST, seq: 7, command: Command.GET_LOG, payload: Buffer.from('0102030405060708', 'hex'), ...overrides });
}

/** rewrites the CRC after a header edit so that only the edited field is wrong */
function fixCrc(b: Buffer): Buffer {
  const len = b.readUInt32LE(12);
  const c = crc32(b.subarray(HEADER_SIZE, HEADER_SIZE + len), crc32(b.subarray(0, 16)));
  b.writeUInt32LE(c, 16);
  return b;
}

describe('encodeFrame', () => {
  it('lays out the 20-byte header little-endian with the CRC over header bytes 0..15 and the payload', () => {
    const f = encodeFrame({ kind: FrameKind.RESPONSE, seq: 0x01020304, command: Command.GET_USERS, status: Status.USER_NOT_FOUND, payload: hex('aabbcc') });
    expect(f.subarray(0, 16).toString('hex')).toBe('5453' + '01' + '02' + '04030201' + '3100' + '36fd' + '03000000');
    expect(f.readUInt32LE(16)).toBe(crc32(Buffer.concat([f.subarray(0, 16), hex('aabbcc')])));
    expect(f.subarray(20).toString('hex')).toBe('aabbcc');
  });

  it('uses CRC-32/ISO-HDLC (check value of "123456789" is 0xCBF43926)', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    // a PING with an empty payload, checked against an independent implementation (Python zlib.crc32)
    expect(encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.PING }).toString('hex')).toBe('545301010100000003000000000000008232843a');
  });

  it.each([
    ['status in a request', { kind: FrameKind.REQUEST, status: -1 }, 'FIELD_OUT_OF_RANGE'],
    ['positive status', { kind: FrameKind.RESPONSE, status: 3 }, 'FIELD_OUT_OF_RANGE'],
    ['status beyond i16', { kind: FrameKind.ERROR, status: -40000 }, 'FIELD_OUT_OF_RANGE'],
    ['seq beyond u32', { seq: 2 ** 32 }, 'FIELD_OUT_OF_RANGE'],
    ['negative seq', { seq: -1 }, 'FIELD_OUT_OF_RANGE'],
    ['command beyond u16', { command: 0x10000 }, 'FIELD_OUT_OF_RANGE'],
    ['kind 0', { kind: 0 as FrameKind }, 'BAD_KIND'],
    ['kind 5', { kind: 5 as FrameKind }, 'BAD_KIND'],
    ['payload above 1 MiB', { payload: Buffer.alloc(MAX_PAYLOAD + 1) }, 'FRAME_TOO_LARGE'],
  ] as const)('refuses to encode a frame with %s', (_n, o, code) => {
    expect(protocolError(() => frame(o as any)).code).toBe(code);
  });
});

describe('FrameDecoder', () => {
  it('decodes a frame and copies its payload (later changes to the input do not leak in)', () => {
    const input = frame();
    const d = new FrameDecoder();
    const [f] = d.feed(input);
    input.fill(0);
    expect(f).toEqual({ version: 1, kind: FrameKind.REQUEST, seq: 7, command: Command.GET_LOG, status: 0, payload: hex('0102030405060708') });
    expect(f.payload.length).toBe(8);
    expect(d.buffered).toBe(0);
  });

  it('reads a negative status as i16', () => {
    const [f] = new FrameDecoder().feed(encodeFrame({ kind: FrameKind.ERROR, seq: 0, command: 0, status: Status.INVALID_USER }));
    expect(f.status).toBe(-720);
  });

  it('emits every frame in a chunk, and keeps a partial frame until the rest arrives', () => {
    const a = frame({ seq: 1 });
    const b = frame({ seq: 2, payload: Buffer.alloc(300, 7) });
    const c = frame({ seq: 3, payload: Buffer.alloc(0) });
    const all = Buffer.concat([a, b, c]);
    const d = new FrameDecoder();
    const first = d.feed(all.subarray(0, a.length + 50));
    expect(first.map((f) => f.seq)).toEqual([1]);
    expect(d.buffered).toBe(50);
    const rest = d.feed(all.subarray(a.length + 50));
    expect(rest.map((f) => f.seq)).toEqual([2, 3]);
    expect(rest[0].payload).toEqual(Buffer.alloc(300, 7));
    expect(d.buffered).toBe(0);
    d.end();
  });

  it('decodes the same frames whatever the split, including byte by byte', () => {
    const all = Buffer.concat([frame({ seq: 1 }), frame({ seq: 2, payload: Buffer.alloc(0) }), frame({ seq: 3, payload: Buffer.alloc(100, 1) })]);
    for (let i = 0; i <= all.length; i++) {
      for (const j of [i, Math.min(all.length, i + 1), Math.min(all.length, i + 21), all.length]) {
        const d = new FrameDecoder();
        const got = [...d.feed(all.subarray(0, i)), ...d.feed(all.subarray(i, j)), ...d.feed(all.subarray(j))];
        expect(got.map((f) => f.seq)).toEqual([1, 2, 3]);
      }
    }
    const d = new FrameDecoder();
    const got: Frame[] = [];
    for (const byte of all) got.push(...d.feed(Buffer.from([byte])));
    expect(got.map((f) => f.payload.length)).toEqual([8, 0, 100]);
  });

  it('accepts a payload of exactly the limit (1 MiB) and exactly the pre-auth limit', () => {
    const big = encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.PUT_USERS, payload: Buffer.alloc(MAX_PAYLOAD, 0xab) });
    const d = new FrameDecoder();
    expect(d.feed(big.subarray(0, 1000))).toEqual([]);
    const [f] = d.feed(big.subarray(1000));
    expect(f.payload.length).toBe(MAX_PAYLOAD);
    const pre = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD });
    expect(pre.feed(frame({ payload: Buffer.alloc(256) }))).toHaveLength(1);
  });

  describe('malformed input: each case with the exact error', () => {
    const cases: [string, () => Buffer, string, number?][] = [
      ['bad magic', () => Object.assign(frame(), { 0: 0x47 }), 'BAD_MAGIC'],
      ['bad second magic byte', () => Object.assign(frame(), { 1: 0x00 }), 'BAD_MAGIC'],
      ['version 3 (newer than protocol 1.1)', () => fixCrc(Object.assign(frame(), { 2: 3 })), 'BAD_VERSION'],
      ['version 0', () => fixCrc(Object.assign(frame(), { 2: 0 })), 'BAD_VERSION'],
      ['kind 0', () => fixCrc(Object.assign(frame(), { 3: 0 })), 'BAD_KIND'],
      ['kind 5', () => fixCrc(Object.assign(frame(), { 3: 5 })), 'BAD_KIND'],
      ['length 0xFFFFFFFF', () => frame().fill(0xff, 12, 16), 'FRAME_TOO_LARGE'],
      ['length one above 1 MiB', () => { const b = frame(); b.writeUInt32LE(MAX_PAYLOAD + 1, 12); return b; }, 'FRAME_TOO_LARGE'],
      ['length 257 before authentication', () => frame({ payload: Buffer.alloc(257) }), 'FRAME_TOO_LARGE', MAX_PREAUTH_PAYLOAD],
      ['wrong CRC', () => { const b = frame(); b[19] ^= 0x01; return b; }, 'BAD_CHECKSUM'],
      ['a corrupted payload byte', () => { const b = frame(); b[22] ^= 0x80; return b; }, 'BAD_CHECKSUM'],
      ['a corrupted seq (header covered by the CRC)', () => { const b = frame(); b[5] ^= 0x10; return b; }, 'BAD_CHECKSUM'],
    ];
    it.each(cases)('%s', (_name, make, code, limit) => {
      const d = new FrameDecoder(limit === undefined ? {} : { maxPayload: limit });
      const err = protocolError(() => d.feed(make()));
      expect(err.code).toBe(code);
      expect(err.message.length).toBeGreaterThan(10);
      // poisoned: a valid frame afterwards still throws the same error
      expect(() => d.feed(frame())).toThrow(err);
      expect(d.error).toBe(err);
      expect(d.buffered).toBe(0);
    });

    it('maps framing errors to the status to answer with', () => {
      const status = (b: Buffer) => protocolError(() => new FrameDecoder().feed(b)).status;
      expect(status(Object.assign(frame(), { 0: 0 }))).toBe(Status.BAD_FRAME);
      expect(status(fixCrc(Object.assign(frame(), { 2: 9 })))).toBe(Status.UNSUPPORTED_VERSION);
      expect(status(frame().fill(0xff, 12, 16))).toBe(Status.FRAME_TOO_LARGE);
      expect(status(Object.assign(frame(), { 19: 0 }))).toBe(Status.BAD_CHECKSUM);
    });

    it('rejects bad magic / version / kind as soon as those bytes arrive', () => {
      expect(protocolError(() => new FrameDecoder().feed(hex('47'))).code).toBe('BAD_MAGIC');
      expect(protocolError(() => new FrameDecoder().feed(hex('545303'))).code).toBe('BAD_VERSION');
      expect(protocolError(() => new FrameDecoder().feed(hex('54530109'))).code).toBe('BAD_KIND');
    });

    it('rejects an oversized length from the header alone, without buffering the payload', () => {
      const d = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD });
      const b = frame({ payload: Buffer.alloc(5000) });
      expect(d.feed(b.subarray(0, 12))).toEqual([]);
      expect(d.buffered).toBe(12);
      expect(protocolError(() => d.feed(b.subarray(12, 16))).code).toBe('FRAME_TOO_LARGE');
      expect(d.buffered).toBe(0);
    });

    it('end() inside a frame is TRUNCATED; end() between frames is fine', () => {
      const b = frame();
      for (const cut of [1, 10, 19, 20, b.length - 1]) {
        const d = new FrameDecoder();
        d.feed(b.subarray(0, cut));
        expect(d.buffered).toBe(cut);
        const e = protocolError(() => d.end());
        expect(e.code).toBe('TRUNCATED');
      }
      const d = new FrameDecoder();
      d.feed(b);
      expect(() => d.end()).not.toThrow();
    });
  });

  describe('payload limit', () => {
    it('setMaxPayload lowers and raises the limit for frames whose header has not been checked yet', () => {
      const d = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD });
      expect(d.limit).toBe(256);
      d.setMaxPayload(MAX_PAYLOAD);
      expect(d.feed(frame({ payload: Buffer.alloc(4000) }))).toHaveLength(1);
      expect(() => d.setMaxPayload(MAX_PAYLOAD + 1)).toThrow(RangeError);
    });

    it('re-checks a pending partial frame when the limit is lowered', () => {
      const d = new FrameDecoder();
      const b = frame({ payload: Buffer.alloc(1000) });
      d.feed(b.subarray(0, 100));
      d.setMaxPayload(MAX_PREAUTH_PAYLOAD);
      expect(protocolError(() => d.feed(b.subarray(100))).code).toBe('FRAME_TOO_LARGE');
    });

    it('feedEach lets the caller raise the limit between two frames of one chunk (after the AUTH response)', () => {
      const auth = encodeFrame({ kind: FrameKind.RESPONSE, seq: 2, command: Command.AUTH });
      const put = encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.PUT_USERS, payload: Buffer.alloc(3000) });
      const d = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD });
      const seen: number[] = [];
      d.feedEach(Buffer.concat([auth, put]), (f) => {
        seen.push(f.command);
        if (f.command === Command.AUTH) d.setMaxPayload(MAX_PAYLOAD);
      });
      expect(seen).toEqual([Command.AUTH, Command.PUT_USERS]);
      // with feed() the whole chunk is checked against the pre-auth limit
      expect(protocolError(() => new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD }).feed(Buffer.concat([auth, put]))).code).toBe('FRAME_TOO_LARGE');
    });

    it('a throwing feedEach callback poisons the decoder (the rest of the chunk is lost)', () => {
      const d = new FrameDecoder();
      const boom = new Error('handler failed');
      expect(() => d.feedEach(Buffer.concat([frame({ seq: 1 }), frame({ seq: 2 })]), () => { throw boom; })).toThrow(boom);
      expect(protocolError(() => d.feed(frame())).code).toBe('ABORTED');
    });

    it('feedEach hands over the frames before a bad one', () => {
      const d = new FrameDecoder();
      const seen: number[] = [];
      const bad = frame({ seq: 3 });
      bad[0] = 0;
      expect(() => d.feedEach(Buffer.concat([frame({ seq: 1 }), frame({ seq: 2 }), bad]), (f) => seen.push(f.seq))).toThrow(ProtocolError);
      expect(seen).toEqual([1, 2]);
    });
  });

  describe('properties (fast-check)', () => {
    const frameArb = fc.record({
      kind: fc.constantFrom(FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.EVENT, FrameKind.ERROR),
      seq: fc.integer({ min: 0, max: 0xffffffff }),
      command: fc.integer({ min: 0, max: 0xffff }),
      status: fc.integer({ min: -0x8000, max: 0 }),
      payload: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
    }).map((f) => (f.kind === FrameKind.REQUEST || f.kind === FrameKind.EVENT ? { ...f, status: 0 } : f));

    it('decode(encode(frames)) returns the frames, whatever the chunking', () => {
      fc.assert(
        fc.property(fc.array(frameArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (frames, cuts) => {
          const wire = Buffer.concat(frames.map((f) => encodeFrame(f)));
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
          const d = new FrameDecoder();
          const got: Frame[] = [];
          let prev = 0;
          for (const p of [...points, wire.length]) {
            got.push(...d.feed(wire.subarray(prev, p)));
            prev = p;
          }
          d.end();
          expect(got).toEqual(frames.map((f) => ({ version: 1, ...f })));
        }),
        { numRuns: 300, seed: 42 },
      );
    });
  });
});

describe('encodeFrameParts', () => {
  it('writes exactly the bytes of encodeFrame over the joined parts, and decodes to the same frame', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 12 }), fc.integer({ min: 0, max: 0xffffffff }), (arrays, seq) => {
        const parts = arrays.map((a) => Buffer.from(a));
        const head = { kind: FrameKind.REQUEST, seq, command: Command.PUT_USERS };
        const joined = Buffer.concat(encodeFrameParts(head, parts));
        expect(joined).toEqual(encodeFrame({ ...head, payload: Buffer.concat(parts) }));
        const frames: Frame[] = [];
        new FrameDecoder().feedEach(joined, (f) => frames.push(f));
        expect(frames).toHaveLength(1);
        expect(frames[0].payload).toEqual(Buffer.concat(parts));
      }),
    );
  });

  it('a PUT_USERS in parts is the same request as the one copied into one payload', () => {
    const recs = [Buffer.alloc(80, 1), Buffer.alloc(120, 2)];
    const parts = encodePutUsersParts({ overwrite: true, records: recs });
    expect(Buffer.concat(parts)).toEqual(encodePutUsersRequest({ overwrite: true, records: recs }));
    // the records go as they are: no copy
    expect(parts.filter((p) => recs.some((r) => r === p))).toHaveLength(2);
  });
});

describe('PUT_USERS from prefixed records', () => {
  it('is byte for byte the request encodePutUsersRequest makes', () => {
    const recs = [Buffer.alloc(80, 1), Buffer.alloc(120, 2), Buffer.alloc(64, 3)];
    const parts = encodePutUsersPrefixed(true, recs.map(prefixPutUsersRecord));
    expect(Buffer.concat(parts)).toEqual(encodePutUsersRequest({ overwrite: true, records: recs }));
    expect(() => encodePutUsersPrefixed(true, [])).toThrow(ProtocolError);
    expect(() => prefixPutUsersRecord(Buffer.alloc(3))).toThrow(ProtocolError);
  });
});
