// SimSession: one connection of a simulated terminal, whichever side dialled.
// The terminal speaks first (HELLO with nonceT), checks the server's proof and
// closes if it is wrong, sends AUTH (the steps: TerminalHandshake in
// src/drivers/termsync/handshake.ts), then serves requests through
// SimTerminal.handle in the order they arrived and pushes the realtime log
// within the subscription window. Writes respect backpressure (write() false ->
// wait for 'drain'); reading pauses while too many requests are queued.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import {
  Command,
  FrameDecoder,
  FrameKind,
  HANDSHAKE_DEADLINE_MS,
  MAX_PAYLOAD,
  MAX_PREAUTH_PAYLOAD,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ProtocolError,
  Status,
  decodeErrorPayload,
  decodeLogAck,
  encodeFrame,
  encodeLogEvent,
  statusName,
  type Frame,
  type FrameInit,
} from '../codec/index.js';
import { TerminalHandshake } from '../drivers/termsync/handshake.js';
import { errorFrame, type SessionHooks, type SimTerminal } from './terminal.js';

/** the heartbeat assumed when the server announces 0 */
export const DEFAULT_HEARTBEAT_SEC = 30;
/** the terminal closes a session that has received nothing for this many heartbeats */
export const IDLE_HEARTBEATS = 3;
/** most events in one LOG_EVENT frame */
export const MAX_EVENTS_PER_PUSH = 1000;
/** reading pauses while this many requests wait to be served (TCP backpressure to the server) */
const PAUSE_AT = 8;
const RESUME_AT = 4;
/** how long an orderly close waits for the peer's BYE answer / for the socket to flush */
const CLOSE_GRACE_MS = 1000;

export interface SimSessionOptions {
  terminal: SimTerminal;
  socket: Duplex;
  commKey: Buffer;
  /** used for the idle timeout when the server announces heartbeatSec 0 */
  heartbeatSec?: number;
  /** handshake deadline (default 10 s, PROTOCOL.md 4.1) */
  handshakeMs?: number;
  logger?: Logger;
  /** "host:port" of the peer, for logs */
  remote?: string;
}

type State = 'hello-sent' | 'auth-sent' | 'ready' | 'closed';

interface Subscription {
  /** highest event ID pushed (or the subscription's afterId) */
  sentUpTo: number;
  window: number;
  /** IDs pushed and not yet acknowledged, ascending, from `ackHead` */
  unacked: number[];
  ackHead: number;
  /**
   * After a log reset while events of the old epoch were still unacknowledged: the
   * highest of them. Nothing of the new epoch is sent until a LOG_ACK reaches it
   * (a LOG_ACK names no epoch, so this keeps every acknowledgement unambiguous and
   * the window exact); 0 otherwise.
   */
  drainOldUpTo: number;
}

export class SimSession implements SessionHooks {
  readonly terminal: SimTerminal;
  readonly remote: string;
  private readonly socket: Duplex;
  private readonly key: Buffer;
  private readonly log: Logger | undefined;
  private readonly decoder: FrameDecoder;
  private state: State = 'hello-sent';
  private _version = PROTOCOL_VERSION;
  private seq = 0;
  private readonly handshake: TerminalHandshake;
  private heartbeatSec: number;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly inbox: Frame[] = [];
  private serving = false;
  private paused = false;
  private sub: Subscription | null = null;
  private pumpScheduled = false;
  /** set between SUBSCRIBE_LOG being served and its answer being written: no push may overtake the answer */
  private holdPush = false;
  private waitingDrain = false;
  private faultTimer: NodeJS.Timeout | undefined;
  private byeSeq = 0;
  private closeReason = '';
  private resolveClosed!: (reason: string) => void;
  /** resolves with the close reason once the socket is closed */
  readonly closed: Promise<string>;

  private readonly onEvents = () => this.schedulePump();
  /**
   * PROTOCOL.md 5 (log reset during a subscription): the subscription stays; once
   * every event sent under the old epoch is acknowledged, the new log's events
   * follow from its first ID, in LOG_EVENT frames carrying the new epoch.
   */
  private readonly onLogReset = () => {
    const s = this.sub;
    if (!s) return;
    if (s.drainOldUpTo > 0) return; // still draining an earlier epoch: the same wait covers this one
    if (s.ackHead < s.unacked.length) {
      s.drainOldUpTo = s.unacked[s.unacked.length - 1];
      this.log?.debug({ waitFor: s.drainOldUpTo }, 'log reset during the subscription: new events wait for the old ones to be acknowledged');
    } else this.restartSubscription(s);
  };
  private readonly onFaultsChanged = () => this.schedulePump();

