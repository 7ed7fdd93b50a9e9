// Secrets and personal data never reach a log line: every sentinel below is
// logged through the real logger (JSON and pretty) into a buffer, and the
// output is searched for it in every encoding a careless log could use.
// Then every terminal driver runs a real session (daemon, simulator, admin
// API, frames logged with --log-frames) at trace level with sentinel users,
// keys and tokens, and every line it logged is searched the same way: the
// table DRIVERS below holds one entry per driver.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { startAdmin } from '../src/admin/server.js';
import { Command, FrameKind, Status } from '../src/codec/constants.js';
import { encodeFrame } from '../src/codec/frame.js';
import { Daemon } from '../src/daemon.js';
import { createLogger, formatPrettyLine, hexRedact } from '../src/log.js';
import { emptyUser, hashPin, userToJson, type UserRecord } from '../src/model/user.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { zkDriver as zkTerminalDriver } from '../src/drivers/zk/driver.js';
import { ZkWatcher, type ZkScan } from '../src/drivers/zk/watcher.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { gsdkDriver as gsdkTerminalDriver } from '../src/drivers/gsdk/driver.js';
import { devicePinHash } from '../src/sim/gsdk/device.js';
import { GsdkSimGateway } from '../src/sim/gsdk/gateway.js';
import { makeGatewayCerts } from '../src/sim/gsdk/certs.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { waitFor } from './helpers/wait.js';

/** A pino destination that keeps what it is given. */
function sink() {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(s) }, text: () => lines.join('') };
}

const S = {
  pin: 'SENTINEL-PIN-4711',
  pinHash: Buffer.from('SENTINEL-PINHASH-0123456789abcde', 'ascii'), // 32 bytes
  photo: Buffer.from('SENTINEL-PHOTO-JPEG-BYTES', 'ascii'),
  card: Buffer.from('SENTINEL-CARD', 'ascii'),
  template: Buffer.from('SENTINEL-FINGER-TEMPLATE', 'ascii'),
  face: Buffer.from('SENTINEL-FACE-DATA', 'ascii'),
  commKey: Buffer.from('SENTINEL-COMM-KEY-bytes!', 'ascii'),
  key: 'SENTINEL-KEY-TEXT',
  token: 'SENTINEL-ADMIN-TOKEN',
};

/** Every form a sentinel could take in output: text, hex, base64, JSON byte arrays. */
function forms(values: (string | Buffer)[] = Object.values(S)): string[] {
  const out: string[] = ['SENTINEL'];
  for (const v of values) {
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v);
    out.push(b.toString('utf8'), b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), JSON.stringify([...b]).slice(1, -1));
  }
  return out;
}

function expectClean(text: string, values?: (string | Buffer)[]) {
  expect(text.length).toBeGreaterThan(0);
  for (const f of forms(values)) expect(text, `leaked ${f}`).not.toContain(f);
}

function sentinelUser(id: string): UserRecord {
  const u = emptyUser(id);
  u.name = 'Ada Example';
  u.pinHash = S.pinHash;
  u.photo = S.photo;
  u.cards = [{ type: 1, data: S.card }];
  u.fingers = [{ index: 0, flag: 1, templates: [S.template, S.template] }];
  u.faces = [{ index: 0, flag: 0, data: S.face }];
  return u;
}

function logEverything(log: ReturnType<typeof createLogger>) {
  const user = sentinelUser('42');
  log.info(user, 'user record at top level');
  log.info({ user }, 'user record nested');
  log.info({ batch: { users: [user, sentinelUser('43')] } }, 'users nested two levels deep in an array');
  log.info({ user: userToJson(user) }, 'user JSON form (hex strings)');
  log.info({ pin: S.pin, json: { id: '44', pin: S.pin } }, 'plain PIN');
  log.warn({ commKey: S.commKey, key: S.key, token: S.token, terminal: 7 }, 'secrets by name');
  log.info({ deep: { a: { b: { c: { token: S.token, headers: { authorization: `Bearer ${S.token}` } } } } } }, 'deep secrets');
  log.info({ raw: S.commKey }, 'a Buffer under an innocent name');
  log.child({ terminal: 9, token: S.token }).info({ cards: [{ type: 2, data: S.card }] }, 'child binding with a secret');
  log.error({ err: new Error('merge failed for user 42') }, 'error still logs');
}

