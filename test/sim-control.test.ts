// The control API (JSON over HTTP): on-device actions seen through the protocol,
// inspection, errors, and faults.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Command, EventCode, ORIGIN_DEVICE, Status, UserFlag, type UserRecord } from '../src/codec/index.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator, type SimulatorOptions } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SimClient } from './helpers/sim-client.js';
import { waitFor } from './helpers/wait.js';

const key = DEV_COMM_KEY;
let sim: Simulator | undefined;
const clients: SimClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await sim?.close();
  sim = undefined;
});

async function start(o: Partial<SimulatorOptions> = {}) {
  sim = await Simulator.start({ terminals: 2, commKey: key, timing: ZERO_TIMING, control: 0, ...o });
  return sim;
}

async function connect(port: number): Promise<SimClient> {
  const c = await SimClient.connect(port, { key });
  clients.push(c);
  return c;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${sim!.controlPort}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

describe('control API: terminals and on-device actions', () => {
  it('GET /terminals lists id, deviceId, port, connection, user count and last event ID', async () => {
    const s = await start({ deviceIdBase: 500 });
    const c = await connect(s.ports()[1]);
    await c.getInfo();
    const { status, json } = await api('GET', '/terminals');
    expect(status).toBe(200);
    expect(json.terminals).toEqual([
      expect.objectContaining({ id: '1', deviceId: 501, port: s.ports()[0], connected: false, userCount: 0, lastEventId: 0 }),
      expect.objectContaining({ id: '2', deviceId: 502, port: s.ports()[1], connected: true, userCount: 0, lastEventId: 0 }),
    ]);
  });

  it('an enrollment at the terminal is visible via GET_USERS and as a param-1 event via GET_LOG', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    const r = await api('POST', '/terminals/1/users', { id: 'jo 1,a', name: 'Jo', cards: [{ type: 1, data: 'c0ffee' }], pin: '1234' });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ id: 'jo 1,a', name: 'Jo', flag: UserFlag.CREATED_ON_DEVICE, version: 1, pinSet: true });
    const [u] = (await c.getUsers(['jo 1,a'])) as UserRecord[];
    expect(u).toMatchObject({ id: 'jo 1,a', name: 'Jo', flag: UserFlag.CREATED_ON_DEVICE, version: 1 });
    expect(u.cards[0].data.toString('hex')).toBe('c0ffee');
    const log = await c.getLog(0);
    expect(log.events).toEqual([expect.objectContaining({ id: 1, userId: 'jo 1,a', code: EventCode.USER_ENROLL_SUCCESS, param: ORIGIN_DEVICE })]);
    // the same ID again: 409
    const again = await api('POST', '/terminals/1/users', { id: 'jo 1,a' });
    expect(again.status).toBe(409);
    expect(again.json.error).toMatch(/already exists/);
    // only terminal 1 changed
    expect((await api('GET', '/terminals/2/users')).json.users).toEqual([]);
    expect((await api('GET', '/terminals')).json.terminals[0]).toMatchObject({ userCount: 1, lastEventId: 1 });
  });

  it('an edit replaces the given fields, appends cards, sets UPDATED and logs an update with param 1', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    expect(await c.putUsers([{ ...userFromJson({ id: '42', name: 'Server', accessGroups: [3], cards: [{ type: 1, data: '01' }] }), version: 1 }])).toEqual([0]);
    const r = await api('PATCH', '/terminals/1/users/42', { name: 'At the door', addCards: [{ type: 2, data: '02' }], endTime: 2000000000 });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: '42', name: 'At the door', accessGroups: [3], endTime: 2000000000, flag: UserFlag.UPDATED_ON_DEVICE, version: 2 });
    expect(r.json.cards.map((x: { data: string }) => x.data)).toEqual(['01', '02']);
    const list = await c.listUsers();
    expect(list.entries[0]).toMatchObject({ userId: '42', flag: UserFlag.UPDATED_ON_DEVICE, version: 2 });
    const ev = (await c.getLog(1)).events;
    expect(ev.map((e) => [e.userId, e.code, e.param])).toEqual([['42', EventCode.USER_UPDATE_SUCCESS, 1]]);
    expect((await api('GET', '/terminals/1/users/42')).json.name).toBe('At the door');
  });

  it('a delete at the terminal logs param 1; the user is gone (404)', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await api('POST', '/terminals/1/users', { id: 'gone' });
    expect((await api('DELETE', '/terminals/1/users/gone')).status).toBe(204);
    expect((await api('GET', '/terminals/1/users/gone')).status).toBe(404);
    expect((await api('DELETE', '/terminals/1/users/gone')).status).toBe(404);
    expect(await c.getUsers(['gone'])).toEqual([Status.USER_NOT_FOUND]);
    const ev = (await api('GET', '/terminals/1/events?after=1')).json;
    expect(ev.events).toEqual([expect.objectContaining({ id: 2, userId: 'gone', code: EventCode.USER_DELETE_SUCCESS, param: 1, codeName: 'USER_DELETE_SUCCESS' })]);
  });

  it('device rules: user capacity (USER_FULL) and per-user limits (INVALID_USER)', async () => {
    await start({ userCapacity: 1 });
    expect((await api('POST', '/terminals/1/users', { id: 'a', cards: [{ type: 1, data: 'aa' }] })).status).toBe(201);
    const full = await api('POST', '/terminals/1/users', { id: 'b' });
    expect([full.status, full.json.code]).toEqual([409, 'USER_FULL']);
    expect((await api('PATCH', '/terminals/1/users/a', { addCards: [{ type: 1, data: 'bb' }] })).status).toBe(200);
    const cards = Array.from({ length: 7 }, (_, i) => ({ type: 1, data: `c${i}` }));
    const tooMany = await api('PATCH', '/terminals/1/users/a', { addCards: cards });
    expect([tooMany.status, tooMany.json.code]).toEqual([400, 'INVALID_USER']);
    expect(tooMany.json.error).toMatch(/at most 8 cards/);
    const groups = await api('PATCH', '/terminals/1/users/a', { accessGroups: Array.from({ length: 17 }, (_, i) => i) });
    expect(groups.status).toBe(400);
    // nothing of the failed edits was stored
    expect((await api('GET', '/terminals/1/users/a')).json.cards).toHaveLength(2);
  });

  it('DUPLICATE_CARD on enroll and edit', async () => {
    await start();
    await api('POST', '/terminals/1/users', { id: 'a', cards: [{ type: 1, data: 'aa' }] });
    await api('POST', '/terminals/1/users', { id: 'b' });
    const dup = await api('POST', '/terminals/1/users', { id: 'c', cards: [{ type: 4, data: 'aa' }] });
    expect([dup.status, dup.json.code]).toEqual([409, 'DUPLICATE_CARD']);
    const dupEdit = await api('PATCH', '/terminals/1/users/b', { addCards: [{ type: 1, data: 'aa' }] });
    expect([dupEdit.status, dupEdit.json.code]).toEqual([409, 'DUPLICATE_CARD']);
  });

  it('errors: malformed JSON 400, unknown terminal 404, wrong method 405, oversize body 413, bad fault 400', async () => {
    await start();
    const bad = await api('POST', '/terminals/1/users', '{"id": ');
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/malformed JSON/);
    expect((await api('POST', '/terminals/1/users', { id: '' })).status).toBe(400);
    expect((await api('GET', '/terminals/3/users')).status).toBe(404);
    expect((await api('GET', '/terminals/0')).status).toBe(404);
    expect((await api('GET', '/nothing')).status).toBe(404);
    expect((await api('PUT', '/terminals/1/users')).status).toBe(405);
    const big = await api('POST', '/terminals/1/users', JSON.stringify({ id: 'big', name: 'x'.repeat(1024 * 1024 + 10) }));
    expect(big.status).toBe(413);
    expect((await api('POST', '/terminals/1/faults', { type: 'explode' })).status).toBe(400);
    expect((await api('POST', '/terminals/1/faults', { type: 'stall' })).status).toBe(400);
    expect((await api('GET', '/terminals/1/events?after=x')).status).toBe(400);
  });
});

