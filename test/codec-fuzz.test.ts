// Fuzz: >100,000 mutated frames (golden vectors with corrupted bytes, hostile
// lengths, truncations, re-checksummed payload corruption) fed to FrameDecoder
// and to the payload decoders. Every input must end in a frame, a typed
// ProtocolError, or a need-more-bytes state: never another exception, never a
// hang, and the decoder never holds more than header + maxPayload bytes.
// The PRNG seed is fixed so that a failure reproduces; a failure message names
// the iteration.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from './helpers/faults.js';
import {
  FrameDecoder,
  FrameKind,
  HEADER_SIZE,
  MAX_PAYLOAD,
  MAX_PREAUTH_PAYLOAD,
  ProtocolError,
  decodeAuth,
  decodeDeleteUsersRequest,
  decodeErrorPayload,
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
  decodeEvents,
  type Frame,
} from '../src/codec/index.js';

const SEED = 0x7e55c0de;
const MUTANTS = 100_000;


const dir = join(import.meta.dirname, '..', 'protocol', 'vectors');
const corpus: Buffer[] = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((f) => (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { hex: string }[]).map((v) => Buffer.from(v.hex, 'hex')));

const PAYLOAD_DECODERS: ((b: Buffer) => unknown)[] = [
  decodeHello, decodeHelloResponse, decodeAuth, decodeInfo, decodeGetLogRequest, decodeGetLogResponse, decodeSubscribeRequest,
  decodeSubscribeResponse, decodeLogEvent, decodeLogAck, decodeListUsersRequest, decodeListUsersResponse, decodeGetUsersRequest,
  decodeGetUsersResponse, decodePutUsersRequest, decodeStatusList, decodeDeleteUsersRequest, decodeErrorPayload, decodeUser,
  (b) => decodeEvents(b, 0, Math.floor(b.length / 48)),
];

const HOSTILE_U32 = [0, 1, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, MAX_PAYLOAD, MAX_PAYLOAD + 1, 257, 256, 48, 47];

function withCrc(frame: Buffer): Buffer {
  const len = Math.min(frame.readUInt32LE(12), frame.length - HEADER_SIZE);
  frame.writeUInt32LE(crc32(frame.subarray(HEADER_SIZE, HEADER_SIZE + len), crc32(frame.subarray(0, 16))), 16);
  return frame;
}

/** a payload mutation: the frame stays well-formed (length and CRC fixed) so the payload decoders see it */
function mutatePayload(r: ReturnType<typeof prng>, p: Buffer): Buffer {
  let b = Buffer.from(p);
  const ops = 1 + r.int(3);
  for (let k = 0; k < ops; k++) {
    switch (r.int(8)) {
      case 0: // flip bits
        if (b.length) b[r.int(b.length)] ^= 1 << r.int(8);
        break;
      case 1: // set a byte to an edge value
        if (b.length) b[r.int(b.length)] = r.pick([0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0xc3, 0x0a]);
        break;
      case 2: // a hostile u16 count or u32 length at a plausible offset
        if (b.length >= 4) {
          const off = r.int(b.length - 3);
          if (r.next() < 0.5) b.writeUInt16LE(r.pick(HOSTILE_U32) & 0xffff, off);
          else b.writeUInt32LE(r.pick(HOSTILE_U32), off);
        }
        break;
      case 3: // truncate
        b = b.subarray(0, r.int(b.length + 1));
        break;
      case 4: // append garbage
        b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + r.int(64) }, () => r.int(256)))]);
        break;
      case 5: // delete a slice
        if (b.length > 2) {
          const s = r.int(b.length - 1);
          b = Buffer.concat([b.subarray(0, s), b.subarray(s + 1 + r.int(Math.min(60, b.length - s - 1)))]);
        }
        break;
      case 6: // duplicate a slice (shifts later fields)
        if (b.length > 2) {
          const s = r.int(b.length - 1);
          const e = Math.min(b.length, s + 1 + r.int(100));
          b = Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)]);
        }
        break;
      default: // overwrite a run with random bytes
        if (b.length) {
          const s = r.int(b.length);
          for (let i = s; i < Math.min(b.length, s + 1 + r.int(40)); i++) b[i] = r.int(256);
        }
    }
  }
  return b;
}