  constructor(opts: SimSessionOptions) {
    this.terminal = opts.terminal;
    this.socket = opts.socket;
    this.key = opts.commKey;
    this.remote = opts.remote ?? 'unknown';
    this.heartbeatSec = opts.heartbeatSec ?? DEFAULT_HEARTBEAT_SEC;
    this.log = opts.logger?.child({ terminal: this.terminal.index, deviceId: this.terminal.deviceId, remote: this.remote });
    this.closed = new Promise((r) => (this.resolveClosed = r));
    // a terminal configured as a protocol 1.0 device does not read frames of a newer version
    this.decoder = new FrameDecoder({ maxPayload: MAX_PREAUTH_PAYLOAD, maxVersion: this.terminal.maxVersion });

    this.terminal.sessions.add(this);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (err) => {
      if (!this.closeReason) this.closeReason = `socket error: ${err.message}`;
    });
    this.socket.on('close', () => this.onSocketClose());

    this.handshakeTimer = setTimeout(() => this.close('handshake not completed in time'), opts.handshakeMs ?? HANDSHAKE_DEADLINE_MS);
    this.handshakeTimer.unref();

    this.terminal.on('events', this.onEvents);
    this.terminal.on('log-reset', this.onLogReset);
    this.terminal.on('faults-changed', this.onFaultsChanged);

