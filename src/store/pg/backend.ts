// The PostgreSQL SiteStore (src/store/backend.ts): several daemons share one
// database. Every method is one transaction on one pooled connection.
//
// What differs from SQLite, and why:
// - Writers of one user are serialized by a transaction-level advisory lock
//   on the user's ID (taken in one order: by hash), so two daemons merging
//   the same user at once each see the other's committed result: one
//   transaction each, in the order the locks were granted, nothing lost.
// - Feed numbers come from the one feed_state row, updated as the LAST step
//   of the transaction (schema 3 says why: numbers commit in order).
// - Reads of several statements run in one REPEATABLE READ snapshot.
// - Cursor writes check the lease's fencing token in the same transaction
//   (checkFence, src/store/pg/leases.ts) and throw LeaseLostError when stale.
// - onFeedChange: this store's own commits tell its listeners at once; the
//   other daemons' commits arrive by LISTEN/NOTIFY (src/store/pg/notify.ts).
import { randomBytes, createHash } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { mergeDeviceIntoServer, sameForTerminal, usersEqual } from '../../model/merge.js';
import { structuredCloneUser, USER_DISABLED, type UserRecord } from '../../model/user.js';
import type { FeedBatch, FeedEntry, FeedQuery, IngestBatch, OwedCounts, OwedEntry, PushOutcome, PushRecorded, SeqUser, SiteStore } from '../backend.js';
import { StoreWriteError } from '../errors.js';
import { DEFAULT_EVENT_LIMITS, EVENTS_SUPPRESSED, EventLimiter, type EventLimitOptions } from '../event-limits.js';
import type { PullFailure, PullFailureQuery } from '../pull-failures.js';
import type { OwedPush, SearchField, SearchPage, UserSummary } from '../user-search.js';
import {
  DEFAULT_SYNC_MODE,
  MonitoringEvent,
  SYNC_MODES,
  type DurableEventResult,
  type EventInput,
  type EventQuery,
  type LogPosition,
  type MergeResult,
  type PushFailure,
  type PutUserResult,
  type StoredEvent,
  type SyncMode,
  type TerminalInput,
  type TerminalPatch,
  type TerminalRow,
} from '../types.js';
import { PgDatabase, type PgOpenOptions } from './db.js';
import { checkFence } from './leases.js';
import { FEED_CHANNEL, FeedListener } from './notify.js';
import { getUsers, listUsers, writeUser, writeUsers, type UserWrite } from './users.js';

const SETTING_SYNC_MODE = 'syncMode';
const SHARED_USERS = 4096;
const DEFAULT_PAGE = 1000;
const MAX_REASON = 300;
const DEFAULT_MAX_PENDING_EVENTS = 10_000;
const MAX_EVENT_PAGE = 10_000;
/** the largest code point: every string that starts with P sorts below P + MAX_CHAR (bytewise, COLLATE "C") */
const MAX_CHAR = String.fromCodePoint(0x10ffff);
/** a user's one-line summary for the console's result lists (the search uses users_by_name: lower(name) COLLATE "C", id) */
const SUMMARY = `id, name, disabled, pin_hash IS NOT NULL AND length(pin_hash) > 0 AS pin,
  (SELECT count(*) FROM user_cards c WHERE c.user_id = users.id) AS cards,
  (SELECT count(*) FROM user_fingers f WHERE f.user_id = users.id) AS fingers,
  (SELECT count(*) FROM user_faces x WHERE x.user_id = users.id) AS faces`;
const NAME_KEY = 'lower(name) COLLATE "C"';

export interface PgSiteStoreOptions extends PgOpenOptions {
  /** identifies this store's notifications (default random) */
  writerId?: string;
  /** LISTEN for the other daemons' changes (default true) */
  listen?: boolean;
  /** feed head poll while LISTEN is down, ms (default 5000) */
  pollMs?: number;
  eventLimits?: EventLimitOptions | null;
  maxPendingEvents?: number;
  now?: () => number;
}

const TERMINAL_COLUMNS = {
  deviceId: 'device_id',
  address: 'address',
  direction: 'direction',
  state: 'state',
  approved: 'approved',
  lastSeen: 'last_seen',
  userCapacity: 'user_capacity',
  maxBatch: 'max_batch',
  model: 'model',
  firmware: 'firmware',
  identity: 'identity',
  protocol: 'protocol',
} as const satisfies Record<Exclude<keyof TerminalPatch, 'accessGroups'>, string>;

interface TerminalDbRow {
  id: string;
  device_id: number | null;
  address: string | null;
  direction: 'dial' | 'listen';
  state: string;
  approved: boolean;
  log_epoch: number | null;
  cursor: number;
  last_seen: number | null;
  user_capacity: number | null;
  max_batch: number | null;
  model: string | null;
  firmware: string | null;
  identity: string | null;
  protocol: string;
  created_at: number;
  updated_at: number;
}

