// Reading and writing UserRecords across the users table and its credential
// tables in PostgreSQL, on the caller's connection (inside its transaction).
// The same rows and the same order of list parts as the SQLite store
// (src/store/users.ts): a user's cards, fingers, ... keep their position.
// Several users are read with one query per table (id = ANY), not per user.
import type pg from 'pg';
import { listFieldEqual, type ListField } from '../../model/merge.js';
import { hasPin, USER_DISABLED, type UserRecord } from '../../model/user.js';
import { rowToUser } from '../users.js';

interface UserRow {
  id: string;
  disabled: boolean;
  device_version: number;
  auth_group_id: number;
  start_time: number;
  end_time: number;
  finger_auth_mode: number;
  card_auth_mode: number;
  id_auth_mode: number;
  security_level: number;
  name: string;
  phrase: string;
  pin_hash: Buffer | null;
  photo: Buffer | null;
  server_version: number;
  seq: number;
}

const USER_COLS =
  'id, disabled, device_version, auth_group_id, start_time, end_time, finger_auth_mode, card_auth_mode, id_auth_mode, security_level, name, phrase, pin_hash, photo, server_version, seq';

/** users with their feed numbers, from rows already read; the parts are filled with one query per table */
async function withParts(c: pg.ClientBase, rows: UserRow[]): Promise<{ user: UserRecord; seq: number; serverVersion: number }[]> {
  if (rows.length === 0) return [];
  const byId = new Map<string, UserRecord>();
  const out = rows.map((r) => {
    const user = rowToUser(r);
    byId.set(user.id, user);
    return { user, seq: r.seq, serverVersion: r.server_version };
  });
  const ids = [...byId.keys()];
  // one after the other: a connection runs one query at a time
  const cards = await c.query<{ user_id: string; type: number; data: Buffer }>('SELECT user_id, type, data FROM user_cards WHERE user_id = ANY($1) ORDER BY user_id, pos', [ids]);
  const fingers = await c.query<{ user_id: string; finger_index: number; flag: number; template0: Buffer; template1: Buffer }>(
    'SELECT user_id, finger_index, flag, template0, template1 FROM user_fingers WHERE user_id = ANY($1) ORDER BY user_id, pos',
    [ids],
  );
  const faces = await c.query<{ user_id: string; face_index: number; flag: number; data: Buffer }>(
    'SELECT user_id, face_index, flag, data FROM user_faces WHERE user_id = ANY($1) ORDER BY user_id, pos',
    [ids],
  );
  const groups = await c.query<{ user_id: string; group_id: number }>('SELECT user_id, group_id FROM user_access_groups WHERE user_id = ANY($1) ORDER BY user_id, pos', [ids]);
  const jobs = await c.query<{ user_id: string; code: number; label: string }>('SELECT user_id, code, label FROM user_job_codes WHERE user_id = ANY($1) ORDER BY user_id, pos', [ids]);
  for (const r of cards.rows) byId.get(r.user_id)!.cards.push({ type: r.type, data: r.data });
  for (const r of fingers.rows) byId.get(r.user_id)!.fingers.push({ index: r.finger_index, flag: r.flag, templates: [r.template0, r.template1] });
  for (const r of faces.rows) byId.get(r.user_id)!.faces.push({ index: r.face_index, flag: r.flag, data: r.data });
  for (const r of groups.rows) byId.get(r.user_id)!.accessGroups.push(r.group_id);
  for (const r of jobs.rows) byId.get(r.user_id)!.jobCodes.push({ code: r.code, label: r.label });
  return out;
}

/** the users with these IDs (missing ones absent from the map), with feed numbers and versions */
export async function getUsers(c: pg.ClientBase, ids: readonly string[]): Promise<Map<string, { user: UserRecord; seq: number; serverVersion: number }>> {
  if (ids.length === 0) return new Map();
  const r = await c.query<UserRow>(`SELECT ${USER_COLS} FROM users WHERE id = ANY($1)`, [ids]);
  const list = await withParts(c, r.rows);
  return new Map(list.map((x) => [x.user.id, x]));
}

