// The termsync protocol's commands (PROTOCOL.md section 5) as typed calls over
// one authenticated TerminalConnection, in the protocol's own terms (event
// records, result codes, digests). TermsyncSession (session.ts) turns them into
// the engine's protocol-neutral port. Encoded user records are cached per record object, so the same
// server record fanned out to 49 terminals is encoded once.
import {
  Command,
  INFO_MASK_ANY,
  LIMITS,
  Status,
  decodeGetLogResponse,
  decodeGetUsersResponse,
  decodeInfo,
  decodeListUsersResponse,
  decodeLogEvent,
  decodeStatusList,
  decodeSubscribeResponse,
  decodeUser,
  encodeDeleteUsersRequest,
  encodeGetLogRequest,
  encodeGetUsersRequest,
  encodeListUsersRequest,
  encodeLogAck,
  encodePutUsersPrefixed,
  prefixPutUsersRecord,
  encodeSubscribeRequest,
  encodeUser,
  statusName,
  userDigest,
  ProtocolError,
  MAX_PAYLOAD,
  MAX_SUBSCRIBE_WINDOW,
  UserFlag,
  type Frame,
} from '../../codec/index.js';
import type { EventRecord } from '../../model/event.js';
import type { UserRecord } from '../../model/user.js';
import { DEFAULT_MAX_TERMINAL_USERS, DEFAULT_WINDOW, PeerLimitError } from '../../sync/peer-limit.js';
import { utf8Compare } from '../../utf8-order.js';
import { RequestError, type TerminalConnection } from './connection.js';

export interface TerminalIdentity {
  deviceId: number;
  model: string;
  firmware: string;
  userCapacity: number;
  /** most user records per put/get request */
  maxBatch: number;
  logCapacity: number;
}

export interface LogState {
  /** changes whenever the terminal's event IDs restart (reset, log cleared) */
  logEpoch: number;
  firstEventId: number;
  lastEventId: number;
}

export interface LogPage extends LogState {
  events: EventRecord[];
}

export interface UserIndexEntry {
  userId: string;
  /** content digest comparable with digestOf() on a server record */
  digest: string;
  /** the DISABLED bit, which the digest leaves out */
  disabled: boolean;
}

export type GetUserResult = { userId: string; user: UserRecord } | { userId: string; user: null; status: number; reason: string };

/** each record's PUT_USERS form (length prefix and encoding), made once per record object */
const encoded = new WeakMap<UserRecord, Buffer>();

export function encodedUser(u: UserRecord): Buffer {
  let b = encoded.get(u);
  if (!b) {
    b = prefixPutUsersRecord(encodeUser(u));
    encoded.set(u, b);
  }
  return b;
}

/** bytes of framing around the records of one PUT_USERS request */
const PUT_HEAD = 4;
/** first wait before asking again after BUSY (or TIMEOUT) from the terminal; doubles up to BUSY_MAX_MS */
export const BUSY_MIN_MS = 200;
export const BUSY_MAX_MS = 30_000;

/**
 * A terminal's answer that is normal and says "ask again later" (PROTOCOL.md):
 * BUSY, and TIMEOUT when the terminal itself reports it. Retried within the session.
 */
function isBusy(e: unknown): e is RequestError {
  return e instanceof RequestError && e.answered && (e.status === Status.BUSY || e.status === Status.TIMEOUT);
}

/**
 * A whole-request failure with a per-record status (USER_FULL, INVALID_USER, ...: the -7xx
 * range): read as that status for every record of the request, not as a broken session.
 */
function perRecordStatus(e: unknown): number | null {
  return e instanceof RequestError && e.answered && e.status <= -700 ? e.status : null;
}

export class ProtocolLink {
  readonly identity: TerminalIdentity;
  private subscribed: ((epoch: number, events: EventRecord[]) => void) | null = null;
  /** the wait before the next retry after BUSY; reset by every successful answer */
  private busyDelay = BUSY_MIN_MS;
  /** requests answered BUSY (or TIMEOUT) by the terminal and asked again */
  busyRetries = 0;

  constructor(readonly conn: TerminalConnection) {
    const h = conn.hello;
    this.identity = {
      deviceId: h.deviceId,
      model: h.model,
      firmware: h.firmware,
      userCapacity: h.userCapacity,
      maxBatch: Math.max(1, Math.min(h.maxUsersPerBatch, LIMITS.maxBatch)),
      logCapacity: h.logCapacity,
    };
    conn.on('event', (f) => {
      if (f.command !== Command.LOG_EVENT || !this.subscribed) return;
      let batch;
      try {
        batch = decodeLogEvent(f.payload);
      } catch (e) {
        conn.close(`bad LOG_EVENT: ${(e as Error).message}`);
        return;
      }
      this.subscribed(batch.logEpoch, batch.events);
    });
  }

