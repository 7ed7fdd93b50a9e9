// The termsync handshake, written once for both ends (src/drivers/termsync/
// handshake.ts): the two state machines talk to each other through the real
// frame codec, reproduce the golden vectors byte for byte, and refuse every
// wrong step with the frame PROTOCOL.md 4.1 asks for.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  Command,
  FrameDecoder,
  FrameKind,
  Status,
  decodeErrorPayload,
  decodeHello,
  decodeHelloResponse,
  encodeErrorPayload,
  encodeFrame,
  type Frame,
  type FrameInit,
} from '../src/codec/index.js';
import { ServerHandshake, TerminalHandshake, type TerminalAnnouncement } from '../src/drivers/termsync/handshake.js';

interface HandshakeVector {
  name: string;
  hex: string;
  auth?: { commKey: string; deviceId: number; nonceT: string; nonceS: string };
}
const vectors = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'protocol', 'vectors', 'handshake.json'), 'utf8')) as HandshakeVector[];
const vector = (name: string) => vectors.find((v) => v.name === name)!.hex;
const auth = vectors.find((v) => v.auth)!.auth!;
const KEY = Buffer.from(auth.commKey, 'hex');
const OTHER_KEY = Buffer.from('another-site-key-0123456789abcdef');
const helloVector = decodeHello(Buffer.from(vector('HELLO request'), 'hex').subarray(20));
const ANNOUNCE: TerminalAnnouncement = {
  deviceId: helloVector.deviceId,
  maxUsersPerBatch: helloVector.maxUsersPerBatch,
  userCapacity: helloVector.userCapacity,
  logCapacity: helloVector.logCapacity,
  capabilities: helloVector.capabilities,
  model: helloVector.model,
  firmware: helloVector.firmware,
};

/** A frame as the peer reads it: encoded, then decoded by the real stream decoder. */
function wire(f: FrameInit): Frame {
  const frames = new FrameDecoder().feed(encodeFrame(f));
  expect(frames).toHaveLength(1);
  return frames[0];
}
const hex = (f: FrameInit | null) => (f ? encodeFrame(f).toString('hex') : null);

/** the handshake vectors are protocol 1.0 peers (protocol/vectors/handshake.json) */
const V1_0 = { min: 1, max: 1 };

function terminal(o: Partial<ConstructorParameters<typeof TerminalHandshake>[0]> = {}) {
  let seq = 0;
  return new TerminalHandshake({ key: KEY, announce: ANNOUNCE, nextSeq: () => ++seq, nonce: Buffer.from(auth.nonceT, 'hex'), versions: V1_0, ...o });
}
function server(o: Partial<ConstructorParameters<typeof ServerHandshake>[0]> = {}) {
  return new ServerHandshake({ keyFor: (id) => (id === ANNOUNCE.deviceId ? KEY : null), heartbeatSec: 30, nonce: Buffer.from(auth.nonceS, 'hex'), versions: V1_0, ...o });
}

