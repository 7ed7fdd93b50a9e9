// What the admin API and the operator console read and do, as one async port
// (AdminSite), so the same server (server.ts) runs on both kinds of daemon:
//
// - one daemon on its SQLite file (src/admin/daemon-site.ts: a thin adapter
//   over the Daemon's methods and its Store);
// - one daemon of several on one PostgreSQL database
//   (src/cluster/admin-site.ts: the shared database, the lease table and this
//   daemon's engine and sessions).
//
// Reads of the site (users, events, refusals, counts) go to the SiteStore
// both backends implement; the port adds what depends on who drives which
// terminal (its session state, its owner) and the actions that need a live
// session. An action the site cannot take here is an ActionRefused with the
// HTTP status the API answers (409: another daemon drives the terminal, or
// the configuration decides; 501: not possible on this backend) and a message
// that says what to do instead.
import type { TerminalView } from '../daemon.js';
import type { UserRecord } from '../model/user.js';
import type { SiteStore } from '../store/backend.js';
import type { DiskUsage, SyncMode, TerminalRow } from '../store/types.js';
import type { SyncEngine } from '../sync/engine.js';
import type { TerminalDriver } from '../sync/ports.js';
import type { DialTarget, SessionManager } from '../terminal/manager.js';

/** A terminal's lease (several daemons on PostgreSQL). */
export interface LeaseView {
  /** the daemon holding it (null: free) */
  owner: string | null;
  /** the fencing token of the latest holder */
  token: number;
  /** ms since the epoch (database clock); null: never held */
  expiresAt: number | null;
  /** held now (the owner renews it) */
  live: boolean;
}

/** A terminal as the admin API shows it: the daemon's view plus who drives it. */
export interface AdminTerminal extends TerminalView {
  /** the daemon that drives it now (its live lease's owner); null on one daemon (SQLite: this daemon drives every terminal) or when nobody does */
  owner: string | null;
  /** its lease row (PostgreSQL); null on one daemon */
  lease: LeaseView | null;
}

/** An action the site does not take here: answered with `status` and the message. */
export class ActionRefused extends Error {
  constructor(
    readonly status: 409 | 501,
    message: string,
  ) {
    super(message);
    this.name = 'ActionRefused';
  }
}

export interface AdminHealth {
  /** the database answers a read */
  db: boolean;
  /** terminals with a live session on this daemon */
  terminalsOnline: number;
}

export interface AdminSite {
  /** 'sqlite': one daemon; 'postgres': one of several */
  readonly kind: 'sqlite' | 'postgres';
  /** this daemon's ID among several (the lease owner name); null on one daemon */
  readonly daemonId: string | null;
  /** the site's data (users, events, refusals, counts) */
  readonly store: SiteStore;
  /** this daemon's sync engine (queue, lanes, stats, sync mode in force) */
  readonly engine: SyncEngine;
  /** this daemon's sessions */
  readonly manager: SessionManager;
  /** the protocols terminals can be added with (protocol name -> driver, or at least its default port) */
  readonly drivers: ReadonlyMap<string, TerminalDriver | { readonly protocol: string; readonly defaultPort: number }>;
  /** the SQLite file (backups go beside it); null on PostgreSQL */
  readonly dbPath: string | null;
  /**
   * How long the event stream waits for a gap in event IDs to fill before it
   * passes it, ms: 0 where IDs commit in order (SQLite: one writer); on
   * PostgreSQL several daemons' transactions commit in any order.
   */
  readonly eventGapHoldMs: number;

  health(): Promise<AdminHealth>;
  /** every terminal of the site, with its state and owner */
  terminals(): Promise<AdminTerminal[]>;
  /** the dial target this daemon knows for a terminal (its ZK comm key lives there) */
  dialTarget(id: string): DialTarget | undefined;
  /** adds (or updates) a terminal the server dials; ActionRefused where the configuration decides */
  addTerminal(t: DialTarget, accessGroups?: number[]): Promise<TerminalRow>;
  removeTerminal(id: string): Promise<boolean>;
  /** approves a pending dial-in terminal; false: unknown */
  approve(id: string): Promise<boolean>;
  setTerminalGroups(id: string, accessGroups: number[]): Promise<boolean>;
  /** a full resync of one terminal; ActionRefused (409) when no live session here, naming its owner */
  resync(id: string): Promise<void>;
  /** pulls a terminal's failed users again now; ActionRefused (409) as resync */
  retryPulls(id: string, userId?: string): Promise<{ queued: number }>;
  /** an administrator's create or change; `pushedTo`: the terminals in scope now */
  putUser(u: UserRecord): Promise<{ created: boolean; changed: boolean; pushedTo: string[] }>;
  deleteUser(id: string): Promise<boolean>;
  /** the terminals a server-side change of this user goes to (approved, in scope of the sync mode) */
  targetsFor(u: UserRecord): Promise<string[]>;
  /** the sync mode in force */
  syncMode(): SyncMode;
  /** changes (and stores) the sync mode; the other daemons follow */
  setSyncMode(mode: SyncMode): Promise<void>;
  /** the refused pushes of a terminal (or one user's there) owed again and cleared; how many */
  retryPushFailures(terminalId: string, userId?: string): Promise<{ retried: number; cleared: number }>;
  /** the database on disk; null where the database server keeps it (PostgreSQL) */
  disk(): Promise<DiskUsage | null>;
  /** monitoring events kept in memory because the database refused them */
  pendingEventCount(): number;
  /** an online copy of the database to `dest`; ActionRefused (501) where the database server does backups */
  backup(dest: string): Promise<{ totalPages: number; remainingPages: number }>;
  /** calls `fn` when new monitoring events are likely (the stream reads at once); returns the unsubscribe function */
  onActivity(fn: () => void): () => void;
  /** the admin server is closing: stop whatever the site runs for it */
  close?(): void;
}

/** Terminals a server-side change of `user` goes to under `mode`: approved and, in 'specific' mode, serving one of its groups. */
export function targetsIn(rows: readonly TerminalRow[], user: UserRecord, mode: SyncMode): string[] {
  if (mode === 'off') return [];
  const groups = new Set(user.accessGroups);
  return rows.filter((t) => t.approved && (mode !== 'specific' || t.accessGroups.some((g) => groups.has(g)))).map((t) => t.id);
}
