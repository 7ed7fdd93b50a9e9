// A tiny server-side protocol client for driving the simulator in tests, built
// only on the codec: it does the server's half of the handshake over a real
// socket (ServerHandshake, the same steps as the daemon's), sends requests and
// matches answers by seq, and collects LOG_EVENTs.
import net from 'node:net';
import {
  Command,
  FrameDecoder,
  FrameKind,
  INFO_MASK_ANY,
  MAX_PAYLOAD,
  Status,
  decodeErrorPayload,
  decodeGetLogResponse,
  decodeGetUsersResponse,
  decodeHello,
  decodeInfo,
  decodeListUsersResponse,
  decodeLogEvent,
  decodeStatusList,
  decodeSubscribeResponse,
  decodeUser,
  encodeDeleteUsersRequest,
  encodeFrame,
  encodeGetLogRequest,
  encodeGetUsersRequest,
  decodeHelloResponse,
  encodeHelloResponse,
  encodeListUsersRequest,
  encodeLogAck,
  encodePutUsersRequest,
  encodeSubscribeRequest,
  encodeUser,
  type Frame,
  type Hello,
  type LogEvent,
} from '../../src/codec/index.js';
import { ServerHandshake } from '../../src/drivers/termsync/handshake.js';
import type { UserRecord } from '../../src/model/user.js';

export interface SimClientOptions {
  key: Buffer;
  heartbeatSec?: number;
  /** send a proofS that does not match (the terminal must close) */
  wrongServerProof?: boolean;
  /** answer AUTH with this status whatever the proof (default: OK when proofT is right, else AUTH_FAILED) */
  authStatus?: number;
  /** default timeout of waits, ms */
  timeoutMs?: number;
}

export class HandshakeError extends Error {}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

