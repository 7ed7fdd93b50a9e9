// SimTerminal: one simulated access-control terminal, independent of sockets.
// It holds the device model (identity, capacities), the user store, the event
// ring, the on-device actions a person at the terminal performs, the fault
// switches, and `handle(frame)`, which serves one authenticated protocol request
// and resolves with the answer. Requests are served one at a time per terminal
// (a FIFO queue), after a real asynchronous delay from the timing model, so many
// terminals in one process behave like many devices in parallel.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  CAP_FACES,
  CAP_PHOTO,
  Command,
  EventCode,
  MAX_SUBSCRIBE_WINDOW,
  decodeEmpty,
  effectiveWindow,
  FrameKind,
  INFO_MASK_ALL_PARTS,
  InfoMask,
  LIMITS,
  MAX_PAYLOAD,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  ORIGIN_DEVICE,
  ORIGIN_SERVER,
  ProtocolError,
  Status,
  UserFlag,
  decodeDeleteUsersRequest,
  decodeGetLogRequest,
  decodeGetUsersRequest,
  decodeListUsersRequest,
  decodePutUsersRequest,
  decodeSubscribeRequest,
  decodeUser,
  encodeErrorPayload,
  encodeGetLogResponse,
  encodeGetUsersResponse,
  encodeInfo,
  encodeListUsersResponse,
  encodeStatusList,
  encodeSubscribeResponse,
  encodeUser,
  userDigest,
  type Frame,
  type FrameInit,
} from '../codec/index.js';
import type { EventRecord } from '../model/event.js';
import { structuredCloneUser, userFromJson, UserJsonError, validateUser, type UserRecord } from '../model/user.js';
import { EventRing } from './ring.js';
import { delay, resolveTiming, type TimingModel } from './timing.js';

export const SIM_MODEL = 'termsync-sim';
export const SIM_FIRMWARE = '1.0.0';

export interface SimTerminalOptions {
  /** 1-based position in the simulator; the control API's terminal id */
  index: number;
  deviceId: number;
  userCapacity?: number;
  logCapacity?: number;
  maxUsersPerBatch?: number;
  timing?: Partial<TimingModel>;
  model?: string;
  firmware?: string;
  capabilities?: number;
  /**
   * the newest protocol version this terminal speaks (PROTOCOL.md 3): 2 = protocol
   * 1.1 (default), 1 = a protocol 1.0 terminal (for compatibility tests)
   */
  maxVersion?: number;
  logger?: Logger;
}

export const DEFAULT_USER_CAPACITY = 10_000;
export const DEFAULT_LOG_CAPACITY = 100_000;
export const DEFAULT_MAX_USERS_PER_BATCH = 200;

/** What a session offers to the command it hands to `handle`. */
export interface SessionHooks {
  /** starts (or replaces) the realtime log subscription; called inside the terminal's queue, before the response is sent */
  subscribe(afterId: number, window: number): void;
}

/** A failed on-device action, with the HTTP status the control API answers. */
export class SimActionError extends Error {
  constructor(
    readonly httpStatus: 400 | 404 | 409,
    message: string,
    /** the device result code behind it, when there is one */
    readonly status?: Status,
  ) {
    super(message);
    this.name = 'SimActionError';
  }
}

/** A user as the simulator stores it; the digest is computed lazily for LIST_USERS. */
interface Stored {
  user: UserRecord;
  key: Buffer; // user ID bytes, for memcmp ordering
  digest?: Buffer;
}

/** Body of an on-device edit: any user JSON fields (they replace), plus cards/fingers to append. */
export interface UserPatch {
  addCards?: unknown[];
  addFingers?: unknown[];
  [field: string]: unknown;
}

/** Cards are identified by their data (the card number), whatever their type. */
function cardKey(data: Buffer): string {
  return data.toString('hex');
}

