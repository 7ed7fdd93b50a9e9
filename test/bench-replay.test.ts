// The replay harness itself: the device-bound computation, the naive baseline,
// and the recorder -> fixture -> scenario -> replay round trip, on tiny
// scenarios (real simulator, real daemon in its own process, real SQLite).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deviceBound } from '../bench/bound.js';
import { recordScenario } from '../bench/fixtures.js';
import { runNaive } from '../bench/naive.js';
import { readRecording, scenarioFromRecording } from '../bench/recorder.js';
import { replay } from '../bench/replay.js';
import { generate, makeUser, prng, type Scenario } from '../bench/scenario.js';
import { startBenchSite } from '../bench/site.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { Store } from '../src/store/store.js';
import { usersEqual } from '../src/model/merge.js';

const timing = { perCommandMs: 2, perUserWriteMs: 3, perUserReadMs: 1, perUserListedMs: 0, perEventReadMs: 0 };
const dir = mkdtempSync(join(tmpdir(), 'termsync-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function enrollments(terminals: number, plan: [term: number, t: number][]): Scenario {
  const rand = prng(1);
  return {
    name: 'tiny',
    title: 'tiny',
    terminals,
    actions: plan.map(([term, t], k) => ({ t, term, op: 'enroll' as const, user: makeUser(`u${k}`, rand, { cards: 1, fingers: 0, pin: false }) })),
    source: {},
  };
}

describe('device-bound limit', () => {
  it('is the busiest terminal: its writes, each no earlier than the enrollment it carries', () => {
    // terminal 1 enrolls three users back to back (5 ms each: done at 5, 10, 15 ms);
    // terminal 2 must write all three: the last cannot start before 15 ms -> 15 + 3 + 2 = 20 ms
    const s = enrollments(2, [[1, 0], [1, 0], [1, 0]]);
    const b = deviceBound(s, timing, 200, 'max');
    expect(b.perTerminalMs).toEqual([15, 20]);
    expect(b.boundMs).toBe(20);
    expect(b.busiestTerminal).toBe(2);
    expect(b.writesOwed).toBe(3);
  });

  it('counts one command per batch of writes, and own enrollments as device work', () => {
    // both terminals enroll two users each; each owes the other two writes
    const s = enrollments(2, [[1, 0], [2, 0], [1, 0], [2, 0]]);
    // batch of 1: r=0 -> 2 enrollments (10) + 2 writes (6) + 2 commands (4) = 20
    expect(deviceBound(s, timing, 1, 'max').boundMs).toBe(20);
    // batch of 200: 10 + 6 + 2 = 18
    expect(deviceBound(s, timing, 200, 'max').boundMs).toBe(18);
  });

  it('releases writes owed to an offline terminal when it comes back', () => {
    const s = enrollments(2, [[1, 0], [1, 0], [1, 0]]);
    s.actions.unshift({ t: 0, term: 2, op: 'offline' });
    s.actions.push({ t: 100, term: 2, op: 'online' });
    expect(deviceBound(s, timing, 200, 1).boundMs).toBe(100 + 3 * 3 + 2);
  });
});

describe('naive baseline', () => {
  it('writes every enrolled user to every other terminal, one request each', async () => {
    const sim = await Simulator.start({ terminals: 3, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    try {
      const s = enrollments(3, [[1, 0], [2, 0], [3, 0], [1, 0]]);
      const r = await runNaive(sim, s, DEV_COMM_KEY);
      expect(r.enrollments).toBe(4);
      expect(r.writes).toBe(8);
      expect(r.complete).toBe(true);
      for (const t of sim.terminals) expect(t.userCount).toBe(4);
    } finally {
      await sim.close();
    }
  });
});

describe('recorder and replayer', () => {
  it('a recorded scenario reads back as the same actions and replays to the same server records', async () => {
    const spec = { generator: 'offlineReturn' as const, seed: 5, params: { terminals: 3, users: 6, localUsers: 2, hours: 1 } };
    const generated = generate(spec);
    const file = join(dir, 'offline.frames.jsonl.gz');
    const rec = await recordScenario('offline-tiny', { spec, description: 'test', record: { speed: 3600 } }, file);
    expect(rec.converged).toBe(true);

    const { header, lines } = readRecording(file);
    expect(header.terminals).toBe(3);
    const back = scenarioFromRecording(header, lines);
    // the same people enrolled at the same terminals, with the same records
    const enrolls = (s: Scenario) =>
      s.actions.flatMap((a) => (a.op === 'enroll' ? [{ term: a.term, user: a.user }] : [])).sort((a, b) => a.user.id.localeCompare(b.user.id));
    const want = enrolls(generated);
    const got = enrolls(back);
    expect(got.map((x) => [x.term, x.user.id])).toEqual(want.map((x) => [x.term, x.user.id]));
    got.forEach((x, i) => expect(usersEqual(x.user, want[i].user)).toBe(true));
    // terminal 3 went offline and came back, and its own enrollments happened in between
    const ops3 = back.actions.filter((a) => a.term === 3).map((a) => a.op);
    expect(ops3[0]).toBe('offline');
    expect(ops3[ops3.length - 1]).toBe('online');
    expect(ops3.filter((o) => o === 'enroll')).toHaveLength(2);

    // replaying the recording converges to the same server records
    const site = await startBenchSite({ terminals: 3, timing: ZERO_TIMING });
    try {
      const r = await replay({ scenario: back, host: site.host, daemon: site.daemon, db: site.db, speed: 'max', timeoutMs: 60_000 });
      expect(r.problems).toEqual([]);
      expect(r.converged).toBe(true);
      expect(r.users).toBe(8);
      expect(r.latencyMs.count).toBeGreaterThan(0);
      const store = Store.open(site.db, { readonly: true });
      try {
        for (const { user } of want) expect(usersEqual(store.getUser(user.id)!, user)).toBe(true);
      } finally {
        store.close();
      }
    } finally {
      await site.close();
    }
  }, 60_000);

  it('edits on a terminal come back as the records they produced', async () => {
    const spec = { generator: 'editsCredentials' as const, seed: 6, params: { terminals: 3, users: 4 } };
    const file = join(dir, 'edits.frames.jsonl.gz');
    const rec = await recordScenario('edits-tiny', { spec, description: 'test', record: { speed: 'max' } }, file);
    expect(rec.converged).toBe(true);
    const { header, lines } = readRecording(file);
    const back = scenarioFromRecording(header, lines);
    const edits = back.actions.filter((a) => a.op === 'edit-to');
    const generatedEdits = generate(spec).actions.filter((a) => a.op === 'edit');
    expect(edits).toHaveLength(generatedEdits.length);
    // every user got a card (and a PIN) in the first round of edits
    for (let k = 1; k <= 4; k++) {
      const id = `C${String(k).padStart(5, '0')}`;
      expect(edits.some((a) => a.op === 'edit-to' && a.user.id === id && a.user.cards.length === 1)).toBe(true);
    }
  }, 60_000);
});
