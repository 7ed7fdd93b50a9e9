// The termsync handshake (PROTOCOL.md 4.1), written once for both ends:
//
//   terminal                               server
//   HELLO {deviceId, versions, nonceT} -->
//                                     <--  HELLO response {version, heartbeatSec, nonceS, proofS}
//   (checks proofS; closes if wrong)
//   AUTH {proofT}                      -->
//                                     <--  AUTH response (OK, or AUTH_FAILED and close)
//
// Two small state machines over the codec, with no I/O and no timers: each takes
// the frames that arrive and says which frame to send and whether the handshake
// goes on, is done, or failed (with a reason safe to log). The sockets, the
// absolute deadline and the pre-authentication payload limit stay with the
// caller: the server session (connection.ts), the simulator's
// terminal (src/sim/session.ts) and the test peers (test/helpers).
//
// The protocol versions are parameters (default: the codec's constants), so a
// new protocol version changes the constants, not this file.
import { randomBytes } from 'node:crypto';
import {
  Command,
  FrameKind,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  NONCE_BYTES,
  PROOF_LABEL_SERVER,
  PROOF_LABEL_TERMINAL,
  PROTOCOL_VERSION,
  Status,
  computeProof,
  decodeAuth,
  decodeErrorPayload,
  decodeHello,
  decodeHelloResponse,
  encodeAuth,
  encodeErrorPayload,
  encodeHello,
  encodeHelloResponse,
  proofEquals,
  statusName,
  type Frame,
  type FrameInit,
  type Hello,
} from '../../codec/index.js';

export interface VersionRange {
  min: number;
  max: number;
}

export interface VersionOptions {
  /** protocol versions this end speaks (default MIN_PROTOCOL_VERSION..MAX_PROTOCOL_VERSION) */
  versions?: VersionRange;
  /** the version byte in the header of handshake frames (default PROTOCOL_VERSION) */
  frameVersion?: number;
}

/** Why a handshake did not complete. */
export type HandshakeFailureReason =
  /** a frame that is not the next step of the handshake, or one that does not decode */
  | 'protocol'
  /** no protocol version in common */
  | 'version'
  /** server: it holds no comm key for the terminal's device ID */
  | 'unknown-key'
  /** server: the terminal's proof is wrong (another comm key) */
  | 'auth-failed'
  /** terminal: the server's proof is wrong (it does not hold this terminal's key) */
  | 'server-proof'
  /** terminal: the server answered HELLO or AUTH with a status other than OK, or sent ERROR */
  | 'refused';

export interface HandshakeFailure {
  reason: HandshakeFailureReason;
  /** what happened, for the log; never holds key material */
  message: string;
  deviceId?: number;
}

/** What to do with a frame received during the handshake. `send` goes on the wire before anything else. */
export type HandshakeStep<Done> =
  | { state: 'continue'; send: FrameInit }
  | ({ state: 'done'; send: FrameInit | null } & Done)
  | { state: 'failed'; send: FrameInit | null; failure: HandshakeFailure };

function errorFrame(seq: number, command: number, status: number, message: string, version: number): FrameInit {
  return { kind: FrameKind.ERROR, seq, command, status, version, payload: encodeErrorPayload(message) };
}

function errorText(payload: Buffer): string {
  try {
    return decodeErrorPayload(payload);
  } catch {
    return '(unreadable message)';
  }
}

const hex = (c: number) => `0x${c.toString(16)}`;

// ----------------------------------------------------------------- server

export interface ServerHandshakeOptions extends VersionOptions {
  /** the comm key for a device ID, or null when the server holds none for it */
  keyFor: (deviceId: number) => Buffer | null;
  /** announced to the terminal in the HELLO response */
  heartbeatSec: number;
  /** nonceS (default 16 random bytes; fixed only to reproduce vectors) */
  nonce?: Buffer;
}

export interface ServerDone {
  hello: Hello;
  /** the negotiated protocol version */
  version: number;
}

/** The server's side: feed it the terminal's frames in order until it is done or failed. */
export class ServerHandshake {
  private state: 'hello' | 'auth' | 'over' = 'hello';
  private hello: Hello | null = null;
  private key: Buffer | null = null;
  private version = 0;
  private readonly nonceS: Buffer;
  private readonly range: VersionRange;
  private readonly frameVersion: number;

  constructor(private readonly o: ServerHandshakeOptions) {
    this.nonceS = o.nonce ?? randomBytes(NONCE_BYTES);
    this.range = o.versions ?? { min: MIN_PROTOCOL_VERSION, max: MAX_PROTOCOL_VERSION };
    this.frameVersion = o.frameVersion ?? PROTOCOL_VERSION;
  }

