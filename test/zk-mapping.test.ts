// ZK record <-> termsync user, and the change tracker that stands in for the
// events a ZK terminal does not send (edits, deletes), without echoes.
import { describe, expect, it } from 'vitest';
import { cardDataOf, cardNumberOf, userToZk, ZK_PARTS, zkToUser, ZkMappingError } from '../src/drivers/zk/mapping.js';
import { fitForTerminal } from '../src/model/parts.js';
import { ZkChangeTracker, zkUserDigest } from '../src/drivers/zk/tracker.js';
import type { ZkTemplate, ZkUser } from '../src/drivers/zk/records.js';
import { hashPin, userFromJson, userToJson } from '../src/model/user.js';

const ann: ZkUser = { uid: 7, privilege: 14 | 1, password: '1234', name: 'Ann', card: 987654, group: 3, userId: '1001' };
const tpl: ZkTemplate = { uid: 7, finger: 2, flag: 1, template: Buffer.from('4d98535332310000', 'hex') };

describe('ZK -> termsync', () => {
  it('card number N becomes card {type 1, data N as 8 hex digits big-endian}', () => {
    const { user } = zkToUser(ann);
    expect(userToJson(user).cards).toEqual([{ type: 1, data: '000f1206' }]);
    expect(cardDataOf(987654).toString('hex')).toBe('000f1206');
    expect(cardNumberOf({ type: 1, data: Buffer.from('000f1206', 'hex') })).toBe(987654);
    expect(zkToUser({ ...ann, card: 0 }).user.cards).toEqual([]);
  });

  it('id, name, disabled bit and PIN hash; level, group, plain password and templates go to the extras', () => {
    const { user, extras } = zkToUser(ann, [tpl, { ...tpl, uid: 8 }]);
    expect(user.id).toBe('1001');
    expect(user.name).toBe('Ann');
    expect(user.flag & 0x80).toBe(0x80);
    expect(user.pinHash.equals(hashPin('1234'))).toBe(true);
    expect(user.fingers).toEqual([]); // ZK templates are not termsync fingerprints
    expect(extras).toEqual({ level: 14, group: 3, password: '1234', templates: [{ finger: 2, flag: 1, template: tpl.template }] });
  });
});

describe('termsync -> ZK', () => {
  it('round-trips a ZK user through termsync and back', () => {
    const { user, extras } = zkToUser(ann, [tpl]);
    const out = userToZk(user, { uid: 42, extras });
    expect({ ...out.user, raw: undefined }).toEqual({ ...ann, uid: 42, raw: undefined });
    expect(out.templates).toEqual([{ ...tpl, uid: 42 }]);
    expect(out.dropped).toEqual([]);
  });

  it('cuts the name to 23 bytes without splitting a UTF-8 character, and says so', () => {
    const u = userFromJson({ id: 'A1', name: 'Zoë Šťastná-Ångström-Ñandú' });
    const out = userToZk(u, { uid: 1 });
    expect(Buffer.byteLength(out.user.name)).toBeLessThanOrEqual(23);
    expect(out.user.name).toBe('Zoë Šťastná-Ångstr');
    expect(out.dropped).toContain('nameTruncated');
  });

  it('lists the parts a ZK terminal cannot carry', () => {
    const u = userFromJson({
      id: 'B2',
      name: 'Bea',
      cards: [
        { type: 1, data: '000f1206' },
        { type: 2, data: '0102' },
      ],
      accessGroups: [1, 2],
      phrase: 'hi',
      photo: 'ffd8ff',
      securityLevel: 3,
      fingers: [{ index: 1, templates: ['aa', 'bb'] }],
    });
    const out = userToZk(u, { uid: 5 });
    expect(out.user.card).toBe(987654);
    expect(out.dropped.sort()).toEqual(['accessGroups', 'extraCards', 'fingers', 'phrase', 'photo', 'setting'].sort());
    expect(out.templates).toEqual([]);
    // a ZK terminal keeps a number and no type; data over 4 bytes cannot go
    expect(userToZk(userFromJson({ id: 'C', cards: [{ type: 6, data: '01' }] }), { uid: 1 })).toMatchObject({ user: { card: 1 }, dropped: [] });
    const long = userToZk(userFromJson({ id: 'C', cards: [{ type: 1, data: '0102030405' }, { type: 1, data: '00000007' }] }), { uid: 1 });
    expect(long.user.card).toBe(7);
    expect(long.dropped).toContain('cardFormat');
  });

  it('a PIN goes out only as a plain password a ZK terminal gave that matches its hash', () => {
    const u = userFromJson({ id: 'P', pin: '1234' });
    expect(userToZk(u, { uid: 1, extras: { level: 0, group: 1, password: '1234', templates: [] } }).user.password).toBe('1234');
    const noPlain = userToZk(u, { uid: 1 });
    expect(noPlain.user.password).toBe('');
    expect(noPlain.dropped).toContain('pin');
    // the device's own password is kept when it still matches
    expect(userToZk(u, { uid: 1, existing: { ...ann, password: '1234' } }).user.password).toBe('1234');
  });

  it('what reaches a ZK terminal and comes back is what the model says a ZK terminal holds (ZK_PARTS)', () => {
    const u = userFromJson({
      id: 'R1',
      name: 'Zoë Šťastná-Ångström-Ñandú',
      disabled: true,
      pin: '4321',
      cards: [{ type: 1, data: '000f1206' }, { type: 1, data: '00000001' }],
      accessGroups: [3],
      phrase: 'x',
      securityLevel: 2,
    });
    const out = userToZk(u, { uid: 9, extras: { level: 0, group: 1, password: '4321', templates: [] } });
    const back = zkToUser(out.user).user;
    expect(userToJson(back)).toEqual(userToJson(fitForTerminal(u, ZK_PARTS)));
  });

  it('user IDs a terminal cannot hold are refused with a clear error', () => {
    expect(() => userToZk(userFromJson({ id: 'x'.repeat(24) }), { uid: 1 })).toThrow(ZkMappingError);
    expect(() => userToZk(userFromJson({ id: 'A12' }), { uid: 1, recordSize: 28 })).toThrowError(/not a number/);
    expect(userToZk(userFromJson({ id: '4294967295' }), { uid: 1, recordSize: 28 }).user.userId).toBe('4294967295');
  });

  it('unknown bytes of the record on the terminal are carried when the user is written back', () => {
    const raw = Buffer.from('0d000034343400c69a807c4e6564000000000000000000000000000000000000000000de000000020100010002000000353535000000000000000000000000000000000000000000', 'hex');
    const existing: ZkUser = { uid: 13, privilege: 0, password: '444', name: 'Ned', card: 0xde, group: 2, userId: '555', raw };
    const { user, extras } = zkToUser(existing);
    user.name = 'Neddy';
    const out = userToZk(user, { uid: 13, extras, existing });
    expect(out.user.raw).toBe(raw);
  });
});

