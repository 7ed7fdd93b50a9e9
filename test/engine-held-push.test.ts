// A device edit must not be overwritten by a push of the same user before the
// server has pulled it. A terminal T logs an edit of user Y (a vacant field
// filled on the device) while T's lane is still busy with an earlier fact (a
// slow pull of X, or X's merge waiting for the database); meanwhile the
// server's Y changes (an administrator). The push of the server's Y to T is
// held back until T's fact of Y is processed: the server ends with both the
// administrator's field and the one filled at T, and every terminal holds it.
// Real daemon, real simulator over loopback, real SQLite file; the windows are
// made certain by holding back the simulator's answer to one GET_USERS, or the
// engine's one merge transaction, until the test lets it go.
import { afterEach, describe, expect, it } from 'vitest';
import { Command } from '../src/codec/constants.js';
import { decodeGetUsersRequest, type FrameInit } from '../src/codec/index.js';
import { usersEqual } from '../src/model/merge.js';
import { structuredCloneUser, userFromJson, type UserRecord } from '../src/model/user.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import type { IngestBatch, SiteStore } from '../src/store/backend.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

const START = 1_700_000_123;
const PHRASE = 'set by an administrator';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open, reached: false };
}

/** t's answer to a GET_USERS naming `userId` waits for the gate (the terminal serves other requests and on-device actions meanwhile) */
function slowPullOf(t: SimTerminal, userId: string) {
  const g = gate();
  const handle = t.handle.bind(t);
  t.handle = (async (frame, hooks) => {
    if (frame.command === Command.GET_USERS && decodeGetUsersRequest(frame.payload).userIds.includes(userId)) {
      g.reached = true;
      await g.opened;
    }
    return handle(frame, hooks) as Promise<FrameInit>;
  }) as SimTerminal['handle'];
  return g;
}

function engineStore(s: Site): SiteStore {
  return (s.daemon.engine as unknown as { store: SiteStore }).store;
}

/** the engine's merge transaction of `userId` waits for the gate (a database that is slow to answer) */
function slowMergeOf(s: Site, userId: string) {
  const g = gate();
  const store = engineStore(s);
  const ingest = store.ingest.bind(store);
  store.ingest = async (batch: IngestBatch) => {
    if (batch.merges.some((m) => m.user.id === userId)) {
      g.reached = true;
      await g.opened;
    }
    return ingest(batch);
  };
  return g;
}

async function quiet(s: Site): Promise<void> {
  await waitFor(() => s.ids.every((id) => s.daemon.store.listEvents({ type: 'RECONCILE', terminalId: id }).length > 0));
  await s.daemon.engine.idle();
}

/** a site with user y on every terminal */
async function siteWithY(): Promise<{ s: Site; y: UserRecord; t1: SimTerminal; t2: SimTerminal; t3: SimTerminal }> {
  const s = (site = await startSite({ terminals: 3 }));
  await quiet(s);
  const y = userFromJson({ id: 'y', name: 'Yvonne' });
  s.daemon.putUser(y);
  await s.waitConverged({ users: ['y'] });
  const [t1, t2, t3] = s.sim.terminals as [SimTerminal, SimTerminal, SimTerminal];
  return { s, y, t1, t2, t3 };
}

/** the server keeps the administrator's phrase and takes the start time filled at t1; every terminal holds that */
async function bothKept(s: Site, t1: SimTerminal): Promise<void> {
  await waitFor(
    () => {
      const u = s.daemon.store.getUser('y');
      return u !== null && u.setting.startTime === START && u.phrase === PHRASE && s.converged({ users: ['y'] });
    },
    {
      timeoutMs: 20_000,
      message: `t1's edit of y was lost: server ${JSON.stringify((({ phrase, setting }) => ({ phrase, startTime: setting.startTime }))(s.daemon.store.getUser('y')!))}, t1 ${JSON.stringify({ phrase: t1.getUser('y')?.phrase, startTime: t1.getUser('y')?.setting.startTime })}`,
    },
  );
  const u = s.daemon.store.getUser('y')!;
  expect(u.name).toBe('Yvonne');
  for (const t of s.sim.terminals) expect(usersEqual(t.getUser('y')!, u)).toBe(true);
}

