// Secrets and personal data never reach a log line: every sentinel below is
// logged through the real logger (JSON and pretty) into a buffer, and the
// output is searched for it in every encoding a careless log could use.
import { describe, expect, it } from 'vitest';
import { Command, FrameKind } from '../src/codec/constants.js';
import { encodeFrame } from '../src/codec/frame.js';
import { createLogger, formatPrettyLine, hexRedact } from '../src/log.js';
import { emptyUser, userToJson, type UserRecord } from '../src/model/user.js';

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
function forms(): string[] {
  const out: string[] = [];
  for (const v of Object.values(S)) {
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v);
    out.push(b.toString('utf8'), b.toString('hex'), b.toString('base64'), JSON.stringify([...b]).slice(1, -1));
    out.push('SENTINEL');
  }
  return out;
}

function expectClean(text: string) {
  expect(text.length).toBeGreaterThan(0);
  for (const f of forms()) expect(text, `leaked ${f}`).not.toContain(f);
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
