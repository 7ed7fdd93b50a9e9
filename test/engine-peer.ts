// A scripted terminal for the engine's hostile-peer tests (not a test file): it
// authenticates like test/helpers/fake-terminal.ts (which it uses for the
// handshake), then answers the daemon's requests as a test script says: a user
// index and records of its own, BUSY or any status on demand, slow answers, and
// LOG_EVENT batches of any shape sent whenever the test wants.
import {
  Command,
  FrameKind,
  Status,
  decodeDeleteUsersRequest,
  decodeGetUsersRequest,
  decodeListUsersRequest,
  decodeLogAck,
  decodePutUsersRequest,
  FrameDecoder,
  decodeHello,
  encodeFrame,
  encodeHello,
  encodeGetUsersResponse,
  encodeInfo,
  encodeListUsersResponse,
  encodeLogEvent,
  encodeStatusList,
  encodeSubscribeResponse,
  encodeUser,
  userDigest,
  type Frame,
  type FrameInit,
} from '../src/codec/index.js';
import type { EventRecord } from '../src/model/event.js';
import type { UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { FakeTerminal } from './helpers/fake-terminal.js';

/** What a handler returns: a frame to send, nothing (no answer: the test answers later or never), or a promise of either. */
export type Answer = FrameInit | null | Promise<FrameInit | null>;
export type Handler = (f: Frame, peer: ScriptedPeer) => Answer | undefined;

export interface PeerOptions {
  port: number;
  deviceId: number;
  localAddress?: string;
  logEpoch?: number;
  /** per command, consulted before the default answer; return undefined to fall through to it */
  handlers?: Partial<Record<number, Handler>>;
  /** the user capacity announced in HELLO (default: the fake terminal's 1000) */
  userCapacity?: number;
  /** runs before the handshake (the daemon asks GET_INFO right after it) */
  before?: (p: ScriptedPeer) => void;
}

export class ScriptedPeer {
  readonly ft: FakeTerminal;
  logEpoch: number;
  /** users the terminal holds, by ID (LIST_USERS and GET_USERS answer from here) */
  readonly users = new Map<string, UserRecord>();
  /** log state GET_INFO and SUBSCRIBE_LOG report */
  firstEventId = 0;
  lastEventId = 0;
  handlers: Partial<Record<number, Handler>>;
  readonly userCapacity: number;
  /** requests received after authentication, in order */
  readonly requests: Frame[] = [];
  /** LOG_ACK values received */
  readonly acks: number[] = [];

  private constructor(ft: FakeTerminal, o: PeerOptions) {
    this.ft = ft;
    this.logEpoch = o.logEpoch ?? 0x1234;
    this.handlers = o.handlers ?? {};
    this.userCapacity = o.userCapacity ?? 1000;
  }

  static async connect(o: PeerOptions): Promise<ScriptedPeer> {
    const ft = await FakeTerminal.connect({ port: o.port, deviceId: o.deviceId, key: DEV_COMM_KEY, localAddress: o.localAddress });
    const peer = new ScriptedPeer(ft, o);
    // the fake's own answers are replaced by the script's (a runtime override of its answer step)
    (ft as unknown as { answer: (f: Frame) => void }).answer = (f: Frame) => peer.onRequest(f);
    ft.socket.on('data', () => peer.collectAcks());
    o.before?.(peer);
    if (o.userCapacity !== undefined) {
      // the fake's HELLO, with another capacity (same nonce: the proofs still match)
      const hello = ft.helloFrame.bind(ft);
      ft.helloFrame = () => {
        const [f] = new FrameDecoder({ maxPayload: 256 }).feed(hello());
        return encodeFrame({ ...f, payload: encodeHello({ ...decodeHello(f.payload), userCapacity: o.userCapacity! }) });
      };
    }
    const st = await ft.handshake();
    if (st !== Status.OK) throw new Error(`handshake refused: ${st}`);
    return peer;
  }

  get closed(): boolean {
    return this.ft.isClosed;
  }

  close(): void {
    this.ft.close();
  }

  count(command: number): number {
    return this.requests.filter((f) => f.command === command).length;
  }

  send(f: FrameInit): void {
    this.ft.send(f);
  }

  /** Sends one LOG_EVENT frame (kind EVENT) with these events, under `epoch` (default the peer's). */
  sendEvents(events: EventRecord[], epoch = this.logEpoch): void {
    this.ft.send({ kind: FrameKind.EVENT, seq: this.ft.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: epoch, events }) });
  }

  /** Several LOG_EVENT frames in ONE socket write (they arrive together, before any LOG_ACK can come back). */
  sendEventBatches(batches: EventRecord[][], epoch = this.logEpoch): void {
    this.ft.send(Buffer.concat(batches.map((events) => encodeFrame({ kind: FrameKind.EVENT, seq: this.ft.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: epoch, events }) }))));
  }

  static reply(f: Frame, payload?: Buffer, status: number = Status.OK): FrameInit {
    return { kind: FrameKind.RESPONSE, seq: f.seq, command: f.command, status, payload };
  }

  static error(f: Frame, status: number): FrameInit {
    return { kind: FrameKind.ERROR, seq: f.seq, command: f.command, status };
  }

  private seenAcks = 0;
  private collectAcks(): void {
    const acks = this.ft.received.filter((f) => f.kind === FrameKind.EVENT && f.command === Command.LOG_ACK);
    for (; this.seenAcks < acks.length; this.seenAcks++) this.acks.push(decodeLogAck(acks[this.seenAcks].payload).lastEventId);
  }

  private onRequest(f: Frame): void {
    this.requests.push(f);
    const custom = this.handlers[f.command]?.(f, this);
    const answer = custom !== undefined ? custom : this.defaultAnswer(f);
    void Promise.resolve(answer).then((a) => a && this.ft.send(a));
  }

  private sorted: { size: number; ids: string[] } | null = null;
  private digests = new WeakMap<UserRecord, Buffer>();

  /** IDs in LIST_USERS order (cached while the set of users keeps its size) */
  sortedIds(): string[] {
    if (this.sorted?.size !== this.users.size) this.sorted = { size: this.users.size, ids: [...this.users.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))) };
    return this.sorted.ids;
  }

  private digest(u: UserRecord): Buffer {
    let d = this.digests.get(u);
    if (!d) this.digests.set(u, (d = userDigest(u)));
    return d;
  }

  defaultAnswer(f: Frame): FrameInit {
    const ok = (payload?: Buffer) => ScriptedPeer.reply(f, payload);
    switch (f.command) {
      case Command.GET_INFO:
        return ok(
          encodeInfo({ deviceId: this.ft.deviceId, userCount: this.users.size, userCapacity: this.userCapacity, logEpoch: this.logEpoch, firstEventId: this.firstEventId, lastEventId: this.lastEventId, logCapacity: 1000, time: Math.floor(Date.now() / 1000), maxUsersPerBatch: 50, model: 'peer', firmware: '0' }),
        );
      case Command.SUBSCRIBE_LOG:
        return ok(encodeSubscribeResponse({ logEpoch: this.logEpoch, firstEventId: this.firstEventId, lastEventId: this.lastEventId }));
      case Command.LIST_USERS: {
        const req = decodeListUsersRequest(f.payload);
        const all = this.sortedIds();
        const after = Buffer.from(req.afterUserId);
        // first index above afterUserId (binary search)
        let lo = 0;
        for (let hi = all.length; lo < hi; ) {
          const mid = (lo + hi) >> 1;
          if (Buffer.compare(Buffer.from(all[mid]), after) > 0) hi = mid;
          else lo = mid + 1;
        }
        const ids = all.slice(lo);
        const page = ids.slice(0, req.maxCount);
        return ok(
          encodeListUsersResponse({
            total: this.users.size,
            more: ids.length > page.length,
            entries: page.map((id) => ({ userId: id, flag: 0, version: 1, digest: this.digest(this.users.get(id)!) })),
          }),
        );
      }
      case Command.GET_USERS: {
        const ids = decodeGetUsersRequest(f.payload).userIds;
        return ok(encodeGetUsersResponse({ results: ids.map((id) => (this.users.has(id) ? { status: Status.OK, record: encodeUser(this.users.get(id)!) } : { status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) })) }));
      }
      case Command.PUT_USERS:
        return ok(encodeStatusList({ statuses: decodePutUsersRequest(f.payload).records.map(() => Status.OK) }));
      case Command.DELETE_USERS:
        return ok(encodeStatusList({ statuses: decodeDeleteUsersRequest(f.payload).userIds.map(() => Status.OK) }));
      case Command.PING:
      case Command.BYE:
        return ok();
      default:
        return ScriptedPeer.error(f, Status.UNKNOWN_COMMAND);
    }
  }
}

/** A device-origin enrollment event for `userId` with this ID. */
export function enrollEvent(id: number, userId: string, deviceId = 1): EventRecord {
  return { id, dateTime: Math.floor(Date.now() / 1000), deviceId, userId, code: 0x2000, param: 1, flags: 0 };
}
