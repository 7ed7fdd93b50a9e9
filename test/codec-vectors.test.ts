// Golden vectors (protocol/vectors/*.json, PROTOCOL.md section 9): every vector
// decodes to its fields, re-encodes byte-exactly, and survives any split of the
// byte stream.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  Command,
  FrameDecoder,
  FrameKind,
  PROOF_LABEL_SERVER,
  PROOF_LABEL_TERMINAL,
  computeProof,
  decodeHello,
  decodeUser,
  encodeFrame,
  encodeUser,
  proofEquals,
  type Frame,
} from '../src/codec/index.js';
import { describePayload, encodePayload, hydrate, type Vector } from '../protocol/vectors/json.js';

const dir = join(import.meta.dirname, '..', 'protocol', 'vectors');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
const vectors: (Vector & { file: string })[] = files.flatMap((file) =>
  (JSON.parse(readFileSync(join(dir, file), 'utf8')) as Vector[]).map((v) => ({ ...v, file })),
);
const bytesOf = (v: Vector) => Buffer.from(v.hex, 'hex');
const named = vectors.map((v) => [`${v.file}: ${v.name}`, v] as const);

function decodeAll(chunks: Buffer[]): Frame[] {
  const d = new FrameDecoder();
  const out: Frame[] = [];
  for (const c of chunks) out.push(...d.feed(c));
  d.end();
  return out;
}

