// Persistence of the terminals' stores (`--state DIR`): one file per terminal,
// `terminal-<deviceId>.state`, written atomically (temp file + rename) a short
// while after a change (debounced), and once more when the simulator closes.
//
// File layout (little-endian):
//   magic "TSSIMST1" (8 bytes)
//   u32 n, then n bytes of JSON: { deviceId, logEpoch, lastEventId, users, events, savedAt }
//   users  x (u32 length, user record as PROTOCOL.md 6.2 with every part, flag and version kept)
//   events x 48-byte event records (PROTOCOL.md 6.1), oldest first
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { EVENT_RECORD_SIZE, INFO_MASK_ALL_PARTS, decodeEvents, decodeUser, encodeEvents, encodeUser } from '../codec/index.js';
import type { UserRecord } from '../model/user.js';
import type { SimTerminal } from './terminal.js';

const MAGIC = Buffer.from('TSSIMST1', 'ascii');
export const DEFAULT_STATE_DEBOUNCE_MS = 250;

interface StateHead {
  deviceId: number;
  logEpoch: number;
  lastEventId: number;
  users: number;
  events: number;
  savedAt: string;
}

export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateError';
  }
}

export function stateFileName(deviceId: number): string {
  return `terminal-${deviceId}.state`;
}

/** Serializes a terminal's users and log. */
export function encodeTerminalState(t: SimTerminal): Buffer {
  const users: Buffer[] = [];
  for (const u of t.storedUsers()) users.push(encodeUser(u, INFO_MASK_ALL_PARTS));
  const events = t.ring.all();
  const head: StateHead = {
    deviceId: t.deviceId,
    logEpoch: t.ring.logEpoch,
    lastEventId: t.ring.lastEventId,
    users: users.length,
    events: events.length,
    savedAt: new Date().toISOString(),
  };
  const json = Buffer.from(JSON.stringify(head), 'utf8');
  const parts: Buffer[] = [MAGIC, u32(json.length), json];
  for (const rec of users) parts.push(u32(rec.length), rec);
  parts.push(encodeEvents(events));
  return Buffer.concat(parts);
}

/** Restores a terminal from a state file's bytes. Throws StateError when the file is not usable. */
export function decodeTerminalState(buf: Buffer, t: SimTerminal, file = 'state file'): void {
  try {
    if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC)) throw new Error('not a termsync simulator state file');
    const n = buf.readUInt32LE(8);
    const head = JSON.parse(buf.toString('utf8', 12, 12 + n)) as StateHead;
    if (head.deviceId !== t.deviceId) throw new Error(`it belongs to device ${head.deviceId}, not ${t.deviceId}`);
    let p = 12 + n;
    const users: UserRecord[] = [];
    for (let i = 0; i < head.users; i++) {
      const len = buf.readUInt32LE(p);
      users.push(decodeUser(buf.subarray(p + 4, p + 4 + len)).user);
      p += 4 + len;
    }
    if (p + head.events * EVENT_RECORD_SIZE !== buf.length) throw new Error('its length does not match its contents');
    const events = decodeEvents(buf, p, head.events);
    t.restore(users, head.logEpoch, head.lastEventId, events);
  } catch (e) {
    throw new StateError(`cannot load ${file}: ${(e as Error).message}`);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/** Keeps one terminal's state file up to date. */
export class TerminalStateFile {
  readonly file: string;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private readonly onChanged = () => this.schedule();

  constructor(
    private readonly terminal: SimTerminal,
    dir: string,
    private readonly debounceMs = DEFAULT_STATE_DEBOUNCE_MS,
    private readonly log?: Logger,
  ) {
    this.file = path.join(dir, stateFileName(terminal.deviceId));
  }

  /** Loads the file if it exists (returns whether it did) and starts watching for changes. */
  load(): boolean {
    let loaded = false;
    let buf: Buffer | undefined;
    try {
      buf = readFileSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StateError(`cannot read ${this.file}: ${(e as Error).message}`);
    }
    if (buf) {
      decodeTerminalState(buf, this.terminal, this.file);
      loaded = true;
    }
    this.terminal.on('changed', this.onChanged);
    return loaded;
  }

  private schedule(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.debounceMs);
    this.timer.unref();
  }

  /** Writes the state now if it changed since the last write. */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const tmp = `${this.file}.tmp-${process.pid}`;
      try {
        await writeFile(tmp, encodeTerminalState(this.terminal));
        await rename(tmp, this.file);
      } catch (e) {
        this.dirty = true;
        this.log?.error({ err: (e as Error).message, file: this.file }, 'cannot save the terminal state');
      }
    });
    return this.writing;
  }

  /** Stops watching and writes any pending change. */
  async close(): Promise<void> {
    this.terminal.off('changed', this.onChanged);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/** Creates the state directory (synchronously, at start-up). */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new StateError(`cannot create the state directory ${dir}: ${(e as Error).message}`);
  }
}

/** Writes a state file synchronously (used by tests and tools). */
export function writeStateSync(t: SimTerminal, dir: string): void {
  const file = path.join(dir, stateFileName(t.deviceId));
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, encodeTerminalState(t));
  renameSync(tmp, file);
}
