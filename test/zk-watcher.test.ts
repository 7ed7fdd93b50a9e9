// The ZK watcher against the simulator: what a terminal does is reported as
// termsync users (enroll by event, edits and deletes by read + diff at
// reconnect, on the poll and on demand), termsync's own writes never echo, and
// a terminal that was away is caught up when it returns.
import { afterEach, describe, expect, it } from 'vitest';
import { ZkWatcher, type ZkScan } from '../src/drivers/zk/watcher.js';
import { userFromJson, userToJson } from '../src/model/user.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function setup(opts: { pollMs?: number; uidStart?: number[] } = {}) {
  const sim = await ZkSimulator.start({ terminals: 2, password: 99, timing: ZERO_ZK_TIMING, uidStart: opts.uidStart });
  closers.push(() => sim.close());
  const watch = (i: number) => {
    const w = new ZkWatcher({ terminal: `zk-${i + 1}`, client: { host: '127.0.0.1', port: sim.ports()[i], password: 99, timeoutMs: 3000 }, pollMs: opts.pollMs ?? 0, reconnectMinMs: 50, reconnectMaxMs: 200 });
    closers.push(() => w.stop());
    return w;
  };
  return { sim, watch };
}

function nextScan(w: ZkWatcher, pred: (s: ZkScan) => boolean = () => true): Promise<ZkScan> {
  return new Promise((resolve) => {
    const on = (s: ZkScan) => {
      if (!pred(s)) return;
      w.off('scan', on);
      resolve(s);
    };
    w.on('scan', on);
  });
}

