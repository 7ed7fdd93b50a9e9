// The ZK frame codec and record layouts: checksum, streaming decoder (splits,
// several frames per read, bounds before allocation, mismatches counted), comm
// key, both user record sizes with the size measured, unknown bytes carried,
// templates, uploads, events; corrupted frames give typed errors only.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeZkFrame, encodeZkFrame, makeCommKey, zkChecksum, ZkFrameDecoder, ZkProtocolError, type ZkFrame } from '../src/drivers/zk/codec.js';
import { Cmd, Reply, ZK_MAX_PAYLOAD } from '../src/drivers/zk/constants.js';
import {
  decodeAttendanceEvent,
  decodeEnrollUserEvent,
  decodeTemplateTable,
  decodeUploadBuffer,
  decodeUserRecord,
  decodeUserTable,
  decodeZkTime,
  encodeAttendanceEvent,
  encodeTemplateTable,
  encodeUploadBuffer,
  encodeUserRecord,
  encodeUserTable,
  encodeZkTime,
  readChunks,
  truncateUtf8,
  type ZkUser,
} from '../src/drivers/zk/records.js';

const frame = (command: number, data = Buffer.alloc(0), session = 0x1234, reply = 7) => encodeZkFrame({ command, session, reply, data });

function collect(d: ZkFrameDecoder, chunks: Buffer[]): ZkFrame[] {
  const out: ZkFrame[] = [];
  for (const c of chunks) out.push(...d.feed(c));
  return out;
}

describe('checksum', () => {
  it('is the inverted ones-complement sum with end-around carry, odd byte low', () => {
    // header 0b00 ???? f38d 0300 + "ZKFaceVersion\0": stored 5a17 in the notes of an F19 terminal
    const p = Buffer.from('0b000000f38d03005a4b4661636556657273696f6e00', 'hex');
    expect(zkChecksum(p)).toBe(0x175a);
    // odd length: the last byte counts as a low byte
    const odd = Buffer.from('d0070000f38d0a0009', 'hex');
    expect(zkChecksum(odd)).toBe(0x6a29);
  });

  it('a frame the encoder made verifies; one flipped bit is caught and counted, the frame still delivered', () => {
    const f = frame(Cmd.OPTIONS_RRQ, Buffer.from('~SerialNumber\0'));
    expect(decodeZkFrame(f).checksumOk).toBe(true);
    const bad = Buffer.from(f);
    bad[bad.length - 2] ^= 0x01;
    const d = new ZkFrameDecoder();
    const got = d.feed(bad);
    expect(got).toHaveLength(1);
    expect(got[0].checksumOk).toBe(false);
    expect(d.checksumMismatches).toBe(1);
  });
});

