// The merge policy for a user record that a terminal reports as created or
// updated on the device. Pure model code: no SQL, no I/O, no protocol. The store
// calls it inside the merge transaction (src/store/store.ts, mergeDeviceUser).
//
// Rule: the server wins. A field the server already holds is kept as it is;
// only a VACANT server field is filled from the device. A new user is stored as
// the terminal sent it. The one exception is the DISABLED bit, which is an
// administrative decision: a device update never changes it on an existing user.
//
// Lists (cards, fingers, faces, access groups, job codes) are one field each: a
// list the server holds is kept whole, so server-held access groups are never
// lost or replaced by a device update (the reference server's known failure).
import { USER_DISABLED } from './limits.js';
import { carriesAll, fitForTerminal, type PartsSupport } from './parts.js';
import { hasPin, structuredCloneUser, type UserRecord, type UserSetting } from './user.js';

/** Every field the merge policy decides on, as named in `filled` and in VACANCY. */
export type MergeField =
  | 'name'
  | 'phrase'
  | 'startTime'
  | 'endTime'
  | 'fingerAuthMode'
  | 'cardAuthMode'
  | 'idAuthMode'
  | 'securityLevel'
  | 'authGroupId'
  | 'photo'
  | 'pin'
  | 'cards'
  | 'fingers'
  | 'faces'
  | 'accessGroups'
  | 'jobCodes'
  | 'disabled';

/** When a server field counts as vacant (and may be filled from a device). For the README. */
export const VACANCY: Readonly<Record<MergeField, string>> = Object.freeze({
  name: "empty string ''",
  phrase: "empty string ''",
  startTime: '0 (unset)',
  endTime: '0 (unset)',
  fingerAuthMode: '0 (device default)',
  cardAuthMode: '0 (device default)',
  idAuthMode: '0 (device default)',
  securityLevel: '0 (device default)',
  authGroupId: '0 (none)',
  photo: 'no photo (0 bytes)',
  pin: 'no PIN hash (empty, or 32 zero bytes)',
  cards: 'no cards ([]); a held list is kept whole',
  fingers: 'no fingerprints ([]); a held list is kept whole',
  faces: 'no faces ([]); a held list is kept whole',
  accessGroups: 'no access groups ([]); server-held access groups are never lost or replaced by a device update',
  jobCodes: 'no job codes ([])',
  disabled: 'never vacant: a device update never changes it (a new user keeps the device\'s DISABLED bit)',
});

export interface MergeOutcome {
  /** the server's resulting record (flag holds only DISABLED or 0) */
  record: UserRecord;
  /** true when the record differs from the server's previous one (always true for a new user) */
  changed: boolean;
  /** fields taken from the device; for a new user every non-vacant field it sent */
  filled: MergeField[];
}

const SETTING_FIELDS = ['startTime', 'endTime', 'fingerAuthMode', 'cardAuthMode', 'idAuthMode', 'securityLevel'] as const satisfies readonly (keyof UserSetting & MergeField)[];
const LIST_FIELDS = ['cards', 'fingers', 'faces', 'accessGroups', 'jobCodes'] as const satisfies readonly (keyof UserRecord & MergeField)[];

/** Vacancy tests, one per field (see VACANCY). */
const vacant = {
  name: (u: UserRecord) => u.name === '',
  phrase: (u: UserRecord) => u.phrase === '',
  authGroupId: (u: UserRecord) => u.authGroupId === 0,
  photo: (u: UserRecord) => u.photo.length === 0,
  pin: (u: UserRecord) => !hasPin(u),
  setting: (u: UserRecord, f: keyof UserSetting) => u.setting[f] === 0,
  list: (u: UserRecord, f: (typeof LIST_FIELDS)[number]) => u[f].length === 0,
};

/** A PIN hash that holds no PIN is stored as 0 bytes, so "no PIN" has one spelling. */
function normalizePin(u: UserRecord): void {
  if (!hasPin(u)) u.pinHash = Buffer.alloc(0);
}

/** Names of the fields of `u` that are not vacant. */
function heldFields(u: UserRecord): MergeField[] {
  const out: MergeField[] = [];
  if (!vacant.name(u)) out.push('name');
  if (!vacant.phrase(u)) out.push('phrase');
  for (const f of SETTING_FIELDS) if (!vacant.setting(u, f)) out.push(f);
  if (!vacant.authGroupId(u)) out.push('authGroupId');
  if (!vacant.photo(u)) out.push('photo');
  if (!vacant.pin(u)) out.push('pin');
  for (const f of LIST_FIELDS) if (!vacant.list(u, f)) out.push(f);
  return out;
}

function copyList(to: UserRecord, from: UserRecord, f: (typeof LIST_FIELDS)[number]): void {
  switch (f) {
    case 'cards':
      to.cards = from.cards.map((c) => ({ type: c.type, data: Buffer.from(c.data) }));
      break;
    case 'fingers':
      to.fingers = from.fingers.map((x) => ({ index: x.index, flag: x.flag, templates: [Buffer.from(x.templates[0]), Buffer.from(x.templates[1])] }));
      break;
    case 'faces':
      to.faces = from.faces.map((x) => ({ index: x.index, flag: x.flag, data: Buffer.from(x.data) }));
      break;
    case 'accessGroups':
      to.accessGroups = [...from.accessGroups];
      break;
    case 'jobCodes':
      to.jobCodes = from.jobCodes.map((j) => ({ code: j.code, label: j.label }));
      break;
  }
}

