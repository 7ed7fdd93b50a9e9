// Faults between the daemon and the device gateway, on the mixed site of
// gsdk-site.test.ts: the realtime stream broken during a burst, realtime
// events dropped by a full gateway queue, the gateway restarting, UNAVAILABLE
// answers, and a terminal that loses its connection to the gateway. Nothing
// a terminal logged may be lost; everything converges.
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

const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => String(from + i));

async function allOnServerAndEverywhere(s: GsdkSite, userIds: string[], what: string) {
  await waitFor(() => userIds.every((id) => s.daemon.store.getUser(id) !== null), { timeoutMs: 60_000, message: `${what}: not every user reached the server` });
  await waitFor(() => userIds.every((id) => s.heldEverywhere(id)), { timeoutMs: 60_000, message: `${what}: not every user reached every terminal` });
}

describe('G-SDK faults on a mixed site', () => {
  it('a realtime stream broken in the middle of a burst loses nothing', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    const burst = ids(10_000, 120);
    burst.forEach((id, i) => {
      site!.dev(A).enroll({ id, name: `Burst ${i}`, cards: [{ data: (0x10000 + i).toString(16).padStart(8, '0') }] });
      if (i === 40 || i === 80) site!.gw.breakStreams();
    });
    await allOnServerAndEverywhere(site, burst, 'stream broken');
    // the device changes came from A only: the pushes to B did not echo
    await site.daemon.engine.idle();
    const fromDevice = site.events('USER_UPDATE_SUCCESS_DEVICE');
    expect(new Set(fromDevice.map((e) => e.terminalId))).toEqual(new Set([A]));
    expect(new Set(fromDevice.map((e) => e.userId))).toEqual(new Set(burst));
  }, 180_000);

  it('realtime events dropped by a full gateway queue are read from the log, the last ones of a burst too', async () => {
    site = await startGsdkSite({ driver: { logCheckMs: 300 } });
    await site.allOnline();
    const first = ids(20_000, 30);
    site.gw.dropRealtime(10);
    first.forEach((id) => site!.dev(B).enroll({ id, name: `Dropped? ${id}` }));
    await allOnServerAndEverywhere(site, first, 'dropped in the middle');
    // the last events of a burst dropped: no later event shows the gap; the log check finds them
    const before = site.gw.stats.realtimeDropped;
    site.gw.dropRealtime(5);
    const tail = ids(21_000, 5);
    tail.forEach((id) => site!.dev(B).enroll({ id, name: `Tail ${id}` }));
    await waitFor(() => site!.gw.stats.realtimeDropped >= before + 5, { message: 'the mock did not drop the events' });
    await allOnServerAndEverywhere(site, tail, 'dropped at the end');
  }, 180_000);

  it('a gateway restart converges: changes made at a terminal and on the server meanwhile arrive', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.dev(A).enroll({ id: '30001', name: 'Before the restart' });
    await site.converge('30001');
    const restarting = site.gw.restart(800);
    // while the gateway is away: a person enrolls at A, an administrator adds a user on the server
    site.dev(A).enroll({ id: '30002', name: 'Enrolled while the gateway was down', cards: [{ data: '00030002' }] });
    site.daemon.putUser(userFromJson({ id: '30003', name: 'Added on the server meanwhile' }));
    await restarting;
    await site.allOnline();
    await site.converge('30002');
    await site.converge('30003');
    expect(site.gw.stats.restarts).toBe(1);
    // the restarted gateway had forgotten both terminals: the driver told it again
    expect(site.gw.connected(DEVICE_A) && site.gw.connected(DEVICE_B)).toBe(true);
    expect(site.dev(B).user('30002')!.name).toBe('Enrolled while the gateway was down');
  }, 180_000);

  it('UNAVAILABLE answers are retried: pushes and pulls still arrive', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.gw.failNext(6);
    site.daemon.putUser(userFromJson({ id: '40001', name: 'Pushed through failures' }));
    site.dev(A).enroll({ id: '40002', name: 'Pulled through failures' });
    await site.converge('40001');
    await site.converge('40002');
    expect(site.gw.stats.unavailableAnswered).toBe(6);
  }, 180_000);

  it('a terminal that loses its gateway connection goes offline and catches up when it returns', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.gw.setOnline(DEVICE_B, false);
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === B)?.state === 'offline', { timeoutMs: 30_000, message: 'B did not go offline' });
    await site.ts.terminals[0].enroll(userFromJson({ id: '50001', name: 'While B was away', cards: [{ type: 1, data: '00050001' }] }));
    await site.converge('50001', ['t1', 't2', 'zk1', A]);
    expect(site.dev(B).user('50001')).toBeUndefined();
    site.gw.setOnline(DEVICE_B, true);
    await site.converge('50001');
  }, 180_000);
});