describe('control API: faults', () => {
  it('reset: users and log cleared, IDs restart at 1 under a new logEpoch', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await api('POST', '/terminals/1/users', { id: 'a' });
    await api('POST', '/terminals/1/users', { id: 'b' });
    const before = await c.getInfo();
    const r = await api('POST', '/terminals/1/faults', { type: 'reset' });
    expect(r.status).toBe(200);
    const after = await c.getInfo();
    expect(after.logEpoch).not.toBe(before.logEpoch);
    expect(r.json.logEpoch).toBe(after.logEpoch);
    expect(after.userCount).toBe(0);
    expect([after.firstEventId, after.lastEventId]).toEqual([1, 1]);
    expect((await c.getLog(0)).events[0]).toMatchObject({ id: 1, code: EventCode.FACTORY_RESET });
    await api('POST', '/terminals/1/users', { id: 'c' });
    expect((await c.getLog(1)).events[0]).toMatchObject({ id: 2, userId: 'c' });
  });

  it('drop closes the connection; the terminal accepts the server again', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    expect((await api('POST', '/terminals/1/faults', { type: 'drop' })).status).toBe(200);
    await c.closed;
    expect(s.terminals[0].connected).toBe(false);
    const c2 = await connect(s.ports()[0]);
    expect((await c2.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('refuse: connections are refused for the duration, then accepted on the same port', async () => {
    const s = await start();
    const port = s.ports()[0];
    await api('POST', '/terminals/1/faults', { type: 'refuse', ms: 300 });
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('error', (e) => resolve(e));
      sock.once('data', () => {
        sock.destroy();
        resolve(undefined);
      });
    });
    expect(err?.code).toBe('ECONNREFUSED');
    let c: SimClient | undefined;
    await waitFor(async () => {
      c = await SimClient.connect(port, { key }).catch(() => undefined);
      return c !== undefined;
    });
    clients.push(c!);
    expect((await c!.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('corrupt: the next frame the terminal sends fails its CRC check', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await api('POST', '/terminals/1/faults', { type: 'corrupt' });
    await expect(c.getInfo()).rejects.toThrow(/closed/);
    expect(c.decodeError?.message).toMatch(/CRC/);
    // only one frame is corrupted
    const c2 = await connect(s.ports()[0]);
    expect((await c2.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });

  it('stall: answers are held until the stall ends', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await api('POST', '/terminals/1/faults', { type: 'stall', ms: 300 });
    const t0 = Date.now();
    await c.getInfo();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('blackhole: requests are read and never answered; after it ends the session serves again', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    await api('POST', '/terminals/1/faults', { type: 'blackhole', ms: 200 });
    await expect(c.request(Command.GET_INFO, undefined, 600)).rejects.toThrow(/no answer/);
    expect(c.isClosed).toBe(false);
    expect((await c.getInfo()).deviceId).toBe(s.terminals[0].deviceId);
  });
});

describe('control API: faults busy and unreadable (for PROTOCOL.md 1.1 section 4.4 and GET_USERS)', () => {
  it('busy answers requests BUSY over the wire; unreadable garbles a record; bad bodies are 400 naming every fault kind', async () => {
    const s = await start();
    const c = await connect(s.ports()[0]);
    expect((await api('POST', '/terminals/1/users', { id: 'u1' })).status).toBe(201);
    const busy = await api('POST', '/terminals/1/faults', { type: 'busy', count: 1, command: 'GET_USERS' });
    expect(busy).toMatchObject({ status: 200, json: { ok: true, type: 'busy', count: 1, command: 'GET_USERS', frame: 'response' } });
    await expect(c.getUsers(['u1'])).rejects.toThrow(/status -7/);
    expect(((await c.getUsers(['u1'])) as UserRecord[])[0].id).toBe('u1');
    const unreadable = await api('POST', '/terminals/1/faults', { type: 'unreadable', ms: 60_000, userId: 'u1' });
    expect(unreadable).toMatchObject({ status: 200, json: { type: 'unreadable', ms: 60_000, userId: 'u1' } });
    await expect(c.getUsers(['u1'])).rejects.toThrow(/formatVersion 2/);
    const bad = await api('POST', '/terminals/1/faults', { type: 'nonsense' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toBe('fault type must be one of drop, stall, corrupt, refuse, reset, blackhole, busy, unreadable');
    expect((await api('POST', '/terminals/1/faults', { type: 'busy', command: 'LOG_ACK' })).status).toBe(400);
    expect((await api('POST', '/terminals/1/faults', { type: 'busy', frame: 'maybe' })).status).toBe(400);
    expect((await api('POST', '/terminals/1/faults', { type: 'unreadable' })).status).toBe(400);
    expect((await api('POST', '/terminals/3/faults', { type: 'busy' })).json.error).toMatch(/ids are 1\.\.2/);
  });
});
