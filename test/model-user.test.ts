// The model at the bottom of the layering: one validateUser for every entry
// point, one set of user limits (the codec adopts them), and src/model imports
// nothing of the rest of the project.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIMITS, UserFlag, decodeUser, encodeUser } from '../src/codec/index.js';
import { USER_DISABLED, USER_LIMITS } from '../src/model/limits.js';
import { usersEqual } from '../src/model/merge.js';
import { emptyUser, structuredCloneUser, validateUser, type UserRecord } from '../src/model/user.js';
import { fullUser } from './store-fixtures.js';

const bytes = (n: number, fill = 1) => Buffer.alloc(n, fill);

/** A user at every limit of USER_LIMITS at once. */
function largest(): UserRecord {
  const u = emptyUser('x'.repeat(USER_LIMITS.userIdBytes));
  u.name = 'n'.repeat(USER_LIMITS.nameBytes);
  u.phrase = 'p'.repeat(USER_LIMITS.phraseBytes);
  u.setting = { startTime: 0xffffffff, endTime: 0xffffffff, fingerAuthMode: 255, cardAuthMode: 255, idAuthMode: 255, securityLevel: USER_LIMITS.securityLevelMax };
  u.authGroupId = 0xffffffff;
  u.photo = bytes(USER_LIMITS.photoBytes);
  u.pinHash = bytes(USER_LIMITS.pinHashBytes);
  u.cards = Array.from({ length: USER_LIMITS.cards }, (_, i) => ({ type: 255, data: bytes(USER_LIMITS.cardDataBytes, i + 1) }));
  u.fingers = Array.from({ length: USER_LIMITS.fingers }, (_, i) => ({ index: i, flag: 255, templates: [bytes(USER_LIMITS.fingerTemplateBytes), bytes(USER_LIMITS.fingerTemplateBytes)] as [Buffer, Buffer] }));
  u.faces = Array.from({ length: USER_LIMITS.faces }, (_, i) => ({ index: i, flag: 0, data: bytes(USER_LIMITS.faceDataBytes) }));
  u.accessGroups = Array.from({ length: USER_LIMITS.accessGroups }, (_, i) => 0xffffffff - i);
  u.jobCodes = Array.from({ length: USER_LIMITS.jobCodes }, (_, i) => ({ code: i, label: 'l'.repeat(USER_LIMITS.jobLabelBytes) }));
  u.flag = USER_DISABLED;
  return u;
}

const BROKEN: [string, (u: UserRecord) => void, RegExp][] = [
  ['an empty ID', (u) => (u.id = ''), /non-empty/],
  ['an ID of 33 bytes', (u) => (u.id = 'x'.repeat(33)), /longer than 32 bytes/],
  ['a control character in the ID', (u) => (u.id = 'a\nb'), /control characters/],
  ['a name one byte too long', (u) => (u.name = 'é'.repeat(USER_LIMITS.nameBytes / 2) + 'x'), /name is longer than 192 bytes/],
  ['a NUL in the phrase', (u) => (u.phrase = 'a\0b'), /phrase must not contain NUL/],
  ['securityLevel 6', (u) => (u.setting.securityLevel = 6), /securityLevel must be an integer in 0..5/],
  ['a negative start time', (u) => (u.setting.startTime = -1), /Unix seconds/],
  ['cardAuthMode 256', (u) => (u.setting.cardAuthMode = 256), /cardAuthMode must be an integer in 0..255/],
  ['a photo one byte too long', (u) => (u.photo = bytes(USER_LIMITS.photoBytes + 1)), /photo is longer than 16384 bytes/],
  ['a PIN hash of 31 bytes', (u) => (u.pinHash = bytes(31)), /PIN hash must be empty or 32 bytes/],
  ['9 cards', (u) => (u.cards = Array.from({ length: 9 }, (_, i) => ({ type: 1, data: bytes(4, i + 1) }))), /at most 8 cards \(got 9\)/],
  ['a card of type 0', (u) => (u.cards[0].type = 0), /card type must be 1..255/],
  ['empty card data', (u) => (u.cards[0].data = Buffer.alloc(0)), /card data must be 1..32 bytes/],
  ['the same card twice (other type)', (u) => u.cards.push({ type: 9, data: Buffer.from(u.cards[0].data) }), /same card is listed twice/],
  ['11 fingers', (u) => (u.fingers = Array.from({ length: 11 }, (_, i) => ({ index: i % 10, flag: 0, templates: [bytes(384), bytes(384)] as [Buffer, Buffer] }))), /at most 10 fingers/],
  ['finger index 10', (u) => (u.fingers[0].index = 10), /finger index must be 0..9/],
  ['the same finger twice', (u) => u.fingers.push({ ...u.fingers[0] }), /finger index 0 is listed twice/],
  ['a short template', (u) => (u.fingers[0].templates = [bytes(384), bytes(383)]), /two templates of 384 bytes/],
  ['6 faces', (u) => (u.faces = Array.from({ length: 6 }, (_, i) => ({ index: i, flag: 0, data: bytes(10) }))), /at most 5 faces/],
  ['empty face data', (u) => (u.faces[0].data = Buffer.alloc(0)), /face data must be 1..32768 bytes/],
  ['17 access groups', (u) => (u.accessGroups = Array.from({ length: 17 }, (_, i) => i)), /at most 16 access groups/],
  ['a negative access group', (u) => (u.accessGroups = [-1]), /access groups must be integers/],
  ['17 job codes', (u) => (u.jobCodes = Array.from({ length: 17 }, (_, i) => ({ code: i, label: '' }))), /at most 16 job codes/],
  ['a job label of 49 bytes', (u) => (u.jobCodes = [{ code: 1, label: 'l'.repeat(49) }]), /job code label is longer than 48 bytes/],
];

describe('validateUser', () => {
  it('accepts an empty user, a full one, and one at every limit', () => {
    expect(validateUser(emptyUser('1'))).toBeNull();
    expect(validateUser(fullUser('1001'))).toBeNull();
    expect(validateUser(largest())).toBeNull();
  });

  it.each(BROKEN)('refuses %s with a message that says what is wrong', (_what, breakIt, message) => {
    const u = structuredCloneUser(fullUser('1001'));
    breakIt(u);
    expect(validateUser(u)).toMatch(message);
  });

  it('agrees with the termsync codec at the limits: what it accepts encodes and decodes unchanged', () => {
    const u = largest();
    const back = decodeUser(encodeUser(u)).user;
    expect(validateUser(back)).toBeNull();
    expect(usersEqual(back, u)).toBe(true);
    expect([back.flag, back.cards.length, back.fingers.length, back.faces.length]).toEqual([USER_DISABLED, 8, 10, 5]);
  });
});

describe('one definition of the user limits', () => {
  it('the codec adopts the model limits and the DISABLED bit instead of restating them', () => {
    for (const [k, v] of Object.entries(USER_LIMITS)) expect(LIMITS[k as keyof typeof LIMITS]).toBe(v);
    expect(UserFlag.DISABLED).toBe(USER_DISABLED);
  });
});

describe('layering', () => {
  it('src/model imports nothing of the project outside src/model', () => {
    const dir = path.join(import.meta.dirname, '..', 'src', 'model');
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const src = fs.readFileSync(path.join(dir, f), 'utf8');
      const specs = [...src.matchAll(/^\s*(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]);
      for (const s of specs) expect(s.startsWith('./') || s.startsWith('node:'), `${f} imports ${s}`).toBe(true);
    }
  });
});
