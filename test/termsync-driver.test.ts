// The termsync protocol as a driver of the protocol-neutral port
// (src/drivers/termsync): the mapping of event codes, origins and result codes
// to domain facts and reasons, as tables; then the driver against the real
// simulator over loopback: what happens at the terminal arrives as facts, a
// refusal as a reason, and the digests compare with the server's records.
import net from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CAP_FACES, CAP_PHOTO, EventCode, ORIGIN_DEVICE, ORIGIN_SERVER, Status } from '../src/codec/index.js';
import { eventToFact, eventsToFacts, partsFromCapabilities, statusToReason, termsyncDriver, writeResult } from '../src/drivers/termsync/index.js';
import type { EventRecord } from '../src/model/event.js';
import { USER_DISABLED } from '../src/model/limits.js';
import { ALL_PARTS, carriesAll } from '../src/model/parts.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { DriverError, type DeviceFact, type DeviceSession } from '../src/sync/ports.js';
import { waitFor } from './helpers/wait.js';

const ev = (code: number, param: number, userId = 'u1', id = 7): EventRecord => ({ id, dateTime: 1_700_000_000, deviceId: 1, userId, code, param, flags: 0 });

describe('termsync mapping: event codes and origins to facts', () => {
  const changed = [EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_PARTIAL_UPDATE_SUCCESS];
  const deleted = [EventCode.USER_DELETE_SUCCESS, EventCode.USER_DELETE_ALL_SUCCESS];
  const reset = [EventCode.FACTORY_RESET, EventCode.DATABASE_RESET];
  const all = Object.values(EventCode).filter((v): v is number => typeof v === 'number');

  it.each(all.map((code) => [EventCode[code], code]))('%s', (_name, code) => {
    const want = changed.includes(code) ? 'user-changed' : deleted.includes(code) ? 'user-deleted' : reset.includes(code) ? 'log-reset' : 'other';
    for (const [param, origin] of [
      [ORIGIN_DEVICE, 'device'],
      [ORIGIN_SERVER, 'server'],
    ] as const) {
      const f = eventToFact(ev(code, param));
      expect(f).toMatchObject({ kind: want, ref: 7, origin, at: 1_700_000_000_000, detail: EventCode[code] });
      if (want === 'user-changed' || want === 'user-deleted') expect(f.userId).toBe('u1');
      else expect(f.userId).toBeUndefined();
    }
  });

  it('a delete-all names no user; a user event without a user is no user change', () => {
    expect(eventToFact(ev(EventCode.USER_DELETE_ALL_SUCCESS, ORIGIN_DEVICE, ''))).toEqual({ kind: 'user-deleted', ref: 7, origin: 'device', at: 1_700_000_000_000, detail: 'USER_DELETE_ALL_SUCCESS' });
    expect(eventToFact(ev(EventCode.USER_UPDATE_SUCCESS, ORIGIN_DEVICE, '')).kind).toBe('other');
    expect(eventToFact(ev(0x7777, ORIGIN_DEVICE)).detail).toBe('EVENT_0x7777');
  });

  it('a jump in event IDs is a log gap, reported before the event after the hole; repeats pass', () => {
    const e = (id: number) => ev(EventCode.USER_ENROLL_SUCCESS, ORIGIN_DEVICE, `u${id}`, id);
    expect(eventsToFacts([e(5), e(6)], 4)).toMatchObject({ after: 6, facts: [{ ref: 5 }, { ref: 6 }] });
    const r = eventsToFacts([e(5), e(9), e(9), e(10)], 4);
    expect(r.after).toBe(10);
    expect(r.facts.map((f) => [f.kind, f.ref])).toEqual([
      ['user-changed', 5],
      ['log-gap', 8],
      ['user-changed', 9],
      ['user-changed', 9],
      ['user-changed', 10],
    ]);
    expect(r.facts[1].detail).toBe('events 6..8 were lost before the server read them');
    expect(eventsToFacts([e(3)], 4)).toMatchObject({ after: 4, facts: [{ kind: 'user-changed', ref: 3 }] });
  });
});