describe('golden vectors', () => {
  it('are present and cover every frame kind and every command in both directions', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(40);
    const seen = new Set(vectors.map((v) => `${v.frame.kind}:${v.frame.command}`));
    for (const k of [FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.EVENT, FrameKind.ERROR]) expect(vectors.some((v) => v.frame.kind === k)).toBe(true);
    for (const c of [Command.HELLO, Command.AUTH, Command.PING, Command.BYE, Command.GET_INFO, Command.GET_LOG, Command.SUBSCRIBE_LOG, Command.LIST_USERS, Command.GET_USERS, Command.PUT_USERS, Command.DELETE_USERS]) {
      expect(seen.has(`${FrameKind.REQUEST}:${c}`), `request ${Command[c]}`).toBe(true);
      expect(seen.has(`${FrameKind.RESPONSE}:${c}`), `response ${Command[c]}`).toBe(true);
    }
    expect(seen.has(`${FrameKind.EVENT}:${Command.LOG_EVENT}`)).toBe(true);
    expect(seen.has(`${FrameKind.EVENT}:${Command.LOG_ACK}`)).toBe(true);
    // the multi-record batches the brief asks for
    const byName = (n: string) => vectors.find((v) => v.name === n)!;
    expect(byName('GET_LOG response with 3 events').payload.events).toHaveLength(3);
    const put = byName('PUT_USERS request with 2 users (overwrite)').payload;
    expect(put.users).toHaveLength(2);
    expect(put.users.some((u: any) => u.user.cards.length > 0 && u.user.fingers.length > 0 && u.user.accessGroups.length > 0)).toBe(true);
    const get = byName('GET_USERS response: one found, one USER_NOT_FOUND').payload;
    expect(get.results.map((r: any) => r.status)).toEqual([0, -714]);
    expect(vectors.filter((v) => v.frame.kind === FrameKind.RESPONSE && v.frame.status !== 0).length).toBeGreaterThanOrEqual(3);
  });

  describe.each(named)('%s', (_name, v) => {
    const wire = bytesOf(v);

    it('decodes to its frame fields and payload fields', () => {
      const frames = decodeAll([wire]);
      expect(frames).toHaveLength(1);
      const f = frames[0];
      expect({ kind: f.kind, seq: f.seq, command: f.command, status: f.status }).toEqual(v.frame);
      expect(f.version).toBe(1);
      expect(describePayload(f)).toEqual(v.payload);
    });

    it('re-encodes byte-exactly from its JSON fields', () => {
      const payload = encodePayload(v.frame, v.payload);
      expect(encodeFrame({ ...v.frame, payload }).toString('hex')).toBe(v.hex);
    });

    it('decodes identically at every split point and byte by byte', () => {
      const [want] = decodeAll([wire]);
      // cheap comparison: deep equality of large Buffers thousands of times is slow
      const same = (fs: Frame[]) =>
        fs.length === 1 &&
        fs[0].kind === want.kind &&
        fs[0].seq === want.seq &&
        fs[0].command === want.command &&
        fs[0].status === want.status &&
        fs[0].payload.equals(want.payload);
      const bad: number[] = [];
      for (let i = 0; i <= wire.length; i++) if (!same(decodeAll([wire.subarray(0, i), wire.subarray(i)]))) bad.push(i);
      expect(bad, 'split points that decoded differently').toEqual([]);
      expect(same(decodeAll([...wire].map((b) => Buffer.from([b]))))).toBe(true);
    });
  });

  it('user records inside GET_USERS / PUT_USERS re-encode byte-exactly from their decoded form', () => {
    let n = 0;
    for (const v of vectors) {
      const items: any[] = [...(v.payload.results ?? []).filter((r: any) => r.user), ...(v.payload.users ?? []).map((u: any, i: number) => ({ ...u, record: v.payload.records[i] }))];
      for (const it of items) {
        const user = hydrate(it.user);
        expect(encodeUser(user, it.infoMask).toString('hex')).toBe(it.record);
        expect(decodeUser(Buffer.from(it.record, 'hex')).infoMask).toBe(it.infoMask);
        n++;
      }
    }
    expect(n).toBeGreaterThanOrEqual(4);
  });

  it('the handshake proofs verify with the published comm key and nonces', () => {
    const hs = vectors.filter((v) => v.auth);
    expect(hs.length).toBe(3);
    const { commKey, deviceId, nonceT, nonceS } = hs[0].auth!;
    const key = Buffer.from(commKey, 'hex');
    const nT = Buffer.from(nonceT, 'hex');
    const nS = Buffer.from(nonceS, 'hex');
    const hello = hs.find((v) => v.frame.kind === FrameKind.REQUEST && v.frame.command === Command.HELLO)!;
    expect(decodeHello(Buffer.from(hello.hex, 'hex').subarray(20)).nonce).toEqual(nT);
    const resp = hs.find((v) => v.frame.kind === FrameKind.RESPONSE)!;
    expect(proofEquals(Buffer.from(resp.payload.proof, 'hex'), computeProof(key, PROOF_LABEL_SERVER, nT, nS, deviceId))).toBe(true);
    const auth = hs.find((v) => v.frame.command === Command.AUTH)!;
    expect(proofEquals(Buffer.from(auth.payload.proof, 'hex'), computeProof(key, PROOF_LABEL_TERMINAL, nS, nT, deviceId))).toBe(true);
    // the two labels make the two proofs differ
    expect(resp.payload.proof).not.toBe(auth.payload.proof);
  });

  it('decodes all vectors sent back to back in one chunk, and in random chunks (seeded)', () => {
    const all = Buffer.concat(vectors.map(bytesOf));
    const want = vectors.map((v) => v.frame);
    const shape = (fs: Frame[]) => fs.map((f) => ({ kind: f.kind, seq: f.seq, command: f.command, status: f.status }));
    expect(shape(decodeAll([all]))).toEqual(want);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (let round = 0; round < 50; round++) {
      const chunks: Buffer[] = [];
      for (let p = 0; p < all.length; ) {
        const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 30 : 3000));
        chunks.push(all.subarray(p, p + n));
        p += n;
      }
      const got = decodeAll(chunks);
      expect(shape(got)).toEqual(want);
      expect(got.map((f) => f.payload.toString('hex'))).toEqual(vectors.map((v) => v.hex.slice(40)));
    }
  });
});
