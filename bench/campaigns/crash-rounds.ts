// Rounds of SIGKILL of the daemon in the middle of work, shared by
// test/fault-crash.test.ts (20 quick rounds) and bench/campaigns/crash.ts
// (100 rounds, `termsync run` with server writes through the admin API).
//
// One round: every terminal enrolls a burst of new users (logged on the
// device, so the daemon must pull them), while the server writes (new users,
// edits of existing users, deletes); the daemon gets SIGKILL at a seeded
// random delay; the round's writes finish (those the dead daemon could not
// answer count as "no promise made"); the daemon restarts on the same file.
// Then, within the convergence timeout, checked:
// - lost: a user a terminal reported or an acknowledged server write is not on
//   the server as written (an unacknowledged write may or may not have landed);
// - resurrected: a user whose delete was acknowledged is back;
// - unconverged: a terminal does not hold exactly the server's users (every
//   server user equal to the server's record, and no user the server lacks);
// - the outbox is empty and PRAGMA integrity_check says ok.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { userFromJson, type UserRecord } from '../../src/model/user.js';
import { usersEqual } from '../../src/model/merge.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { Simulator } from '../../src/sim/simulator.js';
import { prng, readServer } from '../../test/helpers/faults.js';
import type { CampaignDaemon, Launcher } from './daemons.js';

export interface CrashRoundsOptions {
  rounds: number;
  seed: number;
  terminals: number;
  /** new users enrolled on each terminal per round */
  perTerminal: number;
  /** server writes per round (put new, edit, delete), issued one after the other */
  serverWrites: number;
  /** the kill lands at a uniform random delay in [0, maxKillDelayMs) after the round starts */
  maxKillDelayMs: number;
  convergeTimeoutMs: number;
  launch: Launcher;
  /** called after every round with its result (progress output) */
  onRound?: (r: RoundResult) => void;
  /** stop at the first failed round */
  stopOnFailure?: boolean;
}

export interface RoundResult {
  round: number;
  killDelayMs: number;
  killSignal: string | null;
  /** the daemon had exited before we killed it */
  unexpectedExit: boolean;
  /** server writes attempted / acknowledged before the kill */
  writes: { put: number; edit: number; delete: number; acked: number; unacked: number };
  /** ms from the restart to convergence (or to the timeout) */
  convergeMs: number;
  restartMs: number;
  converged: boolean;
  lost: string[];
  differs: string[];
  resurrected: string[];
  unknownOnServer: string[];
  unconverged: { terminal: number; missing: number; differ: number; extra: number }[];
  outbox: number;
  integrity: string;
  serverUsers: number;
}

export interface CrashRoundsResult {
  rounds: RoundResult[];
  reported: number;
  serverWritesAcked: number;
  serverWritesUnacked: number;
  failedRounds: number[];
}

export function roundFailed(r: RoundResult): boolean {
  return (
    r.unexpectedExit ||
    r.lost.length > 0 ||
    r.differs.length > 0 ||
    r.resurrected.length > 0 ||
    r.unknownOnServer.length > 0 ||
    r.unconverged.length > 0 ||
    r.outbox !== 0 ||
    r.integrity !== 'ok'
  );
}

type Expected = UserRecord | null; // null: deleted

function userJson(id: string, n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    name: `Person ${id}`,
    pin: String(1000 + (n % 9000)),
    cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }],
    accessGroups: [1 + (n % 4)],
    ...extra,
  };
}

function same(a: Expected, b: Expected): boolean {
  if (a === null || b === null) return a === b;
  return usersEqual(a, b);
}

interface TerminalDiff {
  terminal: number;
  missing: number;
  differ: number;
  extra: number;
}

function terminalDiffs(sim: Simulator, server: Map<string, UserRecord>): TerminalDiff[] {
  const out: TerminalDiff[] = [];
  for (const t of sim.terminals) {
    let missing = 0;
    let differ = 0;
    let extra = 0;
    for (const u of server.values()) {
      const held = t.getUser(u.id);
      if (!held) missing++;
      else if (!usersEqual(held, u)) differ++;
    }
    for (const u of t.listUsers()) if (!server.has(u.id)) extra++;
    if (missing || differ || extra) out.push({ terminal: t.index, missing, differ, extra });
  }
  return out;
}

