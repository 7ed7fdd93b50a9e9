// Pull failures: a user a terminal reported (enrolled or changed on the device)
// whose record the server could not read (an unknown formatVersion, another
// user's record, a short or malformed record, a per-record failure status). The
// row keeps the user owed to the server: it is pulled again at every session
// start, on every reconcile and on demand (admin API), and the next successful
// pull removes it. One row per (terminal, user); attempts counts the failures.
import type Database from 'better-sqlite3';

export interface PullFailure {
  terminalId: string;
  userId: string;
  /** why the record could not be read (a status name or a decoder message; never record contents) */
  reason: string;
  firstAt: number;
  lastAt: number;
  attempts: number;
}

export interface PullFailureQuery {
  terminalId?: string;
  userId?: string;
  limit?: number;
}

interface Row {
  terminal_id: string;
  user_id: string;
  reason: string;
  first_at: number;
  last_at: number;
  attempts: number;
}

const DEFAULT_LIMIT = 1000;
const MAX_REASON = 300;

/** The table's statements; the Store wraps the writes in its transactions. */
export class PullFailureTable {
  private readonly put: Database.Statement<[string, string, string, number, number]>;
  private readonly del: Database.Statement<[string, string]>;
  private readonly any: Database.Statement<[string], number>;
  private readonly lists = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {
    this.put = db.prepare(
      `INSERT INTO pull_failures (terminal_id, user_id, reason, first_at, last_at, attempts) VALUES (?, ?, ?, ?, ?, 1)
       ON CONFLICT (terminal_id, user_id) DO UPDATE SET reason = excluded.reason, last_at = excluded.last_at, attempts = attempts + 1`,
    );
    this.del = db.prepare('DELETE FROM pull_failures WHERE terminal_id = ? AND user_id = ?');
    this.any = db.prepare<[string], number>('SELECT 1 FROM pull_failures WHERE terminal_id = ? LIMIT 1').pluck();
  }

  record(terminalId: string, userId: string, reason: string, now: number): void {
    const r = reason.length > MAX_REASON ? reason.slice(0, MAX_REASON) : reason;
    this.put.run(terminalId, userId, r, now, now);
  }

  clear(terminalId: string, userId: string): boolean {
    return this.del.run(terminalId, userId).changes > 0;
  }

  /** Cheap check before clearing per merged user (the usual terminal has no failures). */
  hasAny(terminalId: string): boolean {
    return this.any.get(terminalId) !== undefined;
  }

  list(q: PullFailureQuery = {}): PullFailure[] {
    const where: string[] = [];
    const vals: unknown[] = [];
    if (q.terminalId !== undefined) (where.push('terminal_id = ?'), vals.push(q.terminalId));
    if (q.userId !== undefined) (where.push('user_id = ?'), vals.push(q.userId));
    const sql = `SELECT * FROM pull_failures${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY terminal_id, user_id LIMIT ?`;
    let st = this.lists.get(sql);
    if (!st) this.lists.set(sql, (st = this.db.prepare(sql)));
    const rows = st.all(...vals, Math.max(1, q.limit ?? DEFAULT_LIMIT)) as Row[];
    return rows.map((r) => ({ terminalId: r.terminal_id, userId: r.user_id, reason: r.reason, firstAt: r.first_at, lastAt: r.last_at, attempts: r.attempts }));
  }
}