function mutateFrame(r: ReturnType<typeof prng>, base: Buffer): Buffer {
  const kind = r.int(6);
  if (kind <= 1) {
    // payload corruption inside a well-formed frame
    const payload = mutatePayload(r, base.subarray(HEADER_SIZE));
    const f = Buffer.concat([base.subarray(0, HEADER_SIZE), payload]);
    f.writeUInt32LE(payload.length, 12);
    return withCrc(f);
  }
  const f = Buffer.from(base);
  if (kind === 2) {
    // raw byte corruption anywhere, CRC not fixed
    for (let n = 1 + r.int(4); n > 0; n--) f[r.int(f.length)] ^= 1 + r.int(255);
    return f;
  }
  if (kind === 3) {
    // hostile length, sometimes with a matching CRC
    f.writeUInt32LE(r.next() < 0.5 ? r.pick(HOSTILE_U32) : (f.readUInt32LE(12) + r.int(9) - 4) >>> 0, 12);
    return r.next() < 0.5 ? withCrc(f) : f;
  }
  if (kind === 4) {
    // header fields: version, kind, magic, status, seq (CRC fixed so the field check itself is hit)
    const field = r.int(4);
    if (field === 0) f[2] = r.int(256);
    else if (field === 1) f[3] = r.int(256);
    else if (field === 2) f[r.int(2)] = r.int(256);
    else f.writeInt16LE(r.int(65536) - 32768, 10);
    return withCrc(f);
  }
  // truncation
  return f.subarray(0, r.int(f.length));
}

interface Tally {
  frames: number;
  errors: Record<string, number>;
  needMore: number;
  payloadOk: number;
  payloadErrors: number;
  unexpected: string[];
}

