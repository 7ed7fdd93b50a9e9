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
});
