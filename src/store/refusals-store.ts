// Refusals and targeted pushes of the Store: the owed set (the outbox table:
// a few pushes per terminal that are not the change feed), push failures (what
// a terminal refused, per terminal and user) and pull failures (device users
// the server could not read). See store-base.ts for the layers.
import type { PullFailure, PullFailureQuery } from './pull-failures.js';
import { errorText, outboxFromRow, type OutboxDbRow } from './statements.js';
import { TerminalsStore } from './terminals-store.js';
import type { OutboxAck, OutboxCounts, OutboxItem, EventInput, PushFailure } from './types.js';

const DEFAULT_PAGE = 1000;

export class RefusalsStore extends TerminalsStore {
  private owedDataVersion = -1;

  protected enqueueIn(terminalIds: readonly string[], userIds: readonly string[], now = this.now()): number {
    const { enqueueNew, enqueueBump } = this.s;
    let n = 0;
    if (terminalIds.length && userIds.length) this.feedDirty = true;
    for (const u of userIds) {
      for (const t of terminalIds) {
        if (enqueueNew.run(t, u, now).changes === 1) this.owedAdd(t, 1);
        else enqueueBump.run(now, t, u);
        n++;
      }
    }
    return n;
  }

  /**
   * Enqueues the user for each terminal. Coalesced: an entry already waiting
   * for the same terminal and user is replaced (one row; generation bumped,
   * attempts and error reset; it keeps its place in the queue). The record
   * is read fresh from users at send time. An unknown terminal fails CONSTRAINT.
   */
  enqueue(terminalIds: readonly string[], userId: string): void {
    this.write('enqueue', () => this.enqueueIn(terminalIds, [userId]));
  }

  /** Every (terminal, user) pair in one transaction. Returns rows written. */
  enqueueMany(terminalIds: readonly string[], userIds: readonly string[]): number {
    return this.write('enqueueMany', () => this.enqueueIn(terminalIds, userIds));
  }

  /** Enqueues every server user for a terminal (full resync) in one statement. */
  enqueueAllUsers(terminalId: string): number {
    return this.write('enqueueAllUsers', () => {
      this.owed = null; // inserted and coalesced rows are not told apart here: recount on next read
      this.feedDirty = true;
      return this.s.enqueueAll.run(terminalId, this.now()).changes;
    });
  }

  /**
   * The next entries for a terminal, oldest first, without removing them (ack
   * does). Entries deferred by fail(…, retryAfterMs) are skipped until due.
   */
  take(terminalId: string, limit: number, after?: { enqueuedAt: number; userId: string }): OutboxItem[] {
    if (after) {
      // the entries queued behind `after` (a batch still in flight): a keyset range of the index
      const st = this.cached(
        'SELECT * FROM outbox WHERE terminal_id = ? AND enqueued_at <= ? AND (enqueued_at, user_id) > (?, ?) ORDER BY enqueued_at, user_id LIMIT ?',
      );
      return (st.all(terminalId, this.now(), after.enqueuedAt, after.userId, Math.max(1, limit)) as OutboxDbRow[]).map(outboxFromRow);
    }
    return this.s.take.all(terminalId, this.now(), Math.max(1, limit)).map(outboxFromRow);
  }

  /**
   * The terminal stored these users: removes their outbox entries and clears
   * their push failures. Pass the items from take(): an entry re-enqueued
   * since (a newer change, higher gen) stays queued. Returns entries removed.
   */
  ack(terminalId: string, items: readonly OutboxAck[]): number {
    return this.write('ack', () => {
      let n = 0;
      // one look instead of a DELETE per user when the terminal has no failures (the usual case)
      const failures = this.cached('SELECT 1 FROM push_failures WHERE terminal_id = ? LIMIT 1').get(terminalId) !== undefined;
      for (const it of items) {
        const userId = typeof it === 'string' ? it : it.userId;
        n += (typeof it === 'string' ? this.s.ackAny.run(terminalId, it) : this.s.ackGen.run(terminalId, it.userId, it.gen)).changes;
        if (failures) this.s.delFailure.run(terminalId, userId);
      }
      this.owedAdd(terminalId, -n);
      return n;
    });
  }

  /**
   * The outcome of one PUT_USERS batch in ONE transaction: acks the stored
   * entries (as ack), appends `events` (e.g. USER_UPDATE_SUCCESS_SERVER per
   * user), and rejects the refused ones (as reject).
   */
  ackPushed(
    terminalId: string,
    ok: readonly OutboxAck[],
    events: readonly EventInput[] = [],
    failed: readonly { item: OutboxAck; status: number; reason: string }[] = [],
  ): number {
    return this.write('ackPushed', () => {
      const now = this.now();
      const n = this.ack(terminalId, ok);
      this.insertEvents(events, now);
      for (const f of failed) this.reject(terminalId, f.item, f.status, f.reason);
      return n;
    });
  }