describe('change tracker', () => {
  const users = (over: Partial<ZkUser>[] = []): ZkUser[] => [{ ...ann, uid: 1, userId: 'a' }, { ...ann, uid: 2, userId: 'b', card: 1 }, ...over.map((o, i) => ({ ...ann, uid: 10 + i, userId: `n${i}`, card: 100 + i, ...o }))];

  it('first read reports every user; then edits, new users and deletes are found, the uid left out of the digest', () => {
    const t = new ZkChangeTracker();
    const first = t.observe('T1', { users: users(), templates: [] });
    expect(first).toMatchObject({ firstRead: true, changed: ['a', 'b'], deleted: [] });
    expect(t.observe('T1', { users: users(), templates: [] })).toMatchObject({ firstRead: false, changed: [], deleted: [] });
    // a new uid for the same record is not a change
    const moved = users().map((u) => (u.userId === 'a' ? { ...u, uid: 99 } : u));
    expect(t.observe('T1', { users: moved, templates: [] }).changed).toEqual([]);
    const edited = users().map((u) => (u.userId === 'b' ? { ...u, name: 'Bo' } : u));
    expect(t.observe('T1', { users: edited, templates: [] }).changed).toEqual(['b']);
    expect(t.observe('T1', { users: edited.filter((u) => u.userId !== 'a'), templates: [] })).toMatchObject({ changed: [], deleted: ['a'] });
  });

  it('a template added or changed on the terminal is a change of that user', () => {
    const t = new ZkChangeTracker();
    t.observe('T', { users: users(), templates: [] });
    expect(t.observe('T', { users: users(), templates: [{ ...tpl, uid: 2 }] }).changed).toEqual(['b']);
    expect(t.observe('T', { users: users(), templates: [{ ...tpl, uid: 2, template: Buffer.from('00', 'hex') }] }).changed).toEqual(['b']);
  });

  it('our own writes and deletes do not come back as device changes; a later device edit does', () => {
    const t = new ZkChangeTracker();
    t.observe('T', { users: users(), templates: [] });
    const written = { ...ann, uid: 30, userId: 'w', name: 'Written' };
    t.noteWritten('T', 'w', zkUserDigest(written, []));
    t.noteDeleted('T', 'a');
    const after = users().filter((u) => u.userId !== 'a');
    const d = t.observe('T', { users: [...after, written], templates: [] });
    expect(d).toMatchObject({ changed: [], deleted: [] });
    expect(d.confirmed.sort()).toEqual(['a', 'w']);
    expect(t.pendingCount('T')).toBe(0);
    // now a person edits the written user at the terminal
    expect(t.observe('T', { users: [...after, { ...written, name: 'Edited' }], templates: [] }).changed).toEqual(['w']);
  });

  it('a write overtaken by a device edit before the next read is reported (the device wins the race, the merge decides)', () => {
    const t = new ZkChangeTracker();
    t.observe('T', { users: users(), templates: [] });
    const b = users()[1];
    t.noteWritten('T', 'b', zkUserDigest({ ...b, name: 'Server' }, []));
    expect(t.observe('T', { users: users().map((u) => (u.userId === 'b' ? { ...u, name: 'Device' } : u)), templates: [] }).changed).toEqual(['b']);
  });

  it('terminals are remembered separately', () => {
    const t = new ZkChangeTracker();
    t.observe('T1', { users: users(), templates: [] });
    expect(t.observe('T2', { users: users(), templates: [] }).firstRead).toBe(true);
    t.restore('T3', t.lastSeen('T1'));
    expect(t.observe('T3', { users: users(), templates: [] })).toMatchObject({ firstRead: false, changed: [] });
  });
});