  /** The terminal's HELLO once received (for logs about a failed AUTH). */
  get deviceId(): number | undefined {
    return this.hello?.deviceId;
  }

  receive(f: Frame): HandshakeStep<ServerDone> {
    if (this.state === 'hello') return this.onHello(f);
    if (this.state === 'auth') return this.onAuth(f);
    throw new Error('ServerHandshake: the handshake is over');
  }

  private fail(send: FrameInit | null, reason: HandshakeFailureReason, message: string): HandshakeStep<ServerDone> {
    this.state = 'over';
    return { state: 'failed', send, failure: { reason, message, deviceId: this.hello?.deviceId } };
  }

  private response(f: Frame, status: number, payload?: Buffer): FrameInit {
    return { kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, status, version: this.frameVersion, payload };
  }

  private onHello(f: Frame): HandshakeStep<ServerDone> {
    if (f.kind !== FrameKind.REQUEST || f.command !== Command.HELLO)
      return this.fail(errorFrame(f.seq, f.command, Status.NOT_AUTHENTICATED, 'HELLO expected', this.frameVersion), 'protocol', `expected HELLO, got kind ${f.kind} command ${hex(f.command)}`);
    let hello: Hello;
    try {
      hello = decodeHello(f.payload);
    } catch (e) {
      return this.fail(errorFrame(f.seq, f.command, Status.BAD_PAYLOAD, (e as Error).message, this.frameVersion), 'protocol', `bad HELLO: ${(e as Error).message}`);
    }
    this.hello = hello;
    const { min, max } = this.range;
    const version = Math.min(hello.maxVersion, max);
    if (version < Math.max(hello.minVersion, min))
      return this.fail(this.response(f, Status.UNSUPPORTED_VERSION), 'version', `terminal speaks versions ${hello.minVersion}..${hello.maxVersion}, server ${min}..${max}`);
    const key = this.o.keyFor(hello.deviceId);
    if (!key) return this.fail(this.response(f, Status.AUTH_FAILED), 'unknown-key', `no comm key for device ${hello.deviceId}`);
    this.key = key;
    this.version = version;
    this.state = 'auth';
    const proof = computeProof(key, PROOF_LABEL_SERVER, hello.nonce, this.nonceS, hello.deviceId);
    return { state: 'continue', send: this.response(f, Status.OK, encodeHelloResponse({ version, heartbeatSec: this.o.heartbeatSec, nonce: this.nonceS, proof })) };
  }

  private onAuth(f: Frame): HandshakeStep<ServerDone> {
    const hello = this.hello!;
    if (f.kind !== FrameKind.REQUEST || f.command !== Command.AUTH)
      return this.fail(errorFrame(f.seq, f.command, Status.NOT_AUTHENTICATED, 'AUTH expected', this.frameVersion), 'protocol', `expected AUTH, got kind ${f.kind} command ${hex(f.command)}`);
    let ok = false;
    try {
      const expected = computeProof(this.key!, PROOF_LABEL_TERMINAL, this.nonceS, hello.nonce, hello.deviceId);
      ok = proofEquals(decodeAuth(f.payload).proof, expected);
    } catch {
      ok = false; // a malformed AUTH is a wrong proof
    }
    if (!ok) return this.fail(this.response(f, Status.AUTH_FAILED), 'auth-failed', `wrong comm key proof from device ${hello.deviceId}`);
    this.state = 'over';
    return { state: 'done', send: this.response(f, Status.OK), hello, version: this.version };
  }
}

// --------------------------------------------------------------- terminal

/** What a terminal announces in its HELLO, besides the versions and the nonce. */
export type TerminalAnnouncement = Omit<Hello, 'minVersion' | 'maxVersion' | 'nonce'>;

export interface TerminalHandshakeOptions extends VersionOptions {
  key: Buffer;
  announce: TerminalAnnouncement;
  /** the sequence numbers of the terminal's requests (HELLO, then AUTH) */
  nextSeq: () => number;
  /** nonceT (default 16 random bytes; fixed only to reproduce vectors) */
  nonce?: Buffer;
}

export interface TerminalDone {
  /** the version the server chose */
  version: number;
  /** the server's heartbeat interval, 0 when it announced none */
  heartbeatSec: number;
}

/** The terminal's side: send hello() first, then feed it the server's frames in order. */
export class TerminalHandshake {
  private state: 'start' | 'hello-sent' | 'auth-sent' | 'over' = 'start';
  private seq = 0;
  private version = 0;
  private heartbeatSec = 0;
  private nonceS: Buffer | null = null;
  readonly nonceT: Buffer;
  private readonly range: VersionRange;
  private readonly frameVersion: number;

