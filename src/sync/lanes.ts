// The sync engine's vocabulary: its tuning and bounds, the lane of each
// terminal (its inbox, cursors in this session, the batch in flight), the
// steps of its tasks, and the monitoring events it writes.
import type { Logger } from 'pino';
import type { SiteStore } from '../store/backend.js';
import { MonitoringEvent, type SyncMode } from '../store/types.js';
import type { DeviceFact, DeviceSession, ReadResult } from './ports.js';
import type { UserRecord } from '../model/user.js';

export const Priority = { PULL: 3, PUSH: 2, CATCHUP: 1 } as const;

/** most users pulled and merged in one ingest step (bounds the merge transaction's length) */
export const PULL_BATCH = 25;
/** steps released per turn of the event loop until this much time has passed (see turn) */
export const TURN_BUDGET_MS = 2;
/** shortest time between two ingests of one terminal while it keeps logging */
export const INGEST_LINGER_MS = 25;
/** see EngineOptions.jobSliceMs and slowJobMs */
export const DEFAULT_JOB_SLICE_MS = 2_000;
export const DEFAULT_SLOW_JOB_MS = 1_000;
/** a reconcile gives the event loop back after running this long */
export const SLICE_MS = 4;
/** server users read per step of a reconcile */
export const SERVER_WALK_PAGE = 128;
/** users queued for a terminal per transaction during a reconcile */
export const RECONCILE_PUSH_CHUNK = 1000;
/** default --reconcile-timeout-sec */
export const DEFAULT_RECONCILE_TIMEOUT_SEC = 300;
/** wait before retrying an abandoned reconcile, doubling up to the max */
export const RECONCILE_RETRY_MIN_MS = 5_000;
export const RECONCILE_RETRY_MAX_MS = 600_000;
/** most pull failures of one terminal taken into a session's retry set at once */
export const REPULL_LOAD = 10_000;

/** Monitoring event types written by the engine (besides the store's own). */
export const EngineEvent = {
  SERVER_DB_SAVE_FAIL: MonitoringEvent.SERVER_DB_SAVE_FAIL,
  USER_UPDATE_SUCCESS_SERVER: MonitoringEvent.USER_UPDATE_SUCCESS_SERVER,
  USER_DELETED_ON_DEVICE: 'USER_DELETED_ON_DEVICE',
  PUSH_FAILED: 'PUSH_FAILED',
  RECONCILE: 'RECONCILE',
  TERMINAL_RESET: 'TERMINAL_RESET',
  LOG_GAP: 'LOG_GAP',
  /** a device user whose record could not be read; kept in pull_failures and pulled again later */
  USER_PULL_FAILED: 'USER_PULL_FAILED',
  /** a terminal went past a bound the server sets (window, list size, paging); its session was ended */
  PEER_LIMIT_EXCEEDED: 'PEER_LIMIT_EXCEEDED',
} as const;

/** wait before asking a busy terminal again (a refusal 'busy'), doubling up to the max; reset by a step that went through */
export const BUSY_RETRY_MIN_MS = 500;
export const BUSY_RETRY_MAX_MS = 30_000;

/** A device fact that names a user changed at the terminal (to pull). */
export const isDeviceChange = (f: DeviceFact) => f.kind === 'user-changed' && f.origin === 'device' && f.userId !== undefined && f.userId !== '';

export interface EngineOptions {
  /** the site store (src/store/backend.ts): feeds, cursors and their transactions */
  store: SiteStore;
  /** the sync mode in force at start (the daemon reads it from the database). Default 'server' */
  syncMode?: SyncMode;
  log: Logger;
  /** global cap on jobs running at once over all terminals */
  concurrency?: number;
  /** delay before retrying a batch whose database write failed, doubling to 30 s */
  dbRetryMs?: number;
  /** facts a terminal may have sent and not had acknowledged (its driver enforces it; termsync: the SUBSCRIBE_LOG window); more ends its session */
  subscribeWindow?: number;
  /** facts per second a terminal may deliver; past it its acknowledgements wait (--terminal-event-rate; default DEFAULT_EVENT_RATE, 0: no limit) */
  terminalEventRate?: number;
  /** most users a terminal may list (besides the capacity it announced); more ends its session (--max-terminal-users) */
  maxTerminalUsers?: number;
  /** a reconcile running longer is abandoned and retried later (--reconcile-timeout-sec), ms */
  reconcileTimeoutMs?: number;
  /** first wait before retrying an abandoned reconcile, doubling to 10 min (default 5 s) */
  reconcileRetryMs?: number;
  /** longest a job holds a slot of the global queue before it gives it back (default 2 s) */
  jobSliceMs?: number;
  /** a job that took longer makes its lane slow (default 1 s) */
  slowJobMs?: number;
  now?: () => number;
  /**
   * Several daemons on one database: the lease fencing token of a terminal,
   * passed as `fence` with every cursor write of it (undefined: this daemon
   * does not hold the lease; the write is refused with LeaseLostError).
   * Without it (one daemon) writes carry no fence.
   */
  fenceFor?: (terminalId: string) => number | undefined;
}