describe('log redaction', () => {
  it('JSON logs never contain PINs, card data, templates, faces, photos, keys or tokens', () => {
    const out = sink();
    const log = createLogger({ level: 'trace', destination: out.stream });
    logEverything(log);
    const text = out.text();
    expectClean(text);

    // ...while what is needed to operate stays readable
    const lines = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(10);
    expect(lines[0]).toMatchObject({ id: '42', name: 'Ada Example', pinHash: '[redacted]', photo: '[redacted]', msg: 'user record at top level' });
    expect(lines[1]).toMatchObject({ user: { id: '42', cards: [{ type: 1, data: '[redacted]' }], fingers: [{ index: 0, templates: '[redacted]' }] } });
    expect(lines[5]).toMatchObject({ terminal: 7, commKey: '[redacted]', key: '[redacted]', token: '[redacted]' });
    expect(lines[7]).toMatchObject({ raw: `<${S.commKey.length} bytes>` });
    expect(lines[8]).toMatchObject({ terminal: 9, token: '[redacted]' });
    expect(lines[9]).toMatchObject({ level: 50, err: { message: 'merge failed for user 42' } });
  });

  it('pretty logs are clean too, and read as HH:MM:SS LEVEL [terminal] msg key=value', () => {
    const out = sink();
    const log = createLogger({ level: 'info', pretty: true, destination: out.stream });
    logEverything(log);
    expectClean(out.text());
    const warn = out.lines.find((l) => l.includes('secrets by name'))!;
    expect(warn).toMatch(/^\d\d:\d\d:\d\d WARN  \[7\] secrets by name commKey=\[redacted\] key=\[redacted\] token=\[redacted\]\n$/);
    const err = out.lines.find((l) => l.includes('error still logs'))!;
    expect(err).toMatch(/^\d\d:\d\d:\d\d ERROR error still logs err="merge failed for user 42"\n {4}Error: merge failed/);
  });

  it('the level filter holds', () => {
    const out = sink();
    const log = createLogger({ level: 'warn', destination: out.stream });
    log.info('hidden');
    log.warn('shown');
    expect(out.lines).toHaveLength(1);
  });

  it('formatPrettyLine leaves non-JSON text alone and quotes values with spaces', () => {
    expect(formatPrettyLine('not json')).toBe('not json');
    const line = JSON.stringify({ level: 30, time: '2024-01-02T03:04:05.000Z', msg: 'hi', a: 'x y', b: 2, c: { d: true } });
    expect(formatPrettyLine(line)).toMatch(/^\d\d:\d\d:\d\d INFO  hi a="x y" b=2 c=\{"d":true\}$/);
  });
});

describe('hexRedact (--log-frames)', () => {
  const header = (f: Buffer) => f.subarray(0, 20).toString('hex');

  it('keeps the 20-byte header and hides the payload of user and auth commands', () => {
    const secret = Buffer.concat([S.pinHash, S.card, S.template]);
    for (const command of [Command.PUT_USERS, Command.GET_USERS, Command.AUTH, Command.HELLO]) {
      const f = encodeFrame({ kind: FrameKind.REQUEST, seq: 5, command, payload: secret });
      const out = hexRedact(f);
      expect(out).toBe(`${header(f)} <${secret.length} bytes redacted>`);
      expectClean(out);
      expect(hexRedact(f.toString('hex'))).toBe(out);
    }
  });

  it('shows other payloads in full, and splits a chunk holding several frames', () => {
    const ack = encodeFrame({ kind: FrameKind.EVENT, seq: 9, command: Command.LOG_ACK, payload: Buffer.from([1, 0, 0, 0]) });
    const put = encodeFrame({ kind: FrameKind.REQUEST, seq: 10, command: Command.PUT_USERS, payload: S.pinHash });
    const ping = encodeFrame({ kind: FrameKind.REQUEST, seq: 11, command: Command.PING });
    expect(hexRedact(Buffer.concat([ack, put, ping]))).toBe(
      `${header(ack)} 01000000 | ${header(put)} <32 bytes redacted> | ${header(ping)}`,
    );
  });

  it('a partial frame or bytes that are no frame never show payload bytes', () => {
    const put = encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.PUT_USERS, payload: S.pinHash });
    expect(hexRedact(put.subarray(0, 30))).toBe(`${header(put)} <10 bytes redacted> (22 of 32 payload bytes not yet received)`);
    expect(hexRedact(S.commKey)).toBe(`<${S.commKey.length} bytes redacted: not a frame header>`);
    expect(hexRedact(put.subarray(0, 12))).toBe(put.subarray(0, 12).toString('hex'));
  });
});

