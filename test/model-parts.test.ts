// Terminals that carry only some parts of a user record (a ZK terminal: a short
// name, one untyped card, a plain password, its own template format, no access
// groups, photo, faces, job codes or validity window): what such a terminal
// holds of a server record, the driver-neutral comparison for reconcile, and the
// merge that never loses a server part the terminal cannot carry.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { USER_DISABLED } from '../src/model/limits.js';
import { mergeDeviceIntoServer, sameForTerminal, usersEqual } from '../src/model/merge.js';
import { ALL_PARTS, MODEL_FINGER_FORMAT, carriesAll, fitForTerminal, fitUtf8, type PartsSupport } from '../src/model/parts.js';
import { emptyUser, hashPin, structuredCloneUser, type UserRecord } from '../src/model/user.js';
import { fullUser, openTemp } from './store-fixtures.js';

/** A terminal like a ZK one, as its driver would declare it. */
const LIMITED: PartsSupport = {
  nameBytes: 23,
  phraseBytes: 0,
  validity: false,
  authModes: false,
  securityLevel: false,
  authGroup: false,
  disabled: false,
  photo: false,
  pin: 'plain',
  cards: { max: 1, maxDataBytes: 4, typed: false },
  fingers: { max: 10, format: 'zk-bio-10' },
  faces: 0,
  accessGroups: 0,
  jobCodes: 0,
};

/** The server's user: every part held, a name longer than 23 bytes, a 4-byte first card. */
function serverUser(id = '42'): UserRecord {
  const u = fullUser(id, 1);
  u.name = 'Augusta Ada King, Countess of Lovelace';
  u.flag = USER_DISABLED;
  return u;
}

/** What the limited terminal reports for the server's user (its driver's decoding). */
function limitedCopy(u: UserRecord): UserRecord {
  const d = fitForTerminal(u, LIMITED);
  d.flag = 0x02; // terminal-side bits mean nothing to the server
  return d;
}

describe('fitForTerminal', () => {
  it('with every part, holds exactly the record (terminal-side flag bits and version dropped)', () => {
    const u = serverUser();
    u.flag |= 0x03;
    u.version = 9;
    const f = fitForTerminal(u, ALL_PARTS);
    expect(usersEqual(f, u)).toBe(true);
    expect([f.flag, f.version]).toEqual([USER_DISABLED, 0]);
    expect(carriesAll(ALL_PARTS)).toBe(true);
    expect(carriesAll(LIMITED)).toBe(false);
  });

  it('with limited parts, keeps what the terminal can hold and nothing else', () => {
    const u = serverUser();
    u.cards = [{ type: 2, data: Buffer.from('0102030405', 'hex') }, { type: 3, data: Buffer.from('000f1206', 'hex') }, { type: 1, data: Buffer.from('aabbccdd', 'hex') }];
    const f = fitForTerminal(u, LIMITED);
    expect(f.name).toBe('Augusta Ada King, Count');
    expect(Buffer.byteLength(f.name)).toBe(23);
    // the 5-byte card does not fit; of the others only the first is kept, untyped
    expect(f.cards).toEqual([{ type: 1, data: Buffer.from('000f1206', 'hex') }]);
    expect(f.pinHash).toEqual(u.pinHash);
    expect([f.phrase, f.setting, f.authGroupId, f.flag, f.photo.length, f.fingers, f.faces, f.accessGroups, f.jobCodes]).toEqual([
      '',
      { startTime: 0, endTime: 0, fingerAuthMode: 0, cardAuthMode: 0, idAuthMode: 0, securityLevel: 0 },
      0,
      0,
      0,
      [],
      [],
      [],
      [],
    ]);
    // the input is untouched and shares no buffer with the result
    expect(u.cards).toHaveLength(3);
    f.pinHash[0] ^= 0xff;
    expect(f.pinHash.equals(u.pinHash)).toBe(false);
  });

  it('cuts text on a character boundary, never inside one', () => {
    expect(fitUtf8('abc', 3)).toBe('abc');
    expect(fitUtf8('aé', 2)).toBe('a');
    expect(fitUtf8('日本語', 8)).toBe('日本');
    expect(fitUtf8('😀x', 3)).toBe('');
    expect(fitUtf8('anything', 0)).toBe('');
  });

  it('keeps fingers only for a terminal of the model\'s template format', () => {
    const u = serverUser();
    expect(fitForTerminal(u, { ...LIMITED, fingers: { max: 10, format: MODEL_FINGER_FORMAT } }).fingers).toHaveLength(1);
    expect(fitForTerminal(u, LIMITED).fingers).toHaveLength(0);
  });
});