  constructor(private readonly o: TerminalHandshakeOptions) {
    this.nonceT = o.nonce ?? randomBytes(NONCE_BYTES);
    this.range = o.versions ?? { min: MIN_PROTOCOL_VERSION, max: MAX_PROTOCOL_VERSION };
    this.frameVersion = o.frameVersion ?? PROTOCOL_VERSION;
  }

  /** The HELLO request that opens the handshake. */
  hello(): FrameInit {
    if (this.state !== 'start') throw new Error('TerminalHandshake: HELLO was sent already');
    this.state = 'hello-sent';
    this.seq = this.o.nextSeq();
    const payload = encodeHello({ ...this.o.announce, minVersion: this.range.min, maxVersion: this.range.max, nonce: this.nonceT });
    return { kind: FrameKind.REQUEST, seq: this.seq, command: Command.HELLO, version: this.frameVersion, payload };
  }

  /**
   * The AUTH request with this terminal's proof, once the HELLO response was
   * read. receive() returns it; a hostile test peer may also send it after a
   * 'server-proof' failure, so that the server judges a wrong key.
   */
  auth(): FrameInit {
    if (!this.nonceS) throw new Error('TerminalHandshake: no HELLO response yet');
    this.seq = this.o.nextSeq();
    const proof = computeProof(this.o.key, PROOF_LABEL_TERMINAL, this.nonceS, this.nonceT, this.o.announce.deviceId);
    return { kind: FrameKind.REQUEST, seq: this.seq, command: Command.AUTH, version: this.frameVersion, payload: encodeAuth({ proof }) };
  }

  receive(f: Frame): HandshakeStep<TerminalDone> {
    if (this.state === 'hello-sent') return this.onHelloAnswer(f);
    if (this.state === 'auth-sent') return this.onAuthAnswer(f);
    throw new Error(`TerminalHandshake: no answer expected (${this.state})`);
  }

  private fail(send: FrameInit | null, reason: HandshakeFailureReason, message: string): HandshakeStep<TerminalDone> {
    this.state = 'over';
    return { state: 'failed', send, failure: { reason, message, deviceId: this.o.announce.deviceId } };
  }

  /** A frame that is not the answer awaited; null when it is. */
  private unexpected(f: Frame, expected: Command): HandshakeStep<TerminalDone> | null {
    if (f.kind === FrameKind.ERROR) return this.fail(null, 'refused', `server sent ERROR ${statusName(f.status)} during the handshake: ${errorText(f.payload)}`);
    if (f.kind !== FrameKind.RESPONSE || f.command !== expected || f.seq !== this.seq)
      return this.fail(
        errorFrame(f.seq, f.command, Status.NOT_AUTHENTICATED, 'not authenticated', this.frameVersion),
        'protocol',
        `unexpected frame (kind ${f.kind}, command ${hex(f.command)}) before authentication`,
      );
    return null;
  }

  private onHelloAnswer(f: Frame): HandshakeStep<TerminalDone> {
    const other = this.unexpected(f, Command.HELLO);
    if (other) return other;
    if (f.status !== Status.OK) return this.fail(null, 'refused', `server refused HELLO with ${statusName(f.status)}`);
    let hr: ReturnType<typeof decodeHelloResponse>;
    try {
      hr = decodeHelloResponse(f.payload);
    } catch (e) {
      const msg = (e as Error).message;
      return this.fail(errorFrame(f.seq, f.command, Status.BAD_PAYLOAD, msg, this.frameVersion), 'protocol', `malformed HELLO response: ${msg}`);
    }
    const { min, max } = this.range;
    if (hr.version < min || hr.version > max)
      return this.fail(
        errorFrame(f.seq, f.command, Status.UNSUPPORTED_VERSION, `version ${hr.version} not spoken`, this.frameVersion),
        'version',
        `server chose protocol version ${hr.version}, not in ${min}..${max}`,
      );
    this.nonceS = hr.nonce;
    const want = computeProof(this.o.key, PROOF_LABEL_SERVER, this.nonceT, hr.nonce, this.o.announce.deviceId);
    // the server does not hold our key: say nothing more (the caller closes)
    if (!proofEquals(want, hr.proof)) return this.fail(null, 'server-proof', "server proof wrong (the server does not hold this terminal's comm key)");
    this.version = hr.version;
    this.heartbeatSec = hr.heartbeatSec;
    this.state = 'auth-sent';
    return { state: 'continue', send: this.auth() };
  }

  private onAuthAnswer(f: Frame): HandshakeStep<TerminalDone> {
    const other = this.unexpected(f, Command.AUTH);
    if (other) return other;
    if (f.status !== Status.OK) return this.fail(null, 'refused', `server rejected AUTH with ${statusName(f.status)}`);
    this.state = 'over';
    return { state: 'done', send: null, version: this.version, heartbeatSec: this.heartbeatSec };
  }
}