describe('termsync mapping: result codes to reasons', () => {
  const want: Record<string, string> = {
    DUPLICATE_CARD: 'duplicate-credential',
    DUPLICATE_FINGER: 'duplicate-credential',
    DUPLICATE_USER_ID: 'duplicate-credential',
    USER_FULL: 'full',
    USER_NOT_FOUND: 'not-found',
    BUSY: 'busy',
    TIMEOUT: 'transport',
    BAD_FRAME: 'unreadable',
    BAD_CHECKSUM: 'unreadable',
  };
  const codes = Object.values(Status).filter((v): v is number => typeof v === 'number' && v !== Status.OK);

  it.each(codes.map((c) => [Status[c], c]))('%s', (name, code) => {
    expect(statusToReason(code)).toBe(want[name] ?? 'invalid');
    expect(writeResult(code)).toEqual({ ok: false, reason: want[name] ?? 'invalid', detail: name, code });
  });

  it('OK is success; a code of a later version is invalid, named by its number', () => {
    expect(writeResult(Status.OK)).toEqual({ ok: true });
    expect(writeResult(-999)).toEqual({ ok: false, reason: 'invalid', detail: 'STATUS_-999', code: -999 });
  });

  it('the parts follow the HELLO capability bits', () => {
    expect(carriesAll(partsFromCapabilities(CAP_PHOTO | CAP_FACES))).toBe(true);
    expect(partsFromCapabilities(0)).toEqual({ ...ALL_PARTS, photo: false, faces: 0 });
    expect(partsFromCapabilities(CAP_FACES)).toMatchObject({ photo: false, faces: 5 });
  });
});

// ----------------------------------------------------------- over loopback

let sim: Simulator | undefined;
const sessions: DeviceSession[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close('test over');
  await sim?.close();
  sim = undefined;
});

const driver = termsyncDriver({ heartbeatSec: 30, requestTimeoutMs: 5000, handshakeDeadlineMs: 2000, log: pino({ level: 'silent' }) });

async function open(o: { logCapacity?: number } = {}) {
  sim = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 4100, maxUsersPerBatch: 20, ...o });
  const session = await driver.dial({ terminalId: 't1', host: '127.0.0.1', port: sim.ports()[0], key: DEV_COMM_KEY });
  sessions.push(session);
  return { t: sim.terminals[0], session };
}

/** Collects the facts of a watched session. */
function collect(session: DeviceSession, after = 0) {
  const got: { epoch: number; fact: DeviceFact }[] = [];
  const ready = session.watch(after, (epoch, facts) => {
    for (const fact of facts) got.push({ epoch, fact });
    session.ack(facts[facts.length - 1].ref);
  });
  return { got, ready };
}

const person = (id: string, extra: Record<string, unknown> = {}): UserRecord => userFromJson({ id, name: `Person ${id}`, ...extra });