// ------------------------------------------------------------------ drivers

/**
 * One terminal driver's real session, logged at trace level into `log`: the
 * daemon and the driver's terminals (real sockets, real SQLite file) with users
 * carrying `secrets`, run through the driver's whole life (handshake, pulls,
 * pushes, admin writes, a refused key, a stop). A new driver adds one entry to
 * DRIVERS: what its terminals keep that must never be logged (for example a
 * password stored in clear), and how to run it.
 */
interface DriverCase {
  name: string;
  /** values (in clear) that must not appear in any log line, in any encoding */
  secrets: (string | Buffer)[];
  run(log: Logger, dir: string): Promise<void>;
  /** lines every run must log (proves the run logged what it did, not nothing) */
  mustLog: RegExp[];
  /** at least this many lines */
  minLines: number;
}

/** a fingerprint template of the size the model wants, starting with the sentinel (24 bytes: base64 stays aligned) */
const TEMPLATE = Buffer.concat([S.template, Buffer.alloc(384 - S.template.length, 0x5a)]);
// the admin API takes PINs of 4..16 digits: a sentinel made of digits
const ADMIN_PIN = '47114711471147';
const WRONG_KEY = Buffer.from('SENTINEL-WRONG-KEY-bytes', 'ascii');

function wireUser(id: string): UserRecord {
  const u = sentinelUser(id);
  u.fingers = [{ index: 0, flag: 1, templates: [TEMPLATE, TEMPLATE] }];
  u.cards = [{ type: 1, data: Buffer.concat([S.card, Buffer.from(id)]) }];
  return u;
}