const EMPTY = Buffer.alloc(0);
/** the fault "unreadable" for every user */
const ALL_USERS = Symbol('all users');
/** offset of formatVersion in a user record header (PROTOCOL.md 6.2) */
const USER_FORMAT_VERSION_OFFSET = 32;
/** a user record format no protocol 1.x peer knows */
export const UNREADABLE_FORMAT_VERSION = 2;

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

export interface TerminalEvents {
  /** events were appended to the ring */
  events: [EventRecord[]];
  /** the log was reset (factory reset): IDs restart under a new epoch */
  'log-reset': [];
  /** users or log changed (for persistence) */
  changed: [];
  /** fault: drop every connection now */
  drop: [];
  /** fault: refuse connections until the given time (ms since epoch) */
  refuse: [number];
  /** stall or blackhole ended or was set: sessions re-check whether they may push */
  'faults-changed': [];
}

export class SimTerminal extends EventEmitter<TerminalEvents> {
  readonly index: number;
  readonly deviceId: number;
  readonly userCapacity: number;
  readonly maxUsersPerBatch: number;
  readonly model: string;
  readonly firmware: string;
  capabilities: number;
  /** the newest protocol version this terminal offers in HELLO */
  readonly maxVersion: number;
  timing: TimingModel;
  readonly ring: EventRing;
  readonly log: Logger | undefined;

  private users = new Map<string, Stored>();
  private cardOwner = new Map<string, string>();
  private sorted: Stored[] | null = null;
  /** the users are a SharedUsers population's (not this terminal's own copy) until they change */
  private sharedFrom: SharedUsers | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;

  // fault switches (ms since epoch)
  stallUntil = 0;
  blackholeUntil = 0;
  refuseUntil = 0;
  private corruptNext = false;
  private busyLeft = 0;
  private busyCommand: Command | undefined;
  private busyAsError = false;
  private readonly unreadableUntil = new Map<string | symbol, number>();

  /** sessions currently open on this terminal (handshaking or authenticated) */
  readonly sessions = new Set<{ authenticated: boolean; destroy(reason: string): void }>();

  constructor(opts: SimTerminalOptions) {
    super();
    this.setMaxListeners(0);
    if (!Number.isInteger(opts.deviceId) || opts.deviceId < 1 || opts.deviceId > 0xffffffff)
      throw new RangeError(`deviceId must be 1..4294967295, got ${opts.deviceId}`);
    this.index = opts.index;
    this.deviceId = opts.deviceId;
    this.userCapacity = opts.userCapacity ?? DEFAULT_USER_CAPACITY;
    this.maxUsersPerBatch = opts.maxUsersPerBatch ?? DEFAULT_MAX_USERS_PER_BATCH;
    if (!Number.isInteger(this.userCapacity) || this.userCapacity < 0 || this.userCapacity > 0xffffffff)
      throw new RangeError('userCapacity must be a u32');
    if (!Number.isInteger(this.maxUsersPerBatch) || this.maxUsersPerBatch < 1 || this.maxUsersPerBatch > LIMITS.maxBatch)
      throw new RangeError(`maxUsersPerBatch must be 1..${LIMITS.maxBatch}`);
    this.model = opts.model ?? SIM_MODEL;
    this.firmware = opts.firmware ?? SIM_FIRMWARE;
    this.capabilities = opts.capabilities ?? CAP_PHOTO | CAP_FACES;
    this.maxVersion = opts.maxVersion ?? MAX_PROTOCOL_VERSION;
    if (!Number.isInteger(this.maxVersion) || this.maxVersion < MIN_PROTOCOL_VERSION || this.maxVersion > MAX_PROTOCOL_VERSION)
      throw new RangeError(`maxVersion must be ${MIN_PROTOCOL_VERSION}..${MAX_PROTOCOL_VERSION}, got ${opts.maxVersion}`);
    this.timing = resolveTiming(opts.timing);
    this.ring = new EventRing(opts.logCapacity ?? DEFAULT_LOG_CAPACITY);
    this.log = opts.logger?.child({ terminal: this.index, deviceId: this.deviceId });
  }

  // ------------------------------------------------------------------ state

