// The simulated terminal follows PROTOCOL.md 1.1 where 1.0 left things open:
// the PUT_USERS flag byte and version, cards identified by their data, the
// LIST_USERS digest and the DISABLED bit, the window, a log reset during a
// subscription, BUSY as a RESPONSE (fault "busy"), records a server cannot read
// (fault "unreadable"), and a terminal configured as a protocol 1.0 device.
import { afterEach, describe, expect, it } from 'vitest';
import { Command, EventCode, FrameKind, Status, UserFlag, decodeErrorPayload, decodeGetUsersResponse, decodeUser, encodeGetUsersRequest, isProtocolError, type EventRecord } from '../src/codec/index.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator, type SimulatorOptions } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SimClient } from './helpers/sim-client.js';

const key = DEV_COMM_KEY;
let sim: Simulator | undefined;
const clients: SimClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await sim?.close();
  sim = undefined;
});

async function setup(o: Partial<SimulatorOptions> = {}, terminal = 0) {
  sim ??= await Simulator.start({ terminals: 2, commKey: key, timing: ZERO_TIMING, ...o });
  const c = await SimClient.connect(sim.ports()[terminal], { key });
  clients.push(c);
  return { sim, t: sim.terminals[terminal], c };
}

const person = (id: string, extra: Record<string, unknown> = {}) => userFromJson({ id, name: `Person ${id}`, ...extra });

async function receive(c: SimClient, n: number): Promise<{ epoch: number; events: EventRecord[] }[]> {
  const out: { epoch: number; events: EventRecord[] }[] = [];
  let got = 0;
  while (got < n) {
    const e = await c.nextLogEvent();
    out.push({ epoch: e.logEpoch, events: e.events });
    got += e.events.length;
  }
  return out;
}

/** two round trips: any push that was due has been written before the second answer */
async function settle(c: SimClient): Promise<void> {
  await c.request(Command.PING);
  await c.request(Command.PING);
}

describe('PUT_USERS (PROTOCOL.md 5, 1.1)', () => {
  it('clears CREATED and UPDATED, keeps DISABLED, keeps the server version; a device edit counts on from it', async () => {
    const { t, c } = await setup();
    const sent: UserRecord = { ...person('d1', { cards: [{ type: 1, data: 'd1d1' }] }), flag: 0x83, version: 77 };
    expect(await c.putUsers([sent])).toEqual([Status.OK]);
    const [stored] = (await c.getUsers(['d1'])) as UserRecord[];
    expect([stored.flag, stored.version]).toEqual([UserFlag.DISABLED, 77]);
    expect((await c.listUsers()).entries[0]).toMatchObject({ userId: 'd1', flag: 0x80, version: 77 });
    // an enabled record with only CREATED set is stored with flag 0
    expect(await c.putUsers([{ ...person('d2'), flag: UserFlag.CREATED_ON_DEVICE, version: 5 }])).toEqual([Status.OK]);
    expect(t.getUser('d2')).toMatchObject({ flag: 0, version: 5 });
    // a change at the terminal counts on from the server's version and marks UPDATED
    const edited = await t.edit('d1', { name: 'At the door' });
    expect([edited.flag, edited.version]).toEqual([UserFlag.DISABLED | UserFlag.UPDATED_ON_DEVICE, 78]);
  });

  it('identifies a card by its data alone: another type with the same data is DUPLICATE_CARD, the same data twice is INVALID_USER', async () => {
    const { c } = await setup();
    expect(await c.putUsers([person('a', { cards: [{ type: 1, data: 'aabbcc' }] })])).toEqual([Status.OK]);
    expect(await c.putUsers([person('b', { cards: [{ type: 0x0a, data: 'aabbcc' }] })])).toEqual([Status.DUPLICATE_CARD]);
    expect(await c.putUsers([person('b', { cards: [{ type: 1, data: '0101' }, { type: 6, data: '0101' }] })])).toEqual([Status.INVALID_USER]);
    // the owner itself may keep its card under another type
    expect(await c.putUsers([person('a', { cards: [{ type: 4, data: 'aabbcc' }] })])).toEqual([Status.OK]);
  });
});