export class SimClient {
  readonly socket: net.Socket;
  hello!: Hello;
  /** the outcome of the handshake: 'ok', or why it did not complete */
  private readonly decoder = new FrameDecoder({ maxPayload: MAX_PAYLOAD });
  private seq = 0;
  private readonly pending = new Map<number, Waiter<Frame>>();
  private readonly events: Frame[] = [];
  private eventWaiters: Waiter<Frame>[] = [];
  private handshakeWaiter: ((f: Frame) => void) | undefined;
  private readonly early: Frame[] = [];
  /** every frame received, in order */
  readonly received: Frame[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  /** the codec error that made this client drop the connection (e.g. a corrupted frame) */
  decodeError: Error | undefined;
  private readonly timeoutMs: number;

  private constructor(socket: net.Socket, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        const err = new Error('connection closed');
        for (const w of this.pending.values()) w.reject(err);
        this.pending.clear();
        for (const w of this.eventWaiters) w.reject(err);
        this.eventWaiters = [];
        resolve();
      });
    });
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.feedEach(chunk, (f) => this.onFrame(f));
      } catch (e) {
        this.decodeError = e as Error;
        socket.destroy();
      }
    });
  }

  /** Dials a listening simulated terminal and completes the handshake (throws HandshakeError if it does not). */
  static async connect(port: number, opts: SimClientOptions, host = '127.0.0.1'): Promise<SimClient> {
    const socket = net.connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return SimClient.accept(socket, opts);
  }

  /** Runs the server's half of the handshake on an established socket (the terminal dialled us). */
  static async accept(socket: net.Socket, opts: SimClientOptions): Promise<SimClient> {
    const c = new SimClient(socket, opts.timeoutMs ?? 5000);
    await c.handshake(opts);
    return c;
  }

  /** Like accept/connect but returns the client even when the handshake fails, with the reason. */
  static async tryConnect(port: number, opts: SimClientOptions): Promise<{ client: SimClient; error?: Error }> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new SimClient(socket, opts.timeoutMs ?? 5000);
    try {
      await c.handshake(opts);
      return { client: c };
    } catch (e) {
      return { client: c, error: e as Error };
    }
  }

  private nextHandshakeFrame(): Promise<Frame> {
    const f = this.early.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new HandshakeError('handshake timed out')), this.timeoutMs);
      this.handshakeWaiter = (fr) => {
        clearTimeout(t);
        resolve(fr);
      };
      void this.closed.then(() => {
        clearTimeout(t);
        reject(new HandshakeError('the terminal closed the connection during the handshake'));
      });
    });
  }

  private async handshake(o: SimClientOptions): Promise<void> {
    const hs = new ServerHandshake({ keyFor: () => o.key, heartbeatSec: o.heartbeatSec ?? 30 });
    const hf = await this.nextHandshakeFrame();
    const hello = hs.receive(hf);
    if (hello.state !== 'continue') throw new HandshakeError(hello.state === 'failed' ? hello.failure.message : 'handshake ended early');
    this.hello = decodeHello(hf.payload);
    let reply = hello.send;
    if (o.wrongServerProof) {
      // a server that does not hold the terminal's key
      const r = decodeHelloResponse(reply.payload!);
      reply = { ...reply, payload: encodeHelloResponse({ ...r, proof: Buffer.from(r.proof.map((b) => b ^ 0x5a)) }) };
    }
    this.socket.write(encodeFrame(reply));
    const af = await this.nextHandshakeFrame();
    const auth = hs.receive(af);
    if (auth.state === 'failed' && auth.failure.reason === 'protocol') throw new HandshakeError(auth.failure.message);
    const status = o.authStatus ?? (auth.state === 'done' ? Status.OK : Status.AUTH_FAILED);
    this.write(Command.AUTH, FrameKind.RESPONSE, af.seq, status);
    if (status !== Status.OK) throw new HandshakeError(`AUTH answered with ${status}`);
  }

  private onFrame(f: Frame): void {
    this.received.push(f);
    if (this.handshakeWaiter && f.kind === FrameKind.REQUEST && (f.command === Command.HELLO || f.command === Command.AUTH)) {
      const w = this.handshakeWaiter;
      this.handshakeWaiter = undefined;
      w(f);
      return;
    }
    switch (f.kind) {
      case FrameKind.REQUEST:
        if (f.command === Command.HELLO || f.command === Command.AUTH) {
          this.early.push(f);
          return;
        }
        if (f.command === Command.PING || f.command === Command.BYE) this.write(f.command, FrameKind.RESPONSE, f.seq, 0);
        if (f.command === Command.BYE) this.socket.end();
        return;
      case FrameKind.RESPONSE:
      case FrameKind.ERROR: {
        const w = this.pending.get(f.seq);
        if (w) {
          this.pending.delete(f.seq);
          w.resolve(f);
        } else if (f.kind === FrameKind.ERROR) {
          // unsolicited ERROR (the terminal is about to close): keep it visible as an event
          this.pushEvent(f);
        }
        return;
      }
      case FrameKind.EVENT:
        this.pushEvent(f);
        return;
    }
  }

  private pushEvent(f: Frame): void {
    const w = this.eventWaiters.shift();
    if (w) w.resolve(f);
    else this.events.push(f);
  }

  private write(command: number, kind: FrameKind, seq: number, status = 0, payload?: Buffer): void {
    this.socket.write(encodeFrame({ kind, seq, command, status, payload }));
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  /** Sends a REQUEST and resolves with its RESPONSE or ERROR frame. */
  request(command: number, payload?: Buffer, timeoutMs = this.timeoutMs): Promise<Frame> {
    const seq = this.nextSeq();
    return new Promise((resolve, reject) => {
      if (this.isClosed) return reject(new Error('connection closed'));
      const t = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`no answer to command 0x${command.toString(16)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, {
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.write(command, FrameKind.REQUEST, seq, 0, payload);
    });
  }

  /** Like request, but expects status 0 and returns the payload. */
  async ok(command: number, payload?: Buffer): Promise<Buffer> {
    const f = await this.request(command, payload);
    if (f.kind !== FrameKind.RESPONSE || f.status !== 0)
      throw new Error(`command 0x${command.toString(16)} failed: kind ${f.kind} status ${f.status} ${f.kind === FrameKind.ERROR ? decodeErrorPayload(f.payload) : ''}`);
    return f.payload;
  }

  sendEvent(command: number, payload: Buffer): void {
    this.write(command, FrameKind.EVENT, this.nextSeq(), 0, payload);
  }

  sendRaw(buf: Buffer): void {
    this.socket.write(buf);
  }

  /** The next EVENT (or unsolicited ERROR) frame. */
  nextEvent(timeoutMs = this.timeoutMs): Promise<Frame> {
    const f = this.events.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      if (this.isClosed) return reject(new Error('connection closed'));
      const t = setTimeout(() => {
        this.eventWaiters = this.eventWaiters.filter((w) => w !== waiter);
        reject(new Error(`no event within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter<Frame> = {
        resolve: (fr) => {
          clearTimeout(t);
          resolve(fr);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.eventWaiters.push(waiter);
    });
  }

  /** EVENT frames received and not yet taken by nextEvent. */
  get bufferedEvents(): number {
    return this.events.length;
  }

  /** The next LOG_EVENT, decoded. */
  async nextLogEvent(timeoutMs?: number): Promise<LogEvent> {
    const f = await this.nextEvent(timeoutMs);
    if (f.kind !== FrameKind.EVENT || f.command !== Command.LOG_EVENT) throw new Error(`expected LOG_EVENT, got kind ${f.kind} command ${f.command}`);
    return decodeLogEvent(f.payload);
  }

  // ---------------------------------------------------------------- convenience

  async getInfo() {
    return decodeInfo(await this.ok(Command.GET_INFO));
  }

  async getLog(afterId: number, maxCount = 1000) {
    return decodeGetLogResponse(await this.ok(Command.GET_LOG, encodeGetLogRequest({ afterId, maxCount })));
  }

  async subscribe(afterId: number, window: number) {
    return decodeSubscribeResponse(await this.ok(Command.SUBSCRIBE_LOG, encodeSubscribeRequest({ afterId, window })));
  }

  ack(lastEventId: number): void {
    this.sendEvent(Command.LOG_ACK, encodeLogAck({ lastEventId }));
  }

  async listUsers(afterUserId = '', maxCount = 1000) {
    return decodeListUsersResponse(await this.ok(Command.LIST_USERS, encodeListUsersRequest({ afterUserId, maxCount })));
  }

  /** GET_USERS: per ID, the decoded user or the failure status. */
  async getUsers(userIds: string[], infoMask = INFO_MASK_ANY): Promise<(UserRecord | number)[]> {
    const r = decodeGetUsersResponse(await this.ok(Command.GET_USERS, encodeGetUsersRequest({ infoMask, userIds })));
    return r.results.map((x) => (x.status === 0 ? decodeUser(x.record).user : x.status));
  }

  async putUsers(users: (UserRecord | Buffer)[], overwrite = true): Promise<number[]> {
    const records = users.map((u) => (Buffer.isBuffer(u) ? u : encodeUser(u)));
    return decodeStatusList(await this.ok(Command.PUT_USERS, encodePutUsersRequest({ overwrite, records }))).statuses;
  }

  async deleteUsers(userIds: string[]): Promise<number[]> {
    return decodeStatusList(await this.ok(Command.DELETE_USERS, encodeDeleteUsersRequest({ userIds }))).statuses;
  }

  /** Orderly close: BYE, then end. */
  async bye(): Promise<void> {
    if (this.isClosed) return;
    try {
      await this.request(Command.BYE, undefined, 1000);
    } catch {
      // closed already
    }
    this.socket.end();
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A plain TCP server that runs the server's half of the handshake for terminals that dial it. */
export async function startTestServer(opts: SimClientOptions): Promise<{
  port: number;
  next(): Promise<SimClient>;
  close(): Promise<void>;
  sockets: Set<net.Socket>;
  /** connections accepted so far */
  connections(): number;
}> {
  let accepted = 0;
  const queue: SimClient[] = [];
  const waiters: ((c: SimClient) => void)[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    SimClient.accept(socket, opts).then(
      (c) => {
        const w = waiters.shift();
        if (w) w(c);
        else queue.push(c);
      },
      () => socket.destroy(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    connections: () => accepted,
    next: () => {
      const c = queue.shift();
      if (c) return Promise.resolve(c);
      return new Promise((r) => waiters.push(r));
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
