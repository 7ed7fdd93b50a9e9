// The simulator as a server sees it: driven only through the codec over real
// loopback sockets (test/helpers/sim-client.ts does the server's half).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Command,
  EventCode,
  FrameKind,
  InfoMask,
  ORIGIN_SERVER,
  Status,
  decodeErrorPayload,
  encodeFrame,
  encodeUser,
  userDigest,
} from '../src/codec/index.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator, type SimulatorOptions } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SimClient } from './helpers/sim-client.js';

const key = DEV_COMM_KEY;
let sim: Simulator | undefined;
const clients: SimClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await sim?.close();
  sim = undefined;
});

async function start(o: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING, ...o });
  return sim;
}

async function connect(port: number, extra: Partial<Parameters<typeof SimClient.connect>[1]> = {}): Promise<SimClient> {
  const c = await SimClient.connect(port, { key, ...extra });
  clients.push(c);
  return c;
}

function person(id: string, extra: Record<string, unknown> = {}): UserRecord {
  return userFromJson({ id, name: `Person ${id}`, ...extra });
}

function card(hex: string) {
  return { type: 1, data: hex };
}

describe('handshake', () => {
  it('the terminal speaks first with its identity, then authenticates and serves GET_INFO', async () => {
    const s = await start({ terminals: 2, deviceIdBase: 7000, userCapacity: 500, logCapacity: 64, maxUsersPerBatch: 50 });
    const c = await connect(s.ports()[1]);
    expect(c.hello).toMatchObject({ deviceId: 7002, minVersion: 1, maxVersion: 2, maxUsersPerBatch: 50, userCapacity: 500, logCapacity: 64 });
    expect(c.hello.nonce.length).toBe(16);
    const info = await c.getInfo();
    expect(info).toMatchObject({ deviceId: 7002, userCount: 0, userCapacity: 500, firstEventId: 0, lastEventId: 0, logCapacity: 64, maxUsersPerBatch: 50 });
    expect(info.logEpoch).not.toBe(0);
    expect(Math.abs(info.time - Date.now() / 1000)).toBeLessThan(60);
    expect(s.terminals[1].connected).toBe(true);
    expect(s.terminals[0].connected).toBe(false);
    // PING works and BYE closes
    const ping = await c.request(Command.PING);
    expect([ping.kind, ping.status]).toEqual([FrameKind.RESPONSE, 0]);
    await c.bye();
    expect(c.isClosed).toBe(true);
  });

  it('a server that does not hold the key (wrong proofS) is dropped before AUTH', async () => {
    const s = await start();
    const { client, error } = await SimClient.tryConnect(s.ports()[0], { key, wrongServerProof: true });
    clients.push(client);
    expect(error?.message).toMatch(/closed the connection/);
    await client.closed;
    // no AUTH was ever sent
    expect(client.received.filter((f) => f.command === Command.AUTH)).toHaveLength(0);
    expect(s.terminals[0].connected).toBe(false);
  });

  it('a terminal with another key fails the server\'s proof check; AUTH_FAILED makes it close', async () => {
    const s = await start();
    const other = Buffer.from('another-site-key-0123456789abcdef');
    // the server (other key) sees a wrong proofS from its own point of view: the terminal closes
    const a = await SimClient.tryConnect(s.ports()[0], { key: other });
    clients.push(a.client);
    expect(a.error).toBeDefined();
    await a.client.closed;
    // a server with the right key that answers AUTH_FAILED anyway: the terminal closes too
    const b = await SimClient.tryConnect(s.ports()[0], { key, authStatus: Status.AUTH_FAILED });
    clients.push(b.client);
    expect(b.error?.message).toMatch(/AUTH answered/);
    await b.client.closed;
    expect(s.terminals[0].connected).toBe(false);
    // and the terminal still serves a proper server afterwards
    const c = await connect(s.ports()[0]);
    expect((await c.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('requests before authentication get NOT_AUTHENTICATED and the connection is closed', async () => {
    const s = await start();
    const sock = net.connect({ host: '127.0.0.1', port: s.ports()[0] });
    const chunks: Buffer[] = [];
    sock.on('data', (d) => chunks.push(d));
    await new Promise((r) => sock.once('connect', r));
    sock.write(encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.GET_INFO }));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(chunks);
    // first frame: the terminal's HELLO; then an ERROR NOT_AUTHENTICATED echoing our request
    const helloLen = 20 + all.readUInt32LE(12);
    const err = all.subarray(helloLen);
    expect(err[3]).toBe(FrameKind.ERROR);
    expect(err.readInt16LE(10)).toBe(Status.NOT_AUTHENTICATED);
    expect(err.readUInt16LE(8)).toBe(Command.GET_INFO);
  });
});

describe('event log', () => {
  it('GET_LOG pages through the log in ascending order', async () => {
    const s = await start();
    const t = s.terminals[0];
    for (let i = 1; i <= 25; i++) await t.enroll(person(`u${i}`));
    const c = await connect(s.ports()[0]);
    const seen: number[] = [];
    let after = 0;
    for (;;) {
      const page = await c.getLog(after, 10);
      expect(page.logEpoch).toBe(t.ring.logEpoch);
      expect(page.firstEventId).toBe(1);
      expect(page.lastEventId).toBe(25);
      if (page.events.length === 0) break;
      expect(page.events.length).toBeLessThanOrEqual(10);
      seen.push(...page.events.map((e) => e.id));
      after = page.events[page.events.length - 1].id;
    }
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const first = (await c.getLog(0, 1)).events[0];
    expect(first).toMatchObject({ id: 1, userId: 'u1', code: EventCode.USER_ENROLL_SUCCESS, param: 1, deviceId: t.deviceId });
  });

  it('the ring overwrites the oldest events: capacity 10, 15 events -> firstEventId 6', async () => {
    const s = await start({ logCapacity: 10 });
    for (let i = 1; i <= 15; i++) await s.terminals[0].enroll(person(`r${i}`));
    const c = await connect(s.ports()[0]);
    const info = await c.getInfo();
    expect([info.firstEventId, info.lastEventId]).toEqual([6, 15]);
    const page = await c.getLog(0, 1000);
    expect(page.firstEventId).toBe(6);
    expect(page.events.map((e) => e.id)).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(page.events[0].userId).toBe('r6');
    // a server whose cursor fell behind sees the gap: firstEventId > afterId + 1
    const behind = await c.getLog(3, 100);
    expect(behind.firstEventId).toBeGreaterThan(3 + 1);
    expect(behind.events[0].id).toBe(6);
  });
});

describe('users', () => {
  it('PUT_USERS answers per record; the good ones are stored with flag 0 and logged with param 0', async () => {
    const s = await start();
    const t = s.terminals[0];
    const c = await connect(s.ports()[0]);
    const good = person('alice', { cards: [card('01020304')] });
    const broken = encodeUser(person('bob'));
    broken[32] = 9; // formatVersion 9: not a valid record
    const carol = person('carol');
    // a record that claims 9 cards is invalid whatever follows
    const nine = person('dave', { cards: Array.from({ length: 8 }, (_, i) => card(`aa${i}0`)) });
    const nineRec = encodeUser(nine);
    nineRec[38] = 9;
    const statuses = await c.putUsers([good, broken, carol, nineRec, person('eve', { cards: [card('01020304')] })]);
    expect(statuses).toEqual([Status.OK, Status.INVALID_USER, Status.OK, Status.INVALID_USER, Status.DUPLICATE_CARD]);
    expect(t.userCount).toBe(2);
    const [alice] = await c.getUsers(['alice']);
    expect(alice).toMatchObject({ id: 'alice', name: 'Person alice', flag: 0, version: 0 }); // the version the server sent
    const log = await c.getLog(0);
    expect(log.events.map((e) => [e.userId, e.code, e.param])).toEqual([
      ['alice', EventCode.USER_ENROLL_SUCCESS, ORIGIN_SERVER],
      ['carol', EventCode.USER_ENROLL_SUCCESS, ORIGIN_SERVER],
    ]);
    // overwrite=0 refuses an existing ID; overwrite=1 replaces and logs an update, keeping the server's version
    expect(await c.putUsers([person('alice')], false)).toEqual([Status.DUPLICATE_USER_ID]);
    expect(await c.putUsers([{ ...person('alice', { name: 'Alice B' }), version: 77 }], true)).toEqual([Status.OK]);
    const [alice2] = (await c.getUsers(['alice'])) as UserRecord[];
    expect(alice2.name).toBe('Alice B');
    expect(alice2.cards).toEqual([]); // a stored record replaces the whole user
    expect(alice2.version).toBe(77);
    expect((await c.getLog(2)).events.map((e) => [e.userId, e.code, e.param])).toEqual([['alice', EventCode.USER_UPDATE_SUCCESS, 0]]);
    // the card freed by the replacement can now go to eve
    expect(await c.putUsers([person('eve', { cards: [card('01020304')] })])).toEqual([Status.OK]);
  });

  it('USER_FULL when the terminal is full; replacing an existing user still works', async () => {
    const s = await start({ userCapacity: 2 });
    const c = await connect(s.ports()[0]);
    expect(await c.putUsers([person('a'), person('b'), person('c')])).toEqual([Status.OK, Status.OK, Status.USER_FULL]);
    expect(await c.putUsers([person('a', { name: 'A2' })])).toEqual([Status.OK]);
    expect((await c.getInfo()).userCount).toBe(2);
  });

  it('more records than maxUsersPerBatch is a malformed request; the session continues', async () => {
    const s = await start({ maxUsersPerBatch: 2 });
    const c = await connect(s.ports()[0]);
    await expect(c.putUsers([person('a'), person('b'), person('c')])).rejects.toThrow(/status -3/);
    expect((await c.getInfo()).userCount).toBe(0);
  });

  it('GET_USERS returns records in request order with USER_NOT_FOUND, honouring infoMask', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await c.putUsers([person('x', { cards: [card('0a0b')], phrase: 'hello' }), person('y')]);
    const got = await c.getUsers(['y', 'nobody', 'x']);
    expect((got[0] as UserRecord).id).toBe('y');
    expect(got[1]).toBe(Status.USER_NOT_FOUND);
    expect((got[2] as UserRecord).cards[0].data.toString('hex')).toBe('0a0b');
    const [nameOnly] = (await c.getUsers(['x'], InfoMask.DATA | InfoMask.NAME)) as UserRecord[];
    expect(nameOnly.name).toBe('Person x');
    expect(nameOnly.cards).toEqual([]);
    expect(nameOnly.phrase).toBe('');
  });

  it('LIST_USERS pages in user-ID byte order with digests of the canonical record', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    const ids = ['b', 'a b', 'a', 'ab', 'a,c', 'Z', '10', '9', 'é'];
    await c.putUsers(ids.map((id) => person(id)));
    const expected = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const got: string[] = [];
    let after = '';
    for (;;) {
      const page = await c.listUsers(after, 4);
      expect(page.total).toBe(ids.length);
      got.push(...page.entries.map((e) => e.userId));
      if (!page.more) break;
      after = page.entries[page.entries.length - 1].userId;
    }
    expect(got).toEqual(expected);
    const [entry] = (await c.listUsers('', 1)).entries;
    const [rec] = (await c.getUsers([entry.userId])) as UserRecord[];
    expect(entry.digest.equals(userDigest(rec))).toBe(true);
    expect([entry.flag, entry.version]).toEqual([0, 0]); // stored as the server sent it
  });

  it('DELETE_USERS deletes per ID, logs param 0, and answers USER_NOT_FOUND for strangers', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await c.putUsers([person('a'), person('b')]);
    expect(await c.deleteUsers(['a', 'zzz'])).toEqual([Status.OK, Status.USER_NOT_FOUND]);
    expect((await c.getInfo()).userCount).toBe(1);
    const last = (await c.getLog(2)).events;
    expect(last.map((e) => [e.userId, e.code, e.param])).toEqual([['a', EventCode.USER_DELETE_SUCCESS, 0]]);
  });
});

