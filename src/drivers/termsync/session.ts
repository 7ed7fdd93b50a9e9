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

  /** Acknowledges the events up to `ref` and frees their place in the window. */
  ack(ref: number): void {
    let k = 0;
    while (k < this.flight.length && this.flight[k] <= ref) k++;
    if (k) this.flight.splice(0, k);
    this.link.ack(ref);
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