  get remote(): string {
    return this.conn.remote;
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  onClose(fn: (reason: string) => void): void {
    if (this.conn.closed) fn(this.conn.closeReason ?? 'closed');
    else this.conn.once('close', fn);
  }

  async close(reason: string): Promise<void> {
    if (reason === 'shutdown') await this.conn.bye();
    else this.conn.close(reason);
  }

  /**
   * One request; a BUSY answer (as a RESPONSE or as an ERROR frame naming the
   * request) is asked again after a delay (200 ms doubling to 30 s, reset by
   * every success), within the session. Every other failure rejects.
   */
  private async call(command: number, payload?: Buffer | readonly Buffer[]): Promise<Frame> {
    for (;;) {
      try {
        const f = await this.conn.request(command, payload);
        this.busyDelay = BUSY_MIN_MS;
        return f;
      } catch (e) {
        if (!isBusy(e) || this.conn.closed) throw e;
        this.busyRetries++;
        const wait = this.busyDelay;
        this.busyDelay = Math.min(BUSY_MAX_MS, this.busyDelay * 2);
        await this.pause(wait);
      }
    }
  }

  /** Waits `ms`, or less when the session closes meanwhile (the next request then fails at once). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.conn.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.conn.once('close', done);
    });
  }

  async info(): Promise<LogState & { userCount: number }> {
    const i = decodeInfo((await this.call(Command.GET_INFO)).payload);
    return { logEpoch: i.logEpoch, firstEventId: i.firstEventId, lastEventId: i.lastEventId, userCount: i.userCount };
  }

  async getLog(afterId: number, maxCount: number): Promise<LogPage> {
    const f = await this.call(Command.GET_LOG, encodeGetLogRequest({ afterId, maxCount: Math.min(maxCount, LIMITS.maxLogCount) }));
    return decodeGetLogResponse(f.payload);
  }

  async subscribe(afterId: number, onEvents: (epoch: number, events: EventRecord[]) => void, window = DEFAULT_WINDOW): Promise<LogState> {
    this.subscribed = onEvents;
    const w = Math.max(1, Math.min(MAX_SUBSCRIBE_WINDOW, Math.floor(window)));
    const f = await this.call(Command.SUBSCRIBE_LOG, encodeSubscribeRequest({ afterId, window: w }));
    return decodeSubscribeResponse(f.payload);
  }

  ack(lastEventId: number): void {
    this.conn.sendEvent(Command.LOG_ACK, encodeLogAck({ lastEventId }));
  }

  async listUsers(): Promise<UserIndexEntry[]> {
    const out: UserIndexEntry[] = [];
    for await (const page of this.userIndexPages({ maxUsers: this.identity.userCapacity || DEFAULT_MAX_TERMINAL_USERS })) out.push(...page);
    return out;
  }

  /**
   * LIST_USERS page by page. Nothing the terminal says is trusted before it is
   * checked: the total and the running count against `maxUsers`, the page size
   * against what was asked, and every ID strictly above the one before it (so a
   * page that repeats, goes back or claims more=1 without entries cannot keep the
   * server paging forever).
   */
  async *userIndexPages(o: { maxUsers: number }): AsyncIterable<UserIndexEntry[]> {
    const maxCount = LIMITS.maxListCount;
    let after = '';
    let prev: string | null = null;
    let listed = 0;
    for (let pages = 1; ; pages++) {
      const f = await this.call(Command.LIST_USERS, encodeListUsersRequest({ afterUserId: after, maxCount }));
      const page = decodeListUsersResponse(f.payload);
      const n = page.entries.length;
      if (n > maxCount) throw new PeerLimitError('list-page', { entries: n, asked: maxCount }, `LIST_USERS page of ${n} entries, ${maxCount} asked`);
      if (page.total > o.maxUsers) throw new PeerLimitError('list-total', { total: page.total, allowed: o.maxUsers }, `LIST_USERS total ${page.total} is beyond the ${o.maxUsers} users allowed for this terminal`);
      if (page.more && n === 0) throw new PeerLimitError('list-paging', { page: pages }, 'LIST_USERS answered more=1 with an empty page (paging does not advance)');
      const out: UserIndexEntry[] = new Array(n);
      for (let k = 0; k < n; k++) {
        const e = page.entries[k];
        const id = e.userId;
        // the byte order of the UTF-8 IDs, compared without encoding them (no Buffer per entry)
        if (prev !== null && utf8Compare(id, prev) <= 0) throw new PeerLimitError('list-paging', { page: pages, entry: k }, `LIST_USERS IDs do not ascend (page ${pages}, entry ${k}): paging does not advance`);
        prev = id;
        out[k] = { userId: e.userId, digest: e.digest.toString('hex'), disabled: (e.flag & UserFlag.DISABLED) !== 0 };
      }
      listed += n;
      if (listed > o.maxUsers) throw new PeerLimitError('list-total', { listed, allowed: o.maxUsers }, `LIST_USERS listed more than the ${o.maxUsers} users allowed for this terminal`);
      yield out;
      if (!page.more) return;
      after = page.entries[n - 1].userId;
    }
  }

  async getUsers(userIds: string[]): Promise<GetUserResult[]> {
    const out: GetUserResult[] = [];
    for (let i = 0; i < userIds.length; i += this.identity.maxBatch) await this.getBatch(userIds.slice(i, i + this.identity.maxBatch), out);
    return out;
  }

  private async getBatch(ids: string[], out: GetUserResult[]): Promise<void> {
    let f;
    try {
      f = await this.call(Command.GET_USERS, encodeGetUsersRequest({ infoMask: INFO_MASK_ANY, userIds: ids }));
    } catch (e) {
      const st = perRecordStatus(e);
      if (st !== null) {
        for (const userId of ids) out.push({ userId, user: null, status: st, reason: statusName(st) });
        return;
      }
      // Large records (photos, faces) may not fit one frame: ask for halves.
      if (e instanceof RequestError && e.answered && e.status === Status.FRAME_TOO_LARGE) {
        if (ids.length === 1) {
          // one user whose record does not fit a frame: a failure of that user, not of the session
          out.push({ userId: ids[0], user: null, status: Status.FRAME_TOO_LARGE, reason: 'the record does not fit one frame (FRAME_TOO_LARGE)' });
          return;
        }
        const half = Math.ceil(ids.length / 2);
        await this.getBatch(ids.slice(0, half), out);
        await this.getBatch(ids.slice(half), out);
        return;
      }
      throw e;
    }
    const res = decodeGetUsersResponse(f.payload);
    ids.forEach((userId, k) => {
      const r = res.results[k];
      if (!r) out.push({ userId, user: null, status: Status.BAD_PAYLOAD, reason: 'terminal returned fewer records than asked' });
      else if (r.status !== Status.OK) out.push({ userId, user: null, status: r.status, reason: statusName(r.status) });
      else {
        try {
          const { user } = decodeUser(r.record);
          if (user.id !== userId) out.push({ userId, user: null, status: Status.BAD_PAYLOAD, reason: 'the terminal returned the record of another user' });
          else out.push({ userId, user });
        } catch (e) {
          out.push({ userId, user: null, status: (e as ProtocolError).status ?? Status.BAD_PAYLOAD, reason: (e as Error).message });
        }
      }
    });
  }

  async putUsers(users: UserRecord[]): Promise<number[]> {
    const out: number[] = [];
    let batch: Buffer[] = [];
    let bytes = PUT_HEAD;
    const flush = async () => {
      if (batch.length === 0) return;
      await this.conn.drained();
      let st: number[];
      try {
        const f = await this.call(Command.PUT_USERS, encodePutUsersPrefixed(true, batch));
        st = decodeStatusList(f.payload).statuses;
      } catch (e) {
        const whole = perRecordStatus(e);
        if (whole === null) throw e;
        st = batch.map(() => whole);
      }
      for (let k = 0; k < batch.length; k++) out.push(st[k] ?? Status.BAD_PAYLOAD);
      batch = [];
      bytes = PUT_HEAD;
    };
    for (const u of users) {
      const rec = encodedUser(u);
      // (rec carries its length prefix)
      if (batch.length >= this.identity.maxBatch || bytes + rec.length > MAX_PAYLOAD) await flush();
      batch.push(rec);
      bytes += rec.length;
    }
    await flush();
    return out;
  }

  async deleteUsers(userIds: string[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < userIds.length; i += this.identity.maxBatch) {
      const ids = userIds.slice(i, i + this.identity.maxBatch);
      try {
        const f = await this.call(Command.DELETE_USERS, encodeDeleteUsersRequest({ userIds: ids }));
        out.push(...decodeStatusList(f.payload).statuses);
      } catch (e) {
        const whole = perRecordStatus(e);
        if (whole === null) throw e;
        out.push(...ids.map(() => whole));
      }
    }
    return out;
  }

  digestOf(user: UserRecord): string {
    return userDigest(user).toString('hex');
  }
}
