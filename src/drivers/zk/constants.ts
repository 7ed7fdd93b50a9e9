// Constants of the ZKTeco standalone protocol (TCP 4370), named as in
// protocol/zk/ZK-PROTOCOL.md. Every constant lives here once.

export const ZK_DEFAULT_PORT = 4370;

/** The four bytes that open every TCP frame. */
export const ZK_MAGIC = Buffer.from([0x50, 0x50, 0x82, 0x7d]);
/** magic (4) + u32 payload length (4) */
export const ZK_PREFIX_BYTES = 8;
/** command, checksum, session, reply: four u16 */
export const ZK_HEADER_BYTES = 8;
/**
 * Largest payload the decoder accepts before allocating anything. The biggest
 * legitimate payload is a whole table in one CMD_DATA reply or a 65,472-byte
 * chunk; 1 MiB leaves room for firmware that sends whole tables directly.
 */
export const ZK_MAX_PAYLOAD = 1024 * 1024;

/** Chunk size of a buffered read over TCP (0xFFC0). */
export const ZK_READ_CHUNK = 65_472;
/** Largest chunk the client uploads in one CMD_DATA frame. */
export const ZK_UPLOAD_CHUNK = 1024;
/** DATA frame payload size used by the captured devices (and by the simulator). */
export const ZK_DEVICE_PACKET = 1008;

export const Cmd = {
  CONNECT: 1000,
  EXIT: 1001,
  ENABLEDEVICE: 1002,
  DISABLEDEVICE: 1003,
  REFRESHDATA: 1013,
  REFRESHOPTION: 1014,
  GET_VERSION: 1100,
  AUTH: 1102,
  OPTIONS_RRQ: 11,
  OPTIONS_WRQ: 12,
  GET_FREE_SIZES: 50,
  USER_WRQ: 8,
  USERTEMP_RRQ: 9,
  DB_RRQ: 7,
  ATTLOG_RRQ: 13,
  DELETE_USER: 18,
  DELETE_USERTEMP: 19,
  OPLOG_RRQ: 34,
  STARTVERIFY: 60,
  STARTENROLL: 61,
  CANCELCAPTURE: 62,
  STATE_RRQ: 64,
  GET_USERTEMP: 88,
  SAVE_USERTEMPS: 110,
  DEL_USER_TEMP: 134,
  GET_TIME: 201,
  SET_TIME: 202,
  REG_EVENT: 500,
  PREPARE_DATA: 1500,
  DATA: 1501,
  FREE_DATA: 1502,
  PREPARE_BUFFER: 1503,
  READ_BUFFER: 1504,
} as const;

export const Reply = {
  ACK_OK: 2000,
  ACK_ERROR: 2001,
  ACK_DATA: 2002,
  ACK_RETRY: 2003,
  ACK_REPEAT: 2004,
  ACK_UNAUTH: 2005,
  ACK_UNKNOWN: 0xffff,
  ACK_ERROR_CMD: 0xfffd,
  ACK_ERROR_INIT: 0xfffc,
  ACK_ERROR_DATA: 0xfffb,
} as const;

const NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(Cmd)) NAMES.set(v, `CMD_${k}`);
for (const [k, v] of Object.entries(Reply)) NAMES.set(v, `CMD_${k}`);

/** A readable name for a command or reply code (for errors and logs). */
export function codeName(code: number): string {
  return NAMES.get(code) ?? `code ${code}`;
}

/** Realtime event flags (the event code travels in the session field). */
export const EventFlag = {
  ATTLOG: 1,
  FINGER: 2,
  ENROLLUSER: 4,
  ENROLLFINGER: 8,
  BUTTON: 16,
  UNLOCK: 32,
  VERIFY: 128,
  FPFTR: 256,
  ALARM: 512,
} as const;

/** Inner table ids of a PREPARE_BUFFER read: [inner command, fct]. */
export const Table = {
  USERS: { inner: Cmd.USERTEMP_RRQ, fct: 5 },
  TEMPLATES: { inner: Cmd.DB_RRQ, fct: 2 },
  ATTLOG: { inner: Cmd.ATTLOG_RRQ, fct: 0 },
  OPLOG: { inner: Cmd.OPLOG_RRQ, fct: 0 },
} as const;

/** Record sizes of the user table. */
export const USER_RECORD_72 = 72;
export const USER_RECORD_28 = 28;

/** Field widths of the 72-byte record. */
export const U72 = {
  uid: 0,
  privilege: 2,
  password: 3,
  passwordBytes: 8,
  name: 11,
  nameBytes: 24,
  card: 35,
  group: 39,
  /** bytes 40..47: own-timezone flag and three timezones (kept as read) */
  tz: 40,
  tzBytes: 8,
  userId: 48,
  userIdBytes: 24,
} as const;

/** Field widths of the 28-byte record. */
export const U28 = {
  uid: 0,
  privilege: 2,
  password: 3,
  passwordBytes: 5,
  name: 8,
  nameBytes: 8,
  card: 16,
  /** byte 20: the fifth card byte (pad) */
  cardPad: 20,
  group: 21,
  tz: 22,
  userId: 24,
} as const;

/** Privilege byte: bit 0 disabled, bits 1-3 level. */
export const PRIV_DISABLED = 0x01;
export const Privilege = { USER: 0, ENROLLER: 2, MANAGER: 6, ADMIN: 14 } as const;

/** Data of command 110 after an upload: u32 12, u16 0, u16 8. */
export const SAVE_USERTEMPS_DATA = Buffer.from('0c00000000000800', 'hex');
