// kill -9 of the daemon in the middle of bursts and server writes, at seeded
// random points, 20 rounds. The daemon is a real child process on a real
// SQLite file; the simulator stays in this process. After every restart every
// terminal must hold exactly the server's records, nothing a terminal reported
// (an enrollment it logged) or the server acknowledged (a put, an edit, a
// delete) may be missing or undone, the outbox must drain and PRAGMA
// integrity_check must say ok. The rounds themselves live in
// bench/campaigns/crash-rounds.ts, which the 100-round campaign
// (bench/campaigns/crash.ts) runs too.
import { describe, expect, it } from 'vitest';
import { runCrashRounds } from '../bench/campaigns/crash-rounds.js';
import { childDaemon } from '../bench/campaigns/daemons.js';

const SEED = 0x6b696c6c; // "kill"
const ROUNDS = 20;
const TERMINALS = 4;
const PER_TERMINAL = 10; // 40 enrollments per round
const SERVER_WRITES = 4;

describe('daemon killed with SIGKILL mid-burst', () => {
  it(`${ROUNDS} rounds (seed 0x${SEED.toString(16)}): nothing reported or acknowledged is lost, terminals converge, the database stays sound`, async () => {
    const r = await runCrashRounds({
      rounds: ROUNDS,
      seed: SEED,
      terminals: TERMINALS,
      perTerminal: PER_TERMINAL,
      serverWrites: SERVER_WRITES,
      maxKillDelayMs: 120,
      convergeTimeoutMs: 20_000,
      launch: childDaemon,
    });
    for (const round of r.rounds) {
      expect({
        round: round.round,
        killSignal: round.killSignal,
        unexpectedExit: round.unexpectedExit,
        lost: round.lost,
        differs: round.differs,
        resurrected: round.resurrected,
        unknownOnServer: round.unknownOnServer,
        integrity: round.integrity,
        outbox: round.outbox,
        unconverged: round.unconverged,
      }).toEqual({
        round: round.round,
        killSignal: 'SIGKILL',
        unexpectedExit: false,
        lost: [],
        differs: [],
        resurrected: [],
        unknownOnServer: [],
        integrity: 'ok',
        outbox: 0,
        unconverged: [],
      });
    }
    expect(r.rounds).toHaveLength(ROUNDS);
    expect(r.reported).toBe(ROUNDS * TERMINALS * PER_TERMINAL);
    // the server wrote while the daemon lived, and some writes were cut off by the kill
    expect(r.serverWritesAcked).toBeGreaterThan(ROUNDS);
    // the kills were spread over the burst, not all at its start
    expect(new Set(r.rounds.map((x) => Math.floor(x.killDelayMs / 30))).size).toBeGreaterThan(2);
    // edits and deletes of existing users happened, not only new users
    expect(r.rounds.some((x) => x.writes.edit > 0)).toBe(true);
    expect(r.rounds.some((x) => x.writes.delete > 0)).toBe(true);
  }, 150_000);
});
