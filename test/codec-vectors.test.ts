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
  decodeFramePayload,
  decodeHello,
  decodeUser,
  isProtocolError,
  encodeFrame,
  encodeUser,
  proofEquals,
  userDigest,
  type Frame,
} from '../src/codec/index.js';
import { describePayload, encodePayload, hydrate, type ExtensionVector, type MalformedVector, type Vector } from '../protocol/vectors/json.js';

const dir = join(import.meta.dirname, '..', 'protocol', 'vectors');
/** the two tables of other shapes: inputs to refuse, and payloads with extension bytes */
const TABLES = new Set(['malformed.json', 'extensions.json']);
const files = readdirSync(dir).filter((f) => f.endsWith('.json') && !TABLES.has(f)).sort();
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
      expect({ version: f.version, kind: f.kind, seq: f.seq, command: f.command, status: f.status }).toEqual(v.frame);
      // handshake frames always carry version 1 (PROTOCOL.md 3)
      if (f.command === Command.HELLO || f.command === Command.AUTH) expect(f.version).toBe(1);
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
    expect(hs.length).toBeGreaterThanOrEqual(3);
    const { commKey, deviceId, nonceT, nonceS } = hs[0].auth!;
    const key = Buffer.from(commKey, 'hex');
    const nT = Buffer.from(nonceT, 'hex');
    const nS = Buffer.from(nonceS, 'hex');
    for (const hello of hs.filter((v) => v.frame.kind === FrameKind.REQUEST && v.frame.command === Command.HELLO))
      expect(decodeHello(Buffer.from(hello.hex, 'hex').subarray(20)).nonce).toEqual(nT);
    const resps = hs.filter((v) => v.frame.kind === FrameKind.RESPONSE);
    expect(resps.length).toBeGreaterThanOrEqual(2);
    for (const r of resps) expect(proofEquals(Buffer.from(r.payload.proof, 'hex'), computeProof(key, PROOF_LABEL_SERVER, nT, nS, deviceId))).toBe(true);
    const resp = resps[0];
    const auth = hs.find((v) => v.frame.command === Command.AUTH)!;
    expect(proofEquals(Buffer.from(auth.payload.proof, 'hex'), computeProof(key, PROOF_LABEL_TERMINAL, nS, nT, deviceId))).toBe(true);
    // the two labels make the two proofs differ
    expect(resp.payload.proof).not.toBe(auth.payload.proof);
  });

  it('decodes all vectors sent back to back in one chunk, and in random chunks (seeded)', () => {
    const all = Buffer.concat(vectors.map(bytesOf));
    const want = vectors.map((v) => v.frame);
    const shape = (fs: Frame[]) => fs.map((f) => ({ version: f.version, kind: f.kind, seq: f.seq, command: f.command, status: f.status }));
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

describe('protocol 1.1 vectors (v1_1.json)', () => {
  const v11 = vectors.filter((v) => v.file === 'v1_1.json');
  const byName = (n: string) => {
    const v = v11.find((x) => x.name.startsWith(n));
    if (!v) throw new Error(`no vector ${n}`);
    return v;
  };

  it('frames after the handshake carry version 2, handshake frames version 1', () => {
    expect(v11.length).toBeGreaterThanOrEqual(15);
    for (const v of v11) {
      const handshake = v.frame.command === Command.HELLO || v.frame.command === Command.AUTH;
      expect(v.frame.version, v.name).toBe(handshake ? 1 : 2);
    }
    expect(byName('HELLO request from a 1.1 terminal').payload).toMatchObject({ minVersion: 1, maxVersion: 2 });
    expect(byName('HELLO response from a 1.1 server').payload.version).toBe(2);
    expect(byName('HELLO response from a 1.0 server').payload.version).toBe(1);
  });

  it('PUT_USERS: the record sent with flag 0x83 and version 77 is the one read back with flag 0x80 and version 77', () => {
    const put = byName('PUT_USERS request: a disabled user').payload.users[0].user;
    expect([put.flag, put.version]).toEqual([0x83, 77]);
    const got = byName('GET_USERS response: the user as stored').payload.results[0].user;
    expect([got.flag, got.version]).toEqual([0x80, 77]);
    expect({ ...got, flag: 0 }).toEqual({ ...put, flag: 0 });
  });

  it('LIST_USERS: the digest of a disabled user equals the digest of the same user enabled, the entry flag tells them apart', () => {
    const entry = byName('LIST_USERS response: the disabled user').payload.entries[0];
    expect(entry.flag & 0x80).toBe(0x80);
    const stored = hydrate(byName('GET_USERS response: the user as stored').payload.results[0].user);
    expect(userDigest({ ...stored, flag: 0 }).toString('hex')).toBe(entry.digest);
    expect(userDigest(stored).toString('hex')).toBe(entry.digest);
  });

  it('BUSY, TIMEOUT and whole-request failures are RESPONSEs with an empty payload; ERROR BUSY names the request', () => {
    for (const n of ['PUT_USERS response USER_FULL', 'GET_USERS response BUSY', 'GET_USERS response TIMEOUT', 'GET_USERS response FRAME_TOO_LARGE', 'DELETE_USERS response USER_NOT_FOUND']) {
      const v = byName(n);
      expect(v.frame.kind, n).toBe(FrameKind.RESPONSE);
      expect(v.frame.status, n).toBeLessThan(0);
      expect(v.hex.length, n).toBe(40); // header only
    }
    const busy = byName('GET_USERS response BUSY');
    const err = byName('ERROR BUSY naming the GET_USERS request');
    expect([err.frame.kind, err.frame.seq, err.frame.command, err.frame.status]).toEqual([FrameKind.ERROR, busy.frame.seq, busy.frame.command, busy.frame.status]);
  });

  it('a LOG_EVENT after a reset carries the new epoch and IDs from 1, ascending', () => {
    const before = vectors.find((v) => v.name === 'LOG_EVENT with 3 events')!.payload;
    const after = byName('LOG_EVENT after a log reset').payload;
    expect(after.logEpoch).not.toBe(before.logEpoch);
    expect(after.events.map((e: { id: number }) => e.id)).toEqual([1, 2]);
    expect(byName('SUBSCRIBE_LOG request with the largest window').payload.window).toBe(4096);
  });
});

describe('malformed inputs (malformed.json): each with the exact error and status', () => {
  const table = JSON.parse(readFileSync(join(dir, 'malformed.json'), 'utf8')) as MalformedVector[];
  it('holds the cases the spec names', () => {
    expect(table.length).toBeGreaterThanOrEqual(10);
    for (const n of ['GET_INFO response OK with an empty payload', 'HELLO request with device ID 0', 'LOG_EVENT whose event IDs go down']) expect(table.map((m) => m.name)).toContain(n);
  });
  it.each(table.map((m) => [m.name, m] as const))('%s', (_n, m) => {
    const [f] = decodeAll([Buffer.from(m.hex, 'hex')]); // the framing is sound
    let err: unknown;
    try {
      const v = decodeFramePayload(f) as { results?: { record: Buffer }[]; records?: Buffer[] };
      expect(m.where, 'the payload decoded, so the fault must be in a record').toBe('record');
      decodeUser(v.results?.[0]?.record ?? v.records![0]);
    } catch (e) {
      err = e;
    }
    expect(isProtocolError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(m.error);
    expect((err as { status: number }).status).toBe(m.status);
  });
});

describe('extension bytes (extensions.json) are ignored where PROTOCOL.md 2.2 allows them', () => {
  const table = JSON.parse(readFileSync(join(dir, 'extensions.json'), 'utf8')) as ExtensionVector[];
  it.each(table.map((x) => [x.name, x] as const))('%s', (_n, x) => {
    const [f] = decodeAll([Buffer.from(x.hex, 'hex')]);
    expect(describePayload(f)).toEqual(x.payload);
    // re-encoding the decoded fields gives the payload without the extension
    const payload = encodePayload(x.frame, x.payload);
    expect(Buffer.concat([payload, Buffer.from(x.extension, 'hex')]).equals(f.payload)).toBe(true);
  });
});
