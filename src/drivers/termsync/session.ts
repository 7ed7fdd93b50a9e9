// The termsync driver's DeviceSession: an adapter over ProtocolLink (the typed
// commands of PROTOCOL.md section 5, protocol-link.ts) that speaks the
// engine's protocol-neutral port (src/sync/ports.ts). Event records become
// facts, result codes become reasons, and the capabilities come from the
// terminal's HELLO.
import { ProtocolError, Status, statusName } from '../../codec/index.js';
import { USER_DISABLED } from '../../model/limits.js';
import { carriesAll, fitForTerminal, type PartsSupport } from '../../model/parts.js';
import type { UserRecord } from '../../model/user.js';
import type {
  DeviceFact,
  DeviceIdentity,
  DeviceSession,
  DriverCapabilities,
  FeedState,
  ReadResult,
  UserListing,
  WriteResult,
} from '../../sync/ports.js';
import { DriverError } from '../../sync/ports.js';
import type { WatchOptions } from '../../sync/ports.js';
import { DEFAULT_WINDOW, PeerLimitError } from '../../sync/peer-limit.js';
import { RequestError } from './connection.js';
import type { ProtocolLink, UserIndexEntry } from './protocol-link.js';
import { eventsToFacts, partsFromCapabilities, statusToReason, writeResult } from './mapping.js';

export const PROTOCOL = 'termsync';

/** The digest suffix of a disabled user: LIST_USERS digests leave the DISABLED bit out, the comparison must not. */
const DISABLED_MARK = '+disabled';

/** A failed request as a DriverError (a terminal's result code, a timeout, a closed session, an unreadable answer). */
export function driverError(e: unknown, what: string): DriverError {
  if (e instanceof DriverError) return e;
  if (e instanceof RequestError) return new DriverError(statusToReason(e.status), `${what}: ${e.message}`);
  if (e instanceof ProtocolError) return new DriverError('unreadable', `${what}: ${e.message}`);
  return new DriverError('transport', `${what}: ${(e as Error).message}`);
}

export class TermsyncSession implements DeviceSession {
  readonly identity: DeviceIdentity;
  readonly capabilities: DriverCapabilities;
  /** the terminal carries every part of the model: records go out as they are */
  private readonly whole: boolean;
  /** IDs of the events delivered and not yet acknowledged, ascending (at most the window) */
  private flight: number[] = [];
  /** the event-rate pacing of this subscription (null: no limit) */
  private pace: EventPace | null = null;

  constructor(readonly link: ProtocolLink) {
    const h = link.conn.hello;
    this.identity = { protocol: PROTOCOL, deviceId: h.deviceId, model: h.model, firmware: h.firmware, userCapacity: h.userCapacity };
    const parts: PartsSupport = partsFromCapabilities(h.capabilities);
    this.capabilities = { eventLog: 'cursor', realtime: 'all-changes', listing: 'digest', maxBatch: link.identity.maxBatch, parts };
    this.whole = carriesAll(parts);
  }

  get remote(): string {
    return this.link.remote;
  }

  get closed(): boolean {
    return this.link.closed;
  }

  onClose(fn: (reason: string) => void): void {
    this.link.onClose(fn);
  }

  close(reason: string): Promise<void> {
    return this.link.close(reason);
  }

  async feedState(): Promise<FeedState & { userCount: number }> {
    try {
      const i = await this.link.info();
      return { epoch: i.logEpoch, firstRef: i.firstEventId, lastRef: i.lastEventId, userCount: i.userCount };
    } catch (e) {
      throw driverError(e, 'GET_INFO');
    }
  }

