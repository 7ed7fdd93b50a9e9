// Every protocol constant, named as in protocol/PROTOCOL.md. Nothing else in the
// code base spells these numbers. The limits of a user record and the DISABLED
// bit are the domain's (src/model/limits.ts); the protocol adopts them.
import { USER_DISABLED, USER_LIMITS } from '../model/limits.js';

export const MAGIC0 = 0x54; // 'T'
export const MAGIC1 = 0x53; // 'S'
/**
 * Protocol versions as the wire numbers them (PROTOCOL.md section 3): one byte,
 * 1 = protocol 1.0, 2 = protocol 1.1. The frame layout is the same in both.
 */
export const PROTOCOL_1_0 = 1;
export const PROTOCOL_1_1 = 2;
/** the frame version HELLO and AUTH frames (and their answers) always carry; encodeFrame's default */
export const PROTOCOL_VERSION = PROTOCOL_1_0;
export const MIN_PROTOCOL_VERSION = PROTOCOL_1_0;
/** the newest version this code speaks */
export const MAX_PROTOCOL_VERSION = PROTOCOL_1_1;
export const HEADER_SIZE = 20;
export const MAX_PAYLOAD = 1_048_576;
export const MAX_PREAUTH_PAYLOAD = 256;
export const MAX_ERROR_MESSAGE = 256;
export const HANDSHAKE_DEADLINE_MS = 10_000;

/** "major.minor" of a wire version number: 1 -> "1.0", 2 -> "1.1" */
export function protocolVersionName(v: number): string {
  return v >= 1 && v <= 10 ? `1.${v - 1}` : `wire version ${v}`;
}

export const DEFAULT_TERMINAL_PORT = 51211; // server dials terminal
export const DEFAULT_SERVER_PORT = 51212; // terminal dials server
export const DEFAULT_TLS_PORT = 51213;

export enum FrameKind {
  REQUEST = 1,
  RESPONSE = 2,
  EVENT = 3,
  ERROR = 4,
}

export enum Command {
  HELLO = 0x0001,
  AUTH = 0x0002,
  PING = 0x0003,
  BYE = 0x0004,
  GET_INFO = 0x0010,
  GET_LOG = 0x0020,
  SUBSCRIBE_LOG = 0x0021,
  LOG_EVENT = 0x0022,
  LOG_ACK = 0x0023,
  LIST_USERS = 0x0030,
  GET_USERS = 0x0031,
  PUT_USERS = 0x0032,
  DELETE_USERS = 0x0033,
}

export enum Status {
  OK = 0,
  BAD_FRAME = -1,
  UNKNOWN_COMMAND = -2,
  BAD_PAYLOAD = -3,
  NOT_AUTHENTICATED = -4,
  AUTH_FAILED = -5,
  UNSUPPORTED_VERSION = -6,
  BUSY = -7,
  FRAME_TOO_LARGE = -8,
  BAD_CHECKSUM = -9,
  TIMEOUT = -601,
  DUPLICATE_USER_ID = -705,
  USER_FULL = -706,
  DUPLICATE_FINGER = -707,
  DUPLICATE_CARD = -709,
  USER_NOT_FOUND = -714,
  INVALID_USER = -720,
}

export function statusName(code: number): string {
  return Status[code] ?? `STATUS_${code}`;
}

export enum EventCode {
  USER_ENROLL_SUCCESS = 0x2000,
  USER_ENROLL_FAIL = 0x2100,
  USER_UPDATE_SUCCESS = 0x2200,
  USER_UPDATE_FAIL = 0x2300,
  USER_DELETE_SUCCESS = 0x2400,
  USER_DELETE_FAIL = 0x2500,
  USER_DELETE_ALL_SUCCESS = 0x2600,
  DUPLICATE_CREDENTIAL = 0x2800,
  USER_PARTIAL_UPDATE_SUCCESS = 0x2900,
  USER_PARTIAL_UPDATE_FAIL = 0x2a00,
  SYSTEM_RESET = 0x3000,
  SYSTEM_STARTED = 0x3100,
  LINK_CONNECTED = 0x3300,
  LINK_DISCONNECTED = 0x3400,
  TCP_CONNECTED = 0x3b00,
  TCP_DISCONNECTED = 0x3c00,
  LOG_CLEARED = 0x4200,
  DATABASE_RESET = 0x4501,
  FACTORY_RESET = 0x4502,
  DEVICE_USER_SYNC_TO_SERVER_FAILED = 0xc000,
}

/** event.param for user events */
export const ORIGIN_SERVER = 0;
export const ORIGIN_DEVICE = 1;

export const EVENT_RECORD_SIZE = 48;
export const USER_HEADER_SIZE = 48;
export const USER_FORMAT_VERSION = 1;

export enum UserFlag {
  SAME_AS_SERVER = 0x00,
  CREATED_ON_DEVICE = 0x01,
  UPDATED_ON_DEVICE = 0x02,
  DELETED = 0x04,
  DISABLED = USER_DISABLED,
}

export enum InfoMask {
  DATA = 0x0001,
  SETTING = 0x0002,
  NAME = 0x0004,
  PHOTO = 0x0008,
  PIN = 0x0010,
  CARD = 0x0020,
  FINGER = 0x0040,
  FACE = 0x0080,
  ACCESS_GROUP = 0x0100,
  JOB = 0x0200,
  PHRASE = 0x0400,
}
/** every part defined in version 1 */
export const INFO_MASK_ALL_PARTS = 0x07ff;
/** "everything" in a GET_USERS request */
export const INFO_MASK_ANY = 0xffff;

/** The user-record limits of the model, plus the protocol's own. */
export const LIMITS = {
  ...USER_LIMITS,
  maxBatch: 1000,
  maxLogCount: 1000,
  maxListCount: 1000,
  modelBytes: 16,
  firmwareBytes: 16,
} as const;

export const SETTING_SIZE = 12;
export const CARD_SIZE = 34;
export const FINGER_SIZE = 772;
export const JOB_SIZE = 52;
export const FACE_HEAD_SIZE = 8;
export const LIST_ENTRY_SIZE = 48;
export const DIGEST_BYTES = 12;
export const NONCE_BYTES = 16;
export const PROOF_BYTES = 32;
export const PROOF_LABEL_SERVER = 'termsync-server';
export const PROOF_LABEL_TERMINAL = 'termsync-terminal';
