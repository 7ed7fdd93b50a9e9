// What the sync engine needs from a terminal and nothing more: the
// protocol-neutral port. A driver (one folder per protocol under src/drivers/)
// turns its protocol into the domain's terms, and the engine adapts to what
// the driver declares it can do. On it, the engine imports nothing of any
// codec (test/sync-layering.test.ts checks). The termsync driver is
// src/drivers/termsync (the mapping of its codes: mapping.ts; its session:
// session.ts); the daemon keeps a registry of drivers by protocol name.
//
// The protocol-neutral port, in short:
//
// * Facts, not codes. A driver reports what happened on the terminal as
//   DeviceFact: a user changed, a user deleted, the log (or the user store)
//   restarted, events lost, or something else. Each fact names the user, its
//   position (`ref`: the event ID of a cursor log, or the generation of a
//   poll) and its origin: 'device' (someone did it at the terminal) or
//   'server' (the terminal reports a write the server made; never pulled
//   again). A driver without an event log (ZK) finds changes by reading the
//   user table and diffing against what it last saw, and must report the
//   server's own writes as origin 'server' (or not at all): no echo.
//
// * Reasons, not status numbers. A refused record or a failed request carries
//   a RefusalReason ('duplicate-credential' | 'full' | 'invalid' | 'not-found'
//   | 'busy' | 'transport' | 'unreadable') and a detail string for people. A
//   whole request that fails throws DriverError with the same reasons.
//
// * Capabilities the engine adapts to (DriverCapabilities):
//   - eventLog 'cursor': an ordered log with IDs and an epoch; the engine
//     keeps a cursor per terminal, reads the backlog after it on reconnect,
//     and reconciles when the epoch changes or the log has a gap.
//     eventLog 'none': no log; refs are poll generations of this session,
//     the epoch is new with every session, so the engine reconciles at every
//     connect and stores no cursor worth resuming from.
//   - realtime 'all-changes' | 'new-users-only' | 'none': what the terminal
//     reports by itself; below 'all-changes' the driver polls (its own
//     interval) to find edits and deletes, and reports them as facts.
//   - listing 'digest': listUsers() returns per-user digests that the engine
//     compares with digestOf(serverUser). listing 'full-read': it returns
//     whole records that the engine compares with the model's
//     sameForTerminal(serverUser, deviceUser, capabilities.parts).
//   - maxBatch: most records per read or write request.
//   - parts (src/model/parts.ts): which parts of a user record the terminal
//     can carry (cards: count, data length, typed; fingers: count and
//     template format; faces; photo; access groups; job codes; phrase; PIN
//     'hash' | 'plain' | 'none'; name length; validity, auth modes, security
//     level, auth group, the DISABLED bit). The merge takes a part the
//     terminal cannot carry as vacant (it never fills or erases a server
//     field), and the comparison ignores it.
//
// Sessions: one DeviceSession per connected, authenticated terminal; a
// TerminalDriver dials one (terminals that dial in are accepted by the
// protocol's listener and handed over the same way).
import type { PartsSupport } from '../model/parts.js';
import type { UserRecord } from '../model/user.js';
import type { PeerLimitError } from './peer-limit.js';

// ------------------------------------------------------ protocol-neutral port

/** Who made a change the terminal reports. */
export type FactOrigin = 'device' | 'server';

export type FactKind =
  /** a user was enrolled or edited on the terminal (or written by the server: origin 'server') */
  | 'user-changed'
  /** a user was deleted on the terminal; no userId: every user (a "delete all") */
  | 'user-deleted'
  /** the terminal's log or user store restarted (factory reset, database reset): what it held before cannot be trusted */
  | 'log-reset'
  /** facts were lost (a log overwritten before it was read, a poll that missed changes): compare user lists */
  | 'log-gap'
  /** anything else the terminal logs (door events, connections); only advances the position */
  | 'other';

/** One thing that happened on a terminal, in the domain's words. */
export interface DeviceFact {
  kind: FactKind;
  /** the user named (user-changed, user-deleted) */
  userId?: string;
  /** position in the terminal's feed: its event ID (eventLog 'cursor') or the poll generation (eventLog 'none'); ascending */
  ref: number;
  origin: FactOrigin;
  /** when the terminal says it happened, ms since the epoch (0: unknown) */
  at: number;
  /** for logs and monitoring: the protocol's own name of what it reported (e.g. 'USER_DELETE_ALL_SUCCESS') */
  detail?: string;
}

/** Why a terminal refused a record, or why a request failed. */
export type RefusalReason =
  /** a card, fingerprint or user ID already held by another user */
  | 'duplicate-credential'
  /** no room for another user */
  | 'full'
  /** the terminal cannot take this record as it is */
  | 'invalid'
  /** the terminal does not hold that user */
  | 'not-found'
  /** the terminal is busy; try later */
  | 'busy'
  /** no answer, or the session ended */
  | 'transport'
  /** the answer could not be read (malformed, or not what was asked) */
  | 'unreadable';

/**
 * `code`: the protocol's own result code when it has numeric ones (kept as it
 * is in the push failures the store records; the engine never interprets it).
 */
export type WriteResult = { ok: true } | { ok: false; reason: RefusalReason; detail: string; code?: number };

export type ReadResult = { userId: string; user: UserRecord } | { userId: string; user: null; reason: RefusalReason; detail: string; code?: number };

/** A whole request failed (the session may be closing); per-record refusals are results, not errors. */
export class DriverError extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'DriverError';
  }
}

