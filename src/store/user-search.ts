// Reads the operator console needs beyond the user and terminal tables' own
// accessors: user search by ID or name prefix (keyset-paged, on indexes: the
// primary key for IDs, users_by_name of migration 4 for names), a user's
// pushes owed per terminal, and one-line user summaries for result lists.
import type Database from 'better-sqlite3';

export type SearchField = 'id' | 'name';

export interface UserSummary {
  id: string;
  name: string;
  disabled: boolean;
  cards: number;
  fingers: number;
  faces: number;
  pinSet: boolean;
}

export interface SearchPage {
  users: UserSummary[];
  /** pass as `after` for the next page; null at the end */
  next: string | null;
}

export interface OwedPush {
  terminalId: string;
  /** when the push was queued (or, after a transient failure, the time it is due again) */
  since: number;
  attempts: number;
  lastError: string | null;
}

/** The largest code point: every string that starts with P sorts below P + MAX_CHAR. */
const MAX_CHAR = String.fromCodePoint(0x10ffff);

interface SummaryRow {
  id: string;
  name: string;
  disabled: number;
  pin: number;
  cards: number;
  fingers: number;
  faces: number;
}

const SUMMARY = `id, name, disabled, pin_hash IS NOT NULL AND length(pin_hash) > 0 AS pin,
  (SELECT count(*) FROM user_cards c WHERE c.user_id = users.id) AS cards,
  (SELECT count(*) FROM user_fingers f WHERE f.user_id = users.id) AS fingers,
  (SELECT count(*) FROM user_faces x WHERE x.user_id = users.id) AS faces`;

export class UserSearch {
  private readonly byId;
  private readonly byIdAfter;
  private readonly byName;
  private readonly byNameAfter;
  private readonly owed;
  private readonly owedByFeed;
  private readonly holders;

  constructor(db: Database.Database) {
    // IDs: the primary key, BINARY order (the order of LIST_USERS)
    // (the first page starts at the prefix, later ones just after the cursor:
    // one lower bound each, so the index range starts there instead of
    // scanning from the prefix to the cursor)
    this.byId = db.prepare<[string, string, number], SummaryRow>(`SELECT ${SUMMARY} FROM users WHERE id >= ? AND id < ? ORDER BY id LIMIT ?`);
    this.byIdAfter = db.prepare<[string, string, number], SummaryRow>(`SELECT ${SUMMARY} FROM users WHERE id > ? AND id < ? ORDER BY id LIMIT ?`);
    // names: users_by_name (name COLLATE NOCASE, id); ASCII letters fold, other text compares as is
    this.byName = db.prepare<[string, string, number], SummaryRow>(
      `SELECT ${SUMMARY} FROM users INDEXED BY users_by_name
        WHERE name COLLATE NOCASE >= ? AND name COLLATE NOCASE < ?
        ORDER BY name COLLATE NOCASE, id LIMIT ?`,
    );
    // after (name, id): the range starts at the cursor's name; of the rows with
    // that very name, those up to the cursor's ID are skipped
    this.byNameAfter = db.prepare<{ name: string; id: string; upper: string; limit: number }, SummaryRow>(
      `SELECT ${SUMMARY} FROM users INDEXED BY users_by_name
        WHERE name COLLATE NOCASE >= @name AND name COLLATE NOCASE < @upper AND (name COLLATE NOCASE > @name OR id > @id)
        ORDER BY name COLLATE NOCASE, id LIMIT @limit`,
    );
    // user_cards_by_data (data, type): other users holding one of this user's cards
    this.holders = db.prepare<[string], { user_id: string }>(
      `SELECT DISTINCT o.user_id FROM user_cards c JOIN user_cards o ON o.data = c.data AND o.type = c.type AND o.user_id <> c.user_id
        WHERE c.user_id = ? ORDER BY o.user_id LIMIT 10`,
    );
    this.owed = db.prepare<[string, string], { enqueued_at: number; attempts: number; last_error: string | null }>(
      'SELECT enqueued_at, attempts, last_error FROM outbox WHERE terminal_id = ? AND user_id = ?',
    );
    // the change feed: the user's latest change lies past the terminal's feed cursor (and is not
    // the terminal's own change it holds); with @scoped, only when the terminal serves one of its groups
    this.owedByFeed = db.prepare<{ t: string; u: string; scoped: number }, { since: number }>(
      `SELECT u.updated_at AS since FROM users u JOIN terminals t ON t.id = @t
        WHERE u.id = @u AND t.approved = 1 AND u.seq > t.feed_cursor AND (u.feed_origin IS NULL OR u.feed_origin <> t.id)
          AND (@scoped = 0 OR EXISTS (SELECT 1 FROM user_access_groups g JOIN terminal_access_groups tg ON tg.group_id = g.group_id
                                       WHERE g.user_id = u.id AND tg.terminal_id = t.id))`,
    );
  }

  /**
   * Users whose ID (or name, case-insensitively for ASCII) starts with `prefix`
   * (every user for an empty prefix), a page at a time. `after` is the `next`
   * of the previous page.
   */
  search(field: SearchField, prefix: string, after: string | null, limit: number): SearchPage {
    const upper = prefix + MAX_CHAR;
    let rows: SummaryRow[];
    if (field === 'id') {
      rows = after ? this.byIdAfter.all(after, upper, limit + 1) : this.byId.all(prefix, upper, limit + 1);
    } else {
      const cut = after ? after.indexOf('\u0000') : -1;
      // a cursor is "name NUL id" (as `next` gives it); anything else starts at the first page
      rows = after && cut >= 0 ? this.byNameAfter.all({ name: after.slice(0, cut), id: after.slice(cut + 1), upper, limit: limit + 1 }) : this.byName.all(prefix, upper, limit + 1);
    }
    const more = rows.length > limit;
    if (more) rows = rows.slice(0, limit);
    const users = rows.map((r) => ({
      id: r.id,
      name: r.name,
      disabled: r.disabled === 1,
      cards: r.cards,
      fingers: r.fingers,
      faces: r.faces,
      pinSet: r.pin === 1,
    }));
    const last = users[users.length - 1];
    const next = more && last ? (field === 'id' ? last.id : `${last.name}\u0000${last.id}`) : null;
    return { users, next };
  }

  /** Other users holding one of this user's cards (at most 10): who a DUPLICATE_CARD refusal is about. */
  cardHolders(userId: string): string[] {
    return this.holders.all(userId).map((r) => r.user_id);
  }

  /**
   * The push of this user owed to each of these terminals (absent when none
   * is): its owed entry, or its latest change past the terminal's feed cursor
   * (in 'specific' mode only where the terminal serves one of its groups).
   */
  owedTo(userId: string, terminalIds: readonly string[], mode?: string): OwedPush[] {
    const out: OwedPush[] = [];
    const scoped = mode === 'specific' ? 1 : 0;
    for (const t of terminalIds) {
      const r = this.owed.get(t, userId);
      if (r) {
        out.push({ terminalId: t, since: r.enqueued_at, attempts: r.attempts, lastError: r.last_error });
        continue;
      }
      if (mode === 'off') continue;
      const f = this.owedByFeed.get({ t, u: userId, scoped });
      if (f) out.push({ terminalId: t, since: f.since, attempts: 0, lastError: null });
    }
    return out;
  }
}
