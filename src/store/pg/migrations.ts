// The PostgreSQL schema, versioned in its own table (termsync_migrations: one
// row per applied version), not SQLite's PRAGMA user_version. Entry i brings
// the schema from version i to i+1; never edit a released entry, append.
//
// Several daemons may start at once against one database: migrate() takes a
// transaction-level advisory lock first, so one applies each version and the
// others find it applied. Each version runs in its own transaction together
// with its row in termsync_migrations (PostgreSQL's DDL is transactional: a
// crash mid-migration leaves the previous version).
//
// Equivalence with SQLite (src/store/migrations.ts): the same tables and
// columns, with PostgreSQL types: times stay integers (ms since the epoch,
// bigint) so both backends hand the same numbers to the engine; flags are
// booleans; blobs are bytea; IDs compare by bytes (COLLATE "C": the
// LIST_USERS order). The cluster tables (daemons, leases) exist only here.
import type pg from 'pg';

export interface PgMigration {
  version: number;
  description: string;
  sql: string;
}

/** key of the advisory lock that serializes migrations (any constant; "tsmg") */
const MIGRATION_LOCK_KEY = 0x74736d67;

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'the site: users and their parts, terminals, monitoring events, push and pull failures, settings (SQLite schema 5)',
    sql: `
      CREATE TABLE users (
        id               text COLLATE "C" PRIMARY KEY,
        disabled         boolean NOT NULL DEFAULT false,
        device_version   bigint NOT NULL DEFAULT 0,
        auth_group_id    bigint NOT NULL DEFAULT 0,
        start_time       bigint NOT NULL DEFAULT 0,
        end_time         bigint NOT NULL DEFAULT 0,
        finger_auth_mode integer NOT NULL DEFAULT 0,
        card_auth_mode   integer NOT NULL DEFAULT 0,
        id_auth_mode     integer NOT NULL DEFAULT 0,
        security_level   integer NOT NULL DEFAULT 0,
        name             text NOT NULL DEFAULT '',
        phrase           text NOT NULL DEFAULT '',
        pin_hash         bytea,
        photo            bytea,
        server_version   bigint NOT NULL DEFAULT 1,
        created_at       bigint NOT NULL,
        updated_at       bigint NOT NULL
      );
      -- the console's search by name: case-insensitive, keyset-paged with the ID
      CREATE INDEX users_by_name ON users (lower(name) COLLATE "C", id);

      CREATE TABLE user_cards (
        user_id text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pos     integer NOT NULL,
        type    integer NOT NULL,
        data    bytea NOT NULL,
        PRIMARY KEY (user_id, pos)
      );
      CREATE INDEX user_cards_by_data ON user_cards (data, type);

      CREATE TABLE user_fingers (
        user_id      text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pos          integer NOT NULL,
        finger_index integer NOT NULL,
        flag         integer NOT NULL DEFAULT 0,
        template0    bytea NOT NULL,
        template1    bytea NOT NULL,
        PRIMARY KEY (user_id, pos)
      );

      CREATE TABLE user_faces (
        user_id    text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pos        integer NOT NULL,
        face_index integer NOT NULL,
        flag       integer NOT NULL DEFAULT 0,
        data       bytea NOT NULL,
        PRIMARY KEY (user_id, pos)
      );

      CREATE TABLE user_access_groups (
        user_id  text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pos      integer NOT NULL,
        group_id bigint NOT NULL,
        PRIMARY KEY (user_id, pos)
      );
      CREATE INDEX user_access_groups_by_group ON user_access_groups (group_id);

      CREATE TABLE user_job_codes (
        user_id text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pos     integer NOT NULL,
        code    bigint NOT NULL,
        label   text NOT NULL DEFAULT '',
        PRIMARY KEY (user_id, pos)
      );

      CREATE TABLE terminals (
        id            text COLLATE "C" PRIMARY KEY,
        device_id     bigint,
        address       text,
        direction     text NOT NULL CHECK (direction IN ('dial', 'listen')),
        state         text NOT NULL DEFAULT 'unknown',
        approved      boolean NOT NULL DEFAULT false,
        log_epoch     bigint,
        cursor        bigint NOT NULL DEFAULT 0,
        last_seen     bigint,
        user_capacity integer,
        max_batch     integer,
        model         text,
        firmware      text,
        identity      text,
        protocol      text NOT NULL DEFAULT 'termsync',
        created_at    bigint NOT NULL,
        updated_at    bigint NOT NULL
      );
      CREATE UNIQUE INDEX terminals_by_device_id ON terminals (device_id) WHERE device_id IS NOT NULL;

      CREATE TABLE terminal_access_groups (
        terminal_id text COLLATE "C" NOT NULL REFERENCES terminals(id) ON DELETE CASCADE,
        group_id    bigint NOT NULL,
        PRIMARY KEY (terminal_id, group_id)
      );

      -- identity: an ID is never reused, readers page with "after"
      CREATE TABLE events (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time        bigint NOT NULL,
        type        text NOT NULL,
        terminal_id text,
        user_id     text,
        detail      text
      );
      CREATE INDEX events_by_type ON events (type, id);
      CREATE INDEX events_by_time ON events (time);

      CREATE TABLE push_failures (
        terminal_id text COLLATE "C" NOT NULL,
        user_id     text COLLATE "C" NOT NULL,
        status      integer NOT NULL,
        reason      text NOT NULL DEFAULT '',
        time        bigint NOT NULL,
        PRIMARY KEY (terminal_id, user_id)
      );

      CREATE TABLE pull_failures (
        terminal_id text COLLATE "C" NOT NULL,
        user_id     text COLLATE "C" NOT NULL,
        reason      text NOT NULL DEFAULT '',
        first_at    bigint NOT NULL,
        last_at     bigint NOT NULL,
        attempts    integer NOT NULL DEFAULT 1,
        PRIMARY KEY (terminal_id, user_id)
      );

      CREATE TABLE settings (
        key   text PRIMARY KEY,
        value text NOT NULL
      );
    `,
  },
  {
    version: 2,
    description: 'cluster: daemons with liveness, one lease per terminal with a fencing token that only grows',
    sql: `
      -- a daemon is alive while expires_at is in the future (database clock)
      CREATE TABLE cluster_daemons (
        id           text COLLATE "C" PRIMARY KEY,
        host         text NOT NULL DEFAULT '',
        pid          integer,
        started_at   timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL
      );

      -- tokens come from one sequence: a lease taken later always carries a
      -- larger token, even after a terminal is removed and added again
      CREATE SEQUENCE lease_token_seq AS bigint;

      -- one row per terminal the daemons know (no foreign key: the daemons'
      -- flag files name the terminals, the terminals table may lag behind).
      -- owner NULL: free. A lease whose expires_at passed may be taken.
      CREATE TABLE terminal_leases (
        terminal_id text COLLATE "C" PRIMARY KEY,
        owner       text COLLATE "C",
        token       bigint NOT NULL DEFAULT 0,
        expires_at  timestamptz NOT NULL DEFAULT '-infinity',
        acquired_at timestamptz
      );
      CREATE INDEX terminal_leases_by_owner ON terminal_leases (owner) WHERE owner IS NOT NULL;
    `,
  },
  {
    version: 3,
    description: 'change feed: users.seq and feed_origin, tombstones, terminals.feed_cursor, the owed set (outbox), the feed head (SQLite schema 6)',
    sql: `
      ALTER TABLE users ADD COLUMN seq bigint NOT NULL DEFAULT 0, ADD COLUMN feed_origin text;
      -- covers a feed read (seq, feed_origin, id)
      CREATE INDEX users_by_seq ON users (seq, feed_origin, id);

      CREATE TABLE tombstones (
        user_id    text COLLATE "C" PRIMARY KEY,
        seq        bigint NOT NULL,
        deleted_at bigint NOT NULL
      );
      CREATE UNIQUE INDEX tombstones_by_seq ON tombstones (seq);

      ALTER TABLE terminals ADD COLUMN feed_cursor bigint NOT NULL DEFAULT 0;

      -- the owed set: targeted pushes to one terminal (coalesced per user; gen
      -- counts re-enqueues so an ack of an older push leaves a newer change)
      CREATE TABLE outbox (
        terminal_id text COLLATE "C" NOT NULL REFERENCES terminals(id) ON DELETE CASCADE,
        user_id     text COLLATE "C" NOT NULL,
        enqueued_at bigint NOT NULL,
        gen         integer NOT NULL DEFAULT 1,
        attempts    integer NOT NULL DEFAULT 0,
        last_error  text,
        PRIMARY KEY (terminal_id, user_id)
      );
      CREATE INDEX outbox_by_time ON outbox (terminal_id, enqueued_at, user_id);

      -- the newest feed number handed out. Every change takes its number by
      -- updating this one row as the last step of its transaction: the row lock
      -- makes the numbers commit in order, so a reader that sees head H also
      -- sees every entry up to H (with a plain sequence, number 11 could commit
      -- before 10 and a reader's cursor would pass 10 for good). NOTIFY
      -- termsync_feed tells the other daemons after the commit.
      CREATE TABLE feed_state (
        one  boolean PRIMARY KEY DEFAULT true CHECK (one),
        head bigint NOT NULL
      );
      INSERT INTO feed_state (one, head) VALUES (true, 0);
    `,
  },
];

