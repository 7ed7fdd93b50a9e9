// Frames of the ZKTeco standalone protocol over TCP (ZK-PROTOCOL.md section 2):
//   50 50 82 7D | u32 LE payload length | payload = header (cmd, checksum,
//   session, reply: four u16 LE) + data
// plus the 16-bit ones'-complement checksum and the comm key (make_commkey).
//
// ZkFrameDecoder is a streaming decoder: replies may be split anywhere and
// several frames may arrive in one read (real devices do both). Only the one
// partial frame at the end of a chunk is kept; the length is checked against the
// limit as soon as its 4 bytes arrive, before a single payload byte is buffered.
// A checksum mismatch does not lose the frame: it is delivered with
// `checksumOk: false` and counted, so that the session can log and decide.
import { ZK_HEADER_BYTES, ZK_MAGIC, ZK_MAX_PAYLOAD, ZK_PREFIX_BYTES } from './constants.js';

export type ZkErrorCode =
  | 'BAD_MAGIC'
  | 'LENGTH_TOO_SMALL'
  | 'FRAME_TOO_LARGE'
  | 'FIELD_OUT_OF_RANGE'
  | 'TRUNCATED'
  | 'BAD_RECORD'
  | 'BAD_TABLE'
  | 'ABORTED';

/** A malformed frame or record. The code says which rule was broken. */
export class ZkProtocolError extends Error {
  constructor(
    readonly code: ZkErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ZkProtocolError';
  }
}

export interface ZkFrame {
  /** command (client to device), reply code (device to client) or 500 for a realtime event */
  command: number;
  /** the checksum field as it was on the wire */
  checksum: number;
  /** session id; the event flag in a realtime event; a packet counter in DATA frames */
  session: number;
  /** reply id: echoed by the device; 0 in events */
  reply: number;
  data: Buffer;
  /** whether the checksum field matched the bytes received (always true for encoded frames) */
  checksumOk: boolean;
}

export interface ZkFrameInit {
  command: number;
  session: number;
  reply: number;
  data?: Buffer;
}

const EMPTY = Buffer.alloc(0);

/**
 * The protocol checksum over `buf[start..end)` (header + data), with the two
 * checksum bytes at `start + 2` counted as zero: little-endian u16 words added
 * with end-around carry, an odd last byte added as a low byte, the result
 * inverted to 16 bits.
 */
export function zkChecksum(buf: Buffer, start = 0, end = buf.length): number {
  let sum = 0;
  let i = start;
  for (; i + 1 < end; i += 2) {
    if (i === start + 2) continue; // the checksum field itself
    sum += buf[i] | (buf[i + 1] << 8);
    if (sum > 0xffff) sum -= 0xffff;
  }
  if (i < end) {
    sum += buf[i];
    if (sum > 0xffff) sum -= 0xffff;
  }
  return ~sum & 0xffff;
}

function isU16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** Encodes one TCP frame with its checksum. */
export function encodeZkFrame(f: ZkFrameInit): Buffer {
  const data = f.data ?? EMPTY;
  for (const [k, v] of [
    ['command', f.command],
    ['session', f.session],
    ['reply', f.reply],
  ] as const) {
    if (!isU16(v)) throw new ZkProtocolError('FIELD_OUT_OF_RANGE', `frame ${k} ${String(v)} is not a u16`);
  }
  if (data.length > ZK_MAX_PAYLOAD - ZK_HEADER_BYTES)
    throw new ZkProtocolError('FRAME_TOO_LARGE', `frame data of ${data.length} bytes exceeds ${ZK_MAX_PAYLOAD - ZK_HEADER_BYTES}`);
  const out = Buffer.allocUnsafe(ZK_PREFIX_BYTES + ZK_HEADER_BYTES + data.length);
  ZK_MAGIC.copy(out, 0);
  out.writeUInt32LE(ZK_HEADER_BYTES + data.length, 4);
  out.writeUInt16LE(f.command, 8);
  out.writeUInt16LE(0, 10);
  out.writeUInt16LE(f.session, 12);
  out.writeUInt16LE(f.reply, 14);
  data.copy(out, 16);
  out.writeUInt16LE(zkChecksum(out, 8, out.length), 10);
  return out;
}

