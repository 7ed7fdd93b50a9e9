// Frames (PROTOCOL.md section 2): a 20-byte header and `length` payload bytes,
// protected by a CRC-32 over header bytes 0..15 followed by the payload.
//
// FrameDecoder is a streaming decoder in the style of node-postgres pg-protocol:
// complete frames are read straight out of the incoming chunk; only the one
// partial frame at the end of a chunk is kept, in a single growable buffer with a
// fill cursor. Every header field is checked as soon as its bytes arrive, and the
// length is checked against the current limit before a single payload byte is
// buffered, so a hostile length never makes us allocate.
import { crc32 } from 'node:zlib';
import {
  FrameKind,
  HEADER_SIZE,
  MAGIC0,
  MAGIC1,
  MAX_PAYLOAD,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
} from './constants.js';
import { ProtocolError } from './errors.js';

export interface Frame {
  version: number;
  kind: FrameKind;
  seq: number;
  command: number;
  /** i16 result code; 0 in requests and events */
  status: number;
  payload: Buffer;
}

export interface FrameInit {
  kind: FrameKind;
  seq: number;
  command: number;
  status?: number;
  payload?: Buffer;
  version?: number;
}

const EMPTY = Buffer.alloc(0);

function frameCrc(head: Buffer, headOff: number, payload: Buffer, payloadOff: number, length: number): number {
  const c = crc32(head.subarray(headOff, headOff + 16));
  return length === 0 ? c : crc32(payload.subarray(payloadOff, payloadOff + length), c);
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * Encodes one frame whose payload is the concatenation of `parts`, without
 * copying them: the header (with the CRC over header and parts) comes first,
 * then the parts themselves, to be written in order (e.g. corked). A PUT_USERS
 * fanned out to many terminals then sends the same cached record encodings to
 * each instead of one copy of the whole batch per terminal. Same checks as
 * encodeFrame; the parts must not change until written.
 */
export function encodeFrameParts(f: Omit<FrameInit, 'payload'>, parts: readonly Buffer[]): Buffer[] {
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > MAX_PAYLOAD) throw new ProtocolError('FRAME_TOO_LARGE', `payload of ${length} bytes exceeds the maximum of ${MAX_PAYLOAD}`);
  // the header's checks and layout are encodeFrame's (an empty payload), then length and CRC are set here
  const head = encodeFrame(f);
  head.writeUInt32LE(length, 12);
  let c = crc32(head.subarray(0, 16));
  for (const p of parts) if (p.length) c = crc32(p, c);
  head.writeUInt32LE(c, 16);
  return [head, ...parts];
}

