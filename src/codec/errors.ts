// Typed protocol errors. Every decoder in src/codec throws only ProtocolError, so a
// caller can tell "the peer sent something bad" (answer with `status`, maybe close)
// from a bug in our own code.
import { Status } from './constants.js';

export type ProtocolErrorCode =
  // framing (FrameDecoder): the stream cannot be trusted afterwards
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'BAD_KIND'
  | 'BAD_CHECKSUM'
  | 'FRAME_TOO_LARGE'
  | 'TRUNCATED'
  /** FrameDecoder: a feedEach callback threw, the stream position is lost */
  | 'ABORTED'
  // payloads and records: the frame was fine, its content is not
  | 'UNKNOWN_COMMAND'
  | 'BAD_PAYLOAD'
  | 'TRAILING_BYTES'
  | 'FIELD_OUT_OF_RANGE'
  | 'INVALID_UTF8'
  | 'BAD_PADDING'
  | 'INVALID_USER_ID'
  | 'TOO_MANY_CARDS'
  | 'TOO_MANY_FINGERS'
  | 'TOO_MANY_FACES'
  | 'TOO_MANY_ACCESS_GROUPS'
  | 'TOO_MANY_JOB_CODES'
  | 'BAD_INFO_MASK'
  | 'BAD_FORMAT_VERSION'
  | 'TOO_MANY_RECORDS'
  /** event records of one GET_LOG page or LOG_EVENT frame whose IDs do not strictly ascend */
  | 'EVENTS_NOT_ASCENDING';

/** The status a peer should be answered with for each code, unless the thrower says otherwise. */
const DEFAULT_STATUS: Record<ProtocolErrorCode, Status> = {
  BAD_MAGIC: Status.BAD_FRAME,
  BAD_VERSION: Status.UNSUPPORTED_VERSION,
  BAD_KIND: Status.BAD_FRAME,
  BAD_CHECKSUM: Status.BAD_CHECKSUM,
  FRAME_TOO_LARGE: Status.FRAME_TOO_LARGE,
  TRUNCATED: Status.BAD_PAYLOAD,
  ABORTED: Status.BAD_FRAME,
  UNKNOWN_COMMAND: Status.UNKNOWN_COMMAND,
  BAD_PAYLOAD: Status.BAD_PAYLOAD,
  TRAILING_BYTES: Status.BAD_PAYLOAD,
  FIELD_OUT_OF_RANGE: Status.BAD_PAYLOAD,
  INVALID_UTF8: Status.BAD_PAYLOAD,
  BAD_PADDING: Status.BAD_PAYLOAD,
  INVALID_USER_ID: Status.BAD_PAYLOAD,
  TOO_MANY_CARDS: Status.BAD_PAYLOAD,
  TOO_MANY_FINGERS: Status.BAD_PAYLOAD,
  TOO_MANY_FACES: Status.BAD_PAYLOAD,
  TOO_MANY_ACCESS_GROUPS: Status.BAD_PAYLOAD,
  TOO_MANY_JOB_CODES: Status.BAD_PAYLOAD,
  BAD_INFO_MASK: Status.BAD_PAYLOAD,
  BAD_FORMAT_VERSION: Status.BAD_PAYLOAD,
  TOO_MANY_RECORDS: Status.BAD_PAYLOAD,
  EVENTS_NOT_ASCENDING: Status.BAD_PAYLOAD,
};

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  /** the result code to answer the peer with (PROTOCOL.md section 7) */
  readonly status: Status;

  constructor(code: ProtocolErrorCode, message: string, status?: Status) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.status = status ?? DEFAULT_STATUS[code];
  }

  /** A copy carrying another status (for example INVALID_USER for a bad record in PUT_USERS). */
  withStatus(status: Status): ProtocolError {
    const e = new ProtocolError(this.code, this.message, status);
    e.stack = this.stack;
    return e;
  }
}

export function isProtocolError(e: unknown): e is ProtocolError {
  return e instanceof ProtocolError;
}

/**
 * Runs a decoder and turns any stray exception (RangeError from a Buffer read past
 * the end, TypeError from a bug) into a ProtocolError, so that callers only ever
 * see the typed error. `what` names the thing being decoded.
 */
export function guard<T>(what: string, fn: () => T, status?: Status): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ProtocolError) {
      if (status !== undefined && e.status !== status) throw e.withStatus(status);
      throw e;
    }
    const msg = e instanceof Error ? e.message : String(e);
    throw new ProtocolError('BAD_PAYLOAD', `${what}: malformed (${msg})`, status);
  }
}
