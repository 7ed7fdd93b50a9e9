// The mission end to end: real daemon, real simulator over loopback TCP, real
// SQLite file. Each test is one behaviour of the daemon issue.
import { afterEach, describe, expect, it } from 'vitest';
import { Status } from '../src/codec/constants.js';
import { hashPin, userFromJson, type UserRecord } from '../src/model/user.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

function person(id: string, extra: Record<string, unknown> = {}): UserRecord {
  return userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }], ...extra });
}

function events(s: Site, type: string) {
  return s.daemon.store.listEvents({ type, limit: 10_000 });
}

describe('device-originated sync (mode all)', () => {
  it('an enrollment on one terminal reaches every other terminal, with monitoring events', async () => {
    site = await startSite({ terminals: 3 });
    const [t1] = site.sim.terminals;
    await t1.enroll(person('1001', { pin: '4321', accessGroups: [7] }));
    await site.waitConverged({ users: ['1001'] });
    const server = site.daemon.store.getUser('1001')!;
    expect(server.name).toBe('Person 1001');
    expect(server.pinHash.equals(hashPin('4321'))).toBe(true);
    expect(server.accessGroups).toEqual([7]);
    await waitFor(() => events(site!, 'USER_UPDATE_SUCCESS_SERVER').length === 2);
    const dev = events(site, 'USER_UPDATE_SUCCESS_DEVICE');
    expect(dev.map((e) => [e.terminalId, e.userId])).toEqual([['t1', '1001']]);
    expect(events(site, 'USER_UPDATE_SUCCESS_SERVER').map((e) => e.terminalId).sort()).toEqual(['t2', 't3']);
  });

  it('merges into an existing server user: held fields stay, vacant fields are filled, access groups are never lost', async () => {
    site = await startSite({ terminals: 3 });
    // The server knows the user with a name and access groups but no card or PIN.
    site.daemon.putUser(userFromJson({ id: '2002', name: 'Server Name', accessGroups: [1, 2] }));
    await site.waitConverged({ users: ['2002'] });
    // At terminal 2 someone renames the user, drops the groups, adds a card and a PIN.
    await site.sim.terminals[1].edit('2002', { name: 'Device Name', accessGroups: [], addCards: [{ type: 1, data: 'aabbccdd' }], pin: '9999' });
    await waitFor(() => site!.daemon.store.getUser('2002')!.cards.length === 1);
    const u = site.daemon.store.getUser('2002')!;
    expect(u.name).toBe('Server Name');
    expect(u.accessGroups).toEqual([1, 2]);
    expect(u.cards[0].data.toString('hex')).toBe('aabbccdd');
    expect(u.pinHash.equals(hashPin('9999'))).toBe(true);
    // Convergence includes the originating terminal, whose copy differed from the merge.
    await site.waitConverged({ users: ['2002'] });
    expect(site.sim.terminals[1].getUser('2002')!.name).toBe('Server Name');
  });

  it('a delete on a terminal never deletes the server user; it is recorded', async () => {
    site = await startSite({ terminals: 2 });
    await site.sim.terminals[0].enroll(person('3003'));
    await site.waitConverged({ users: ['3003'] });
    await site.sim.terminals[0].remove('3003');
    await waitFor(() => events(site!, 'USER_DELETED_ON_DEVICE').length === 1);
    expect(site.daemon.store.getUser('3003')).not.toBeNull();
    expect(site.sim.terminals[1].getUser('3003')).toBeDefined();
  });

  it('records pushed by the server never trigger a pull, and the same event seen twice changes nothing', async () => {
    site = await startSite({ terminals: 3 });
    await site.sim.terminals[0].enroll(person('4004'));
    await site.waitConverged({ users: ['4004'] });
    await site.daemon.engine.idle();
    const pulls = site.daemon.engine.stats.pulls;
    const pushes = site.daemon.engine.stats.pushes;
    // Reconnect every terminal: the daemon resumes from its cursors.
    for (const t of site.sim.terminals) t.dropConnections();
    await waitFor(() => site!.daemon.terminals().every((t) => t.state === 'online') && site!.sim.terminals.every((t) => t.connected));
    await site.daemon.engine.idle();
    expect(site.daemon.engine.stats.pulls).toBe(pulls);
    expect(site.daemon.engine.stats.pushes).toBe(pushes);
    expect(events(site, 'USER_UPDATE_SUCCESS_DEVICE')).toHaveLength(1);
  });
});