describe('termsync driver over loopback (real simulator)', () => {
  it('dials, authenticates and declares what the terminal can do', async () => {
    const { session, t } = await open();
    expect(session.identity).toMatchObject({ protocol: 'termsync', deviceId: 4101, userCapacity: t.userCapacity });
    expect(session.capabilities).toMatchObject({ eventLog: 'cursor', realtime: 'all-changes', listing: 'digest', maxBatch: 20 });
    expect(carriesAll(session.capabilities.parts)).toBe(true);
    expect(await session.feedState()).toEqual({ epoch: t.ring.logEpoch, firstRef: 0, lastRef: 0, userCount: 0 });
  });

  it('what happens at the terminal arrives as facts with their origin; the server\'s own writes as origin server', async () => {
    const { session, t } = await open();
    const { got, ready } = collect(session);
    await ready;
    await t.enroll(person('100', { cards: [{ type: 1, data: '0a0b0c0d' }] }));
    await t.edit('100', { name: 'Renamed at the door' });
    expect(await session.putUsers([person('200')])).toEqual([{ ok: true }]);
    await t.remove('100');
    await waitFor(() => got.length >= 4, { message: 'facts did not arrive' });
    expect(got.map((g) => [g.fact.kind, g.fact.userId, g.fact.origin, g.fact.ref])).toEqual([
      ['user-changed', '100', 'device', 1],
      ['user-changed', '100', 'device', 2],
      ['user-changed', '200', 'server', 3],
      ['user-deleted', '100', 'device', 4],
    ]);
    expect(new Set(got.map((g) => g.epoch))).toEqual(new Set([t.ring.logEpoch]));
    expect((await session.feedState()).lastRef).toBe(4);
  });

  it('refusals come back as domain reasons', async () => {
    const { session, t } = await open();
    await t.enroll(person('1', { cards: [{ type: 1, data: 'cafe0001' }] }));
    const res = await session.putUsers([person('2', { cards: [{ type: 1, data: 'cafe0001' }] }), person('3')]);
    expect(res).toEqual([{ ok: false, reason: 'duplicate-credential', detail: 'DUPLICATE_CARD', code: Status.DUPLICATE_CARD }, { ok: true }]);
    expect(await session.deleteUsers(['nobody', '3'])).toEqual([{ ok: false, reason: 'not-found', detail: 'USER_NOT_FOUND', code: Status.USER_NOT_FOUND }, { ok: true }]);
    const read = await session.getUsers(['1', 'nobody']);
    expect(read[0]).toMatchObject({ userId: '1', user: { id: '1', name: 'Person 1' } });
    expect(read[1]).toEqual({ userId: 'nobody', user: null, reason: 'not-found', detail: 'USER_NOT_FOUND', code: Status.USER_NOT_FOUND });
  });

  it('listed digests equal digestOf() of the records the server wrote, the DISABLED bit included', async () => {
    const { session, t } = await open();
    const on = person('on', { pin: '1234', accessGroups: [1, 2] });
    const off = person('off', { disabled: true });
    expect(await session.putUsers([on, off])).toEqual([{ ok: true }, { ok: true }]);
    const listing = await session.listUsers();
    expect(listing.kind).toBe('digest');
    if (listing.kind !== 'digest') return;
    const byId = new Map(listing.entries.map((e) => [e.userId, e.digest]));
    expect(byId.get('on')).toBe(session.digestOf!(on));
    expect(byId.get('off')).toBe(session.digestOf!(off));
    // the DISABLED bit alone makes a difference
    expect(session.digestOf!({ ...off, flag: 0 })).not.toBe(byId.get('off'));
    expect(t.getUser('off')!.flag & USER_DISABLED).toBe(USER_DISABLED);
    // an edit at the terminal changes its digest
    await t.edit('on', { name: 'Changed' });
    const after = await session.listUsers();
    expect(after.kind === 'digest' && after.entries.find((e) => e.userId === 'on')!.digest).not.toBe(session.digestOf!(on));
  });

  it('events overwritten before the server read them arrive as a log gap', async () => {
    const { session, t } = await open({ logCapacity: 8 });
    for (let i = 1; i <= 20; i++) await t.enroll(person(`g${i}`));
    const state = await session.feedState();
    expect([state.firstRef, state.lastRef]).toEqual([13, 20]);
    const { got, ready } = collect(session, 2);
    await ready;
    await waitFor(() => got.length >= 9, { message: 'backlog did not arrive' });
    expect(got[0].fact).toMatchObject({ kind: 'log-gap', ref: 12, origin: 'device', detail: 'events 3..12 were lost before the server read them' });
    expect(got.slice(1).map((g) => g.fact.ref)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
  });

  it('a factory reset arrives as a new epoch with a log-reset fact', async () => {
    const { session, t } = await open();
    const before = t.ring.logEpoch;
    const { got, ready } = collect(session);
    await ready;
    t.factoryReset();
    await waitFor(() => got.some((g) => g.fact.kind === 'log-reset'), { message: 'no log-reset fact' });
    const reset = got.find((g) => g.fact.kind === 'log-reset')!;
    expect(reset.epoch).not.toBe(before);
    expect(reset.epoch).toBe(t.ring.logEpoch);
    expect(reset.fact).toMatchObject({ ref: 1, detail: 'FACTORY_RESET' });
  });

  it('a wrong key and an unreachable terminal fail with DriverError', async () => {
    await open();
    const wrong = await driver.dial({ terminalId: 't1', host: '127.0.0.1', port: sim!.ports()[0], key: Buffer.from('another-site-key-0123456789abcdef') }).catch((e) => e);
    expect(wrong).toBeInstanceOf(DriverError);
    expect((wrong as DriverError).message).toMatch(/handshake with terminal t1 failed/);
    const free = await new Promise<number>((r) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => r(p));
      });
    });
    const down = await driver.dial({ terminalId: 't9', host: '127.0.0.1', port: free, key: DEV_COMM_KEY }).catch((e) => e);
    expect(down).toBeInstanceOf(DriverError);
    expect(down).toMatchObject({ reason: 'transport' });
    expect((down as Error).message).toMatch(/cannot reach terminal t9/);
    // a request on a closed session is a transport failure
    const s = sessions[0];
    await s.close('test');
    await expect(s.getUsers(['1'])).rejects.toMatchObject({ reason: 'transport' });
  });
});
