// Change detection for ZK terminals. The protocol announces a new user
// (EF_ENROLLUSER) but says nothing when a user is edited or deleted on the
// terminal, so the driver reads the user table (and templates) on a poll and at
// every (re)connect, and diffs it against what it last saw from that terminal.
//
// A digest per user covers the record without its uid (the uid is a per-terminal
// slot number) and the user's templates. Writes termsync made itself are
// remembered per terminal and user: when the next read shows exactly what was
// written (or the user gone after a delete), it is not reported as a device
// change, so a push never echoes back as an edit.
import { createHash } from 'node:crypto';
import { USER_RECORD_72 } from './constants.js';
import { encodeUserRecord, type ZkRecordSize, type ZkTemplate, type ZkUser } from './records.js';

/** The digest of one user as a terminal holds it: record minus uid, plus templates by finger. */
export function zkUserDigest(u: ZkUser, templates: ZkTemplate[], size: ZkRecordSize = USER_RECORD_72): string {
  const h = createHash('sha256');
  // the record as a writer would send it, without the carried unknown bytes or the uid
  const rec = encodeUserRecord({ ...u, uid: 0, raw: undefined }, size);
  h.update(rec);
  for (const t of [...templates].filter((x) => x.uid === u.uid).sort((a, b) => a.finger - b.finger)) {
    const head = Buffer.from([t.finger, t.flag, 0, 0]);
    head.writeUInt16LE(t.template.length, 2);
    h.update(head).update(t.template);
  }
  return h.digest('hex');
}

export interface ZkTableSnapshot {
  users: ZkUser[];
  templates: ZkTemplate[];
  recordSize?: ZkRecordSize;
}

export interface ZkDiff {
  /** user IDs new or changed on the terminal since the last read (echoes of our writes left out) */
  changed: string[];
  /** user IDs gone from the terminal since the last read (our own deletes left out) */
  deleted: string[];
  /** true when this terminal had no earlier read: every user is reported as changed */
  firstRead: boolean;
  /** writes of ours that the read confirmed (no longer pending) */
  confirmed: string[];
}

/** null = we deleted the user */
type Pending = string | null;

interface TerminalMemory {
  seen: Map<string, string>;
  pending: Map<string, Pending>;
}

export class ZkChangeTracker {
  private readonly terminals = new Map<string, TerminalMemory>();

  private mem(terminal: string): TerminalMemory {
    let m = this.terminals.get(terminal);
    if (!m) {
      m = { seen: new Map(), pending: new Map() };
      this.terminals.set(terminal, m);
    }
    return m;
  }

  /** Whether a read of this terminal was diffed before. */
  hasBaseline(terminal: string): boolean {
    return this.baselines.has(terminal);
  }

  private readonly baselines = new Set<string>();

  /** Remembers that termsync wrote this user to the terminal (as `digest`); the next read that shows it is not a device change. */
  noteWritten(terminal: string, userId: string, digest: string): void {
    this.mem(terminal).pending.set(userId, digest);
  }

  /** Remembers that termsync deleted this user on the terminal. */
  noteDeleted(terminal: string, userId: string): void {
    this.mem(terminal).pending.set(userId, null);
  }

  /** Forgets a write that failed (it never reached the terminal). */
  forgetWrite(terminal: string, userId: string): void {
    this.terminals.get(terminal)?.pending.delete(userId);
  }

  /** Diffs a fresh read of the terminal's table against the last one and remembers it. */
  observe(terminal: string, snap: ZkTableSnapshot): ZkDiff {
    const m = this.mem(terminal);
    const firstRead = !this.baselines.has(terminal);
    const now = new Map<string, string>();
    const byUid = new Map<number, ZkTemplate[]>();
    for (const t of snap.templates) {
      const l = byUid.get(t.uid);
      if (l) l.push(t);
      else byUid.set(t.uid, [t]);
    }
    for (const u of snap.users) now.set(u.userId, zkUserDigest(u, byUid.get(u.uid) ?? [], snap.recordSize));
    const changed: string[] = [];
    const deleted: string[] = [];
    const confirmed: string[] = [];
    for (const [id, d] of now) {
      const p = m.pending.get(id);
      if (p !== undefined) {
        if (p === d) {
          m.pending.delete(id);
          confirmed.push(id);
          continue;
        }
        // something else than what we wrote: the device (or a person at it) changed it
        m.pending.delete(id);
      }
      if (firstRead || m.seen.get(id) !== d) changed.push(id);
    }
    for (const id of m.seen.keys()) {
      if (now.has(id)) continue;
      if (m.pending.get(id) === null) {
        m.pending.delete(id);
        confirmed.push(id);
        continue;
      }
      deleted.push(id);
    }
    // a delete of ours for a user this terminal never showed us is confirmed by its absence too
    for (const [id, p] of [...m.pending]) {
      if (p === null && !now.has(id)) {
        m.pending.delete(id);
        if (!confirmed.includes(id)) confirmed.push(id);
      }
    }
    m.seen = now;
    this.baselines.add(terminal);
    return { changed, deleted, firstRead, confirmed };
  }

  /** The digests last seen on a terminal (for persistence or inspection). */
  lastSeen(terminal: string): ReadonlyMap<string, string> {
    return this.terminals.get(terminal)?.seen ?? new Map();
  }

  /** Restores what was last seen (from persistence): the next read diffs against it. */
  restore(terminal: string, seen: Iterable<[string, string]>): void {
    this.mem(terminal).seen = new Map(seen);
    this.baselines.add(terminal);
  }

  /** Writes still waiting for a read to confirm them. */
  pendingCount(terminal: string): number {
    return this.terminals.get(terminal)?.pending.size ?? 0;
  }
}
