// The event ring on its own, persistence across restarts (--state), and the
// scenario mode.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventCode, UserFlag, type UserRecord } from '../src/codec/index.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { EventRing } from '../src/sim/ring.js';
import { runScenario } from '../src/sim/scenario.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SimClient } from './helpers/sim-client.js';

const key = DEV_COMM_KEY;
let sim: Simulator | undefined;
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  await sim?.close();
  sim = undefined;
  for (const f of cleanups.splice(0).reverse()) await f();
});

const ev = (userId = '') => ({ dateTime: 0, deviceId: 1, userId, code: EventCode.USER_ENROLL_SUCCESS, param: 1, flags: 0 });

describe('EventRing', () => {
  it('numbers events from 1, overwrites the oldest when full, and pages after an ID', () => {
    const r = new EventRing(4);
    expect([r.firstEventId, r.lastEventId, r.size]).toEqual([0, 0, 0]);
    for (let i = 0; i < 6; i++) r.append(ev(`u${i}`));
    expect([r.firstEventId, r.lastEventId, r.size]).toEqual([3, 6, 4]);
    expect(r.after(0, 10).map((e) => e.id)).toEqual([3, 4, 5, 6]);
    expect(r.after(4, 1).map((e) => e.id)).toEqual([5]);
    expect(r.after(6, 10)).toEqual([]);
    expect(r.get(2)).toBeUndefined();
    expect(r.get(5)?.userId).toBe('u4');
    expect(r.countAfter(4)).toBe(2);
  });

  it('reset restarts IDs under a new epoch; restore keeps the persisted window', () => {
    const r = new EventRing(3);
    const epoch = r.logEpoch;
    r.append(ev());
    r.reset();
    expect(r.logEpoch).not.toBe(epoch);
    expect(r.append(ev()).id).toBe(1);
    const r2 = new EventRing(3);
    r2.restore(77, 9, [5, 6, 7, 8, 9].map((id) => ({ id, ...ev() })));
    expect([r2.logEpoch, r2.firstEventId, r2.lastEventId]).toEqual([77, 7, 9]);
    expect(r2.append(ev()).id).toBe(10);
    expect(r2.firstEventId).toBe(8);
  });
});

describe('--state persistence', () => {
  it('users (with flag and version), the log and its epoch survive a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-sim-state-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const opts = { terminals: 2, commKey: key, timing: ZERO_TIMING, state: dir, stateDebounceMs: 10 };
    sim = await Simulator.start(opts);
    const [t1, t2] = sim.terminals;
    await t1.enroll(userFromJson({ id: 'kept', name: 'Kept', cards: [{ type: 1, data: '0102' }], pin: '2468', photo: 'ffd8ffe0' }));
    await t1.edit('kept', { name: 'Kept 2' });
    await t2.enroll(userFromJson({ id: 'other' }));
    await t2.remove('other');
    const epoch1 = t1.ring.logEpoch;
    await sim.close();
    expect(readdirSync(dir).sort()).toEqual(['terminal-1001.state', 'terminal-1002.state']);

    sim = await Simulator.start(opts);
    const c = await SimClient.connect(sim.ports()[0], { key });
    cleanups.push(() => c.destroy());
    const info = await c.getInfo();
    expect([info.logEpoch, info.userCount, info.firstEventId, info.lastEventId]).toEqual([epoch1, 1, 1, 2]);
    const [u] = (await c.getUsers(['kept'])) as UserRecord[];
    expect(u).toMatchObject({ name: 'Kept 2', flag: UserFlag.CREATED_ON_DEVICE | UserFlag.UPDATED_ON_DEVICE, version: 2 });
    expect(u.pinHash.length).toBe(32);
    expect(u.photo.toString('hex')).toBe('ffd8ffe0');
    expect((await c.getLog(0)).events.map((e) => e.code)).toEqual([EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS]);
    // the card index was rebuilt: the card is still taken
    await expect(sim.terminals[0].enroll(userFromJson({ id: 'thief', cards: [{ type: 1, data: '0102' }] }))).rejects.toThrow(/already held/);
    expect(sim.terminals[1].ring.lastEventId).toBe(2);
    expect(sim.terminals[1].userCount).toBe(0);
  });
});

describe('scenario mode', () => {
  it('round-robin spreads users over the terminals; each enrollment is an on-device event', async () => {
    sim = await Simulator.start({ terminals: 3, commKey: key, timing: ZERO_TIMING });
    const r = await runScenario(sim.terminals, { users: 10, rate: 2000, spread: 'round-robin', cards: 2, fingers: 1 });
    expect(r).toMatchObject({ enrolled: 10, failed: 0 });
    expect(sim.terminals.map((t) => t.userCount)).toEqual([4, 3, 3]);
    const u = sim.terminals[0].getUser('sim-1')!;
    expect([u.cards.length, u.fingers.length, u.flag]).toEqual([2, 1, UserFlag.CREATED_ON_DEVICE]);
    expect(sim.terminals[1].eventsAfter(0, 10).map((e) => [e.userId, e.param])).toEqual([
      ['sim-2', 1],
      ['sim-5', 1],
      ['sim-8', 1],
    ]);
  });

  it('"all" enrolls every user on every terminal', async () => {
    sim = await Simulator.start({ terminals: 2, commKey: key, timing: ZERO_TIMING });
    const r = await runScenario(sim.terminals, { users: 5, rate: 2000, spread: 'all', cards: 1 });
    expect(r.enrolled).toBe(10);
    expect(sim.terminals.map((t) => t.userCount)).toEqual([5, 5]);
  });
});