describe('LIST_USERS digest and the DISABLED bit (PROTOCOL.md 5)', () => {
  it('a disabled user and the same user enabled have equal digests; only the entry flag tells them apart', async () => {
    const { c: c1 } = await setup({}, 0);
    const { c: c2 } = await setup({}, 1);
    const u = person('same', { cards: [{ type: 1, data: '5a5a' }], accessGroups: [2] });
    expect(await c1.putUsers([{ ...u, flag: UserFlag.DISABLED }])).toEqual([0]);
    expect(await c2.putUsers([u])).toEqual([0]);
    const [e1] = (await c1.listUsers()).entries;
    const [e2] = (await c2.listUsers()).entries;
    expect(e1.digest.equals(e2.digest)).toBe(true);
    expect([e1.flag & UserFlag.DISABLED, e2.flag & UserFlag.DISABLED]).toEqual([0x80, 0]);
  });
});

describe('the realtime log (PROTOCOL.md 5, SUBSCRIBE_LOG)', () => {
  it('a log reset during a subscription: the new epoch waits until the old events are acknowledged, then starts at ID 1', async () => {
    const { t, c } = await setup();
    for (let i = 1; i <= 3; i++) await t.enroll(person(`old${i}`));
    const head = await c.subscribe(0, 10);
    const old = await receive(c, 3);
    expect(old.flatMap((b) => b.events.map((e) => e.id))).toEqual([1, 2, 3]);
    t.factoryReset();
    await t.enroll(person('new1'));
    await settle(c);
    expect(c.bufferedEvents).toBe(0); // events 1..3 of the old epoch are still unacknowledged
    c.ack(2);
    await settle(c);
    expect(c.bufferedEvents).toBe(0); // event 3 still is
    c.ack(3);
    const [first] = await receive(c, 2);
    expect(first.epoch).toBe(t.ring.logEpoch);
    expect(first.epoch).not.toBe(head.logEpoch);
    expect(first.events.map((e) => [e.id, e.code, e.userId])).toEqual([
      [1, EventCode.FACTORY_RESET, ''],
      [2, EventCode.USER_ENROLL_SUCCESS, 'new1'],
    ]);
    // the subscription goes on in the new epoch
    await t.enroll(person('new2'));
    const [next] = await receive(c, 1);
    expect([next.epoch, next.events[0].id]).toEqual([t.ring.logEpoch, 3]);
  });

  it('with nothing outstanding, a reset goes on at once; the window applies to the new epoch', async () => {
    const { t, c } = await setup();
    await t.enroll(person('x'));
    await c.subscribe(0, 2);
    await receive(c, 1);
    c.ack(1);
    await settle(c);
    t.factoryReset();
    for (let i = 1; i <= 4; i++) await t.enroll(person(`n${i}`));
    const got = await receive(c, 2);
    expect(got.flatMap((b) => b.events.map((e) => e.id))).toEqual([1, 2]);
    await settle(c);
    expect(c.bufferedEvents).toBe(0); // window 2: nothing more until acknowledged
    c.ack(2);
    expect((await receive(c, 2)).flatMap((b) => b.events.map((e) => e.id))).toEqual([3, 4]);
  });

  it('never has more than the window in flight, and IDs strictly ascend across frames', async () => {
    const { t, c } = await setup();
    const window = 7;
    await c.subscribe(0, window);
    let acked = 0;
    let last = 0;
    let received = 0;
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 5; i++) await t.enroll(person(`r${round}-${i}`));
      await settle(c);
      while (c.bufferedEvents > 0) {
        const e = await c.nextLogEvent();
        for (const ev of e.events) {
          expect(ev.id).toBeGreaterThan(last);
          last = ev.id;
          received++;
        }
        expect(last - acked, 'events in flight').toBeLessThanOrEqual(window);
      }
      // acknowledge part of what arrived, lagging behind
      acked = Math.max(acked, last - 3);
      c.ack(acked);
    }
    // drain the rest, acknowledging everything as it comes
    while (received < 60) {
      c.ack(last);
      const e = await c.nextLogEvent();
      for (const ev of e.events) {
        expect(ev.id).toBe(last + 1);
        last = ev.id;
        received++;
      }
      expect(e.events.length).toBeLessThanOrEqual(window);
    }
    expect(last).toBe(60);
  });

  it('refuses a window above 4096 with ERROR BAD_PAYLOAD, and the session goes on', async () => {
    const { c } = await setup();
    const payload = Buffer.alloc(8);
    payload.writeUInt16LE(4097, 4);
    const f = await c.request(Command.SUBSCRIBE_LOG, payload);
    expect([f.kind, f.status]).toEqual([FrameKind.ERROR, Status.BAD_PAYLOAD]);
    expect(await c.subscribe(0, 4096)).toBeTruthy();
  });
});

