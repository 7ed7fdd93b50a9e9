// The simulator's control API: JSON over HTTP on 127.0.0.1, node:http only.
// Terminal ids in paths are the 1-based index "1".."N" (see GET /terminals).
//
//   GET    /terminals                          every terminal: id, deviceId, port, connected, userCount, lastEventId, ...
//   GET    /terminals/:id                      one terminal
//   GET    /terminals/:id/users                its users (userToJson + flag + version), protocol order
//   GET    /terminals/:id/users/:userId        one user (404 when absent)
//   POST   /terminals/:id/users                on-device enroll (body: user JSON); 201, 409 if the user exists
//   PATCH  /terminals/:id/users/:userId        on-device edit (fields replace; addCards/addFingers append)
//   DELETE /terminals/:id/users/:userId        on-device delete; 204
//   GET    /terminals/:id/events?after=N&limit=M   the event ring
//   POST   /terminals/:id/faults               {type: drop|stall|corrupt|refuse|reset|blackhole|busy|unreadable, ...}
//
// Errors: {"error": "message"} with 400 (bad input), 404 (no such terminal/user/route),
// 405 (method), 409 (conflict with the terminal's state), 413 (body over 1 MiB).
import type http from 'node:http';
import type { Logger } from 'pino';
import { Command, EventCode, statusName } from '../codec/index.js';
import type { EventRecord } from '../model/event.js';
import { userToJson, type UserRecord } from '../model/user.js';
import { applyCommonFault, faultBody, HttpError, parseMs, readBody, routeTerminalApi, startJsonServer, type JsonReply, type JsonServer, type TerminalRequest, type UserOps } from './http.js';
import { SimActionError, type SimTerminal, type UserPatch } from './terminal.js';

export { MAX_BODY_BYTES } from './http.js';
/** every fault the control API injects (POST /terminals/:id/faults {"type": ...}) */
export const FAULT_TYPES = ['drop', 'stall', 'corrupt', 'refuse', 'reset', 'blackhole', 'busy', 'unreadable'] as const;

/** What the control API needs from the simulator. */
export interface ControlTarget {
  terminals: SimTerminal[];
  /** the listening port of terminal i (0-based), or undefined in dial mode */
  portOf(i: number): number | undefined;
}

export function userJson(u: UserRecord) {
  return { ...userToJson(u), flag: u.flag, version: u.version };
}

export function eventJson(e: EventRecord) {
  return { ...e, codeName: EventCode[e.code] ?? `0x${e.code.toString(16).padStart(4, '0')}` };
}

export function terminalJson(target: ControlTarget, i: number) {
  const t = target.terminals[i];
  return {
    id: String(t.index),
    deviceId: t.deviceId,
    port: target.portOf(i) ?? null,
    connected: t.connected,
    userCount: t.userCount,
    userCapacity: t.userCapacity,
    logEpoch: t.ring.logEpoch,
    firstEventId: t.ring.firstEventId,
    lastEventId: t.ring.lastEventId,
    logCapacity: t.ring.capacity,
  };
}

function applyFault(t: SimTerminal, body: unknown): Record<string, unknown> {
  const f = faultBody(body);
  const common = applyCommonFault(t, f);
  if (common) return common;
  switch (f.type) {
    case 'reset':
      t.factoryReset();
      return { type: 'reset', logEpoch: t.ring.logEpoch };
    case 'busy': {
      const g = body as { count?: unknown; command?: unknown; frame?: unknown };
      const count = g.count === undefined ? 1 : g.count;
      if (typeof count !== 'number' || !Number.isInteger(count) || count < 0 || count > 1_000_000)
        throw new HttpError(400, '"count" must be a whole number in 0..1000000');
      let command: Command | undefined;
      if (g.command !== undefined) {
        const c = typeof g.command === 'string' ? (Command as unknown as Record<string, number>)[g.command] : undefined;
        if (typeof c !== 'number' || c === Command.HELLO || c === Command.AUTH || c === Command.LOG_EVENT || c === Command.LOG_ACK)
          throw new HttpError(400, '"command" must name a request the terminal serves, e.g. "GET_USERS"');
        command = c;
      }
      if (g.frame !== undefined && g.frame !== 'response' && g.frame !== 'error')
        throw new HttpError(400, '"frame" must be "response" (the default) or "error"');
      t.busy(count, { command, asError: g.frame === 'error' });
      return { type: 'busy', count, ...(command !== undefined ? { command: Command[command] } : {}), frame: g.frame ?? 'response' };
    }
    case 'unreadable': {
      const ms = parseMs(f.ms);
      const userId = (body as { userId?: unknown }).userId;
      if (userId !== undefined && (typeof userId !== 'string' || userId === '')) throw new HttpError(400, '"userId" must be a non-empty string');
      t.unreadable(ms, userId);
      return { type: 'unreadable', ms, ...(userId !== undefined ? { userId } : {}) };
    }
    default:
      throw new HttpError(400, `fault type must be one of ${FAULT_TYPES.join(', ')}`);
  }
}

/** The routes below a terminal besides its users: events and faults. */
async function terminalRoute(r: TerminalRequest<SimTerminal>, req: http.IncomingMessage): Promise<JsonReply | undefined> {
  const { url, parts, allow, t } = r;
  if (parts.length !== 3) return undefined;
  switch (parts[2]) {
    case 'events': {
      allow('GET');
      const after = intParam(url, 'after', 0, 0xffffffff, 0);
      const limit = intParam(url, 'limit', 1, 100_000, 10_000);
      return {
        status: 200,
        body: {
          logEpoch: t.ring.logEpoch,
          firstEventId: t.ring.firstEventId,
          lastEventId: t.ring.lastEventId,
          events: t.eventsAfter(after, limit).map(eventJson),
        },
      };
    }
    case 'faults': {
      allow('POST');
      const applied = applyFault(t, await readBody(req));
      return { status: 200, body: { ok: true, ...applied } };
    }
  }
  return undefined;
}

function route(target: ControlTarget, req: http.IncomingMessage): Promise<JsonReply> {
  const users = (t: SimTerminal): UserOps<UserRecord> => ({
    enroll: (body) => t.enrollJson(body),
    get: (userId) => t.getUser(userId),
    edit: (userId, patch) => t.edit(userId, patch as UserPatch),
    json: userJson,
  });
  return routeTerminalApi(req, target.terminals, (i) => terminalJson(target, i), users, (r) => terminalRoute(r, req));
}

function intParam(url: URL, name: string, min: number, max: number, dflt: number): number {
  const v = url.searchParams.get(name);
  if (v === null) return dflt;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, `${name} must be a whole number in ${min}..${max}`);
  return Number(v);
}

export type ControlServer = JsonServer;

/** Starts the control API. `host` should stay on loopback: the API has no authentication. */
export function startControlServer(target: ControlTarget, host: string, port: number, log?: Logger): Promise<ControlServer> {
  return startJsonServer(
    (req) => route(target, req),
    (e) =>
      e instanceof SimActionError
        ? { status: e.httpStatus, body: { error: e.message, ...(e.status !== undefined ? { code: statusName(e.status) } : {}) } }
        : undefined,
    host,
    port,
    log,
    'control API',
  );
}
