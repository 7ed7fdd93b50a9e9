// Reading and writing UserRecords across the users table and its credential
// tables. Prepared once per connection; every method runs inside whatever
// transaction the caller holds (the Store opens them).
import type Database from 'better-sqlite3';
import { listFieldEqual as listEqual, type ListField } from '../model/merge.js';
import { hasPin, USER_DISABLED, type Card, type Face, type Finger, type JobCode, type UserRecord } from '../model/user.js';

interface UserRow {
  id: string;
  disabled: number;
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
  created_at: number;
  updated_at: number;
  seq: number;
}

interface ChildRow {
  user_id: string;
}
interface CardRow extends ChildRow {
  type: number;
  data: Buffer;
}
interface FingerRow extends ChildRow {
  finger_index: number;
  flag: number;
  template0: Buffer;
  template1: Buffer;
}
interface FaceRow extends ChildRow {
  face_index: number;
  flag: number;
  data: Buffer;
}
interface GroupRow extends ChildRow {
  group_id: number;
}
interface JobRow extends ChildRow {
  code: number;
  label: string;
}

export interface UserIndexEntry {
  id: string;
  serverVersion: number;
  updatedAt: number;
}

const EMPTY = Buffer.alloc(0);

/** The columns of a users row that make a record's head (both backends: SQLite stores `disabled` as 0/1, PostgreSQL as a boolean). */
export type UserHeadRow = Pick<
  UserRow,
  'id' | 'device_version' | 'auth_group_id' | 'start_time' | 'end_time' | 'finger_auth_mode' | 'card_auth_mode' | 'id_auth_mode' | 'security_level' | 'name' | 'phrase' | 'pin_hash' | 'photo'
> & { disabled: number | boolean };

/** A record's head from its users row; the lists (cards, fingers, ...) are filled by the caller. */
export function rowToUser(r: UserHeadRow): UserRecord {
  return {
    id: r.id,
    flag: r.disabled ? USER_DISABLED : 0,
    version: r.device_version,
    authGroupId: r.auth_group_id,
    setting: {
      startTime: r.start_time,
      endTime: r.end_time,
      fingerAuthMode: r.finger_auth_mode,
      cardAuthMode: r.card_auth_mode,
      idAuthMode: r.id_auth_mode,
      securityLevel: r.security_level,
    },
    name: r.name,
    photo: r.photo ?? EMPTY,
    pinHash: r.pin_hash ?? EMPTY,
    cards: [],
    fingers: [],
    faces: [],
    accessGroups: [],
    jobCodes: [],
    phrase: r.phrase,
  };
}

const copy = (b: Buffer): Buffer => (b.length === 0 ? EMPTY : Buffer.from(b));
const wellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * The record as get() reads it back after write(u), built in memory (fresh
 * objects and buffer copies, the same shape as rowToUser): what the push lanes
 * share for a change this connection just wrote, instead of reading it again.
 * null when a round trip through SQLite could change it (a string that is not
 * well-formed UTF-16, a list entry without the fields a row needs).
 */
export function storedCopy(u: UserRecord): UserRecord | null {
  if (!wellFormed(u.id) || !wellFormed(u.name) || !wellFormed(u.phrase)) return null;
  for (const f of u.fingers) if (f.templates.length !== 2 || !f.templates[0] || !f.templates[1]) return null;
  for (const j of u.jobCodes) if (!wellFormed(j.label)) return null;
  return {
    id: u.id,
    flag: u.flag & USER_DISABLED ? USER_DISABLED : 0,
    version: u.version,
    authGroupId: u.authGroupId,
    setting: {
      startTime: u.setting.startTime,
      endTime: u.setting.endTime,
      fingerAuthMode: u.setting.fingerAuthMode,
      cardAuthMode: u.setting.cardAuthMode,
      idAuthMode: u.setting.idAuthMode,
      securityLevel: u.setting.securityLevel,
    },
    name: u.name,
    photo: copy(u.photo),
    pinHash: hasPin(u) ? copy(u.pinHash) : EMPTY,
    cards: u.cards.map((c) => ({ type: c.type, data: Buffer.from(c.data) })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: [Buffer.from(f.templates[0]), Buffer.from(f.templates[1])] })),
    faces: u.faces.map((f) => ({ index: f.index, flag: f.flag, data: Buffer.from(f.data) })),
    accessGroups: [...u.accessGroups],
    jobCodes: u.jobCodes.map((j) => ({ code: j.code, label: j.label })),
    phrase: u.phrase,
  };
}

const toCard = (r: CardRow): Card => ({ type: r.type, data: r.data });
const toFinger = (r: FingerRow): Finger => ({ index: r.finger_index, flag: r.flag, templates: [r.template0, r.template1] });
const toFace = (r: FaceRow): Face => ({ index: r.face_index, flag: r.flag, data: r.data });
const toJob = (r: JobRow): JobCode => ({ code: r.code, label: r.label });

const CHILD_TABLES: Record<ListField, string> = {
  cards: 'user_cards',
  fingers: 'user_fingers',
  faces: 'user_faces',
  accessGroups: 'user_access_groups',
  jobCodes: 'user_job_codes',
};