const termsyncDriver: DriverCase = {
  name: 'termsync (src/drivers/termsync, src/terminal)',
  secrets: [...Object.values(S), TEMPLATE, hashPin(ADMIN_PIN), ADMIN_PIN, WRONG_KEY, Buffer.concat([S.card, Buffer.from('u1')])],
  minLines: 20,
  mustLog: [/"msg":">"/, /"msg":"<"/, /session authenticated/, /terminal refused during handshake/, /user saved through the admin API/, /admin request refused/],
  async run(log, dir) {
    const sim = await Simulator.start({ terminals: 2, commKey: S.commKey, timing: ZERO_TIMING, logger: log.child({ component: 'sim' }) });
    const ports = sim.ports();
    const daemon = await Daemon.start({
      db: join(dir, 'termsync.db'),
      log,
      commKey: S.commKey,
      terminals: ports.map((port, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port })),
      listen: [{ host: '127.0.0.1', port: 0 }],
      syncMode: 'all',
      heartbeatSec: 1,
      requestTimeoutMs: 5000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      logFrames: true,
    });
    const admin = await startAdmin({ daemon, host: '127.0.0.1', port: 0, token: Buffer.from(S.token), log: log.child({ component: 'admin' }) });
    try {
      const [t1, t2] = sim.terminals;
      // enrolled on a terminal: pulled (GET_USERS), merged, pushed (PUT_USERS) to the other
      await t1.enroll(wireUser('u1'));
      await waitFor(() => t2.getUser('u1') !== undefined, { message: 'u1 did not reach t2' });
      // written through the admin API (a PIN in clear, cards, the token in a header): pushed to both
      const body = { ...userToJson(wireUser('u2')), pin: ADMIN_PIN };
      const res = await fetch(`http://127.0.0.1:${admin.port}/api/users/u2`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${S.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(201);
      await waitFor(() => t1.getUser('u2') !== undefined && t2.getUser('u2') !== undefined, { message: 'u2 was not pushed' });
      // a wrong token, and a terminal with a wrong key: both refused, both logged
      expect((await fetch(`http://127.0.0.1:${admin.port}/api/users`, { headers: { authorization: 'Bearer SENTINEL-WRONG-TOKEN' } })).status).toBe(401);
      const intruder = await FakeTerminal.connect({ port: daemon.listenPorts[0], key: WRONG_KEY, deviceId: 4242 });
      expect(await intruder.handshake()).not.toBe(Status.OK);
      intruder.close();
      // a delete through the API, an edit on the terminal (a field vacant on the server, so it is merged and pushed)
      expect((await fetch(`http://127.0.0.1:${admin.port}/api/users/u2`, { method: 'DELETE', headers: { authorization: `Bearer ${S.token}` } })).status).toBe(204);
      await t1.edit('u1', { phrase: 'open sesame' });
      await waitFor(() => t2.getUser('u2') === undefined && t2.getUser('u1')?.phrase === 'open sesame', { message: 'delete and edit did not sync' });
    } finally {
      await admin.close();
      await daemon.stop(2000);
      await sim.close();
    }
  },
};

// ZK terminals keep the user's password in clear (up to 7 characters in a
// 72-byte record) and the comm key is a number: sentinels of that shape.
const ZK_PASSWORD = '8642097';
const ZK_SERVER_PASSWORD = '5318024';
const ZK_COMM_KEY = 7654321;
const ZK_WRONG_COMM_KEY = 1357913;
const ZK_CARD = 97531864; // a ZK card is a number
const ZK_TEMPLATE = Buffer.concat([Buffer.from('SENTINEL-ZK-FINGER-TEMPL', 'ascii'), Buffer.alloc(40, 0x33)]);

function nextScan(w: ZkWatcher, pred: (s: ZkScan) => boolean = () => true): Promise<ZkScan> {
  return new Promise((resolve) => {
    const on = (s: ZkScan) => {
      if (!pred(s)) return;
      w.off('scan', on);
      resolve(s);
    };
    w.on('scan', on);
  });
}

// the daemon part (a mixed site): a second password and card, set by an edit at a ZK terminal
const ZK_EDIT_PASSWORD = '2468013';
const ZK_EDIT_CARD = 31415926;
/** the card of the user the server writes in the client part (as bytes on the server) */
const ZED_CARD = Buffer.from([0x05, 0xd0, 0x3f, 0x18]);
/** a ZK number as the 4 bytes a careless log could show (either byte order) */
function u32(n: number): Buffer[] {
  const be = Buffer.alloc(4);
  be.writeUInt32BE(n);
  return [be, Buffer.from(be).reverse()];
}

const zkDriver: DriverCase = {
  name: 'zk (src/drivers/zk: client and watcher against the ZK simulator, then the daemon driving ZK and termsync terminals)',
  secrets: [
    ZK_PASSWORD,
    ZK_SERVER_PASSWORD,
    ZK_EDIT_PASSWORD,
    String(ZK_COMM_KEY),
    String(ZK_WRONG_COMM_KEY),
    String(ZK_CARD),
    String(ZK_EDIT_CARD),
    ZED_CARD,
    String(ZED_CARD.readUInt32BE()),
    ...[ZK_COMM_KEY, ZK_WRONG_COMM_KEY, ZK_CARD, ZK_EDIT_CARD].flatMap(u32),
    ZK_TEMPLATE,
    ZK_TEMPLATE.subarray(0, 24), // a 3-byte-aligned prefix: its hex and base64 show inside any longer dump
    hashPin(ZK_PASSWORD),
    hashPin(ZK_SERVER_PASSWORD),
    hashPin(ZK_EDIT_PASSWORD),
    S.photo,
    S.commKey,
  ],
  minLines: 40,
  mustLog: [
    /ZK terminal: connect failed/,
    /ZK frame checksum mismatch/,
    // the daemon part: termsync frames logged (--log-frames), and the ZK terminal with the wrong comm key refused
    /"msg":">"/,
    /"msg":"<"/,
    /refused the comm key/,
  ],
  async run(log, dir) {
    await runZkClient(log);
    await runZkDaemon(log, dir);
  },
};

/** the ZK client and watcher against the ZK simulator directly (the corrupted frame, the edit and delete read back by scans) */
async function runZkClient(log: Logger): Promise<void> {
  const sim = await ZkSimulator.start({ terminals: 1, password: ZK_COMM_KEY, timing: ZERO_ZK_TIMING, logger: log.child({ component: 'zk-sim' }) });
  const port = sim.ports()[0];
  const watcher = (password: number, name: string) =>
    new ZkWatcher({ terminal: name, client: { host: '127.0.0.1', port, password, timeoutMs: 3000, logger: log }, pollMs: 0, reconnectMinMs: 50, reconnectMaxMs: 200, logger: log });
  const w = watcher(ZK_COMM_KEY, 'zk-1');
  const intruder = watcher(ZK_WRONG_COMM_KEY, 'zk-wrong-key');
  try {
    const t = sim.terminals[0];
    // enrolled at the terminal with a password in clear, a card and a template
    await t.enroll({ id: '2001', name: 'Zoe Example', password: ZK_PASSWORD, card: ZK_CARD, fingers: [{ index: 1, template: ZK_TEMPLATE.toString('hex') }] });
    const first = nextScan(w);
    w.start();
    const s0 = await first;
    expect(s0.changed.map((c) => c.extras.password)).toEqual([ZK_PASSWORD]);
    // the server writes a user whose PIN the terminal stores as a password in clear
    const u = userFromJsonWithPin('2002', ZK_SERVER_PASSWORD);
    await w.putUser(u, { level: 0, group: 1, password: ZK_SERVER_PASSWORD, templates: [{ finger: 2, flag: 1, template: ZK_TEMPLATE }] });
    expect(t.userById('2002')?.password).toBe(ZK_SERVER_PASSWORD);
    // a corrupted frame (used anyway, logged), an edit and a delete at the terminal, read back
    t.corruptNextFrame();
    await t.edit('2001', { name: 'Zoe Edited' });
    await w.scan().catch(() => undefined);
    await t.remove('2002');
    await w.scan().catch(() => undefined);
    // a client with the wrong comm key: refused, logged
    const refused = new Promise<void>((r) => {
      const iv = setInterval(() => {
        if (logSeen(log, /connect failed/)) {
          clearInterval(iv);
          r();
        }
      }, 20);
    });
    intruder.start();
    await Promise.race([refused, new Promise((r) => setTimeout(r, 5000))]);
  } finally {
    await intruder.stop();
    await w.stop();
    await sim.close();
  }
}

/**
 * The real daemon with the ZK driver registered, at trace level with frames
 * logged: two ZK terminals and a termsync terminal, and a third ZK terminal
 * dialled with the wrong comm key. A user with a password in clear, a card and
 * fingerprint templates is enrolled at zk1, pulled, merged and pushed to zk2
 * and t1; an edit at zk2 (password and card) is found by the poll, merged and
 * pushed on.
 */
async function runZkDaemon(log: Logger, dir: string): Promise<void> {
  const ts = await Simulator.start({ terminals: 1, commKey: S.commKey, timing: ZERO_TIMING, logger: log.child({ component: 'sim' }) });
  const zk = await ZkSimulator.start({ terminals: 3, password: ZK_COMM_KEY, timing: ZERO_ZK_TIMING, logger: log.child({ component: 'zk-sim' }) });
  const zkKeys = [ZK_COMM_KEY, ZK_COMM_KEY, ZK_WRONG_COMM_KEY];
  const daemon = await Daemon.start({
    db: join(dir, 'zk-site.db'),
    log,
    commKey: S.commKey,
    terminals: [
      { id: 't1', host: '127.0.0.1', port: ts.ports()[0] },
      ...zk.ports().map((port, i) => ({ id: `zk${i + 1}`, host: '127.0.0.1', port, protocol: 'zk', key: Buffer.from(String(zkKeys[i])) })),
    ],
    drivers: [zkTerminalDriver({ pollSec: 0.2, requestTimeoutMs: 5000, log })],
    syncMode: 'all',
    heartbeatSec: 1,
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    logFrames: true,
  });
  try {
    const [zk1, zk2, zk3] = zk.terminals;
    const t1 = ts.terminals[0];
    const online = (ids: string[]) => ids.every((id) => daemon.terminals().find((t) => t.id === id)?.state === 'online');
    await waitFor(() => online(['t1', 'zk1', 'zk2']), { timeoutMs: 15_000, message: 'terminals did not come online' });
    // enrolled at zk1: a password in clear, a card, two fingerprint templates
    await zk1.enroll({
      id: '2101',
      name: 'Zoe Example',
      password: ZK_PASSWORD,
      card: ZK_CARD,
      fingers: [
        { index: 1, flag: 1, template: ZK_TEMPLATE.toString('hex') },
        { index: 2, flag: 1, template: ZK_TEMPLATE.toString('hex') },
      ],
    });
    const templatesAt = (t: typeof zk2) => {
      const u = t.userById('2101');
      return u ? t.templatesOf(u.uid).filter((x) => x.template.equals(ZK_TEMPLATE)).length : 0;
    };
    await waitFor(() => zk2.userById('2101')?.password === ZK_PASSWORD && templatesAt(zk2) === 2 && t1.getUser('2101')?.cards.length === 1, {
      timeoutMs: 20_000,
      message: 'user 2101 (password, templates, card) did not reach zk2 and t1',
    });
    expect(daemon.store.getUser('2101')!.pinHash.equals(hashPin(ZK_PASSWORD))).toBe(true);
    expect(t1.getUser('2101')!.cards[0].data.equals(u32(ZK_CARD)[0])).toBe(true);
    // an edit at zk2 (no event: found by the poll) filling fields vacant on the server, merged and pushed on
    await zk1.enroll({ id: '2102', name: 'Yan Example' });
    await waitFor(() => zk2.userById('2102') !== undefined && t1.getUser('2102') !== undefined, { timeoutMs: 20_000, message: 'user 2102 did not sync' });
    await zk2.edit('2102', { password: ZK_EDIT_PASSWORD, card: ZK_EDIT_CARD });
    await waitFor(() => zk1.userById('2102')?.password === ZK_EDIT_PASSWORD && t1.getUser('2102')?.cards.length === 1, { timeoutMs: 20_000, message: 'the edit at zk2 did not sync' });
    expect(daemon.store.getUser('2102')!.pinHash.equals(hashPin(ZK_EDIT_PASSWORD))).toBe(true);
    // the terminal dialled with the wrong comm key: refused, logged, never written to
    await waitFor(() => logSeen(log, /refused the comm key/), { timeoutMs: 10_000, message: 'the wrong comm key was not logged' });
    expect(daemon.terminals().find((t) => t.id === 'zk3')?.state).not.toBe('online');
    expect(zk3.userCount).toBe(0);
  } finally {
    await daemon.stop(2000);
    await ts.close();
    await zk.close();
  }
}

function userFromJsonWithPin(id: string, pin: string): UserRecord {
  const u = emptyUser(id);
  u.name = 'Zed Example';
  u.pinHash = hashPin(pin);
  u.cards = [{ type: 1, data: ZED_CARD }];
  u.photo = S.photo;
  return u;
}

const GSDK_PIN = 'SENTINEL-PIN-42';
const GSDK_CARD2 = Buffer.from('SENTINEL-CARD-2', 'ascii');
const GSDK_TEMPLATE = Buffer.concat([S.template, Buffer.alloc(384 - S.template.length, 0x5a)]);

const gsdkDriver: DriverCase = {
  name: 'gsdk (src/drivers/gsdk: the daemon with Suprema terminals behind the mock device gateway, TLS, faults, and a termsync terminal)',
  secrets: [GSDK_PIN, devicePinHash(Buffer.from(GSDK_PIN)), S.card, GSDK_CARD2, S.template, GSDK_TEMPLATE, S.photo, S.pinHash, S.commKey],
  minLines: 20,
  mustLog: [/Suprema terminal connected through the device gateway/, /G-SDK realtime stream broke/, /"msg":">"/],
  async run(log, dir) {
    const certs = makeGatewayCerts();
    const gw = await GsdkSimGateway.start({ devices: [{ deviceID: 4101, ip: '10.4.0.1' }, { deviceID: 4102, ip: '10.4.0.2' }], cert: certs.cert, key: certs.key });
    const ts = await Simulator.start({ terminals: 1, commKey: S.commKey, timing: ZERO_TIMING, logger: log.child({ component: 'sim' }) });
    const driver = gsdkTerminalDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: certs.ca, requestTimeoutMs: 5000, logCheckMs: 200, log });
    const daemon = await Daemon.start({
      db: join(dir, 'gsdk-site.db'),
      log,
      commKey: S.commKey,
      terminals: [
        { id: 't1', host: '127.0.0.1', port: ts.ports()[0] },
        { id: 'gsdk-4101', host: '10.4.0.1', port: 51211, protocol: 'gsdk' },
        { id: 'gsdk-4102', host: '127.0.0.1', port: gw.port, protocol: 'gsdk' },
      ],
      drivers: [driver],
      syncMode: 'all',
      heartbeatSec: 1,
      requestTimeoutMs: 5000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      logFrames: true,
    });
    try {
      const online = (ids: string[]) => ids.every((id) => daemon.terminals().find((t) => t.id === id)?.state === 'online');
      await waitFor(() => online(['t1', 'gsdk-4101', 'gsdk-4102']), { timeoutMs: 15_000, message: 'terminals did not come online' });
      // enrolled at a Suprema terminal: a PIN, a card, fingerprint templates, a photo
      gw.device(4101).enroll({ id: '4201', name: 'Ada Example', pin: GSDK_PIN, cards: [{ data: S.card.toString('hex') }], fingers: [{ index: 1, templates: [GSDK_TEMPLATE.toString('hex'), GSDK_TEMPLATE.toString('hex')] }], photo: S.photo.toString('hex') });
      await waitFor(() => gw.device(4102).user('4201') !== undefined && ts.terminals[0].getUser('4201') !== undefined, { timeoutMs: 20_000, message: 'user 4201 did not sync' });
      // the server writes a user with a PIN hash; the stream breaks; calls fail for a while
      const u = emptyUser('4202');
      u.name = 'Bea Example';
      u.pinHash = S.pinHash;
      u.photo = S.photo;
      u.cards = [{ type: 2, data: GSDK_CARD2 }];
      gw.breakStreams();
      gw.failNext(3);
      daemon.putUser(u);
      gw.device(4102).edit('4201', { name: 'Ada Edited', pin: GSDK_PIN });
      await waitFor(() => gw.device(4101).user('4202') !== undefined && gw.device(4102).user('4202') !== undefined, { timeoutMs: 20_000, message: 'user 4202 did not sync' });
      await waitFor(() => logSeen(log, /G-SDK realtime stream broke/), { timeoutMs: 10_000, message: 'the stream break was not logged' });
    } finally {
      await daemon.stop(2000);
      driver.close();
      await gw.close();
      await ts.close();
    }
  },
};