  get userCount(): number {
    return this.users.size;
  }

  /** true while at least one authenticated session is open */
  get connected(): boolean {
    for (const s of this.sessions) if (s.authenticated) return true;
    return false;
  }

  /** commands waiting for or being served by this terminal */
  get pending(): number {
    return this.queued;
  }

  info() {
    return {
      deviceId: this.deviceId,
      userCount: this.users.size,
      userCapacity: this.userCapacity,
      logEpoch: this.ring.logEpoch,
      firstEventId: this.ring.firstEventId,
      lastEventId: this.ring.lastEventId,
      logCapacity: this.ring.capacity,
      time: nowSec(),
      maxUsersPerBatch: this.maxUsersPerBatch,
      model: this.model,
      firmware: this.firmware,
    };
  }

  /** A copy of a user, or undefined. */
  getUser(id: string): UserRecord | undefined {
    const s = this.users.get(id);
    return s ? structuredCloneUser(s.user) : undefined;
  }

  /** Copies of every user, in protocol (memcmp) order. */
  listUsers(): UserRecord[] {
    return this.sortedUsers().map((s) => structuredCloneUser(s.user));
  }

  /** Up to `limit` events with ID > afterId. */
  eventsAfter(afterId: number, limit: number): EventRecord[] {
    return this.ring.after(afterId, limit);
  }

  // ------------------------------------------------------------------ queue

