// A hostile terminal for the attack benchmarks, built from the codec: it dials
// the daemon's listener, authenticates with the site key, answers the
// daemon's requests like an empty terminal unless a handler takes a command,
// and can send anything at all, with the socket's backpressure respected.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import {
  Command,
  FrameDecoder,
  FrameKind,
  MAX_PAYLOAD,
  NONCE_BYTES,
  PROOF_LABEL_SERVER,
  PROOF_LABEL_TERMINAL,
  Status,
  computeProof,
  decodeHelloResponse,
  decodeLogAck,
  decodePutUsersRequest,
  decodeUser,
  encodeAuth,
  encodeFrame,
  encodeHello,
  encodeInfo,
  encodeListUsersResponse,
  encodeStatusList,
  encodeSubscribeResponse,
  type Frame,
  type FrameInit,
} from '../../src/codec/index.js';

export interface PeerOptions {
  port: number;
  host?: string;
  localAddress?: string;
  deviceId: number;
  key: Buffer;
  userCapacity?: number;
  maxBatch?: number;
  logCapacity?: number;
}

/** A handler answers one request (or not); `reply` sends the response frame. */
export type Handler = (f: Frame, reply: (payload?: Buffer, status?: number) => void) => void;

export class HostilePeer {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  isClosed = false;
  readonly logEpoch = 0xbad;
  /** requests received, by command */
  readonly requests = new Map<number, number>();
  /** user IDs the daemon pushed to this peer (PUT_USERS) */
  readonly pushed: string[] = [];
  /** the last event ID the daemon acknowledged (LOG_ACK), 0 before any */
  lastAck = 0;
  private ackWaiters: (() => void)[] = [];
  private seq = 0;
  private readonly decoder = new FrameDecoder({ maxPayload: MAX_PAYLOAD });
  private readonly handlers = new Map<number, Handler>();
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  private authenticated = false;
  private nonceT = randomBytes(NONCE_BYTES);

  private constructor(
    socket: net.Socket,
    readonly o: PeerOptions,
  ) {
    this.socket = socket;
    this.closed = new Promise((r) =>
      socket.once('close', () => {
        this.isClosed = true;
        r();
      }),
    );
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.decoder.feed(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const f of frames) this.onFrame(f);
    });
  }

  static connect(o: PeerOptions): Promise<HostilePeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: o.host ?? '127.0.0.1', port: o.port, localAddress: o.localAddress });
      s.once('connect', () => resolve(new HostilePeer(s, o)));
      s.once('error', reject);
    });
  }

  /** connect + handshake; resolves with the AUTH status (0 = in) */
  static async open(o: PeerOptions, setup?: (p: HostilePeer) => void): Promise<HostilePeer> {
    const p = await HostilePeer.connect(o);
    setup?.(p);
    const st = await p.handshake();
    if (st !== Status.OK) p.close();
    return p;
  }

  on(command: number, h: Handler): this {
    this.handlers.set(command, h);
    return this;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  send(f: FrameInit | Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(Buffer.isBuffer(f) ? f : encodeFrame(f));
  }

  /** Sends and waits for the socket to drain when its buffer is full (what a fast sender does). */
  async sendPaced(f: FrameInit | Buffer): Promise<boolean> {
    if (this.socket.destroyed) return false;
    if (!this.send(f)) await new Promise<void>((r) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        r();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
    return !this.socket.destroyed;
  }

  waitFrame(pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame | null> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
      });
      void this.closed.then(() => {
        clearTimeout(t);
        resolve(null);
      });
    });
  }

  async handshake(): Promise<number> {
    const o = this.o;
    this.send({
      kind: FrameKind.REQUEST,
      seq: this.nextSeq(),
      command: Command.HELLO,
      payload: encodeHello({
        deviceId: o.deviceId,
        minVersion: 1,
        maxVersion: 1,
        maxUsersPerBatch: o.maxBatch ?? 100,
        userCapacity: o.userCapacity ?? 10_000,
        logCapacity: o.logCapacity ?? 100_000,
        capabilities: 0,
        model: 'hostile',
        firmware: '0',
        nonce: this.nonceT,
      }),
    });
    const hr = await this.waitFrame((f) => f.command === Command.HELLO);
    if (!hr) return Status.AUTH_FAILED;
    if (hr.status !== Status.OK) return hr.status;
    const r = decodeHelloResponse(hr.payload);
    const proof = computeProof(o.key, PROOF_LABEL_TERMINAL, r.nonce, this.nonceT, o.deviceId);
    void PROOF_LABEL_SERVER;
    this.send({ kind: FrameKind.REQUEST, seq: this.nextSeq(), command: Command.AUTH, payload: encodeAuth({ proof }) });
    const ar = await this.waitFrame((f) => f.command === Command.AUTH);
    return ar ? ar.status : Status.AUTH_FAILED;
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves at the next LOG_ACK (or when the session closes). */
  nextAck(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((r) => {
      this.ackWaiters.push(r);
      void this.closed.then(r);
    });
  }

  private onFrame(f: Frame): void {
    if (f.command === Command.LOG_ACK && f.kind === FrameKind.EVENT) {
      try {
        this.lastAck = Math.max(this.lastAck, decodeLogAck(f.payload).lastEventId);
      } catch {
        // not ours to judge
      }
      for (const w of this.ackWaiters.splice(0)) w();
    }
    if (f.command === Command.AUTH && f.kind === FrameKind.RESPONSE && f.status === Status.OK) this.authenticated = true;
    for (const w of [...this.waiters]) {
      if (w.pred(f)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(f);
      }
    }
    if (!this.authenticated || f.kind !== FrameKind.REQUEST) return;
    this.requests.set(f.command, (this.requests.get(f.command) ?? 0) + 1);
    const reply = (payload?: Buffer, status = Status.OK) => this.send({ kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, status, payload });
    const h = this.handlers.get(f.command);
    if (h) return h(f, reply);
    this.answer(f, reply);
  }

  /** The answers of an empty terminal. */
  private answer(f: Frame, ok: (payload?: Buffer) => void): void {
    switch (f.command) {
      case Command.GET_INFO:
        return ok(
          encodeInfo({
            deviceId: this.o.deviceId,
            userCount: 0,
            userCapacity: this.o.userCapacity ?? 10_000,
            logEpoch: this.logEpoch,
            firstEventId: 0,
            lastEventId: 0,
            logCapacity: this.o.logCapacity ?? 100_000,
            time: Math.floor(Date.now() / 1000),
            maxUsersPerBatch: this.o.maxBatch ?? 100,
            model: 'hostile',
            firmware: '0',
          }),
        );
      case Command.SUBSCRIBE_LOG:
        return ok(encodeSubscribeResponse({ logEpoch: this.logEpoch, firstEventId: 0, lastEventId: 0 }));
      case Command.LIST_USERS:
        return ok(encodeListUsersResponse({ total: 0, more: false, entries: [] }));
      case Command.PUT_USERS: {
        const recs = decodePutUsersRequest(f.payload).records;
        for (const r of recs) this.pushed.push(decodeUser(r).user.id);
        return ok(encodeStatusList({ statuses: recs.map(() => Status.OK) }));
      }
      case Command.PING:
      case Command.BYE:
        return ok();
      default:
        this.send({ kind: FrameKind.ERROR, seq: f.seq, command: f.command, status: Status.UNKNOWN_COMMAND });
    }
  }
}
