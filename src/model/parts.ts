// Which parts of a user record a terminal can carry. The server's record holds
// every part (ALL_PARTS); a terminal protocol may hold less: a ZK terminal, for
// one, keeps a 23-byte name, one card number without a type, a plain password,
// fingerprints in its own template format, and no access groups, photo, faces,
// job codes or validity window. A driver declares its PartsSupport; the model
// uses it to say what such a terminal would hold of a server record
// (fitForTerminal), to compare a terminal's copy with the server's record
// without seeing a difference in what it cannot carry (sameForTerminal in
// merge.ts), and to make sure a part the terminal cannot carry never reaches the
// merge as if it were data (mergeDeviceIntoServer with `parts`).
import { USER_DISABLED, USER_LIMITS } from './limits.js';
import { emptyUser, hasPin, type UserRecord } from './user.js';

/** The fingerprint template format of the model's Finger: two 384-byte templates (PROTOCOL.md 6.2). */
export const MODEL_FINGER_FORMAT = 'termsync-384x2';

/** The card type a terminal that keeps no card type reports (and is compared as). */
export const UNTYPED_CARD_TYPE = 1;

export interface PartsSupport {
  /** longest name kept, in bytes of UTF-8 (0: no name) */
  nameBytes: number;
  /** longest phrase kept, in bytes of UTF-8 (0: no phrase) */
  phraseBytes: number;
  /** startTime and endTime */
  validity: boolean;
  /** fingerAuthMode, cardAuthMode, idAuthMode */
  authModes: boolean;
  securityLevel: boolean;
  authGroup: boolean;
  /** the DISABLED bit */
  disabled: boolean;
  photo: boolean;
  /**
   * 'hash': the terminal keeps the PIN's SHA-256, as the server does;
   * 'plain': it keeps the PIN itself (its driver hashes what it reads, and can
   * write only a PIN it knows in plain); 'none': no PIN.
   */
  pin: 'hash' | 'plain' | 'none';
  /**
   * most cards, longest card data, and whether the card type is kept.
   * `rightAlignedMinBytes`, when set: the terminal keeps card data as a number
   * right-aligned in a fixed field, so leading zero bytes carry no meaning; it
   * reads data back with leading zero bytes stripped down to this many bytes
   * (shorter data comes back padded with leading zeros), and data of zeros
   * only is no card. The model compares cards in that form (canonicalCardData).
   */
  cards: { max: number; maxDataBytes: number; typed: boolean; rightAlignedMinBytes?: number };
  /** most fingers, and the template format (fingers cross only between terminals of the same format) */
  fingers: { max: number; format: string };
  /** most faces (0: none) */
  faces: number;
  /** most access groups (0: none) */
  accessGroups: number;
  /** most job codes (0: none) */
  jobCodes: number;
}

/** Every part, at the model's limits: what the server holds (and a termsync terminal with photo and faces). */
export const ALL_PARTS: Readonly<PartsSupport> = Object.freeze({
  nameBytes: USER_LIMITS.nameBytes,
  phraseBytes: USER_LIMITS.phraseBytes,
  validity: true,
  authModes: true,
  securityLevel: true,
  authGroup: true,
  disabled: true,
  photo: true,
  pin: 'hash',
  cards: Object.freeze({ max: USER_LIMITS.cards, maxDataBytes: USER_LIMITS.cardDataBytes, typed: true }),
  fingers: Object.freeze({ max: USER_LIMITS.fingers, format: MODEL_FINGER_FORMAT }),
  faces: USER_LIMITS.faces,
  accessGroups: USER_LIMITS.accessGroups,
  jobCodes: USER_LIMITS.jobCodes,
});

/** `s` cut to at most `maxBytes` bytes of UTF-8, never inside a character. */
export function fitUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  let out = '';
  let n = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch, 'utf8');
    if (n + b > maxBytes) break;
    out += ch;
    n += b;
  }
  return out;
}

/**
 * Card data as a terminal that right-aligns it holds it (PartsSupport
 * cards.rightAlignedMinBytes = `minBytes`): leading zero bytes stripped, at
 * least `minBytes` kept, shorter data padded with leading zeros to `minBytes`.
 * A new buffer.
 */