export interface DriverCapabilities {
  /** 'cursor': an ordered event log with IDs and an epoch; 'none': no log (refs are poll generations) */
  eventLog: 'cursor' | 'none';
  /** what the terminal reports by itself, without being polled */
  realtime: 'all-changes' | 'new-users-only' | 'none';
  /** 'digest': per-user digests (compare with digestOf); 'full-read': whole records (compare with sameForTerminal) */
  listing: 'digest' | 'full-read';
  /** most user records per read or write request (>= 1) */
  maxBatch: number;
  /** which parts of a user record the terminal can carry */
  parts: Readonly<PartsSupport>;
}

export interface DeviceIdentity {
  /** the driver: 'termsync', 'zk', ... */
  protocol: string;
  /** the terminal's numeric device ID, when its protocol has one */
  deviceId?: number;
  /** its serial number, when its protocol reports one */
  serial?: string;
  model: string;
  firmware: string;
  userCapacity: number;
}

/** Where a terminal's feed of facts stands. */
export interface FeedState {
  /** changes whenever the refs restart (a reset or cleared log; for eventLog 'none', every session) */
  epoch: number;
  /** the oldest ref the terminal can still deliver (0: none) */
  firstRef: number;
  /** the newest ref */
  lastRef: number;
}

export type UserListing =
  | { kind: 'digest'; entries: { userId: string; digest: string }[] }
  | { kind: 'full-read'; users: UserRecord[] };

/** One connected, authenticated terminal, as the engine sees it. */
export interface DeviceSession {
  readonly identity: DeviceIdentity;
  readonly capabilities: DriverCapabilities;
  /** "host:port" of the terminal, for logs */
  readonly remote: string;
  readonly closed: boolean;
  /** runs once when the session ends (at once if it has ended) */
  onClose(fn: (reason: string) => void): void;
  /** ends the session; 'shutdown' says goodbye in the protocol's way when it has one */
  close(reason: string): Promise<void>;

  /** where the feed stands now, and how many users the terminal holds when it says so without a listing */
  feedState(): Promise<FeedState & { userCount?: number }>;
  /**
   * Starts the feed after `afterRef`: the backlog first (eventLog 'cursor'),
   * then live facts, in ref order, in batches. `onFacts` runs for each batch
   * with the epoch the refs belong to; the engine calls ack(ref) once it has
   * processed the facts up to `ref` (a driver may hold back further facts
   * until then). Resolves once the feed runs, with where it stands.
   */
  watch(afterRef: number, onFacts: (epoch: number, facts: DeviceFact[]) => void, o?: WatchOptions): Promise<FeedState>;
  ack(ref: number): void;

  /** every user the terminal holds: digests or whole records, per capabilities.listing */
  listUsers(): Promise<UserListing>;
  /**
   * Optional: the same listing page by page, in ascending byte order of the
   * user ID, each page checked before it is handed over (at most `maxUsers` in
   * all, IDs strictly ascending across pages). Throws PeerLimitError
   * (peer-limit.ts) when the terminal goes past a bound. The engine falls back
   * to listUsers() (sorted) for a driver without it.
   */
  userPages?(o: { maxUsers: number }): AsyncIterable<UserListing>;
  /** whole records, one result per ID, in order */
  getUsers(userIds: string[]): Promise<ReadResult[]>;
  /** writes whole users (replacing them), one result per record, in order */
  putUsers(users: UserRecord[]): Promise<WriteResult[]>;
  /** one result per ID; 'not-found' means the terminal does not hold it (the engine counts that as done) */
  deleteUsers(userIds: string[]): Promise<WriteResult[]>;
  /** listing 'digest' only: the digest this terminal would list for a server record */
  digestOf?(user: UserRecord): string;
}

export interface WatchOptions {
  /**
   * Most facts the terminal may have delivered and not had acknowledged (flow
   * control; a driver asks its terminal for this window when its protocol has
   * one). A terminal that goes past it, or breaks the order of its refs, is a
   * peer that is not trusted further: the driver reports a PeerLimitError
   * through onLimit (the engine records it) and closes the session.
   */
  window?: number;
  onLimit?: (e: PeerLimitError) => void;
  /**
   * Most facts per second the terminal may deliver, with a burst of a few
   * seconds' worth (--terminal-event-rate); past it the driver paces the
   * terminal (its acknowledgements wait, so its window stays full) instead of
   * reading and processing faster. Absent or 0: no limit.
   */
  maxRatePerSec?: number;
}

/** A terminal protocol: dials terminals and hands back authenticated sessions. */
export interface TerminalDriver {
  readonly protocol: string;
  /** the port a terminal of this protocol listens on when none is given */
  readonly defaultPort: number;
  /**
   * Connects and authenticates; rejects with DriverError: 'transport' when the
   * terminal cannot be reached or hangs up during the handshake (a termsync
   * terminal does when the server's proof shows another key), 'invalid' when
   * the server side finds the key or the protocol version wrong.
   */
  dial(target: DialTarget): Promise<DeviceSession>;
}

export interface DialTarget {
  /** the terminal's ID on the server (for logs, keys and uid maps) */
  terminalId: string;
  host: string;
  port: number;
  /** the terminal's key as configured (a key file's bytes): termsync's comm key; a protocol with another form parses it (ZK: the numeric password as digits) */
  key: Buffer;
  signal?: AbortSignal;
}
