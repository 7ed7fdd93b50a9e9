// One Suprema terminal behind the device gateway, as the sync engine sees it.
//
// The feed: the terminal's event log has IDs that only grow ("cursor"). watch()
// subscribes to the realtime stream first (EnableMonitoring +
// SubscribeRealtimeLog, this terminal only), then reads the stored log after
// the engine's cursor (GetLog, page by page), then hands over what the stream
// delivered meanwhile, in ID order, without duplicates. The gateway drops
// realtime events when its queue is full, so an event whose ID is not the next
// one makes the session read the log again from the last ID it handed over;
// a stream that breaks is reopened and the log read again the same way.
//
// The session ends when the gateway reports the terminal disconnected, or the
// gateway's status stream breaks (the gateway restarted or cannot be
// reached); the terminal manager dials it again.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { UserRecord } from '../../model/user.js';
import { PeerLimitError } from '../../sync/peer-limit.js';
import { utf8Compare } from '../../utf8-order.js';
import {
  DriverError,
  type DeviceFact,
  type DeviceIdentity,
  type DeviceSession,
  type DriverCapabilities,
  type FeedState,
  type ReadResult,
  type UserListing,
  type WatchOptions,
  type WriteResult,
} from '../../sync/ports.js';
import { DATABASE_RESET, EVENT_MASK, EventCode, eventName, isConnected, statusName } from './constants.js';
import type { EchoMemory } from './echo.js';
import { asDriverError, isGrpcError, reasonOf, type GatewayClient } from './gateway.js';
import { GSDK_PARTS, GsdkMappingError, gsdkToUser, userToGsdk } from './mapping.js';
import type { CapabilityInfo, EventLog, FactoryInfo, StatusChange, UserHdr, UserInfo } from './proto.js';

export const PROTOCOL = 'gsdk';
/** most users per Get / Enroll / Delete (a photo is up to 16 KB) */
export const GSDK_MAX_BATCH = 32;
/** events per GetLog page */
export const LOG_PAGE = 500;
/** the log epoch: IDs only grow on a Suprema terminal; a reset shows as a newest ID below the cursor */
export const GSDK_EPOCH = 1;
const RESUBSCRIBE_MIN_MS = 100;
/** log reads without an answer in a row that end the session */
const MAX_FAILED_READS = 3;
const RESUBSCRIBE_MAX_MS = 3000;
/** event IDs are uint32 on the wire */
const MAX_EVENT_ID = 0xffff_ffff;
/**
 * Realtime events held while the log is read, or while the engine has a page of
 * facts to take: past this the held ones are let go and the log is read again
 * instead (every event is in the terminal's log), so a burst the gateway
 * streams faster than the engine takes costs bounded memory.
 */
export const MAX_BUFFERED_EVENTS = 4 * LOG_PAGE;
/** longest user ID a Suprema terminal holds, bytes */
const MAX_USER_ID_BYTES = 32;

/** A user ID as the gateway may name one: 1..32 bytes. */
function plausibleUserId(id: string | undefined): id is string {
  return typeof id === 'string' && id.length > 0 && Buffer.byteLength(id, 'utf8') <= MAX_USER_ID_BYTES;
}

export interface GsdkSessionOptions {
  terminalId: string;
  deviceID: number;
  gw: GatewayClient;
  info: FactoryInfo | null;
  capability: CapabilityInfo | null;
  echo: EchoMemory;
  log?: Logger;
  /** the realtime queue asked of the gateway, events */
  queueSize?: number;
  /**
   * Reads the log after the last event handed over this often, ms (0: never):
   * realtime events the gateway dropped at the end of a burst show no gap
   * until the next event arrives; this finds them anyway.
   */
  logCheckMs?: number;
}