describe('malformed input', () => {
  it('an unknown command or a bad payload gets an ERROR and the session continues', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    const unknown = await c.request(0x0777);
    expect([unknown.kind, unknown.status, unknown.command]).toEqual([FrameKind.ERROR, Status.UNKNOWN_COMMAND, 0x0777]);
    const bad = await c.request(Command.GET_LOG, Buffer.from([1, 2, 3]));
    expect([bad.kind, bad.status]).toEqual([FrameKind.ERROR, Status.BAD_PAYLOAD]);
    expect(decodeErrorPayload(bad.payload).length).toBeGreaterThan(0);
    expect((await c.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('garbage bytes close that session with an ERROR; other terminals keep serving', async () => {
    const s = await start({ terminals: 2 });
    const bad = await connect(s.ports()[0]);
    const good = await connect(s.ports()[1]);
    bad.sendRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await bad.closed;
    const err = bad.received.find((f) => f.kind === FrameKind.ERROR);
    expect(err?.status).toBe(Status.BAD_FRAME);
    expect(s.terminals[0].connected).toBe(false);
    expect((await good.getInfo()).deviceId).toBe(s.terminals[1].deviceId);
    // the terminal that received garbage accepts a proper server again
    const again = await connect(s.ports()[0]);
    expect((await again.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('a frame with a wrong CRC gets BAD_CHECKSUM and the session is closed', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    const f = encodeFrame({ kind: FrameKind.REQUEST, seq: 99, command: Command.PING });
    f[16] ^= 1;
    c.sendRaw(f);
    await c.closed;
    expect(c.received.find((x) => x.kind === FrameKind.ERROR)?.status).toBe(Status.BAD_CHECKSUM);
  });
});

describe('one command at a time per terminal, terminals in parallel', () => {
  it('pipelined requests to one terminal are answered in order; another terminal answers meanwhile', async () => {
    const s = await start({ terminals: 2, timing: { ...ZERO_TIMING, perCommandMs: 150 } });
    const a = await connect(s.ports()[0]);
    const b = await connect(s.ports()[1]);
    const order: string[] = [];
    const a1 = a.getInfo().then(() => order.push('a1'));
    const a2 = a.getInfo().then(() => order.push('a2'));
    const b1 = b.getInfo().then(() => order.push('b1'));
    await Promise.all([a1, a2, b1]);
    // b waits only for its own 150 ms; a's second request waits behind a's first
    expect(order.indexOf('a1')).toBeLessThan(order.indexOf('a2'));
    expect(order.indexOf('b1')).toBeLessThan(order.indexOf('a2'));
  });
});
