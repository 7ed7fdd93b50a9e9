// The ZK driver through the engine's port (DeviceSession), against the ZK
// simulator over loopback: dialling with the right and a wrong comm key, facts
// for an enroll (by its event), an edit and a delete (by the poll's table
// diff), no echo of the server's own writes, refusals as domain reasons, and
// terminals whose uid numbering differs.
import { afterEach, describe, expect, it } from 'vitest';
import { zkDriver, parseZkPassword } from '../src/drivers/zk/driver.js';
import { ZK_PARTS } from '../src/drivers/zk/mapping.js';
import type { ZkSession } from '../src/drivers/zk/session.js';
import { emptyUser, hashPin, userFromJson, userToJson } from '../src/model/user.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator, type ZkSimulatorOptions } from '../src/sim/zk/simulator.js';
import { DriverError, type DeviceFact, type DeviceSession } from '../src/sync/ports.js';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function site(o: Partial<ZkSimulatorOptions> = {}, pollSec = 0.1) {
  const sim = await ZkSimulator.start({ terminals: 2, password: 4321, timing: ZERO_ZK_TIMING, ...o });
  closers.push(() => sim.close());
  const driver = zkDriver({ pollSec, requestTimeoutMs: 3000 });
  const dial = async (i: number, key = '4321\n') => {
    const s = await driver.dial({ terminalId: `zk-${i + 1}`, host: '127.0.0.1', port: sim.ports()[i], key: Buffer.from(key) });
    closers.push(() => s.close('test over'));
    return s;
  };
  return { sim, driver, dial };
}

/** Collects the facts of a session's feed. */
function feed(s: DeviceSession) {
  const facts: DeviceFact[] = [];
  const epochs = new Set<number>();
  const waiters: { pred: (f: DeviceFact) => boolean; resolve: (f: DeviceFact) => void }[] = [];
  const started = s.watch(0, (epoch, batch) => {
    epochs.add(epoch);
    for (const f of batch) {
      facts.push(f);
      for (const w of [...waiters]) if (w.pred(f)) waiters.splice(waiters.indexOf(w), 1), w.resolve(f);
    }
    s.ack(batch[batch.length - 1].ref);
  });
  const next = (pred: (f: DeviceFact) => boolean) =>
    new Promise<DeviceFact>((resolve) => {
      const seen = facts.find(pred);
      if (seen) resolve(seen);
      else waiters.push({ pred, resolve });
    });
  return { facts, epochs, started, next };
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await settle(10);
  }
}

describe('ZK driver: dialling', () => {
  it('dials with the right comm key and declares what a ZK terminal can do', async () => {
    const { sim, dial } = await site();
    const s = await dial(0);
    expect(s.identity).toMatchObject({ protocol: 'zk', serial: sim.terminals[0].serialNumber, firmware: sim.terminals[0].firmware });
    expect(s.identity.userCapacity).toBe(sim.terminals[0].userCapacity);
    expect(s.capabilities).toEqual({ eventLog: 'none', realtime: 'new-users-only', listing: 'full-read', maxBatch: expect.any(Number), parts: ZK_PARTS });
    expect(s.remote).toBe(`127.0.0.1:${sim.ports()[0]}`);
    expect(s.closed).toBe(false);
  });

  it('refuses a wrong comm key as invalid, an unreachable terminal as transport, a key that is no number as invalid', async () => {
    const { sim, driver, dial } = await site();
    const wrong = await dial(0, '1234').catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(DriverError);
    expect((wrong as DriverError).reason).toBe('invalid');
    expect((wrong as DriverError).message).toMatch(/refused the comm key/);
    await sim.terminals[1].refuse(10_000);
    const away = await driver.dial({ terminalId: 'zk-2', host: '127.0.0.1', port: sim.ports()[1], key: Buffer.from('4321') }).catch((e: unknown) => e);
    expect((away as DriverError).reason).toBe('transport');
    const notNumber = await dial(0, 'secret').catch((e: unknown) => e);
    expect((notNumber as DriverError).reason).toBe('invalid');
    expect(parseZkPassword(' 987654 \n')).toBe(987654);
    expect(() => parseZkPassword('4294967296')).toThrow(/0\.\.4294967295/);
  });

  it('a session that ends says so once, with its reason', async () => {
    const { sim, dial } = await site();
    const s = await dial(0);
    const ended = new Promise<string>((resolve) => s.onClose(resolve));
    sim.terminals[0].dropConnections();
    expect(await ended).toMatch(/closed/);
    expect(s.closed).toBe(true);
    await expect(s.listUsers()).rejects.toMatchObject({ reason: 'transport' });
    // closed by the server: its reason, once; the terminal sees the connection go
    const s2 = await dial(0);
    const reasons: string[] = [];
    s2.onClose((r) => reasons.push(r));
    await waitUntil(() => sim.terminals[0].connections === 1);
    await s2.close('shutdown');
    await s2.close('again');
    expect(reasons).toEqual(['shutdown']);
    await waitUntil(() => sim.terminals[0].connections === 0);
  });
});