export class GsdkSession implements DeviceSession {
  readonly identity: DeviceIdentity;
  readonly capabilities: DriverCapabilities;
  readonly remote: string;
  private readonly o: GsdkSessionOptions;
  private readonly gw: GatewayClient;
  private readonly id: string;
  private readonly dev: number;
  private readonly closeFns: ((reason: string) => void)[] = [];
  private closeReason: string | undefined;
  private readonly alphanumericIds: boolean;
  // feed
  private onFacts: ((epoch: number, facts: DeviceFact[]) => void) | undefined;
  private onLimit: ((e: PeerLimitError) => void) | undefined;
  private window = Number.MAX_SAFE_INTEGER;
  /** the newest event ID turned into a fact */
  private last = 0;
  private held: DeviceFact[] = [];
  /** refs handed over and not acknowledged */
  private unacked: number[] = [];
  private acked = 0;
  private stream: grpc.ClientReadableStream<EventLog> | undefined;
  /** realtime events that arrived while the log is being read */
  private buffered: EventLog[] = [];
  private catchingUp: Promise<void> | undefined;
  private again = false;
  private resubscribeMs = RESUBSCRIBE_MIN_MS;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private readonly onStatus = (c: StatusChange) => {
    if (c.deviceID === this.dev && !isConnected(c.status)) this.ended(`the gateway reports terminal ${this.dev} ${statusName(c.status)}`);
  };
  private readonly onLost = (why: string) => this.ended(`device gateway ${this.gw.address}: ${why}`);

