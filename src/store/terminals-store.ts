// Terminals of the Store: their rows and access groups, the position in
// each terminal's event log (epoch and cursor), and each terminal's cursor in
// the server's change feed. See store-base.ts for the layers.
import { StoreWriteError } from './errors.js';
import { EventsStore } from './events-store.js';
import { TERMINAL_COLUMNS, terminalFromRow } from './statements.js';
import type { DialSettings, LogPosition, TerminalInput, TerminalPatch, TerminalRow } from './types.js';

export class TerminalsStore extends EventsStore {

  getTerminal(id: string): TerminalRow | null {
    const r = this.s.terminal.get(id);
    return r ? terminalFromRow(r, this.s.terminalGroups.all(id)) : null;
  }

  getTerminalByDeviceId(deviceId: number): TerminalRow | null {
    const r = this.s.terminalByDevice.get(deviceId);
    return r ? terminalFromRow(r, this.s.terminalGroups.all(r.id)) : null;
  }

  listTerminals(): TerminalRow[] {
    const groups = new Map<string, number[]>();
    for (const g of this.s.allTerminalGroups.all()) {
      const l = groups.get(g.terminal_id);
      if (l) l.push(g.group_id);
      else groups.set(g.terminal_id, [g.group_id]);
    }
    return this.s.terminals.all().map((r) => terminalFromRow(r, groups.get(r.id) ?? []));
  }

  /** Creates the terminal, or updates the fields given for an existing one. */
  upsertTerminal(t: TerminalInput): TerminalRow {
    return this.write('upsertTerminal', () => {
      const now = this.now();
      if (this.s.terminalExists.get(t.id) === undefined) this.s.insTerminal.run(t.id, t.direction, now, now);
      const { id, ...patch } = t;
      this.patchIn(id, patch, now);
      return this.getTerminal(id)!;
    });
  }

  /**
   * Records a terminal the server dials with where it came from: 'flags' (the
   * flag file, which says again how to dial it at every start) or 'api' (the
   * admin API: the pin and key are kept so a restart dials it again).
   */
  upsertDialTerminal(t: TerminalInput, dial: DialSettings): TerminalRow {
    return this.write('upsertDialTerminal', () => {
      this.upsertTerminal(t);
      const api = dial.addedBy === 'api';
      this.cached('UPDATE terminals SET added_by = ?, dial_pin = ?, dial_key = ? WHERE id = ?').run(dial.addedBy, api ? (dial.pin ?? null) : null, api ? (dial.key ?? null) : null, t.id);
      return this.getTerminal(t.id)!;
    });
  }

  /** Dial terminals by origin ('api': what a restart must dial again; null: recorded before origins were kept). */
  dialTerminalsAddedBy(addedBy: DialSettings['addedBy'] | null): (TerminalRow & { dialPin: string | null; dialKey: Buffer | null })[] {
    const rows = this.cached(`SELECT id, dial_pin, dial_key FROM terminals WHERE direction = 'dial' AND added_by IS ? ORDER BY id`).all(addedBy) as { id: string; dial_pin: string | null; dial_key: Buffer | null }[];
    if (rows.length === 0) return [];
    // one read of every terminal, not one per row (start-up reads this for all of them)
    const all = new Map(this.listTerminals().map((t) => [t.id, t]));
    return rows.map((r) => ({ ...all.get(r.id)!, dialPin: r.dial_pin, dialKey: r.dial_key }));
  }

  /** Updates the fields given. Returns null for an unknown terminal. */
  updateTerminal(id: string, patch: TerminalPatch): TerminalRow | null {
    return this.write('updateTerminal', () => {
      if (this.s.terminalExists.get(id) === undefined) return null;
      this.patchIn(id, patch, this.now());
      return this.getTerminal(id)!;
    });
  }

  protected patchIn(id: string, patch: TerminalPatch, now: number): void {
    const cols: string[] = [];
    const vals: unknown[] = [];
    for (const [key, col] of Object.entries(TERMINAL_COLUMNS) as [keyof typeof TERMINAL_COLUMNS, string][]) {
      if (!(key in patch) || patch[key] === undefined) continue;
      cols.push(`${col} = ?`);
      const v = patch[key];
      vals.push(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    }
    cols.push('updated_at = ?');
    vals.push(now);
    this.cached(`UPDATE terminals SET ${cols.join(', ')} WHERE id = ?`).run(...vals, id);
    if (patch.accessGroups !== undefined) {
      this.s.delTerminalGroups.run(id);
      for (const g of patch.accessGroups) this.s.insTerminalGroup.run(id, g);
    }
  }

  /** Removes the terminal with its outbox rows (its push failures are kept for the record). */
  deleteTerminal(id: string): boolean {
    return this.write('deleteTerminal', () => {
      this.owed?.delete(id); // its outbox rows go by cascade
      return this.s.delTerminal.run(id).changes > 0;
    });
  }

  /** The terminal's log position; null for an unknown terminal. */
  getCursor(terminalId: string): LogPosition | null {
    const r = this.s.position.get(terminalId);
    return r ? { logEpoch: r.log_epoch, cursor: r.cursor } : null;
  }

  /**
   * Sets the cursor (and the epoch when given), also backwards: for a log reset
   * or a new epoch. Use advanceCursor for normal progress.
   */
  setCursor(terminalId: string, cursor: number, logEpoch?: number | null): void {
    this.write('setCursor', () => {
      const r =
        logEpoch === undefined
          ? this.s.setCursor.run(cursor, this.now(), terminalId)
          : this.s.setPosition.run(logEpoch, cursor, this.now(), terminalId);
      if (r.changes === 0) throw new StoreWriteError('CONSTRAINT', 'setCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    });
  }

  /** Moves the cursor forward to `cursor` (never back). Returns true when it moved. */
  advanceCursor(terminalId: string, cursor: number): boolean {
    return this.write('advanceCursor', () => this.advanceIn(terminalId, cursor, this.now()));
  }

  protected advanceIn(terminalId: string, cursor: number, now: number): boolean {
    if (this.s.advanceCursor.run(cursor, now, terminalId, cursor).changes > 0) return true;
    if (this.s.terminalExists.get(terminalId) === undefined) {
      throw new StoreWriteError('CONSTRAINT', 'advanceCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    }
    return false;
  }

  /** the terminal's feed cursor; null for an unknown terminal */
  getFeedCursor(terminalId: string): number | null {
    return this.feed.cursor(terminalId);
  }

  /** sets the terminal's feed cursor (also backwards) */
  setFeedCursor(terminalId: string, seq: number): void {
    this.write('setFeedCursor', () => {
      if (!this.feed.setCursor(terminalId, seq)) throw new StoreWriteError('CONSTRAINT', 'setFeedCursor', `unknown terminal ${JSON.stringify(terminalId)}`);
    });
  }

  /** moves the terminal's feed cursor forward to `seq` (never back); true when it moved */
  advanceFeedCursor(terminalId: string, seq: number): boolean {
    return this.write('advanceFeedCursor', () => this.feed.advanceCursor(terminalId, seq));
  }
}
