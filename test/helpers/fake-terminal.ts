// A hand-driven terminal for hostile-input tests: it dials the daemon's
// listener over a raw socket (optionally from another loopback address),
// speaks exactly as much of the terminal's side of the protocol as a test asks
// for, and can then send anything at all. After authentication it answers the
// daemon's catch-up requests (GET_INFO, SUBSCRIBE_LOG, LIST_USERS, PING, PUT_USERS)
// like an empty terminal, so a session reaches its steady state.
import net from 'node:net';
import {
  Command,
  FrameDecoder,
  FrameKind,
  MAX_PAYLOAD,
  Status,
  decodePutUsersRequest,
  encodeFrame,
  encodeInfo,
  encodeListUsersResponse,
  encodeStatusList,
  encodeSubscribeResponse,
  type Frame,
  type FrameInit,
} from '../../src/codec/index.js';
import { TerminalHandshake } from '../../src/drivers/termsync/handshake.js';

export interface FakeTerminalOptions {
  port: number;
  host?: string;
  /** bind the client socket to this local address (e.g. 127.0.0.2: another address on loopback) */
  localAddress?: string;
  deviceId?: number;
  key: Buffer;
}

export class FakeTerminal {
  readonly socket: net.Socket;
  readonly received: Frame[] = [];
  /** resolves once the socket is closed (by either side) */
  readonly closed: Promise<void>;
  isClosed = false;
  closedAt = 0;
  /** answer the daemon's requests after authentication (default true) */
  serve = true;
  readonly deviceId: number;
  readonly logEpoch = 0x5eed;
  private seq = 0;
  private readonly decoder = new FrameDecoder({ maxPayload: MAX_PAYLOAD });
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  private authenticated = false;

  private constructor(
    socket: net.Socket,
    private readonly o: FakeTerminalOptions,
  ) {
    this.socket = socket;
    this.deviceId = o.deviceId ?? 9001;
    this.closed = new Promise((r) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.closedAt = Date.now();
        r();
      }),
    );
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[] = [];
      try {
        frames = this.decoder.feed(chunk);
      } catch {
        return; // the daemon never sends garbage; if it did, the test would see no frame
      }
      for (const f of frames) this.onFrame(f);
    });
  }

  static connect(o: FakeTerminalOptions): Promise<FakeTerminal> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: o.host ?? '127.0.0.1', port: o.port, localAddress: o.localAddress });
      s.once('connect', () => resolve(new FakeTerminal(s, o)));
      s.once('error', reject);
    });
  }

  nextSeq(): number {
    return ++this.seq;
  }

  send(f: FrameInit | Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(Buffer.isBuffer(f) ? f : encodeFrame(f));
  }

  /** A fresh HELLO (new nonce); the handshake state it starts is kept for handshake(). */
  helloFrame(key = this.o.key): Buffer {
    this.hs = new TerminalHandshake({
      key,
      announce: { deviceId: this.deviceId, maxUsersPerBatch: 50, userCapacity: 1000, logCapacity: 1000, capabilities: 0, model: 'fake', firmware: '0' },
      nextSeq: () => this.nextSeq(),
    });
    return encodeFrame(this.hs.hello());
  }

  private hs: TerminalHandshake | null = null;

  /** Waits for a frame matching pred (received earlier or later); rejects when the socket closes first. */
  waitFrame(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const have = this.received.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no such frame in time')), timeoutMs);
      const w = {
        pred,
        resolve: (f: Frame) => {
          clearTimeout(t);
          resolve(f);
        },
      };
      this.waiters.push(w);
      void this.closed.then(() => {
        clearTimeout(t);
        reject(new Error('connection closed'));
      });
    });
  }

  /** HELLO + AUTH with the given key (default: the terminal's). Resolves with the AUTH answer's status. */
  async handshake(key = this.o.key): Promise<number> {
    this.send(this.helloFrame(key));
    const hs = this.hs!;
    const hr = await this.waitFrame((f) => f.command === Command.HELLO);
    if (hr.kind !== FrameKind.RESPONSE || hr.status !== Status.OK) return hr.status;
    const step = hs.receive(hr);
    if (step.state === 'failed' && step.failure.reason !== 'server-proof') throw new Error(step.failure.message);
    // A wrong server proof means another key: a real terminal would close here; this
    // hostile peer sends AUTH anyway, so that the server judges (and counts) the key.
    const serverOk = step.state === 'continue';
    this.send(step.state === 'continue' ? step.send : hs.auth());
    const ar = await this.waitFrame((f) => f.command === Command.AUTH);
    if (ar.status === Status.OK) this.authenticated = true;
    return serverOk || ar.status !== Status.OK ? ar.status : Status.AUTH_FAILED;
  }

  close(): void {
    this.socket.destroy();
  }

  private onFrame(f: Frame): void {
    this.received.push(f);
    // frames after the AUTH answer may arrive in the same read: serve them as authenticated
    if (f.command === Command.AUTH && f.kind === FrameKind.RESPONSE && f.status === Status.OK) this.authenticated = true;
    for (const w of [...this.waiters]) {
      if (w.pred(f)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(f);
      }
    }
    if (this.authenticated && this.serve && f.kind === FrameKind.REQUEST) this.answer(f);
  }

  /** The answers of an empty terminal. */
  private answer(f: Frame): void {
    const ok = (payload?: Buffer) => this.send({ kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, payload });
    switch (f.command) {
      case Command.GET_INFO:
        return ok(
          encodeInfo({ deviceId: this.deviceId, userCount: 0, userCapacity: 1000, logEpoch: this.logEpoch, firstEventId: 0, lastEventId: 0, logCapacity: 1000, time: Math.floor(Date.now() / 1000), maxUsersPerBatch: 50, model: 'fake', firmware: '0' }),
        );
      case Command.SUBSCRIBE_LOG:
        return ok(encodeSubscribeResponse({ logEpoch: this.logEpoch, firstEventId: 0, lastEventId: 0 }));
      case Command.LIST_USERS:
        return ok(encodeListUsersResponse({ total: 0, more: false, entries: [] }));
      case Command.PUT_USERS:
        return ok(encodeStatusList({ statuses: decodePutUsersRequest(f.payload).records.map(() => Status.OK) }));
      case Command.PING:
      case Command.BYE:
        return ok();
      default:
        return this.send({ kind: FrameKind.ERROR, seq: f.seq, command: f.command, status: Status.UNKNOWN_COMMAND });
    }
  }
}