  /** Runs `fn` when every earlier command of this terminal has finished. */
  private run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.queued++;
    const p = this.tail.then(fn);
    this.tail = p.then(
      () => undefined,
      () => undefined,
    );
    return p.finally(() => {
      this.queued--;
    });
  }

  private async waitStall(): Promise<void> {
    for (;;) {
      const left = this.stallUntil - Date.now();
      if (left <= 0) return;
      await delay(Math.max(1, left));
    }
  }

  // ------------------------------------------------------------------ protocol

  /**
   * Serves one authenticated REQUEST frame and resolves with the frame to send
   * back (RESPONSE, or ERROR for an unknown command or a malformed payload).
   * HELLO/AUTH are the session's business; BYE is answered here and closed by
   * the session.
   */
  handle(frame: Frame, hooks?: SessionHooks): Promise<FrameInit> {
    return this.run(async () => {
      await this.waitStall();
      const busy = this.takeBusy(frame);
      if (busy) return busy;
      try {
        return await this.serve(frame, hooks);
      } catch (e) {
        if (e instanceof ProtocolError) {
          this.log?.debug({ command: frame.command, code: e.code, err: e.message }, 'malformed request');
          return errorFrame(frame, e.status, e.message);
        }
        this.log?.error({ err: e, command: frame.command }, 'internal error serving a request');
        return errorFrame(frame, Status.BAD_PAYLOAD, 'internal error in the terminal');
      }
    });
  }

  private async serve(frame: Frame, hooks?: SessionHooks): Promise<FrameInit> {
    const t = this.timing;
    const ok = (payload: Buffer = EMPTY, status = Status.OK): FrameInit => ({
      kind: FrameKind.RESPONSE,
      seq: frame.seq,
      command: frame.command,
      status,
      payload,
    });
    switch (frame.command) {
      case Command.PING:
        decodeEmpty(frame.payload, 'PING request');
        return ok();
      case Command.BYE:
        decodeEmpty(frame.payload, 'BYE request');
        return ok();
      case Command.GET_INFO:
        decodeEmpty(frame.payload, 'GET_INFO request', true);
        await delay(t.perCommandMs);
        return ok(encodeInfo(this.info()));
      case Command.GET_LOG: {
        const req = decodeGetLogRequest(frame.payload);
        if (req.maxCount < 1 || req.maxCount > LIMITS.maxLogCount)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `GET_LOG maxCount must be 1..${LIMITS.maxLogCount}`);
        const events = this.ring.after(req.afterId, req.maxCount);
        await delay(t.perCommandMs + t.perEventReadMs * events.length);
        // read the head after the wait: events may have been added meanwhile, never removed from the page
        return ok(
          encodeGetLogResponse({
            logEpoch: this.ring.logEpoch,
            firstEventId: this.ring.firstEventId,
            lastEventId: this.ring.lastEventId,
            events,
          }),
        );
      }
      case Command.SUBSCRIBE_LOG: {
        const req = decodeSubscribeRequest(frame.payload);
        const window = effectiveWindow(req.window);
        if (window < 1 || window > MAX_SUBSCRIBE_WINDOW)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `SUBSCRIBE_LOG window must be 0..${MAX_SUBSCRIBE_WINDOW}`);
        await delay(t.perCommandMs);
        if (!hooks) return ok(EMPTY, Status.BAD_PAYLOAD);
        hooks.subscribe(req.afterId, window);
        return ok(
          encodeSubscribeResponse({
            logEpoch: this.ring.logEpoch,
            firstEventId: this.ring.firstEventId,
            lastEventId: this.ring.lastEventId,
          }),
        );
      }
      case Command.LIST_USERS: {
        const req = decodeListUsersRequest(frame.payload);
        if (req.maxCount < 1 || req.maxCount > LIMITS.maxListCount)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `LIST_USERS maxCount must be 1..${LIMITS.maxListCount}`);
        const all = this.sortedUsers();
        const start = req.afterUserId === '' ? 0 : upperBound(all, Buffer.from(req.afterUserId, 'utf8'));
        const page = all.slice(start, start + req.maxCount);
        const entries = page.map((s) => {
          if (!s.digest) s.digest = userDigest(s.user);
          return { userId: s.user.id, flag: s.user.flag, version: s.user.version, digest: s.digest };
        });
        await delay(t.perCommandMs + t.perUserListedMs * entries.length);
        return ok(encodeListUsersResponse({ total: all.length, more: start + page.length < all.length, entries }));
      }
      case Command.GET_USERS: {
        const req = decodeGetUsersRequest(frame.payload);
        if (req.userIds.length < 1 || req.userIds.length > this.maxUsersPerBatch)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `GET_USERS count must be 1..${this.maxUsersPerBatch} (maxUsersPerBatch)`);
        const mask = (req.infoMask & INFO_MASK_ALL_PARTS) | InfoMask.DATA;
        await delay(t.perCommandMs + t.perUserReadMs * req.userIds.length);
        // encode after the wait so the answer reflects the state when it is sent
        const results = req.userIds.map((id) => {
          const s = this.users.get(id);
          if (!s) return { status: Status.USER_NOT_FOUND, record: EMPTY };
          const record = encodeUser(s.user, mask);
          // fault "unreadable": a record in a user format the server does not know (framing intact)
          if (this.isUnreadable(id)) record[USER_FORMAT_VERSION_OFFSET] = UNREADABLE_FORMAT_VERSION;
          return { status: Status.OK, record };
        });
        const payload = encodeGetUsersResponse({ results });
        if (payload.length > MAX_PAYLOAD) {
          // the protocol has no way to split one answer: fail it as a whole and let the server ask for fewer
          return ok(EMPTY, Status.FRAME_TOO_LARGE);
        }
        return ok(payload);
      }
      case Command.PUT_USERS: {
        const req = decodePutUsersRequest(frame.payload);
        if (req.records.length < 1 || req.records.length > this.maxUsersPerBatch)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `PUT_USERS count must be 1..${this.maxUsersPerBatch} (maxUsersPerBatch)`);
        await delay(t.perCommandMs + t.perUserWriteMs * req.records.length);
        const statuses = req.records.map((rec) => this.putFromServer(rec, req.overwrite));
        return ok(encodeStatusList({ statuses }));
      }
      case Command.DELETE_USERS: {
        const req = decodeDeleteUsersRequest(frame.payload);
        if (req.userIds.length < 1 || req.userIds.length > LIMITS.maxBatch)
          throw new ProtocolError('FIELD_OUT_OF_RANGE', `DELETE_USERS count must be 1..${LIMITS.maxBatch}`);
        await delay(t.perCommandMs + t.perUserWriteMs * req.userIds.length);
        const statuses = req.userIds.map((id) => {
          if (!this.users.has(id)) return Status.USER_NOT_FOUND;
          this.removeUser(id);
          this.append(EventCode.USER_DELETE_SUCCESS, id, ORIGIN_SERVER);
          return Status.OK;
        });
        this.changed();
        return ok(encodeStatusList({ statuses }));
      }
      default:
        return errorFrame(frame, Status.UNKNOWN_COMMAND, `unknown command 0x${frame.command.toString(16).padStart(4, '0')}`);
    }
  }

  /** One PUT_USERS record: decoded on its own so a bad record fails alone. */
  private putFromServer(rec: Buffer, overwrite: boolean): Status {
    let u: UserRecord;
    try {
      u = decodeUser(rec).user;
    } catch (e) {
      this.log?.debug({ err: (e as Error).message }, 'PUT_USERS record rejected');
      return Status.INVALID_USER;
    }
    if (validateUser(u)) return Status.INVALID_USER;
    const existing = this.users.get(u.id);
    if (existing && !overwrite) return Status.DUPLICATE_USER_ID;
    if (!existing && this.users.size >= this.userCapacity) return Status.USER_FULL;
    if (this.cardConflict(u)) return Status.DUPLICATE_CARD;
    // PROTOCOL.md 5 PUT_USERS: the server's record is stored as sent, version included;
    // of the flag, CREATED/UPDATED (device changes) are cleared and DISABLED is kept
    u.flag &= UserFlag.DISABLED;
    this.storeUser(u);
    this.append(existing ? EventCode.USER_UPDATE_SUCCESS : EventCode.USER_ENROLL_SUCCESS, u.id, ORIGIN_SERVER);
    this.changed();
    return Status.OK;
  }

  // ------------------------------------------------------------------ on-device actions

  /**
   * A person enrolls a new user at the terminal. Logs USER_ENROLL_SUCCESS with
   * param 1 (device) and sets the CREATED flag. Throws SimActionError.
   */
  enroll(user: UserRecord): Promise<UserRecord> {
    const u = structuredCloneUser(user);
    return this.run(async () => {
      await delay(this.timing.perCommandMs + this.timing.perUserWriteMs);
      const problem = validateUser(u);
      if (problem) throw new SimActionError(400, problem, Status.INVALID_USER);
      if (this.users.has(u.id)) throw new SimActionError(409, `user ${JSON.stringify(u.id)} already exists`, Status.DUPLICATE_USER_ID);
      if (this.users.size >= this.userCapacity)
        throw new SimActionError(409, `the terminal is full (${this.userCapacity} users)`, Status.USER_FULL);
      const owner = this.cardConflict(u);
      if (owner) throw new SimActionError(409, `a card is already held by user ${JSON.stringify(owner)}`, Status.DUPLICATE_CARD);
      u.flag = (u.flag & UserFlag.DISABLED) | UserFlag.CREATED_ON_DEVICE;
      u.version = 1;
      this.storeUser(u);
      this.append(EventCode.USER_ENROLL_SUCCESS, u.id, ORIGIN_DEVICE);
      this.changed();
      return structuredCloneUser(u);
    });
  }

  /** Parses a user JSON body and enrolls it (SimActionError 400 on bad JSON). */
  enrollJson(body: unknown): Promise<UserRecord> {
    let u: UserRecord;
    try {
      u = userFromJson(body);
    } catch (e) {
      if (e instanceof UserJsonError) return Promise.reject(new SimActionError(400, e.message, Status.INVALID_USER));
      throw e;
    }
    return this.enroll(u);
  }

  /**
   * A person edits a user at the terminal: the fields given replace the stored
   * ones; `addCards` / `addFingers` append. Logs USER_UPDATE_SUCCESS with param 1
   * and sets the UPDATED flag.
   */
  edit(userId: string, patch: UserPatch): Promise<UserRecord> {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
      return Promise.reject(new SimActionError(400, 'the edit must be a JSON object'));
    return this.run(async () => {
      await delay(this.timing.perCommandMs + this.timing.perUserWriteMs);
      const cur = this.users.get(userId);
      if (!cur) throw new SimActionError(404, `no user ${JSON.stringify(userId)} on terminal ${this.index}`, Status.USER_NOT_FOUND);
      if (patch.id !== undefined && patch.id !== userId) throw new SimActionError(400, 'the user id cannot be changed by an edit');
      const { addCards, addFingers, ...fields } = patch;
      let u: UserRecord;
      try {
        u = userFromJson({ ...fields, id: userId }, cur.user);
        if (addCards !== undefined || addFingers !== undefined) {
          const extra = userFromJson({
            id: userId,
            ...(addCards !== undefined ? { cards: addCards } : {}),
            ...(addFingers !== undefined ? { fingers: addFingers } : {}),
          });
          u.cards.push(...extra.cards);
          u.fingers.push(...extra.fingers);
        }
      } catch (e) {
        if (e instanceof UserJsonError) throw new SimActionError(400, e.message, Status.INVALID_USER);
        throw e;
      }
      const problem = validateUser(u);
      if (problem) throw new SimActionError(400, problem, Status.INVALID_USER);
      const owner = this.cardConflict(u);
      if (owner) throw new SimActionError(409, `a card is already held by user ${JSON.stringify(owner)}`, Status.DUPLICATE_CARD);
      u.flag |= UserFlag.UPDATED_ON_DEVICE;
      u.version = (cur.user.version + 1) & 0xffff;
      this.storeUser(u);
      this.append(EventCode.USER_UPDATE_SUCCESS, u.id, ORIGIN_DEVICE);
      this.changed();
      return structuredCloneUser(u);
    });
  }

  /** A person deletes a user at the terminal. Logs USER_DELETE_SUCCESS with param 1. */
  remove(userId: string): Promise<void> {
    return this.run(async () => {
      await delay(this.timing.perCommandMs + this.timing.perUserWriteMs);
      if (!this.users.has(userId))
        throw new SimActionError(404, `no user ${JSON.stringify(userId)} on terminal ${this.index}`, Status.USER_NOT_FOUND);
      this.removeUser(userId);
      this.append(EventCode.USER_DELETE_SUCCESS, userId, ORIGIN_DEVICE);
      this.changed();
    });
  }

  // ------------------------------------------------------------------ faults

  /** Factory reset: users and log cleared; event IDs restart at 1 under a new logEpoch (event 1 is FACTORY_RESET). */
  factoryReset(): void {
    this.dropUsers();
    this.ring.reset();
    this.emit('log-reset');
    this.append(EventCode.FACTORY_RESET, '', ORIGIN_SERVER);
    this.log?.info({ logEpoch: this.ring.logEpoch }, 'factory reset');
    this.changed();
  }

  /** Drops every connection now (no BYE). */
  dropConnections(): void {
    this.emit('drop');
    for (const s of [...this.sessions]) s.destroy('dropped (fault)');
  }

  /** Stall: answers (and pushes) are held for `ms` from now; 0 ends a stall. */
  stall(ms: number): void {
    this.stallUntil = Date.now() + ms;
    this.scheduleFaultsChanged(ms);
  }

  /** Blackhole: input is read and ignored, nothing is answered or pushed for `ms` from now; 0 ends it. */
  blackhole(ms: number): void {
    this.blackholeUntil = Date.now() + ms;
    this.scheduleFaultsChanged(ms);
  }

  /** Refuse new connections for `ms` from now (existing sessions stay); 0 ends a refusal. */
  refuse(ms: number): void {
    this.refuseUntil = Date.now() + ms;
    this.emit('refuse', this.refuseUntil);
  }

  /**
   * Busy: the next `count` requests (of `command` only, when given; never PING or
   * BYE) are answered with status BUSY instead of being served: as a RESPONSE
   * (what a protocol 1.1 terminal sends) or, with `asError`, as an ERROR frame.
   */
  busy(count: number, opts: { command?: Command; asError?: boolean } = {}): void {
    this.busyLeft = count;
    this.busyCommand = opts.command;
    this.busyAsError = opts.asError ?? false;
  }

  /** requests still to be answered BUSY */
  get busyRemaining(): number {
    return this.busyLeft;
  }

  private takeBusy(frame: Frame): FrameInit | null {
    if (this.busyLeft <= 0 || frame.command === Command.PING || frame.command === Command.BYE) return null;
    if (this.busyCommand !== undefined && frame.command !== this.busyCommand) return null;
    this.busyLeft--;
    this.log?.debug({ command: frame.command, left: this.busyLeft }, 'fault: answered BUSY');
    if (this.busyAsError) return errorFrame(frame, Status.BUSY, 'busy (fault)');
    return { kind: FrameKind.RESPONSE, seq: frame.seq, command: frame.command, status: Status.BUSY, payload: EMPTY };
  }

  /**
   * Unreadable: for `ms` from now, GET_USERS returns the record of `userId` (or of
   * every user when omitted) with formatVersion 2, a format a protocol 1.x server
   * cannot read; 0 ends it.
   */
  unreadable(ms: number, userId?: string): void {
    this.unreadableUntil.set(userId ?? ALL_USERS, Date.now() + ms);
  }

  private isUnreadable(userId: string): boolean {
    const now = Date.now();
    return (this.unreadableUntil.get(userId) ?? 0) > now || (this.unreadableUntil.get(ALL_USERS) ?? 0) > now;
  }

  corruptNextFrame(): void {
    this.corruptNext = true;
  }

  /** true once per corrupt fault: the caller corrupts the frame it is about to send */
  takeCorrupt(): boolean {
    if (!this.corruptNext) return false;
    this.corruptNext = false;
    return true;
  }

  get stalled(): boolean {
    return this.stallUntil > Date.now();
  }

  get blackholed(): boolean {
    return this.blackholeUntil > Date.now();
  }

  get refusing(): boolean {
    return this.refuseUntil > Date.now();
  }

  private faultTimers = new Set<NodeJS.Timeout>();

  private scheduleFaultsChanged(ms: number): void {
    this.emit('faults-changed');
    const t = setTimeout(() => {
      this.faultTimers.delete(t);
      this.emit('faults-changed');
    }, ms + 1);
    t.unref();
    this.faultTimers.add(t);
  }

  /** Clears timers (the simulator is closing). */
  dispose(): void {
    for (const t of this.faultTimers) clearTimeout(t);
    this.faultTimers.clear();
  }

  // ------------------------------------------------------------------ persistence

  /** Every stored user (the live objects: do not mutate). */
  storedUsers(): IterableIterator<UserRecord> {
    const it = this.users.values();
    return (function* () {
      for (const s of it) yield s.user;
    })();
  }

  /** Replaces users and log with persisted state (no events logged). */
  restore(users: UserRecord[], logEpoch: number, lastEventId: number, events: EventRecord[]): void {
    this.dropUsers();
    for (const u of users) this.storeUser(u);
    this.ring.restore(logEpoch, lastEventId, events);
  }

  // ------------------------------------------------------------------ store internals

  private changed(): void {
    this.emit('changed');
  }

  private append(code: EventCode, userId: string, param: number): EventRecord {
    const e = this.ring.append({ dateTime: nowSec(), deviceId: this.deviceId, userId, code, param, flags: 0 });
    this.emit('events', [e]);
    return e;
  }

  /** the ID of another user holding one of u's cards, or undefined */
  private cardConflict(u: UserRecord): string | undefined {
    for (const c of u.cards) {
      const owner = this.cardOwner.get(cardKey(c.data));
      if (owner !== undefined && owner !== u.id) return owner;
    }
    return undefined;
  }

  /**
   * Holds `pop`'s users (no events logged, the log untouched), shared with
   * every other terminal holding the same population until this one's users
   * change (then it copies them first). A bulk load for large benches: fifty
   * terminals of a million users each are one million records in memory.
   */
  holdShared(pop: SharedUsers): void {
    if (pop.users.size > this.userCapacity) throw new RangeError(`${pop.users.size} users exceed the terminal's capacity of ${this.userCapacity}`);
    this.users = pop.users;
    this.cardOwner = pop.cardOwner;
    this.sorted = pop.sorted;
    this.sharedFrom = pop;
    this.changed();
  }

  /** true while the terminal's users are a shared population's */
  get sharesUsers(): boolean {
    return this.sharedFrom !== null;
  }

  private dropUsers(): void {
    this.users = new Map();
    this.cardOwner = new Map();
    this.sorted = null;
    this.sharedFrom = null;
  }

  /** Before a change: a terminal holding a shared population takes a copy of its own. */
  private own(): void {
    if (!this.sharedFrom) return;
    this.users = new Map(this.users);
    this.cardOwner = new Map(this.cardOwner);
    this.sorted = this.sorted ? this.sorted.slice() : null;
    this.sharedFrom = null;
  }

  private storeUser(u: UserRecord): void {
    this.own();
    const old = this.users.get(u.id);
    if (old) for (const c of old.user.cards) this.cardOwner.delete(cardKey(c.data));
    else this.sorted = null;
    for (const c of u.cards) this.cardOwner.set(cardKey(c.data), u.id);
    this.users.set(u.id, { user: u, key: Buffer.from(u.id, 'utf8') });
    if (old && this.sorted) {
      // keep the cached order valid: replace the entry in place
      const i = lowerBound(this.sorted, old.key);
      if (this.sorted[i]?.user.id === u.id) this.sorted[i] = this.users.get(u.id)!;
      else this.sorted = null;
    }
  }

  private removeUser(id: string): void {
    const old = this.users.get(id);
    if (!old) return;
    this.own();
    for (const c of old.user.cards) this.cardOwner.delete(cardKey(c.data));
    this.users.delete(id);
    this.sorted = null;
  }

  private sortedUsers(): Stored[] {
    if (!this.sorted) this.sorted = [...this.users.values()].sort((a, b) => Buffer.compare(a.key, b.key));
    return this.sorted;
  }
}