function check(t: Tally, where: string, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof ProtocolError) {
      t.errors[e.code] = (t.errors[e.code] ?? 0) + 1;
      return false;
    }
    if (t.unexpected.length < 20) t.unexpected.push(`${where}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    return false;
  }
}

function decodePayloads(t: Tally, where: string, f: Frame): void {
  try {
    const v = decodeFramePayload(f) as any;
    t.payloadOk++;
    for (const rec of [...(v?.results ?? []).map((x: any) => x.record), ...(v?.records ?? [])] as Buffer[]) {
      if (rec.length) check(t, `${where} user record`, () => decodeUser(rec));
    }
  } catch (e) {
    if (e instanceof ProtocolError) t.payloadErrors++;
    else if (t.unexpected.length < 20) t.unexpected.push(`${where} payload: ${String(e)}`);
  }
}

describe('codec fuzz (seed 0x7e55c0de)', () => {
  // Hundreds of thousands of expected errors: skip capturing their stack traces (speed only).
  let traceLimit = Error.stackTraceLimit;
  beforeAll(() => {
    traceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
  });
  afterAll(() => {
    Error.stackTraceLimit = traceLimit;
  });

  it(`${MUTANTS} mutated frames end in a frame, a ProtocolError or need-more-bytes; nothing else`, () => {
    const r = prng(SEED);
    const t: Tally = { frames: 0, errors: {}, needMore: 0, payloadOk: 0, payloadErrors: 0, unexpected: [] };
    let maxBuffered = 0;
    let overLimit = 0;
    for (let i = 0; i < MUTANTS; i++) {
      const where = `mutant #${i}`;
      let input = mutateFrame(r, r.pick(corpus));
      if (r.next() < 0.1) input = Buffer.concat([input, mutateFrame(r, r.pick(corpus))]); // two in a row
      if (r.next() < 0.05) input = Buffer.concat([r.pick(corpus), input]); // after a valid frame
      const limit = r.next() < 0.25 ? MAX_PREAUTH_PAYLOAD : MAX_PAYLOAD;
      const d = new FrameDecoder({ maxPayload: limit });
      const frames: Frame[] = [];
      let failed = false;
      // deliver in 1..3 chunks
      const cuts = [0, ...Array.from({ length: r.int(3) }, () => r.int(input.length + 1)).sort((a, b) => a - b), input.length];
      for (let c = 0; c + 1 < cuts.length && !failed; c++) {
        failed = !check(t, where, () => frames.push(...d.feed(input.subarray(cuts[c], cuts[c + 1]))));
        maxBuffered = Math.max(maxBuffered, d.buffered);
        if (d.buffered > HEADER_SIZE + limit) overLimit++;
      }
      t.frames += frames.length;
      if (!failed && d.buffered > 0) {
        t.needMore++;
        // end() in the need-more state is a TRUNCATED ProtocolError
        check(t, `${where} end`, () => d.end());
      }
      for (const f of frames) decodePayloads(t, where, f);
      // every 8th mutant: its payload bytes go to every payload decoder as well
      if (i % 8 === 0 && input.length > HEADER_SIZE) {
        const payload = input.subarray(HEADER_SIZE);
        for (const dec of PAYLOAD_DECODERS) {
          try {
            dec(payload);
          } catch (e) {
            if (!(e instanceof ProtocolError) && t.unexpected.length < 20) t.unexpected.push(`${where} direct decoder ${dec.name}: ${String(e)}`);
          }
        }
      }
    }
    expect(t.unexpected).toEqual([]);
    expect(overLimit).toBe(0);
    expect(maxBuffered).toBeLessThanOrEqual(HEADER_SIZE + MAX_PAYLOAD);
    // the mutants really exercised every outcome
    expect(t.frames).toBeGreaterThan(10_000);
    expect(t.needMore).toBeGreaterThan(1_000);
    expect(t.payloadOk).toBeGreaterThan(1_000);
    expect(t.payloadErrors).toBeGreaterThan(1_000);
    for (const code of ['BAD_MAGIC', 'BAD_VERSION', 'BAD_KIND', 'BAD_CHECKSUM', 'FRAME_TOO_LARGE', 'TRUNCATED']) expect(t.errors[code] ?? 0, code).toBeGreaterThan(0);
  });

  it('random byte streams starting with a plausible header never escape as untyped errors', () => {
    const r = prng(SEED ^ 0x5a5a);
    const unexpected: string[] = [];
    for (let i = 0; i < 5_000; i++) {
      const d = new FrameDecoder({ maxPayload: r.next() < 0.5 ? MAX_PREAUTH_PAYLOAD : MAX_PAYLOAD });
      const head = Buffer.from([0x54, 0x53, 1, 1 + r.int(4)]);
      const body = Buffer.from(Array.from({ length: r.int(600) }, () => r.int(256)));
      const stream = Buffer.concat([head, body]);
      try {
        for (let p = 0; p < stream.length; ) {
          const n = 1 + r.int(50);
          d.feed(stream.subarray(p, p + n));
          p += n;
          expect(d.buffered).toBeLessThanOrEqual(HEADER_SIZE + d.limit);
        }
        d.end();
      } catch (e) {
        if (!(e instanceof ProtocolError)) unexpected.push(`stream #${i}: ${String(e)}`);
      }
    }
    expect(unexpected).toEqual([]);
  });

  it('a hostile length is refused from the 16th header byte, even when fed one byte at a time', () => {
    for (const len of [MAX_PAYLOAD + 1, 0x7fffffff, 0xffffffff]) {
      const f = Buffer.from(corpus[0]);
      f.writeUInt32LE(len, 12);
      const d = new FrameDecoder();
      let err: unknown;
      for (let i = 0; i < f.length && !err; i++) {
        try {
          d.feed(f.subarray(i, i + 1));
        } catch (e) {
          err = e;
          expect(i).toBe(15);
        }
      }
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe('FRAME_TOO_LARGE');
    }
  });

  it('a valid frame announcing the full 1 MiB is buffered only up to header + payload, in pieces', () => {
    const payload = Buffer.alloc(MAX_PAYLOAD, 1);
    const f = Buffer.concat([corpus[0].subarray(0, HEADER_SIZE), payload]);
    f.writeUInt32LE(MAX_PAYLOAD, 12);
    f[3] = FrameKind.REQUEST;
    withCrc(f);
    const d = new FrameDecoder();
    let frames = 0;
    for (let p = 0; p < f.length; p += 65536) {
      frames += d.feed(f.subarray(p, p + 65536)).length;
      expect(d.buffered).toBeLessThanOrEqual(HEADER_SIZE + MAX_PAYLOAD);
    }
    expect(frames).toBe(1);
    expect(d.buffered).toBe(0);
  });
});