describe('ZK watcher', () => {
  it('reports the users at connect, an enroll by its event, edits and deletes by diff; own writes do not echo', async () => {
    const { sim, watch } = await setup();
    const t = sim.terminals[0];
    await t.enroll({ id: '1001', name: 'Ann', card: 987654, password: '42', fingers: [{ index: 1, template: 'aabbcc' }] });
    const w = watch(0);
    const first = nextScan(w);
    w.start();
    const s0 = await first;
    expect(s0).toMatchObject({ reason: 'connect', firstRead: true, deleted: [] });
    expect(s0.changed.map((c) => userToJson(c.user))).toMatchObject([{ id: '1001', name: 'Ann', cards: [{ type: 1, data: '000f1206' }], pinSet: true }]);
    expect(s0.changed[0].extras.templates.map((x) => x.template.toString('hex'))).toEqual(['aabbcc']);
    expect(w.info?.serialNumber).toBe(t.serialNumber);

    // enrolled at the terminal: the event triggers a read
    const byEvent = nextScan(w, (s) => s.reason === 'enroll-event');
    await t.enroll({ id: '1002', name: 'Bea' });
    expect((await byEvent).changed.map((c) => c.user.id)).toEqual(['1002']);

    // edited and deleted at the terminal: no event; the next read finds both
    await t.edit('1001', { name: 'Ann B' });
    await t.remove('1002');
    const s2 = await w.scan();
    expect(s2.changed.map((c) => [c.user.id, c.user.name])).toEqual([['1001', 'Ann B']]);
    expect(s2.deleted).toEqual(['1002']);

    // termsync writes a user (with ZK templates from another ZK terminal) and deletes one: no echo
    const out = await w.putUser(userFromJson({ id: 'srv-1', name: 'From the server', cards: [{ type: 1, data: '0001e240' }] }), {
      level: 0,
      group: 1,
      password: '',
      templates: [{ finger: 3, flag: 1, template: Buffer.from('5353323100', 'hex') }],
    });
    expect(t.userById('srv-1')).toMatchObject({ card: 123456, uid: out.user.uid });
    expect(t.templatesOf(out.user.uid).map((x) => x.finger)).toEqual([3]);
    expect(await w.deleteUser('1001')).toBe(true);
    expect(await w.deleteUser('nobody')).toBe(false);
    const s3 = await w.scan();
    expect(s3).toMatchObject({ changed: [], deleted: [] });
    expect(s3.confirmed.sort()).toEqual(['1001', 'srv-1']);
  });

  it('writes many users with the terminal disabled and one table read; a refused one does not stop the rest', async () => {
    const { sim, watch } = await setup();
    const t = sim.terminals[0];
    await t.enroll({ id: 'holder', card: 777 });
    const w = watch(0);
    const up = nextScan(w);
    w.start();
    await up;
    const list = ['b1', 'b2', 'dup', 'b3'].map((id) => ({ user: userFromJson({ id, name: id, cards: id === 'dup' ? [{ type: 1, data: '00000309' }] : [] }) }));
    const res = await w.putUsers(list);
    expect(res.map((r) => (r instanceof Error ? (r as { code?: string }).code : 'ok'))).toEqual(['ok', 'ok', 'REFUSED', 'ok']);
    expect(t.listUsers().map((u) => u.userId)).toEqual(['holder', 'b1', 'b2', 'b3']);
    expect(t.disabled).toBe(false);
    expect((await w.scan()).changed).toEqual([]);
  });

  it('the poll finds an edit made at the terminal', async () => {
    const { sim, watch } = await setup({ pollMs: 150 });
    await sim.terminals[0].enroll({ id: 'p1', name: 'Before' });
    const w = watch(0);
    const connected = nextScan(w, (s) => s.reason === 'connect');
    w.start();
    await connected;
    const polled = nextScan(w, (s) => s.reason === 'poll' && s.changed.length > 0);
    await sim.terminals[0].edit('p1', { name: 'After' });
    expect((await polled).changed.map((c) => c.user.name)).toEqual(['After']);
  });

  it('a terminal that was away is caught up at reconnect: what changed meanwhile is reported', async () => {
    const { sim, watch } = await setup();
    const t = sim.terminals[0];
    await t.enroll({ id: 'a', name: 'A' });
    await t.enroll({ id: 'b', name: 'B' });
    const w = watch(0);
    const connected = nextScan(w, (s) => s.reason === 'connect');
    w.start();
    await connected;
    const down = new Promise((resolve) => w.once('disconnected', resolve));
    t.refuse(400);
    t.dropConnections();
    await down;
    expect(w.connected).toBe(false);
    await t.edit('a', { name: 'A edited offline' });
    await t.remove('b');
    const back = await nextScan(w, (s) => s.reason === 'connect');
    expect(back.firstRead).toBe(false);
    expect(back.changed.map((c) => c.user.name)).toEqual(['A edited offline']);
    expect(back.deleted).toEqual(['b']);
  });

  it('terminals with different uid numbering hold the same user under different uids, found by user ID', async () => {
    const { sim, watch } = await setup({ uidStart: [1, 700] });
    // the same person enrolled at both terminals: each numbers it its own way
    for (const t of sim.terminals) await t.enroll({ id: 'same', name: 'Same person' });
    expect(sim.terminals.map((t) => t.userById('same')?.uid)).toEqual([1, 700]);
    const [w1, w2] = [watch(0), watch(1)];
    const up = Promise.all([nextScan(w1), nextScan(w2)]);
    w1.start();
    w2.start();
    await up;
    // a user new to both gets a free uid on each, next to that terminal's own
    const [o1, o2] = [await w1.putUser(userFromJson({ id: 'new', name: 'New' })), await w2.putUser(userFromJson({ id: 'new', name: 'New' }))];
    expect([o1.user.uid, o2.user.uid]).toEqual([2, 701]);
    // an update by user ID lands in each terminal's own slot
    await w2.putUser(userFromJson({ id: 'same', name: 'Renamed by the server' }));
    expect(sim.terminals[1].userByUid(700)?.name).toBe('Renamed by the server');
    expect(sim.terminals[1].userCount).toBe(2);
    await sim.terminals[1].edit('same', { name: 'Edited on 2' });
    expect((await w1.scan()).changed).toEqual([]);
    expect((await w2.scan()).changed.map((c) => [c.user.id, c.zk.uid, c.user.name])).toEqual([['same', 700, 'Edited on 2']]);
  });
});
