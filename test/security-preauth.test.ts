// Hostile peers on the daemon's terminal listener, before and after
// authentication: only the handshake is accepted before AUTH; a wrong comm key
// closes the session and repeated failures block the address; silent and
// trickling connections are closed by an absolute handshake deadline; per-address
// and global connection caps hold, and real terminals still get in during a flood
// of 1,000 connections from one address; an authenticated terminal that sends
// corrupt or hostile frames loses its session with a logged reason while the
// daemon and every other session go on.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Command, FrameKind, HEADER_SIZE, MAGIC0, MAGIC1, MAX_PAYLOAD, PROTOCOL_VERSION, Status, encodeFrame, encodeLogEvent } from '../src/codec/index.js';
import { EventCode, ORIGIN_DEVICE } from '../src/codec/constants.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { person, prng } from './helpers/faults.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await site?.close();
  site = undefined;
});

const DEADLINE_MS = 1000;

/** A site whose daemon also listens for terminals that dial in, with every log line kept. */
async function listeningSite(extra: Record<string, unknown> = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  site = await startSite({
    terminals: 1,
    daemon: { log, listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, handshakeDeadlineMs: DEADLINE_MS, maxConnsPerAddress: 8, maxConns: 40, ...extra },
  });
  return { s: site, port: site.daemon.listenPorts[0], lines };
}

async function fake(port: number, o: { localAddress?: string; deviceId?: number; key?: Buffer } = {}): Promise<FakeTerminal> {
  const f = await FakeTerminal.connect({ port, key: o.key ?? DEV_COMM_KEY, localAddress: o.localAddress, deviceId: o.deviceId });
  cleanups.push(() => f.close());
  return f;
}

function rawSocket(port: number, localAddress?: string): Promise<{ socket: net.Socket; closed: Promise<number>; bytes: () => number }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let n = 0;
    socket.on('data', (c: Buffer) => (n += c.length));
    socket.on('error', () => {});
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    cleanups.push(() => socket.destroy());
    socket.once('connect', () => resolve({ socket, closed, bytes: () => n }));
    socket.once('error', reject);
  });
}