describe('a backlog bigger than a log page', () => {
  it('1,200 users enrolled at a terminal while it was cut off from the gateway all arrive, read page by page', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.gw.setOnline(DEVICE_A, false);
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === A)?.state === 'offline', { timeoutMs: 30_000, message: 'A did not go offline' });
    const many = ids(100_000, 1200);
    for (const id of many) site.dev(A).enroll({ id, name: `Backlog ${id}`, cards: [{ data: Number(id).toString(16).padStart(8, '0') }] });
    const getLogBefore = site.gw.stats.getLogCalls;
    site.gw.setOnline(DEVICE_A, true);
    await allOnServerAndEverywhere(site, many, 'backlog');
    // at least three pages of the log were read (500 events each)
    expect(site.gw.stats.getLogCalls - getLogBefore).toBeGreaterThanOrEqual(3);
  }, 240_000);
});

describe('a Suprema terminal reset while connected', () => {
  it('a database reset at the terminal (0x4501): the server keeps its users and writes them back', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    site.daemon.putUser(userFromJson({ id: '90001', name: 'Survives the reset', accessGroups: [1] }));
    site.dev(B).enroll({ id: '90002', name: 'Enrolled at B' });
    await site.converge('90001');
    await site.converge('90002');
    site.dev(A).resetDatabase();
    expect(site.dev(A).userCount).toBe(0);
    await site.converge('90001');
    await site.converge('90002');
    expect(site.daemon.store.getUser('90002')!.name).toBe('Enrolled at B');
  }, 180_000);

  it('a cleared event log (IDs start again at 1): the session restarts, the terminal is compared, later changes still sync', async () => {
    site = await startGsdkSite();
    await site.allOnline();
    for (const id of ids(91_000, 5)) site.dev(A).enroll({ id, name: `Old ${id}` });
    await allOnServerAndEverywhere(site, ids(91_000, 5), 'before the clear');
    site.dev(A).clearLog();
    site.dev(A).enroll({ id: '91100', name: 'After the clear' });
    await site.converge('91100');
    await waitFor(() => site!.events('TERMINAL_RESET').some((e) => e.terminalId === A), { timeoutMs: 30_000, message: 'no TERMINAL_RESET recorded for A' });
    site.dev(A).edit('91100', { name: 'Edited after the clear', cards: [{ data: '00091100' }] });
    await waitFor(() => site!.daemon.store.getUser('91100')!.cards.length === 1, { timeoutMs: 30_000, message: 'an edit after the clear was not pulled' });
    await site.converge('91100');
  }, 180_000);
});

describe('a gateway that sends changedOnDevice', () => {
  it('uses the flag: pushes do not echo, device changes are pulled', async () => {
    site = await startGsdkSite({ changedOnDevice: true });
    await site.allOnline();
    site.dev(A).enroll({ id: '60001', name: 'Flagged' });
    await site.converge('60001');
    site.dev(B).edit('60001', { cards: [{ data: '00060001' }] });
    await waitFor(() => site!.daemon.store.getUser('60001')!.cards.length === 1, { timeoutMs: 30_000, message: 'the edit on B was not pulled' });
    await site.converge('60001');
    await site.daemon.engine.idle();
    expect(site.driver.echo.flagSeen).toBe(true);
    expect(site.events('USER_UPDATE_SUCCESS_DEVICE').map((e) => e.terminalId).sort()).toEqual([A, B]);
  }, 120_000);
});
