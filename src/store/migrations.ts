// Versioned schema migrations. The schema version is SQLite's PRAGMA
// user_version (0 = empty database). MIGRATIONS is an ordered array: entry i
// brings the schema from version i to version i+1. Never edit a released
// entry; append a new one. Each migration runs in its own BEGIN IMMEDIATE
// transaction together with the user_version bump, so a crash mid-migration
// leaves the previous version intact.
import type Database from 'better-sqlite3';

export interface Migration {
  /** the schema version this migration produces (1-based, = index + 1) */
  version: number;
  description: string;
  up: (db: Database.Database) => void;
}

// Schema notes
// - users: one row per user with the scalar fields; credentials and lists live in
//   child tables keyed (user_id, pos) so their order is kept (the LIST_USERS digest
//   depends on it) and a card can be looked up by its data (duplicate cards).
//   "No photo"/"no PIN" are NULL. server_version counts changes to the row.
// - terminals: identity, connection direction, approval, log position
//   (log_epoch, cursor = last event ID fully processed) and capabilities.
//   terminal_access_groups holds the groups a terminal serves in 'specific' mode.
// - events: the monitoring log (not the terminals' logs). AUTOINCREMENT so an ID
//   is never reused after pruning: readers page with `after`.
// - outbox: users still to push to a terminal, one row per (terminal, user); the
//   record is read fresh from users at send time. gen counts re-enqueues so that an
//   ack for an older push does not remove a newer change.
// - push_failures: the last rejection of a user by a terminal (e.g. DUPLICATE_CARD).
// - settings: key/value (syncMode, ...).
// - pull_failures (v2): users a terminal reported that the server could not read
//   (unknown formatVersion, wrong user, a per-record failure); pulled again at every
//   session start and reconcile, and cleared by the next successful pull.
// - terminals.identity (version 3): what a dial-in terminal's device ID is bound
//   to, as JSON (src/terminal/identity.ts); NULL = not bound yet.
// - the change feed (version 6): users.seq is the user's place in the site's
//   change feed (every change takes the next number; a user holds only its
//   latest); users.feed_origin names the terminal a merged change came from
//   when that terminal already holds exactly this version (its feed reads skip
//   it); tombstones keep the number of a server-side delete until every
//   terminal's feed cursor passed it (users_by_seq covers a feed read:
//   seq, feed_origin, id); terminals.feed_cursor is "delivered
//   everything up to this number". The outbox stays as the owed set: the few
//   targeted pushes that are not the feed (a reconcile's differences, the
//   server's record back to a terminal whose copy differs, retries).
//   settings.feedFloor keeps the highest number a collected tombstone had, so
//   a number is never handed out twice.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'initial schema: users + credential tables, terminals, events, outbox, push_failures, settings',
    up(db) {
      db.exec(`
        CREATE TABLE users (
          id               TEXT PRIMARY KEY NOT NULL,
          disabled         INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
          device_version   INTEGER NOT NULL DEFAULT 0,
          auth_group_id    INTEGER NOT NULL DEFAULT 0,
          start_time       INTEGER NOT NULL DEFAULT 0,
          end_time         INTEGER NOT NULL DEFAULT 0,
          finger_auth_mode INTEGER NOT NULL DEFAULT 0,
          card_auth_mode   INTEGER NOT NULL DEFAULT 0,
          id_auth_mode     INTEGER NOT NULL DEFAULT 0,
          security_level   INTEGER NOT NULL DEFAULT 0,
          name             TEXT NOT NULL DEFAULT '',
          phrase           TEXT NOT NULL DEFAULT '',
          pin_hash         BLOB,
          photo            BLOB,
          server_version   INTEGER NOT NULL DEFAULT 1,
          created_at       INTEGER NOT NULL,
          updated_at       INTEGER NOT NULL
        );

        CREATE TABLE user_cards (
          user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          pos     INTEGER NOT NULL,
          type    INTEGER NOT NULL,
          data    BLOB NOT NULL,
          PRIMARY KEY (user_id, pos)
        ) WITHOUT ROWID;
        CREATE INDEX user_cards_by_data ON user_cards(data, type);

        CREATE TABLE user_fingers (
          user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          pos          INTEGER NOT NULL,
          finger_index INTEGER NOT NULL,
          flag         INTEGER NOT NULL DEFAULT 0,
          template0    BLOB NOT NULL,
          template1    BLOB NOT NULL,
          PRIMARY KEY (user_id, pos)
        );

        CREATE TABLE user_faces (
          user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          pos        INTEGER NOT NULL,
          face_index INTEGER NOT NULL,
          flag       INTEGER NOT NULL DEFAULT 0,
          data       BLOB NOT NULL,
          PRIMARY KEY (user_id, pos)
        );

        CREATE TABLE user_access_groups (
          user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          pos      INTEGER NOT NULL,
          group_id INTEGER NOT NULL,
          PRIMARY KEY (user_id, pos)
        ) WITHOUT ROWID;
        CREATE INDEX user_access_groups_by_group ON user_access_groups(group_id);

        CREATE TABLE user_job_codes (
          user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          pos     INTEGER NOT NULL,
          code    INTEGER NOT NULL,
          label   TEXT NOT NULL DEFAULT '',
          PRIMARY KEY (user_id, pos)
        ) WITHOUT ROWID;

        CREATE TABLE terminals (
          id            TEXT PRIMARY KEY NOT NULL,
          device_id     INTEGER,
          address       TEXT,
          direction     TEXT NOT NULL CHECK (direction IN ('dial', 'listen')),
          state         TEXT NOT NULL DEFAULT 'unknown',
          approved      INTEGER NOT NULL DEFAULT 0 CHECK (approved IN (0, 1)),
          log_epoch     INTEGER,
          cursor        INTEGER NOT NULL DEFAULT 0,
          last_seen     INTEGER,
          user_capacity INTEGER,
          max_batch     INTEGER,
          model         TEXT,
          firmware      TEXT,
          created_at    INTEGER NOT NULL,
          updated_at    INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX terminals_by_device_id ON terminals(device_id) WHERE device_id IS NOT NULL;

        CREATE TABLE terminal_access_groups (
          terminal_id TEXT NOT NULL REFERENCES terminals(id) ON DELETE CASCADE,
          group_id    INTEGER NOT NULL,
          PRIMARY KEY (terminal_id, group_id)
        ) WITHOUT ROWID;

        CREATE TABLE events (
          id          INTEGER PRIMARY KEY AUTOINCREMENT,
          time        INTEGER NOT NULL,
          type        TEXT NOT NULL,
          terminal_id TEXT,
          user_id     TEXT,
          detail      TEXT
        );
        CREATE INDEX events_by_type ON events(type, id);
        CREATE INDEX events_by_time ON events(time);

        CREATE TABLE outbox (
          terminal_id TEXT NOT NULL REFERENCES terminals(id) ON DELETE CASCADE,
          user_id     TEXT NOT NULL,
          enqueued_at INTEGER NOT NULL,
          gen         INTEGER NOT NULL DEFAULT 1,
          attempts    INTEGER NOT NULL DEFAULT 0,
          last_error  TEXT,
          PRIMARY KEY (terminal_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX outbox_by_time ON outbox(terminal_id, enqueued_at, user_id);

        CREATE TABLE push_failures (
          terminal_id TEXT NOT NULL,
          user_id     TEXT NOT NULL,
          status      INTEGER NOT NULL,
          reason      TEXT NOT NULL DEFAULT '',
          time        INTEGER NOT NULL,
          PRIMARY KEY (terminal_id, user_id)
        ) WITHOUT ROWID;

        CREATE TABLE settings (
          key   TEXT PRIMARY KEY NOT NULL,
          value TEXT NOT NULL
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 2,
    description: 'pull_failures: device users the server could not read, pulled again later',
    up(db) {
      db.exec(`
        CREATE TABLE pull_failures (
          terminal_id TEXT NOT NULL,
          user_id     TEXT NOT NULL,
          reason      TEXT NOT NULL DEFAULT '',
          first_at    INTEGER NOT NULL,
          last_at     INTEGER NOT NULL,
          attempts    INTEGER NOT NULL DEFAULT 1,
          PRIMARY KEY (terminal_id, user_id)
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 3,
    description: 'terminals.identity: the credential a device ID is bound to',
    up(db) {
      db.exec('ALTER TABLE terminals ADD COLUMN identity TEXT');
    },
  },
  {
    version: 4,
    description: 'users_by_name: an index for the console\'s user search by name (case-insensitive for ASCII, keyset-paged with the ID)',
    up(db) {
      db.exec('CREATE INDEX IF NOT EXISTS users_by_name ON users(name COLLATE NOCASE, id)');
    },
  },
  {
    version: 5,
    description: "terminals.protocol: the driver that speaks to the terminal ('termsync', 'zk', ...)",
    up(db) {
      db.exec("ALTER TABLE terminals ADD COLUMN protocol TEXT NOT NULL DEFAULT 'termsync'");
    },
  },
  {
    version: 6,
    description: 'change feed: users.seq and users.feed_origin, tombstones, terminals.feed_cursor; the outbox becomes the owed set of targeted pushes',
    up(db) {
      db.exec(`
        ALTER TABLE users ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN feed_origin TEXT;
        CREATE TABLE tombstones (
          user_id    TEXT PRIMARY KEY NOT NULL,
          seq        INTEGER NOT NULL,
          deleted_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX tombstones_by_seq ON tombstones(seq);
        ALTER TABLE terminals ADD COLUMN feed_cursor INTEGER NOT NULL DEFAULT 0;
      `);
      // Existing users take numbers 1..n in the order of their last change. Every
      // terminal known so far stands at the head: what it was owed is in its
      // outbox rows, which stay (the owed set) and are delivered as before, so
      // the upgrade re-sends nothing.
      db.exec(`
        UPDATE users SET seq = n.rn FROM (SELECT id, row_number() OVER (ORDER BY updated_at, id) AS rn FROM users) AS n WHERE n.id = users.id;
        CREATE INDEX users_by_seq ON users(seq, feed_origin, id);
        UPDATE terminals SET feed_cursor = (SELECT coalesce(max(seq), 0) FROM users);
      `);
    },
  },
  {
    version: 7,
    description: 'terminals added through the admin API are remembered with how to dial them (added_by, dial_pin, dial_key), so a restart dials them again',
    up(db) {
      // added_by: 'flags' (the flag file), 'api' (the admin API), NULL (recorded
      // before this version: not known, so not dialled at start-up, as before).
      // dial_pin is a TLS certificate fingerprint; dial_key a ZK terminal's comm
      // key digits (the database already holds the site's credentials).
      db.exec(`
        ALTER TABLE terminals ADD COLUMN added_by TEXT CHECK (added_by IN ('flags', 'api'));
        ALTER TABLE terminals ADD COLUMN dial_pin TEXT;
        ALTER TABLE terminals ADD COLUMN dial_key BLOB;
      `);
    },
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;

export class SchemaVersionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaVersionError';
  }
}

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings the database to LATEST_SCHEMA_VERSION. Returns the versions applied
 * (empty when it was current). Refuses a database from a newer termsync.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number[] {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration at index ${i} has version ${m.version}, expected ${i + 1}`);
  });
  const applied: number[] = [];
  const current = schemaVersion(db);
  if (current > migrations.length) {
    throw new SchemaVersionError(
      `database schema version ${current} is newer than this termsync knows (${migrations.length}); upgrade termsync or restore a backup`,
    );
  }
  for (const m of migrations.slice(current)) {
    db.transaction(() => {
      // re-check inside the write lock: another process may have migrated meanwhile
      if (schemaVersion(db) >= m.version) return;
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
      applied.push(m.version);
    }).immediate();
  }
  return applied;
}
