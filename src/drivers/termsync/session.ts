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
import { RequestError } from './connection.js';
import type { ProtocolLink } from './protocol-link.js';
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

  async watch(afterRef: number, onFacts: (epoch: number, facts: DeviceFact[]) => void): Promise<FeedState> {
    let after = afterRef;
    try {
      const s = await this.link.subscribe(afterRef, (epoch, events) => {
        const r = eventsToFacts(events, after);
        after = r.after;
        if (r.facts.length) onFacts(epoch, r.facts);
      });
      return { epoch: s.logEpoch, firstRef: s.firstEventId, lastRef: s.lastEventId };
    } catch (e) {
      throw driverError(e, 'SUBSCRIBE_LOG');
    }
  }

  ack(ref: number): void {
    this.link.ack(ref);
  }

  async listUsers(): Promise<UserListing> {
    let entries;
    try {
      entries = await this.link.listUsers();
    } catch (e) {
      throw driverError(e, 'LIST_USERS');
    }
    const disabledKept = this.capabilities.parts.disabled;
    return { kind: 'digest', entries: entries.map((e) => ({ userId: e.userId, digest: e.disabled && disabledKept ? e.digest + DISABLED_MARK : e.digest })) };
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
      return { userId: r.userId, user: null, reason, detail: r.reason || statusName(r.status) };
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