function terminalFromRow(r: TerminalDbRow, accessGroups: number[]): TerminalRow {
  return {
    id: r.id,
    deviceId: r.device_id,
    address: r.address,
    direction: r.direction,
    state: r.state,
    approved: r.approved,
    logEpoch: r.log_epoch,
    cursor: r.cursor,
    lastSeen: r.last_seen,
    userCapacity: r.user_capacity,
    maxBatch: r.max_batch,
    model: r.model,
    firmware: r.firmware,
    accessGroups,
    identity: r.identity ?? null,
    protocol: r.protocol ?? 'termsync',
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** a 64-bit advisory lock key per user ID (one key space with the migration lock; a collision only serializes) */
export function userLockKey(id: string): string {
  return createHash('sha256').update(id).digest().readBigInt64BE(0).toString();
}

/** takes the advisory locks of these users, in one global order (no deadlock between daemons) */
async function lockUsers(c: pg.ClientBase, ids: Iterable<string>): Promise<void> {
  const keys = [...new Set([...ids].map(userLockKey))].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
  if (!keys.length) return;
  await c.query('SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i', [keys]);
}

/** hands out n feed numbers (the last step of a transaction: holds the feed_state row lock until commit); returns the first */
async function takeSeqs(c: pg.ClientBase, n: number): Promise<number> {
  const r = await c.query<{ head: number }>('UPDATE feed_state SET head = head + $1 RETURNING head', [n]);
  return r.rows[0]!.head - n + 1;
}

function unknownTerminal(operation: string, id: string): StoreWriteError {
  return new StoreWriteError('CONSTRAINT', operation, `unknown terminal ${JSON.stringify(id)}`);
}

export class PgSiteStore implements SiteStore {
  readonly kind = 'postgres';
  readonly db: PgDatabase;
  readonly writerId: string;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private readonly limiter: EventLimiter | null;
  private readonly listeners = new Set<(head: number) => void>();
  private listener: FeedListener | null = null;
  private readonly shared = new Map<string, { seq: number; user: UserRecord }>();
  private readonly pending: EventInput[] = [];
  private readonly maxPending: number;
  private dropped = 0;

  private constructor(db: PgDatabase, o: PgSiteStoreOptions) {
    this.db = db;
    this.writerId = o.writerId ?? randomBytes(6).toString('hex');
    this.now = o.now ?? Date.now;
    this.log = o.logger;
    const limits = o.eventLimits === undefined ? DEFAULT_EVENT_LIMITS : o.eventLimits;
    this.limiter = limits ? new EventLimiter(limits, this.now) : null;
    this.maxPending = o.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
  }

  static async open(o: PgSiteStoreOptions): Promise<PgSiteStore> {
    const db = await PgDatabase.open(o);
    const s = new PgSiteStore(db, o);
    if (o.listen !== false) {
      s.listener = new FeedListener({
        config: db.config.pool,
        selfId: s.writerId,
        wake: (head) => s.tell(head),
        readHead: () => s.feedHead(),
        pollMs: o.pollMs,
        logger: o.logger,
      });
      await s.listener.start();
    }
    return s;
  }

  /** the LISTEN connection (tests, status) */
  get feedListener(): FeedListener | null {
    return this.listener;
  }

  private tell(head: number): void {
    for (const l of [...this.listeners]) {
      try {
        l(head);
      } catch (err) {
        this.log?.error({ err }, 'feed listener failed');
      }
    }
  }

  /** queues the NOTIFY (sent at commit) and returns the head to tell this store's own listeners after it */
  private async notify(c: pg.ClientBase, head?: number): Promise<number> {
    const h = head ?? (await c.query<{ head: number }>('SELECT head FROM feed_state')).rows[0]!.head;
    await c.query('SELECT pg_notify($1, $2)', [FEED_CHANNEL, `${h} ${this.writerId}`]);
    return h;
  }

  /** the record at feed number `seq`, the same object for every reader while it is current */
  private share(id: string, seq: number, fresh: UserRecord | undefined): UserRecord | null {
    const hit = this.shared.get(id);
    if (hit && hit.seq === seq) return hit.user;
    if (!fresh) return null;
    this.shared.delete(id);
    this.shared.set(id, { seq, user: fresh });
    if (this.shared.size > SHARED_USERS) this.shared.delete(this.shared.keys().next().value!);
    return fresh;
  }

  private read<T>(operation: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.db.tx(operation, fn, { isolation: 'REPEATABLE READ', readOnly: true });
  }

  // ------------------------------------------------------------ settings

  async getSyncMode(): Promise<SyncMode> {
    const r = await this.db.query<{ value: string }>('SELECT value FROM settings WHERE key = $1', [SETTING_SYNC_MODE]);
    const v = r.rows[0]?.value;
    return v !== undefined && (SYNC_MODES as readonly string[]).includes(v) ? (v as SyncMode) : DEFAULT_SYNC_MODE;
  }

  async setSyncMode(mode: SyncMode): Promise<void> {
    if (!SYNC_MODES.includes(mode)) throw new TypeError(`syncMode must be one of ${SYNC_MODES.join(', ')}, not ${JSON.stringify(mode)}`);
    await this.db.tx('setSyncMode', async (c) => {
      const was = (await c.query<{ value: string }>('SELECT value FROM settings WHERE key = $1 FOR UPDATE', [SETTING_SYNC_MODE])).rows[0]?.value ?? DEFAULT_SYNC_MODE;
      await c.query('INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [SETTING_SYNC_MODE, mode]);
      // sync back on: what changed while it was off is not pushed
      if (was === 'off' && mode !== 'off') await c.query('UPDATE terminals SET feed_cursor = f.head FROM feed_state f WHERE feed_cursor < f.head');
    });
  }

  // --------------------------------------------------------------- users

  async getUser(id: string): Promise<UserRecord | null> {
    const m = await this.read('getUser', (c) => getUsers(c, [id]));
    return m.get(id)?.user ?? null;
  }

  async walkUsers(o: { after?: string; limit: number }): Promise<SeqUser[]> {
    return this.read('walkUsers', (c) => listUsers(c, o.after ?? '', Math.max(1, o.limit)));
  }

  async userCount(): Promise<number> {
    return (await this.db.query<{ n: number }>('SELECT count(*) AS n FROM users')).rows[0]!.n;
  }

  async putUser(u: UserRecord): Promise<PutUserResult & { seq: number | null }> {
    const out = await this.db.tx('putUserFromServer', async (c) => {
      await lockUsers(c, [u.id]);
      const prev = (await getUsers(c, [u.id])).get(u.id) ?? null;
      const rec = structuredCloneUser(u);
      rec.flag &= USER_DISABLED;
      if (prev && usersEqual(prev.user, rec)) return { created: false, changed: false, serverVersion: prev.serverVersion, seq: null, head: null };
      const serverVersion = await writeUser(c, rec, prev?.user ?? null, this.now(), 0, null);
      if (!prev) await c.query('DELETE FROM tombstones WHERE user_id = $1', [u.id]);
      const seq = await takeSeqs(c, 1);
      await c.query('UPDATE users SET seq = $2 WHERE id = $1', [u.id, seq]);
      const head = await this.notify(c, seq);
      return { created: !prev, changed: true, serverVersion, seq, head };
    });
    if (out.head !== null) this.tell(out.head);
    return { created: out.created, changed: out.changed, serverVersion: out.serverVersion, seq: out.seq };
  }

  async deleteUser(id: string): Promise<boolean> {
    const out = await this.db.tx('deleteUser', async (c) => {
      await lockUsers(c, [id]);
      const r = await c.query('DELETE FROM users WHERE id = $1', [id]);
      if (!r.rowCount) return null;
      const seq = await takeSeqs(c, 1);
      await c.query(
        'INSERT INTO tombstones (user_id, seq, deleted_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET seq = EXCLUDED.seq, deleted_at = EXCLUDED.deleted_at',
        [id, seq, this.now()],
      );
      return this.notify(c, seq);
    });
    this.shared.delete(id);
    if (out === null) return false;
    this.tell(out);
    return true;
  }

  // ----------------------------------------------------------- terminals

  private async terminalIn(c: pg.ClientBase, id: string): Promise<TerminalRow | null> {
    const r = await c.query<TerminalDbRow>('SELECT * FROM terminals WHERE id = $1', [id]);
    if (!r.rows[0]) return null;
    const g = await c.query<{ group_id: number }>('SELECT group_id FROM terminal_access_groups WHERE terminal_id = $1 ORDER BY group_id', [id]);
    return terminalFromRow(r.rows[0], g.rows.map((x) => x.group_id));
  }

  getTerminal(id: string): Promise<TerminalRow | null> {
    return this.read('getTerminal', (c) => this.terminalIn(c, id));
  }

  listTerminals(): Promise<TerminalRow[]> {
    return this.read('listTerminals', async (c) => {
      const groups = new Map<string, number[]>();
      for (const g of (await c.query<{ terminal_id: string; group_id: number }>('SELECT terminal_id, group_id FROM terminal_access_groups ORDER BY terminal_id, group_id')).rows) {
        const l = groups.get(g.terminal_id);
        if (l) l.push(g.group_id);
        else groups.set(g.terminal_id, [g.group_id]);
      }
      const rows = (await c.query<TerminalDbRow>('SELECT * FROM terminals ORDER BY id')).rows;
      return rows.map((r) => terminalFromRow(r, groups.get(r.id) ?? []));
    });
  }

  upsertTerminal(t: TerminalInput): Promise<TerminalRow> {
    return this.db.tx('upsertTerminal', async (c) => {
      const now = this.now();
      await c.query('INSERT INTO terminals (id, direction, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO NOTHING', [t.id, t.direction, now]);
      const { id, ...patch } = t;
      const cols: string[] = [];
      const vals: unknown[] = [id];
      for (const [key, col] of Object.entries(TERMINAL_COLUMNS) as [keyof typeof TERMINAL_COLUMNS, string][]) {
        if (!(key in patch) || patch[key] === undefined) continue;
        vals.push(patch[key]);
        cols.push(`${col} = $${vals.length}`);
      }
      vals.push(now);
      cols.push(`updated_at = $${vals.length}`);
      await c.query(`UPDATE terminals SET ${cols.join(', ')} WHERE id = $1`, vals);
      if (patch.accessGroups !== undefined) {
        await c.query('DELETE FROM terminal_access_groups WHERE terminal_id = $1', [id]);
        if (patch.accessGroups.length) {
          await c.query('INSERT INTO terminal_access_groups (terminal_id, group_id) SELECT DISTINCT $1, g FROM unnest($2::bigint[]) AS g', [id, patch.accessGroups]);
        }
      }
      return (await this.terminalIn(c, id))!;
    });
  }

  async deleteTerminal(id: string): Promise<boolean> {
    return this.db.tx('deleteTerminal', async (c) => ((await c.query('DELETE FROM terminals WHERE id = $1', [id])).rowCount ?? 0) > 0);
  }

  // ------------------------------------------------------ log positions

  async getLogPosition(terminalId: string): Promise<LogPosition | null> {
    const r = await this.db.query<{ log_epoch: number | null; cursor: number }>('SELECT log_epoch, cursor FROM terminals WHERE id = $1', [terminalId]);
    const row = r.rows[0];
    return row ? { logEpoch: row.log_epoch, cursor: row.cursor } : null;
  }

  async setLogPosition(terminalId: string, pos: LogPosition, fence?: number): Promise<void> {
    await this.db.tx('setCursor', async (c) => {
      await checkFence(c, terminalId, fence);
      const r = await c.query('UPDATE terminals SET log_epoch = $2, cursor = $3, updated_at = $4 WHERE id = $1', [terminalId, pos.logEpoch, pos.cursor, this.now()]);
      if (!r.rowCount) throw unknownTerminal('setCursor', terminalId);
    });
  }

  // -------------------------------------------------------------- intake

  async ingest(b: IngestBatch): Promise<MergeResult[]> {
    const op = 'mergeDeviceUsersAndAdvance';
    const out = await this.db.tx(op, async (c) => {
      // the users' locks first, the fence after: waiting for another
      // daemon's merge of the same user must not hold this terminal's lease
      // row FOR SHARE, which would hold up the renewal of every lease of this
      // daemon (one UPDATE) for as long as the wait (seen with a lock held
      // past the TTL: all the daemon's terminals lost). The check is still
      // before any write and its lock lasts until the commit.
      const ids = b.merges.map((m) => m.user.id);
      await lockUsers(c, ids);
      await checkFence(c, b.terminalId, b.fence);
      const now = this.now();
      if (b.advance) {
        const r = await c.query('SELECT 1 FROM terminals WHERE id = $1', [b.terminalId]);
        if (!r.rowCount) throw unknownTerminal(op, b.terminalId);
      }
      const stored = await getUsers(c, ids);
      const current = new Map(stored);
      const results: MergeResult[] = [];
      // the batch's effects, written with a few statements each after the merges
      const writes = new Map<string, UserWrite>();
      const owed = new Map<string, string[]>();
      const events: EventInput[] = [];
      const cursorAfter = new Map<string, number>();
      const merged: [string, string][] = [];
      for (const { user: device, ctx } of b.merges) {
        const prevEntry = current.get(device.id) ?? null;
        const prev = prevEntry?.user ?? null;
        const m = mergeDeviceIntoServer(prev, device, ctx.parts);
        const differsFromDevice = ctx.parts ? !sameForTerminal(m.record, device, ctx.parts) : !usersEqual(m.record, device);
        let serverVersion = prevEntry?.serverVersion ?? 0;
        if (m.changed) {
          const orig = stored.get(device.id);
          const w = writes.get(device.id) ?? { rec: m.record, prev: orig?.user ?? null, prevVersion: orig?.serverVersion ?? 0, changes: 0, origin: null };
          w.rec = m.record;
          w.changes++;
          // the source terminal's feed reads skip the change when it holds exactly this version
          w.origin = differsFromDevice ? null : ctx.terminalId;
          writes.set(device.id, w);
          serverVersion = w.prevVersion + w.changes;
          current.set(device.id, { user: m.record, seq: 0, serverVersion });
        }
        const targets = new Set<string>();
        if (ctx.pushTo && (m.changed || ctx.pushWhen === 'always')) for (const t of ctx.pushTo) if (t !== ctx.terminalId) targets.add(t);
        if (differsFromDevice && ctx.pushBack !== false && !m.changed) targets.add(ctx.terminalId);
        const enqueued = [...targets];
        for (const t of enqueued) owed.set(t, [...(owed.get(t) ?? []), device.id]);
        events.push({
          time: now,
          type: MonitoringEvent.USER_UPDATE_SUCCESS_DEVICE,
          terminalId: ctx.terminalId,
          userId: device.id,
          detail: JSON.stringify({ eventId: ctx.eventId, created: prev === null, changed: m.changed, filled: m.filled, differsFromDevice }),
        });
        if (ctx.cursorAfter !== undefined) cursorAfter.set(ctx.terminalId, Math.max(cursorAfter.get(ctx.terminalId) ?? -Infinity, ctx.cursorAfter));
        merged.push([ctx.terminalId, device.id]);
        results.push({
          created: prev === null,
          changed: m.changed,
          record: m.record,
          differsFromDevice,
          filled: m.filled,
          serverVersion,
          seq: null,
          enqueued,
          monitoringEventId: 0,
        });
      }
      const changed = new Map<string, number>();
      results.forEach((r, i) => {
        if (r.changed) changed.set(r.record.id, i);
      });
      await writeUsers(c, [...writes.values()], now);
      const created = [...writes.values()].filter((w) => w.prev === null).map((w) => w.rec.id);
      if (created.length) await c.query('DELETE FROM tombstones WHERE user_id = ANY($1::text[])', [created]);
      for (const [t, users] of owed) await this.enqueueIn(c, [t], users, now);
      const owedWritten = owed.size > 0;
      if (events.length) {
        const ev = await c.query<{ id: number }>(
          'INSERT INTO events (time, type, terminal_id, user_id, detail) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) RETURNING id',
          [events.map((e) => e.time), events.map((e) => e.type), events.map((e) => e.terminalId), events.map((e) => e.userId), events.map((e) => e.detail)],
        );
        ev.rows.forEach((r, i) => (results[i]!.monitoringEventId = r.id));
      }
      for (const [t, cur] of cursorAfter) {
        const r = await c.query('UPDATE terminals SET cursor = greatest(cursor, $2), updated_at = $3 WHERE id = $1', [t, cur, now]);
        if (!r.rowCount) throw unknownTerminal('advanceCursor', t);
      }
      // read at last: no longer pull failures
      if (merged.length) {
        await c.query('DELETE FROM pull_failures p USING unnest($1::text[], $2::text[]) AS v(t, u) WHERE p.terminal_id = v.t AND p.user_id = v.u', [
          merged.map((x) => x[0]),
          merged.map((x) => x[1]),
        ]);
      }
      for (const f of b.pullFailed ?? []) {
        const reason = f.reason.length > MAX_REASON ? f.reason.slice(0, MAX_REASON) : f.reason;
        await c.query(
          `INSERT INTO pull_failures (terminal_id, user_id, reason, first_at, last_at, attempts) VALUES ($1, $2, $3, $4, $4, 1)
           ON CONFLICT (terminal_id, user_id) DO UPDATE SET reason = EXCLUDED.reason, last_at = EXCLUDED.last_at, attempts = pull_failures.attempts + 1`,
          [b.terminalId, f.userId, reason, now],
        );
      }
      if (b.pullGone?.length) await c.query('DELETE FROM pull_failures WHERE terminal_id = $1 AND user_id = ANY($2::text[])', [b.terminalId, b.pullGone]);
      if (b.advance) {
        // the same epoch: forward only; another epoch: set (the terminal's log restarted)
        await c.query(
          'UPDATE terminals SET log_epoch = $2, cursor = CASE WHEN log_epoch IS NOT DISTINCT FROM $2 THEN greatest(cursor, $3) ELSE $3 END, updated_at = $4 WHERE id = $1',
          [b.terminalId, b.advance.logEpoch, b.advance.cursor, now],
        );
      }
      await this.insertEvents(c, b.events ?? [], now);
      let head: number | null = null;
      if (changed.size) {
        // last: the feed numbers, in the order of each user's last change
        const order = [...changed].sort((x, y) => x[1] - y[1]);
        const first = await takeSeqs(c, order.length);
        const seqs = order.map((_, i) => first + i);
        await c.query('UPDATE users SET seq = v.s FROM unnest($1::text[], $2::bigint[]) AS v(id, s) WHERE users.id = v.id', [order.map(([id]) => id), seqs]);
        const seqOf = new Map(order.map(([id], i) => [id, seqs[i]!]));
        for (const r of results) if (r.changed) r.seq = seqOf.get(r.record.id) ?? null;
        head = await this.notify(c, first + order.length - 1);
      } else if (owedWritten) head = await this.notify(c);
      return { results, head };
    });
    if (out.head !== null) this.tell(out.head);
    return out.results;
  }

  // ---------------------------------------------------------------- feed

  async feedHead(): Promise<number> {
    return (await this.db.query<{ head: number }>('SELECT head FROM feed_state')).rows[0]!.head;
  }

  async getFeedCursor(terminalId: string): Promise<number | null> {
    const r = await this.db.query<{ feed_cursor: number }>('SELECT feed_cursor FROM terminals WHERE id = $1', [terminalId]);
    return r.rows[0]?.feed_cursor ?? null;
  }

  async setFeedCursor(terminalId: string, seq: number, fence?: number): Promise<void> {
    await this.db.tx('setFeedCursor', async (c) => {
      await checkFence(c, terminalId, fence);
      const r = await c.query('UPDATE terminals SET feed_cursor = $2 WHERE id = $1', [terminalId, seq]);
      if (!r.rowCount) throw unknownTerminal('setFeedCursor', terminalId);
    });
  }

  readFeed(terminalId: string, q: FeedQuery): Promise<FeedBatch> {
    const limit = Math.max(1, Math.floor(q.limit));
    return this.read('readFeed', async (c) => {
      let from = q.after;
      if (from === undefined) {
        const r = await c.query<{ feed_cursor: number }>('SELECT feed_cursor FROM terminals WHERE id = $1', [terminalId]);
        if (!r.rows[0]) throw unknownTerminal('readFeed', terminalId);
        from = r.rows[0].feed_cursor;
      }
      const scope = q.groups === undefined ? '' : 'AND EXISTS (SELECT 1 FROM user_access_groups g WHERE g.user_id = users.id AND g.group_id = ANY($4::bigint[]))';
      const params: unknown[] = [from, terminalId, limit];
      if (q.groups !== undefined) params.push(q.groups);
      const rows = (
        await c.query<{ seq: number; user_id: string; dead: boolean }>(
          `SELECT seq, id AS user_id, false AS dead FROM users WHERE seq > $1 AND (feed_origin IS NULL OR feed_origin <> $2) ${scope}
           UNION ALL SELECT seq, user_id, true AS dead FROM tombstones WHERE seq > $1
           ORDER BY seq LIMIT $3`,
          params,
        )
      ).rows;
      const head = (await c.query<{ head: number }>('SELECT head FROM feed_state')).rows[0]!.head;
      const missing = rows.filter((r) => !r.dead && this.shared.get(r.user_id)?.seq !== r.seq).map((r) => r.user_id);
      const fresh = await getUsers(c, missing);
      const entries: FeedEntry[] = rows.map((r) => ({
        seq: r.seq,
        userId: r.user_id,
        user: r.dead ? null : this.share(r.user_id, r.seq, fresh.get(r.user_id)?.user),
      }));
      const upTo = rows.length >= limit ? rows[rows.length - 1]!.seq : Math.max(from, head);
      return { entries, from, upTo };
    });
  }

  async recordPush(o: PushOutcome): Promise<PushRecorded> {
    const out = await this.db.tx('recordPush', async (c) => {
      await checkFence(c, o.terminalId, o.fence);
      const t = o.terminalId;
      const now = this.now();
      const ok = o.ok ?? [];
      const withGen = [...ok, ...(o.refused ?? [])].filter((a) => a.gen !== undefined);
      if (withGen.length) {
        await c.query('DELETE FROM outbox o USING unnest($2::text[], $3::int[]) AS a(u, g) WHERE o.terminal_id = $1 AND o.user_id = a.u AND o.gen = a.g', [
          t,
          withGen.map((a) => a.userId),
          withGen.map((a) => a.gen),
        ]);
      }
      if (ok.length) await c.query('DELETE FROM push_failures WHERE terminal_id = $1 AND user_id = ANY($2::text[])', [t, ok.map((a) => a.userId)]);
      for (const r of o.refused ?? []) {
        await c.query(
          `INSERT INTO push_failures (terminal_id, user_id, status, reason, time) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (terminal_id, user_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, time = EXCLUDED.time`,
          [t, r.userId, r.code, r.reason, now],
        );
      }
      if (o.later?.length) await this.enqueueIn(c, [t], o.later, now);
      if (o.events?.length) await this.insertEvents(c, o.events, now);
      let advanced = false;
      if (o.feed) {
        if (o.feed.to === o.feed.from) advanced = true;
        else advanced = ((await c.query('UPDATE terminals SET feed_cursor = $3 WHERE id = $1 AND feed_cursor = $2', [t, o.feed.from, o.feed.to])).rowCount ?? 0) > 0;
        if (!advanced && !(await c.query('SELECT 1 FROM terminals WHERE id = $1', [t])).rowCount) throw unknownTerminal('recordPush', t);
      }
      const head = o.later?.length ? await this.notify(c) : null;
      return { advanced, head };
    });
    if (out.head !== null) this.tell(out.head);
    return { advanced: out.advanced };
  }

  onFeedChange(listener: (head: number) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  collectTombstones(): Promise<number> {
    return this.db.tx('collectTombstones', async (c) => {
      // a terminal waiting for approval is sent nothing (it is reconciled when approved): it holds nothing back
      const min = (await c.query<{ m: number | null }>('SELECT min(feed_cursor) AS m FROM terminals WHERE approved')).rows[0]!.m;
      const r = min === null ? await c.query('DELETE FROM tombstones') : await c.query('DELETE FROM tombstones WHERE seq <= $1', [min]);
      return r.rowCount ?? 0;
    });
  }

  // ------------------------------------------------------------ owed set

  private async enqueueIn(c: pg.ClientBase, terminalIds: readonly string[], userIds: readonly string[], now: number): Promise<number> {
    const ts: string[] = [];
    const us: string[] = [];
    for (const t of new Set(terminalIds)) {
      for (const u of new Set(userIds)) {
        ts.push(t);
        us.push(u);
      }
    }
    if (!ts.length) return 0;
    await c.query(
      `INSERT INTO outbox (terminal_id, user_id, enqueued_at) SELECT t, u, $3 FROM unnest($1::text[], $2::text[]) AS v(t, u)
       ON CONFLICT (terminal_id, user_id) DO UPDATE
         SET gen = outbox.gen + 1, attempts = 0, last_error = NULL, enqueued_at = least(outbox.enqueued_at, EXCLUDED.enqueued_at)`,
      [ts, us, now],
    );
    return terminalIds.length * userIds.length;
  }

  async owe(terminalId: string, userIds: readonly string[]): Promise<number> {
    const out = await this.db.tx('owe', async (c) => {
      const n = await this.enqueueIn(c, [terminalId], userIds, this.now());
      return { n, head: n ? await this.notify(c) : null };
    });
    if (out.head !== null) this.tell(out.head);
    return out.n;
  }

  takeOwed(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): Promise<OwedEntry[]> {
    return this.read('takeOwed', async (c) => {
      const params: unknown[] = [terminalId, this.now(), Math.max(1, limit)];
      let keyset = '';
      if (after) {
        params.push(after.enqueuedAt, after.userId);
        keyset = 'AND (enqueued_at, user_id) > ($4, $5)';
      }
      const items = (
        await c.query<{ user_id: string; gen: number; enqueued_at: number; attempts: number; last_error: string | null }>(
          `SELECT user_id, gen, enqueued_at, attempts, last_error FROM outbox
            WHERE terminal_id = $1 AND enqueued_at <= $2 ${keyset} ORDER BY enqueued_at, user_id LIMIT $3`,
          params,
        )
      ).rows;
      if (!items.length) return [];
      const seqs = new Map(
        (await c.query<{ id: string; seq: number }>('SELECT id, seq FROM users WHERE id = ANY($1::text[])', [items.map((i) => i.user_id)])).rows.map((r) => [r.id, r.seq]),
      );
      const missing = items.filter((i) => seqs.has(i.user_id) && this.shared.get(i.user_id)?.seq !== seqs.get(i.user_id)).map((i) => i.user_id);
      const fresh = await getUsers(c, missing);
      return items.map((it) => {
        const seq = seqs.get(it.user_id);
        return {
          userId: it.user_id,
          gen: it.gen,
          enqueuedAt: it.enqueued_at,
          attempts: it.attempts,
          lastError: it.last_error,
          user: seq === undefined ? null : this.share(it.user_id, seq, fresh.get(it.user_id)?.user),
        };
      });
    });
  }

  owedCounts(): Promise<OwedCounts> {
    return this.read('owedCounts', async (c) => {
      const rows = (
        await c.query<{ id: string; behind: number; owed: number }>(
          `SELECT t.id,
                  CASE WHEN t.approved THEN (SELECT count(*) FROM users u WHERE u.seq > t.feed_cursor) + (SELECT count(*) FROM tombstones d WHERE d.seq > t.feed_cursor)
                       ELSE 0 END AS behind,
                  (SELECT count(*) FROM outbox o WHERE o.terminal_id = t.id) AS owed
             FROM terminals t`,
        )
      ).rows;
      const byTerminal: Record<string, number> = {};
      let total = 0;
      for (const r of rows) {
        const n = Number(r.behind) + Number(r.owed);
        if (n > 0) byTerminal[r.id] = n;
        total += n;
      }
      return { total, byTerminal };
    });
  }

  owedCount(terminalId: string): Promise<number> {
    return this.read('owedCount', async (c) => {
      const r = await c.query<{ n: number }>(
        `SELECT coalesce((SELECT (SELECT count(*) FROM users u WHERE u.seq > t.feed_cursor) + (SELECT count(*) FROM tombstones d WHERE d.seq > t.feed_cursor)
                            FROM terminals t WHERE t.id = $1 AND t.approved), 0)
              + (SELECT count(*) FROM outbox WHERE terminal_id = $1) AS n`,
        [terminalId],
      );
      return Number(r.rows[0]!.n);
    });
  }

  // -------------------------------------------------------------- events

  /** writes events, each run of one terminal and type admitted by the rate limits at once */
  private async insertEvents(c: pg.ClientBase, evs: readonly EventInput[], now: number, limited = true): Promise<void> {
    const keep: EventInput[] = [];
    for (let i = 0; i < evs.length; ) {
      const first = evs[i]!;
      let j = i + 1;
      while (j < evs.length && evs[j]!.type === first.type && evs[j]!.terminalId === first.terminalId) j++;
      const allowed = limited && this.limiter ? this.limiter.admitMany(first.terminalId, first.type, j - i) : j - i;
      for (let k = i; k < i + allowed; k++) keep.push(evs[k]!);
      i = j;
    }
    if (!keep.length) return;
    await c.query(
      'INSERT INTO events (time, type, terminal_id, user_id, detail) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])',
      [keep.map((e) => e.time ?? now), keep.map((e) => e.type), keep.map((e) => e.terminalId ?? null), keep.map((e) => e.userId ?? null), keep.map((e) => e.detail ?? null)],
    );
  }

  async appendEvents(evs: readonly EventInput[]): Promise<void> {
    await this.db.tx('appendEvents', (c) => this.insertEvents(c, evs, this.now()));
  }

  async recordEventDurably(ev: EventInput): Promise<DurableEventResult> {
    if (this.limiter && !this.limiter.admit(ev.terminalId, ev.type)) return { stored: false, suppressed: true };
    const stamped: EventInput = { ...ev, time: ev.time ?? this.now() };
    if (this.pending.length > 0) {
      this.pushPending(stamped);
      await this.flushPendingEvents();
      if (this.pending.length > 0) return { stored: false, pending: this.pending.length };
      const id = (await this.db.query<{ id: number }>('SELECT max(id) AS id FROM events').catch(() => null))?.rows[0]?.id ?? 0;
      return { stored: true, id };
    }
    try {
      const id = await this.db.tx('appendEvent', async (c) => {
        const r = await c.query<{ id: number }>('INSERT INTO events (time, type, terminal_id, user_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id', [
          stamped.time,
          stamped.type,
          stamped.terminalId ?? null,
          stamped.userId ?? null,
          stamped.detail ?? null,
        ]);
        return r.rows[0]!.id;
      });
      return { stored: true, id };
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.pushPending(stamped);
      this.log?.warn({ code: err.code, type: ev.type, pending: this.pending.length }, 'monitoring event kept in memory: database write failed');
      return { stored: false, pending: this.pending.length };
    }
  }

  private pushPending(ev: EventInput): void {
    if (this.maxPending <= 0) {
      this.dropped++;
      return;
    }
    while (this.pending.length >= this.maxPending) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(ev);
  }

  /**
   * Writes the events kept in memory. Calls run one after another: two at once
   * (two events recorded as the database returns) would each write the same
   * batch.
   */
  flushPendingEvents(): Promise<number> {
    const run = this.flushing.then(() => this.flushPendingOnce());
    this.flushing = run.catch(() => 0);
    return run;
  }

  private flushing: Promise<number> = Promise.resolve(0);

  private async flushPendingOnce(): Promise<number> {
    if (this.pending.length === 0) return 0;
    const batch = this.pending.slice();
    try {
      await this.db.tx('appendEvents', (c) => this.insertEvents(c, batch, this.now(), false));
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      return 0;
    }
    // events recorded while this flush was in flight stay, after the batch
    this.pending.splice(0, batch.length);
    this.log?.info({ flushed: batch.length, dropped: this.dropped }, 'pending monitoring events saved');
    return batch.length;
  }

  get pendingEventCount(): number {
    return this.pending.length;
  }

  get droppedEventCount(): number {
    return this.dropped;
  }

  /** writes what the rate limits held back: one EVENTS_SUPPRESSED per terminal (as the SQLite store does) */
  async flushSuppressedEvents(): Promise<number> {
    if (!this.limiter || this.limiter.pendingSummaries === 0) return 0;
    const list = this.limiter.takeSuppressed();
    const now = this.now();
    try {
      await this.db.tx('flushSuppressedEvents', (c) =>
        this.insertEvents(
          c,
          list.map((s) => ({ type: EVENTS_SUPPRESSED, terminalId: s.terminalId, time: now, detail: JSON.stringify({ counts: s.counts, since: s.since }) })),
          now,
          false,
        ),
      );
    } catch (err) {
      if (!(err instanceof StoreWriteError)) throw err;
      this.limiter.restore(list);
      return 0;
    }
    return list.length;
  }

  // -------------------------------------------- refusals, pull failures

  async listPushFailures(q: { terminalId?: string; userId?: string; limit?: number } = {}): Promise<PushFailure[]> {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.terminalId !== undefined) (vals.push(q.terminalId), where.push(`terminal_id = $${vals.length}`));
    if (q.userId !== undefined) (vals.push(q.userId), where.push(`user_id = $${vals.length}`));
    vals.push(Math.max(1, q.limit ?? DEFAULT_PAGE));
    const r = await this.db.query<{ terminal_id: string; user_id: string; status: number; reason: string; time: number }>(
      `SELECT terminal_id, user_id, status, reason, time FROM push_failures${where.length ? ' WHERE ' + where.join(' AND ') : ''}
        ORDER BY time DESC, terminal_id, user_id LIMIT $${vals.length}`,
      vals,
    );
    return r.rows.map((x) => ({ terminalId: x.terminal_id, userId: x.user_id, status: x.status, reason: x.reason, time: x.time }));
  }

  async listPullFailures(q: PullFailureQuery = {}): Promise<PullFailure[]> {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.terminalId !== undefined) (vals.push(q.terminalId), where.push(`terminal_id = $${vals.length}`));
    if (q.userId !== undefined) (vals.push(q.userId), where.push(`user_id = $${vals.length}`));
    vals.push(Math.max(1, q.limit ?? DEFAULT_PAGE));
    const r = await this.db.query<{ terminal_id: string; user_id: string; reason: string; first_at: number; last_at: number; attempts: number }>(
      `SELECT * FROM pull_failures${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY terminal_id, user_id LIMIT $${vals.length}`,
      vals,
    );
    return r.rows.map((x) => ({ terminalId: x.terminal_id, userId: x.user_id, reason: x.reason, firstAt: x.first_at, lastAt: x.last_at, attempts: x.attempts }));
  }

  async clearPushFailures(terminalId: string, userId?: string): Promise<number> {
    return this.db.tx('clearPushFailures', async (c) => {
      const r =
        userId === undefined
          ? await c.query('DELETE FROM push_failures WHERE terminal_id = $1', [terminalId])
          : await c.query('DELETE FROM push_failures WHERE terminal_id = $1 AND user_id = $2', [terminalId, userId]);
      return r.rowCount ?? 0;
    });
  }

  // ------------------------------------------- reads of the admin API

  async listEvents(q: EventQuery = {}): Promise<StoredEvent[]> {
    const where: string[] = [];
    const vals: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      vals.push(v);
      where.push(`${sql} $${vals.length}`);
    };
    if (q.after !== undefined) add('id >', q.after);
    if (q.before !== undefined) add('id <', q.before);
    if (q.type !== undefined) add('type =', q.type);
    if (q.terminalId !== undefined) add('terminal_id =', q.terminalId);
    if (q.userId !== undefined) add('user_id =', q.userId);
    vals.push(Math.max(1, Math.min(MAX_EVENT_PAGE, q.limit ?? 100)));
    const r = await this.db.query<{ id: number; time: number; type: string; terminal_id: string | null; user_id: string | null; detail: string | null }>(
      `SELECT id, time, type, terminal_id, user_id, detail FROM events${where.length ? ' WHERE ' + where.join(' AND ') : ''}
        ORDER BY id ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT $${vals.length}`,
      vals,
    );
    return r.rows.map((x) => ({ id: x.id, time: x.time, type: x.type, terminalId: x.terminal_id, userId: x.user_id, detail: x.detail }));
  }

  async searchUsers(field: SearchField, prefix: string, after: string | null, limit: number): Promise<SearchPage> {
    const n = Math.max(1, limit) + 1;
    type Row = { id: string; name: string; disabled: boolean; pin: boolean; cards: number; fingers: number; faces: number };
    let rows: Row[];
    if (field === 'id') {
      const upper = prefix + MAX_CHAR;
      rows = (
        after
          ? await this.db.query<Row>(`SELECT ${SUMMARY} FROM users WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3`, [after, upper, n])
          : await this.db.query<Row>(`SELECT ${SUMMARY} FROM users WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3`, [prefix, upper, n])
      ).rows;
    } else {
      // names compare lower-cased (the index users_by_name), so "al" finds "Alice"
      const low = prefix.toLowerCase();
      const upper = low + MAX_CHAR;
      // a cursor is "name NUL id" (as `next` gives it); anything else starts at the first page
      const cut = after ? after.indexOf('\u0000') : -1;
      rows = (
        after && cut >= 0
          ? await this.db.query<Row>(
              `SELECT ${SUMMARY} FROM users WHERE ${NAME_KEY} >= $1 AND ${NAME_KEY} < $2 AND (${NAME_KEY} > $3 OR (${NAME_KEY} = $3 AND id > $4))
                ORDER BY ${NAME_KEY}, id LIMIT $5`,
              [low, upper, after.slice(0, cut).toLowerCase(), after.slice(cut + 1), n],
            )
          : await this.db.query<Row>(`SELECT ${SUMMARY} FROM users WHERE ${NAME_KEY} >= $1 AND ${NAME_KEY} < $2 ORDER BY ${NAME_KEY}, id LIMIT $3`, [low, upper, n])
      ).rows;
    }
    const more = rows.length > Math.max(1, limit);
    if (more) rows = rows.slice(0, Math.max(1, limit));
    const users: UserSummary[] = rows.map((r) => ({
      id: r.id,
      name: r.name,
      disabled: r.disabled,
      cards: Number(r.cards),
      fingers: Number(r.fingers),
      faces: Number(r.faces),
      pinSet: r.pin,
    }));
    const last = users[users.length - 1];
    const next = more && last ? (field === 'id' ? last.id : `${last.name}\u0000${last.id}`) : null;
    return { users, next };
  }

  async cardHolders(userId: string): Promise<string[]> {
    const r = await this.db.query<{ user_id: string }>(
      `SELECT DISTINCT o.user_id FROM user_cards c JOIN user_cards o ON o.data = c.data AND o.type = c.type AND o.user_id <> c.user_id
        WHERE c.user_id = $1 ORDER BY o.user_id LIMIT 10`,
      [userId],
    );
    return r.rows.map((x) => x.user_id);
  }

  owedTo(userId: string, terminalIds: readonly string[], mode?: SyncMode): Promise<OwedPush[]> {
    return this.read('owedTo', async (c) => {
      if (!terminalIds.length) return [];
      const owed = new Map(
        (
          await c.query<{ terminal_id: string; enqueued_at: number; attempts: number; last_error: string | null }>(
            'SELECT terminal_id, enqueued_at, attempts, last_error FROM outbox WHERE user_id = $1 AND terminal_id = ANY($2::text[])',
            [userId, terminalIds],
          )
        ).rows.map((r) => [r.terminal_id, r]),
      );
      const byFeed = new Map<string, number>();
      if (mode !== 'off') {
        // the user's latest change lies past the terminal's feed cursor (and is not the terminal's own
        // change it holds); in 'specific' mode only where the terminal serves one of the user's groups
        const scoped = mode === 'specific';
        const rows = (
          await c.query<{ id: string; since: number }>(
            `SELECT t.id, u.updated_at AS since FROM users u JOIN terminals t ON t.id = ANY($2::text[])
              WHERE u.id = $1 AND t.approved AND u.seq > t.feed_cursor AND (u.feed_origin IS NULL OR u.feed_origin <> t.id)
                AND (NOT $3 OR EXISTS (SELECT 1 FROM user_access_groups g JOIN terminal_access_groups tg ON tg.group_id = g.group_id
                                        WHERE g.user_id = u.id AND tg.terminal_id = t.id))`,
            [userId, terminalIds, scoped],
          )
        ).rows;
        for (const r of rows) byFeed.set(r.id, r.since);
      }
      const out: OwedPush[] = [];
      for (const t of terminalIds) {
        const o = owed.get(t);
        if (o) out.push({ terminalId: t, since: o.enqueued_at, attempts: o.attempts, lastError: o.last_error });
        else if (byFeed.has(t)) out.push({ terminalId: t, since: byFeed.get(t)!, attempts: 0, lastError: null });
      }
      return out;
    });
  }

  // ---------------------------------------------------------------- misc

  async healthy(): Promise<boolean> {
    try {
      await this.db.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.listener?.close();
    this.listener = null;
    this.listeners.clear();
    await this.db.close();
  }
}