export const PG_LATEST_VERSION = PG_MIGRATIONS.length;

export class PgSchemaVersionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PgSchemaVersionError';
  }
}

async function appliedVersion(client: pg.ClientBase): Promise<number> {
  const r = await client.query<{ v: number | null }>('SELECT max(version)::int AS v FROM termsync_migrations');
  return r.rows[0]?.v ?? 0;
}

/**
 * Brings the database to the newest schema; returns the versions applied here
 * (empty when it was current or another daemon did it). Refuses a database
 * from a newer termsync.
 */
export async function migratePg(pool: pg.Pool, migrations: readonly PgMigration[] = PG_MIGRATIONS): Promise<number[]> {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`PostgreSQL migration at index ${i} has version ${m.version}, expected ${i + 1}`);
  });
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query(`
      CREATE TABLE IF NOT EXISTS termsync_migrations (
        version     integer PRIMARY KEY,
        description text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
      )`).catch(async (e: unknown) => {
      // two daemons creating it at the same moment: one wins, the other sees a duplicate
      // (unique violation, duplicate table, or 'type ... already exists': its row type; seen in test/pg-schema.test.ts)
      if (!['23505', '42P07', '42710'].includes((e as { code?: string }).code ?? '')) throw e;
    });
    for (;;) {
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
        const current = await appliedVersion(client);
        if (current > migrations.length) {
          throw new PgSchemaVersionError(
            `PostgreSQL schema version ${current} is newer than this termsync knows (${migrations.length}); upgrade termsync on every daemon`,
          );
        }
        const next = migrations[current];
        if (!next) {
          await client.query('COMMIT');
          return applied;
        }
        await client.query(next.sql);
        await client.query('INSERT INTO termsync_migrations (version, description) VALUES ($1, $2)', [next.version, next.description]);
        await client.query('COMMIT');
        applied.push(next.version);
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        throw e;
      }
    }
  } finally {
    client.release();
  }
}

/** the version the database is at (0: empty) */
export async function pgSchemaVersion(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ t: string | null }>("SELECT to_regclass('termsync_migrations')::text AS t");
  if (!r.rows[0]?.t) return 0;
  const v = await pool.query<{ v: number | null }>('SELECT max(version)::int AS v FROM termsync_migrations');
  return v.rows[0]?.v ?? 0;
}