describe('sync modes', () => {
  it('off: nothing moves; server: server edits are pushed, device changes ignored', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'off' } });
    site.daemon.putUser(person('5001'));
    await site.sim.terminals[0].enroll(person('5002'));
    await site.daemon.engine.idle();
    expect(site.sim.terminals[1].getUser('5001')).toBeUndefined();
    expect(site.daemon.store.getUser('5002')).toBeNull();

    site.daemon.setSyncMode('server');
    expect(site.daemon.store.getSyncMode()).toBe('server');
    site.daemon.putUser(person('5003'));
    await site.waitConverged({ users: ['5003'] });
    await site.sim.terminals[0].enroll(person('5004'));
    await site.daemon.engine.idle();
    expect(site.daemon.store.getUser('5004')).toBeNull();
    expect(site.sim.terminals[1].getUser('5004')).toBeUndefined();
  });

  it('specific: a user goes only to terminals serving one of its access groups', async () => {
    site = await startSite({ terminals: 3, daemon: { syncMode: 'specific' } });
    site.daemon.setTerminalGroups('t1', [10]);
    site.daemon.setTerminalGroups('t2', [10, 20]);
    site.daemon.setTerminalGroups('t3', [30]);
    await site.sim.terminals[0].enroll(person('6001', { accessGroups: [20] }));
    await site.waitConverged({ users: ['6001'], ids: ['t2'] });
    await site.daemon.engine.idle();
    expect(site.sim.terminals[2].getUser('6001')).toBeUndefined();
  });
});

describe('outbox, offline terminals, restarts', () => {
  it('a terminal offline during a burst converges when it returns', async () => {
    site = await startSite({ terminals: 4 });
    site.sim.terminals[3].refuse(60_000);
    site.sim.terminals[3].dropConnections();
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === 't4')!.state === 'offline');
    for (let i = 0; i < 30; i++) await site.sim.terminals[i % 3].enroll(person(`7${String(i).padStart(3, '0')}`));
    await site.waitConverged({ ids: ['t1', 't2', 't3'], count: 30 });
    expect(site.daemon.store.userCount()).toBe(30);
    expect(site.daemon.store.owedCount('t4')).toBe(30);
    site.sim.terminals[3].refuse(0);
    await site.waitConverged({ count: 30 });
    // the terminal stores a batch before its answer reaches the daemon: the rows go with the answer
    await waitFor(() => site!.daemon.store.owedCount() === 0, { message: 'the outbox was not emptied' });
  });

  it('8 terminals, 200 users enrolled on random terminals within 2 seconds: every terminal holds all 200', async () => {
    site = await startSite({ terminals: 8 });
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => site!.sim.terminals[(i * 7) % 8].enroll(person(`8${String(i).padStart(4, '0')}`))),
    );
    expect(Date.now() - started).toBeLessThan(2000);
    await site.waitConverged({ count: 200, timeoutMs: 30_000 });
    expect(site.daemon.store.userCount()).toBe(200);
  });

  it('a daemon restart mid-burst loses nothing', async () => {
    site = await startSite({ terminals: 4 });
    const burst = Promise.all(Array.from({ length: 120 }, (_, i) => site!.sim.terminals[i % 4].enroll(person(`9${String(i).padStart(4, '0')}`))));
    await waitFor(() => site!.daemon.store.userCount() > 10);
    await site.daemon.stop(0);
    await burst;
    await site.startDaemon();
    await site.waitConverged({ count: 120, timeoutMs: 30_000 });
    expect(site.daemon.store.userCount()).toBe(120);
  });
});

