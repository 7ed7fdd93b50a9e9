// Golden vectors of the ZK protocol (protocol/zk/vectors/*.json): frames captured
// from real terminals and clients decode with a verified checksum and re-encode
// byte-exactly; the captured split reads reassemble to the documented tables and
// templates at every split point; the comm-key vectors match.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeZkFrame, decodeZkPayload, encodeZkFrame, makeCommKey, zkChecksum, ZkFrameDecoder, type ZkFrame } from '../src/drivers/zk/codec.js';
import { Cmd } from '../src/drivers/zk/constants.js';
import {
  decodeAttendanceEvent,
  decodeFreeSizes,
  decodeUploadBuffer,
  decodeUserRecord,
  decodeUserTable,
  encodeUploadBuffer,
  encodeUserRecord,
} from '../src/drivers/zk/records.js';

const dir = join(import.meta.dirname, '..', 'protocol', 'zk', 'vectors');
const load = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8'));

interface FrameVector {
  name: string;
  direction: string;
  what: string;
  hex: string;
  command: number;
  session: number;
  reply: number;
  dataHex: string;
}
interface RecordJson {
  uid: number;
  privilege: number;
  password: string;
  name: string;
  card: number;
  byte39: number;
  bytes40_47: string;
  user_id: string;
}
interface StreamVector {
  name: string;
  segments: string[];
  frames: { command: number; session: number; reply: number; dataLength: number }[];
  table?: { frameIndex?: number; userCount: number; recordSize: number; records?: RecordJson[]; tableHex?: string; firstRecords?: RecordJson[]; lastRecord?: RecordJson };
  template?: { dataLength: number; dataHex: string };
}

const frames: FrameVector[] = load('frames.json').frames;
const streams: StreamVector[] = load('streams.json').streams;

function feedAll(chunks: Buffer[]): { frames: ZkFrame[]; decoder: ZkFrameDecoder } {
  const decoder = new ZkFrameDecoder();
  const out: ZkFrame[] = [];
  for (const c of chunks) out.push(...decoder.feed(c));
  return { frames: out, decoder };
}

/** Data of the DATA frames that follow the PREPARE_DATA, concatenated (a chunked read). */
function chunkedData(fs: ZkFrame[]): Buffer {
  const start = fs.findIndex((f) => f.command === Cmd.PREPARE_DATA);
  const parts: Buffer[] = [];
  for (let i = start + 1; i < fs.length && fs[i].command === Cmd.DATA; i++) parts.push(fs[i].data);
  return Buffer.concat(parts);
}

function expectRecord(u: ReturnType<typeof decodeUserRecord>, r: RecordJson): void {
  expect({ uid: u.uid, privilege: u.privilege, password: u.password, name: u.name, card: u.card, group: u.group, userId: u.userId }).toEqual({
    uid: r.uid,
    privilege: r.privilege,
    password: r.password,
    name: r.name,
    card: r.card,
    group: r.byte39,
    userId: r.user_id,
  });
  expect(u.raw!.subarray(40, 48).toString('hex')).toBe(r.bytes40_47);
}

describe('ZK golden frames', () => {
  it('cover device replies, client requests, realtime events and both record sizes of evidence', () => {
    expect(frames.length).toBeGreaterThanOrEqual(80);
    const cmds = new Set(frames.map((f) => f.command));
    for (const c of [Cmd.CONNECT, Cmd.AUTH, Cmd.EXIT, Cmd.PREPARE_BUFFER, Cmd.READ_BUFFER, Cmd.USER_WRQ, Cmd.DELETE_USER, Cmd.REG_EVENT, 2000, 2005, Cmd.DATA, Cmd.PREPARE_DATA])
      expect(cmds.has(c), `command ${c}`).toBe(true);
  });

  it.each(frames.map((f) => [f.name, f] as const))('%s decodes with a verified checksum and re-encodes byte-exactly', (_n, v) => {
    const f = decodeZkFrame(Buffer.from(v.hex, 'hex'));
    expect(f.checksumOk).toBe(true);
    expect([f.command, f.session, f.reply, f.data.toString('hex')]).toEqual([v.command, v.session, v.reply, v.dataHex]);
    expect(encodeZkFrame({ command: f.command, session: f.session, reply: f.reply, data: f.data }).toString('hex')).toBe(v.hex);
  });

  it('the checksum test vectors verify as payloads', () => {
    for (const v of load('checksum.json').vectors as { payloadHex: string; checksum: number }[]) {
      const p = Buffer.from(v.payloadHex, 'hex');
      expect(zkChecksum(p)).toBe(v.checksum);
      expect(decodeZkPayload(p).checksumOk).toBe(true);
    }
  });
});

