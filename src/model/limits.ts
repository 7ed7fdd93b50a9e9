// The limits of one user record as the server holds it, and the flag bit the
// server keeps. The bottom of the layering: every other layer (codecs, drivers,
// store, admin API, simulator) imports these from here and defines none of its
// own. A terminal protocol may carry less (see PartsSupport in parts.ts), never
// more.

export const USER_LIMITS = {
  /** user ID: 1..32 bytes of UTF-8, no control characters */
  userIdBytes: 32,
  nameBytes: 192,
  phraseBytes: 128,
  jobLabelBytes: 48,
  /** SHA-256 of the PIN */
  pinHashBytes: 32,
  photoBytes: 16_384,
  cards: 8,
  cardDataBytes: 32,
  fingers: 10,
  /** highest finger index (0..9) */
  fingerIndexMax: 9,
  fingerTemplateBytes: 384,
  faces: 5,
  faceDataBytes: 32_768,
  accessGroups: 16,
  jobCodes: 16,
  securityLevelMax: 5,
} as const;

/**
 * The one bit of UserRecord.flag the server keeps: an administrator disabled the
 * user. The other bits of the byte describe a terminal's copy (set by a
 * protocol's driver) and are dropped when a record is merged or stored.
 */
export const USER_DISABLED = 0x80;
