// What the sync engine needs from a terminal and nothing more. Our own protocol
// implements it in src/terminal/link.ts; a driver for another maker's protocol
// implements the same interface and the engine does not change.
import type { EventRecord } from '../model/event.js';
import type { UserRecord } from '../model/user.js';

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

export interface TerminalLink {
  readonly identity: TerminalIdentity;
  readonly remote: string;
  /** current log state and user count */
  info(): Promise<LogState & { userCount: number }>;
  getLog(afterId: number, maxCount: number): Promise<LogPage>;
  /**
   * Realtime events after `afterId`; `onEvents` runs for each batch and must call ack() when processed.
   * `window`: most events the terminal may send before an acknowledgement (the engine enforces it).
   */
  subscribe(afterId: number, onEvents: (epoch: number, events: EventRecord[]) => void, window?: number): Promise<LogState>;
  ack(lastEventId: number): void;
  /** The whole user index (paged internally). */
  listUsers(): Promise<UserIndexEntry[]>;
  /**
   * The user index page by page, in ascending order of the user ID's bytes, each
   * page checked before it is handed over: at most `maxUsers` users in all, IDs
   * strictly ascending across pages (paging that does not advance is refused).
   * Throws PeerLimitError (peer-limit.ts) when the terminal goes past a bound.
   * Optional: the engine falls back to listUsers() for a driver without it.
   */
  userIndexPages?(o: { maxUsers: number }): AsyncIterable<UserIndexEntry[]>;
  getUsers(userIds: string[]): Promise<GetUserResult[]>;
  /** Writes records (replacing whole users); one result per record, 0 = ok, negative = the terminal's reason. */
  putUsers(users: UserRecord[]): Promise<number[]>;
  deleteUsers(userIds: string[]): Promise<number[]>;
  /** The digest this terminal's protocol computes for a server record (for diffing). */
  digestOf(user: UserRecord): string;
  readonly closed: boolean;
  onClose(fn: (reason: string) => void): void;
  close(reason: string): Promise<void>;
}
