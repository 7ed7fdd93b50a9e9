// A mixed site end to end: Suprema terminals behind the mock device gateway,
// a ZK terminal and termsync terminals at once, with the real daemon, real
// sockets and a real SQLite file. Each test is one behaviour of issue 12.
import { afterEach, describe, expect, it } from 'vitest';
import { userFromJson } from '../src/model/user.js';
import { DEVICE_A, DEVICE_B, startGsdkSite, type GsdkSite } from './helpers/gsdk-site.js';
import { waitFor } from './helpers/wait.js';

const A = `gsdk-${DEVICE_A}`;
const B = `gsdk-${DEVICE_B}`;
let site: GsdkSite | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

/** a moment for anything that would echo to show: the engine idle after every terminal's log was read again */
async function settle(s: GsdkSite) {
  await s.daemon.engine.idle();
  await new Promise((r) => setTimeout(r, 500));
  await s.daemon.engine.idle();
}

describe('a mixed site: Suprema terminals (G-SDK) beside ZK and termsync terminals', () => {
  it('an enroll on a Suprema terminal reaches the server and every other terminal of all three kinds, with no echo', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.dev(A).enroll({ id: '1001', name: 'Ann Suprema', pin: '1234', cards: [{ type: 1, data: '000f1206' }], accessGroups: [3] });
    await site.converge('1001');
    const u = site.daemon.store.getUser('1001')!;
    expect(u.name).toBe('Ann Suprema');
    expect(u.cards.map((c) => [c.type, c.data.toString('hex')])).toEqual([[1, '000f1206']]);
    expect(u.accessGroups).toEqual([3]);
    // the PIN is kept on the terminal as its own hash: never read, never pushed
    expect(u.pinHash.length).toBe(0);
    expect(site.zk.terminal(1)!.userById('1001')).toMatchObject({ name: 'Ann Suprema', card: 0x0f1206 });
    expect(site.dev(B).user('1001')!.name).toBe('Ann Suprema');
    expect(site.ts.terminal(2)!.getUser('1001')!.accessGroups).toEqual([3]);
    await settle(site);
    // the pushes to B (and the termsync and ZK terminals) did not come back as device changes
    expect(site.events('USER_UPDATE_SUCCESS_DEVICE').map((e) => e.terminalId)).toEqual([A]);
    // B logged the pushed user, as real terminals do
    expect(site.dev(B).events(0, 0).some((e) => e.userID === '1001' && e.eventCode === 0x2000)).toBe(true);
  }, 90_000);

  it('a user enrolled on a termsync terminal and one on a ZK terminal reach both Suprema terminals', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    await site.ts.terminals[0].enroll(userFromJson({ id: '2001', name: 'From termsync', cards: [{ type: 2, data: '0001e240' }], accessGroups: [5, 6], startTime: 1_700_000_000 }));
    await site.zk.terminal(1)!.enroll({ id: '2002', name: 'From ZK', card: 4242 });
    await site.converge('2001');
    await site.converge('2002');
    for (const id of [A, B]) {
      const g = site.dev(id).user('2001')!;
      expect(g.name).toBe('From termsync');
      expect(g.cards[0].type).toBe(2);
      expect(g.cards[0].data.subarray(28).toString('hex')).toBe('0001e240');
      expect(g.accessGroupIDs).toEqual([5, 6]);
      expect(g.setting.startTime).toBe(1_700_000_000);
      expect(site.dev(id).user('2002')!.name).toBe('From ZK');
    }
    await settle(site);
    expect(site.events('USER_UPDATE_SUCCESS_DEVICE').map((e) => e.terminalId).sort()).toEqual(['t1', 'zk1']);
  }, 90_000);

  it('an edit on a Suprema terminal is merged: server fields kept, vacant fields filled, and goes everywhere', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.daemon.putUser(userFromJson({ id: '3003', name: 'Server Name', accessGroups: [1, 2] }));
    await site.converge('3003');
    site.dev(B).edit('3003', { name: 'Device Name', cards: [{ type: 1, data: '00001092' }], accessGroups: [9] });
    await waitFor(() => site!.daemon.store.getUser('3003')!.cards.length === 1, { timeoutMs: 30_000, message: 'the edit was not pulled' });
    const u = site.daemon.store.getUser('3003')!;
    expect(u.name).toBe('Server Name');
    expect(u.accessGroups).toEqual([1, 2]);
    expect(u.cards[0].data.toString('hex')).toBe('00001092');
    await site.converge('3003');
    expect(site.dev(B).user('3003')!.name).toBe('Server Name');
    expect(site.zk.terminal(1)!.userById('3003')).toMatchObject({ name: 'Server Name', card: 0x1092 });
  }, 90_000);

  it('a delete on a Suprema terminal keeps the server user and the other terminals\' copies', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.dev(A).enroll({ id: '4004', name: 'Dee', cards: [{ data: '00000044' }] });
    await site.converge('4004');
    site.dev(A).remove('4004');
    await waitFor(() => site!.events('USER_DELETED_ON_DEVICE').some((e) => e.terminalId === A && e.userId === '4004'), { timeoutMs: 30_000, message: 'the delete was not seen' });
    await settle(site);
    expect(site.daemon.store.getUser('4004')).not.toBeNull();
    expect(site.dev(B).user('4004')).toBeDefined();
    expect(site.ts.terminal(1)!.getUser('4004')).toBeDefined();
    expect(site.zk.terminal(1)!.userById('4004')).toBeDefined();
  }, 90_000);

  it('a user with a card shorter than 4 bytes is not pushed again when a Suprema terminal is reconciled', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    const s = site;
    // the terminal right-aligns card data in 32 bytes and reads 0102 back as 00000102
    s.daemon.putUser(userFromJson({ id: '5005', name: 'Short card', cards: [{ type: 1, data: '0102' }] }));
    await waitFor(() => s.dev(A).user('5005') !== undefined && s.dev(B).user('5005') !== undefined, { timeoutMs: 30_000, message: 'the user did not reach the Suprema terminals' });
    await settle(s);
    const enrolls = s.gw.stats.enrollCalls;
    const pushes = s.daemon.engine.stats.pushes;
    const reconciles = s.daemon.engine.stats.reconciles;
    // a full resync of A (as the admin API's reconcile, or a reset terminal, asks): the engine compares user lists
    expect(s.daemon.engine.requestReconcile(A)).toBe(true);
    await waitFor(() => s.daemon.engine.stats.reconciles > reconciles, { timeoutMs: 30_000, message: 'A was not reconciled' });
    await settle(s);
    expect(s.gw.stats.enrollCalls).toBe(enrolls);
    expect(s.daemon.engine.stats.pushes).toBe(pushes);
    expect(s.dev(A).user('5005')!.cards[0].data.subarray(28).toString('hex')).toBe('00000102');
    expect(s.daemon.store.getUser('5005')!.cards[0].data.toString('hex')).toBe('0102');
  }, 90_000);
});
