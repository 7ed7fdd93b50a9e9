// The Store's prepared statements and the row shapes they read, grouped by
// the seams of the store: terminals and their cursors, events, the owed set,
// push failures, settings. Prepared once per connection (after migrations).
import type Database from 'better-sqlite3';
import type { OutboxItem, StoredEvent, TerminalPatch, TerminalRow } from './types.js';

export interface TerminalDbRow {
  id: string;
  device_id: number | null;
  address: string | null;
  direction: 'dial' | 'listen';
  state: string;
  approved: number;
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

export interface EventDbRow {
  id: number;
  time: number;
  type: string;
  terminal_id: string | null;
  user_id: string | null;
  detail: string | null;
}

export interface OutboxDbRow {
  terminal_id: string;
  user_id: string;
  enqueued_at: number;
  gen: number;
  attempts: number;
  last_error: string | null;
}

/** Terminal fields a patch may set, and their columns. */
export const TERMINAL_COLUMNS = {
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

export function terminalFromRow(r: TerminalDbRow, accessGroups: number[]): TerminalRow {
  return {
    id: r.id,
    deviceId: r.device_id,
    address: r.address,
    direction: r.direction,
    state: r.state,
    approved: r.approved !== 0,
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

export const eventFromRow = (r: EventDbRow): StoredEvent => ({
  id: r.id,
  time: r.time,
  type: r.type,
  terminalId: r.terminal_id,
  userId: r.user_id,
  detail: r.detail,
});

export const outboxFromRow = (r: OutboxDbRow): OutboxItem => ({
  terminalId: r.terminal_id,
  userId: r.user_id,
  enqueuedAt: r.enqueued_at,
  gen: r.gen,
  attempts: r.attempts,
  lastError: r.last_error,
});

export function errorText(err: unknown): string {
  const s = err instanceof Error ? err.message : String(err);
  return s.length > 500 ? s.slice(0, 500) : s;
}

export function prepareStatements(db: Database.Database) {
  return {
    // terminals
    terminal: db.prepare<[string], TerminalDbRow>('SELECT * FROM terminals WHERE id = ?'),
    terminalByDevice: db.prepare<[number], TerminalDbRow>('SELECT * FROM terminals WHERE device_id = ? ORDER BY id LIMIT 1'),
    terminals: db.prepare<[], TerminalDbRow>('SELECT * FROM terminals ORDER BY id'),
    terminalGroups: db.prepare<[string], number>('SELECT group_id FROM terminal_access_groups WHERE terminal_id = ? ORDER BY group_id').pluck(),
    allTerminalGroups: db.prepare<[], { terminal_id: string; group_id: number }>(
      'SELECT terminal_id, group_id FROM terminal_access_groups ORDER BY terminal_id, group_id',
    ),
    insTerminal: db.prepare<[string, string, number, number]>('INSERT INTO terminals (id, direction, created_at, updated_at) VALUES (?, ?, ?, ?)'),
    delTerminal: db.prepare<[string]>('DELETE FROM terminals WHERE id = ?'),
    delTerminalGroups: db.prepare<[string]>('DELETE FROM terminal_access_groups WHERE terminal_id = ?'),
    insTerminalGroup: db.prepare<[string, number]>('INSERT OR IGNORE INTO terminal_access_groups (terminal_id, group_id) VALUES (?, ?)'),
    position: db.prepare<[string], { log_epoch: number | null; cursor: number }>('SELECT log_epoch, cursor FROM terminals WHERE id = ?'),
    setCursor: db.prepare<[number, number, string]>('UPDATE terminals SET cursor = ?, updated_at = ? WHERE id = ?'),
    setPosition: db.prepare<[number | null, number, number, string]>('UPDATE terminals SET log_epoch = ?, cursor = ?, updated_at = ? WHERE id = ?'),
    advanceCursor: db.prepare<[number, number, string, number]>('UPDATE terminals SET cursor = ?, updated_at = ? WHERE id = ? AND cursor < ?'),
    // same epoch: forward only; another epoch: take the new position as is
    moveOrReset: db.prepare<[number | null, number | null, number, number, number, string]>(
      'UPDATE terminals SET log_epoch = ?, cursor = CASE WHEN log_epoch IS ? THEN max(cursor, ?) ELSE ? END, updated_at = ? WHERE id = ?',
    ),
    terminalExists: db.prepare<[string], number>('SELECT 1 FROM terminals WHERE id = ?').pluck(),
    // events
    insEvent: db.prepare<[number, string, string | null, string | null, string | null]>(
      'INSERT INTO events (time, type, terminal_id, user_id, detail) VALUES (?, ?, ?, ?, ?)',
    ),
    insEventsBulk: db.prepare<[number, string, string | null, string]>(
      'INSERT INTO events (time, type, terminal_id, user_id, detail) SELECT ?, ?, ?, value, NULL FROM json_each(?) ORDER BY key',
    ),
    pruneKeep: db.prepare<[number]>('DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?'),
    pruneBefore: db.prepare<[number]>('DELETE FROM events WHERE time < ?'),
    // slices for the background pruner: at most ? rows per statement, oldest first
    pruneKeepSlice: db.prepare<[number, number]>(
      'DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= (SELECT max(id) FROM events) - ? ORDER BY id LIMIT ?)',
    ),
    pruneBeforeSlice: db.prepare<[number, number]>('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < ? LIMIT ?)'),
    eventCount: db.prepare<[], number>('SELECT count(*) FROM events').pluck(),
    // outbox
    // enqueue = insert a new row, or (it exists) coalesce into it: the same as one upsert,
    // but the count of rows stays known (see owedCounts) without RETURNING's cost
    enqueueNew: db.prepare<[string, string, number]>(
      'INSERT INTO outbox (terminal_id, user_id, enqueued_at) VALUES (?, ?, ?) ON CONFLICT (terminal_id, user_id) DO NOTHING',
    ),
    enqueueBump: db.prepare<[number, string, string]>(
      'UPDATE outbox SET gen = gen + 1, attempts = 0, last_error = NULL, enqueued_at = min(enqueued_at, ?) WHERE terminal_id = ? AND user_id = ?',
    ),
    enqueueAll: db.prepare<[string, number]>(
      `INSERT INTO outbox (terminal_id, user_id, enqueued_at) SELECT ?, id, ? FROM users WHERE true
       ON CONFLICT (terminal_id, user_id) DO UPDATE
         SET gen = gen + 1, attempts = 0, last_error = NULL, enqueued_at = min(enqueued_at, excluded.enqueued_at)`,
    ),
    take: db.prepare<[string, number, number], OutboxDbRow>(
      `SELECT * FROM outbox WHERE terminal_id = ? AND enqueued_at <= ? ORDER BY enqueued_at, user_id LIMIT ?`,
    ),
    ackGen: db.prepare<[string, string, number]>('DELETE FROM outbox WHERE terminal_id = ? AND user_id = ? AND gen = ?'),
    ackAny: db.prepare<[string, string]>('DELETE FROM outbox WHERE terminal_id = ? AND user_id = ?'),
    fail: db.prepare<[string, number, string, string]>(
      'UPDATE outbox SET attempts = attempts + 1, last_error = ?, enqueued_at = max(enqueued_at, ?) WHERE terminal_id = ? AND user_id = ? RETURNING attempts',
    ),
    outboxCount: db.prepare<[string], number>('SELECT count(*) FROM outbox WHERE terminal_id = ?').pluck(),
    outboxTotal: db.prepare<[], number>('SELECT count(*) FROM outbox').pluck(),
    outboxCounts: db.prepare<[], { terminal_id: string; n: number }>('SELECT terminal_id, count(*) AS n FROM outbox GROUP BY terminal_id'),
    // push failures
    putFailure: db.prepare<[string, string, number, string, number]>(
      `INSERT INTO push_failures (terminal_id, user_id, status, reason, time) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (terminal_id, user_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, time = excluded.time`,
    ),
    delFailure: db.prepare<[string, string]>('DELETE FROM push_failures WHERE terminal_id = ? AND user_id = ?'),
    delFailuresOf: db.prepare<[string]>('DELETE FROM push_failures WHERE terminal_id = ?'),
    delFailuresAll: db.prepare<[]>('DELETE FROM push_failures'),
    // settings
    getSetting: db.prepare<[string], string>('SELECT value FROM settings WHERE key = ?').pluck(),
    setSetting: db.prepare<[string, string]>(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    delSetting: db.prepare<[string]>('DELETE FROM settings WHERE key = ?'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