describe('termsync handshake: both ends against the golden vectors', () => {
  it('HELLO, HELLO response, AUTH and AUTH response are the published bytes', () => {
    const t = terminal();
    const s = server();
    const hello = t.hello();
    expect(hex(hello)).toBe(vector('HELLO request'));
    const s1 = s.receive(wire(hello));
    expect(s1.state).toBe('continue');
    expect(hex(s1.send)).toBe(vector('HELLO response with proofS'));
    const t1 = t.receive(wire(s1.send!));
    expect(t1.state).toBe('continue');
    expect(hex(t1.send)).toBe(vector('AUTH request with proofT'));
    const s2 = s.receive(wire(t1.send!));
    expect(s2).toMatchObject({ state: 'done', version: 1, hello: { deviceId: ANNOUNCE.deviceId, model: ANNOUNCE.model } });
    expect(hex(s2.send)).toBe(vector('AUTH response OK'));
    expect(t.receive(wire(s2.send!))).toEqual({ state: 'done', send: null, version: 1, heartbeatSec: 30 });
  });

  it('a terminal with another key: it finds the server proof wrong; if it sends AUTH anyway the server answers AUTH_FAILED', () => {
    const t = terminal({ key: OTHER_KEY });
    const s = server();
    const s1 = s.receive(wire(t.hello()));
    const t1 = t.receive(wire(s1.send!));
    expect(t1).toMatchObject({ state: 'failed', send: null, failure: { reason: 'server-proof', deviceId: ANNOUNCE.deviceId } });
    const s2 = s.receive(wire(t.auth()));
    expect(s2).toMatchObject({ state: 'failed', failure: { reason: 'auth-failed', deviceId: ANNOUNCE.deviceId } });
    expect(hex(s2.send)).toBe(vector('AUTH response AUTH_FAILED'));
    // the failure message never holds key material
    expect(JSON.stringify(s2)).not.toContain(OTHER_KEY.toString('hex'));
  });

  it('no version in common: the server answers UNSUPPORTED_VERSION and the terminal stops', () => {
    const t = terminal({ versions: { min: 2, max: 3 } });
    const s = server();
    const s1 = s.receive(wire(t.hello()));
    expect(s1).toMatchObject({ state: 'failed', failure: { reason: 'version' } });
    expect(hex(s1.send)).toBe(vector('HELLO response UNSUPPORTED_VERSION'));
    expect(t.receive(wire(s1.send!))).toMatchObject({ state: 'failed', failure: { reason: 'refused', message: 'server refused HELLO with UNSUPPORTED_VERSION' } });
  });
});

describe('termsync handshake: versions are parameters', () => {
  it('both ends speaking 1..2 agree on 2; a server speaking only 1 makes them agree on 1', () => {
    const t = terminal({ versions: { min: 1, max: 2 } });
    const s = server({ versions: { min: 1, max: 2 } });
    const h = wire(t.hello());
    expect(decodeHello(h.payload)).toMatchObject({ minVersion: 1, maxVersion: 2 });
    const s1 = s.receive(h);
    expect(decodeHelloResponse(s1.send!.payload!).version).toBe(2);
    const s2 = s.receive(wire(t.receive(wire(s1.send!)).send!));
    expect(s2).toMatchObject({ state: 'done', version: 2 });
    expect(t.receive(wire(s2.send!))).toMatchObject({ state: 'done', version: 2 });

    const t2 = terminal({ versions: { min: 1, max: 2 } });
    const s3 = server().receive(wire(t2.hello()));
    expect(decodeHelloResponse(s3.send!.payload!).version).toBe(1);
    expect(t2.receive(wire(s3.send!))).toMatchObject({ state: 'continue' });
  });

  it('a terminal refuses a version the server chose outside its range with ERROR UNSUPPORTED_VERSION', () => {
    const t = terminal({ versions: { min: 1, max: 1 } });
    const s = server({ versions: { min: 2, max: 2 } });
    // a server that ignores the terminal's range (a broken one): answer version 2 by hand
    const h = wire(t.hello());
    const forged = server({ versions: { min: 1, max: 2 } }).receive(wire({ ...h, payload: Buffer.from(h.payload).fill(2, 5, 6) }));
    const step = t.receive(wire({ ...forged.send!, seq: h.seq }));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'version' } });
    expect(step.send).toMatchObject({ kind: FrameKind.ERROR, status: Status.UNSUPPORTED_VERSION, command: Command.HELLO });
    // and the honest server speaking only 2 refuses this terminal
    expect(s.receive(h)).toMatchObject({ state: 'failed', failure: { reason: 'version' } });
  });
});

