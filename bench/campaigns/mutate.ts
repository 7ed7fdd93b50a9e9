// Hostile frames for the hostile-frames campaign: golden vectors from
// protocol/vectors mutated (payload bytes with the length and CRC fixed so the
// payload decoders see them, raw corruption, hostile lengths, header fields,
// truncations), random bytes of random length, and valid frames for floods.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Command, FrameKind, HEADER_SIZE, MAX_PAYLOAD, encodeFrame } from '../../src/codec/index.js';

export type Rng = { next(): number; int(n: number): number; pick<T>(xs: readonly T[]): T };

const VECTORS = join(import.meta.dirname, '..', '..', 'protocol', 'vectors');

/** Every frame of the golden vectors (the malformed ones too). */
export function loadVectors(): Buffer[] {
  return readdirSync(VECTORS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .flatMap((f) => (JSON.parse(readFileSync(join(VECTORS, f), 'utf8')) as { hex?: string }[]).filter((v) => typeof v.hex === 'string').map((v) => Buffer.from(v.hex!, 'hex')))
    .filter((b) => b.length >= HEADER_SIZE);
}

const HOSTILE_U32 = [0, 1, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, MAX_PAYLOAD, MAX_PAYLOAD + 1, 257, 256, 48, 47];

/** Sets the header's CRC over the header and as much payload as the length field claims and the buffer holds. */
export function fixCrc(f: Buffer): Buffer {
  if (f.length < HEADER_SIZE) return f;
  const len = Math.min(f.readUInt32LE(12), f.length - HEADER_SIZE);
  f.writeUInt32LE(crc32(f.subarray(HEADER_SIZE, HEADER_SIZE + len), crc32(f.subarray(0, 16))), 16);
  return f;
}

function mutatePayload(r: Rng, p: Buffer): Buffer {
  let b = Buffer.from(p);
  for (let k = 1 + r.int(3); k > 0; k--) {
    switch (r.int(7)) {
      case 0:
        if (b.length) b[r.int(b.length)] ^= 1 << r.int(8);
        break;
      case 1:
        if (b.length) b[r.int(b.length)] = r.pick([0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0xc3, 0x0a]);
        break;
      case 2:
        if (b.length >= 4) {
          const off = r.int(b.length - 3);
          if (r.next() < 0.5) b.writeUInt16LE(r.pick(HOSTILE_U32) & 0xffff, off);
          else b.writeUInt32LE(r.pick(HOSTILE_U32), off);
        }
        break;
      case 3:
        b = b.subarray(0, r.int(b.length + 1));
        break;
      case 4:
        b = Buffer.concat([b, randomBytes(r, 1 + r.int(64))]);
        break;
      case 5:
        if (b.length > 2) {
          const s = r.int(b.length - 1);
          const e = Math.min(b.length, s + 1 + r.int(100));
          b = Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)]);
        }
        break;
      default:
        if (b.length) {
          const s = r.int(b.length);
          for (let i = s; i < Math.min(b.length, s + 1 + r.int(40)); i++) b[i] = r.int(256);
        }
    }
  }
  return b;
}

export function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

export type MutationKind = 'payload' | 'corrupt' | 'length' | 'header' | 'truncate' | 'random' | 'seq';

/** One hostile frame made from a vector; `seq`: the sequence number to give request frames (so they look current). */
export function mutate(r: Rng, base: Buffer, seq?: number): { kind: MutationKind; bytes: Buffer } {
  const n = r.int(14);
  if (n <= 4) {
    const payload = mutatePayload(r, base.subarray(HEADER_SIZE));
    const f = Buffer.concat([base.subarray(0, HEADER_SIZE), payload]);
    f.writeUInt32LE(payload.length, 12);
    if (seq !== undefined) f.writeUInt32LE(seq, 4);
    return { kind: 'payload', bytes: fixCrc(f) };
  }
  const f = Buffer.from(base);
  if (seq !== undefined) {
    f.writeUInt32LE(seq, 4);
    fixCrc(f);
  }
  if (n <= 6) {
    for (let k = 1 + r.int(4); k > 0; k--) f[r.int(f.length)] ^= 1 + r.int(255);
    return { kind: 'corrupt', bytes: f };
  }
  if (n === 7) {
    f.writeUInt32LE(r.next() < 0.5 ? r.pick(HOSTILE_U32) : (f.readUInt32LE(12) + r.int(9) - 4) >>> 0, 12);
    return { kind: 'length', bytes: r.next() < 0.5 ? fixCrc(f) : f };
  }
  if (n === 8) {
    const field = r.int(5);
    if (field === 0) f[2] = r.int(256);
    else if (field === 1) f[3] = r.int(256);
    else if (field === 2) f[r.int(2)] = r.int(256);
    else if (field === 3) f.writeUInt16LE(r.int(65536), 10);
    else f.writeUInt16LE(r.int(65536), 8);
    return { kind: 'header', bytes: fixCrc(f) };
  }
  if (n === 9) return { kind: 'truncate', bytes: f.subarray(0, r.int(f.length)) };
  if (n === 10) {
    // another sequence number, well-formed otherwise: an unsolicited response or a duplicate request
    f.writeUInt32LE(r.int(2 ** 32), 4);
    return { kind: 'seq', bytes: fixCrc(f) };
  }
  // random bytes of random length; sometimes behind a plausible header start
  const body = randomBytes(r, r.int(r.next() < 0.9 ? 200 : 4000));
  return { kind: 'random', bytes: r.next() < 0.5 ? Buffer.concat([Buffer.from([0x54, 0x53, 1 + r.int(2), 1 + r.int(4)]), body]) : body };
}

/** A valid frame of the kind a flood repeats: PING requests, LOG_ACKs, unsolicited responses. */
export function floodFrame(r: Rng, seq: number, version: number): Buffer {
  const k = r.int(4);
  if (k === 0) return encodeFrame({ kind: FrameKind.REQUEST, seq, command: Command.PING, version });
  if (k === 1) {
    const p = Buffer.alloc(4);
    p.writeUInt32LE(r.int(1000));
    return encodeFrame({ kind: FrameKind.EVENT, seq, command: Command.LOG_ACK, version, payload: p });
  }
  if (k === 2) return encodeFrame({ kind: FrameKind.RESPONSE, seq: r.int(2 ** 32), command: Command.PING, version });
  return encodeFrame({ kind: FrameKind.REQUEST, seq, command: r.pick([Command.PING, Command.GET_INFO]), version });
}
