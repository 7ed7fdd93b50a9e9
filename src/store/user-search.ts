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
  private readonly byName;
  private readonly owed;
  private readonly holders;

  constructor(db: Database.Database) {
    // IDs: the primary key, BINARY order (the order of LIST_USERS)
    this.byId = db.prepare<[string, string, string, number], SummaryRow>(
      `SELECT ${SUMMARY} FROM users WHERE id >= ? AND id < ? AND id > ? ORDER BY id LIMIT ?`,
    );
    // names: users_by_name (name COLLATE NOCASE, id); ASCII letters fold, other text compares as is
    this.byName = db.prepare<[string, string, string, string, number], SummaryRow>(
      `SELECT ${SUMMARY} FROM users INDEXED BY users_by_name
        WHERE name COLLATE NOCASE >= ? AND name COLLATE NOCASE < ? AND (name COLLATE NOCASE, id) > (?, ?)
        ORDER BY name COLLATE NOCASE, id LIMIT ?`,
    );
    // user_cards_by_data (data, type): other users holding one of this user's cards
    this.holders = db.prepare<[string], { user_id: string }>(
      `SELECT DISTINCT o.user_id FROM user_cards c JOIN user_cards o ON o.data = c.data AND o.type = c.type AND o.user_id <> c.user_id
        WHERE c.user_id = ? ORDER BY o.user_id LIMIT 10`,
    );
    this.owed = db.prepare<[string, string], { enqueued_at: number; attempts: number; last_error: string | null }>(
      'SELECT enqueued_at, attempts, last_error FROM outbox WHERE terminal_id = ? AND user_id = ?',
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
      rows = this.byId.all(prefix, upper, after ?? '', limit + 1);
    } else {
      let name = '';
      let id = '';
      if (after) {
        const cut = after.indexOf('\u0000');
        if (cut >= 0) {
          name = after.slice(0, cut);
          id = after.slice(cut + 1);
        }
      }
      // the first page: every name sorts after ('', '') except the empty name with an empty ID, which cannot exist
      rows = this.byName.all(prefix, upper, name, id, limit + 1);
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

  /** The push of this user owed to each of these terminals (absent when none is). */
  owedTo(userId: string, terminalIds: readonly string[]): OwedPush[] {
    const out: OwedPush[] = [];
    for (const t of terminalIds) {
      const r = this.owed.get(t, userId);
      if (r) out.push({ terminalId: t, since: r.enqueued_at, attempts: r.attempts, lastError: r.last_error });
    }
    return out;
  }
}