  constructor(o: GsdkSessionOptions) {
    this.o = o;
    this.gw = o.gw;
    this.id = o.terminalId;
    this.dev = o.deviceID;
    this.remote = `${o.gw.address}/device ${o.deviceID}`;
    this.alphanumericIds = o.capability?.alphanumericIDSupported ?? false;
    this.identity = {
      protocol: PROTOCOL,
      deviceId: o.deviceID,
      serial: String(o.deviceID),
      model: o.info?.modelName || 'Suprema terminal',
      firmware: o.info?.firmwareVersion ?? '',
      userCapacity: o.capability?.maxNumOfUser ?? 0,
    };
    this.capabilities = { eventLog: 'cursor', realtime: 'all-changes', listing: 'full-read', maxBatch: GSDK_MAX_BATCH, parts: GSDK_PARTS };
    this.gw.on('status', this.onStatus);
    this.gw.on('lost', this.onLost);
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  onClose(fn: (reason: string) => void): void {
    if (this.closeReason !== undefined) fn(this.closeReason);
    else this.closeFns.push(fn);
  }

  async close(reason: string): Promise<void> {
    this.ended(reason);
  }

  private ended(reason: string): void {
    if (this.closeReason !== undefined) return;
    this.closeReason = reason;
    this.gw.off('status', this.onStatus);
    this.gw.off('lost', this.onLost);
    if (this.resubscribeTimer) clearTimeout(this.resubscribeTimer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    for (const r of this.roomWaiters.splice(0)) r();
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
    this.o.log?.info({ terminal: this.id, reason }, 'G-SDK session ended');
    for (const fn of this.closeFns.splice(0)) fn(reason);
  }

  private need(): void {
    if (this.closeReason !== undefined) throw new DriverError('transport', `Suprema terminal ${this.id}: the session has ended (${this.closeReason})`);
  }

  private async call<T>(client: grpc.Client, method: string, req: unknown): Promise<T> {
    this.need();
    try {
      return await this.gw.call<T>(client, method, req);
    } catch (e) {
      throw asDriverError(e, `Suprema terminal ${this.id}: ${method}`);
    }
  }

  // ------------------------------------------------------------ the feed

  private async getLog(start: number, max: number): Promise<EventLog[]> {
    const r = await this.call<{ events: EventLog[] }>(this.gw.event, 'GetLog', { deviceID: this.dev, startEventID: start, maxNumOfLog: max });
    return r.events;
  }

  /** The oldest and newest event IDs the terminal holds (GetLog probes: no call gives them directly). */
  private async logBounds(): Promise<{ first: number; last: number }> {
    const probe = async (id: number): Promise<number | null> => {
      const ev = await this.getLog(id, 1);
      return ev.length ? ev[0].ID : null;
    };
    const first = await probe(0);
    if (first === null) return { first: 0, last: 0 };
    // IDs are uint32: a gateway that answers every probe cannot keep this going past 2^32
    let lo = first;
    let step = 1;
    while (lo + step <= MAX_EVENT_ID) {
      const r = await probe(lo + step);
      if (r === null) break;
      lo = Math.min(MAX_EVENT_ID, Math.max(r, lo + step));
      step *= 2;
    }
    let hi = Math.min(lo + step, MAX_EVENT_ID + 1);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      const r = await probe(mid);
      if (r === null) hi = mid;
      else lo = Math.max(r, mid);
    }
    return { first, last: lo };
  }

  /** the log's bounds (no user count: the gateway only counts by listing every user, which a connect does not need) */
  async feedState(): Promise<FeedState> {
    const { first, last } = await this.logBounds();
    return { epoch: GSDK_EPOCH, firstRef: first, lastRef: last };
  }

  async watch(afterRef: number, onFacts: (epoch: number, facts: DeviceFact[]) => void, o?: WatchOptions): Promise<FeedState> {
    this.need();
    this.onFacts = onFacts;
    this.onLimit = o?.onLimit;
    if (o?.window !== undefined && o.window >= 1) this.window = o.window;
    this.last = afterRef;
    await this.subscribe();
    // the backlog is read in the background, page by page as the engine takes the facts
    this.catchUpLogged();
    const every = this.o.logCheckMs ?? 0;
    if (every > 0 && !this.checkTimer) {
      this.checkTimer = setInterval(() => {
        if (!this.catchingUp && !this.closed) this.catchUpLogged();
      }, every);
      this.checkTimer.unref();
    }
    return { epoch: GSDK_EPOCH, firstRef: 0, lastRef: afterRef };
  }

  ack(ref: number): void {
    if (ref > this.acked) this.acked = ref;
    this.unacked = this.unacked.filter((r) => r > ref);
    this.flush();
  }

  /** EnableMonitoring, then the realtime stream of this terminal; events go to `buffered` while the log is read. */
  private async subscribe(): Promise<void> {
    await this.call(this.gw.event, 'EnableMonitoring', { deviceID: this.dev });
    this.need();
    const call = (this.gw.event as unknown as { SubscribeRealtimeLog(req: unknown): grpc.ClientReadableStream<EventLog> }).SubscribeRealtimeLog({
      queueSize: this.o.queueSize ?? 1024,
      deviceIDs: [this.dev],
      eventCodes: [],
    });
    const before = this.stream;
    this.stream = call;
    before?.cancel();
    call.on('data', (e: EventLog) => {
      if (this.stream !== call || e.deviceID !== this.dev) return;
      this.resubscribeMs = RESUBSCRIBE_MIN_MS;
      this.live(e);
    });
    const broke = (why: string) => {
      if (this.stream !== call || this.closed) return;
      this.stream = undefined;
      this.o.log?.warn({ terminal: this.id, why }, 'G-SDK realtime stream broke; reading the log again');
      this.resubscribeSoon();
    };
    call.on('error', (e: grpc.ServiceError) => broke(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`));
    call.on('end', () => broke('the gateway ended the stream'));
  }

  private resubscribeSoon(): void {
    if (this.closed || this.resubscribeTimer) return;
    const ms = this.resubscribeMs;
    this.resubscribeMs = Math.min(RESUBSCRIBE_MAX_MS, ms * 2);
    this.resubscribeTimer = setTimeout(() => {
      this.resubscribeTimer = undefined;
      if (this.closed) return;
      this.subscribe()
        .then(() => this.catchUpLogged())
        .catch((e) => {
          this.o.log?.warn({ terminal: this.id, err: (e as Error).message }, 'G-SDK: subscribing again failed');
          this.resubscribeSoon();
        });
    }, ms);
    this.resubscribeTimer.unref();
  }

  /** A realtime event: the next one is handed over; a later one means events were dropped: read the log. */
  private live(e: EventLog): void {
    if (this.catchingUp) {
      if (this.buffered.length < MAX_BUFFERED_EVENTS) this.buffered.push(e);
      else this.overflow();
      return;
    }
    if (this.held.length >= LOG_PAGE && e.ID > this.last) {
      // the engine has a page to take: this one waits in the log (read as the engine takes the facts)
      this.buffered.push(e);
      this.catchUpLogged();
      return;
    }
    if (e.ID <= this.last) {
      this.checkRestart();
      return;
    }
    if (e.ID === this.last + 1) {
      this.take([e]);
      return;
    }
    this.o.log?.info({ terminal: this.id, expected: this.last + 1, got: e.ID }, 'G-SDK: realtime events were dropped; reading them from the log');
    this.buffered.push(e);
    this.catchUpLogged();
  }

  /** whether the buffer overflowed since the log was last read (logged once per overflow) */
  private overflowed = false;

  /** Too many realtime events held: they go; the log is read again from the last one handed over. */
  private overflow(): void {
    this.buffered = [];
    this.again = true;
    if (this.overflowed) return;
    this.overflowed = true;
    this.o.log?.info({ terminal: this.id, held: MAX_BUFFERED_EVENTS }, 'G-SDK: realtime events arrive faster than they are taken; reading them from the log instead');
  }

  /** consecutive log reads that failed for want of an answer */
  private failedReads = 0;

  /**
   * A log read whose failure is logged, not thrown. Reads that go unanswered
   * (the gateway unreachable while the connection looks open) end the session
   * after MAX_FAILED_READS in a row; the next dial finds out whether the
   * gateway is back.
   */
  private catchUpLogged(): void {
    this.catchUp().then(
      () => {
        this.failedReads = 0;
      },
      (e) => {
        if (this.closed) return;
        const transport = e instanceof DriverError && e.reason === 'transport';
        this.o.log?.warn({ terminal: this.id, err: (e as Error).message }, 'G-SDK: reading the event log failed');
        if (transport && ++this.failedReads >= MAX_FAILED_READS) this.ended(`the device gateway did not answer ${MAX_FAILED_READS} log reads in a row: ${(e as Error).message}`);
        else if (!this.checkTimer) setTimeout(() => this.closed || this.catchUpLogged(), RESUBSCRIBE_MAX_MS).unref();
      },
    );
  }

  /** the newest handed-over ID that GetLog showed still in the log */
  private verified = -1;

  /**
   * An event at or below the last one handed over: a late duplicate (one a log
   * read already delivered), or the log restarted (cleared, reset). The log
   * still holding the last event says which; a restart ends the session, and
   * the next one finds the newest ID below the stored cursor (the engine
   * reconciles).
   */
  private checkRestart(): void {
    const last = this.last;
    if (this.verified === last || last === 0) return;
    this.verified = last;
    this.getLog(last, 1).then(
      (ev) => {
        if (this.closed || ev.some((x) => x.ID === last)) return;
        this.ended(`the event log of terminal ${this.dev} restarted (event ${last} is gone)`);
      },
      () => {
        this.verified = -1;
      },
    );
  }

  /** Reads the log after the last event handed over, then what the stream buffered meanwhile. One at a time. */
  private catchUp(): Promise<void> {
    if (this.catchingUp) {
      this.again = true;
      return this.catchingUp;
    }
    const run = (async () => {
      do {
        this.again = false;
        for (;;) {
          await this.room();
          const page = await this.getLog(this.last + 1, LOG_PAGE);
          // a gateway that sends more than a page: the first page's worth now, the rest on the next read
          const fresh = page.filter((e) => e.ID > this.last).sort((a, b) => a.ID - b.ID).slice(0, LOG_PAGE);
          this.overflowed = false;
          if (fresh.length) this.take(fresh);
          if (page.length < LOG_PAGE) break;
        }
        // what the stream delivered meanwhile: anything the log did not show yet, as far as
        // it follows on without a gap (an event the gateway dropped, or let go here,
        // is in the log: past a gap the log is read again)
        const rest = this.buffered.splice(0).filter((e) => e.ID > this.last).sort((a, b) => a.ID - b.ID);
        let n = 0;
        while (n < rest.length && rest[n].ID === this.last + 1 + n) n++;
        if (n < rest.length) this.again = true;
        if (n > 0) this.take(rest.slice(0, n));
      } while (this.again && !this.closed);
    })();
    this.catchingUp = run;
    return run.finally(() => {
      if (this.catchingUp === run) this.catchingUp = undefined;
      if (this.buffered.length && !this.closed) {
        const b = this.buffered.splice(0);
        for (const e of b) this.live(e);
      }
    });
  }

  private roomWaiters: (() => void)[] = [];

  /** Resolves once fewer than a page of facts wait for the engine (a big backlog is read as it is taken). */
  private async room(): Promise<void> {
    while (this.held.length >= LOG_PAGE && !this.closed) await new Promise<void>((r) => this.roomWaiters.push(r));
    this.need();
  }

  private wakeRoom(): void {
    if (this.held.length >= LOG_PAGE && !this.closed) return;
    for (const r of this.roomWaiters.splice(0)) r();
  }

  /** Events (ascending, all after `last`) as facts. */
  private take(events: EventLog[]): void {
    const facts: DeviceFact[] = [];
    for (const e of events) {
      if (e.ID <= this.last) {
        this.peerLimit(`event ${e.ID} came after ${this.last}`);
        return;
      }
      this.last = e.ID;
      facts.push(this.fact(e));
    }
    this.held.push(...facts);
    this.flush();
  }

  private fact(e: EventLog): DeviceFact {
    const code = e.eventCode & EVENT_MASK;
    const at = e.timestamp * 1000;
    const detail = eventName(e.eventCode);
    const base = { ref: e.ID, at, detail };
    // a user ID no Suprema terminal holds (empty, over 32 bytes) names no user: the event is kept as 'other'
    const uid = plausibleUserId(e.userID) ? e.userID : '';
    // the user store restarted: what the terminal held cannot be trusted (the engine compares user lists)
    if (e.eventCode === DATABASE_RESET) return { ...base, kind: 'log-reset', origin: 'device' };
    switch (code) {
      case EventCode.USER_ENROLL_SUCCESS:
      case EventCode.USER_UPDATE_SUCCESS:
        if (!uid) break;
        return { ...base, kind: 'user-changed', userId: uid, origin: this.o.echo.classify(this.id, uid, 'put', e.changedOnDevice) };
      case EventCode.USER_DELETE_SUCCESS:
        if (!uid) break;
        return { ...base, kind: 'user-deleted', userId: uid, origin: this.o.echo.classify(this.id, uid, 'delete', e.changedOnDevice) };
      case EventCode.USER_DELETE_ALL_SUCCESS:
        return { ...base, kind: 'user-deleted', origin: e.changedOnDevice || !this.o.echo.flagSeen ? 'device' : 'server' };
    }
    return { ...base, kind: 'other', origin: 'device' };
  }

  private flush(): void {
    if (!this.onFacts || this.closed || this.held.length === 0) return;
    const room = this.window - this.unacked.length;
    if (room <= 0) return;
    const batch = this.held.splice(0, room);
    for (const f of batch) this.unacked.push(f.ref);
    this.wakeRoom();
    try {
      this.onFacts(GSDK_EPOCH, batch);
    } catch (e) {
      this.o.log?.error({ terminal: this.id, err: (e as Error).message }, 'G-SDK facts handler failed');
    }
  }

  private peerLimit(message: string): void {
    const e = new PeerLimitError('order', {}, message);
    this.onLimit?.(e);
    this.ended(`untrusted feed: ${message}`);
  }

  // ------------------------------------------------------------ users

  async listUsers(): Promise<UserListing> {
    const list = await this.call<{ hdrs: UserHdr[] }>(this.gw.user, 'GetList', { deviceID: this.dev });
    const ids = list.hdrs.map((h) => h.ID);
    const users: UserRecord[] = [];
    for (let i = 0; i < ids.length; i += GSDK_MAX_BATCH) {
      for (const r of await this.getUsers(ids.slice(i, i + GSDK_MAX_BATCH))) if (r.user) users.push(r.user);
    }
    return { kind: 'full-read', users };
  }

  /**
   * GetList once, checked (at most `maxUsers`, no ID twice), in ascending byte
   * order of the ID; then the whole records GSDK_MAX_BATCH at a time, one page
   * each: the engine holds one page at a time, not a copy of the terminal.
   * IDs no Suprema terminal holds (empty, over 32 bytes) are left out, and said so in the log.
   */
  async *userPages(o: { maxUsers: number }): AsyncIterable<UserListing> {
    const list = await this.call<{ hdrs: UserHdr[] }>(this.gw.user, 'GetList', { deviceID: this.dev });
    const total = list.hdrs.length;
    if (total > o.maxUsers) throw new PeerLimitError('list-total', { listed: total, max: o.maxUsers }, `Suprema terminal ${this.id} lists ${total} users, more than the ${o.maxUsers} accepted`);
    const ids = list.hdrs.map((h) => h.ID).filter(plausibleUserId);
    if (ids.length < total) this.o.log?.warn({ terminal: this.id, leftOut: total - ids.length }, 'G-SDK: the user list names IDs no Suprema terminal holds; left out');
    ids.sort(utf8Compare);
    for (let i = 1; i < ids.length; i++) {
      if (ids[i] === ids[i - 1]) throw new PeerLimitError('list-order', { listed: total }, `Suprema terminal ${this.id} lists a user ID twice`);
    }
    for (let i = 0; i < ids.length; i += GSDK_MAX_BATCH) {
      const users: UserRecord[] = [];
      for (const r of await this.getUsers(ids.slice(i, i + GSDK_MAX_BATCH))) if (r.user) users.push(r.user);
      yield { kind: 'full-read', users };
    }
  }

  async getUsers(userIds: string[]): Promise<ReadResult[]> {
    if (userIds.length === 0) return [];
    let infos: UserInfo[];
    try {
      infos = (await this.call<{ users: UserInfo[] }>(this.gw.user, 'Get', { deviceID: this.dev, userIDs: userIds })).users;
    } catch (e) {
      const d = e as DriverError;
      if (d.reason === 'transport' || userIds.length === 1) {
        if (d.reason === 'not-found' && userIds.length === 1) return [{ userId: userIds[0], user: null, reason: 'not-found', detail: d.message }];
        throw d;
      }
      // one ID the terminal does not hold may fail the whole read: one by one
      const out: ReadResult[] = [];
      for (const id of userIds) out.push(...(await this.getUsers([id])));
      return out;
    }
    const byId = new Map(infos.map((u) => [u.hdr?.ID ?? '', u]));
    return userIds.map((userId): ReadResult => {
      const g = byId.get(userId);
      if (!g) return { userId, user: null, reason: 'not-found', detail: `Suprema terminal ${this.id} holds no user ${JSON.stringify(userId)}` };
      return { userId, user: gsdkToUser(g) };
    });
  }

  async putUsers(users: UserRecord[]): Promise<WriteResult[]> {
    this.need();
    const out: (WriteResult | undefined)[] = users.map(() => undefined);
    const go: { i: number; u: UserRecord; info: UserInfo }[] = [];
    users.forEach((u, i) => {
      try {
        go.push({ i, u, info: userToGsdk(u, { alphanumericIds: this.alphanumericIds }).info });
      } catch (e) {
        if (!(e instanceof GsdkMappingError)) throw e;
        out[i] = { ok: false, reason: 'invalid', detail: e.message };
      }
    });
    await this.enroll(go, out);
    return out.map((r) => r ?? { ok: false, reason: 'transport', detail: 'not written' });
  }

  /** Enroll (overwrite) in one request; when the terminal refuses it, one by one to find which record. */
  private async enroll(go: { i: number; u: UserRecord; info: UserInfo }[], out: (WriteResult | undefined)[]): Promise<void> {
    if (go.length === 0) return;
    for (const g of go) this.o.echo.expect(this.id, g.u.id, 'put');
    try {
      this.need();
      await this.gw.call(this.gw.user, 'Enroll', { deviceID: this.dev, users: go.map((g) => g.info), overwrite: true });
      for (const g of go) out[g.i] = { ok: true };
    } catch (e) {
      for (const g of go) this.o.echo.forget(this.id, g.u.id, 'put');
      const code = isGrpcError(e) ? e.code : undefined;
      const reason = isGrpcError(e) ? reasonOf(e) : 'transport';
      const detail = isGrpcError(e) ? `Suprema terminal ${this.id}: Enroll: ${e.details || e.message}` : (e as Error).message;
      if (reason === 'transport' || go.length === 1) {
        for (const g of go) out[g.i] = { ok: false, reason, detail, ...(code !== undefined ? { code } : {}) };
        if (reason === 'transport' && go.length > 0 && this.closed) return;
        return;
      }
      for (const g of go) await this.enroll([g], out);
    }
  }

  async deleteUsers(userIds: string[]): Promise<WriteResult[]> {
    this.need();
    const out: WriteResult[] = [];
    if (userIds.length === 0) return out;
    for (const id of userIds) this.o.echo.expect(this.id, id, 'delete');
    try {
      await this.gw.call(this.gw.user, 'Delete', { deviceID: this.dev, userIDs: userIds });
      return userIds.map(() => ({ ok: true }));
    } catch (e) {
      for (const id of userIds) this.o.echo.forget(this.id, id, 'delete');
      const code = isGrpcError(e) ? e.code : undefined;
      const reason = isGrpcError(e) ? reasonOf(e) : 'transport';
      const detail = isGrpcError(e) ? `Suprema terminal ${this.id}: Delete: ${e.details || e.message}` : (e as Error).message;
      if (reason === 'transport' || userIds.length === 1) return userIds.map(() => ({ ok: false, reason, detail, ...(code !== undefined ? { code } : {}) }));
      for (const id of userIds) out.push(...(await this.deleteUsers([id])));
      return out;
    }
  }
}