  /**
   * The terminal refused the record (e.g. DUPLICATE_CARD, USER_FULL): records
   * the push failure and removes the entry, in one transaction, so the lane is
   * not blocked by a record that will never fit.
   */
  reject(terminalId: string, item: OutboxAck, status: number, reason: string): void {
    this.write('reject', () => {
      const userId = typeof item === 'string' ? item : item.userId;
      const r = typeof item === 'string' ? this.s.ackAny.run(terminalId, item) : this.s.ackGen.run(terminalId, item.userId, item.gen);
      this.owedAdd(terminalId, -r.changes);
      this.s.putFailure.run(terminalId, userId, status, reason, this.now());
    });
  }

  /**
   * A push attempt failed for a transient reason (timeout, disconnect): counts
   * the attempt, keeps the error text, and with retryAfterMs defers the entry.
   * Returns the attempt count, or 0 when no such entry is queued.
   */
  fail(terminalId: string, userId: string, err: unknown, retryAfterMs = 0): number {
    return this.write('fail', () => {
      // enqueued_at = max(enqueued_at, 0) leaves it as is; a retry delay moves the entry back until due
      const notBefore = retryAfterMs > 0 ? this.now() + retryAfterMs : 0;
      const r = this.s.fail.get(errorText(err), notBefore, terminalId, userId) as { attempts: number } | undefined;
      return r?.attempts ?? 0;
    });
  }

  /**
   * Outbox rows per terminal. Counted once, then kept exact as this connection
   * adds and removes rows (a count(*) over a burst's half a million rows takes
   * long enough to stall the daemon on every status-page refresh); recounted
   * when another connection committed (PRAGMA data_version) or a write failed.
   */
  protected owedRowCounts(): Map<string, number> {
    const dv = this.cached('PRAGMA data_version').pluck().get() as number;
    if (!this.owed || dv !== this.owedDataVersion) {
      const m = new Map<string, number>();
      for (const r of this.s.outboxCounts.all()) m.set(r.terminal_id, r.n);
      this.owed = m;
      this.owedDataVersion = dv;
    }
    return this.owed;
  }

  protected owedAdd(terminalId: string, n: number): void {
    if (!this.owed || n === 0) return;
    const v = (this.owed.get(terminalId) ?? 0) + n;
    if (v > 0) this.owed.set(terminalId, v);
    else this.owed.delete(terminalId);
  }

  outboxCount(terminalId?: string): number {
    const m = this.owedRowCounts();
    if (terminalId !== undefined) return m.get(terminalId) ?? 0;
    let total = 0;
    for (const n of m.values()) total += n;
    return total;
  }

  outboxCounts(): OutboxCounts {
    const byTerminal: Record<string, number> = {};
    let total = 0;
    for (const [t, n] of this.owedRowCounts()) {
      byTerminal[t] = n;
      total += n;
    }
    return { total, byTerminal };
  }

  /** Owes the users to the terminal (the owed set; coalesced). */
  owe(terminalId: string, userIds: readonly string[]): number {
    return this.write('owe', () => this.enqueueIn([terminalId], userIds));
  }

  // -------------------------------------------------------- push failures

  recordPushFailure(f: Omit<PushFailure, 'time'> & { time?: number }): void {
    this.write('recordPushFailure', () => {
      this.s.putFailure.run(f.terminalId, f.userId, f.status, f.reason, f.time ?? this.now());
    });
  }

  listPushFailures(q: { terminalId?: string; userId?: string; limit?: number } = {}): PushFailure[] {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.terminalId !== undefined) (where.push('terminal_id = ?'), vals.push(q.terminalId));
    if (q.userId !== undefined) (where.push('user_id = ?'), vals.push(q.userId));
    const sql = `SELECT terminal_id, user_id, status, reason, time FROM push_failures${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY time DESC, terminal_id, user_id LIMIT ?`;
    const rows = this.cached(sql).all(...vals, Math.max(1, q.limit ?? DEFAULT_PAGE)) as { terminal_id: string; user_id: string; status: number; reason: string; time: number }[];
    return rows.map((r) => ({ terminalId: r.terminal_id, userId: r.user_id, status: r.status, reason: r.reason, time: r.time }));
  }

  /** Clears one failure, a terminal's failures, or (no arguments) all. Returns rows removed. */
  clearPushFailures(terminalId?: string, userId?: string): number {
    return this.write('clearPushFailures', () => {
      if (terminalId === undefined) return this.s.delFailuresAll.run().changes;
      if (userId === undefined) return this.s.delFailuresOf.run(terminalId).changes;
      return this.s.delFailure.run(terminalId, userId).changes;
    });
  }

  // -------------------------------------------------------- pull failures

  /** A device user the server could not read (see pull-failures.ts): inserted, or attempts counted. */
  recordPullFailure(terminalId: string, userId: string, reason: string): void {
    this.write('recordPullFailure', () => this.pullFailures.record(terminalId, userId, reason, this.now()));
  }

  listPullFailures(q: PullFailureQuery = {}): PullFailure[] {
    return this.pullFailures.list(q);
  }

  /** Returns true when a row was removed. */
  clearPullFailure(terminalId: string, userId: string): boolean {
    return this.write('clearPullFailure', () => this.pullFailures.clear(terminalId, userId));
  }
}