/** users with id > after in byte order of the ID (COLLATE "C"), with their feed numbers */
export async function listUsers(c: pg.ClientBase, after: string, limit: number): Promise<{ user: UserRecord; seq: number }[]> {
  const r = await c.query<UserRow>(`SELECT ${USER_COLS} FROM users WHERE id > $1 ORDER BY id LIMIT $2`, [after, limit]);
  return withParts(c, r.rows);
}

const PART_TABLES: Record<ListField, string> = {
  cards: 'user_cards',
  fingers: 'user_fingers',
  faces: 'user_faces',
  accessGroups: 'user_access_groups',
  jobCodes: 'user_job_codes',
};

/**
 * Writes `u` as the server's record (prev: the stored one, null: insert),
 * rewriting only the parts that differ. `seq` is its feed number, `origin` the
 * terminal that already holds exactly this version (its feed reads skip it).
 * Returns the new server_version.
 */
export async function writeUser(
  c: pg.ClientBase,
  u: UserRecord,
  prev: UserRecord | null,
  now: number,
  seq: number,
  origin: string | null,
): Promise<number> {
  const vals = [
    u.id,
    (u.flag & USER_DISABLED) !== 0,
    u.version,
    u.authGroupId,
    u.setting.startTime,
    u.setting.endTime,
    u.setting.fingerAuthMode,
    u.setting.cardAuthMode,
    u.setting.idAuthMode,
    u.setting.securityLevel,
    u.name,
    u.phrase,
    hasPin(u) ? u.pinHash : null,
    u.photo.length > 0 ? u.photo : null,
    now,
    seq,
    origin,
  ];
  let serverVersion: number;
  if (prev === null) {
    await c.query(
      `INSERT INTO users (id, disabled, device_version, auth_group_id, start_time, end_time, finger_auth_mode, card_auth_mode,
         id_auth_mode, security_level, name, phrase, pin_hash, photo, server_version, created_at, updated_at, seq, feed_origin)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15, $16, $17)`,
      vals,
    );
    serverVersion = 1;
  } else {
    const r = await c.query<{ server_version: number }>(
      `UPDATE users SET disabled = $2, device_version = $3, auth_group_id = $4, start_time = $5, end_time = $6,
         finger_auth_mode = $7, card_auth_mode = $8, id_auth_mode = $9, security_level = $10, name = $11, phrase = $12,
         pin_hash = $13, photo = $14, server_version = server_version + 1, updated_at = $15, seq = $16, feed_origin = $17
       WHERE id = $1 RETURNING server_version`,
      vals,
    );
    serverVersion = r.rows[0]!.server_version;
  }
  for (const f of Object.keys(PART_TABLES) as ListField[]) {
    if (prev !== null && listFieldEqual(f, u, prev)) continue;
    if (prev !== null) await c.query(`DELETE FROM ${PART_TABLES[f]} WHERE user_id = $1`, [u.id]);
    await insertPart(c, f, u);
  }
  return serverVersion;
}