export function canonicalCardData(data: Buffer, minBytes: number): Buffer {
  let start = 0;
  while (start < data.length - minBytes && data[start] === 0) start++;
  const rest = data.subarray(start);
  if (rest.length >= minBytes) return Buffer.from(rest);
  const out = Buffer.alloc(minBytes);
  rest.copy(out, minBytes - rest.length);
  return out;
}

/**
 * What a terminal with `parts` holds of `u`: the parts it cannot carry vacant,
 * text cut to its lengths, lists cut to its counts (the first entries kept),
 * cards it cannot hold (data too long) left out, card types made
 * UNTYPED_CARD_TYPE when it keeps none, card data in the terminal's form when
 * it right-aligns it (canonicalCardData; zeros only: no card), fingers left out when their format is
 * not the terminal's. The terminal-side flag bits and the version counter are
 * dropped (they describe a copy, not the user). `u` is not modified; the
 * result shares no buffers with it.
 */
export function fitForTerminal(u: UserRecord, parts: Readonly<PartsSupport>): UserRecord {
  const r = emptyUser(u.id);
  r.flag = parts.disabled ? u.flag & USER_DISABLED : 0;
  r.name = fitUtf8(u.name, parts.nameBytes);
  r.phrase = fitUtf8(u.phrase, parts.phraseBytes);
  if (parts.validity) {
    r.setting.startTime = u.setting.startTime;
    r.setting.endTime = u.setting.endTime;
  }
  if (parts.authModes) {
    r.setting.fingerAuthMode = u.setting.fingerAuthMode;
    r.setting.cardAuthMode = u.setting.cardAuthMode;
    r.setting.idAuthMode = u.setting.idAuthMode;
  }
  if (parts.securityLevel) r.setting.securityLevel = u.setting.securityLevel;
  if (parts.authGroup) r.authGroupId = u.authGroupId;
  if (parts.photo) r.photo = Buffer.from(u.photo);
  if (parts.pin !== 'none' && hasPin(u)) r.pinHash = Buffer.from(u.pinHash);
  const aligned = parts.cards.rightAlignedMinBytes;
  r.cards = u.cards
    .filter((c) => c.data.length <= parts.cards.maxDataBytes && (aligned === undefined || c.data.some((b) => b !== 0)))
    .slice(0, parts.cards.max)
    .map((c) => ({ type: parts.cards.typed ? c.type : UNTYPED_CARD_TYPE, data: aligned === undefined ? Buffer.from(c.data) : canonicalCardData(c.data, aligned) }));
  if (parts.fingers.format === MODEL_FINGER_FORMAT)
    r.fingers = u.fingers.slice(0, parts.fingers.max).map((f) => ({ index: f.index, flag: f.flag, templates: [Buffer.from(f.templates[0]), Buffer.from(f.templates[1])] }));
  r.faces = u.faces.slice(0, parts.faces).map((f) => ({ index: f.index, flag: f.flag, data: Buffer.from(f.data) }));
  r.accessGroups = u.accessGroups.slice(0, parts.accessGroups);
  r.jobCodes = u.jobCodes.slice(0, parts.jobCodes).map((j) => ({ code: j.code, label: j.label }));
  return r;
}

/** True when `parts` carries everything the model holds (fitForTerminal changes nothing but the copy's flag bits and version). */
export function carriesAll(parts: Readonly<PartsSupport>): boolean {
  const a = ALL_PARTS;
  return (
    parts.nameBytes >= a.nameBytes &&
    parts.phraseBytes >= a.phraseBytes &&
    parts.validity &&
    parts.authModes &&
    parts.securityLevel &&
    parts.authGroup &&
    parts.disabled &&
    parts.photo &&
    parts.pin === 'hash' &&
    parts.cards.max >= a.cards.max &&
    parts.cards.maxDataBytes >= a.cards.maxDataBytes &&
    parts.cards.typed &&
    parts.cards.rightAlignedMinBytes === undefined &&
    parts.fingers.max >= a.fingers.max &&
    parts.fingers.format === a.fingers.format &&
    parts.faces >= a.faces &&
    parts.accessGroups >= a.accessGroups &&
    parts.jobCodes >= a.jobCodes
  );
}
