// Version negotiation between protocol 1.0 and 1.1 peers (PROTOCOL.md 3), over
// loopback TCP in both pairings:
//   - a 1.0 terminal (the simulator offering versions 1..1, reading only version-1
//     frames) with the 1.1 daemon: they agree on 1 and sync;
//   - a 1.1 terminal (the simulator offering 1..2) with a 1.0 server (below: a strict
//     one, whose frame decoder refuses version 2 as a 1.0 implementation does):
//     they agree on 1, every frame the terminal sends carries version 1, and the
//     whole command set works;
//   - and, as the reference, 1.1 with 1.1 agrees on 2.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Command,
  EventCode,
  FrameDecoder,
  FrameKind,
  MAX_PAYLOAD,
  MAX_PREAUTH_PAYLOAD,
  NONCE_BYTES,
  ORIGIN_DEVICE,
  PROOF_LABEL_SERVER,
  PROOF_LABEL_TERMINAL,
  PROTOCOL_1_0,
  PROTOCOL_1_1,
  Status,
  computeProof,
  decodeAuth,
  decodeGetUsersResponse,
  decodeHello,
  decodeInfo,
  decodeListUsersResponse,
  decodeLogEvent,
  decodeStatusList,
  decodeUser,
  encodeFrame,
  encodeGetUsersRequest,
  encodeHelloResponse,
  encodeListUsersRequest,
  encodeLogAck,
  encodePutUsersRequest,
  encodeSubscribeRequest,
  encodeUser,
  proofEquals,
  type Frame,
  type Hello,
} from '../src/codec/index.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import type { SimSession } from '../src/sim/session.js';
import { Simulator } from '../src/sim/simulator.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const key = DEV_COMM_KEY;
let site: Site | undefined;
let sim: Simulator | undefined;
let server10: Server10 | undefined;

afterEach(async () => {
  server10?.destroy();
  server10 = undefined;
  await site?.close();
  site = undefined;
  await sim?.close();
  sim = undefined;
});

/** the version of the terminal's authenticated session */
function sessionVersion(t: SimTerminal): number | undefined {
  for (const s of t.sessions) if (s.authenticated) return (s as SimSession).version;
  return undefined;
}

/** the version, once the terminal has read the server's AUTH answer */
async function negotiated(t: SimTerminal): Promise<number | undefined> {
  await waitFor(() => sessionVersion(t) !== undefined, { timeoutMs: 5000, message: 'the terminal has no authenticated session' });
  return sessionVersion(t);
}

/**
 * A protocol 1.0 server, written from the 1.0 rules only: it speaks version 1,
 * answers HELLO with min(terminal max, 1), and its decoder refuses frames of any
 * later version (BAD_VERSION), as a 1.0 implementation's would.
 */