/** the lines logged so far through a logger made by sentinelLogger() */
const seenLines = new WeakMap<object, string[]>();
function logSeen(log: Logger, re: RegExp): boolean {
  return (seenLines.get(log) ?? []).some((l) => re.test(l));
}

// One entry per terminal driver. A driver in src/drivers/ without an entry here is a gap (see the last test).
const DRIVERS: DriverCase[] = [termsyncDriver, zkDriver, gsdkDriver];

describe('every terminal driver logs no secret or personal data', () => {
  for (const d of DRIVERS) {
    it(`${d.name}: a whole session at trace level, frames included`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'termsync-sentinel-'));
      const out = sink();
      const log = createLogger({ level: 'trace', destination: out.stream });
      seenLines.set(log, out.lines);
      try {
        await d.run(log, dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const text = out.text();
      if (process.env.SENTINEL_DUMP) (await import('node:fs')).writeFileSync(process.env.SENTINEL_DUMP, text);
      expect(out.lines.length).toBeGreaterThanOrEqual(d.minLines);
      for (const re of d.mustLog) expect(text, `nothing logged matching ${re}`).toMatch(re);
      expectClean(text, d.secrets);
      // the pretty form too
      expectClean(out.lines.map((l) => formatPrettyLine(l.trimEnd())).join('\n'), d.secrets);
    }, 60_000);
  }

  it('every driver in src/drivers has an entry', async () => {
    const { readdirSync } = await import('node:fs');
    const present = readdirSync(join(import.meta.dirname, '..', 'src', 'drivers'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    const covered = DRIVERS.map((d) => d.name.split(' ')[0]);
    expect(present.filter((p) => !covered.includes(p))).toEqual([]);
  });
});
