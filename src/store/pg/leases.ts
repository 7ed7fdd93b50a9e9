// The lease tables' SQL (schema 2): daemons with liveness, one lease per
// terminal with a fencing token. The policy (who takes how many, when) is in
// src/cluster/leases.ts; this file only reads and writes rows.
//
// Every time decision is made by the database's clock (now()), so the daemons'
// own clocks may disagree without harm. A lease is held by `owner` while
// expires_at is in the future; past it, any daemon may take it, and taking
// draws a new token from one sequence, so a later holder always has a larger
// token than every earlier one.
import type pg from 'pg';
import { LeaseLostError } from '../errors.js';
import type { PgDatabase } from './db.js';

export interface HeldLease {
  terminalId: string;
  token: number;
  /** acquire/claim: the daemon that held it before (its lease expired), null: it was free */
  previous?: string | null;
}

export interface LeaseRow {
  terminalId: string;
  owner: string | null;
  token: number;
  /** ms since the epoch (database clock); -Infinity: never held */
  expiresAt: number;
  /** the owner holds it now (expires in the future) */
  live: boolean;
}

export interface DaemonRow {
  id: string;
  host: string;
  pid: number | null;
  startedAt: number;
  heartbeatAt: number;
  expiresAt: number;
  live: boolean;
}

// node-postgres gives a timestamptz as a Date, and +-infinity as a number
const toMs = (d: Date | number | string | null): number => {
  if (d === null) return -Infinity;
  if (typeof d === 'number') return d;
  if (d instanceof Date) return d.getTime();
  return d === '-infinity' ? -Infinity : d === 'infinity' ? Infinity : Date.parse(d);
};

export class LeaseTable {
  constructor(private readonly db: PgDatabase) {}

  /** registers the daemon or extends its liveness by ttlMs (database clock) */
  async heartbeat(daemonId: string, ttlMs: number, host: string, pid: number): Promise<void> {
    await this.db.tx('leaseHeartbeat', (c) =>
      c.query(
        `INSERT INTO cluster_daemons (id, host, pid, expires_at) VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, heartbeat_at = now(), expires_at = EXCLUDED.expires_at`,
        [daemonId, host, pid, ttlMs],
      ),
    );
  }

