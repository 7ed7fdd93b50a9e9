// termsync's ZK client against the ZK simulator over loopback: comm key, device
// info, reads in chunks (frames packed several to a read, and one per read),
// writes with templates, deletes, realtime enroll events with acks, uid maps
// that differ between terminals, timeouts and typed errors for a device that
// misbehaves, and change detection with the tracker (no echo of our writes).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ZkClient, ZkError, type ZkRealtimeEvent } from '../src/drivers/zk/client.js';
import { encodeZkFrame, ZkFrameDecoder } from '../src/drivers/zk/codec.js';
import { Cmd, EventFlag, Reply } from '../src/drivers/zk/constants.js';
import { userToZk, zkToUser } from '../src/drivers/zk/mapping.js';
import { decodeEnrollUserEvent, encodeUserTable, type ZkUser } from '../src/drivers/zk/records.js';
import { ZkChangeTracker, zkUserDigest } from '../src/drivers/zk/tracker.js';
import { userFromJson } from '../src/model/user.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator, type ZkSimulatorOptions } from '../src/sim/zk/simulator.js';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function sim(o: Partial<ZkSimulatorOptions> = {}): Promise<ZkSimulator> {
  const s = await ZkSimulator.start({ terminals: 1, timing: ZERO_ZK_TIMING, control: 0, ...o });
  closers.push(() => s.close());
  return s;
}

async function client(s: ZkSimulator, i = 0, o: { password?: number; timeoutMs?: number } = {}): Promise<ZkClient> {
  const c = await ZkClient.connect({ host: '127.0.0.1', port: s.ports()[i], timeoutMs: 5000, ...o });
  closers.push(() => c.close());
  return c;
}

async function control(s: ZkSimulator, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${s.controlPort}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : undefined };
}

const person = (id: string, extra: Partial<ZkUser> = {}): ZkUser => ({ uid: 0, privilege: 0, password: '', name: `User ${id}`, card: 0, group: 1, userId: id, ...extra });