/** The engine's bounds and tuning as the daemon passes them through (DaemonOptions.engine). */
export type EngineTuning = Omit<EngineOptions, 'store' | 'log' | 'now' | 'syncMode'>;

export interface EngineStats {
  pulls: number;
  pullsFailed: number;
  pushes: number;
  pushesFailed: number;
  dbWriteFailures: number;
  /** writes refused because the terminal's lease was lost (their sessions were closed) */
  leaseLost?: number;
  reconciles: number;
  /** ms from a device event's arrival to its user's last push, per user */
  lastPushLatencyMs: number[];
}

export type Task = 'ingest' | 'push' | 'reconcile' | 'repull';

/** One ingest step: the facts taken from a lane's inbox and the users pulled for them (see ingest, mergeAndAck). */
export interface IngestStep {
  lane: Lane;
  link: DeviceSession;
  /** the lane's generation when the facts were taken (a reset meanwhile makes them stale) */
  gen: number;
  pulled: ReadResult[];
  /** user -> the ref of the last fact in this step that named it */
  wanted: Map<string, number>;
  users: string[];
  /** facts taken from the inbox */
  take: number;
  /** ref of the last fact taken */
  lastRef: number;
  /** users deleted on the terminal */
  deletes: DeviceFact[];
  /** the terminal's user store was wiped: compare user lists */
  reset: boolean;
  /** facts were lost: compare user lists (the cursor does not advance past the gap) */
  gap: DeviceFact | null;
}

/** A push batch sent and not yet answered: from the owed set (`last`: its keyset position) or the feed (`upTo`). */
export interface Inflight {
  link: DeviceSession;
  users: Set<string>;
  kind: 'owed' | 'feed';
  last?: { enqueuedAt: number; userId: string };
  upTo?: number;
  done: Promise<void>;
}

/** What a push batch carries: records to write, users to delete, and where each came from. */
export interface PushBatch {
  kind: 'owed' | 'feed';
  /** records to write, with the owed entry's generation when from the owed set */
  records: { user: UserRecord; gen?: number }[];
  /** users deleted on the server: the terminal deletes them too */
  gone: { userId: string; gen?: number }[];
  /** kind 'feed': the cursor move the answers make */
  feed?: { from: number; to: number };
  /** kind 'owed': the keyset position of its last entry (the next batch is read behind it) */
  last?: { enqueuedAt: number; userId: string };
  /** kind 'feed': users held back (see PushEngine.unpulled): owed to the terminal instead, with the cursor move */
  held?: string[];
}

export interface Lane {
  id: string;
  link: DeviceSession | null;
  /** facts received and not yet processed, in ref order (the driver checks the order and the window) */
  inbox: DeviceFact[];
  /** terminal's feed epoch as seen in this session */
  epoch: number;
  /** where this session's feed started */
  subscribedFrom: number;
  /** highest ref processed in this session */
  processed: number;
  /** bumped when the terminal's log resets while connected: work begun before belongs to the old log */
  gen: number;
  /** wait before the next retry after the terminal answered 'busy' (doubles; reset by a step that went through) */
  busyRetryMs: number;
  /** the session is attached and its feed not yet started (idle() waits for it) */
  starting: boolean;
  /** its last job took long, or ran past its slice: its jobs share the slow part of the slots */
  slow: boolean;
  /** wait before retrying an abandoned reconcile (doubles; reset by one that finishes) */
  reconcileRetryMs: number;
  /** set while an abandoned reconcile waits for its retry */
  reconcileTimer: NodeJS.Timeout | null;
  wantPush: boolean;
  catchingUp: boolean;
  wantReconcile: boolean;
  running: boolean;
  dbRetryMs: number;
  retryTimer: NodeJS.Timeout | null;
  /** user ID -> time its device event arrived (for pull-to-push latency) */
  arrivals: Map<string, number>;
  /** the PUT_USERS batch sent and not yet answered (see pushSome) */
  inflight: Inflight | null;
  lastTask: Task | null;
  /** users whose earlier pull failed (pull_failures), to pull again in this session */
  repull: Set<string>;
  /** an ingest's merge is waiting for its turn (see ingest) */
  merging: boolean;
  /** users whose push to this terminal was held back while a device change of theirs waited to be pulled (see PushEngine.unpulled) */
  held: Set<string>;
  lastIngestAt: number;
  /**
   * Most users per PUT_USERS for this terminal: its announced batch size, halved
   * after a batch failed in transit (a slow link that cannot carry a full batch
   * within the request timeout) and doubled back after each batch that went through.
   */
  batchLimit: number;
}

