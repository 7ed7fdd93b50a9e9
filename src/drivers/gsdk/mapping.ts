// Device gateway UserInfo <-> termsync user (README "Suprema terminals (G-SDK)"
// has the table). The termsync record follows Suprema's, so most parts map
// one to one:
//
//   UserInfo (gateway)                    termsync UserRecord
//   hdr.ID                           <->  id (a number unless the terminal takes alphanumeric IDs)
//   hdr.authGroupID                  <->  authGroupId
//   setting.startTime / endTime      <->  setting.startTime / endTime
//   setting.fingerAuthMode, cardAuthMode, IDAuthMode, securityLevel <-> the same (values as they are)
//   name (48 characters)             <->  name
//   cards[] {type, size 32, data}    <->  cards[] {type, data}: data right-aligned in 32 bytes;
//                                          read back without leading zero bytes, at least 4 kept
//                                          (shorter data comes back padded: 0102 reads 00000102;
//                                          GSDK_PARTS says so, and the model compares cards in
//                                          that form, so such a user is not pushed again)
//   fingers[] {index, flag, 2 templates} <-> fingers[] (templates padded to 384 bytes)
//   accessGroupIDs (16)              <->  accessGroups
//   photo (16 KB)                    <->  photo
//   PIN                               ->  never: the terminal keeps a hash of its own; termsync
//                                          holds only SHA-256 of a PIN. Not written, not read.
//
// Not carried: faces (the terminal's face templates are another shape), job
// codes, the phrase, the DISABLED bit (the interface this subset follows has
// no such field). GSDK_PARTS says so to the engine: the merge takes what a
// terminal cannot carry as vacant (never fills or erases a server field with
// it), and comparisons ignore it.
import { MODEL_FINGER_FORMAT, canonicalCardData, fitUtf8, type PartsSupport } from '../../model/parts.js';
import { USER_LIMITS, emptyUser, type UserRecord } from '../../model/user.js';
import { CARD_DATA_SIZE, FINGER_TEMPLATE_SIZE } from './constants.js';
import type { CSNCardData, UserInfo } from './proto.js';

/** Bytes of card data kept at least when leading zero bytes are stripped on a read. */
export const MIN_CARD_BYTES = 4;

export const GSDK_PARTS: Readonly<PartsSupport> = Object.freeze({
  nameBytes: USER_LIMITS.nameBytes,
  phraseBytes: 0,
  validity: true,
  authModes: true,
  securityLevel: true,
  authGroup: true,
  disabled: false,
  photo: true,
  pin: 'none',
  cards: Object.freeze({ max: 8, maxDataBytes: CARD_DATA_SIZE, typed: true, rightAlignedMinBytes: MIN_CARD_BYTES }),
  fingers: Object.freeze({ max: 10, format: MODEL_FINGER_FORMAT }),
  faces: 0,
  accessGroups: 16,
  jobCodes: 0,
});

export class GsdkMappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GsdkMappingError';
  }
}

/** Why a user ID cannot go to this terminal, or null. */
export function gsdkUserIdProblem(id: string, alphanumeric: boolean): string | null {
  if (Buffer.byteLength(id, 'utf8') > 32) return `user id ${JSON.stringify(id)} is longer than the 32 bytes a Suprema terminal holds`;
  if (alphanumeric) {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return `user id ${JSON.stringify(id)} has characters a Suprema terminal does not take (letters, digits, '_', '-')`;
    return null;
  }
  if (!/^[0-9]+$/.test(id) || /^0+$/.test(id)) return `user id ${JSON.stringify(id)} is not a number a Suprema terminal without alphanumeric IDs can hold (digits, not 0)`;
  if (Number(id) > 0xffff_ffff) return `user id ${JSON.stringify(id)} is above 4294967295`;
  return null;
}

/** A termsync card as the gateway's: the data right-aligned in 32 bytes. */
export function cardToGsdk(c: { type: number; data: Buffer }): CSNCardData {
  const data = Buffer.alloc(CARD_DATA_SIZE);
  c.data.copy(data, CARD_DATA_SIZE - c.data.length);
  return { type: c.type, size: CARD_DATA_SIZE, data };
}

/** A gateway card as termsync's: leading zero bytes stripped, at least MIN_CARD_BYTES kept (the model's canonicalCardData). */
export function cardFromGsdk(c: CSNCardData): { type: number; data: Buffer } {
  return { type: c.type, data: canonicalCardData(c.data, MIN_CARD_BYTES) };
}