  /**
   * SUBSCRIBE_LOG from `afterRef`. The wire rules are checked here, before the
   * engine sees a fact: within an epoch event IDs strictly ascend over the
   * whole session (one that does not ends the session, nothing of its batch
   * taken), IDs up to where the subscription started (resent right after it)
   * are dropped, and at most `window` events may be sent and not acknowledged
   * (one that streams past it is cut off before its events cost memory). A new
   * epoch (a reset while connected) starts the counts again.
   */
  async watch(afterRef: number, onFacts: (epoch: number, facts: DeviceFact[]) => void, o: WatchOptions = {}): Promise<FeedState> {
    const window = Math.max(1, Math.floor(o.window ?? DEFAULT_WINDOW));
    let epoch: number | null = null;
    /** highest event ID handed over (or where the subscription started) */
    let seen = afterRef;
    /** highest event ID received in this epoch (null: none yet); IDs must ascend past it */
    let rxLast: number | null = null;
    /** what is sent to the engine as the position before the next event (for gaps) */
    let after = afterRef;
    this.flight = [];
    this.pace?.stop();
    this.pace = o.maxRatePerSec && o.maxRatePerSec > 0 ? new EventPace(o.maxRatePerSec, (ref) => this.sendAck(ref)) : null;
    if (this.pace) {
      const pace = this.pace;
      this.onClose(() => pace.stop());
    }
    const violation = (e: PeerLimitError) => {
      o.onLimit?.(e);
      if (!this.closed) void this.close(`peer limit exceeded (${e.limit}): ${e.message}`);
    };
    try {
      const s = await this.link.subscribe(
        afterRef,
        (ep, events) => {
          if (this.closed) return;
          if (epoch !== null && ep !== epoch) {
            // the log restarted under a new epoch: its IDs start again
            seen = after = 0;
            rxLast = null;
            this.flight = [];
          }
          epoch = ep;
          let last = rxLast;
          for (const e of events) {
            if (last !== null && e.id <= last) {
              violation(new PeerLimitError('event-order', { eventId: e.id, after: last, epoch: ep }, `event IDs do not ascend: ${e.id} after ${last} in log epoch ${ep}`));
              return;
            }
            last = e.id;
          }
          rxLast = last;
          const fresh = events.filter((e) => e.id > seen);
          if (this.flight.length + fresh.length > window) {
            violation(new PeerLimitError('window', { window, unacknowledged: this.flight.length + fresh.length }, `more than ${window} events sent without acknowledgement (the subscription window)`));
            return;
          }
          if (fresh.length === 0) return;
          for (const e of fresh) this.flight.push(e.id);
          this.pace?.received(fresh.length);
          seen = fresh[fresh.length - 1].id;
          const r = eventsToFacts(fresh, after);
          after = r.after;
          onFacts(ep, r.facts);
        },
        window,
      );
      epoch ??= s.logEpoch;
      return { epoch: s.logEpoch, firstRef: s.firstEventId, lastRef: s.lastEventId };
    } catch (e) {
      throw driverError(e, 'SUBSCRIBE_LOG');
    }
  }

  /**
   * Acknowledges the events up to `ref` and frees their place in the window:
   * at once while the terminal is within its event rate; past it, the LOG_ACK
   * (the latest one, the ones before it folded in) goes out only once the rate
   * allows, and the events stay in the window until then. A terminal that keeps
   * to its window is thereby slowed to the rate without the daemon reading,
   * processing and discarding what it sends beyond; one that does not keep to
   * it is cut off by the window check.
   */
  ack(ref: number): void {
    if (this.pace) this.pace.ack(ref);
    else this.sendAck(ref);
  }

  private sendAck(ref: number): void {
    if (this.closed) return;
    let k = 0;
    while (k < this.flight.length && this.flight[k] <= ref) k++;
    if (k) this.flight.splice(0, k);
    this.link.ack(ref);
  }

  /** LOG_ACKs held back because the terminal was over its event rate, since the session began */
  get acksDelayed(): number {
    return this.pace?.delayed ?? 0;
  }

  async listUsers(): Promise<UserListing> {
    let entries;
    try {
      entries = await this.link.listUsers();
    } catch (e) {
      throw e instanceof PeerLimitError ? e : driverError(e, 'LIST_USERS');
    }
    return { kind: 'digest', entries: entries.map((e) => this.entry(e)) };
  }