describe('before authentication', () => {
  it('only HELLO then AUTH are accepted; anything else is refused and the connection closed at once', async () => {
    const { port, s } = await listeningSite();
    // a request other than HELLO
    const a = await fake(port);
    const t0 = Date.now();
    a.send({ kind: FrameKind.REQUEST, seq: 1, command: Command.GET_INFO });
    const ea = await a.waitFrame(() => true);
    expect([ea.kind, ea.status]).toEqual([FrameKind.ERROR, Status.NOT_AUTHENTICATED]);
    await a.closed;
    // an event
    const b = await fake(port);
    b.send({ kind: FrameKind.EVENT, seq: 1, command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: 1, events: [{ id: 1, dateTime: 0, deviceId: 9001, userId: 'x', code: EventCode.USER_ENROLL_SUCCESS, param: ORIGIN_DEVICE, flags: 0 }] }) });
    expect((await b.waitFrame(() => true)).status).toBe(Status.NOT_AUTHENTICATED);
    await b.closed;
    // HELLO, then a command instead of AUTH
    const c = await fake(port);
    c.send(c.helloFrame());
    await c.waitFrame((f) => f.command === Command.HELLO);
    c.send({ kind: FrameKind.REQUEST, seq: 2, command: Command.PUT_USERS, payload: Buffer.alloc(8) });
    expect((await c.waitFrame((f) => f.command === Command.PUT_USERS)).status).toBe(Status.NOT_AUTHENTICATED);
    await c.closed;
    // a HELLO larger than the 256 bytes allowed before authentication
    const d = await fake(port);
    d.send({ kind: FrameKind.REQUEST, seq: 1, command: Command.HELLO, payload: Buffer.alloc(300, 1) });
    expect((await d.waitFrame(() => true)).status).toBe(Status.FRAME_TOO_LARGE);
    await d.closed;
    for (const f of [a, b, c, d]) expect(f.closedAt - t0).toBeLessThan(DEADLINE_MS);
    // none of them became a terminal
    expect(s.daemon.terminals().map((t) => t.id)).toEqual(['t1']);
  });

  it('a wrong comm key is refused and closes the session; five failures block the address, others still get in', async () => {
    const { port, s } = await listeningSite();
    const wrong = Buffer.from('not-the-site-key-not-the-site-key');
    for (let i = 0; i < 5; i++) {
      const f = await fake(port, { localAddress: '127.0.0.3', key: wrong });
      expect(await f.handshake()).toBe(Status.AUTH_FAILED);
      await f.closed;
    }
    // the right key from the blocked address: closed before a word is said
    const blocked = await fake(port, { localAddress: '127.0.0.3', deviceId: 9002 });
    blocked.send(blocked.helloFrame());
    await blocked.closed;
    expect(blocked.received).toEqual([]);
    // the right key from another address
    const good = await fake(port, { localAddress: '127.0.0.1', deviceId: 9002 });
    expect(await good.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().some((t) => t.id === '9002' && t.state === 'online'));
    expect(s.daemon.terminals().some((t) => t.id === '9001')).toBe(false);
  });

  it('a silent connection and a slowloris HELLO are both closed at the absolute handshake deadline', async () => {
    const { port } = await listeningSite();
    const silent = await rawSocket(port);
    const trickle = await rawSocket(port);
    const t0 = Date.now();
    const hello = (await fake(port)).helloFrame();
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < hello.length && !trickle.socket.destroyed) trickle.socket.write(hello.subarray(sent, ++sent));
    }, 40);
    cleanups.push(() => clearInterval(drip));
    const [a, b] = await Promise.all([silent.closed, trickle.closed]);
    clearInterval(drip);
    for (const at of [a, b]) {
      expect(at - t0).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
      expect(at - t0).toBeLessThanOrEqual(DEADLINE_MS + 500);
    }
    expect(sent).toBeGreaterThan(10); // bytes kept coming until the end, and did not buy time
    expect(sent).toBeLessThan(hello.length);
    expect(silent.bytes()).toBe(0);
    expect(trickle.bytes()).toBe(0);
  });

  it('per-address and global connection caps: the connection over a cap is closed at once', async () => {
    const DEADLINE_MS = 4000; // long enough to hold 40 connections open while the caps are tested
    const { port } = await listeningSite({ handshakeDeadlineMs: DEADLINE_MS });
    const held: Awaited<ReturnType<typeof rawSocket>>[] = [];
    for (let i = 0; i < 8; i++) held.push(await rawSocket(port, '127.0.0.4'));
    const t0 = Date.now();
    const ninth = await rawSocket(port, '127.0.0.4');
    expect((await ninth.closed) - t0).toBeLessThan(DEADLINE_MS / 2);
    // another address still gets in
    const other = await rawSocket(port, '127.0.0.5');
    // fill the global cap of 40 (8 + 1 held so far) from further addresses
    for (let a = 6; held.length + 1 < 40; a++) for (let i = 0; i < 8 && held.length + 1 < 40; i++) held.push(await rawSocket(port, `127.0.0.${a}`));
    const t1 = Date.now();
    const over = await rawSocket(port, '127.0.0.30');
    expect((await over.closed) - t1).toBeLessThan(DEADLINE_MS / 2);
    // every held connection was accepted (none of them closed yet)
    expect(Date.now() - t0).toBeLessThan(DEADLINE_MS);
    expect(await Promise.race([other.closed, new Promise((r) => setTimeout(() => r('open'), 50))])).toBe('open');
  });

  it('real terminals get in during a flood of 1,000 connections from one address', async () => {
    const { port, s } = await listeningSite({ maxConns: 2000 });
    let stop = false;
    let refused = 0;
    let opened = 0;
    const flood = (): void => {
      if (stop) return;
      const c = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
      opened++;
      const start = Date.now();
      c.on('error', () => {});
      c.once('close', () => {
        if (Date.now() - start < 200) refused++;
        setTimeout(flood, 100);
      });
    };
    for (let i = 0; i < 1000; i++) flood();
    cleanups.push(() => void (stop = true));
    await waitFor(() => refused > 500, { timeoutMs: 30_000, message: 'the flood was not refused' });
    const real = await Simulator.start({ terminals: 3, deviceIdBase: 3000, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port }, reconnect: { minMs: 50, maxMs: 500 } });
    cleanups.push(() => real.close());
    await waitFor(() => ['3001', '3002', '3003'].every((id) => s.daemon.terminals().some((t) => t.id === id && t.state === 'online')), { timeoutMs: 15_000, message: 'real terminals did not get in during the flood' });
    await real.terminals[0].enroll(person('flood-1'));
    await waitFor(() => s.sim.terminals[0].getUser('flood-1') !== undefined, { timeoutMs: 10_000 });
    stop = true;
    expect(opened).toBeGreaterThanOrEqual(1000);
  }, 90_000);
});

