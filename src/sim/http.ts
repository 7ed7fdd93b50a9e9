// The HTTP plumbing both simulators' control APIs share (src/sim/control.ts and
// src/sim/zk/control.ts): JSON over node:http, the body size limit, fault
// durations, path segment decoding, the method check and the server's start
// and stop. Each API keeps its own routes and maps its own errors.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export const MAX_BODY_BYTES = 1024 * 1024;
export const MAX_FAULT_MS = 24 * 3600 * 1000;

/** An error the control API answers as {"error": message} with this status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The request body parsed as JSON: 413 over MAX_BODY_BYTES, 400 when empty or malformed. */
export async function readBody(req: http.IncomingMessage): Promise<unknown> {
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

/** A fault's "ms": a whole number of milliseconds in 1..MAX_FAULT_MS. */
export function parseMs(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_FAULT_MS)
    throw new HttpError(400, `"ms" must be a whole number of milliseconds in 1..${MAX_FAULT_MS}`);
  return v;
}

/** The faults both simulators' terminals take. */
export interface FaultTarget {
  dropConnections(): void;
  stall(ms: number): void;
  blackhole(ms: number): void;
  refuse(ms: number): void;
  corruptNextFrame(): void;
}

export type FaultBody = { type?: unknown; ms?: unknown };

/** A fault's body as an object (400 otherwise). */
export function faultBody(body: unknown): FaultBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the fault must be a JSON object');
  return body as FaultBody;
}

/** Applies drop, stall, blackhole, refuse or corrupt and answers what was applied; undefined for another type. */
export function applyCommonFault(t: FaultTarget, f: FaultBody): Record<string, unknown> | undefined {
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
  }
  return undefined;
}

/** One percent-decoded path segment (400 when the encoding is malformed). */
export function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

/** A request's URL, path segments and method, with a check of the allowed methods (405 otherwise). */
export function parseRequest(req: http.IncomingMessage) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = url.pathname.split('/').filter((p) => p !== '');
  const method = req.method ?? 'GET';
  const allow = (...m: string[]) => {
    if (!m.includes(method)) throw new HttpError(405, `${method} is not allowed here (allowed: ${m.join(', ')})`);
  };
  return { url, parts, method, allow };
}

export interface JsonReply {
  status: number;
  /** sent as JSON; none (and no content type) when undefined */
  body?: unknown;
}

export interface TerminalRequest<T> extends ReturnType<typeof parseRequest> {
  /** the terminal named by /terminals/:id, and its 0-based index */
  t: T;
  i: number;
}

/**
 * The routes every control API shares: GET /terminals (all, as `json`) and
 * GET /terminals/:id (one, ids 1..N), 404 for any other first segment or an
 * unknown id. A deeper path comes back as the parsed request with its terminal.
 */
export function routeTerminal<T>(req: http.IncomingMessage, terminals: readonly T[], json: (i: number) => unknown): JsonReply | TerminalRequest<T> {
  const r = parseRequest(req);
  const { url, parts, allow } = r;
  if (parts[0] !== 'terminals') throw new HttpError(404, `no such resource: ${url.pathname}`);
  if (parts.length === 1) {
    allow('GET');
    return { status: 200, body: { terminals: terminals.map((_, i) => json(i)) } };
  }
  const idText = parts[1];
  const i = /^[1-9][0-9]*$/.test(idText) ? Number(idText) - 1 : -1;
  const t = terminals[i];
  if (!t) throw new HttpError(404, `no terminal ${JSON.stringify(idText)} (ids are 1..${terminals.length})`);
  if (parts.length === 2) {
    allow('GET');
    return { status: 200, body: json(i) };
  }
  return { ...r, t, i };
}

/** A simulated terminal as the users routes see it (both simulators' terminals fit). */
export interface UserTerminal<U> {
  /** 1-based id, for messages */
  readonly index: number;
  listUsers(): U[];
  remove(userId: string): Promise<void>;
}

/** The user operations whose names and types differ between the simulators. */
export interface UserOps<U> {
  enroll(body: unknown): Promise<U>;
  get(userId: string): U | undefined;
  edit(userId: string, patch: object): Promise<U>;
  json(u: U): unknown;
}

/**
 * /terminals/:id/users (GET list, POST enroll: 201) and /terminals/:id/users/:userId
 * (GET, 404 when absent; PATCH with a JSON object; DELETE: 204). Undefined for a
 * deeper path (the caller answers 404).
 */
async function routeUsers<U>(r: TerminalRequest<UserTerminal<U>>, req: http.IncomingMessage, ops: UserOps<U>): Promise<JsonReply | undefined> {
  const { parts, method, allow, t } = r;
  if (parts.length === 3) {
    allow('GET', 'POST');
    if (method === 'GET') return { status: 200, body: { users: t.listUsers().map((u) => ops.json(u)) } };
    const u = await ops.enroll(await readBody(req));
    return { status: 201, body: ops.json(u) };
  }
  if (parts.length !== 4) return undefined;
  const userId = decodeSegment(parts[3]);
  allow('GET', 'PATCH', 'DELETE');
  if (method === 'GET') {
    const u = ops.get(userId);
    if (!u) throw new HttpError(404, `no user ${JSON.stringify(userId)} on terminal ${t.index}`);
    return { status: 200, body: ops.json(u) };
  }
  if (method === 'PATCH') {
    const body = await readBody(req);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the edit must be a JSON object');
    return { status: 200, body: ops.json(await ops.edit(userId, body)) };
  }
  await t.remove(userId);
  return { status: 204 };
}

/**
 * A control API's router: /terminals and /terminals/:id (routeTerminal), the
 * users routes below a terminal (with `users(t)`'s operations), and `more` for
 * the API's own routes below a terminal; 404 for what none of them answers.
 */
export async function routeTerminalApi<T extends UserTerminal<U>, U>(
  req: http.IncomingMessage,
  terminals: readonly T[],
  json: (i: number) => unknown,
  users: (t: T) => UserOps<U>,
  more: (r: TerminalRequest<T>) => Promise<JsonReply | undefined>,
): Promise<JsonReply> {
  const r = routeTerminal(req, terminals, json);
  if ('status' in r) return r;
  const reply = r.parts[2] === 'users' ? await routeUsers(r, req, users(r.t)) : await more(r);
  if (reply) return reply;
  throw new HttpError(404, `no such resource: ${r.url.pathname}`);
}

export interface JsonServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts a JSON API on host:port. `route` answers each request; what it throws
 * goes to HttpError's status (413 also closes the connection), else to
 * `mapError` (undefined: not its error), else 500 "internal error", logged.
 * `name` names the API in the log ("control API" → "control API listening").
 */
export async function startJsonServer(
  route: (req: http.IncomingMessage) => Promise<JsonReply>,
  mapError: (e: unknown) => JsonReply | undefined,
  host: string,
  port: number,
  log: Logger | undefined,
  name: string,
): Promise<JsonServer> {
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
    route(req).then(
      (r) => send(r.status, r.body),
      (e: unknown) => {
        if (e instanceof HttpError) {
          if (e.status === 413) res.setHeader('connection', 'close');
          send(e.status, { error: e.message });
          return;
        }
        const mapped = mapError(e);
        if (mapped) send(mapped.status, mapped.body);
        else {
          log?.error({ err: e }, `${name} internal error`);
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
  log?.info({ host, port: actual }, `${name} listening`);
  return {
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
