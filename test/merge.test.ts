import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UserFlag } from '../src/codec/constants.js';
import { emptyUser, hashPin, structuredCloneUser, type UserRecord } from '../src/model/user.js';
import { mergeDeviceIntoServer, usersEqual, VACANCY, type MergeField } from '../src/model/merge.js';
import { fullUser } from './store-fixtures.js';

// One row per field: how to make it vacant, value A (server's), value B (device's).
interface FieldCase {
  field: Exclude<MergeField, 'disabled'>;
  vacate: (u: UserRecord) => void;
  get: (u: UserRecord) => unknown;
}

const FIELDS: FieldCase[] = [
  { field: 'name', vacate: (u) => (u.name = ''), get: (u) => u.name },
  { field: 'phrase', vacate: (u) => (u.phrase = ''), get: (u) => u.phrase },
  { field: 'startTime', vacate: (u) => (u.setting.startTime = 0), get: (u) => u.setting.startTime },
  { field: 'endTime', vacate: (u) => (u.setting.endTime = 0), get: (u) => u.setting.endTime },
  { field: 'fingerAuthMode', vacate: (u) => (u.setting.fingerAuthMode = 0), get: (u) => u.setting.fingerAuthMode },
  { field: 'cardAuthMode', vacate: (u) => (u.setting.cardAuthMode = 0), get: (u) => u.setting.cardAuthMode },
  { field: 'idAuthMode', vacate: (u) => (u.setting.idAuthMode = 0), get: (u) => u.setting.idAuthMode },
  { field: 'securityLevel', vacate: (u) => (u.setting.securityLevel = 0), get: (u) => u.setting.securityLevel },
  { field: 'authGroupId', vacate: (u) => (u.authGroupId = 0), get: (u) => u.authGroupId },
  { field: 'photo', vacate: (u) => (u.photo = Buffer.alloc(0)), get: (u) => u.photo.toString('hex') },
  { field: 'pin', vacate: (u) => (u.pinHash = Buffer.alloc(0)), get: (u) => u.pinHash.toString('hex') },
  { field: 'cards', vacate: (u) => (u.cards = []), get: (u) => u.cards.map((c) => [c.type, c.data.toString('hex')]) },
  { field: 'fingers', vacate: (u) => (u.fingers = []), get: (u) => u.fingers.map((f) => [f.index, f.flag, f.templates[0].toString('hex'), f.templates[1].toString('hex')]) },
  { field: 'faces', vacate: (u) => (u.faces = []), get: (u) => u.faces.map((f) => [f.index, f.flag, f.data.toString('hex')]) },
  { field: 'accessGroups', vacate: (u) => (u.accessGroups = []), get: (u) => [...u.accessGroups] },
  { field: 'jobCodes', vacate: (u) => (u.jobCodes = []), get: (u) => u.jobCodes.map((j) => [j.code, j.label]) },
];

const SERVER_SEED = 1;
const DEVICE_SEED = 2;

function device(): UserRecord {
  const d = fullUser('42', DEVICE_SEED);
  d.flag = UserFlag.UPDATED_ON_DEVICE;
  return d;
}

describe('merge policy: VACANCY table', () => {
  it('documents every field the policy decides on', () => {
    expect(Object.keys(VACANCY).sort()).toEqual([...FIELDS.map((f) => f.field), 'disabled'].sort());
    for (const rule of Object.values(VACANCY)) expect(rule.length).toBeGreaterThan(0);
  });
});