/**
 * Merges a record pulled from a terminal into the server's record.
 * Neither argument is modified; the result shares no buffers with them.
 *
 * `parts`: what the source terminal can carry (its driver's declaration). A
 * part it cannot carry is vacant in its record for that reason alone: it is
 * taken as vacant whatever the record holds there, so it never fills a server
 * field, and (as for every vacant device field) the server's value stays.
 * Without `parts` the terminal carries every part.
 */
export function mergeDeviceIntoServer(server: UserRecord | null, fromDevice: UserRecord, parts?: Readonly<PartsSupport>): MergeOutcome {
  const device = parts ? { ...fitForTerminal(fromDevice, parts), version: fromDevice.version } : fromDevice;
  if (server === null) {
    const record = structuredCloneUser(device);
    // created/updated-on-device (and the reserved deleted bit) describe the
    // terminal's copy, not the server's; DISABLED is data and is kept.
    record.flag = device.flag & USER_DISABLED;
    normalizePin(record);
    return { record, changed: true, filled: heldFields(record) };
  }
  if (server.id !== device.id) throw new Error(`merge of different users: server ${JSON.stringify(server.id)}, device ${JSON.stringify(device.id)}`);

  const record = structuredCloneUser(server);
  record.flag = server.flag & USER_DISABLED; // never changed by a device update
  normalizePin(record);
  const filled: MergeField[] = [];

  if (vacant.name(record) && !vacant.name(device)) {
    record.name = device.name;
    filled.push('name');
  }
  if (vacant.phrase(record) && !vacant.phrase(device)) {
    record.phrase = device.phrase;
    filled.push('phrase');
  }
  for (const f of SETTING_FIELDS) {
    if (vacant.setting(record, f) && !vacant.setting(device, f)) {
      record.setting[f] = device.setting[f];
      filled.push(f);
    }
  }
  if (vacant.authGroupId(record) && !vacant.authGroupId(device)) {
    record.authGroupId = device.authGroupId;
    filled.push('authGroupId');
  }
  if (vacant.photo(record) && !vacant.photo(device)) {
    record.photo = Buffer.from(device.photo);
    filled.push('photo');
  }
  if (vacant.pin(record) && !vacant.pin(device)) {
    record.pinHash = Buffer.from(device.pinHash);
    filled.push('pin');
  }
  for (const f of LIST_FIELDS) {
    if (vacant.list(record, f) && !vacant.list(device, f)) {
      copyList(record, device, f);
      filled.push(f);
    }
  }
  return { record, changed: filled.length > 0, filled };
}

// ------------------------------------------------------------- equality

const bufEq = (a: Buffer, b: Buffer) => a.length === b.length && a.equals(b);

function listEq<T>(a: readonly T[], b: readonly T[], eq: (x: T, y: T) => boolean): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false;
  return true;
}

/** The list fields of a user record (each one merge field, held or replaced whole). */
export type ListField = (typeof LIST_FIELDS)[number];

/** True when list field `f` holds the same entries, in the same order, in `a` and `b`. */
export function listFieldEqual(f: ListField, a: UserRecord, b: UserRecord): boolean {
  switch (f) {
    case 'cards':
      return listEq(a.cards, b.cards, (x, y) => x.type === y.type && bufEq(x.data, y.data));
    case 'fingers':
      return listEq(a.fingers, b.fingers, (x, y) => x.index === y.index && x.flag === y.flag && bufEq(x.templates[0], y.templates[0]) && bufEq(x.templates[1], y.templates[1]));
    case 'faces':
      return listEq(a.faces, b.faces, (x, y) => x.index === y.index && x.flag === y.flag && bufEq(x.data, y.data));
    case 'accessGroups':
      return listEq(a.accessGroups, b.accessGroups, (x, y) => x === y);
    case 'jobCodes':
      return listEq(a.jobCodes, b.jobCodes, (x, y) => x.code === y.code && x.label === y.label);
  }
}

/**
 * True when two records hold the same user data: every field the merge knows,
 * plus the DISABLED bit. The device-side flag bits (created/updated on device)
 * and the version counter are ignored. Lists compare in order, as the LIST_USERS
 * digest does. "No PIN" compares equal whether spelled as 0 bytes or 32 zeros.
 */
export function usersEqual(a: UserRecord, b: UserRecord): boolean {
  if (a.id !== b.id) return false;
  if ((a.flag & USER_DISABLED) !== (b.flag & USER_DISABLED)) return false;
  if (a.authGroupId !== b.authGroupId || a.name !== b.name || a.phrase !== b.phrase) return false;
  for (const f of SETTING_FIELDS) if (a.setting[f] !== b.setting[f]) return false;
  if (!bufEq(a.photo, b.photo)) return false;
  const pa = hasPin(a);
  if (pa !== hasPin(b) || (pa && !bufEq(a.pinHash, b.pinHash))) return false;
  return LIST_FIELDS.every((f) => listFieldEqual(f, a, b));
}

/**
 * True when a terminal that carries `parts` holds the same user as the server:
 * both records compared as that terminal would hold them (fitForTerminal), so a
 * part the terminal cannot carry, a name it keeps shorter, the cards or fingers
 * beyond its counts are no difference. With ALL_PARTS this is usersEqual.
 * The engine's reconcile uses it for drivers that list whole records.
 */
export function sameForTerminal(server: UserRecord, device: UserRecord, parts: Readonly<PartsSupport>): boolean {
  // a terminal that carries every part holds the records as they are (no copies to compare)
  if (carriesAll(parts)) return usersEqual(server, device);
  return usersEqual(fitForTerminal(server, parts), fitForTerminal(device, parts));
}