describe('ZK client against the simulator', () => {
  it('authenticates with the comm key; a wrong key or none is refused', async () => {
    const s = await sim({ password: 123456 });
    const c = await client(s, 0, { password: 123456 });
    const info = await c.deviceInfo();
    expect(info.firmware).toMatch(/^Ver /);
    expect(info.serialNumber).toBe(s.terminals[0].serialNumber);
    expect(info.counts.userCapacity).toBe(s.terminals[0].userCapacity);
    for (const password of [123457, 0]) {
      const err = await ZkClient.connect({ host: '127.0.0.1', port: s.ports()[0], password, timeoutMs: 5000 }).catch((e) => e);
      expect(err).toBeInstanceOf(ZkError);
      expect(err.code).toBe('UNAUTHORIZED');
    }
  });

  it('reads 1500 users over two chunks, with DATA frames packed back to back, and their counters', async () => {
    const s = await sim({ timing: { ...ZERO_ZK_TIMING, frameGapMs: 0 } });
    const t = s.terminals[0];
    for (let i = 1; i <= 1500; i++) await t.enroll({ id: `E${i}`, name: `Name ${i}`, card: 100000 + i, password: String(i % 10000) });
    const c = await client(s);
    const { users, recordSize } = await c.readUsers();
    expect(recordSize).toBe(72);
    expect(users).toHaveLength(1500);
    expect(users[1499]).toMatchObject({ userId: 'E1500', name: 'Name 1500', card: 101500 });
    expect(c.uids.size).toBe(1500);
    expect((await c.freeSizes()).users).toBe(1500);
    expect(c.checksumMismatches).toBe(0);
  });

  it('reads a small table sent as one direct CMD_DATA, and 28-byte records', async () => {
    const s = await sim({ terminals: 2, directDataMax: 4096 });
    await s.terminals[0].enroll({ id: 'd1', name: 'Direct' });
    expect((await (await client(s, 0)).readUsers()).users.map((u) => u.name)).toEqual(['Direct']);
    const s28 = await sim({ recordSize: 28 });
    await s28.terminals[0].enroll({ id: '4711', name: 'Old', card: 65536 });
    const c = await client(s28);
    const r = await c.readUsers();
    expect(r.recordSize).toBe(28);
    expect(r.users[0]).toMatchObject({ userId: '4711', name: 'Old', card: 65536 });
    await c.writeUser(person('4712', { name: 'Older' }));
    expect(s28.terminals[0].userById('4712')?.name).toBe('Older');
    await expect(c.writeUser(person('X1'))).rejects.toMatchObject({ code: 'INVALID' });
  });

  it('writes a user with templates and reads them back in bulk and one by one; deletes by user ID', async () => {
    const s = await sim();
    const c = await client(s);
    await c.readUsers();
    const tpl0 = Buffer.alloc(1243, 0x5a);
    const tpl6 = Buffer.from('4ab15353323100', 'hex');
    const uid = await c.withDisabled(() =>
      c.writeUser(person('2002', { name: 'Bob', card: 987654, password: '42', privilege: 14 }), [
        { finger: 0, flag: 1, template: tpl0 },
        { finger: 6, flag: 1, template: tpl6 },
      ]),
    );
    const t = s.terminals[0];
    expect(t.disabled).toBe(false);
    expect(t.userByUid(uid)).toMatchObject({ userId: '2002', name: 'Bob', card: 987654, password: '42', privilege: 14 });
    const all = await c.readTemplates();
    expect(all.map((x) => [x.uid, x.finger, x.template.length])).toEqual([
      [uid, 0, 1243],
      [uid, 6, 7],
    ]);
    expect((await c.readTemplate(uid, 0))?.equals(tpl0)).toBe(true);
    expect(await c.readTemplate(uid, 3)).toBeUndefined();
    // a rewrite without templates keeps the slot; deleting a template; deleting the user
    await c.writeUser(person('2002', { name: 'Bobby' }));
    expect(t.userByUid(uid)?.name).toBe('Bobby');
    expect(await c.deleteTemplate('2002', 6)).toBe(true);
    expect(t.templatesOf(uid).map((x) => x.finger)).toEqual([0]);
    await c.deleteUser('2002');
    expect(t.userCount).toBe(0);
    await expect(c.deleteUser('2002')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('a user enrolled at the terminal after our read keeps its slot: a new user is never written over it', async () => {
    const s = await sim();
    const t = s.terminals[0];
    const c = await client(s);
    await c.readUsers();
    await t.enroll({ id: 'walk-in', name: 'Enrolled at the device' }); // takes uid 1 behind our back
    const uid = await c.writeUser(person('pushed'));
    expect(uid).toBe(2);
    expect(t.listUsers().map((u) => [u.uid, u.userId])).toEqual([
      [1, 'walk-in'],
      [2, 'pushed'],
    ]);
    // in bulk, with the terminal disabled (nobody can enroll at it), one read serves every new user
    const before = c.tableReads;
    await c.withDisabled(async () => {
      await c.readUsers();
      for (let i = 0; i < 5; i++) await c.writeUser(person(`bulk-${i}`));
    });
    expect(c.tableReads - before).toBe(1);
    expect(t.userCount).toBe(7);
  });

  it('registered for enroll events, a single new user costs one count check, not a table read; a walk-in still forces one', async () => {
    const s = await sim();
    const t = s.terminals[0];
    const c = await client(s);
    await c.registerEvents(EventFlag.ENROLLUSER);
    await c.readUsers();
    const reads = c.tableReads;
    for (let i = 0; i < 3; i++) await c.writeUser(person(`single-${i}`));
    expect(c.tableReads).toBe(reads);
    await t.enroll({ id: 'walk-in' }); // uid 4, announced by EF_ENROLLUSER
    expect(await c.writeUser(person('after-walk-in'))).toBe(5);
    expect(c.tableReads).toBe(reads + 1);
    // a delete at the device raises no event, but the count no longer matches the map
    await t.remove('single-0');
    await c.writeUser(person('after-delete'));
    expect(c.tableReads).toBe(reads + 2);
    expect(t.listUsers().map((u) => u.userId)).toEqual(['single-1', 'single-2', 'walk-in', 'after-walk-in', 'after-delete']);
  });

  it('a refusal by the terminal is a typed error (duplicate card)', async () => {
    const s = await sim();
    await s.terminals[0].enroll({ id: 'a', card: 555 });
    const c = await client(s);
    await c.readUsers();
    await expect(c.writeUser(person('b', { card: 555 }))).rejects.toMatchObject({ code: 'REFUSED', reply: Reply.ACK_ERROR });
  });

  it('a user enrolled at the terminal raises EF_ENROLLUSER, acknowledged; an edit or delete at the terminal raises nothing', async () => {
    const s = await sim();
    const c = await client(s);
    const events: ZkRealtimeEvent[] = [];
    c.on('event', (e: ZkRealtimeEvent) => events.push(e));
    await c.registerEvents(EventFlag.ENROLLUSER | EventFlag.ATTLOG);
    const got = new Promise<ZkRealtimeEvent>((resolve) => c.once('event', resolve));
    const r = await control(s, 'POST', '/terminals/1/users', { id: 'new-1', name: 'Nora', card: 42 });
    expect(r.status).toBe(201);
    const ev = await got;
    expect(ev.flag).toBe(EventFlag.ENROLLUSER);
    expect(decodeEnrollUserEvent(ev.data).uid).toBe(r.json.uid);
    expect((await control(s, 'PATCH', '/terminals/1/users/new-1', { name: 'Nora B' })).status).toBe(200);
    expect((await control(s, 'DELETE', '/terminals/1/users/new-1')).status).toBe(204);
    // a round trip after the edit and delete: any event they raised would have come before its reply
    await c.freeSizes();
    expect(events.map((e) => e.flag)).toEqual([EventFlag.ENROLLUSER]);
    expect(s.terminals[0].acksReceived).toBe(1);
    // a punch raises EF_ATTLOG
    await control(s, 'POST', '/terminals/1/users', { id: 'p1' });
    const att = new Promise<ZkRealtimeEvent>((resolve) => c.on('event', (e: ZkRealtimeEvent) => e.flag === EventFlag.ATTLOG && resolve(e)));
    expect((await control(s, 'POST', '/terminals/1/punches', { userId: 'p1' })).status).toBe(201);
    expect((await att).data.length).toBe(32);
  });

  it('two terminals with different uid numbering: each keeps its own uid map, users stay keyed by user ID', async () => {
    const s = await sim({ terminals: 2, uidStart: [1, 500] });
    await s.terminals[1].enroll({ id: 'resident', name: 'Already here' }); // uid 500 on terminal 2
    const [c1, c2] = [await client(s, 0), await client(s, 1)];
    await c1.readUsers();
    await c2.readUsers();
    const u1 = await c1.writeUser(person('carol', { name: 'Carol' }));
    const u2 = await c2.writeUser(person('carol', { name: 'Carol' }));
    expect(u1).toBe(1);
    expect(u2).toBe(501);
    expect(s.terminals[1].userByUid(501)?.userId).toBe('carol');
    await c2.deleteUser('carol');
    expect(s.terminals[1].userById('resident')).toBeDefined();
    expect(s.terminals[1].userById('carol')).toBeUndefined();
    expect(s.terminals[0].userById('carol')?.uid).toBe(1);
  });

  it('a slow terminal is waited for; a silent one fails the request with TIMEOUT and closes the session', async () => {
    const s = await sim();
    const c = await client(s, 0, { timeoutMs: 1500 });
    await control(s, 'POST', '/terminals/1/faults', { type: 'stall', ms: 300 });
    expect((await c.deviceInfo()).firmware).toMatch(/^Ver /);
    await control(s, 'POST', '/terminals/1/faults', { type: 'blackhole', ms: 60_000 });
    const err = await c.readUsers().catch((e) => e);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect(c.connected).toBe(false);
    await expect(c.freeSizes()).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('a corrupted frame is counted and logged as a checksum mismatch, not dropped', async () => {
    const s = await sim();
    const c = await client(s);
    await control(s, 'POST', '/terminals/1/faults', { type: 'corrupt' });
    await c.freeSizes();
    expect(c.checksumMismatches).toBe(1);
  });

  it('edits and deletes at the terminal are found by read + diff; our own writes do not echo', async () => {
    const s = await sim();
    const t = s.terminals[0];
    await t.enroll({ id: 'e1', name: 'One', card: 11 });
    await t.enroll({ id: 'e2', name: 'Two', card: 22 });
    const c = await client(s);
    const tracker = new ZkChangeTracker();
    const snap = async () => ({ ...(await c.readUsers()), templates: await c.readTemplates() });
    expect(tracker.observe('T1', await snap()).changed.sort()).toEqual(['e1', 'e2']);
    // the server pushes a user (mapped from a termsync record) and remembers what it wrote
    const out = userToZk(userFromJson({ id: 'srv', name: 'From server', cards: [{ type: 1, data: '000f1206' }] }), { uid: 0 });
    const uid = await c.writeUser(out.user, out.templates);
    tracker.noteWritten('T1', 'srv', zkUserDigest({ ...out.user, uid }, []));
    await control(s, 'PATCH', '/terminals/1/users/e1', { name: 'One edited' });
    await control(s, 'DELETE', '/terminals/1/users/e2');
    const d = tracker.observe('T1', await snap());
    expect(d).toMatchObject({ changed: ['e1'], deleted: ['e2'], confirmed: ['srv'] });
    // what the terminal now holds maps back to the termsync user
    const e1 = (await c.readUsers()).users.find((u) => u.userId === 'e1')!;
    expect(zkToUser(e1).user.name).toBe('One edited');
    expect(zkToUser(t.userById('srv')!).user.cards[0].data.toString('hex')).toBe('000f1206');
  });
});

describe('ZK client against a misbehaving device', () => {
  async function fakeDevice(onFrame: (socket: net.Socket, cmd: number, reply: number) => void): Promise<number> {
    const server = net.createServer((sock) => {
      sock.on('data', (b) => {
        // requests here are single frames: command at 8, reply id at 14
        onFrame(sock, b.readUInt16LE(8), b.readUInt16LE(14));
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as net.AddressInfo).port;
  }

  it('an unexpected reply code is a typed error', async () => {
    const port = await fakeDevice((s, cmd, reply) => {
      if (cmd === Cmd.CONNECT) s.write(encodeZkFrame({ command: Reply.ACK_OK, session: 77, reply }));
      else if (cmd === Cmd.GET_FREE_SIZES) s.write(encodeZkFrame({ command: Reply.ACK_UNKNOWN, session: 77, reply }));
      else if (cmd === Cmd.EXIT) s.end(encodeZkFrame({ command: Reply.ACK_OK, session: 77, reply }));
    });
    const c = await ZkClient.connect({ host: '127.0.0.1', port, timeoutMs: 3000 });
    closers.push(() => c.close());
    await expect(c.freeSizes()).rejects.toMatchObject({ name: 'ZkError', code: 'UNEXPECTED_REPLY', reply: Reply.ACK_UNKNOWN });
  });

  it('a frame of an earlier request is skipped; a hostile length ends the session with PROTOCOL', async () => {
    const port = await fakeDevice((s, cmd, reply) => {
      if (cmd === Cmd.CONNECT) s.write(encodeZkFrame({ command: Reply.ACK_OK, session: 9, reply }));
      else if (cmd === Cmd.GET_VERSION) {
        // a stale answer first, then the real one, in one write
        s.write(Buffer.concat([encodeZkFrame({ command: Reply.ACK_OK, session: 9, reply: (reply - 1) & 0xffff }), encodeZkFrame({ command: Reply.ACK_OK, session: 9, reply, data: Buffer.from('Ver 9\0') })]));
      } else if (cmd === Cmd.OPTIONS_RRQ) s.write(Buffer.from('5050827dffffff7f', 'hex'));
    });
    const c = await ZkClient.connect({ host: '127.0.0.1', port, timeoutMs: 3000 });
    closers.push(() => c.destroy());
    const err = await c.deviceInfo().catch((e) => e);
    expect(c.staleFrames).toBe(1);
    expect(err).toMatchObject({ code: 'PROTOCOL' });
    expect(err.message).toMatch(/exceeds the limit/);
  });

  it('no TCP listener, or no answer to CONNECT, are typed errors', async () => {
    const port = await fakeDevice(() => undefined);
    await expect(ZkClient.connect({ host: '127.0.0.1', port, timeoutMs: 300 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
    const freePort = (free.address() as net.AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    await expect(ZkClient.connect({ host: '127.0.0.1', port: freePort, timeoutMs: 1000 })).rejects.toMatchObject({ code: 'CONNECT_FAILED' });
  });
});

describe('the ZK simulator against hostile or odd clients', () => {
  it('a probe connection with no data is harmless; garbage closes only that session; an oversized upload is refused', async () => {
    const s = await sim();
    const port = s.ports()[0];
    const probe = net.connect(port, '127.0.0.1');
    await new Promise((r) => probe.once('connect', r));
    probe.destroy();
    const good = await client(s);
    const bad = net.connect(port, '127.0.0.1');
    const badClosed = new Promise((r) => bad.once('close', r));
    bad.on('error', () => undefined);
    bad.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await badClosed;
    expect((await good.freeSizes()).users).toBe(0);
    // an upload announced beyond the limit is refused before anything is buffered
    const raw = net.connect(port, '127.0.0.1');
    raw.on('error', () => undefined);
    const replies: number[] = [];
    const d = new ZkFrameDecoder();
    const two = new Promise<void>((resolve) =>
      raw.on('data', (b) => {
        for (const f of d.feed(b)) replies.push(f.command);
        if (replies.length >= 2) resolve();
      }),
    );
    await new Promise((r) => raw.once('connect', r));
    const big = Buffer.alloc(4);
    big.writeUInt32LE(0x7fffffff, 0);
    raw.write(Buffer.concat([encodeZkFrame({ command: Cmd.CONNECT, session: 0, reply: 0 }), encodeZkFrame({ command: Cmd.PREPARE_DATA, session: 0, reply: 1, data: big })]));
    await two;
    raw.destroy();
    expect(replies).toEqual([Reply.ACK_OK, Reply.ACK_ERROR]);
  });
});

describe('ZK client and reply ids', () => {
  it('a reply with an id the client never sent is taken and counted (firmware numbering its own way)', async () => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', (b) => {
        const cmd = b.readUInt16LE(8);
        if (cmd === Cmd.CONNECT) sock.write(encodeZkFrame({ command: Reply.ACK_OK, session: 5, reply: 0 }));
        else if (cmd === Cmd.GET_VERSION) sock.write(encodeZkFrame({ command: Reply.ACK_OK, session: 5, reply: 0x4000, data: Buffer.from('Ver X\0') }));
        else sock.write(encodeZkFrame({ command: Reply.ACK_ERROR, session: 5, reply: b.readUInt16LE(14) }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const c = await ZkClient.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, timeoutMs: 3000 });
    closers.push(() => c.destroy());
    await expect(c.freeSizes()).rejects.toMatchObject({ code: 'REFUSED' });
    const info = await c.deviceInfo().catch((e) => e);
    expect(info).toMatchObject({ code: 'REFUSED' }); // GET_FREE_SIZES inside deviceInfo is refused by this device
    expect(c.foreignReplyIds).toBe(1);
  });
});

describe('ZK client and table reads streamed at once', () => {
  it('a table answered to PREPARE_BUFFER with PREPARE_DATA, DATA frames and ACK_OK in one write is read whole', async () => {
    const table = encodeUserTable([person('s1'), person('s2')].map((u, i) => ({ ...u, uid: i + 1 })));
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      const d = new ZkFrameDecoder();
      sock.on('data', (b) => {
        for (const f of d.feed(b)) {
          const r = (command: number, data?: Buffer, session = 3) => encodeZkFrame({ command, session, reply: f.reply, data });
          if (f.command === Cmd.CONNECT) sock.write(r(Reply.ACK_OK));
          else if (f.command === Cmd.GET_FREE_SIZES) {
            const sizes = Buffer.alloc(80);
            sizes.writeInt32LE(2, 16);
            sock.write(r(Reply.ACK_OK, sizes));
          } else if (f.command === Cmd.PREPARE_BUFFER) {
            const head = Buffer.alloc(8);
            head.writeUInt32LE(table.length, 0);
            head.writeUInt32LE(100, 4);
            const frames = [r(Cmd.PREPARE_DATA, head)];
            for (let p = 0, n = 0; p < table.length; p += 100, n++) frames.push(r(Cmd.DATA, table.subarray(p, p + 100), n));
            frames.push(r(Reply.ACK_OK));
            sock.write(Buffer.concat(frames));
          } else sock.write(r(Reply.ACK_OK));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const c = await ZkClient.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, timeoutMs: 3000 });
    closers.push(() => c.close());
    expect((await c.readUsers()).users.map((u) => u.userId)).toEqual(['s1', 's2']);
  });
});
