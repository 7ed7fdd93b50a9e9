// Public types of the store (src/store/store.ts).
import type { Logger } from 'pino';
import type { UserRecord } from '../model/user.js';
import type { MergeField } from '../model/merge.js';
import type { PartsSupport } from '../model/parts.js';

export type SyncMode = 'off' | 'server' | 'all' | 'specific';
export const SYNC_MODES: readonly SyncMode[] = ['off', 'server', 'all', 'specific'];
/** What the reference server does out of the box: push server changes, do not pull device changes. */
export const DEFAULT_SYNC_MODE: SyncMode = 'server';

export type Synchronous = 'NORMAL' | 'FULL';

export interface StoreOptions {
  /** open without write access (no migrations; the schema must be current). Default false. */
  readonly?: boolean;
  /** run WAL checkpoints in a worker thread instead of inside commits (the daemon does). Default false. */
  checkpointInWorker?: boolean;
  /** how long a write waits for another connection's write lock, ms. Default 5000. */
  busyTimeoutMs?: number;
  /** PRAGMA synchronous in WAL mode. Default 'NORMAL' (see the trade-off in store.ts). */
  synchronous?: Synchronous;
  /** events kept in memory while the events table cannot be written. Default 10,000. */
  maxPendingEvents?: number;
  /** per-terminal rate limits on the event types a terminal can trigger (src/store/event-limits.ts); null: none. Default DEFAULT_EVENT_LIMITS */
  eventLimits?: import('./event-limits.js').EventLimitOptions | null;
  /** clock, ms since the epoch. Default Date.now. */
  now?: () => number;
  logger?: Logger;
}

// ------------------------------------------------------------------ users

export interface PutUserResult {
  created: boolean;
  changed: boolean;
  /** the user's server_version after the call (unchanged when changed=false) */
  serverVersion: number;
}

export interface MergeContext {
  /** the terminal the record came from */
  terminalId: string;
  /**
   * What that terminal can carry (its driver's declaration; default every part).
   * Parts it cannot carry never fill a server field, and are no reason to push
   * the server's record back to it (differsFromDevice uses sameForTerminal).
   */
  parts?: Readonly<PartsSupport>;
  /** the terminal's event ID that reported the change (kept in the monitoring event) */
  eventId: number;
  /** advance the terminal's cursor to this event ID in the same transaction (never moves it back) */
  cursorAfter?: number;
  /**
   * Terminals that should receive the server's record. By default they are
   * enqueued only when the merge changed the server's record; the source
   * terminal is skipped here (see pushBack).
   */
  pushTo?: readonly string[];
  /** 'changed' (default): enqueue pushTo only if the record changed; 'always': enqueue regardless */
  pushWhen?: 'changed' | 'always';
  /**
   * Enqueue the source terminal when its copy differs from the server's
   * resulting record (the server kept fields the device had changed, or
   * filled nothing the device lacks). Default true.
   */
  pushBack?: boolean;
}

export interface MergeResult {
  created: boolean;
  changed: boolean;
  /** the server's resulting record */
  record: UserRecord;
  /** true when the terminal's copy differs from `record` (it needs the server's record) */
  differsFromDevice: boolean;
  filled: MergeField[];
  serverVersion: number;
  /** the change's feed number when the merge changed the server's record; null otherwise */
  seq: number | null;
  /** terminals owed this user by a targeted entry (the owed set): pushTo, and the source terminal when its copy differs from an unchanged record */
  enqueued: string[];
  /** ID of the USER_UPDATE_SUCCESS_DEVICE monitoring event */
  monitoringEventId: number;
}

// -------------------------------------------------------------- terminals

export type TerminalDirection = 'dial' | 'listen';

export interface TerminalRow {
  id: string;
  deviceId: number | null;
  address: string | null;
  direction: TerminalDirection;
  state: string;
  approved: boolean;
  logEpoch: number | null;
  /** last event ID fully processed */
  cursor: number;
  lastSeen: number | null;
  userCapacity: number | null;
  maxBatch: number | null;
  model: string | null;
  firmware: string | null;
  /** access groups this terminal serves in syncMode 'specific' */
  accessGroups: number[];
  /** what the device ID is bound to (JSON of an IdentityBinding, src/terminal/identity.ts); null = not bound */
  identity: string | null;
  /** the driver that speaks to the terminal: 'termsync' (default), 'zk', ... (src/drivers/) */
  protocol: string;
  createdAt: number;
  updatedAt: number;
}

