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
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Command, EventCode, statusName } from '../codec/index.js';
import type { EventRecord } from '../model/event.js';
import { userToJson, type UserRecord } from '../model/user.js';
import { SimActionError, type SimTerminal, type UserPatch } from './terminal.js';

export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_FAULT_MS = 24 * 3600 * 1000;
/** every fault the control API injects (POST /terminals/:id/faults {"type": ...}) */
export const FAULT_TYPES = ['drop', 'stall', 'corrupt', 'refuse', 'reset', 'blackhole', 'busy', 'unreadable'] as const;

/** What the control API needs from the simulator. */
export interface ControlTarget {
  terminals: SimTerminal[];
  /** the listening port of terminal i (0-based), or undefined in dial mode */
  portOf(i: number): number | undefined;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
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

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'a JSON body is required');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `malformed JSON: ${(e as Error).message}`);
  }
}

function parseMs(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_FAULT_MS)
    throw new HttpError(400, `"ms" must be a whole number of milliseconds in 1..${MAX_FAULT_MS}`);
  return v;
}

function applyFault(t: SimTerminal, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the fault must be a JSON object');
  const f = body as { type?: unknown; ms?: unknown };
  switch (f.type) {
    case 'drop':
      t.dropConnections();
      return { type: 'drop' };
    case 'stall': {
      const ms = parseMs(f.ms);
      t.stall(ms);
      return { type: 'stall', ms };
    }
    case 'blackhole': {
      const ms = parseMs(f.ms);
      t.blackhole(ms);
      return { type: 'blackhole', ms };
    }
    case 'refuse': {
      const ms = parseMs(f.ms);
      t.refuse(ms);
      return { type: 'refuse', ms };
    }
    case 'corrupt':
      t.corruptNextFrame();
      return { type: 'corrupt' };
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

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

async function route(target: ControlTarget, req: http.IncomingMessage): Promise<{ status: number; body?: unknown }> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = url.pathname.split('/').filter((p) => p !== '');
  const method = req.method ?? 'GET';
  const allow = (...m: string[]) => {
    if (!m.includes(method)) throw new HttpError(405, `${method} is not allowed here (allowed: ${m.join(', ')})`);
  };
  if (parts[0] !== 'terminals') throw new HttpError(404, `no such resource: ${url.pathname}`);
  if (parts.length === 1) {
    allow('GET');
    return { status: 200, body: { terminals: target.terminals.map((_, i) => terminalJson(target, i)) } };
  }
  const idText = parts[1];
  const i = /^[1-9][0-9]*$/.test(idText) ? Number(idText) - 1 : -1;
  const t = target.terminals[i];
  if (!t) throw new HttpError(404, `no terminal ${JSON.stringify(idText)} (ids are 1..${target.terminals.length})`);
  if (parts.length === 2) {
    allow('GET');
    return { status: 200, body: terminalJson(target, i) };
  }
  switch (parts[2]) {
    case 'users': {
      if (parts.length === 3) {
        allow('GET', 'POST');
        if (method === 'GET') return { status: 200, body: { users: t.listUsers().map(userJson) } };
        const u = await t.enrollJson(await readBody(req));
        return { status: 201, body: userJson(u) };
      }
      if (parts.length !== 4) break;
      const userId = decodeSegment(parts[3]);
      allow('GET', 'PATCH', 'DELETE');
      if (method === 'GET') {
        const u = t.getUser(userId);
        if (!u) throw new HttpError(404, `no user ${JSON.stringify(userId)} on terminal ${t.index}`);
        return { status: 200, body: userJson(u) };
      }
      if (method === 'PATCH') {
        const body = await readBody(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the edit must be a JSON object');
        const u = await t.edit(userId, body as UserPatch);
        return { status: 200, body: userJson(u) };
      }
      await t.remove(userId);
      return { status: 204 };
    }
    case 'events': {
      if (parts.length !== 3) break;
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
      if (parts.length !== 3) break;
      allow('POST');
      const applied = applyFault(t, await readBody(req));
      return { status: 200, body: { ok: true, ...applied } };
    }
  }
  throw new HttpError(404, `no such resource: ${url.pathname}`);
}

function intParam(url: URL, name: string, min: number, max: number, dflt: number): number {
  const v = url.searchParams.get(name);
  if (v === null) return dflt;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, `${name} must be a whole number in ${min}..${max}`);
  return Number(v);
}

export interface ControlServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the control API. `host` should stay on loopback: the API has no authentication. */
export async function startControlServer(target: ControlTarget, host: string, port: number, log?: Logger): Promise<ControlServer> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body?: unknown) => {
      if (res.headersSent) return;
      if (body === undefined) {
        res.writeHead(status).end();
        return;
      }
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
    };
    route(target, req).then(
      (r) => send(r.status, r.body),
      (e: unknown) => {
        if (e instanceof HttpError) {
          if (e.status === 413) res.setHeader('connection', 'close');
          send(e.status, { error: e.message });
        } else if (e instanceof SimActionError) {
          send(e.httpStatus, { error: e.message, ...(e.status !== undefined ? { code: statusName(e.status) } : {}) });
        } else {
          log?.error({ err: e }, 'control API internal error');
          send(500, { error: 'internal error' });
        }
      },
    );
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  log?.info({ host, port: actual }, 'control API listening');
  return {
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