describe('fault "busy": BUSY as a RESPONSE (or, on request, as an ERROR frame)', () => {
  it('answers the next N requests of one command BUSY, then serves them; other commands are unaffected', async () => {
    const { t, c } = await setup();
    await t.enroll(person('p'));
    t.busy(2, { command: Command.GET_USERS });
    const ask = () => c.request(Command.GET_USERS, encodeGetUsersRequest({ infoMask: 0xffff, userIds: ['p'] }));
    for (let i = 0; i < 2; i++) {
      const f = await ask();
      expect([f.kind, f.status, f.payload.length]).toEqual([FrameKind.RESPONSE, Status.BUSY, 0]);
      expect((await c.request(Command.PING)).status).toBe(0);
      expect((await c.getInfo()).userCount).toBe(1);
    }
    const ok = await ask();
    expect(ok.status).toBe(0);
    expect(decodeUser(decodeGetUsersResponse(ok.payload).results[0].record).user.id).toBe('p');
    // the ERROR form, as a 1.0 terminal might send it
    t.busy(1, { asError: true });
    const e = await c.request(Command.GET_INFO);
    expect([e.kind, e.seq > 0, e.command, e.status]).toEqual([FrameKind.ERROR, true, Command.GET_INFO, Status.BUSY]);
    expect(decodeErrorPayload(e.payload)).toMatch(/busy/);
    expect(t.busyRemaining).toBe(0);
  });
});

describe('fault "unreadable": a record in a format the server cannot read', () => {
  it('GET_USERS returns that user with formatVersion 2 (the envelope intact) until the fault ends', async () => {
    const { t, c } = await setup();
    await t.enroll(person('odd'));
    await t.enroll(person('fine'));
    t.unreadable(60_000, 'odd');
    const f = await c.request(Command.GET_USERS, encodeGetUsersRequest({ infoMask: 0xffff, userIds: ['odd', 'fine'] }));
    const r = decodeGetUsersResponse(f.payload).results;
    expect(r.map((x) => x.status)).toEqual([0, 0]);
    expect(r[0].record[32]).toBe(2);
    let err: unknown;
    try {
      decodeUser(r[0].record);
    } catch (e) {
      err = e;
    }
    expect(isProtocolError(err) && err.code).toBe('BAD_FORMAT_VERSION');
    expect(decodeUser(r[1].record).user.id).toBe('fine');
    t.unreadable(0, 'odd'); // ended ("upgrade"): readable again
    expect(((await c.getUsers(['odd'])) as UserRecord[])[0].id).toBe('odd');
  });
});

describe('a terminal configured as a protocol 1.0 device', () => {
  it('offers versions 1..1 in HELLO', async () => {
    const { c } = await setup({ maxVersion: 1 });
    expect([c.hello.minVersion, c.hello.maxVersion]).toEqual([1, 1]);
    expect((await c.getInfo()).deviceId).toBe(1001);
  });
});