class Server10 {
  hello!: Hello;
  chosen = 0;
  readonly received: Frame[] = [];
  error: Error | undefined;
  private readonly decoder = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD, maxVersion: PROTOCOL_1_0 });
  private seq = 0;
  private readonly waiting = new Map<number, (f: Frame) => void>();
  private readonly events: Frame[] = [];
  private authed!: () => void;
  readonly ready = new Promise<void>((r) => (this.authed = r));
  private nonceS = randomBytes(NONCE_BYTES);

  constructor(readonly socket: net.Socket) {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.feedEach(chunk, (f) => this.onFrame(f));
      } catch (e) {
        this.error = e as Error;
        socket.destroy();
      }
    });
  }

  static async dial(port: number): Promise<Server10> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const s = new Server10(socket);
    await s.ready;
    return s;
  }

  private send(kind: FrameKind, seq: number, command: number, status = 0, payload?: Buffer): void {
    this.socket.write(encodeFrame({ version: PROTOCOL_1_0, kind, seq, command, status, payload }));
  }

  private onFrame(f: Frame): void {
    this.received.push(f);
    if (f.kind === FrameKind.REQUEST && f.command === Command.HELLO) {
      this.hello = decodeHello(f.payload);
      this.chosen = Math.min(this.hello.maxVersion, PROTOCOL_1_0);
      const proof = computeProof(key, PROOF_LABEL_SERVER, this.hello.nonce, this.nonceS, this.hello.deviceId);
      this.send(FrameKind.RESPONSE, f.seq, Command.HELLO, 0, encodeHelloResponse({ version: this.chosen, heartbeatSec: 30, nonce: this.nonceS, proof }));
      return;
    }
    if (f.kind === FrameKind.REQUEST && f.command === Command.AUTH) {
      const want = computeProof(key, PROOF_LABEL_TERMINAL, this.nonceS, this.hello.nonce, this.hello.deviceId);
      const ok = proofEquals(decodeAuth(f.payload).proof, want);
      this.send(FrameKind.RESPONSE, f.seq, Command.AUTH, ok ? Status.OK : Status.AUTH_FAILED);
      this.decoder.setMaxPayload(MAX_PAYLOAD);
      if (ok) this.authed();
      return;
    }
    if (f.kind === FrameKind.REQUEST && f.command === Command.PING) return this.send(FrameKind.RESPONSE, f.seq, Command.PING);
    if (f.kind === FrameKind.EVENT) {
      this.events.push(f);
      return;
    }
    this.waiting.get(f.seq)?.(f);
    this.waiting.delete(f.seq);
  }

  async ok(command: number, payload?: Buffer): Promise<Buffer> {
    const seq = ++this.seq;
    const f = await new Promise<Frame>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to 0x${command.toString(16)} (${this.error?.message ?? 'no decode error'})`)), 5000);
      this.waiting.set(seq, (fr) => {
        clearTimeout(t);
        resolve(fr);
      });
      this.send(FrameKind.REQUEST, seq, command, 0, payload);
    });
    if (f.kind !== FrameKind.RESPONSE || f.status !== 0) throw new Error(`0x${command.toString(16)} failed: kind ${f.kind} status ${f.status}`);
    return f.payload;
  }

  async nextLogEvent(): Promise<ReturnType<typeof decodeLogEvent>> {
    await waitFor(() => this.events.length > 0, { timeoutMs: 5000, message: `no LOG_EVENT (${this.error?.message ?? 'no decode error'})` });
    return decodeLogEvent(this.events.shift()!.payload);
  }

  ack(id: number): void {
    this.send(FrameKind.EVENT, ++this.seq, Command.LOG_ACK, 0, encodeLogAck({ lastEventId: id }));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe('protocol version negotiation between 1.0 and 1.1 peers', () => {
  it('a 1.0 terminal with the 1.1 daemon: both use version 1 and users sync both ways', async () => {
    site = await startSite({ terminals: 2, sim: { maxVersion: PROTOCOL_1_0 } });
    const [t1, t2] = site.sim.terminals;
    expect(t1.maxVersion).toBe(PROTOCOL_1_0);
    expect(await negotiated(t1)).toBe(PROTOCOL_1_0);
    expect(await negotiated(t2)).toBe(PROTOCOL_1_0);
    // a change made on terminal 1 reaches the server and terminal 2; the terminals'
    // decoders read only version-1 frames, so one frame of version 2 from the daemon
    // would have ended their sessions
    await t1.enroll(userFromJson({ id: 'v10-user', name: 'Made on a 1.0 terminal', cards: [{ type: 1, data: 'a1b2' }] }));
    await waitFor(() => t2.getUser('v10-user')?.name === 'Made on a 1.0 terminal', { timeoutMs: 15_000, message: 'user did not reach terminal 2' });
    expect(site.daemon.store.getUser('v10-user')?.name).toBe('Made on a 1.0 terminal');
    // the same sessions are still up: nothing was refused
    expect(t1.connected && t2.connected).toBe(true);
    expect(sessionVersion(t1)).toBe(PROTOCOL_1_0);
  });

  it('reference: a 1.1 terminal with the 1.1 daemon agrees on version 2 and syncs', async () => {
    site = await startSite({ terminals: 2 });
    const [t1, t2] = site.sim.terminals;
    expect(await negotiated(t1)).toBe(PROTOCOL_1_1);
    await t1.enroll(userFromJson({ id: 'v11-user', name: 'Made on a 1.1 terminal' }));
    await waitFor(() => t2.getUser('v11-user') !== undefined, { timeoutMs: 15_000, message: 'user did not reach terminal 2' });
    expect(sessionVersion(t2)).toBe(PROTOCOL_1_1);
  });

  it('a 1.1 terminal with a 1.0 server: HELLO offers 1..2, the server picks 1, every later frame carries version 1, every command works', async () => {
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING });
    const t = sim.terminals[0];
    server10 = await Server10.dial(sim.ports()[0]);
    const s = server10;
    expect([s.hello.minVersion, s.hello.maxVersion]).toEqual([PROTOCOL_1_0, PROTOCOL_1_1]);
    expect(s.chosen).toBe(PROTOCOL_1_0);
    expect(await negotiated(t)).toBe(PROTOCOL_1_0);

    const info = decodeInfo(await s.ok(Command.GET_INFO));
    expect(info.deviceId).toBe(t.deviceId);
    const user = userFromJson({ id: 'from-1.0-server', name: 'Pushed by 1.0', cards: [{ type: 1, data: '0102' }] });
    expect(decodeStatusList(await s.ok(Command.PUT_USERS, encodePutUsersRequest({ overwrite: true, records: [encodeUser(user)] }))).statuses).toEqual([0]);
    const got = decodeGetUsersResponse(await s.ok(Command.GET_USERS, encodeGetUsersRequest({ infoMask: 0xffff, userIds: ['from-1.0-server'] })));
    expect(decodeUser(got.results[0].record).user.name).toBe('Pushed by 1.0');
    expect(decodeListUsersResponse(await s.ok(Command.LIST_USERS, encodeListUsersRequest({ afterUserId: '', maxCount: 10 }))).entries.map((e) => e.userId)).toEqual(['from-1.0-server']);
    await s.ok(Command.SUBSCRIBE_LOG, encodeSubscribeRequest({ afterId: 1, window: 16 }));
    await t.enroll(userFromJson({ id: 'at-the-door' }));
    const push = await s.nextLogEvent();
    expect(push.events.map((e) => [e.id, e.userId, e.code, e.param])).toEqual([[2, 'at-the-door', EventCode.USER_ENROLL_SUCCESS, ORIGIN_DEVICE]]);
    s.ack(2);

    expect(s.error).toBeUndefined();
    expect(s.received.length).toBeGreaterThanOrEqual(8);
    expect(s.received.every((f) => f.version === PROTOCOL_1_0)).toBe(true);
    expect(t.connected).toBe(true);
  });

  it('a 1.0 peer refuses a frame of version 2 (the reason a 1.1 peer must not send one after agreeing on 1)', () => {
    const d = new FrameDecoder({ maxVersion: PROTOCOL_1_0 });
    expect(() => d.feed(encodeFrame({ version: PROTOCOL_1_1, kind: FrameKind.REQUEST, seq: 1, command: Command.PING }))).toThrow(/frame version 2 is not supported/);
    expect(new FrameDecoder().feed(encodeFrame({ version: PROTOCOL_1_1, kind: FrameKind.REQUEST, seq: 1, command: Command.PING }))).toHaveLength(1);
  });
});
