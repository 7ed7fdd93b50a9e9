// Terminals that already hold the server's users: the simulator's bulk load
// (one population shared by many terminals, copied by a terminal only when its
// users change) and the daemon's first contact with such terminals, which must
// cost one user-list comparison each and nothing else: no record read, no record
// written.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Command } from '../src/codec/index.js';
import { Daemon } from '../src/daemon.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { SharedUsers } from '../src/sim/terminal.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { Store } from '../src/store/store.js';
import { silent } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

function person(i: number): UserRecord {
  const id = String(100_000 + i);
  return userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }], accessGroups: [1 + (i % 3)] });
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

/** counts the commands each terminal serves */
function countCommands(sim: Simulator): Map<number, number>[] {
  return sim.terminals.map((t) => {
    const counts = new Map<number, number>();
    const orig = t.handle.bind(t);
    t.handle = (frame, hooks) => {
      counts.set(frame.command, (counts.get(frame.command) ?? 0) + 1);
      return orig(frame, hooks);
    };
    return counts;
  });
}

describe('terminals holding a shared population', () => {
  it('share the records until one changes its users; that one alone takes a copy', async () => {
    const pop = new SharedUsers(Array.from({ length: 50 }, (_, i) => person(i)));
    const sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanup.push(() => sim.close());
    const [a, b] = sim.terminals;
    a.holdShared(pop);
    b.holdShared(pop);
    expect(a.userCount).toBe(50);
    expect(a.listUsers().map((u) => u.id)).toEqual(pop.sorted.map((s) => s.user.id));
    expect(a.sharesUsers && b.sharesUsers).toBe(true);
    await a.remove('100007');
    await a.enroll(userFromJson({ id: '999', name: 'New' }));
    expect(a.sharesUsers).toBe(false);
    expect(a.userCount).toBe(50);
    expect(a.getUser('100007')).toBeUndefined();
    // the other terminal and the population itself are untouched
    expect(b.sharesUsers).toBe(true);
    expect(b.userCount).toBe(50);
    expect(b.getUser('100007')?.name).toBe('Person 100007');
    expect(b.getUser('999')).toBeUndefined();
    expect(pop.size).toBe(50);
    // a card that belongs to a user of the population is refused on the terminal that copied too
    await expect(a.enroll(userFromJson({ id: '998', cards: [{ type: 1, data: Buffer.from('card-100003').toString('hex') }] }))).rejects.toThrow(/card/i);
  });

  it('the first contact of terminals already equal to the server: one LIST_USERS comparison each, nothing read or written', async () => {
    const users = Array.from({ length: 300 }, (_, i) => person(i));
    const dir = mkdtempSync(join(tmpdir(), 'termsync-shared-'));
    const db = join(dir, 'termsync.db');
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const store = Store.open(db);
    for (const u of users) store.putUserFromServer(u);
    store.close();
    const sim = await Simulator.start({ terminals: 4, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanup.push(() => sim.close());
    const pop = new SharedUsers(users);
    for (const t of sim.terminals) t.holdShared(pop);
    // one terminal differs from the server in one user: that user alone moves
    await sim.terminals[3].edit('100042', { name: 'Renamed on the device' });
    const counts = countCommands(sim);
    const daemon = await Daemon.start({
      db,
      log: silent,
      commKey: DEV_COMM_KEY,
      terminals: sim.terminals.map((t, i) => ({ id: `t${i + 1}`, host: '127.0.0.1', port: sim.ports()[i] })),
      syncMode: 'all',
      heartbeatSec: 2,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
    });
    cleanup.push(() => daemon.stop(1000));
    await waitFor(() => daemon.engine.stats.reconciles >= 4 && daemon.terminals().every((t) => t.state === 'online'), { timeoutMs: 15_000 });
    await daemon.engine.idle();
    for (let i = 0; i < 3; i++) {
      const c = counts[i];
      expect(c.get(Command.LIST_USERS) ?? 0, `terminal ${i + 1} LIST_USERS`).toBeGreaterThanOrEqual(1);
      expect(c.get(Command.GET_USERS) ?? 0, `terminal ${i + 1} GET_USERS`).toBe(0);
      expect(c.get(Command.DELETE_USERS) ?? 0).toBe(0);
      // the edit on terminal 4 is pulled and merged; the merge keeps the server's name (held fields stay), so
      // terminal 4 alone is written back; the others already hold the merged record
      expect(c.get(Command.PUT_USERS) ?? 0, `terminal ${i + 1} PUT_USERS`).toBe(0);
      expect(sim.terminals[i].sharesUsers).toBe(true);
    }
    expect(counts[3].get(Command.GET_USERS)).toBe(1);
    expect(daemon.engine.stats.pulls).toBe(1);
    expect(daemon.store.getUser('100042')!.name).toBe('Person 100042');
    await waitFor(() => sim.terminals[3].getUser('100042')?.name === 'Person 100042', { timeoutMs: 10_000 });
  });
});