  /** makes a (free) lease row for each terminal that has none */
  async ensureTerminals(ids: readonly string[]): Promise<void> {
    if (!ids.length) return;
    await this.db.tx('leaseEnsureTerminals', (c) =>
      c.query(`INSERT INTO terminal_leases (terminal_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [ids]),
    );
  }

  /**
   * Extends every lease the daemon still owns, also one that expired but that
   * no other daemon took meanwhile (its token is unchanged, so nobody else
   * wrote with a newer one). Returns the leases held after the call.
   */
  async renew(daemonId: string, ttlMs: number): Promise<HeldLease[]> {
    const r = await this.db.tx('leaseRenew', (c) =>
      c.query<{ terminal_id: string; token: number }>(
        `UPDATE terminal_leases SET expires_at = now() + $2 * interval '1 millisecond'
         WHERE owner = $1 RETURNING terminal_id, token`,
        [daemonId, ttlMs],
      ),
    );
    return r.rows.map((x) => ({ terminalId: x.terminal_id, token: x.token }));
  }

  /** the daemons alive now, ordered by ID */
  async liveDaemons(): Promise<string[]> {
    const r = await this.db.query<{ id: string }>('SELECT id FROM cluster_daemons WHERE expires_at > now() ORDER BY id');
    return r.rows.map((x) => x.id);
  }

  /**
   * Takes up to `max` of `among` that are free or expired, each with a new
   * token. Rows another daemon is taking at this moment are skipped, not waited for.
   */
  async acquire(daemonId: string, among: readonly string[], max: number, ttlMs: number): Promise<HeldLease[]> {
    if (max <= 0 || !among.length) return [];
    const r = await this.db.tx('leaseAcquire', (c) =>
      c.query<{ terminal_id: string; token: number; previous: string | null }>(
        `WITH free AS (
            SELECT terminal_id, owner FROM terminal_leases
             WHERE terminal_id = ANY($2::text[]) AND (owner IS NULL OR expires_at <= now())
             ORDER BY md5(terminal_id || $1)
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         UPDATE terminal_leases l
            SET owner = $1, token = nextval('lease_token_seq'), expires_at = now() + $4 * interval '1 millisecond', acquired_at = now()
           FROM free WHERE l.terminal_id = free.terminal_id
          RETURNING l.terminal_id, l.token, free.owner AS previous`,
        [daemonId, among, max, ttlMs],
      ),
    );
    return r.rows.map((x) => ({ terminalId: x.terminal_id, token: x.token, previous: x.previous }));
  }

  /**
   * Takes one terminal's lease if it is free or expired (a terminal that
   * dialed in to this daemon). Returns the new token, or the daemon holding
   * it now.
   */
  async claim(daemonId: string, terminalId: string, ttlMs: number): Promise<{ token: number; previous: string | null } | { owner: string }> {
    return this.db.tx('leaseClaim', async (c) => {
      await c.query('INSERT INTO terminal_leases (terminal_id) VALUES ($1) ON CONFLICT DO NOTHING', [terminalId]);
      const before = await c.query<{ owner: string | null }>('SELECT owner FROM terminal_leases WHERE terminal_id = $1 FOR UPDATE', [terminalId]);
      const previous = before.rows[0]?.owner ?? null;
      const r = await c.query<{ token: number }>(
        `UPDATE terminal_leases SET owner = $1, token = nextval('lease_token_seq'), expires_at = now() + $3 * interval '1 millisecond', acquired_at = now()
          WHERE terminal_id = $2 AND (owner IS NULL OR expires_at <= now()) RETURNING token`,
        [daemonId, terminalId, ttlMs],
      );
      if (r.rows[0]) return { token: r.rows[0].token, previous: previous === daemonId ? null : previous };
      const held = await c.query<{ owner: string; token: number }>('SELECT owner, token FROM terminal_leases WHERE terminal_id = $1', [terminalId]);
      const row = held.rows[0]!;
      // already ours (a second session of the same terminal): the same token
      if (row.owner === daemonId) return { token: row.token, previous: null };
      return { owner: row.owner };
    });
  }

  /** gives leases back (free at once for any daemon); returns those released */
  async release(daemonId: string, ids: readonly string[]): Promise<string[]> {
    if (!ids.length) return [];
    const r = await this.db.tx('leaseRelease', (c) =>
      c.query<{ terminal_id: string }>(
        `UPDATE terminal_leases SET owner = NULL, expires_at = '-infinity'
         WHERE owner = $1 AND terminal_id = ANY($2::text[]) RETURNING terminal_id`,
        [daemonId, ids],
      ),
    );
    return r.rows.map((x) => x.terminal_id);
  }

  /** a clean shutdown: every lease back, the daemon no longer counted */
  async leave(daemonId: string): Promise<void> {
    await this.db.tx('leaseLeave', async (c) => {
      await c.query(`UPDATE terminal_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1`, [daemonId]);
      await c.query('DELETE FROM cluster_daemons WHERE id = $1', [daemonId]);
    });
  }

  /** every lease with its owner (the admin API's "who drives what") */
  async list(): Promise<LeaseRow[]> {
    const r = await this.db.query<{ terminal_id: string; owner: string | null; token: number; expires_at: Date | number; live: boolean }>(
      `SELECT terminal_id, owner, token, expires_at, (owner IS NOT NULL AND expires_at > now()) AS live
         FROM terminal_leases ORDER BY terminal_id`,
    );
    return r.rows.map((x) => ({ terminalId: x.terminal_id, owner: x.owner, token: x.token, expiresAt: toMs(x.expires_at), live: x.live }));
  }

  async daemons(): Promise<DaemonRow[]> {
    const r = await this.db.query<{ id: string; host: string; pid: number | null; started_at: Date; heartbeat_at: Date; expires_at: Date; live: boolean }>(
      'SELECT id, host, pid, started_at, heartbeat_at, expires_at, expires_at > now() AS live FROM cluster_daemons ORDER BY id',
    );
    return r.rows.map((x) => ({
      id: x.id,
      host: x.host,
      pid: x.pid,
      startedAt: toMs(x.started_at),
      heartbeatAt: toMs(x.heartbeat_at),
      expiresAt: toMs(x.expires_at),
      live: x.live,
    }));
  }

  /** forgets daemons dead for longer than olderThanMs (their leases were taken or freed long ago) */
  async pruneDaemons(olderThanMs: number): Promise<number> {
    const r = await this.db.tx('leasePruneDaemons', (c) =>
      c.query(`DELETE FROM cluster_daemons WHERE expires_at < now() - $1 * interval '1 millisecond'`, [olderThanMs]),
    );
    return r.rowCount ?? 0;
  }
}

/**
 * The fencing check, inside the caller's transaction, before a cursor write:
 * the lease row is locked FOR SHARE, so a daemon taking the lease waits for
 * this transaction to end, and this one sees a takeover that committed first.
 * Throws LeaseLostError (nothing of the transaction is committed) unless
 * `fence` is the token of a lease someone holds (or the terminal has no lease row).
 */
export async function checkFence(c: pg.ClientBase, terminalId: string, fence: number | undefined): Promise<void> {
  if (fence === undefined) return;
  const r = await c.query<{ token: number; owner: string | null }>(
    'SELECT token, owner FROM terminal_leases WHERE terminal_id = $1 FOR SHARE',
    [terminalId],
  );
  const row = r.rows[0];
  // no lease row: no daemon leases this terminal (a store used without a
  // LeaseManager); rows are never deleted, so a leased terminal always has one
  if (!row) return;
  if (row.token !== fence || row.owner === null) {
    throw new LeaseLostError(
      terminalId,
      fence,
      row.token !== fence
        ? `the lease on terminal ${JSON.stringify(terminalId)} was taken over (token ${row.token} > ${fence}): this daemon no longer drives it`
        : undefined,
    );
  }
}