async function insertPart(c: pg.ClientBase, f: ListField, u: UserRecord): Promise<void> {
  const id = u.id;
  const pos = (n: number) => Array.from({ length: n }, (_, i) => i);
  switch (f) {
    case 'cards':
      if (!u.cards.length) return;
      await c.query('INSERT INTO user_cards (user_id, pos, type, data) SELECT $1, * FROM unnest($2::int[], $3::int[], $4::bytea[])', [
        id,
        pos(u.cards.length),
        u.cards.map((x) => x.type),
        u.cards.map((x) => x.data),
      ]);
      return;
    case 'fingers':
      if (!u.fingers.length) return;
      await c.query(
        'INSERT INTO user_fingers (user_id, pos, finger_index, flag, template0, template1) SELECT $1, * FROM unnest($2::int[], $3::int[], $4::int[], $5::bytea[], $6::bytea[])',
        [id, pos(u.fingers.length), u.fingers.map((x) => x.index), u.fingers.map((x) => x.flag), u.fingers.map((x) => x.templates[0]), u.fingers.map((x) => x.templates[1])],
      );
      return;
    case 'faces':
      if (!u.faces.length) return;
      await c.query('INSERT INTO user_faces (user_id, pos, face_index, flag, data) SELECT $1, * FROM unnest($2::int[], $3::int[], $4::int[], $5::bytea[])', [
        id,
        pos(u.faces.length),
        u.faces.map((x) => x.index),
        u.faces.map((x) => x.flag),
        u.faces.map((x) => x.data),
      ]);
      return;
    case 'accessGroups':
      if (!u.accessGroups.length) return;
      await c.query('INSERT INTO user_access_groups (user_id, pos, group_id) SELECT $1, * FROM unnest($2::int[], $3::bigint[])', [id, pos(u.accessGroups.length), u.accessGroups]);
      return;
    case 'jobCodes':
      if (!u.jobCodes.length) return;
      await c.query('INSERT INTO user_job_codes (user_id, pos, code, label) SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[])', [
        id,
        pos(u.jobCodes.length),
        u.jobCodes.map((x) => x.code),
        u.jobCodes.map((x) => x.label),
      ]);
      return;
  }
}

export interface UserWrite {
  rec: UserRecord;
  /** the stored record before this batch; null: a new user */
  prev: UserRecord | null;
  /** its version before this batch (0 for a new user) */
  prevVersion: number;
  /** changes to it in the batch (its server_version grows by this many, as with one write each) */
  changes: number;
  origin: string | null;
}

/**
 * Writes a batch's changed users with a few statements in all (one per table
 * and kind), not several per user: the records' final state, seq 0 (the
 * caller numbers them last). Returns each user's new server_version.
 */
export async function writeUsers(c: pg.ClientBase, list: readonly UserWrite[], now: number): Promise<Map<string, number>> {
  const versions = new Map<string, number>();
  if (!list.length) return versions;
  const cols = (ws: readonly UserWrite[]) => [
    ws.map((w) => w.rec.id),
    ws.map((w) => (w.rec.flag & USER_DISABLED) !== 0),
    ws.map((w) => w.rec.version),
    ws.map((w) => w.rec.authGroupId),
    ws.map((w) => w.rec.setting.startTime),
    ws.map((w) => w.rec.setting.endTime),
    ws.map((w) => w.rec.setting.fingerAuthMode),
    ws.map((w) => w.rec.setting.cardAuthMode),
    ws.map((w) => w.rec.setting.idAuthMode),
    ws.map((w) => w.rec.setting.securityLevel),
    ws.map((w) => w.rec.name),
    ws.map((w) => w.rec.phrase),
    ws.map((w) => (hasPin(w.rec) ? w.rec.pinHash : null)),
    ws.map((w) => (w.rec.photo.length > 0 ? w.rec.photo : null)),
    ws.map((w) => w.prevVersion + w.changes),
    ws.map((w) => w.origin),
  ];
  const unnest = `unnest($1::text[], $2::bool[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::int[], $8::int[], $9::int[], $10::int[],
                         $11::text[], $12::text[], $13::bytea[], $14::bytea[], $15::bigint[], $16::text[])
                  AS v(id, dis, dv, ag, st, et, fam, cam, iam, sl, nm, ph, pin, photo, sv, origin)`;
  const fresh = list.filter((w) => w.prev === null);
  const old = list.filter((w) => w.prev !== null);
  if (fresh.length) {
    await c.query(
      `INSERT INTO users (id, disabled, device_version, auth_group_id, start_time, end_time, finger_auth_mode, card_auth_mode,
         id_auth_mode, security_level, name, phrase, pin_hash, photo, server_version, created_at, updated_at, seq, feed_origin)
       SELECT id, dis, dv, ag, st, et, fam, cam, iam, sl, nm, ph, pin, photo, sv, $17, $17, 0, origin FROM ${unnest}`,
      [...cols(fresh), now],
    );
  }
  if (old.length) {
    await c.query(
      `UPDATE users u SET disabled = v.dis, device_version = v.dv, auth_group_id = v.ag, start_time = v.st, end_time = v.et,
         finger_auth_mode = v.fam, card_auth_mode = v.cam, id_auth_mode = v.iam, security_level = v.sl, name = v.nm, phrase = v.ph,
         pin_hash = v.pin, photo = v.photo, server_version = v.sv, updated_at = $17, feed_origin = v.origin
       FROM ${unnest} WHERE u.id = v.id`,
      [...cols(old), now],
    );
  }
  for (const w of list) versions.set(w.rec.id, w.prevVersion + w.changes);

  // the parts: rewrite only the lists that differ from the stored ones
  for (const f of Object.keys(PART_TABLES) as ListField[]) {
    const redo = list.filter((w) => w.prev === null || !listFieldEqual(f, w.rec, w.prev));
    const stale = redo.filter((w) => w.prev !== null).map((w) => w.rec.id);
    if (stale.length) await c.query(`DELETE FROM ${PART_TABLES[f]} WHERE user_id = ANY($1::text[])`, [stale]);
    await insertParts(c, f, redo.map((w) => w.rec));
  }
  return versions;
}