describe.each(FIELDS)('merge policy: field $field', ({ field, vacate, get }) => {
  it('vacant on the server -> filled from the device', () => {
    const server = fullUser('42', SERVER_SEED);
    vacate(server);
    const d = device();
    const m = mergeDeviceIntoServer(server, d);
    expect(get(m.record)).toEqual(get(d));
    expect(m.filled).toEqual([field]);
    expect(m.changed).toBe(true);
  });

  it('held by the server -> kept, even though the device holds another value', () => {
    const server = fullUser('42', SERVER_SEED);
    const d = device();
    expect(get(d)).not.toEqual(get(server)); // the case is meaningful
    const m = mergeDeviceIntoServer(server, d);
    expect(get(m.record)).toEqual(get(server));
    expect(m.filled).not.toContain(field);
    expect(m.changed).toBe(false);
  });

  it('held by the server, vacant on the device -> kept (a device never clears a field)', () => {
    const server = fullUser('42', SERVER_SEED);
    const d = device();
    vacate(d);
    const m = mergeDeviceIntoServer(server, d);
    expect(get(m.record)).toEqual(get(server));
    expect(m.changed).toBe(false);
  });

  it('vacant on both -> stays vacant, not reported as filled', () => {
    const server = fullUser('42', SERVER_SEED);
    vacate(server);
    const d = device();
    vacate(d);
    const m = mergeDeviceIntoServer(server, d);
    expect(get(m.record)).toEqual(get(server));
    expect(m.filled).toEqual([]);
    expect(m.changed).toBe(false);
  });
});

describe('merge policy: access groups are never lost', () => {
  it('a device update without access groups keeps the server groups', () => {
    const server = fullUser('7');
    server.accessGroups = [1, 2, 3];
    const d = fullUser('7', 9);
    d.accessGroups = [];
    d.flag = UserFlag.UPDATED_ON_DEVICE;
    expect(mergeDeviceIntoServer(server, d).record.accessGroups).toEqual([1, 2, 3]);
  });

  it('a device update with other access groups does not replace the server groups', () => {
    const server = fullUser('7');
    server.accessGroups = [1, 2, 3];
    const d = fullUser('7', 9);
    d.accessGroups = [99];
    const m = mergeDeviceIntoServer(server, d);
    expect(m.record.accessGroups).toEqual([1, 2, 3]);
    expect(usersEqual(m.record, d)).toBe(false); // so the terminal gets the server's groups back
  });

  it('a new user keeps the access groups the terminal sent', () => {
    const d = fullUser('8');
    d.accessGroups = [5, 6];
    expect(mergeDeviceIntoServer(null, d).record.accessGroups).toEqual([5, 6]);
  });
});

describe('merge policy: new user and flags', () => {
  it('a new user is stored as the terminal sent it, device flag bits cleared, DISABLED kept', () => {
    const d = fullUser('n1');
    d.flag = UserFlag.CREATED_ON_DEVICE | UserFlag.UPDATED_ON_DEVICE | UserFlag.DISABLED;
    const m = mergeDeviceIntoServer(null, d);
    expect(m.changed).toBe(true);
    expect(m.record.flag).toBe(UserFlag.DISABLED);
    expect(usersEqual(m.record, d)).toBe(true);
    expect(m.filled).toEqual(expect.arrayContaining(FIELDS.map((f) => f.field)));
  });

  it('a new user without DISABLED is stored enabled with flag 0', () => {
    const d = fullUser('n2');
    d.flag = UserFlag.CREATED_ON_DEVICE;
    expect(mergeDeviceIntoServer(null, d).record.flag).toBe(0);
  });

  it('a device update never disables a user', () => {
    const server = fullUser('d1');
    const d = fullUser('d1');
    d.flag = UserFlag.UPDATED_ON_DEVICE | UserFlag.DISABLED;
    const m = mergeDeviceIntoServer(server, d);
    expect(m.record.flag & UserFlag.DISABLED).toBe(0);
    expect(m.changed).toBe(false);
  });

  it('a device update never re-enables a disabled user', () => {
    const server = fullUser('d2');
    server.flag = UserFlag.DISABLED;
    const d = fullUser('d2');
    d.flag = UserFlag.UPDATED_ON_DEVICE;
    const m = mergeDeviceIntoServer(server, d);
    expect(m.record.flag).toBe(UserFlag.DISABLED);
    expect(m.changed).toBe(false);
  });

  it('32 zero bytes count as "no PIN" on both sides', () => {
    const server = fullUser('p1');
    server.pinHash = Buffer.alloc(32);
    const d = fullUser('p1');
    const m = mergeDeviceIntoServer(server, d);
    expect(m.filled).toEqual(['pin']);
    expect(m.record.pinHash.equals(hashPin('1001'))).toBe(true);

    const server2 = fullUser('p2');
    server2.pinHash = Buffer.alloc(0);
    const d2 = fullUser('p2');
    d2.pinHash = Buffer.alloc(32);
    const m2 = mergeDeviceIntoServer(server2, d2);
    expect(m2.filled).toEqual([]);
    expect(m2.record.pinHash.length).toBe(0);
  });

  it('rejects merging two different users', () => {
    expect(() => mergeDeviceIntoServer(fullUser('a'), fullUser('b'))).toThrow(/different users/);
  });

  it('modifies neither input and shares no buffers with them', () => {
    const server = fullUser('s');
    server.photo = Buffer.alloc(0);
    server.cards = [];
    const d = fullUser('s', 5);
    const sCopy = structuredCloneUser(server);
    const dCopy = structuredCloneUser(d);
    const m = mergeDeviceIntoServer(server, d);
    expect(server).toEqual(sCopy);
    expect(d).toEqual(dCopy);
    m.record.photo[0] ^= 0xff;
    m.record.cards[0].data[0] ^= 0xff;
    expect(d).toEqual(dCopy);
  });
});