    const t = this.terminal;
    this.handshake = new TerminalHandshake({
      key: opts.commKey,
      announce: {
        deviceId: t.deviceId,
        maxUsersPerBatch: t.maxUsersPerBatch,
        userCapacity: t.userCapacity,
        logCapacity: t.ring.capacity,
        capabilities: t.capabilities,
        model: t.model,
        firmware: t.firmware,
      },
      versions: { min: MIN_PROTOCOL_VERSION, max: t.maxVersion },
      nextSeq: () => this.nextSeq(),
    });
    this.write(this.handshake.hello());
  }

  /** the protocol version of this session: 1 (protocol 1.0) until the server's HELLO answer, then the one it chose */
  get version(): number {
    return this._version;
  }

  /** true once the handshake succeeded (stays true after the close) */
  everAuthenticated = false;

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  // ------------------------------------------------------------------ input

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.touch();
    // A black-holed terminal reads and ignores everything. If the blackhole began
    // before it had read the server's AUTH answer, the frames that follow are
    // ignored too, and must not trip the pre-authentication size limit: that
    // would close the session, which a black hole never does.
    if (this.terminal.blackholed && this.decoder.limit < MAX_PAYLOAD) this.decoder.setMaxPayload(MAX_PAYLOAD);
    try {
      this.decoder.feedEach(chunk, (f) => this.onFrame(f));
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.log?.warn({ code: e.code, err: e.message }, 'malformed input from the server; closing the session');
        this.sendErrorAndClose(0, 0, e.status, e.message, `protocol error ${e.code}: ${e.message}`);
        return;
      }
      this.log?.error({ err: e }, 'internal error handling input');
      this.close('internal error');
    }
  }

  private onEnd(): void {
    if (this.state === 'closed') return;
    try {
      this.decoder.end();
    } catch {
      // a partial frame: discarded, the session is over anyway
    }
    this.close(this.state === 'ready' ? 'server closed the connection' : 'server closed the connection during the handshake');
  }

  private onFrame(f: Frame): void {
    if (this.state === 'closed') return;
    if (this.terminal.blackholed) {
      this.log?.debug({ command: f.command, kind: f.kind }, 'blackhole: frame read and ignored');
      return;
    }
    switch (this.state) {
      case 'hello-sent':
      case 'auth-sent':
        return this.onHandshakeFrame(f);
      case 'ready':
        return this.onReadyFrame(f);
    }
  }

  /** The server's HELLO and AUTH answers (the steps are TerminalHandshake's). */
  private onHandshakeFrame(f: Frame): void {
    const step = this.handshake.receive(f);
    if (step.state === 'failed') {
      if (step.failure.reason === 'server-proof') this.log?.warn(`${step.failure.message}; closing`);
      if (step.send) {
        try {
          this.write(step.send);
        } catch {
          // best effort
        }
      }
      return this.close(step.failure.message);
    }
    if (step.state === 'continue') {
      this.state = 'auth-sent';
      this.write(step.send);
      return;
    }
    this._version = step.version;
    if (step.heartbeatSec > 0) this.heartbeatSec = step.heartbeatSec;
    this.state = 'ready';
    this.everAuthenticated = true;
    this.decoder.setMaxPayload(MAX_PAYLOAD);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.idleTimer = setTimeout(() => this.onIdle(), this.idleMs());
    this.idleTimer.unref();
    this.log?.info({ heartbeatSec: this.heartbeatSec, version: this._version }, 'session authenticated');
  }

  private idleMs(): number {
    return IDLE_HEARTBEATS * this.heartbeatSec * 1000;
  }

  private touch(): void {
    this.idleTimer?.refresh();
  }

  private onIdle(): void {
    if (this.state === 'closed') return;
    if (this.serving || this.inbox.length > 0) {
      // busy serving (reading may be paused): not the server's silence
      this.idleTimer?.refresh();
      return;
    }
    this.log?.warn({ idleSec: this.idleMs() / 1000 }, 'nothing received from the server; closing');
    this.close(`idle timeout (nothing received for ${this.idleMs() / 1000} s)`);
  }

  private onReadyFrame(f: Frame): void {
    switch (f.kind) {
      case FrameKind.REQUEST:
        this.inbox.push(f);
        if (this.inbox.length >= PAUSE_AT && !this.paused) {
          this.paused = true;
          this.socket.pause();
        }
        void this.serve();
        return;
      case FrameKind.EVENT:
        if (f.command === Command.LOG_ACK) {
          try {
            this.ack(decodeLogAck(f.payload).lastEventId);
          } catch (e) {
            this.log?.debug({ err: (e as Error).message }, 'malformed LOG_ACK ignored');
          }
        } else {
          this.log?.debug({ command: f.command }, 'unknown event ignored');
        }
        return;
      case FrameKind.RESPONSE:
        if (f.command === Command.BYE && f.seq === this.byeSeq) {
          this.close('BYE answered');
          return;
        }
        this.log?.debug({ seq: f.seq, command: f.command }, 'response matching no request ignored');
        return;
      case FrameKind.ERROR:
        this.log?.warn({ seq: f.seq, command: f.command, status: statusName(f.status), message: safeErrorText(f.payload) }, 'server sent ERROR');
        return;
    }
  }

  // ------------------------------------------------------------------ requests

  /** Serves queued requests one after another, in arrival order. */
  private async serve(): Promise<void> {
    if (this.serving) return;
    this.serving = true;
    try {
      while (this.inbox.length > 0 && this.state === 'ready') {
        const req = this.inbox.shift()!;
        if (this.paused && this.inbox.length <= RESUME_AT) {
          this.paused = false;
          this.socket.resume();
        }
        if (req.command === Command.HELLO || req.command === Command.AUTH) {
          await this.send({ ...errorFrame(req, Status.BAD_PAYLOAD, 'already authenticated') });
          continue;
        }
        const reply = await this.terminal.handle(req, this);
        if (this.state !== 'ready') return;
        const wasSubscribe = req.command === Command.SUBSCRIBE_LOG;
        if (this.terminal.blackholed) {
          this.log?.debug({ command: req.command }, 'blackhole: answer withheld');
          if (wasSubscribe && this.holdPush) {
            // the server never learns of this subscription: drop it
            this.sub = null;
            this.holdPush = false;
          }
          continue;
        }
        await this.send(reply);
        if (wasSubscribe) {
          this.holdPush = false;
          this.schedulePump();
        }
        if (req.command === Command.BYE && reply.kind === FrameKind.RESPONSE) {
          this.close('server said BYE');
          return;
        }
        this.touch();
      }
    } finally {
      this.serving = false;
    }
  }

  // ------------------------------------------------------------------ realtime log

  /** SUBSCRIBE_LOG (called by the terminal inside its queue, before the answer is sent). */
  subscribe(afterId: number, window: number): void {
    this.sub = { sentUpTo: afterId, window, unacked: [], ackHead: 0, drainOldUpTo: 0 };
    this.holdPush = true; // released by serve() once the SUBSCRIBE_LOG answer is written
    this.log?.debug({ afterId, window }, 'log subscription');
  }

  private ack(lastEventId: number): void {
    const s = this.sub;
    if (!s) return;
    while (s.ackHead < s.unacked.length && s.unacked[s.ackHead] <= lastEventId) s.ackHead++;
    if (s.drainOldUpTo > 0) {
      if (lastEventId >= s.drainOldUpTo) this.restartSubscription(s);
      this.schedulePump();
      return;
    }
    if (s.ackHead > 1024 && s.ackHead * 2 > s.unacked.length) {
      s.unacked = s.unacked.slice(s.ackHead);
      s.ackHead = 0;
    }
    this.schedulePump();
  }

  /** The subscription continues with the current (new) epoch's log from its first event. */
  private restartSubscription(s: Subscription): void {
    s.sentUpTo = 0;
    s.unacked = [];
    s.ackHead = 0;
    s.drainOldUpTo = 0;
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.holdPush || this.waitingDrain || !this.sub || this.state !== 'ready') return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Pushes pending events while the window and the socket allow. */
  private pump(): void {
    const s = this.sub;
    if (!s || this.state !== 'ready' || this.holdPush || this.waitingDrain || s.drainOldUpTo > 0) return;
    const t = this.terminal;
    const now = Date.now();
    const holdUntil = Math.max(t.stallUntil, t.blackholeUntil);
    if (holdUntil > now) {
      // a stalled or blackholed terminal sends nothing; look again when it ends
      if (this.faultTimer) clearTimeout(this.faultTimer);
      this.faultTimer = setTimeout(() => this.schedulePump(), holdUntil - now + 1);
      this.faultTimer.unref();
      return;
    }
    while (!this.socket.writableNeedDrain) {
      const room = s.window - (s.unacked.length - s.ackHead);
      if (room <= 0) return;
      const events = t.ring.after(s.sentUpTo, Math.min(room, MAX_EVENTS_PER_PUSH));
      if (events.length === 0) return;
      s.sentUpTo = events[events.length - 1].id;
      for (const e of events) s.unacked.push(e.id);
      this.write({
        kind: FrameKind.EVENT,
        seq: this.nextSeq(),
        command: Command.LOG_EVENT,
        payload: encodeLogEvent({ logEpoch: t.ring.logEpoch, events }),
      });
    }
    // the socket wants a drain: continue afterwards
    this.waitingDrain = true;
    this.socket.once('drain', () => {
      this.waitingDrain = false;
      this.schedulePump();
    });
  }

  // ------------------------------------------------------------------ output

  /** Encodes and writes one frame; returns false when the socket asks to wait for 'drain'. */
  private write(f: FrameInit): boolean {
    if (this.state === 'closed' || this.socket.destroyed) return false;
    const buf = encodeFrame({ ...f, version: f.version ?? this._version });
    if (this.terminal.takeCorrupt()) {
      buf[buf.length - 1] ^= 0xff; // last payload byte, or the CRC of an empty frame: the CRC check fails
      this.log?.info({ command: f.command }, 'fault: corrupted an outgoing frame');
    }
    return this.socket.write(buf);
  }

  /** Writes a frame and waits for 'drain' when the socket's buffer is full. */
  private async send(f: FrameInit): Promise<void> {
    if (this.write(f)) return;
    if (this.state === 'closed' || this.socket.destroyed) return;
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

  private sendErrorAndClose(seq: number, command: number, status: number, message: string, reason: string): void {
    if (this.state === 'closed') return;
    try {
      this.write(errorFrame({ seq, command }, status, message));
    } catch {
      // best effort
    }
    this.close(reason);
  }

  // ------------------------------------------------------------------ close

  /** Orderly close: BYE request, wait briefly for its answer, then close. */
  async bye(): Promise<void> {
    if (this.state !== 'ready') {
      this.close('simulator closing');
      return this.closed.then(() => undefined);
    }
    this.byeSeq = this.nextSeq();
    this.write({ kind: FrameKind.REQUEST, seq: this.byeSeq, command: Command.BYE });
    const t = setTimeout(() => this.close('simulator closing (no BYE answer)'), CLOSE_GRACE_MS);
    t.unref();
    await this.closed;
    clearTimeout(t);
  }

  /** Closes the session: flushes what was written (an ERROR frame), then ends the socket. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    this.finish(reason);
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
  }

  /** Closes the connection at once, without flushing (fault "drop"). */
  destroy(reason: string): void {
    if (this.state !== 'closed') this.finish(reason);
    this.socket.destroy();
  }

  private finish(reason: string): void {
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    this.closeReason = reason;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.faultTimer) clearTimeout(this.faultTimer);
    this.terminal.off('events', this.onEvents);
    this.terminal.off('log-reset', this.onLogReset);
    this.terminal.off('faults-changed', this.onFaultsChanged);
    this.terminal.sessions.delete(this);
    this.sub = null;
    this.inbox.length = 0;
    if (this.paused) this.socket.resume();
    const lvl = wasReady ? 'info' : 'warn';
    this.log?.[lvl]({ reason }, 'session closed');
  }

  private onSocketClose(): void {
    if (this.state !== 'closed') this.finish(this.closeReason || 'connection closed');
    this.resolveClosed(this.closeReason);
  }
}

function safeErrorText(payload: Buffer): string {
  try {
    return decodeErrorPayload(payload);
  } catch {
    return '(unreadable message)';
  }
}