describe('termsync handshake: the server refuses every wrong step', () => {
  it('a first frame other than HELLO: ERROR NOT_AUTHENTICATED echoing its seq and command', () => {
    const step = server().receive(wire({ kind: FrameKind.REQUEST, seq: 7, command: Command.GET_INFO }));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'protocol' } });
    expect(step.send).toMatchObject({ kind: FrameKind.ERROR, seq: 7, command: Command.GET_INFO, status: Status.NOT_AUTHENTICATED });
    expect(decodeErrorPayload(step.send!.payload!)).toBe('HELLO expected');
  });

  it('a HELLO that does not decode: ERROR BAD_PAYLOAD', () => {
    const step = server().receive(wire({ kind: FrameKind.REQUEST, seq: 1, command: Command.HELLO, payload: Buffer.alloc(10) }));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'protocol' } });
    expect(step.send).toMatchObject({ kind: FrameKind.ERROR, status: Status.BAD_PAYLOAD });
  });

  it('a device whose key the server does not hold: HELLO answered AUTH_FAILED', () => {
    const step = server({ keyFor: () => null }).receive(wire(terminal().hello()));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'unknown-key', deviceId: ANNOUNCE.deviceId } });
    expect(step.send).toMatchObject({ kind: FrameKind.RESPONSE, command: Command.HELLO, status: Status.AUTH_FAILED });
  });

  it('a command instead of AUTH: ERROR NOT_AUTHENTICATED; a malformed AUTH counts as a wrong proof', () => {
    const s = server();
    s.receive(wire(terminal().hello()));
    const step = s.receive(wire({ kind: FrameKind.REQUEST, seq: 2, command: Command.PUT_USERS, payload: Buffer.alloc(8) }));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'protocol' } });
    expect(step.send).toMatchObject({ kind: FrameKind.ERROR, command: Command.PUT_USERS, status: Status.NOT_AUTHENTICATED });

    const s2 = server();
    s2.receive(wire(terminal().hello()));
    const bad = s2.receive(wire({ kind: FrameKind.REQUEST, seq: 2, command: Command.AUTH, payload: Buffer.alloc(5) }));
    expect(bad).toMatchObject({ state: 'failed', failure: { reason: 'auth-failed' } });
    expect(bad.send).toMatchObject({ kind: FrameKind.RESPONSE, status: Status.AUTH_FAILED });
  });
});

describe('termsync handshake: the terminal refuses every wrong answer', () => {
  it('an ERROR from the server: it stops and sends nothing', () => {
    const t = terminal();
    t.hello();
    const step = t.receive(wire({ kind: FrameKind.ERROR, seq: 1, command: Command.HELLO, status: Status.BUSY, payload: encodeErrorPayload('full') }));
    expect(step).toEqual({ state: 'failed', send: null, failure: { reason: 'refused', message: 'server sent ERROR BUSY during the handshake: full', deviceId: ANNOUNCE.deviceId } });
  });

  it('a request, or an answer with another seq: ERROR NOT_AUTHENTICATED', () => {
    for (const f of [
      { kind: FrameKind.REQUEST, seq: 1, command: Command.GET_INFO },
      { kind: FrameKind.RESPONSE, seq: 9, command: Command.HELLO },
    ]) {
      const t = terminal();
      t.hello();
      const step = t.receive(wire(f));
      expect(step).toMatchObject({ state: 'failed', failure: { reason: 'protocol' } });
      expect(step.send).toMatchObject({ kind: FrameKind.ERROR, seq: f.seq, command: f.command, status: Status.NOT_AUTHENTICATED });
    }
  });

  it('AUTH answered with AUTH_FAILED: it stops', () => {
    const t = terminal();
    const s = server();
    const a = t.receive(wire(s.receive(wire(t.hello())).send!));
    const step = t.receive(wire({ kind: FrameKind.RESPONSE, seq: a.send!.seq, command: Command.AUTH, status: Status.AUTH_FAILED }));
    expect(step).toMatchObject({ state: 'failed', failure: { reason: 'refused', message: 'server rejected AUTH with AUTH_FAILED' } });
  });
});

describe('termsync handshake: written once', () => {
  it('no other source file or test peer computes or checks a proof', () => {
    const root = join(import.meta.dirname, '..');
    const allowed = new Set(['src/codec/auth.ts', 'src/drivers/termsync/handshake.ts']);
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        const rel = `${dir}/${e.name}`;
        if (e.isDirectory()) walk(rel);
        else if (rel.endsWith('.ts') && !allowed.has(rel) && /\b(computeProof|proofEquals)\(/.test(readFileSync(join(root, rel), 'utf8'))) offenders.push(rel);
      }
    };
    walk('src');
    walk('test/helpers');
    expect(offenders).toEqual([]);
  });
});