describe('a push of a user waits for the device change of it the terminal reported', () => {
  it('an edit logged while the lane waits for a slow pull of another user is not overwritten by the server\'s change of that user', { timeout: 60_000 }, async () => {
    const { s, y, t1, t2, t3 } = await siteWithY();
    const g = slowPullOf(t1, 'x');
    try {
      await t1.enroll(userFromJson({ id: 'x', name: 'Xavier' }));
      await waitFor(() => g.reached, { message: "t1's pull of x was not asked for" });
      await t1.edit('y', { startTime: START }); // a vacant field filled at t1
      // both facts are in t1's inbox: x's (pull in flight) and y's
      await waitFor(() => s.daemon.engine.laneDepths().ingestBacklog >= 2, { message: "t1's edit of y did not reach the daemon" });
      s.daemon.putUser({ ...structuredCloneUser(y), phrase: PHRASE }); // meanwhile the server changes y
      await waitFor(() => t2.getUser('y')?.phrase === PHRASE && t3.getUser('y')?.phrase === PHRASE, { message: "the server's change of y did not reach t2 and t3" });
    } finally {
      g.open();
    }
    await bothKept(s, t1);
    expect(s.daemon.store.getUser('x')?.name).toBe('Xavier');
  });

  it('while the previous merge waits for the database: the feed batch owes y to t1 instead, the owed set keeps it, then it goes merged', { timeout: 60_000 }, async () => {
    const { s, y, t1, t2, t3 } = await siteWithY();
    const g = slowMergeOf(s, 'x');
    try {
      await t1.enroll(userFromJson({ id: 'x', name: 'Xavier' }));
      await waitFor(() => g.reached, { message: "t1's merge of x did not start" });
      await t1.edit('y', { startTime: START });
      await waitFor(() => s.daemon.engine.laneDepths().ingestBacklog >= 2, { message: "t1's edit of y did not reach the daemon" });
      // t1's lane pushes while its merge waits: the server's change of y reaches the feed
      s.daemon.putUser({ ...structuredCloneUser(y), phrase: PHRASE });
      await waitFor(() => t2.getUser('y')?.phrase === PHRASE && t3.getUser('y')?.phrase === PHRASE, { message: "the server's change of y did not reach t2 and t3" });
      // the feed batch went past y for t1: y is owed to it instead (durably)
      await waitFor(async () => (await engineStore(s).takeOwed('t1', 100)).some((o) => o.userId === 'y'), { message: 'y was not owed to t1' });
      // another change makes t1's lane push again: the owed set is read, y still held back
      s.daemon.putUser(userFromJson({ id: 'z', name: 'Zoe' }));
      await waitFor(() => t1.getUser('z') !== undefined, { message: 'z did not reach t1 while its merge waited' });
    } catch (e) {
      g.open();
      throw e;
    }
    // t1 still holds its own edit, not the server's record
    expect(t1.getUser('y')!.setting.startTime).toBe(START);
    expect(t1.getUser('y')!.phrase).not.toBe(PHRASE);
    expect((await engineStore(s).takeOwed('t1', 100)).map((o) => o.userId)).toContain('y');
    g.open();
    await bothKept(s, t1);
    // nothing stays owed once the engine settles (the terminal may hold the record before its answer is recorded)
    await s.daemon.engine.idle();
    await waitFor(async () => (await engineStore(s).owedCount('t1')) === 0, { message: 'y stayed owed to t1' });
  });

  /** t1's merge of x waits; t1 edits y; the server changes y and t1 owes y (held back) */
  async function heldScene() {
    const sc = await siteWithY();
    const g = slowMergeOf(sc.s, 'x');
    await sc.t1.enroll(userFromJson({ id: 'x', name: 'Xavier' }));
    await waitFor(() => g.reached, { message: "t1's merge of x did not start" });
    await sc.t1.edit('y', { startTime: START });
    await waitFor(() => sc.s.daemon.engine.laneDepths().ingestBacklog >= 2, { message: "t1's edit of y did not reach the daemon" });
    return { ...sc, g };
  }

  it('a terminal that disconnects with the fact pending: y stays owed, the fact is read again after the reconnect, nothing is lost', { timeout: 60_000 }, async () => {
    const { s, y, t1, t2, g } = await heldScene();
    try {
      s.daemon.putUser({ ...structuredCloneUser(y), phrase: PHRASE });
      await waitFor(() => t2.getUser('y')?.phrase === PHRASE, { message: "the server's change of y did not reach t2" });
      await waitFor(async () => (await engineStore(s).takeOwed('t1', 100)).some((o) => o.userId === 'y'), { message: 'y was not owed to t1' });
      const before = s.daemon.manager.link('t1');
      t1.dropConnections();
      await waitFor(() => s.daemon.manager.link('t1') !== before && s.daemon.terminals().find((t) => t.id === 't1')!.state === 'online', { message: 't1 did not come back' });
      // the new session re-reads x and y from the log; its merge waits too: y is held again
      await waitFor(() => s.daemon.engine.laneDepths().ingestBacklog >= 2, { message: "t1's facts were not read again" });
      expect(t1.getUser('y')!.setting.startTime).toBe(START);
      expect(t1.getUser('y')!.phrase).not.toBe(PHRASE);
    } finally {
      g.open();
    }
    await bothKept(s, t1);
  });

  it('a fact that cannot be pulled (the record is unreadable) is dropped as a pull failure: the push held back for it then goes', { timeout: 60_000 }, async () => {
    const { s, y, t1, t2, g } = await heldScene();
    try {
      t1.unreadable(60_000, 'y');
      s.daemon.putUser({ ...structuredCloneUser(y), phrase: PHRASE });
      await waitFor(() => t2.getUser('y')?.phrase === PHRASE, { message: "the server's change of y did not reach t2" });
      await waitFor(async () => (await engineStore(s).takeOwed('t1', 100)).some((o) => o.userId === 'y'), { message: 'y was not owed to t1' });
    } finally {
      g.open();
    }
    // recorded as a pull failure of t1 (the existing rule), and t1 gets the server's record: nothing waits for ever
    await waitFor(async () => (await engineStore(s).listPullFailures({ terminalId: 't1' })).some((f) => f.userId === 'y'), { message: 'no pull failure recorded' });
    await waitFor(() => t1.getUser('y')?.phrase === PHRASE, { timeoutMs: 20_000, message: 'the held-back push of y never reached t1' });
    expect(s.daemon.store.getUser('y')!.phrase).toBe(PHRASE);
  });

  it('a user edited and then deleted at the terminal: the delete never deletes the server\'s user; the held push restores it on the terminal once the facts are processed', { timeout: 60_000 }, async () => {
    const { s, y, t1, t2, t3, g } = await heldScene();
    try {
      await t1.remove('y');
      await waitFor(() => s.daemon.engine.laneDepths().ingestBacklog >= 3, { message: "t1's delete of y did not reach the daemon" });
      s.daemon.putUser({ ...structuredCloneUser(y), phrase: PHRASE });
      await waitFor(() => t2.getUser('y')?.phrase === PHRASE && t3.getUser('y')?.phrase === PHRASE, { message: "the server's change of y did not reach t2 and t3" });
    } finally {
      g.open();
    }
    await waitFor(() => t1.getUser('y')?.phrase === PHRASE && s.converged({ users: ['y'] }), { timeoutMs: 20_000, message: 'y did not come back to t1' });
    expect(s.daemon.store.getUser('y')!.phrase).toBe(PHRASE);
    expect(s.daemon.store.listEvents({ type: 'USER_DELETED_ON_DEVICE', terminalId: 't1' }).length).toBe(1);
  });
});
