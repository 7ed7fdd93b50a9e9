// Where the simulated terminals live during a replay: in this process (small
// runs, tests) or split over child processes (the full burst: fifty terminals
// each holding ten thousand users are a gigabyte of heap and a core of work,
// more than one event loop keeps up with next to the harness). Either way the
// replayer sees the same interface: act on terminal N, hear every log event
// with the time it was appended, count the commands served, compare every
// terminal with the server's database.
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Command, EventCode } from '../src/codec/index.js';
import type { EventRecord } from '../src/model/event.js';
import type { UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import type { SimTerminal, UserPatch } from '../src/sim/terminal.js';
import type { TimingModel } from '../src/sim/timing.js';
import { Store } from '../src/store/store.js';
import { usersEqual } from '../src/model/merge.js';
import type { Action } from './scenario.js';

/** A user-change event as a terminal appended it; `at` is epoch ms (performance.timeOrigin-based, sub-ms). */
export interface SimEvent {
  term: number;
  at: number;
  code: number;
  param: number;
  userId: string;
}

export interface CommandCounts {
  counts: Record<string, number>;
  /** user records received in PUT_USERS */
  records: number;
}

export interface SimHost {
  readonly terminals: number;
  /** listening port of terminal 1..N, in order */
  ports(): number[];
  perform(term: number, a: Action): Promise<void>;
  onEvents(fn: (batch: SimEvent[]) => void): void;
  /** cumulative since the host started */
  commandCounts(): Promise<CommandCounts>;
  /** the first few differences between the terminals and the server's records (empty: converged) */
  verify(db: string, skip: number[]): Promise<string[]>;
  close(): Promise<void>;
}

const USER_EVENTS = new Set<number>([EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_PARTIAL_UPDATE_SUCCESS]);

export const epochNow = (): number => performance.timeOrigin + performance.now();

/** The patch that makes a terminal's copy of a user equal to `u` (for 'edit-to'). */
export function patchTo(u: UserRecord): UserPatch {
  return {
    name: u.name,
    phrase: u.phrase,
    startTime: u.setting.startTime,
    endTime: u.setting.endTime,
    cards: u.cards.map((c) => ({ type: c.type, data: c.data.toString('hex') })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag, templates: [f.templates[0].toString('hex'), f.templates[1].toString('hex')] })),
    faces: u.faces.map((f) => ({ index: f.index, flag: f.flag, data: f.data.toString('hex') })),
    accessGroups: u.accessGroups,
    pinHash: u.pinHash.length ? u.pinHash.toString('hex') : '',
  };
}

export async function performOn(t: SimTerminal, a: Action): Promise<void> {
  switch (a.op) {
    case 'enroll':
      await t.enroll(a.user);
      return;
    case 'edit':
      await t.edit(a.userId, a.patch);
      return;
    case 'edit-to':
      if (t.getUser(a.user.id)) await t.edit(a.user.id, patchTo(a.user));
      else await t.enroll(a.user);
      return;
    case 'offline':
      t.refuse(2 ** 31 - 1); // until it comes back (the longest timer Node allows)
      t.dropConnections();
      return;
    case 'online':
      t.refuse(0);
      return;
    case 'barrier':
      return;
  }
}

/** Compares terminals (global index = offset + local index) with the server's users. */
export function verifyTerminals(terminals: SimTerminal[], offset: number, db: string, skip: Set<number>, limit = 5): string[] {
  const store = Store.open(db, { readonly: true });
  try {
    const problems: string[] = [];
    const server: UserRecord[] = [];
    for (let after = ''; ; ) {
      const page = store.listUsers({ after, limit: 5000 });
      if (page.length === 0) break;
      server.push(...page);
      after = page[page.length - 1].id;
    }
    for (const t of terminals) {
      const term = offset + t.index;
      if (skip.has(term)) continue;
      const held = new Map<string, UserRecord>();
      for (const u of t.storedUsers()) held.set(u.id, u);
      for (const u of server) {
        const h = held.get(u.id);
        if (!h) problems.push(`terminal ${term} lacks user ${u.id}`);
        else if (!usersEqual(h, u)) problems.push(`terminal ${term} holds user ${u.id} different from the server`);
        if (problems.length >= limit) return problems;
      }
    }
    return problems;
  } finally {
    store.close();
  }
}