describe('usersEqual', () => {
  it('ignores device flag bits and the version counter, but not DISABLED', () => {
    const a = fullUser('e');
    const b = fullUser('e');
    b.flag = UserFlag.CREATED_ON_DEVICE | UserFlag.UPDATED_ON_DEVICE;
    b.version = 999;
    expect(usersEqual(a, b)).toBe(true);
    b.flag |= UserFlag.DISABLED;
    expect(usersEqual(a, b)).toBe(false);
  });

  it.each(FIELDS)('sees a difference in $field', ({ vacate }) => {
    const a = fullUser('e');
    const b = fullUser('e');
    vacate(b);
    expect(usersEqual(a, b)).toBe(false);
    expect(usersEqual(a, a)).toBe(true);
  });

  it('compares lists in order, like the LIST_USERS digest', () => {
    const a = fullUser('o');
    const b = fullUser('o');
    b.accessGroups = [...a.accessGroups].reverse();
    expect(usersEqual(a, b)).toBe(false);
  });

  it('treats an empty PIN and 32 zero bytes alike', () => {
    const a = emptyUser('z');
    const b = emptyUser('z');
    b.pinHash = Buffer.alloc(32);
    expect(usersEqual(a, b)).toBe(true);
  });
});

describe('merge policy: properties', () => {
  // every field either vacant or held, independently on both sides
  const arbSide = fc.record(Object.fromEntries(FIELDS.map((f) => [f.field, fc.boolean()])) as Record<string, fc.Arbitrary<boolean>>);

  function build(seed: number, held: Record<string, boolean>): UserRecord {
    const u = fullUser('prop', seed);
    for (const f of FIELDS) if (!held[f.field]) f.vacate(u);
    return u;
  }

  it('keeps every held server field, fills exactly the vacant ones the device holds, and converges', () => {
    fc.assert(
      fc.property(arbSide, arbSide, (sHeld, dHeld) => {
        const server = build(SERVER_SEED, sHeld);
        const d = build(DEVICE_SEED, dHeld);
        const m = mergeDeviceIntoServer(server, d);
        for (const f of FIELDS) {
          const expected = sHeld[f.field] ? f.get(server) : f.get(d);
          expect(f.get(m.record)).toEqual(expected);
          expect(m.filled.includes(f.field)).toBe(!sHeld[f.field] && dHeld[f.field]);
        }
        expect(m.changed).toBe(m.filled.length > 0);
        // merging the same device record again changes nothing
        const again = mergeDeviceIntoServer(m.record, d);
        expect(again.changed).toBe(false);
        expect(usersEqual(again.record, m.record)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
