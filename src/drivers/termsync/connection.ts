// One authenticated session with one terminal, seen from the server: the server
// side of the handshake (PROTOCOL.md 4.1; the steps are ServerHandshake in
// src/drivers/termsync/handshake.ts, the deadline and the socket here), request/response correlation by
// sequence number, realtime events, heartbeats, per-request timeouts and
// backpressure-aware writes. It knows frames, not users: ProtocolLink (link.ts)
// turns it into the protocol-independent TerminalLink the sync engine uses.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  Command,
  FrameDecoder,
  FrameKind,
  HANDSHAKE_DEADLINE_MS,
  MAX_PAYLOAD,
  MAX_PREAUTH_PAYLOAD,
  ProtocolError,
  Status,
  decodeErrorPayload,
  encodeErrorPayload,
  encodeFrame,
  encodeFrameParts,
  statusName,
  type Frame,
  type Hello,
} from '../../codec/index.js';
import { ServerHandshake, type HandshakeFailureReason } from './handshake.js';
import { Heartbeat } from './heartbeat.js';
import { hexRedact } from '../../log.js';

/** Why a request did not get a successful answer. */
export class RequestError extends Error {
  constructor(
    readonly command: number,
    /** negative result code from the terminal, or TIMEOUT / a synthetic code when the session ended */
    readonly status: number,
    message: string,
    /** true when the terminal itself answered with this status (not a local timeout or a closed session) */
    readonly answered = false,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** The handshake failed; `reason` is safe to log. */
export class HandshakeError extends Error {
  constructor(
    readonly reason: HandshakeFailureReason | 'deadline' | 'closed',
    message: string,
    readonly deviceId?: number,
  ) {
    super(message);
    this.name = 'HandshakeError';
  }
}

export interface ConnectionOptions {
  socket: Socket;
  /** comm key for a device ID, or null when the server holds none for it */
  keyFor: (deviceId: number) => Buffer | null;
  heartbeatSec: number;
  requestTimeoutMs: number;
  handshakeDeadlineMs?: number;
  log: Logger;
  /** log every frame as hex, redacted (debug level) */
  logFrames?: boolean;
}

interface Pending {
  command: number;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface ConnectionEvents {
  event: [Frame];
  close: [string];
}

export class TerminalConnection extends EventEmitter<ConnectionEvents> {
  readonly hello: Hello;
  readonly remote: string;
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly heartbeat: Heartbeat;
  private readonly log: Logger;
  private readonly logFrames: boolean;
  private readonly requestTimeoutMs: number;
  private seq = 0;
  private closedReason: string | null = null;
  private version: number;

  /** Runs the server side of the handshake on a connected socket. */
  static async handshake(opts: ConnectionOptions): Promise<TerminalConnection> {
    const { socket, log } = opts;
    const decoder = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD });
    const frames: Frame[] = [];
    let wake: (() => void) | null = null;
    let failure: HandshakeError | null = null;
    const fail = (e: HandshakeError) => {
      failure ??= e;
      wake?.();
    };
    const onData = (chunk: Buffer) => {
      try {
        decoder.feedEach(chunk, (f) => frames.push(f));
      } catch (e) {
        const pe = e as ProtocolError;
        sendRaw(socket, errorFrame(0, 0, pe.status ?? Status.BAD_FRAME, pe.message));
        fail(new HandshakeError('protocol', `bad frame during handshake: ${pe.message}`));
      }
      wake?.();
    };
    const onClose = () => fail(new HandshakeError('closed', 'connection closed during handshake'));
    const deadline = setTimeout(
      () => fail(new HandshakeError('deadline', `handshake not completed within ${opts.handshakeDeadlineMs ?? HANDSHAKE_DEADLINE_MS} ms`)),
      opts.handshakeDeadlineMs ?? HANDSHAKE_DEADLINE_MS,
    );
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => {}); // 'close' follows
    const next = async (): Promise<Frame> => {
      for (;;) {
        if (failure) throw failure;
        const f = frames.shift();
        if (f) return f;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    };
    const hs = new ServerHandshake({ keyFor: opts.keyFor, heartbeatSec: opts.heartbeatSec });
    try {
      let done: { hello: Hello; version: number } | null = null;
      while (!done) {
        const step = hs.receive(await next());
        // the session's payload limit applies from the AUTH answer on
        if (step.state === 'done') decoder.setMaxPayload(MAX_PAYLOAD);
        if (step.send) sendRaw(socket, encodeFrame(step.send));
        if (step.state === 'failed') throw new HandshakeError(step.failure.reason, step.failure.message, step.failure.deviceId);
        if (step.state === 'done') done = step;
      }
      const { hello, version } = done;
      socket.off('data', onData);
      socket.off('close', onClose);
      clearTimeout(deadline);
      const conn = new TerminalConnection(opts, hello, version, decoder);
      for (const f of frames) conn.onFrame(f); // anything pipelined after AUTH
      return conn;
    } catch (e) {
      clearTimeout(deadline);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.destroy();
      if (e instanceof HandshakeError) throw e;
      log.warn({ err: e }, 'handshake failed unexpectedly');
      throw new HandshakeError('protocol', (e as Error).message);
    }
  }

  private constructor(opts: ConnectionOptions, hello: Hello, version: number, decoder: FrameDecoder) {
    super();
    this.socket = opts.socket;
    this.hello = hello;
    this.version = version;
    this.decoder = decoder;
    this.log = opts.log;
    this.logFrames = opts.logFrames ?? false;
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.remote = `${this.socket.remoteAddress}:${this.socket.remotePort}`;
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 30_000);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    this.socket.on('close', () => this.close('connection closed by peer'));
    this.socket.on('end', () => {
      try {
        this.decoder.end();
      } catch (e) {
        this.close(`stream ended inside a frame: ${(e as Error).message}`);
      }
    });
    this.heartbeat = new Heartbeat({
      intervalMs: opts.heartbeatSec * 1000,
      ping: () => {
        this.request(Command.PING).catch(() => {});
      },
      dead: (silentMs) => this.close(`heartbeat: nothing received for ${silentMs} ms`, 'heartbeat'),
    });
    this.heartbeat.start();
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  get closeReason(): string | null {
    return this.closedReason;
  }

  /** Sends a request and resolves with its successful response; rejects with RequestError. */
  request(command: number, payload?: Buffer | readonly Buffer[], timeoutMs = this.requestTimeoutMs): Promise<Frame> {
    if (this.closedReason) return Promise.reject(new RequestError(command, Status.TIMEOUT, `session closed: ${this.closedReason}`));
    const seq = this.nextSeq();
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        const msg = `${commandName(command)} timed out after ${timeoutMs} ms`;
        reject(new RequestError(command, Status.TIMEOUT, msg));
        // A terminal answers in order: one missing answer means the link cannot be trusted.
        this.close(msg, 'timeout');
      }, timeoutMs);
      this.pending.set(seq, { command, resolve, reject, timer });
      const head = { kind: FrameKind.REQUEST, seq, command, version: this.version };
      // a payload in parts (a PUT_USERS of cached records) is written as it is, not copied
      if (Array.isArray(payload)) this.writeParts(encodeFrameParts(head, payload));
      else this.write(encodeFrame({ ...head, payload: payload as Buffer | undefined }));
    });
  }

  /** Sends an EVENT frame (no answer), e.g. LOG_ACK. */
  sendEvent(command: number, payload: Buffer): void {
    if (this.closedReason) return;
    this.write(encodeFrame({ kind: FrameKind.EVENT, seq: this.nextSeq(), command, version: this.version, payload }));
  }

  /** Resolves once the socket can take more bytes (backpressure). */
  async drained(): Promise<void> {
    if (!this.socket.writableNeedDrain || this.closedReason) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Orderly close: BYE, then end. */
  async bye(): Promise<void> {
    if (this.closedReason) return;
    try {
      await this.request(Command.BYE, undefined, 2000);
    } catch {
      // closing anyway
    }
    this.close('closed by server');
  }

  close(reason: string, _kind: 'heartbeat' | 'timeout' | 'other' = 'other'): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.heartbeat.stop();
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError(p.command, Status.TIMEOUT, `session closed: ${reason}`));
    }
    this.pending.clear();
    this.socket.destroy();
    this.emit('close', reason);
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  /** Writes a frame's parts in order, corked: one writev, no copy of the parts. */
  private writeParts(parts: readonly Buffer[]): void {
    if (this.logFrames) this.log.debug({ frame: hexRedact(Buffer.concat(parts)) }, '>');
    this.socket.cork();
    for (const p of parts) this.socket.write(p);
    this.socket.uncork();
  }

  private write(buf: Buffer): void {
    if (this.logFrames) this.log.debug({ frame: hexRedact(buf) }, '>');
    this.socket.write(buf);
  }

  private onData(chunk: Buffer): void {
    this.heartbeat.touch();
    if (this.logFrames) this.log.debug({ frame: hexRedact(chunk) }, '<');
    try {
      this.decoder.feedEach(chunk, (f) => this.onFrame(f));
    } catch (e) {
      const pe = e as ProtocolError;
      this.socket.write(errorFrame(0, 0, pe.status ?? Status.BAD_FRAME, pe.message, this.version));
      this.close(`protocol error: ${pe.message}`);
    }
  }

  private onFrame(f: Frame): void {
    if (this.closedReason) return;
    switch (f.kind) {
      case FrameKind.RESPONSE:
      case FrameKind.ERROR: {
        const p = this.pending.get(f.seq);
        if (!p || p.command !== f.command) {
          if (f.kind === FrameKind.ERROR && f.seq === 0) {
            this.close(`terminal reported a stream error: ${statusName(f.status)} ${safeMessage(f.payload)}`);
          } else {
            this.log.debug({ seq: f.seq, command: f.command }, 'answer to no outstanding request ignored');
          }
          return;
        }
        this.pending.delete(f.seq);
        clearTimeout(p.timer);
        if (f.kind === FrameKind.RESPONSE && f.status === Status.OK) p.resolve(f);
        else {
          const detail = f.kind === FrameKind.ERROR ? `: ${safeMessage(f.payload)}` : '';
          p.reject(new RequestError(f.command, f.status, `${commandName(f.command)} failed with ${statusName(f.status)}${detail}`, true));
        }
        return;
      }
      case FrameKind.EVENT:
        this.emit('event', f);
        return;
      case FrameKind.REQUEST:
        this.onRequest(f);
        return;
    }
  }

  private onRequest(f: Frame): void {
    switch (f.command) {
      case Command.PING:
        this.write(encodeFrame({ kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, version: this.version }));
        return;
      case Command.BYE:
        this.write(encodeFrame({ kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, version: this.version }));
        this.close('terminal said BYE');
        return;
      default:
        this.write(errorFrame(f.seq, f.command, Status.UNKNOWN_COMMAND, `the server does not serve command 0x${f.command.toString(16)}`, this.version));
    }
  }
}

/** An ERROR frame; after the handshake it carries the session's negotiated version (PROTOCOL.md 1.1). */
function errorFrame(seq: number, command: number, status: number, message: string, version?: number): Buffer {
  return encodeFrame({ kind: FrameKind.ERROR, seq, command, status, version, payload: encodeErrorPayload(message) });
}

function sendRaw(socket: Socket, buf: Buffer): void {
  if (!socket.destroyed) socket.write(buf);
}

function safeMessage(payload: Buffer): string {
  try {
    return decodeErrorPayload(payload);
  } catch {
    return `(${payload.length} bytes, not UTF-8)`;
  }
}

export function commandName(c: number): string {
  return Command[c] ?? `command 0x${c.toString(16)}`;
}