/** Hooks a simulator's terminals: events out (batched per tick), commands counted. */
export function instrument(sim: Simulator, offset: number, emit: (batch: SimEvent[]) => void): { counts: CommandCounts } {
  const counts: CommandCounts = { counts: {}, records: 0 };
  let pending: SimEvent[] = [];
  const flush = () => {
    const b = pending;
    pending = [];
    emit(b);
  };
  for (const t of sim.terminals) {
    const term = offset + t.index;
    t.on('events', (events: EventRecord[]) => {
      const at = epochNow();
      for (const e of events) {
        if (!USER_EVENTS.has(e.code) || !e.userId) continue;
        if (pending.length === 0) setImmediate(flush);
        pending.push({ term, at, code: e.code, param: e.param, userId: e.userId });
      }
    });
    const orig = t.handle.bind(t);
    t.handle = (frame, hooks) => {
      const name = Command[frame.command] ?? `0x${frame.command.toString(16)}`;
      counts.counts[name] = (counts.counts[name] ?? 0) + 1;
      if (frame.command === Command.PUT_USERS && frame.payload.length >= 4) counts.records += frame.payload.readUInt16LE(2);
      return orig(frame, hooks);
    };
  }
  return { counts };
}

/** The simulator in this process. */
export async function startLocalHost(o: { terminals: number; timing?: Partial<TimingModel>; heartbeatSec?: number }): Promise<SimHost & { sim: Simulator }> {
  const sim = await Simulator.start({ terminals: o.terminals, commKey: DEV_COMM_KEY, timing: o.timing });
  const listeners: ((b: SimEvent[]) => void)[] = [];
  const { counts } = instrument(sim, 0, (b) => listeners.forEach((l) => l(b)));
  return {
    sim,
    terminals: o.terminals,
    ports: () => sim.ports(),
    perform: (term, a) => performOn(sim.terminal(term)!, a),
    onEvents: (fn) => void listeners.push(fn),
    commandCounts: async () => ({ counts: { ...counts.counts }, records: counts.records }),
    verify: async (db, skip) => verifyTerminals(sim.terminals, 0, db, new Set(skip)),
    close: () => sim.close(),
  };
}

const CHILD = fileURLToPath(new URL('./sim-child.ts', import.meta.url));

/** Terminals split over `processes` child processes (bench/sim-child.ts), terminal numbers kept. */
export interface ProcessHostOptions {
  terminals: number;
  processes: number;
  timing?: Partial<TimingModel>;
  /** every terminal holds users 0..population-1 of bench/population.ts (one shared copy per process) */
  population?: number;
  userCapacity?: number;
  /** node flags for the child processes, e.g. --max-old-space-size=4096 */
  nodeArgs?: string[];
}

/** Where a terminal's event log stands. */
export interface TerminalLog {
  term: number;
  logEpoch: number;
  lastEventId: number;
  users: number;
}

export async function startProcessHost(o: ProcessHostOptions): Promise<SimHost & { logs(): Promise<TerminalLog[]> }> {
  const parts: { child: ChildProcess; first: number; count: number; ports: number[] }[] = [];
  const listeners: ((b: SimEvent[]) => void)[] = [];
  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const per = Math.ceil(o.terminals / o.processes);
  const call = (child: ChildProcess, msg: Record<string, unknown>): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      child.send({ ...msg, id });
    });
  for (let first = 1; first <= o.terminals; first += per) {
    const count = Math.min(per, o.terminals - first + 1);
    const child = fork(CHILD, [], { execArgv: ['--import', 'tsx', ...(o.nodeArgs ?? [])], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', (m: any) => {
      if (m.type === 'events') listeners.forEach((l) => l(m.events));
      else if (m.type === 'reply') {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        if (m.error) w?.reject(new Error(m.error));
        else w?.resolve(m.value);
      }
    });
    const ports: number[] = await call(child, { type: 'start', first, count, timing: o.timing ?? null, population: o.population ?? 0, userCapacity: o.userCapacity ?? 0 });
    parts.push({ child, first, count, ports });
  }
  const partOf = (term: number) => parts.find((p) => term >= p.first && term < p.first + p.count)!;
  return {
    terminals: o.terminals,
    ports: () => parts.flatMap((p) => p.ports),
    perform: (term, a) => call(partOf(term).child, { type: 'perform', term, action: a }),
    onEvents: (fn) => void listeners.push(fn),
    async commandCounts() {
      const all: CommandCounts[] = await Promise.all(parts.map((p) => call(p.child, { type: 'counts' })));
      const out: CommandCounts = { counts: {}, records: 0 };
      for (const c of all) {
        out.records += c.records;
        for (const [k, v] of Object.entries(c.counts)) out.counts[k] = (out.counts[k] ?? 0) + v;
      }
      return out;
    },
    async logs() {
      const all: TerminalLog[][] = await Promise.all(parts.map((p) => call(p.child, { type: 'logs' })));
      return all.flat();
    },
    async verify(db, skip) {
      const all: string[][] = await Promise.all(parts.map((p) => call(p.child, { type: 'verify', db, skip })));
      return all.flat().slice(0, 5);
    },
    async close() {
      await Promise.all(
        parts.map(async (p) => {
          await call(p.child, { type: 'close' }).catch(() => {});
          p.child.disconnect();
        }),
      );
    },
  };
}