describe('hostile frames in an authenticated session', () => {
  const cases: { name: string; reason: RegExp; bytes: (f: FakeTerminal) => Buffer | 'end-mid-frame' | 'garbage-info' }[] = [
    { name: 'bad magic', reason: /protocol error/, bytes: () => Buffer.concat([Buffer.from('XX'), randomBytes(30)]) },
    {
      name: 'bad checksum',
      reason: /protocol error/,
      bytes: (f) => {
        const b = encodeFrame({ kind: FrameKind.EVENT, seq: f.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: f.logEpoch, events: [{ id: 1, dateTime: 0, deviceId: f.deviceId, userId: 'x', code: EventCode.LINK_CONNECTED, param: 0, flags: 0 }] }) });
        b[b.length - 1] ^= 0x55;
        return b;
      },
    },
    {
      name: 'a header announcing more than 1 MiB',
      reason: /protocol error/,
      bytes: () => {
        const h = Buffer.alloc(HEADER_SIZE);
        h[0] = MAGIC0;
        h[1] = MAGIC1;
        h[2] = PROTOCOL_VERSION;
        h[3] = FrameKind.EVENT;
        h.writeUInt32LE(7, 4);
        h.writeUInt16LE(Command.LOG_EVENT, 8);
        h.writeUInt32LE(MAX_PAYLOAD + 1, 12);
        return h;
      },
    },
    { name: 'a LOG_EVENT whose payload is garbage', reason: /bad LOG_EVENT/, bytes: (f) => encodeFrame({ kind: FrameKind.EVENT, seq: f.nextSeq(), command: Command.LOG_EVENT, payload: randomBytes(37) }) },
    { name: 'an ERROR frame for the whole stream', reason: /stream error/, bytes: (f) => encodeFrame({ kind: FrameKind.ERROR, seq: 0, command: 0, status: Status.BAD_FRAME, payload: Buffer.from('bye') }) },
    { name: 'the stream ending inside a frame', reason: /ended inside a frame|closed by peer/, bytes: () => 'end-mid-frame' },
    { name: 'a GET_INFO answer that does not decode', reason: /catch-up failed/, bytes: () => 'garbage-info' },
  ];

  it('each hostile frame ends only its own session, with a logged reason; the daemon and the other sessions go on', async () => {
    const { port, s, lines } = await listeningSite();
    for (const [k, c] of cases.entries()) {
      const deviceId = 9100 + k;
      const f = await fake(port, { deviceId });
      if (c.bytes(f) === 'garbage-info') f.serve = false;
      expect(await f.handshake()).toBe(Status.OK);
      const what = c.bytes(f);
      if (what === 'garbage-info') {
        const req = await f.waitFrame((x) => x.command === Command.GET_INFO);
        f.send({ kind: FrameKind.RESPONSE, seq: req.seq, command: Command.GET_INFO, payload: randomBytes(11) });
      } else {
        await f.waitFrame((x) => x.command === Command.SUBSCRIBE_LOG); // the session is live and subscribed
        await s.daemon.engine.idle();
        if (what === 'end-mid-frame') {
          const b = encodeFrame({ kind: FrameKind.EVENT, seq: f.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: f.logEpoch, events: [{ id: 1, dateTime: 0, deviceId: f.deviceId, userId: 'x', code: EventCode.LINK_CONNECTED, param: 0, flags: 0 }] }) });
          f.socket.end(b.subarray(0, b.length - 3));
        } else f.send(what);
      }
      await f.closed;
      const id = String(deviceId);
      await waitFor(() => s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: id }).length === 1, { message: `${c.name}: no TERMINAL_OFFLINE` });
      const [off] = s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: id });
      expect(JSON.parse(off.detail!).reason, c.name).toMatch(c.reason);
      expect(lines.some((l) => l.terminal === id && l.msg === 'terminal offline' && c.reason.test(String(l.reason))), `${c.name}: reason logged`).toBe(true);
    }
    // the dialled terminal never noticed
    expect(s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 't1' })).toEqual([]);
    s.daemon.putUser(person('still-fine'));
    await s.waitConverged({ users: ['still-fine'] });
  });

  it('fuzz (seed 0xf00d): 150 mutated frames from authenticated terminals never bring the daemon down', async () => {
    const { port, s } = await listeningSite();
    const rnd = prng(0xf00d);
    const ev = (id: number) => ({ id, dateTime: 1_700_000_000 + id, deviceId: 9200, userId: `fz${id}`, code: EventCode.USER_ENROLL_SUCCESS, param: ORIGIN_DEVICE, flags: 0 });
    const template = (f: FakeTerminal): Buffer => {
      switch (rnd.int(4)) {
        case 0:
          return encodeFrame({ kind: FrameKind.EVENT, seq: f.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: f.logEpoch, events: [1, 2, 3].map(ev) }) });
        case 1:
          return encodeFrame({ kind: FrameKind.RESPONSE, seq: 1 + rnd.int(5), command: Command.GET_USERS, payload: randomBytes(rnd.int(64)) });
        case 2:
          return encodeFrame({ kind: FrameKind.REQUEST, seq: f.nextSeq(), command: rnd.int(0x40), payload: randomBytes(rnd.int(32)) });
        default:
          return randomBytes(1 + rnd.int(80));
      }
    };
    let closedByDaemon = 0;
    for (let round = 0; round < 15; round++) {
      const batch = await Promise.all(
        Array.from({ length: 10 }, async (_, k) => {
          const f = await fake(port, { deviceId: 9200 + k, localAddress: `127.0.1.${k + 1}` });
          expect(await f.handshake()).toBe(Status.OK);
          await f.waitFrame((x) => x.command === Command.SUBSCRIBE_LOG);
          const b = Buffer.from(template(f));
          for (let m = 1 + rnd.int(4); m > 0 && b.length > 0; m--) b[rnd.int(b.length)] ^= 1 + rnd.int(255);
          f.send(b);
          return f;
        }),
      );
      await new Promise((r) => setTimeout(r, 150));
      for (const f of batch) {
        if (f.isClosed) closedByDaemon++;
        f.close();
      }
      await Promise.all(batch.map((f) => f.closed));
    }
    expect(closedByDaemon).toBeGreaterThan(0);
    // every session that ended has its reason on record
    for (const e of s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', limit: 10_000 })) expect(JSON.parse(e.detail!).reason).toMatch(/\S/);
    expect(s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 't1' })).toEqual([]);
    s.daemon.putUser(person('after-fuzz'));
    await s.waitConverged({ users: ['after-fuzz'] });
    expect(s.daemon.store.healthy()).toBe(true);
  });
});
