// The change feed's statements (schema version 6): the site's sequence numbers
// (users.seq, tombstones), the terminals' feed cursors, and the figures owed
// computed from them. Every method runs inside whatever transaction the caller
// holds (the Store opens them).
//
// A number is handed out once: the head is the highest of the users' numbers,
// the tombstones' numbers and the floor (settings.feedFloor, the highest
// number a collected tombstone had).
import type Database from 'better-sqlite3';

export interface FeedRow {
  seq: number;
  user_id: string;
  /** 1: a tombstone (deleted on the server) */
  dead: number;
}

const FLOOR_KEY = 'feedFloor';

export class FeedTables {
  private readonly headSt;
  private readonly putTomb;
  private readonly delTomb;
  private readonly cursorSt;
  private readonly setCursorSt;
  private readonly moveCursorSt;
  private readonly advanceCursorSt;
  private readonly readAll;
  private readonly readGroups;
  private readonly readUsers;
  private readonly maxTomb;
  private readonly minCursor;
  private readonly collectSt;
  private readonly maxCollectable;
  private readonly setFloor;
  private readonly cursors;
  private readonly seqsAfter;
  private readonly countAfter;
  private readonly allToHead;

  constructor(db: Database.Database) {
    this.headSt = db
      .prepare<[string], number>(
        `SELECT max(coalesce((SELECT max(seq) FROM users), 0), coalesce((SELECT max(seq) FROM tombstones), 0),
                    coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?), 0))`,
      )
      .pluck();
    this.putTomb = db.prepare<[string, number, number]>(
      'INSERT INTO tombstones (user_id, seq, deleted_at) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq, deleted_at = excluded.deleted_at',
    );
    this.delTomb = db.prepare<[string]>('DELETE FROM tombstones WHERE user_id = ?');
    this.cursorSt = db.prepare<[string], number>('SELECT feed_cursor FROM terminals WHERE id = ?').pluck();
    this.setCursorSt = db.prepare<[number, string]>('UPDATE terminals SET feed_cursor = ? WHERE id = ?');
    this.moveCursorSt = db.prepare<[number, string, number]>('UPDATE terminals SET feed_cursor = ? WHERE id = ? AND feed_cursor = ?');
    this.advanceCursorSt = db.prepare<[number, string, number]>('UPDATE terminals SET feed_cursor = ? WHERE id = ? AND feed_cursor < ?');
    // one range read over two indexes (users_by_seq, tombstones_by_seq), merged in seq order
    const tail = 'UNION ALL SELECT seq, user_id, 1 AS dead FROM tombstones WHERE seq > @after ORDER BY seq LIMIT @limit';
    this.readAll = db.prepare<{ after: number; t: string; limit: number }, FeedRow>(
      `SELECT seq, id AS user_id, 0 AS dead FROM users WHERE seq > @after AND (feed_origin IS NULL OR feed_origin <> @t) ${tail}`,
    );
    // the usual case, no tombstone after the cursor: one range of users_by_seq alone
    this.readUsers = db.prepare<{ after: number; t: string; limit: number }, FeedRow>(
      'SELECT seq, id AS user_id, 0 AS dead FROM users WHERE seq > @after AND (feed_origin IS NULL OR feed_origin <> @t) ORDER BY seq LIMIT @limit',
    );
    this.maxTomb = db.prepare<[], number>('SELECT coalesce(max(seq), 0) FROM tombstones').pluck();
    this.readGroups = db.prepare<{ after: number; t: string; limit: number; groups: string }, FeedRow>(
      `SELECT seq, id AS user_id, 0 AS dead FROM users WHERE seq > @after AND (feed_origin IS NULL OR feed_origin <> @t)
         AND EXISTS (SELECT 1 FROM user_access_groups g WHERE g.user_id = users.id AND g.group_id IN (SELECT value FROM json_each(@groups))) ${tail}`,
    );
    // a terminal not approved is sent nothing (it is reconciled when approved): it holds back neither figures nor collection
    this.minCursor = db.prepare<[], number | null>('SELECT min(feed_cursor) FROM terminals WHERE approved = 1').pluck();
    this.maxCollectable = db.prepare<[number], number | null>('SELECT max(seq) FROM tombstones WHERE seq <= ?').pluck();
    this.collectSt = db.prepare<[number]>('DELETE FROM tombstones WHERE seq <= ?');
    this.setFloor = db.prepare<[string, string]>(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))',
    );
    this.cursors = db.prepare<[], { id: string; feed_cursor: number }>('SELECT id, feed_cursor FROM terminals WHERE approved = 1');
    this.seqsAfter = db.prepare<[number, number], number>('SELECT seq FROM users WHERE seq > ? UNION ALL SELECT seq FROM tombstones WHERE seq > ? ORDER BY seq').pluck();
    this.countAfter = db.prepare<[number, number], number>(
      'SELECT (SELECT count(*) FROM users WHERE seq > ?) + (SELECT count(*) FROM tombstones WHERE seq > ?)',
    ).pluck();
    this.allToHead = db.prepare<[number, number]>('UPDATE terminals SET feed_cursor = ? WHERE feed_cursor < ?');
  }

  /** the newest number handed out (0: none) */
  head(): number {
    return this.headSt.get(FLOOR_KEY) as number;
  }

  /** the number for the next change (call inside the write transaction) */
  next(): number {
    return this.head() + 1;
  }

  tombstone(userId: string, seq: number, now: number): void {
    this.putTomb.run(userId, seq, now);
  }

  /** the user exists again: its tombstone goes */
  untomb(userId: string): void {
    this.delTomb.run(userId);
  }

  cursor(terminalId: string): number | null {
    return (this.cursorSt.get(terminalId) as number | undefined) ?? null;
  }

  /** sets the cursor; false for an unknown terminal */
  setCursor(terminalId: string, seq: number): boolean {
    return this.setCursorSt.run(seq, terminalId).changes > 0;
  }

  /** moves the cursor from `from` to `to` only when it stands at `from` */
  moveCursor(terminalId: string, from: number, to: number): boolean {
    return this.moveCursorSt.run(to, terminalId, from).changes > 0;
  }

  /** moves the cursor forward to `to` (never back); true when it moved */
  advanceCursor(terminalId: string, to: number): boolean {
    return this.advanceCursorSt.run(to, terminalId, to).changes > 0;
  }

  /** every terminal's cursor to the head (sync turned back on: what changed while off is not pushed) */
  allCursorsToHead(): number {
    const h = this.head();
    return this.allToHead.run(h, h).changes;
  }

  /** the entries after `after` for terminal `t` (its own unchanged merges skipped), in seq order */
  read(t: string, after: number, limit: number, groups?: readonly number[]): FeedRow[] {
    if (groups === undefined) return ((this.maxTomb.get() as number) > after ? this.readAll : this.readUsers).all({ after, t, limit });
    return this.readGroups.all({ after, t, limit, groups: JSON.stringify(groups) });
  }

  /**
   * Removes the tombstones every approved terminal's cursor has passed (all
   * of them when there is none); the floor keeps their highest number.
   */
  collect(): number {
    const min = this.minCursor.get() as number | null;
    const bound = min ?? Number.MAX_SAFE_INTEGER;
    const top = this.maxCollectable.get(bound) as number | null;
    if (top === null) return 0;
    this.setFloor.run(FLOOR_KEY, String(top));
    return this.collectSt.run(bound).changes;
  }

  /**
   * Feed entries past each terminal's cursor: one index walk from the lowest
   * cursor to the head, counted per terminal by binary search.
   */
  behindByTerminal(): Map<string, number> {
    const cur = this.cursors.all();
    const out = new Map<string, number>();
    if (cur.length === 0) return out;
    let min = Infinity;
    for (const c of cur) min = Math.min(min, c.feed_cursor);
    const seqs = this.seqsAfter.all(min, min) as number[];
    for (const c of cur) {
      // first index with seq > cursor
      let lo = 0;
      let hi = seqs.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (seqs[mid] <= c.feed_cursor) lo = mid + 1;
        else hi = mid;
      }
      const n = seqs.length - lo;
      if (n > 0) out.set(c.id, n);
    }
    return out;
  }

  /** feed entries past this cursor */
  behind(cursor: number): number {
    return this.countAfter.get(cursor, cursor) as number;
  }
}