export class UserTables {
  private readonly sel;
  private readonly selCards;
  private readonly selFingers;
  private readonly selFaces;
  private readonly selGroups;
  private readonly selJobs;
  private readonly page;
  private readonly pageCards;
  private readonly pageFingers;
  private readonly pageFaces;
  private readonly pageGroups;
  private readonly pageJobs;
  private readonly index;
  private readonly count;
  private readonly exists;
  private readonly ins;
  private readonly upd;
  private readonly del;
  private readonly delChild: Record<ListField, Database.Statement<[string]>>;
  private readonly insCard;
  private readonly insFinger;
  private readonly insFace;
  private readonly insGroup;
  private readonly insJob;

  constructor(db: Database.Database) {
    this.sel = db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?');
    this.selCards = db.prepare<[string], CardRow>('SELECT user_id, type, data FROM user_cards WHERE user_id = ? ORDER BY pos');
    this.selFingers = db.prepare<[string], FingerRow>('SELECT user_id, finger_index, flag, template0, template1 FROM user_fingers WHERE user_id = ? ORDER BY pos');
    this.selFaces = db.prepare<[string], FaceRow>('SELECT user_id, face_index, flag, data FROM user_faces WHERE user_id = ? ORDER BY pos');
    this.selGroups = db.prepare<[string], GroupRow>('SELECT user_id, group_id FROM user_access_groups WHERE user_id = ? ORDER BY pos');
    this.selJobs = db.prepare<[string], JobRow>('SELECT user_id, code, label FROM user_job_codes WHERE user_id = ? ORDER BY pos');
    // pages: users in (after, last] in id order (BINARY collation = memcmp of
    // the UTF-8 bytes, the same order as LIST_USERS)
    this.page = db.prepare<[string, number], UserRow>('SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?');
    const range = 'WHERE user_id > ? AND user_id <= ? ORDER BY user_id, pos';
    this.pageCards = db.prepare<[string, string], CardRow>(`SELECT user_id, type, data FROM user_cards ${range}`);
    this.pageFingers = db.prepare<[string, string], FingerRow>(`SELECT user_id, finger_index, flag, template0, template1 FROM user_fingers ${range}`);
    this.pageFaces = db.prepare<[string, string], FaceRow>(`SELECT user_id, face_index, flag, data FROM user_faces ${range}`);
    this.pageGroups = db.prepare<[string, string], GroupRow>(`SELECT user_id, group_id FROM user_access_groups ${range}`);
    this.pageJobs = db.prepare<[string, string], JobRow>(`SELECT user_id, code, label FROM user_job_codes ${range}`);
    this.index = db.prepare<[string, number], { id: string; server_version: number; updated_at: number }>(
      'SELECT id, server_version, updated_at FROM users WHERE id > ? ORDER BY id LIMIT ?',
    );
    this.count = db.prepare<[], number>('SELECT count(*) FROM users').pluck();
    this.exists = db.prepare<[string], number>('SELECT 1 FROM users WHERE id = ?').pluck();

    // writes prepare fine on a read-only connection and fail (SQLITE_READONLY) when run
    this.ins = db.prepare(
      `INSERT INTO users (id, disabled, device_version, auth_group_id, start_time, end_time, finger_auth_mode, card_auth_mode,
         id_auth_mode, security_level, name, phrase, pin_hash, photo, server_version, created_at, updated_at, seq, feed_origin)
       VALUES (@id, @disabled, @device_version, @auth_group_id, @start_time, @end_time, @finger_auth_mode, @card_auth_mode,
         @id_auth_mode, @security_level, @name, @phrase, @pin_hash, @photo, 1, @now, @now, @seq, @origin)`,
    );
    this.upd = db
      .prepare(
        `UPDATE users SET disabled = @disabled, device_version = @device_version, auth_group_id = @auth_group_id,
           start_time = @start_time, end_time = @end_time, finger_auth_mode = @finger_auth_mode, card_auth_mode = @card_auth_mode,
           id_auth_mode = @id_auth_mode, security_level = @security_level, name = @name, phrase = @phrase,
           pin_hash = @pin_hash, photo = @photo, server_version = server_version + 1, updated_at = @now,
           seq = @seq, feed_origin = @origin
         WHERE id = @id RETURNING server_version`,
      )
      .pluck();
    this.del = db.prepare<[string]>('DELETE FROM users WHERE id = ?');
    this.delChild = Object.fromEntries(
      (Object.keys(CHILD_TABLES) as ListField[]).map((f) => [f, db.prepare<[string]>(`DELETE FROM ${CHILD_TABLES[f]} WHERE user_id = ?`)]),
    ) as Record<ListField, Database.Statement<[string]>>;
    this.insCard = db.prepare<[string, number, number, Buffer]>('INSERT INTO user_cards (user_id, pos, type, data) VALUES (?, ?, ?, ?)');
    this.insFinger = db.prepare<[string, number, number, number, Buffer, Buffer]>(
      'INSERT INTO user_fingers (user_id, pos, finger_index, flag, template0, template1) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.insFace = db.prepare<[string, number, number, number, Buffer]>('INSERT INTO user_faces (user_id, pos, face_index, flag, data) VALUES (?, ?, ?, ?, ?)');
    this.insGroup = db.prepare<[string, number, number]>('INSERT INTO user_access_groups (user_id, pos, group_id) VALUES (?, ?, ?)');
    this.insJob = db.prepare<[string, number, number, string]>('INSERT INTO user_job_codes (user_id, pos, code, label) VALUES (?, ?, ?, ?)');
  }

  get(id: string): UserRecord | null {
    const row = this.sel.get(id);
    if (!row) return null;
    const u = rowToUser(row);
    u.cards = this.selCards.all(id).map(toCard);
    u.fingers = this.selFingers.all(id).map(toFinger);
    u.faces = this.selFaces.all(id).map(toFace);
    u.accessGroups = this.selGroups.all(id).map((r) => r.group_id);
    u.jobCodes = this.selJobs.all(id).map(toJob);
    return u;
  }

  has(id: string): boolean {
    return this.exists.get(id) !== undefined;
  }

  /** Users with id > after, in id order; six range queries per page, not six per user. `seqs` receives their feed numbers. */
  list(after: string, limit: number, seqs?: number[]): UserRecord[] {
    const rows = this.page.all(after, limit);
    if (rows.length === 0) return [];
    if (seqs) for (const r of rows) seqs.push(r.seq);
    const last = rows[rows.length - 1].id;
    const byId = new Map<string, UserRecord>();
    const users = rows.map((r) => {
      const u = rowToUser(r);
      byId.set(u.id, u);
      return u;
    });
    for (const r of this.pageCards.all(after, last)) byId.get(r.user_id)?.cards.push(toCard(r));
    for (const r of this.pageFingers.all(after, last)) byId.get(r.user_id)?.fingers.push(toFinger(r));
    for (const r of this.pageFaces.all(after, last)) byId.get(r.user_id)?.faces.push(toFace(r));
    for (const r of this.pageGroups.all(after, last)) byId.get(r.user_id)?.accessGroups.push(r.group_id);
    for (const r of this.pageJobs.all(after, last)) byId.get(r.user_id)?.jobCodes.push(toJob(r));
    return users;
  }

  listIndex(after: string, limit: number): UserIndexEntry[] {
    return this.index.all(after, limit).map((r) => ({ id: r.id, serverVersion: r.server_version, updatedAt: r.updated_at }));
  }

  countAll(): number {
    return this.count.get() as number;
  }

  /**
   * Writes `u` as the server's record. `prev` is the record currently stored
   * (null: insert). Only the credential lists that differ from `prev` are
   * rewritten. `seq` is the change's feed number; `origin` the terminal that
   * already holds exactly this version (its feed reads skip it), or null.
   * Returns the new server_version.
   */
  write(u: UserRecord, prev: UserRecord | null, now: number, seq: number, origin: string | null = null): number {
    const params = {
      seq,
      origin,
      id: u.id,
      disabled: u.flag & USER_DISABLED ? 1 : 0,
      device_version: u.version,
      auth_group_id: u.authGroupId,
      start_time: u.setting.startTime,
      end_time: u.setting.endTime,
      finger_auth_mode: u.setting.fingerAuthMode,
      card_auth_mode: u.setting.cardAuthMode,
      id_auth_mode: u.setting.idAuthMode,
      security_level: u.setting.securityLevel,
      name: u.name,
      phrase: u.phrase,
      pin_hash: hasPin(u) ? u.pinHash : null,
      photo: u.photo.length > 0 ? u.photo : null,
      now,
    };
    let serverVersion: number;
    if (prev === null) {
      this.ins.run(params);
      serverVersion = 1;
    } else {
      serverVersion = this.upd.get(params) as number;
    }
    for (const f of Object.keys(CHILD_TABLES) as ListField[]) {
      if (prev !== null && listEqual(f, u, prev)) continue;
      if (prev !== null) this.delChild[f].run(u.id);
      this.insertList(f, u);
    }
    return serverVersion;
  }

  private insertList(f: ListField, u: UserRecord): void {
    const id = u.id;
    switch (f) {
      case 'cards':
        u.cards.forEach((c, i) => this.insCard.run(id, i, c.type, c.data));
        break;
      case 'fingers':
        u.fingers.forEach((x, i) => this.insFinger.run(id, i, x.index, x.flag, x.templates[0], x.templates[1]));
        break;
      case 'faces':
        u.faces.forEach((x, i) => this.insFace.run(id, i, x.index, x.flag, x.data));
        break;
      case 'accessGroups':
        u.accessGroups.forEach((g, i) => this.insGroup.run(id, i, g));
        break;
      case 'jobCodes':
        u.jobCodes.forEach((j, i) => this.insJob.run(id, i, j.code, j.label));
        break;
    }
  }

  /** Deletes the user and (by cascade) its credentials. */
  remove(id: string): boolean {
    return this.del.run(id).changes > 0;
  }
}
