// The realtime log: SUBSCRIBE_LOG, LOG_EVENT pushes within the window, LOG_ACK.
import { afterEach, describe, expect, it } from 'vitest';
import { Command, EventCode, FrameKind, type EventRecord } from '../src/codec/index.js';
import { userFromJson } from '../src/model/user.js';
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

async function setup(o: Partial<SimulatorOptions> = {}) {
  sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING, ...o });
  const c = await SimClient.connect(sim.ports()[0], { key });
  clients.push(c);
  return { sim, t: sim.terminals[0], c };
}

const person = (id: string) => userFromJson({ id, name: `Person ${id}` });

/** Receives LOG_EVENT frames until `n` events have arrived. */
async function receive(c: SimClient, n: number): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  while (out.length < n) out.push(...(await c.nextLogEvent()).events);
  return out;
}

/** A round trip through the terminal: any push that was due has been written before the answer. */
async function settle(c: SimClient): Promise<void> {
  await c.request(Command.PING);
  await c.request(Command.PING);
}

describe('SUBSCRIBE_LOG', () => {
  it('respects the window: with window 2 and 5 events only 2 arrive until LOG_ACK', async () => {
    const { t, c } = await setup();
    for (let i = 1; i <= 5; i++) await t.enroll(person(`w${i}`));
    const head = await c.subscribe(0, 2);
    expect(head).toMatchObject({ logEpoch: t.ring.logEpoch, firstEventId: 1, lastEventId: 5 });
    expect((await receive(c, 2)).map((e) => e.id)).toEqual([1, 2]);
    await settle(c);
    expect(c.bufferedEvents).toBe(0);
    // acknowledging the first event only opens room for one more
    c.ack(1);
    expect((await receive(c, 1)).map((e) => e.id)).toEqual([3]);
    await settle(c);
    expect(c.bufferedEvents).toBe(0);
    c.ack(3);
    expect((await receive(c, 2)).map((e) => e.id)).toEqual([4, 5]);
    await settle(c);
    expect(c.bufferedEvents).toBe(0);
    // new events are pushed in realtime once acknowledged room exists
    c.ack(5);
    await t.enroll(person('w6'));
    const [e6] = await receive(c, 1);
    expect(e6).toMatchObject({ id: 6, userId: 'w6', code: EventCode.USER_ENROLL_SUCCESS, param: 1 });
  });

  it('answers the subscription before pushing, sends the backlog after afterId, then new events batched', async () => {
    const { t, c } = await setup();
    for (let i = 1; i <= 3; i++) await t.enroll(person(`b${i}`));
    await c.subscribe(1, 0); // window 0 = 256
    const backlog = await receive(c, 2);
    expect(backlog.map((e) => e.id)).toEqual([2, 3]);
    const subAnswer = c.received.findIndex((f) => f.kind === FrameKind.RESPONSE && f.command === Command.SUBSCRIBE_LOG);
    const firstPush = c.received.findIndex((f) => f.command === Command.LOG_EVENT);
    expect(subAnswer).toBeGreaterThanOrEqual(0);
    expect(subAnswer).toBeLessThan(firstPush);
    c.ack(3);
    // 40 users written by one PUT_USERS: their events travel in one LOG_EVENT frame
    await c.putUsers(Array.from({ length: 40 }, (_, i) => person(`p${i}`)));
    const push = await c.nextLogEvent();
    expect(push.logEpoch).toBe(t.ring.logEpoch);
    expect(push.events.map((e) => e.id)).toEqual(Array.from({ length: 40 }, (_, i) => 4 + i));
    expect(push.events.every((e) => e.param === 0)).toBe(true);
  });

  it('a new SUBSCRIBE_LOG replaces the previous one', async () => {
    const { t, c } = await setup();
    for (let i = 1; i <= 4; i++) await t.enroll(person(`s${i}`));
    await c.subscribe(0, 1);
    expect((await receive(c, 1)).map((e) => e.id)).toEqual([1]);
    await c.subscribe(2, 10);
    expect((await receive(c, 2)).map((e) => e.id)).toEqual([3, 4]);
  });

  it('after a factory reset, pushes carry the new logEpoch and IDs restart at 1', async () => {
    const { t, c } = await setup();
    await t.enroll(person('before'));
    const head = await c.subscribe(0, 100);
    await receive(c, 1);
    c.ack(1);
    t.factoryReset();
    const push = await c.nextLogEvent();
    expect(push.logEpoch).not.toBe(head.logEpoch);
    expect(push.events[0]).toMatchObject({ id: 1, code: EventCode.FACTORY_RESET });
    await t.enroll(person('after'));
    const [e2] = await receive(c, 1);
    expect(e2).toMatchObject({ id: 2, userId: 'after' });
  });
});

describe('idle timeout', () => {
  it('the terminal closes a session that has received nothing for 3 x heartbeatSec', async () => {
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING });
    const c = await SimClient.connect(sim.ports()[0], { key, heartbeatSec: 1 });
    clients.push(c);
    await c.getInfo();
    expect(sim.terminals[0].connected).toBe(true);
    await c.closed; // about 3 s of silence
    expect(sim.terminals[0].connected).toBe(false);
  });
});