describe('ZK driver: facts', () => {
  it('an enroll by its event, an edit and a delete by the poll; refs ascend; one epoch per session, new each session', async () => {
    const { sim, dial } = await site({}, 0.15);
    const t = sim.terminals[0];
    await t.enroll({ id: 'old', name: 'Before the session' });
    const s = await dial(0);
    const f = feed(s);
    const st = await f.started;
    expect(st.firstRef).toBe(0);

    await t.enroll({ id: '1001', name: 'Ann', card: 987654, password: '42' });
    const enrolled = await f.next((x) => x.userId === '1001');
    expect(enrolled).toMatchObject({ kind: 'user-changed', origin: 'device', detail: 'EF_ENROLLUSER' });
    const [read] = await s.getUsers(['1001']);
    expect(userToJson(read.user!)).toMatchObject({ id: '1001', name: 'Ann', cards: [{ type: 1, data: '000f1206' }], pinSet: true });
    expect(read.user!.pinHash.equals(hashPin('42'))).toBe(true);

    await t.edit('old', { name: 'Edited at the terminal' });
    const edited = await f.next((x) => x.userId === 'old' && x.kind === 'user-changed');
    expect(edited.detail).toMatch(/poll/);
    await t.remove('1001');
    const deleted = await f.next((x) => x.kind === 'user-deleted');
    expect(deleted).toMatchObject({ userId: '1001', origin: 'device' });

    // the users the session found before: none reported (the first read is the baseline)
    expect(f.facts.map((x) => [x.kind, x.userId])).toEqual([
      ['user-changed', '1001'],
      ['user-changed', 'old'],
      ['user-deleted', '1001'],
    ]);
    const refs = f.facts.map((x) => x.ref);
    expect(refs).toEqual([...refs].sort((a, b) => a - b));
    expect(new Set(refs).size).toBe(3);
    expect([...f.epochs]).toEqual([st.epoch]);
    const fs = await s.feedState();
    expect(fs).toMatchObject({ epoch: st.epoch, lastRef: refs[2], userCount: 1 });

    // a new session: a new epoch; what changed while away is reported by its first read
    await s.close('test');
    await t.edit('old', { name: 'Edited while away' });
    const s2 = await dial(0);
    const f2 = feed(s2);
    const st2 = await f2.started;
    expect(st2.epoch).toBeGreaterThan(st.epoch);
    expect(await f2.next((x) => x.userId === 'old')).toMatchObject({ kind: 'user-changed', origin: 'device' });
  });

  it('a read that finds many changes hands them over within the window, the rest after acknowledgements', async () => {
    const { sim, dial } = await site({}, 0);
    const t = sim.terminals[0];
    const s = await dial(0);
    const batches: DeviceFact[][] = [];
    await (s as ZkSession).watch(0, (_e, facts) => batches.push(facts), { window: 3 });
    // seven users enrolled while nobody reads: one read finds them all (the first event's read may find fewer)
    for (let i = 0; i < 7; i++) await t.enroll({ id: `w${i}`, name: `W ${i}` });
    await waitUntil(() => batches.flat().length >= 3);
    await settle(200);
    const handed = () => batches.flat().length;
    expect(handed()).toBe(3);
    while (handed() < 7) {
      const before = handed();
      s.ack(batches[batches.length - 1][batches[batches.length - 1].length - 1].ref);
      await waitUntil(() => handed() > before || handed() === 7);
    }
    expect(batches.every((b) => b.length <= 3)).toBe(true);
    expect(batches.flat().map((f) => f.userId).sort()).toEqual(['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6']);
  });

  it('the server’s own writes and deletes never come back as facts', async () => {
    const { sim, dial } = await site({}, 0.05);
    const t = sim.terminals[0];
    await t.enroll({ id: 'gone-soon', name: 'X' });
    const s = await dial(0);
    const f = feed(s);
    await f.started;
    const u = userFromJson({ id: 'srv-1', name: 'From the server', cards: [{ type: 1, data: '0001e240' }], accessGroups: [3] });
    expect(await s.putUsers([u])).toEqual([{ ok: true }]);
    expect(await s.deleteUsers(['gone-soon', 'never-there'])).toEqual([{ ok: true }, { ok: false, reason: 'not-found', detail: expect.any(String) }]);
    // written as a ZK record: name and card; the access group stays on the server
    expect(t.userById('srv-1')).toMatchObject({ name: 'From the server', card: 123456 });
    expect(t.userById('gone-soon')).toBeUndefined();
    await settle(400); // several polls
    expect(f.facts).toEqual([]);
    // and a later edit at the terminal is still found
    await t.edit('srv-1', { name: 'Changed at the door' });
    expect(await f.next((x) => x.userId === 'srv-1')).toMatchObject({ kind: 'user-changed' });
    const listing = await s.listUsers();
    expect(listing.kind).toBe('full-read');
    if (listing.kind === 'full-read') expect(listing.users.map((x) => [x.id, x.name])).toEqual([['srv-1', 'Changed at the door']]);
  });
});

