// kill -9 of the daemon in the middle of bursts, at seeded random points, 20
// rounds. The daemon is a real child process on a real SQLite file; the
// simulator stays in this process. After every restart every terminal must hold
// the server's records, nothing a terminal reported (an enrollment it logged) or
// the server accepted (putUser answered) may be missing, the outbox must drain
// and PRAGMA integrity_check must say ok.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { userToJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { usersEqual } from '../src/model/merge.js';
import { spawnDaemon, type ChildHandle } from './helpers/child.js';
import { person, prng, readServer, unconvergedTerminals } from './helpers/faults.js';
import { waitFor } from './helpers/wait.js';

const SEED = 0x6b696c6c; // "kill"
const ROUNDS = 20;
const TERMINALS = 4;
const PER_TERMINAL = 10; // 40 enrollments per round
const SERVER_PUTS = 4;

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('daemon killed with SIGKILL mid-burst', () => {
  it(`${ROUNDS} rounds (seed 0x${SEED.toString(16)}): nothing reported is lost, terminals converge, the database stays sound`, async () => {
    const rnd = prng(SEED);
    const dir = mkdtempSync(join(tmpdir(), 'termsync-crash-'));
    const db = join(dir, 'termsync.db');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // a little device latency so a burst takes tens of milliseconds and the kill lands inside it
    const sim = await Simulator.start({ terminals: TERMINALS, commKey: DEV_COMM_KEY, timing: { perCommandMs: 1, perUserWriteMs: 1, perUserReadMs: 0, perUserListedMs: 0, perEventReadMs: 0 } });
    cleanups.push(() => sim.close());
    const ports = sim.ports();
    const opts = {
      db,
      commKey: DEV_COMM_KEY,
      terminals: ports.map((port, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port })),
      syncMode: 'all' as const,
      heartbeatSec: 2,
      requestTimeoutMs: 3000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      dbRetryMs: 50,
    };
    let daemon: ChildHandle<{ pid: number; ports: number[] }> = await spawnDaemon(opts);
    cleanups.push(() => daemon.kill('SIGKILL'));

    const reported = new Map<string, ReturnType<typeof person>>(); // enrolled on a terminal: the device's record
    const accepted = new Set<string>(); // putUser answered by the daemon
    const losses: string[] = [];
    const killDelays: number[] = [];
    let unexpectedExits = 0;

    for (let round = 0; round < ROUNDS; round++) {
      // the daemon we are about to kill must not have died on its own
      if (daemon.proc.exitCode !== null || daemon.proc.signalCode !== null) unexpectedExits++;
      const burst = Promise.all(
        sim.terminals.map(async (t) => {
          for (let k = 0; k < PER_TERMINAL; k++) {
            const u = person(`r${round}-t${t.index}-${k}`, { pin: String(1000 + k) });
            await t.enroll(u);
            reported.set(u.id, u);
          }
        }),
      );
      const puts = (async () => {
        for (let k = 0; k < SERVER_PUTS; k++) {
          const u = person(`s${round}-${k}`, { accessGroups: [k + 1] });
          try {
            await daemon.call('putUser', { user: userToJson(u) }, 3000);
            accepted.add(u.id);
          } catch {
            // killed before it answered: the server made no promise about it
          }
        }
      })();
      const delay = rnd.int(120);
      killDelays.push(delay);
      await new Promise((r) => setTimeout(r, delay));
      daemon.kill('SIGKILL');
      const exit = await daemon.exited;
      expect(exit.signal).toBe('SIGKILL');
      await Promise.all([burst, puts]);
      daemon = await spawnDaemon(opts);

      let view = readServer(db, { integrity: false });
      await waitFor(
        () => {
          view = readServer(db, { integrity: false });
          const complete = [...reported.keys(), ...accepted].every((id) => view.users.has(id));
          return complete && view.outbox === 0 && unconvergedTerminals(sim, view.users.values()).length === 0;
        },
        { timeoutMs: 20_000, intervalMs: 50, message: `round ${round}: terminals did not converge after the restart` },
      ).catch(() => {});
      view = readServer(db);
      for (const id of [...reported.keys(), ...accepted]) if (!view.users.has(id)) losses.push(id);
      // what the terminal reported arrived as the terminal had it (new users: nothing to merge with)
      for (const [id, u] of reported) {
        const s = view.users.get(id);
        if (s && !usersEqual(s, u)) losses.push(`${id} (differs)`);
      }
      expect({ round, losses, integrity: view.integrity }).toEqual({ round, losses: [], integrity: 'ok' });
      expect({ round, outbox: view.outbox, unconverged: unconvergedTerminals(sim, view.users.values()) }).toEqual({ round, outbox: 0, unconverged: [] });
    }
    expect(unexpectedExits).toBe(0);
    expect(reported.size).toBe(ROUNDS * TERMINALS * PER_TERMINAL);
    // the kills were spread over the burst, not all at its start
    expect(new Set(killDelays.map((d) => Math.floor(d / 30))).size).toBeGreaterThan(2);
  }, 90_000);
});