/** Decodes a payload (header + data, no TCP prefix: also the UDP form). */
export function decodeZkPayload(payload: Buffer): ZkFrame {
  if (payload.length < ZK_HEADER_BYTES)
    throw new ZkProtocolError('LENGTH_TOO_SMALL', `a payload needs at least ${ZK_HEADER_BYTES} header bytes, got ${payload.length}`);
  const checksum = payload.readUInt16LE(2);
  return {
    command: payload.readUInt16LE(0),
    checksum,
    session: payload.readUInt16LE(4),
    reply: payload.readUInt16LE(6),
    data: Buffer.from(payload.subarray(ZK_HEADER_BYTES)),
    checksumOk: zkChecksum(payload) === checksum,
  };
}

/** Decodes exactly one complete TCP frame (tests and tools). */
export function decodeZkFrame(buf: Buffer): ZkFrame {
  const d = new ZkFrameDecoder();
  const frames = d.feed(buf);
  if (frames.length !== 1 || d.buffered !== 0)
    throw new ZkProtocolError('TRUNCATED', `expected one complete frame, got ${frames.length} frame(s) and ${d.buffered} byte(s) left over`);
  return frames[0];
}

export interface ZkFrameDecoderOptions {
  /** payload limit (header + data) in bytes; default ZK_MAX_PAYLOAD */
  maxPayload?: number;
}

/** A decoder releases a buffer above this size once it holds no partial frame. */
const KEEP_CAPACITY = 64 * 1024;

export class ZkFrameDecoder {
  readonly maxPayload: number;
  private buf: Buffer = EMPTY;
  private fill = 0;
  /** payload length of the frame being assembled, once its prefix is complete */
  private need = -1;
  private poisoned: ZkProtocolError | null = null;
  /** frames delivered whose checksum did not match */
  checksumMismatches = 0;
  /** frames delivered */
  frames = 0;

  constructor(opts: ZkFrameDecoderOptions = {}) {
    const m = opts.maxPayload ?? ZK_MAX_PAYLOAD;
    if (!Number.isInteger(m) || m < ZK_HEADER_BYTES || m > ZK_MAX_PAYLOAD)
      throw new RangeError(`maxPayload must be an integer in ${ZK_HEADER_BYTES}..${ZK_MAX_PAYLOAD}`);
    this.maxPayload = m;
  }

  /** bytes of a partial frame waiting for more input */
  get buffered(): number {
    return this.fill;
  }

  get error(): ZkProtocolError | null {
    return this.poisoned;
  }

  /** Feeds bytes; returns every frame they complete. Throws (and stays failed) on a broken stream. */
  feed(chunk: Buffer): ZkFrame[] {
    const out: ZkFrame[] = [];
    this.feedEach(chunk, (f) => out.push(f));
    return out;
  }

  /** Like feed, handing each frame to `onFrame` as soon as it is complete. */
  feedEach(chunk: Buffer, onFrame: (f: ZkFrame) => void): void {
    if (this.poisoned) throw this.poisoned;
    try {
      this.run(chunk, onFrame);
    } catch (e) {
      this.poisoned =
        e instanceof ZkProtocolError ? e : new ZkProtocolError('ABORTED', 'a frame handler threw; the rest of that chunk was not decoded');
      this.buf = EMPTY;
      this.fill = 0;
      throw e;
    }
  }

  private deliver(payload: Buffer, onFrame: (f: ZkFrame) => void): void {
    const f = decodeZkPayload(payload);
    this.frames++;
    if (!f.checksumOk) this.checksumMismatches++;
    onFrame(f);
  }

  private checkPrefix(b: Buffer, off: number): number {
    for (let i = 0; i < 4; i++) {
      if (b[off + i] !== ZK_MAGIC[i])
        throw new ZkProtocolError('BAD_MAGIC', `frame does not start with 50 50 82 7d (got ${b.subarray(off, off + 4).toString('hex')})`);
    }
    const len = b.readUInt32LE(off + 4);
    if (len < ZK_HEADER_BYTES) throw new ZkProtocolError('LENGTH_TOO_SMALL', `frame length ${len} is shorter than the ${ZK_HEADER_BYTES}-byte header`);
    if (len > this.maxPayload) throw new ZkProtocolError('FRAME_TOO_LARGE', `frame length ${len} exceeds the limit of ${this.maxPayload} bytes`);
    return len;
  }