describe('ZK driver: writes', () => {
  it('refusals come back as domain reasons, per record; the rest are written', async () => {
    const { sim, dial } = await site({ userCapacity: 3 });
    const t = sim.terminals[0];
    await t.enroll({ id: 'holder', card: 777 });
    const s = await dial(0);
    const res = await s.putUsers([
      userFromJson({ id: 'a', name: 'A' }),
      userFromJson({ id: 'dup', cards: [{ type: 1, data: '00000309' }] }),
      userFromJson({ id: 'x'.repeat(30) }),
      userFromJson({ id: 'b', name: 'B' }),
      userFromJson({ id: 'c', name: 'C' }),
    ]);
    expect(res.map((r) => (r.ok ? 'ok' : r.reason))).toEqual(['ok', 'duplicate-credential', 'invalid', 'ok', 'full']);
    expect(t.listUsers().map((u) => u.userId)).toEqual(['holder', 'a', 'b']);
  });

  it('a refusal the driver could not foresee (the card given away at the terminal, unseen yet) is diagnosed after the fact', async () => {
    const { sim, dial } = await site({}, 0);
    const t = sim.terminals[0];
    await t.enroll({ id: 'holder', card: 777 });
    const s = await dial(0);
    await t.edit('holder', { card: 5555 }); // no event, no poll: the driver has not seen it
    const [r] = await s.putUsers([userFromJson({ id: 'late', cards: [{ type: 1, data: '000015b3' }] })]);
    expect(r).toMatchObject({ ok: false, reason: 'duplicate-credential' });
    expect(t.userById('late')).toBeUndefined();
  });

  it('two terminals with different uid numbering get the right users, found by user ID', async () => {
    const { sim, dial } = await site({ uidStart: [1, 700] });
    for (const t of sim.terminals) await t.enroll({ id: 'same', name: 'Same person' });
    await sim.terminals[1].enroll({ id: 'only-2', name: 'Only on two' });
    expect(sim.terminals.map((t) => t.userById('same')?.uid)).toEqual([1, 700]);
    const [s1, s2] = [await dial(0), await dial(1)];
    const users = ['n1', 'n2', 'n3'].map((id) => userFromJson({ id, name: `Name ${id}`, cards: [{ type: 1, data: (0x1000 + Number(id[1])).toString(16).padStart(8, '0') }] }));
    for (const s of [s1, s2]) expect((await s.putUsers(users)).every((r) => r.ok)).toBe(true);
    for (const t of sim.terminals) for (const u of users) expect(t.userById(u.id)).toMatchObject({ name: u.name, card: 0x1000 + Number(u.id[1]) });
    // each terminal numbers them its own way
    expect(sim.terminals[0].userById('n1')!.uid).toBeLessThan(10);
    expect(sim.terminals[1].userById('n1')!.uid).toBeGreaterThan(700);
    // read by user ID on each
    for (const s of [s1, s2]) expect((await s.getUsers(['n2', 'same'])).map((r) => r.user?.name)).toEqual(['Name n2', 'Same person']);
    // a delete by user ID removes that user on each terminal, nothing else
    for (const s of [s1, s2]) expect(await s.deleteUsers(['n2'])).toEqual([{ ok: true }]);
    expect(sim.terminals[0].listUsers().map((u) => u.userId)).toEqual(['same', 'n1', 'n3']);
    expect(sim.terminals[1].listUsers().map((u) => u.userId)).toEqual(['same', 'only-2', 'n1', 'n3']);
    // an edit of a user the terminal holds keeps its slot
    const edited = emptyUser('same');
    edited.name = 'Renamed by the server';
    expect(await s2.putUsers([edited])).toEqual([{ ok: true }]);
    expect(sim.terminals[1].userById('same')).toMatchObject({ uid: 700, name: 'Renamed by the server' });
  });

  it('writes while people enroll at the terminal: no user enrolled at the device is ever overwritten', async () => {
    const { sim, dial } = await site({ timing: { perCommandMs: 1, perUserWriteMs: 1, perUserReadMs: 0, perTemplateWriteMs: 0, frameGapMs: 0 } }, 0);
    const t = sim.terminals[0];
    const s = await dial(0);
    const atDevice = (async () => {
      for (let i = 0; i < 40; i++) await t.enroll({ id: `dev-${i}`, name: `At the door ${i}` });
    })();
    const fromServer = (async () => {
      for (let b = 0; b < 8; b++) {
        const batch = Array.from({ length: 5 }, (_, k) => userFromJson({ id: `srv-${b * 5 + k}`, name: `From the server ${b * 5 + k}` }));
        expect((await s.putUsers(batch)).every((r) => r.ok)).toBe(true);
      }
    })();
    await Promise.all([atDevice, fromServer]);
    const held = t.listUsers();
    expect(held).toHaveLength(80);
    for (let i = 0; i < 40; i++) {
      expect(t.userById(`dev-${i}`)?.name).toBe(`At the door ${i}`);
      expect(t.userById(`srv-${i}`)?.name).toBe(`From the server ${i}`);
    }
    expect(t.disabled).toBe(false);
  });

  it('a plain password and templates read from one ZK terminal go to another; never termsync fingers', async () => {
    const { sim, dial } = await site();
    const [t1, t2] = sim.terminals;
    await t1.enroll({ id: 'p', name: 'Pat', password: '1357', fingers: [{ index: 2, template: 'a1b2c3' }] });
    const s1 = await dial(0);
    const s2 = await dial(1);
    const [r] = await s1.getUsers(['p']);
    expect(await s2.putUsers([r.user!])).toEqual([{ ok: true }]);
    expect(t2.userById('p')).toMatchObject({ name: 'Pat', password: '1357' });
    expect(t2.templatesOf(t2.userById('p')!.uid).map((x) => x.template.toString('hex'))).toEqual(['a1b2c3']);
  });
});