function template(t: Buffer | undefined): Buffer {
  const out = Buffer.alloc(FINGER_TEMPLATE_SIZE);
  if (t) t.copy(out, 0, 0, Math.min(t.length, FINGER_TEMPLATE_SIZE));
  return out;
}

/** What a terminal's UserInfo says of a user, in termsync's terms (the PIN is not read: see the header). */
export function gsdkToUser(g: UserInfo): UserRecord {
  const u = emptyUser(g.hdr?.ID ?? '');
  u.authGroupId = g.hdr?.authGroupID ?? 0;
  const s = g.setting;
  if (s) {
    u.setting.startTime = s.startTime;
    u.setting.endTime = s.endTime;
    u.setting.fingerAuthMode = s.fingerAuthMode & 0xff;
    u.setting.cardAuthMode = s.cardAuthMode & 0xff;
    u.setting.idAuthMode = s.IDAuthMode & 0xff;
    u.setting.securityLevel = Math.min(s.securityLevel, USER_LIMITS.securityLevelMax);
  }
  // what the gateway sends is cut to what a terminal holds: a longer name to the model's
  // length, card data over 32 bytes (no terminal holds such a card) left out
  u.name = fitUtf8(g.name ?? '', GSDK_PARTS.nameBytes);
  u.cards = (g.cards ?? [])
    .filter((c) => c.data && c.data.length > 0 && c.data.length <= CARD_DATA_SIZE && c.data.some((b) => b !== 0))
    .slice(0, GSDK_PARTS.cards.max)
    .map(cardFromGsdk);
  u.fingers = (g.fingers ?? []).slice(0, GSDK_PARTS.fingers.max).map((f, i) => ({
    index: f.index >= 0 && f.index <= USER_LIMITS.fingerIndexMax ? f.index : i,
    flag: f.flag & 0xff,
    templates: [template(f.templates?.[0]), template(f.templates?.[1])],
  }));
  u.accessGroups = (g.accessGroupIDs ?? []).slice(0, GSDK_PARTS.accessGroups);
  u.photo = g.photo && g.photo.length <= USER_LIMITS.photoBytes ? Buffer.from(g.photo) : Buffer.alloc(0);
  return u;
}

/** Parts of a termsync user a Suprema terminal (through the gateway) does not get. */
export type GsdkDroppedPart = 'pin' | 'faces' | 'jobCodes' | 'phrase' | 'disabled';

/**
 * The UserInfo termsync writes for a user (Enroll with overwrite replaces the
 * whole record on the terminal). The PIN is left empty: termsync holds no PIN
 * in plain. Throws GsdkMappingError when the user ID cannot go to the terminal.
 */
export function userToGsdk(u: UserRecord, o: { alphanumericIds: boolean }): { info: UserInfo; dropped: GsdkDroppedPart[] } {
  const problem = gsdkUserIdProblem(u.id, o.alphanumericIds);
  if (problem) throw new GsdkMappingError(problem);
  const dropped: GsdkDroppedPart[] = [];
  if (u.pinHash.length > 0 && u.pinHash.some((b) => b !== 0)) dropped.push('pin');
  if (u.faces.length > 0) dropped.push('faces');
  if (u.jobCodes.length > 0) dropped.push('jobCodes');
  if (u.phrase !== '') dropped.push('phrase');
  if (u.flag & 0x80) dropped.push('disabled');
  // a card of zeros only is no card on the terminal (it reads back as none): not sent, not counted
  const cards = u.cards
    .filter((c) => c.data.length <= CARD_DATA_SIZE && c.data.some((b) => b !== 0))
    .slice(0, GSDK_PARTS.cards.max)
    .map(cardToGsdk);
  const fingers = u.fingers.slice(0, GSDK_PARTS.fingers.max).map((f) => ({ index: f.index, flag: f.flag, templates: [Buffer.from(f.templates[0]), Buffer.from(f.templates[1])] }));
  const info: UserInfo = {
    hdr: { ID: u.id, numOfCard: cards.length, numOfFinger: fingers.length, numOfFace: 0, authGroupID: u.authGroupId },
    setting: {
      startTime: u.setting.startTime,
      endTime: u.setting.endTime,
      fingerAuthMode: u.setting.fingerAuthMode,
      cardAuthMode: u.setting.cardAuthMode,
      IDAuthMode: u.setting.idAuthMode,
      securityLevel: u.setting.securityLevel,
    },
    name: u.name,
    cards,
    fingers,
    accessGroupIDs: u.accessGroups.slice(0, GSDK_PARTS.accessGroups),
    PIN: Buffer.alloc(0),
    photo: Buffer.from(u.photo),
  };
  return { info, dropped };
}