/** Encodes one frame. Throws ProtocolError for anything that must not go on the wire. */
export function encodeFrame(f: FrameInit): Buffer {
  const payload = f.payload ?? EMPTY;
  const status = f.status ?? 0;
  const version = f.version ?? PROTOCOL_VERSION;
  if (!isInt(version, 0, 255)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame version ${version} is not a u8`);
  if (!isInt(f.kind, FrameKind.REQUEST, FrameKind.ERROR)) throw new ProtocolError('BAD_KIND', `frame kind ${f.kind} is not 1..4`);
  if (!isInt(f.seq, 0, 0xffffffff)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame seq ${f.seq} is not a u32`);
  if (!isInt(f.command, 0, 0xffff)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame command ${f.command} is not a u16`);
  if (!isInt(status, -0x8000, 0x7fff)) throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame status ${status} is not an i16`);
  if ((f.kind === FrameKind.REQUEST || f.kind === FrameKind.EVENT) && status !== 0)
    throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame status must be 0 in requests and events, got ${status}`);
  if (status > 0) throw new ProtocolError('FIELD_OUT_OF_RANGE', `frame status must be 0 or negative, got ${status}`);
  if (payload.length > MAX_PAYLOAD)
    throw new ProtocolError('FRAME_TOO_LARGE', `payload of ${payload.length} bytes exceeds the maximum of ${MAX_PAYLOAD}`);
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = version;
  out[3] = f.kind;
  out.writeUInt32LE(f.seq, 4);
  out.writeUInt16LE(f.command, 8);
  out.writeInt16LE(status, 10);
  out.writeUInt32LE(payload.length, 12);
  payload.copy(out, HEADER_SIZE);
  out.writeUInt32LE(frameCrc(out, 0, out, HEADER_SIZE, payload.length), 16);
  return out;
}

export interface FrameDecoderOptions {
  /** payload limit in bytes (default MAX_PAYLOAD); lower it to MAX_PREAUTH_PAYLOAD before authentication */
  maxPayload?: number;
  /**
   * the highest frame version accepted (default MAX_PROTOCOL_VERSION); a peer that
   * speaks only protocol 1.0 sets 1, so a frame of a newer version is BAD_VERSION
   */
  maxVersion?: number;
}

/** buffers above this capacity are released once they hold no partial frame */
const KEEP_CAPACITY = 64 * 1024;

export class FrameDecoder {
  private maxPayload: number;
  private readonly maxVersion: number;
  /** holds the one partial frame: bytes 0..fill */
  private buf: Buffer = EMPTY;
  private fill = 0;
  private poisoned: ProtocolError | null = null;

  constructor(opts: FrameDecoderOptions = {}) {
    this.maxPayload = MAX_PAYLOAD;
    const mv = opts.maxVersion ?? MAX_PROTOCOL_VERSION;
    if (!isInt(mv, MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION))
      throw new RangeError(`maxVersion must be an integer in ${MIN_PROTOCOL_VERSION}..${MAX_PROTOCOL_VERSION}`);
    this.maxVersion = mv;
    if (opts.maxPayload !== undefined) this.setMaxPayload(opts.maxPayload);
  }

  /** Changes the payload limit; frames whose header arrives afterwards are checked against it. */
  setMaxPayload(n: number): void {
    if (!isInt(n, 0, MAX_PAYLOAD)) throw new RangeError(`maxPayload must be an integer in 0..${MAX_PAYLOAD}`);
    this.maxPayload = n;
  }

  get limit(): number {
    return this.maxPayload;
  }

  /** bytes of a partial frame held back waiting for more input */
  get buffered(): number {
    return this.fill;
  }

  /** the error that poisoned this decoder, if any */
  get error(): ProtocolError | null {
    return this.poisoned;
  }

  /**
   * Feeds bytes and returns every frame completed by them. Throws ProtocolError
   * when the stream cannot be trusted; the decoder then stays poisoned and throws
   * the same error on every later call. Frames completed before the error in the
   * same chunk are lost with `feed`; use `feedEach` to receive them first.
   */
  feed(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    this.feedEach(chunk, (f) => out.push(f));
    return out;
  }

  /**
   * Like feed, but hands every frame to `onFrame` as soon as it is complete. The
   * callback may call setMaxPayload (for example after the AUTH response) and the
   * next frame in the same chunk is checked against the new limit.
   */
  feedEach(chunk: Buffer, onFrame: (f: Frame) => void): void {
    if (this.poisoned) throw this.poisoned;
    try {
      this.run(chunk, onFrame);
    } catch (e) {
      // A ProtocolError means the stream cannot be trusted. Anything else came from
      // onFrame; the rest of the chunk is then lost, so the stream position is too.
      this.poison(e instanceof ProtocolError ? e : new ProtocolError('ABORTED', 'a frame handler threw; the rest of that chunk was not decoded'));
      throw e;
    }
  }

  /** Declares the end of the stream: throws TRUNCATED if a partial frame is pending. */
  end(): void {
    if (this.poisoned) return;
    if (this.fill > 0) {
      const n = this.fill;
      this.poison(new ProtocolError('TRUNCATED', `connection ended inside a frame (${n} bytes of a partial frame discarded)`));
      throw this.poisoned;
    }
  }

  private poison(e: ProtocolError): void {
    this.poisoned = e;
    this.buf = EMPTY;
    this.fill = 0;
  }

  /** Checks the header fields that are present in `b[off..off+avail)`; returns the payload length once known. */
  private checkHeader(b: Buffer, off: number, avail: number): number {
    if (avail >= 1 && b[off] !== MAGIC0) throw badMagic(b, off, avail);
    if (avail >= 2 && b[off + 1] !== MAGIC1) throw badMagic(b, off, avail);
    if (avail >= 3) {
      const v = b[off + 2];
      if (v < MIN_PROTOCOL_VERSION || v > this.maxVersion)
        throw new ProtocolError('BAD_VERSION', `frame version ${v} is not supported (${MIN_PROTOCOL_VERSION}..${this.maxVersion})`);
    }
    if (avail >= 4) {
      const k = b[off + 3];
      if (k < FrameKind.REQUEST || k > FrameKind.ERROR) throw new ProtocolError('BAD_KIND', `frame kind ${k} is not 1..4`);
    }
    if (avail >= 16) {
      const len = b.readUInt32LE(off + 12);
      if (len > this.maxPayload)
        throw new ProtocolError('FRAME_TOO_LARGE', `frame length ${len} exceeds the limit of ${this.maxPayload} bytes`);
      return len;
    }
    return -1;
  }

  /** Decodes a complete, header-checked frame at b[off..]; verifies the CRC and copies the payload. */
  private emit(b: Buffer, off: number, len: number, onFrame: (f: Frame) => void): void {
    const want = b.readUInt32LE(off + 16);
    const got = frameCrc(b, off, b, off + HEADER_SIZE, len);
    if (want !== got)
      throw new ProtocolError('BAD_CHECKSUM', `frame CRC mismatch (header says 0x${hex8(want)}, computed 0x${hex8(got)})`);
    const payload = len === 0 ? Buffer.alloc(0) : Buffer.allocUnsafe(len);
    if (len > 0) b.copy(payload, 0, off + HEADER_SIZE, off + HEADER_SIZE + len);
    onFrame({
      version: b[off + 2],
      kind: b[off + 3] as FrameKind,
      seq: b.readUInt32LE(off + 4),
      command: b.readUInt16LE(off + 8),
      status: b.readInt16LE(off + 10),
      payload,
    });
  }

  private run(chunk: Buffer, onFrame: (f: Frame) => void): void {
    let pos = 0;
    const end = chunk.length;
    // 1. complete the partial frame held from earlier chunks
    if (this.fill > 0) {
      if (this.fill < HEADER_SIZE) {
        const take = Math.min(HEADER_SIZE - this.fill, end);
        this.reserve(HEADER_SIZE);
        chunk.copy(this.buf, this.fill, 0, take);
        pos = take;
        this.fill += take;
      }
      const len = this.checkHeader(this.buf, 0, this.fill);
      if (len < 0) return; // header still incomplete, chunk used up
      const total = HEADER_SIZE + len;
      const take = Math.min(total - this.fill, end - pos);
      if (take > 0) {
        this.reserve(total);
        chunk.copy(this.buf, this.fill, pos, pos + take);
        this.fill += take;
        pos += take;
      }
      if (this.fill < total) return;
      this.fill = 0;
      const held = this.buf;
      if (held.length > KEEP_CAPACITY) this.buf = EMPTY;
      this.emit(held, 0, len, onFrame);
    }
    // 2. frames wholly inside the chunk: no copy into the receive buffer
    while (pos < end) {
      const avail = end - pos;
      const len = this.checkHeader(chunk, pos, avail);
      if (len < 0 || avail < HEADER_SIZE + len) break;
      this.emit(chunk, pos, len, onFrame);
      pos += HEADER_SIZE + len;
    }
    // 3. keep the tail (a checked partial frame); its header was validated as far as it goes
    if (pos < end) {
      const rest = end - pos;
      this.reserve(rest);
      chunk.copy(this.buf, 0, pos, end);
      this.fill = rest;
    }
  }

  /** Ensures the receive buffer holds `n` bytes (n <= HEADER_SIZE + maxPayload, checked by the caller). */
  private reserve(n: number): void {
    if (this.buf.length >= n) return;
    let cap = Math.max(256, this.buf.length * 2);
    while (cap < n) cap *= 2;
    cap = Math.min(cap, HEADER_SIZE + this.maxPayload);
    if (cap < n) cap = n;
    const nb = Buffer.allocUnsafe(cap);
    if (this.fill > 0) this.buf.copy(nb, 0, 0, this.fill);
    this.buf = nb;
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function badMagic(b: Buffer, off: number, avail: number): ProtocolError {
  const seen = b.subarray(off, off + Math.min(2, avail)).toString('hex');
  return new ProtocolError('BAD_MAGIC', `frame magic is 0x${seen}, expected 0x5453 ("TS")`);
}