async function insertParts(c: pg.ClientBase, f: ListField, users: readonly UserRecord[]): Promise<void> {
  const ids: string[] = [];
  const pos: number[] = [];
  const a: unknown[] = [];
  const b: unknown[] = [];
  const d: unknown[] = [];
  const e: unknown[] = [];
  for (const u of users) {
    const items: readonly unknown[] =
      f === 'cards' ? u.cards : f === 'fingers' ? u.fingers : f === 'faces' ? u.faces : f === 'accessGroups' ? u.accessGroups : u.jobCodes;
    items.forEach((_, i) => {
      ids.push(u.id);
      pos.push(i);
    });
    switch (f) {
      case 'cards':
        for (const x of u.cards) (a.push(x.type), b.push(x.data));
        break;
      case 'fingers':
        for (const x of u.fingers) (a.push(x.index), b.push(x.flag), d.push(x.templates[0]), e.push(x.templates[1]));
        break;
      case 'faces':
        for (const x of u.faces) (a.push(x.index), b.push(x.flag), d.push(x.data));
        break;
      case 'accessGroups':
        for (const g of u.accessGroups) a.push(g);
        break;
      case 'jobCodes':
        for (const j of u.jobCodes) (a.push(j.code), b.push(j.label));
        break;
    }
  }
  if (!ids.length) return;
  switch (f) {
    case 'cards':
      await c.query('INSERT INTO user_cards (user_id, pos, type, data) SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::bytea[])', [ids, pos, a, b]);
      return;
    case 'fingers':
      await c.query(
        'INSERT INTO user_fingers (user_id, pos, finger_index, flag, template0, template1) SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::bytea[], $6::bytea[])',
        [ids, pos, a, b, d, e],
      );
      return;
    case 'faces':
      await c.query('INSERT INTO user_faces (user_id, pos, face_index, flag, data) SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::bytea[])', [
        ids,
        pos,
        a,
        b,
        d,
      ]);
      return;
    case 'accessGroups':
      await c.query('INSERT INTO user_access_groups (user_id, pos, group_id) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])', [ids, pos, a]);
      return;
    case 'jobCodes':
      await c.query('INSERT INTO user_job_codes (user_id, pos, code, label) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[])', [ids, pos, a, b]);
      return;
  }
}