/** Fields a caller may set; cursor and epoch go through setCursor/advanceCursor. */
export type TerminalPatch = Partial<
  Pick<TerminalRow, 'deviceId' | 'address' | 'direction' | 'state' | 'approved' | 'lastSeen' | 'userCapacity' | 'maxBatch' | 'model' | 'firmware' | 'accessGroups' | 'identity' | 'protocol'>
>;
export type TerminalInput = TerminalPatch & { id: string; direction: TerminalDirection };

/** How a dial terminal came to be known (migration 7); an API-added one keeps what dials it again. */
export interface DialSettings {
  addedBy: 'flags' | 'api';
  /** TLS certificate fingerprint (hex) the session is pinned to */
  pin?: string | null;
  /** a ZK terminal's comm key digits */
  key?: Buffer | null;
}

export interface LogPosition {
  logEpoch: number | null;
  cursor: number;
}

// ----------------------------------------------------------------- events

/** Monitoring event types the store and the sync engine write. Other strings are allowed. */
export const MonitoringEvent = {
  USER_UPDATE_SUCCESS_DEVICE: 'USER_UPDATE_SUCCESS_DEVICE',
  USER_UPDATE_SUCCESS_SERVER: 'USER_UPDATE_SUCCESS_SERVER',
  SERVER_DB_SAVE_FAIL: 'SERVER_DB_SAVE_FAIL',
} as const;
export type MonitoringEventType = (typeof MonitoringEvent)[keyof typeof MonitoringEvent];

/** The wording an administrator sees (the reference server's). */
export const MONITORING_LABELS: Readonly<Record<MonitoringEventType, string>> = {
  USER_UPDATE_SUCCESS_DEVICE: 'User update succeeded (Device)',
  USER_UPDATE_SUCCESS_SERVER: 'User update succeeded (Server)',
  SERVER_DB_SAVE_FAIL: 'Fail to save to the server DB',
};

export interface EventInput {
  type: string;
  terminalId?: string | null;
  userId?: string | null;
  /** free text or JSON; never PINs, card data, templates or keys */
  detail?: string | null;
  /** ms since the epoch; default now */
  time?: number;
}

export interface StoredEvent {
  id: number;
  time: number;
  type: string;
  terminalId: string | null;
  userId: string | null;
  detail: string | null;
}

export interface EventQuery {
  /** events with id > after (ascending) */
  after?: number;
  /** events with id < before */
  before?: number;
  /** default 100, at most 10,000 */
  limit?: number;
  type?: string;
  terminalId?: string;
  userId?: string;
  /** newest first (for a status page); default oldest first */
  newestFirst?: boolean;
}

export type DurableEventResult = { stored: true; id: number } | { stored: false; pending: number } | { stored: false; suppressed: true };

/** The database's use of the disk (Store.diskUsage). */
export interface DiskUsage {
  /** bytes of the database file, of its -wal file */
  dbBytes: number;
  walBytes: number;
  pageSize: number;
  pageCount: number;
  /** pages inside the file that are free (reused before the file grows) */
  freePages: number;
}

// ----------------------------------------------------------------- outbox

export interface OutboxItem {
  terminalId: string;
  userId: string;
  enqueuedAt: number;
  /** bumped on every re-enqueue; ack with the item so a newer change is not lost */
  gen: number;
  attempts: number;
  lastError: string | null;
}

/** an outbox entry to acknowledge: the item from take() (safe), or a bare user ID (removes any generation) */
export type OutboxAck = string | Pick<OutboxItem, 'userId' | 'gen'>;

export interface OutboxCounts {
  total: number;
  byTerminal: Record<string, number>;
}

export interface PushFailure {
  terminalId: string;
  userId: string;
  /** the terminal's status code, e.g. Status.DUPLICATE_CARD */
  status: number;
  reason: string;
  time: number;
}

export interface BackupProgress {
  totalPages: number;
  remainingPages: number;
}