/**
 * One set of users that many terminals hold at once (SimTerminal.holdShared):
 * stored, indexed by card and sorted once. Build it from records nobody
 * mutates afterwards.
 */
export class SharedUsers {
  readonly users = new Map<string, Stored>();
  readonly cardOwner = new Map<string, string>();
  readonly sorted: Stored[];

  constructor(list: Iterable<UserRecord>) {
    for (const u of list) {
      if (this.users.has(u.id)) throw new RangeError(`user ${JSON.stringify(u.id)} twice in a shared population`);
      for (const c of u.cards) {
        const k = cardKey(c.data);
        const owner = this.cardOwner.get(k);
        if (owner !== undefined) throw new RangeError(`card ${k} of user ${JSON.stringify(u.id)} already belongs to ${JSON.stringify(owner)}`);
        this.cardOwner.set(k, u.id);
      }
      this.users.set(u.id, { user: u, key: Buffer.from(u.id, 'utf8') });
    }
    this.sorted = [...this.users.values()].sort((a, b) => Buffer.compare(a.key, b.key));
  }

  get size(): number {
    return this.users.size;
  }
}

/** index of the first entry whose key is > k */
function upperBound(a: Stored[], k: Buffer): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(a[mid].key, k) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** index of the first entry whose key is >= k */
function lowerBound(a: Stored[], k: Buffer): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(a[mid].key, k) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function errorFrame(req: { seq: number; command: number }, status: number, message: string): FrameInit {
  return { kind: FrameKind.ERROR, seq: req.seq, command: req.command, status, payload: encodeErrorPayload(message) };
}