  /** Checks the magic bytes seen so far (a stream that cannot be ours fails at once). */
  private checkMagicSoFar(b: Buffer, off: number, n: number): void {
    for (let i = 0; i < Math.min(n, 4); i++) {
      if (b[off + i] !== ZK_MAGIC[i])
        throw new ZkProtocolError('BAD_MAGIC', `frame does not start with 50 50 82 7d (got ${b.subarray(off, off + Math.min(n, 4)).toString('hex')})`);
    }
  }

  private run(chunk: Buffer, onFrame: (f: ZkFrame) => void): void {
    let p = 0;
    // 1. complete the partial frame held from earlier chunks
    if (this.fill > 0) {
      if (this.need < 0) {
        const take = Math.min(ZK_PREFIX_BYTES - this.fill, chunk.length);
        chunk.copy(this.buf, this.fill, 0, take);
        this.fill += take;
        p = take;
        this.checkMagicSoFar(this.buf, 0, this.fill);
        if (this.fill < ZK_PREFIX_BYTES) return;
        this.need = this.checkPrefix(this.buf, 0);
        this.grow(ZK_PREFIX_BYTES + this.need);
      }
      const total = ZK_PREFIX_BYTES + this.need;
      const take = Math.min(total - this.fill, chunk.length - p);
      chunk.copy(this.buf, this.fill, p, p + take);
      this.fill += take;
      p += take;
      if (this.fill < total) return;
      const payload = this.buf.subarray(ZK_PREFIX_BYTES, total);
      this.fill = 0;
      this.need = -1;
      if (this.buf.length > KEEP_CAPACITY) this.buf = EMPTY;
      this.deliver(payload, onFrame);
    }
    // 2. frames straight out of the chunk
    while (p < chunk.length) {
      const left = chunk.length - p;
      if (left < ZK_PREFIX_BYTES) {
        this.checkMagicSoFar(chunk, p, left);
        this.grow(ZK_PREFIX_BYTES);
        chunk.copy(this.buf, 0, p);
        this.fill = left;
        this.need = -1;
        return;
      }
      const len = this.checkPrefix(chunk, p);
      const total = ZK_PREFIX_BYTES + len;
      if (left < total) {
        this.grow(total);
        chunk.copy(this.buf, 0, p);
        this.fill = left;
        this.need = len;
        return;
      }
      const payload = chunk.subarray(p + ZK_PREFIX_BYTES, p + total);
      p += total;
      this.deliver(payload, onFrame);
    }
  }

  private grow(n: number): void {
    if (this.buf.length >= n) return;
    const b = Buffer.allocUnsafe(Math.max(n, Math.min(2 * this.buf.length, ZK_PREFIX_BYTES + this.maxPayload)));
    this.buf.copy(b, 0, 0, this.fill);
    this.buf = b;
  }
}

/**
 * The 4-byte comm key sent with CMD_AUTH (ZK-PROTOCOL.md section 4): the
 * password's 32 bits reversed, plus the session id (wrapping at 2^32), as four
 * little-endian bytes XORed with "ZKSO", halves swapped, then XORed with the
 * tick byte except the third byte, which is the tick byte itself.
 */
export function makeCommKey(password: number, session: number, ticks = 50): Buffer {
  if (!Number.isInteger(password) || password < 0 || password > 0xffffffff) throw new RangeError('the comm key password must be a u32');
  if (!Number.isInteger(session) || session < 0 || session > 0xffff) throw new RangeError('the session id must be a u16');
  let rev = 0;
  for (let i = 0; i < 32; i++) if ((password >>> i) & 1) rev += 2 ** (31 - i);
  const k = (rev + session) % 2 ** 32;
  const b = Buffer.alloc(4);
  b.writeUInt32LE(k, 0);
  const c = [b[0] ^ 0x5a, b[1] ^ 0x4b, b[2] ^ 0x53, b[3] ^ 0x4f];
  const d = [c[2], c[3], c[0], c[1]];
  const t = ticks & 0xff;
  return Buffer.from([d[0] ^ t, d[1] ^ t, t, d[3] ^ t]);
}