describe('failures', () => {
  it('a failing database records "Fail to save to the server DB", pushes nothing, and takes the change in once it works', async () => {
    site = await startSite({ terminals: 2 });
    // past both first-contact comparisons, so the failure hits the enrollment below
    await waitFor(() => site!.ids.every((id) => events(site!, 'RECONCILE').some((e) => e.terminalId === id)));
    await site.daemon.engine.idle();
    const db = site.daemon.store.connection;
    db.pragma('query_only = 1'); // every write now fails with SQLITE_READONLY
    await site.sim.terminals[0].enroll(person('1100'));
    await waitFor(() => site!.daemon.engine.stats.dbWriteFailures > 0);
    expect(site.sim.terminals[1].getUser('1100')).toBeUndefined();
    expect(site.daemon.store.pendingEventCount).toBeGreaterThan(0);
    db.pragma('query_only = 0');
    await site.waitConverged({ users: ['1100'] });
    await waitFor(() => events(site!, 'SERVER_DB_SAVE_FAIL').length > 0);
    expect(events(site, 'SERVER_DB_SAVE_FAIL')[0].userId).toBe('1100');
  });

  it('a terminal that refuses a pushed user (duplicate card) is recorded per terminal and user; the rest goes on', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'server' } });
    // Terminal 2 already has someone else holding card aabb.
    await site.sim.terminals[1].enroll(userFromJson({ id: 'other', cards: [{ type: 1, data: 'aabb' }] }));
    site.daemon.putUser(userFromJson({ id: 'u1', cards: [{ type: 1, data: 'aabb' }] }));
    site.daemon.putUser(userFromJson({ id: 'u2', name: 'fine' }));
    await waitFor(() => site!.sim.terminals[1].getUser('u2') !== undefined);
    await waitFor(() => site!.daemon.store.listPushFailures({ terminalId: 't2' }).length === 1);
    const [f] = site.daemon.store.listPushFailures({ terminalId: 't2' });
    expect(f).toMatchObject({ userId: 'u1', status: Status.DUPLICATE_CARD });
    expect(site.sim.terminals[0].getUser('u1')).toBeDefined();
  });
});

describe('no gaps', () => {
  it('a log ring that overwrote unseen events is noticed and the terminal reconciled by user list', async () => {
    site = await startSite({ terminals: 2, sim: { logCapacity: 8 } });
    await site.daemon.stop(0);
    for (let i = 0; i < 20; i++) await site.sim.terminals[0].enroll(person(`g${i}`));
    await site.startDaemon();
    await site.waitConverged({ count: 20, timeoutMs: 20_000 });
    expect(site.daemon.store.userCount()).toBe(20);
    expect(events(site, 'LOG_GAP').filter((e) => e.terminalId === 't1')).toHaveLength(1);
    // t2's ring of 8 may overwrite its log of the 20 users pushed to it before it sends
    // them: a gap within the session, also recorded and reconciled (the port's 'log-gap')
    for (const e of events(site, 'LOG_GAP').filter((e) => e.terminalId === 't2')) expect(e.detail).toMatch(/were lost before the server read them/);
  });

  it('a factory-reset terminal is detected and brought back to the server records', async () => {
    site = await startSite({ terminals: 2 });
    for (let i = 0; i < 5; i++) site.daemon.putUser(person(`r${i}`));
    await site.waitConverged({ count: 5 });
    site.sim.terminals[1].factoryReset();
    site.sim.terminals[1].dropConnections();
    await waitFor(() => site!.sim.terminals[1].userCount === 5, { timeoutMs: 15_000 });
    await site.waitConverged({ count: 5 });
    expect(events(site, 'TERMINAL_RESET').length).toBeGreaterThanOrEqual(1);
  });
});

