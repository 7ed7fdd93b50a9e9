// The termsync protocol's words turned into the domain's (src/sync/ports.ts):
// event records into DeviceFacts, result codes into RefusalReasons, the HELLO
// capability bits into PartsSupport. The only place that interprets termsync
// event codes, origins and statuses for the engine. Pure.
import { CAP_FACES, CAP_PHOTO, EventCode, LIMITS, ORIGIN_DEVICE, Status, statusName } from '../../codec/index.js';
import type { EventRecord } from '../../model/event.js';
import { ALL_PARTS, type PartsSupport } from '../../model/parts.js';
import type { DeviceFact, FactKind, RefusalReason, WriteResult } from '../../sync/ports.js';

/** Events that say a user was created or changed (on the device when param = ORIGIN_DEVICE). */
const CHANGED = new Set<number>([EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_PARTIAL_UPDATE_SUCCESS]);
/** Events that say users were deleted (USER_DELETE_ALL_SUCCESS names no user). */
const DELETED = new Set<number>([EventCode.USER_DELETE_SUCCESS, EventCode.USER_DELETE_ALL_SUCCESS]);
/** The terminal's user store was wiped: what it held before cannot be trusted. */
const RESET = new Set<number>([EventCode.FACTORY_RESET, EventCode.DATABASE_RESET]);

function eventName(code: number): string {
  return EventCode[code] ?? `EVENT_0x${code.toString(16)}`;
}

/** One termsync event record as a domain fact. */
export function eventToFact(e: EventRecord): DeviceFact {
  let kind: FactKind = 'other';
  if (CHANGED.has(e.code) && e.userId !== '') kind = 'user-changed';
  else if (DELETED.has(e.code)) kind = 'user-deleted';
  else if (RESET.has(e.code)) kind = 'log-reset';
  const fact: DeviceFact = {
    kind,
    ref: e.id,
    origin: e.param === ORIGIN_DEVICE ? 'device' : 'server',
    at: e.dateTime * 1000,
    detail: eventName(e.code),
  };
  if ((kind === 'user-changed' || kind === 'user-deleted') && e.userId !== '') fact.userId = e.userId;
  return fact;
}

/**
 * The facts of one delivered batch. `after` is the highest event ID delivered
 * before it in this session (or the subscription's start): event IDs of a
 * termsync log count up by one, so a jump means events were overwritten
 * before the server read them, and a 'log-gap' fact goes before the event
 * that follows the hole. Returns the facts and the new highest event ID.
 */
export function eventsToFacts(events: readonly EventRecord[], after: number): { facts: DeviceFact[]; after: number } {
  const facts: DeviceFact[] = [];
  for (const e of events) {
    if (e.id > after + 1) {
      facts.push({ kind: 'log-gap', ref: e.id - 1, origin: 'device', at: e.dateTime * 1000, detail: `events ${after + 1}..${e.id - 1} were lost before the server read them` });
    }
    facts.push(eventToFact(e));
    if (e.id > after) after = e.id;
  }
  return { facts, after };
}

/** A termsync result code (PROTOCOL.md section 7) as a domain reason. */
export function statusToReason(status: number): RefusalReason {
  switch (status) {
    case Status.DUPLICATE_CARD:
    case Status.DUPLICATE_FINGER:
    case Status.DUPLICATE_USER_ID:
      return 'duplicate-credential';
    case Status.USER_FULL:
      return 'full';
    case Status.USER_NOT_FOUND:
      return 'not-found';
    case Status.BUSY:
      return 'busy';
    case Status.TIMEOUT:
      return 'transport';
    case Status.BAD_FRAME:
    case Status.BAD_CHECKSUM:
      return 'unreadable';
    default:
      // INVALID_USER, BAD_PAYLOAD, FRAME_TOO_LARGE, UNKNOWN_COMMAND, codes of later versions
      return 'invalid';
  }
}

/** A per-record result code as a WriteResult. */
/** the answer of every record written (one object: a batch of 200 users needs no 200 copies; read-only) */
const WRITTEN: WriteResult = Object.freeze({ ok: true });

export function writeResult(status: number): WriteResult {
  return status === Status.OK ? WRITTEN : { ok: false, reason: statusToReason(status), detail: statusName(status), code: status };
}

/** What a termsync terminal carries: every part, photo and faces only when its HELLO announces them. */
export function partsFromCapabilities(capabilities: number): PartsSupport {
  return {
    ...ALL_PARTS,
    cards: { ...ALL_PARTS.cards },
    fingers: { ...ALL_PARTS.fingers },
    photo: (capabilities & CAP_PHOTO) !== 0,
    faces: (capabilities & CAP_FACES) !== 0 ? LIMITS.faces : 0,
  };
}