  /** LIST_USERS page by page, checked by ProtocolLink.userIndexPages (bounds, ascending IDs). */
  async *userPages(o: { maxUsers: number }): AsyncIterable<UserListing> {
    const it = this.link.userIndexPages(o)[Symbol.asyncIterator]();
    for (;;) {
      let r: IteratorResult<UserIndexEntry[]>;
      try {
        r = await it.next();
      } catch (e) {
        throw e instanceof PeerLimitError ? e : driverError(e, 'LIST_USERS');
      }
      if (r.done) return;
      yield { kind: 'digest', entries: r.value.map((e) => this.entry(e)) };
    }
  }

  private entry(e: UserIndexEntry): { userId: string; digest: string } {
    return { userId: e.userId, digest: e.disabled && this.capabilities.parts.disabled ? e.digest + DISABLED_MARK : e.digest };
  }

  /** The digest LIST_USERS shows for a terminal holding `user` as the server sent it (with the DISABLED bit, which the wire digest leaves out). */
  digestOf(user: UserRecord): string {
    const d = this.link.digestOf(this.whole ? user : fitForTerminal(user, this.capabilities.parts));
    return (user.flag & USER_DISABLED) !== 0 && this.capabilities.parts.disabled ? d + DISABLED_MARK : d;
  }

  async getUsers(userIds: string[]): Promise<ReadResult[]> {
    let res;
    try {
      res = await this.link.getUsers(userIds);
    } catch (e) {
      throw driverError(e, 'GET_USERS');
    }
    return res.map((r): ReadResult => {
      if (r.user) return { userId: r.userId, user: r.user };
      // a record that did not decode or named another user is unreadable; the rest is the terminal's own code
      const reason = r.status === Status.BAD_PAYLOAD || r.status === Status.INVALID_USER ? 'unreadable' : statusToReason(r.status);
      return { userId: r.userId, user: null, reason, detail: r.reason || statusName(r.status), code: r.status };
    });
  }

  async putUsers(users: UserRecord[]): Promise<WriteResult[]> {
    const out = this.whole ? users : users.map((u) => fitForTerminal(u, this.capabilities.parts));
    try {
      return (await this.link.putUsers(out)).map(writeResult);
    } catch (e) {
      throw driverError(e, 'PUT_USERS');
    }
  }

  async deleteUsers(userIds: string[]): Promise<WriteResult[]> {
    try {
      return (await this.link.deleteUsers(userIds)).map(writeResult);
    } catch (e) {
      throw driverError(e, 'DELETE_USERS');
    }
  }
}

/**
 * The event rate of one subscription: a token bucket (`ratePerSec`, a burst
 * of EVENT_RATE_BURST_SEC seconds' worth) charged with every event received,
 * which may go into debt. An acknowledgement is sent at once while there is
 * no debt; otherwise only the latest one is kept and sent when the debt is
 * paid, so the terminal's window (the events it may send unacknowledged)
 * stays full until then.
 */
export const EVENT_RATE_BURST_SEC = 10;

class EventPace {
  private tokens: number;
  private last = performance.now();
  private readonly burst: number;
  private pending: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** acknowledgements held back (each flush counts once) */
  delayed = 0;

  constructor(
    readonly ratePerSec: number,
    private readonly send: (ref: number) => void,
  ) {
    this.burst = Math.max(1, ratePerSec * EVENT_RATE_BURST_SEC);
    this.tokens = this.burst;
  }

  private refill(): void {
    const t = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
  }

  received(n: number): void {
    this.refill();
    this.tokens -= n;
  }

  ack(ref: number): void {
    this.pending = this.pending === null ? ref : Math.max(this.pending, ref);
    if (this.timer) return;
    this.refill();
    if (this.tokens >= 0) return this.flush();
    this.delayed++;
    this.wait();
  }

  private wait(): void {
    const ms = Math.ceil((-this.tokens / this.ratePerSec) * 1000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refill();
      if (this.tokens < 0) return this.wait();
      this.flush();
    }, Math.max(1, ms));
  }

  private flush(): void {
    const ref = this.pending;
    this.pending = null;
    if (ref !== null) this.send(ref);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
  }
}