describe('streaming decoder', () => {
  const frames = [frame(Reply.ACK_OK), frame(Cmd.PREPARE_DATA, Buffer.from('b4130000f0030000', 'hex'), 0x3c5c, 8), frame(Cmd.DATA, Buffer.alloc(1008, 0xab), 0, 8), frame(Cmd.DATA, Buffer.alloc(3, 1), 1, 8), frame(Reply.ACK_OK, undefined, 1, 8)];
  const all = Buffer.concat(frames);

  it('several frames in one read', () => {
    const got = collect(new ZkFrameDecoder(), [all]);
    expect(got.map((f) => f.command)).toEqual([Reply.ACK_OK, Cmd.PREPARE_DATA, Cmd.DATA, Cmd.DATA, Reply.ACK_OK]);
    expect(got[2].data.length).toBe(1008);
  });

  it('split at every point, in three pieces, and one byte at a time', () => {
    const want = collect(new ZkFrameDecoder(), [all]).map((f) => f.data.toString('hex') + f.command);
    for (let i = 1; i < all.length; i++) {
      const d = new ZkFrameDecoder();
      expect(collect(d, [all.subarray(0, i), all.subarray(i)]).map((f) => f.data.toString('hex') + f.command)).toEqual(want);
      expect(d.buffered).toBe(0);
    }
    fc.assert(
      fc.property(fc.integer({ min: 1, max: all.length - 1 }), fc.integer({ min: 1, max: all.length - 1 }), (a, b) => {
        const [x, y] = a < b ? [a, b] : [b, a];
        const got = collect(new ZkFrameDecoder(), [all.subarray(0, x), all.subarray(x, y), all.subarray(y)]);
        expect(got.map((f) => f.data.toString('hex') + f.command)).toEqual(want);
      }),
    );
    expect(collect(new ZkFrameDecoder(), [...all].map((b) => Buffer.from([b]))).map((f) => f.data.toString('hex') + f.command)).toEqual(want);
  });

  it('keeps only the partial frame (nothing allocated for a length it refuses)', () => {
    const d = new ZkFrameDecoder({ maxPayload: 4096 });
    const head = Buffer.from('5050827d', 'hex');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(0xfffffff0, 0);
    expect(() => d.feed(Buffer.concat([head, len]))).toThrowError(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
    expect(d.buffered).toBe(0);
    // the decoder stays failed
    expect(() => d.feed(frame(Reply.ACK_OK))).toThrow(ZkProtocolError);
  });

  it('refuses a wrong magic as soon as its first byte arrives, and a length shorter than the header', () => {
    expect(() => new ZkFrameDecoder().feed(Buffer.from([0x51]))).toThrowError(expect.objectContaining({ code: 'BAD_MAGIC' }));
    const short = Buffer.from('5050827d04000000d0070000', 'hex');
    expect(() => new ZkFrameDecoder().feed(short)).toThrowError(expect.objectContaining({ code: 'LENGTH_TOO_SMALL' }));
    expect(ZK_MAX_PAYLOAD).toBeGreaterThanOrEqual(65_472 + 8);
  });

  it('fast-check: corrupting bytes of valid frames gives frames or typed errors, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ cmd: fc.integer({ min: 0, max: 0xffff }), data: fc.uint8Array({ maxLength: 300 }) }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.record({ at: fc.nat(), val: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 64 }),
        (fs, flips, step) => {
          const bytes = Buffer.concat(fs.map((f) => frame(f.cmd, Buffer.from(f.data))));
          for (const fl of flips) bytes[fl.at % bytes.length] = fl.val;
          const d = new ZkFrameDecoder({ maxPayload: 4096 });
          try {
            for (let p = 0; p < bytes.length; p += step) {
              for (const f of d.feed(bytes.subarray(p, p + step))) {
                expect(f.data.length).toBeLessThanOrEqual(4096);
                expect(typeof f.checksumOk).toBe('boolean');
              }
            }
          } catch (e) {
            expect(e).toBeInstanceOf(ZkProtocolError);
          }
          expect(d.checksumMismatches).toBeLessThanOrEqual(d.frames);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('fast-check: record and table decoders give typed errors on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (arr) => {
        const b = Buffer.from(arr);
        for (const dec of [decodeUserTable, decodeTemplateTable, decodeUploadBuffer, decodeAttendanceEvent, decodeEnrollUserEvent]) {
          try {
            dec(b);
          } catch (e) {
            expect(e, dec.name).toBeInstanceOf(ZkProtocolError);
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('comm key', () => {
  it('matches the captured AUTH data and wraps instead of failing on overflow', () => {
    expect(makeCommKey(45, 0x45cf).toString('hex')).toBe('61c9323c');
    expect(makeCommKey(12, 0x45cf).toString('hex')).toBe('614d323c');
    // reversed(0x7fffffff) + session passes 2^32: wraps like the device's C code
    expect(makeCommKey(0x7fffffff, 0xffff)).toHaveLength(4);
    expect(makeCommKey(45, 0x1234).equals(makeCommKey(46, 0x1234))).toBe(false);
  });
});

const bob: ZkUser = { uid: 2, privilege: 14, password: '42', name: 'Bob', card: 987654, group: 0, userId: '2002' };

describe('user records', () => {
  it('72-byte records round-trip, fields at their offsets', () => {
    const r = encodeUserRecord(bob, 72);
    expect(r.length).toBe(72);
    expect(r.readUInt32LE(35)).toBe(987654);
    expect(r.subarray(48, 52).toString()).toBe('2002');
    const back = decodeUserRecord(r);
    expect({ ...back, raw: undefined }).toEqual({ ...bob, raw: undefined });
  });

  it('28-byte records round-trip with a numeric user id; a non-numeric one is refused with a clear error', () => {
    const u = { ...bob, name: 'Bob', password: '42' };
    const r = encodeUserRecord(u, 28);
    expect(r.length).toBe(28);
    expect(r.readUInt32LE(24)).toBe(2002);
    expect({ ...decodeUserRecord(r), raw: undefined }).toEqual({ ...u, raw: undefined });
    expect(() => encodeUserRecord({ ...u, userId: 'A12' }, 28)).toThrowError(/numeric user id/);
  });

  it('the table record size is measured from the data: 28-byte tables and 72-byte tables, with and without the count', () => {
    const users: ZkUser[] = Array.from({ length: 18 }, (_, i) => ({ ...bob, uid: i + 1, userId: String(3000 + i), name: `U${i}` }));
    for (const size of [28, 72] as const) {
      const t = encodeUserTable(users, size);
      expect(decodeUserTable(t, users.length).recordSize).toBe(size);
      // 18 x 28 = 504 = 7 x 72: the layout is told apart by what the records hold
      expect(decodeUserTable(t).recordSize).toBe(size);
      expect(decodeUserTable(t).users.map((u) => u.userId)).toEqual(users.map((u) => u.userId));
    }
    expect(() => decodeUserTable(Buffer.from('0500000001020304ff', 'hex'))).toThrowError(expect.objectContaining({ code: 'BAD_TABLE' }));
    expect(() => decodeUserTable(Buffer.from('ffff000001', 'hex'))).toThrowError(expect.objectContaining({ code: 'BAD_TABLE' }));
  });

  it('unknown bytes are carried through unchanged when a record is rewritten', () => {
    // password "444", then garbage after its NUL; own-timezone flag and timezones at 40..47
    const rec = Buffer.from('0d000034343400c69a807c4e6564000000000000000000000000000000000000000000de000000020100010002000000353535000000000000000000000000000000000000000000', 'hex');
    const u = decodeUserRecord(rec);
    const renamed = encodeUserRecord({ ...u, name: 'Nedda', card: 0xdf });
    expect(renamed.subarray(7, 11).toString('hex')).toBe('c69a807c');
    expect(renamed.subarray(40, 48).equals(rec.subarray(40, 48))).toBe(true);
    expect(decodeUserRecord(renamed).name).toBe('Nedda');
    expect(renamed.readUInt32LE(35)).toBe(0xdf);
  });

  it('names are cut at a character boundary; too long a field is refused by the encoder', () => {
    expect(truncateUtf8('Zoë Šťastná-Ångström', 23)).toBe('Zoë Šťastná-Ångstr');
    expect(Buffer.byteLength(truncateUtf8('ééééééééééééé', 23))).toBe(22);
    expect(() => encodeUserRecord({ ...bob, name: 'x'.repeat(24) })).toThrowError(/longer than 23 bytes/);
  });
});

describe('templates, uploads, events, time', () => {
  const tpls = [
    { uid: 3, finger: 0, flag: 1, template: Buffer.alloc(40, 0xaa) },
    { uid: 3, finger: 6, flag: 3, template: Buffer.alloc(30, 0xbb) },
  ];

  it('the template table round-trips', () => {
    expect(decodeTemplateTable(encodeTemplateTable(tpls))).toEqual(tpls);
    expect(() => decodeTemplateTable(Buffer.from('0a00000003000300010001', 'hex'))).toThrowError(expect.objectContaining({ code: 'BAD_TABLE' }));
  });

  it('the upload buffer lays out head, users, index and templates', () => {
    const buf = encodeUploadBuffer([{ ...bob, uid: 3, userId: '3003', name: 'Carol' }], tpls);
    expect([buf.readUInt32LE(0), buf.readUInt32LE(4), buf.readUInt32LE(8)]).toEqual([73, 16, 74]);
    const back = decodeUploadBuffer(buf);
    expect(back.templates.map((t) => [t.finger, t.template.length])).toEqual([
      [0, 40],
      [6, 30],
    ]);
    expect(back.users[0].userId).toBe('3003');
  });

  it('attendance events of 12 and 32 bytes, and EF_ENROLLUSER', () => {
    const time = { year: 2026, month: 11, day: 27, hour: 10, minute: 5, second: 59 };
    const e12 = encodeAttendanceEvent({ userId: '4822257', status: 0, punch: 1, time }, 12);
    const e32 = encodeAttendanceEvent({ userId: 'A-17', status: 15, punch: 0, time }, 32);
    expect([e12.length, e32.length]).toEqual([12, 32]);
    expect(decodeAttendanceEvent(e12)).toEqual({ userId: '4822257', status: 0, punch: 1, time, size: 12 });
    expect(decodeAttendanceEvent(e32)).toEqual({ userId: 'A-17', status: 15, punch: 0, time, size: 32 });
    expect(decodeEnrollUserEvent(Buffer.from([0x2c, 0x01]))).toEqual({ uid: 300 });
  });

  it('device time uses 31-day months and round-trips', () => {
    const t = { year: 2018, month: 12, day: 7, hour: 19, minute: 9, second: 6 };
    expect(decodeZkTime(encodeZkTime(t))).toEqual(t);
  });

  it('reads are cut in 65,472-byte chunks without an empty last one', () => {
    expect(readChunks(65_472 * 2).map((c) => c.size)).toEqual([65_472, 65_472]);
    expect(readChunks(70_000)).toEqual([
      { start: 0, size: 65_472 },
      { start: 65_472, size: 4528 },
    ]);
    expect(readChunks(0)).toEqual([]);
  });
});