describe('server-side changes and sessions', () => {
  it('a user created, changed and deleted on the server reaches every terminal', async () => {
    site = await startSite({ terminals: 3, daemon: { syncMode: 'server' } });
    site.daemon.putUser(person('s1'));
    await site.waitConverged({ users: ['s1'] });
    site.daemon.putUser(person('s1', { name: 'Renamed' }));
    await waitFor(() => site!.sim.terminals.every((t) => t.getUser('s1')?.name === 'Renamed'), { message: 'rename' });
    expect(site.daemon.deleteUser('s1')).toBe(true);
    await waitFor(() => site!.sim.terminals.every((t) => t.getUser('s1') === undefined));
  });

  it('a terminal dialling in unknown is held pending until approved, then synced', async () => {
    site = await startSite({ terminals: 1, daemon: { listen: [{ host: '127.0.0.1', port: 0 }] } });
    site.daemon.putUser(person('p1'));
    await site.waitConverged({ users: ['p1'] });
    const { Simulator } = await import('../src/sim/simulator.js');
    const { DEV_COMM_KEY } = await import('../src/sim/devkey.js');
    const { ZERO_TIMING } = await import('../src/sim/timing.js');
    const dialer = await Simulator.start({ terminals: 1, deviceIdBase: 5000, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: site.daemon.listenPorts[0] } });
    try {
      await waitFor(() => site!.daemon.terminals().some((t) => t.id === '5001' && t.state === 'pending'));
      expect(dialer.terminals[0].getUser('p1')).toBeUndefined();
      expect(site.daemon.approve('5001')).toBe(true);
      await waitFor(() => dialer.terminals[0].getUser('p1') !== undefined);
      expect(site.daemon.terminals().find((t) => t.id === '5001')!.state).toBe('online');
    } finally {
      await dialer.close();
    }
  });

  it('a hung terminal is torn down by the heartbeat and reconnects when it wakes', async () => {
    site = await startSite({ terminals: 2, daemon: { heartbeatSec: 1, handshakeDeadlineMs: 1000 } });
    site.sim.terminals[1].blackhole(2500);
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === 't2')!.state === 'offline', { timeoutMs: 5000 });
    const off = site.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 't2' });
    expect(off[0].detail).toContain('heartbeat');
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === 't2')!.state === 'online', { timeoutMs: 10_000 });
  });
});

describe('comm keys', () => {
  it('a terminal with a key of its own is accepted with that key; the site key does not open it', async () => {
    const { Simulator } = await import('../src/sim/simulator.js');
    const { ZERO_TIMING } = await import('../src/sim/timing.js');
    const own = Buffer.from('a-key-for-terminal-2001-only!!!!');
    const good = await Simulator.start({ terminals: 1, deviceIdBase: 2000, commKey: own, timing: ZERO_TIMING });
    const impostor = await Simulator.start({ terminals: 1, deviceIdBase: 3000, commKey: own, timing: ZERO_TIMING });
    try {
      site = await startSite({ terminals: 1, daemon: { terminalKeys: new Map([[2001, own]]) } });
      site.daemon.addTerminal({ id: '2001', host: '127.0.0.1', port: good.ports()[0] });
      site.daemon.addTerminal({ id: '3001', host: '127.0.0.1', port: impostor.ports()[0] });
      await waitFor(() => site!.daemon.terminals().find((t) => t.id === '2001')?.state === 'online');
      site.daemon.putUser(person('k1'));
      await waitFor(() => good.terminals[0].getUser('k1') !== undefined);
      // 3001 holds a key the server does not have for it: never authenticated, never synced
      await site.daemon.engine.idle();
      expect(site.daemon.terminals().find((t) => t.id === '3001')!.state).toBe('offline');
      expect(impostor.terminals[0].getUser('k1')).toBeUndefined();
    } finally {
      await site?.close();
      site = undefined;
      await good.close();
      await impostor.close();
    }
  });
});

describe('slow terminals', () => {
  it('a terminal too slow to write a full batch within the request timeout still catches up (smaller batches)', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'server', requestTimeoutMs: 1000 }, sim: { timing: { perCommandMs: 0, perUserWriteMs: 12, perUserReadMs: 0 } } });
    for (let i = 0; i < 200; i++) site.daemon.putUser(person(`slow${i}`));
    // a full batch of 200 takes 2.4 s at this terminal, more than the 1 s timeout
    await site.waitConverged({ count: 200, timeoutMs: 40_000 });
    // and the daemon knows it: every push acknowledged
    await waitFor(() => site!.daemon.store.owedCount() === 0, { timeoutMs: 40_000, message: 'outbox not drained' });
  }, 60_000);
});