describe('ZK captured streams', () => {
  it.each(streams.map((s) => [s.name, s] as const))('%s: the reads reassemble to the documented frames', (_n, s) => {
    const { frames: fs, decoder } = feedAll(s.segments.map((h) => Buffer.from(h, 'hex')));
    expect(decoder.buffered).toBe(0);
    expect(decoder.checksumMismatches).toBe(0);
    expect(fs.map((f) => ({ command: f.command, session: f.session, reply: f.reply, dataLength: f.data.length }))).toEqual(s.frames);
  });

  it.each(streams.map((s) => [s.name, s] as const))('%s: the same at every single split point and one byte at a time', (_n, s) => {
    const all = Buffer.from(s.segments.join(''), 'hex');
    const whole = feedAll([all]).frames.map((f) => f.data.toString('hex'));
    for (let cut = 1; cut < all.length; cut += all.length > 2000 ? 7 : 1) {
      expect(feedAll([all.subarray(0, cut), all.subarray(cut)]).frames.map((f) => f.data.toString('hex'))).toEqual(whole);
    }
    const bytes = [...all].map((b) => Buffer.from([b]));
    expect(feedAll(bytes).frames.map((f) => f.data.toString('hex'))).toEqual(whole);
  });

  it('the user tables decode to the documented records, the record size measured', () => {
    for (const s of streams.filter((x) => x.table)) {
      const t = s.table!;
      const fs = feedAll(s.segments.map((h) => Buffer.from(h, 'hex'))).frames;
      const table = t.frameIndex !== undefined ? fs[t.frameIndex].data : chunkedData(fs);
      if (t.tableHex) expect(table.toString('hex')).toBe(t.tableHex);
      // with the user count from GET_FREE_SIZES, and without it (measured from the data alone)
      for (const count of [t.userCount, undefined]) {
        const { users, recordSize } = decodeUserTable(table, count);
        expect(recordSize).toBe(t.recordSize);
        expect(users).toHaveLength(t.userCount);
        if (t.records) t.records.forEach((r, i) => expectRecord(users[i], r));
        if (t.firstRecords) t.firstRecords.forEach((r, i) => expectRecord(users[i], r));
        if (t.lastRecord) expectRecord(users[users.length - 1], t.lastRecord);
        // every record re-encodes to the bytes it came from
        users.forEach((u, i) => expect(encodeUserRecord(u, recordSize).equals(table.subarray(4 + i * recordSize, 4 + (i + 1) * recordSize))).toBe(true));
      }
    }
  });

  it('the single-template reads reassemble to the documented template data', () => {
    for (const s of streams.filter((x) => x.template)) {
      const fs = feedAll(s.segments.map((h) => Buffer.from(h, 'hex'))).frames;
      const prep = fs.find((f) => f.command === Cmd.PREPARE_DATA)!;
      expect(prep.data.readUInt32LE(0)).toBe(s.template!.dataLength);
      const data = chunkedData(fs);
      expect(data.length).toBe(s.template!.dataLength);
      expect(data.toString('hex')).toBe(s.template!.dataHex);
    }
  });
});

describe('ZK records, events, counters, comm keys', () => {
  it('single records decode, and unknown bytes survive a rewrite', () => {
    for (const r of load('records.json').records as { name: string; recordHex: string; expect: Record<string, unknown> }[]) {
      const rec = Buffer.from(r.recordHex, 'hex');
      const u = decodeUserRecord(rec);
      expect({ uid: u.uid, privilege: u.privilege, password: u.password, name: u.name, card: u.card, group: u.group, userId: u.userId }, r.name).toEqual(r.expect);
      expect(encodeUserRecord(u).equals(rec), r.name).toBe(true);
    }
  });

  it('the captured upload buffer decodes and re-encodes byte-exactly', () => {
    const v = load('upload.json');
    const buf = Buffer.from(v.hex, 'hex');
    const up = decodeUploadBuffer(buf);
    expect([buf.readUInt32LE(0), buf.readUInt32LE(4), buf.readUInt32LE(8)]).toEqual([v.expect.userPart, v.expect.tablePart, v.expect.templatePart]);
    expect({ uid: up.users[0].uid, name: up.users[0].name, userId: up.users[0].userId }).toEqual(v.expect.user);
    expect(up.templates.map((t) => ({ uid: t.uid, finger: t.finger, length: t.template.length }))).toEqual(v.expect.templates);
    expect(encodeUploadBuffer(up.users, up.templates, up.recordSize).equals(buf)).toBe(true);
  });

  it('attendance events of 12 and 32 bytes decode', () => {
    for (const e of load('events.json').events as { name: string; payloadHex: string; userId: string; status: number; punch: number; time: string; size: number }[]) {
      const ev = decodeAttendanceEvent(Buffer.from(e.payloadHex, 'hex'));
      const t = ev.time;
      const p = (n: number) => String(n).padStart(2, '0');
      expect({ userId: ev.userId, status: ev.status, punch: ev.punch, size: ev.size, time: `${t.year}-${p(t.month)}-${p(t.day)} ${p(t.hour)}:${p(t.minute)}:${p(t.second)}` }, e.name).toEqual({
        userId: e.userId,
        status: e.status,
        punch: e.punch,
        size: e.size,
        time: e.time,
      });
    }
  });

  it('GET_FREE_SIZES replies decode to the counters', () => {
    for (const r of load('free-sizes.json').replies as { name: string; ints: number[] }[]) {
      const b = Buffer.alloc(r.ints.length * 4);
      r.ints.forEach((v, i) => b.writeInt32LE(v, i * 4));
      const s = decodeFreeSizes(b);
      expect([s.users, s.fingers, s.records, s.fingerCapacity, s.userCapacity, s.recordCapacity]).toEqual([4, 6, 8, 14, 15, 16].map((i) => r.ints[i]));
    }
    // the first capture: 7 users, 6 fingers, 605 records, capacities 3000 / 10000 / 100000
    const first = (load('free-sizes.json').replies as { ints: number[] }[])[0].ints;
    expect([first[4], first[6], first[8], first[14], first[15], first[16]]).toEqual([7, 6, 605, 3000, 10000, 100000]);
  });

  it('comm keys match every vector', () => {
    const vs = load('commkey.json').vectors as { password: number; session: number; authHex: string }[];
    expect(vs.length).toBeGreaterThanOrEqual(8);
    for (const v of vs) expect(makeCommKey(v.password, v.session).toString('hex'), `${v.password}/${v.session}`).toBe(v.authHex);
  });

  it('the captured AUTH frames carry the comm key computed from their session', () => {
    for (const f of frames.filter((x) => x.command === Cmd.AUTH)) {
      const key = Buffer.from(f.dataHex, 'hex');
      const pw = [45, 12].find((p) => makeCommKey(p, f.session).equals(key));
      expect(pw, f.name).toBeDefined();
    }
  });
});