describe('sameForTerminal', () => {
  it('sees no difference in what the terminal cannot carry', () => {
    const u = serverUser();
    expect(usersEqual(u, limitedCopy(u))).toBe(false);
    expect(sameForTerminal(u, limitedCopy(u), LIMITED)).toBe(true);
    // junk a driver left in parts the terminal cannot carry is no difference either
    const junk = limitedCopy(u);
    junk.accessGroups = [99];
    junk.photo = Buffer.from('ff', 'hex');
    junk.phrase = 'x';
    expect(sameForTerminal(u, junk, LIMITED)).toBe(true);
  });

  it('sees every difference in what it carries: name, card, PIN', () => {
    const u = serverUser();
    const name = limitedCopy(u);
    name.name = 'Ada';
    const card = limitedCopy(u);
    card.cards = [{ type: 1, data: Buffer.from('000f1206', 'hex') }];
    const pin = limitedCopy(u);
    pin.pinHash = hashPin('9999');
    const noPin = limitedCopy(u);
    noPin.pinHash = Buffer.alloc(0);
    for (const d of [name, card, pin, noPin]) expect(sameForTerminal(u, d, LIMITED)).toBe(false);
  });

  it('with every part, is usersEqual', () => {
    const a = serverUser();
    const b = structuredCloneUser(a);
    expect(sameForTerminal(a, b, ALL_PARTS)).toBe(true);
    b.accessGroups = [5];
    expect(sameForTerminal(a, b, ALL_PARTS)).toBe(usersEqual(a, b));
    expect(sameForTerminal(a, b, ALL_PARTS)).toBe(false);
  });
});

describe('merge from a terminal with limited parts', () => {
  it('never loses a server part the terminal cannot carry (vacant there because it cannot carry it)', () => {
    const server = serverUser();
    const device = limitedCopy(fullUser('42', 2)); // another name, card and PIN on the terminal
    const m = mergeDeviceIntoServer(server, device, LIMITED);
    expect(usersEqual(m.record, server)).toBe(true);
    expect(m.changed).toBe(false);
    expect(m.filled).toEqual([]);
    // the same without the declaration: still nothing lost (the merge only fills vacant fields)
    expect(usersEqual(mergeDeviceIntoServer(server, device).record, server)).toBe(true);
  });

  it('fills a vacant server field the terminal carries, and only those', () => {
    const server = serverUser();
    server.name = '';
    server.cards = [];
    server.accessGroups = [];
    server.photo = Buffer.alloc(0);
    const device = limitedCopy(fullUser('42', 2));
    // a driver that left values in parts its terminal cannot carry: they are not data
    device.accessGroups = [7];
    device.photo = Buffer.from('ffd8ff', 'hex');
    const m = mergeDeviceIntoServer(server, device, LIMITED);
    expect(m.filled.sort()).toEqual(['cards', 'name']);
    expect(m.record.name).toBe(device.name);
    expect(m.record.accessGroups).toEqual([]);
    expect(m.record.photo.length).toBe(0);
    // everything else the server held is still there
    expect(m.record.fingers).toEqual(server.fingers);
    expect(m.record.flag).toBe(USER_DISABLED);
  });

  it('a user new to the server is stored with what the terminal carries', () => {
    const device = limitedCopy(fullUser('7', 3));
    device.jobCodes = [{ code: 1, label: 'junk' }];
    const m = mergeDeviceIntoServer(null, device, LIMITED);
    expect(m.record.jobCodes).toEqual([]);
    expect(m.record.flag).toBe(0);
    expect(m.filled.sort()).toEqual(['cards', 'name', 'pin']);
  });
});

describe('store: a merge from a limited terminal', () => {
  let s: ReturnType<typeof openTemp>;
  beforeEach(() => {
    s = openTemp({ now: () => 1_000 });
    for (const id of ['zk', 'B']) s.store.upsertTerminal({ id, direction: 'dial' });
  });
  afterEach(() => s.close());

  it('keeps the server parts and pushes nothing back when the terminal holds all it can carry', () => {
    const u = serverUser();
    s.store.putUserFromServer(u);
    const r = s.store.mergeDeviceUser(limitedCopy(u), { terminalId: 'zk', eventId: 1, pushTo: ['zk', 'B'], parts: LIMITED });
    expect(usersEqual(s.store.getUser('42')!, u)).toBe(true);
    expect([r.changed, r.differsFromDevice, r.enqueued]).toEqual([false, false, []]);
    // without the declaration, every part it cannot carry looked like a difference
    const blind = s.store.mergeDeviceUser(limitedCopy(u), { terminalId: 'zk', eventId: 2, pushTo: ['zk', 'B'] });
    expect([blind.changed, blind.differsFromDevice, blind.enqueued]).toEqual([false, true, ['zk']]);
  });

  it('pushes the server record back when the terminal holds another value of a part it carries', () => {
    const u = serverUser();
    s.store.putUserFromServer(u);
    const d = limitedCopy(u);
    d.name = 'Ada at the door';
    const r = s.store.mergeDeviceUser(d, { terminalId: 'zk', eventId: 1, pushTo: ['zk', 'B'], parts: LIMITED });
    expect(usersEqual(s.store.getUser('42')!, u)).toBe(true);
    expect([r.changed, r.differsFromDevice, r.enqueued]).toEqual([false, true, ['zk']]);
  });

  it('an empty user from a limited terminal is new to the server and stored', () => {
    const r = s.store.mergeDeviceUser(emptyUser('9'), { terminalId: 'zk', eventId: 1, pushTo: ['zk', 'B'], parts: LIMITED });
    expect([r.created, r.differsFromDevice, r.enqueued]).toEqual([true, false, ['B']]);
  });
});