export async function runCrashRounds(o: CrashRoundsOptions): Promise<CrashRoundsResult> {
  const rnd = prng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), 'termsync-crash-'));
  const db = join(dir, 'termsync.db');
  // a little device latency so a burst takes tens of milliseconds and the kill lands inside it
  const sim = await Simulator.start({
    terminals: o.terminals,
    commKey: DEV_COMM_KEY,
    userCapacity: 100_000,
    timing: { perCommandMs: 1, perUserWriteMs: 1, perUserReadMs: 0, perUserListedMs: 0, perEventReadMs: 0 },
  });
  const ports = sim.ports();
  const terminals = sim.terminals.map((t, i) => ({ deviceId: t.deviceId, port: ports[i] }));
  let daemon: CampaignDaemon | null = null;
  // what the server must hold at the next check: id -> the states allowed
  // (one after an acknowledged write; the old and the new ones after a write
  // the daemon died before answering)
  const allowed = new Map<string, Expected[]>();
  // the server's state at the last check
  const settled = new Map<string, UserRecord>();
  const result: CrashRoundsResult = { rounds: [], reported: 0, serverWritesAcked: 0, serverWritesUnacked: 0, failedRounds: [] };
  let serial = 0;
  try {
    daemon = await o.launch({ db, terminals });
    for (let round = 0; round < o.rounds; round++) {
      const d: CampaignDaemon = daemon;
      const unexpectedExit = !d.running();
      const writes = { put: 0, edit: 0, delete: 0, acked: 0, unacked: 0 };
      let killed = false;

      const burst = Promise.all(
        sim.terminals.map(async (t) => {
          for (let k = 0; k < o.perTerminal; k++) {
            const u = userFromJson(userJson(`r${round}-t${t.index}-${k}`, serial++));
            await t.enroll(u);
            allowed.set(u.id, [u]);
            result.reported++;
          }
        }),
      );

      // server writes on users settled at the last check, and new ones
      const existing = [...settled.keys()];
      const plan: { op: 'put' | 'edit' | 'delete'; id: string; json?: Record<string, unknown> }[] = [];
      const touched = new Set<string>();
      for (let k = 0; k < o.serverWrites; k++) {
        const r = rnd.next();
        if (r < 0.4 || existing.length < 10) {
          plan.push({ op: 'put', id: `s${round}-${k}`, json: userJson(`s${round}-${k}`, serial++, { accessGroups: [k + 1] }) });
          continue;
        }
        let id = existing[rnd.int(existing.length)];
        for (let tries = 0; touched.has(id) && tries < 5; tries++) id = existing[rnd.int(existing.length)];
        if (touched.has(id)) continue;
        touched.add(id);
        if (r < 0.75) plan.push({ op: 'edit', id, json: userJson(id, serial++, { name: `Edited ${id} r${round}`, accessGroups: [1 + rnd.int(4)] }) });
        else plan.push({ op: 'delete', id });
      }
      const serverWrites = (async () => {
        for (const w of plan) {
          if (killed || !d.running()) break;
          writes[w.op]++;
          const next: Expected = w.op === 'delete' ? null : userFromJson(w.json!);
          try {
            if (w.op === 'delete') await d.deleteUser(w.id);
            else await d.putUser(w.json!);
            allowed.set(w.id, [next]);
            writes.acked++;
          } catch {
            // killed before it answered: the old state or the new one may be on the server
            const before = allowed.get(w.id) ?? [settled.get(w.id) ?? null];
            allowed.set(w.id, [...before, next]);
            writes.unacked++;
          }
        }
      })();

      const killDelayMs = rnd.int(o.maxKillDelayMs);
      await sleep(killDelayMs);
      killed = true;
      d.kill('SIGKILL');
      const exit = await d.exited;
      await Promise.all([burst, serverWrites]);
      result.serverWritesAcked += writes.acked;
      result.serverWritesUnacked += writes.unacked;

      const restartAt = Date.now();
      daemon = await o.launch({ db, terminals });
      const restartMs = Date.now() - restartAt;

      // converged: every allowed state met, outbox empty, every terminal exactly the server.
      // The full comparison reads every user (thousands after many rounds): it runs
      // only once the outbox is empty (a cheap count), so the checking does not
      // starve the simulated terminals that share this process.
      const t0 = Date.now();
      let converged = false;
      const outboxDb = new Database(db, { readonly: true, fileMustExist: true });
      const outboxCount = outboxDb.prepare('SELECT count(*) FROM outbox').pluck();
      try {
        for (;;) {
          const empty = (outboxCount.get() as number) === 0;
          if (empty) {
            const view = readServer(db, { integrity: false });
            const statesOk = [...allowed].every(([id, states]) => states.some((s) => same(s, view.users.get(id) ?? null)));
            if (statesOk && view.outbox === 0 && terminalDiffs(sim, view.users).length === 0) {
              converged = true;
              break;
            }
          }
          if (Date.now() - t0 > o.convergeTimeoutMs) break;
          // after a full comparison that failed (the daemon has not read the terminals' logs yet), wait longer
          await sleep(empty ? 200 : 50);
        }
      } finally {
        outboxDb.close();
      }
      const convergeMs = Date.now() - t0;
      const view = readServer(db);

      const res: RoundResult = {
        round,
        killDelayMs,
        killSignal: exit.signal,
        unexpectedExit,
        writes,
        convergeMs,
        restartMs,
        converged,
        lost: [],
        differs: [],
        resurrected: [],
        unknownOnServer: [],
        unconverged: terminalDiffs(sim, view.users),
        outbox: view.outbox,
        integrity: view.integrity,
        serverUsers: view.users.size,
      };
      for (const [id, states] of allowed) {
        const s = view.users.get(id) ?? null;
        if (states.some((x) => same(x, s))) continue;
        if (s === null) res.lost.push(id);
        else if (states.every((x) => x === null)) res.resurrected.push(id);
        else res.differs.push(id);
      }
      for (const id of view.users.keys()) if (!allowed.has(id) && !settled.has(id)) res.unknownOnServer.push(id);
      // the next round starts from what the server holds now
      settled.clear();
      for (const [id, u] of view.users) settled.set(id, u);
      allowed.clear();
      for (const [id, u] of settled) allowed.set(id, [u]);

      result.rounds.push(res);
      o.onRound?.(res);
      if (roundFailed(res)) {
        result.failedRounds.push(round);
        if (o.stopOnFailure) break;
      }
    }
  } finally {
    daemon?.kill('SIGKILL');
    if (daemon) await daemon.exited;
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}
