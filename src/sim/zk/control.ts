// The ZK simulator's control API: the same routes as the termsync simulator's
// (src/sim/control.ts), with ZK users in the bodies (ZkUserJson in device.ts:
// {id, uid, name, privilege, disabled, password, card, group, fingers:[{index, flag, template}]}).
//
//   GET    /terminals                      every terminal: id, port, connected, userCount, templateCount, serialNumber, ...
//   GET    /terminals/:id                  one terminal
//   GET    /terminals/:id/users            its users in uid order
//   GET    /terminals/:id/users/:userId    one user (404 when absent)
//   POST   /terminals/:id/users            on-device enroll (raises EF_ENROLLUSER); 201, 409 if the ID exists
//   PATCH  /terminals/:id/users/:userId    on-device edit (no event); fields replace, addFingers appends
//   DELETE /terminals/:id/users/:userId    on-device delete (no event); 204
//   POST   /terminals/:id/punches          {"userId": "..."}: a punch (raises EF_ATTLOG of 12 or 32 bytes)
//   POST   /terminals/:id/faults           {type: drop|stall|corrupt|refuse|reset|blackhole, ms?}
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ZkSimError, type ZkSimTerminal } from './device.js';

const MAX_BODY_BYTES = 1024 * 1024;
const MAX_FAULT_MS = 24 * 3600 * 1000;

export interface ZkControlTarget {
  terminals: ZkSimTerminal[];
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

function terminalJson(target: ZkControlTarget, i: number) {
  const t = target.terminals[i];
  return {
    id: String(t.index),
    protocol: 'zk',
    port: target.portOf(i) ?? null,
    connected: t.connections > 0,
    connections: t.connections,
    serialNumber: t.serialNumber,
    firmware: t.firmware,
    recordSize: t.recordSize,
    uidStart: t.uidStart,
    userCount: t.userCount,
    userCapacity: t.userCapacity,
    templateCount: t.templateCount,
    attendanceRecords: t.attendanceRecords,
    eventAcks: t.acksReceived,
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
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_FAULT_MS) throw new HttpError(400, `"ms" must be a whole number of milliseconds in 1..${MAX_FAULT_MS}`);
  return v;
}

function applyFault(t: ZkSimTerminal, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the fault must be a JSON object');
  const f = body as { type?: unknown; ms?: unknown };
  switch (f.type) {
    case 'drop':
      t.dropConnections();
      return { type: 'drop' };
    case 'stall':
      t.stall(parseMs(f.ms));
      return { type: 'stall', ms: f.ms };
    case 'blackhole':
      t.blackhole(parseMs(f.ms));
      return { type: 'blackhole', ms: f.ms };
    case 'refuse':
      t.refuse(parseMs(f.ms));
      return { type: 'refuse', ms: f.ms };
    case 'corrupt':
      t.corruptNextFrame();
      return { type: 'corrupt' };
    case 'reset':
      t.factoryReset();
      return { type: 'reset' };
    default:
      throw new HttpError(400, 'fault type must be one of drop, stall, corrupt, refuse, reset, blackhole');
  }
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

async function route(target: ZkControlTarget, req: http.IncomingMessage): Promise<{ status: number; body?: unknown }> {
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
  const i = /^[1-9][0-9]*$/.test(parts[1]) ? Number(parts[1]) - 1 : -1;
  const t = target.terminals[i];
  if (!t) throw new HttpError(404, `no terminal ${JSON.stringify(parts[1])} (ids are 1..${target.terminals.length})`);
  if (parts.length === 2) {
    allow('GET');
    return { status: 200, body: terminalJson(target, i) };
  }
  switch (parts[2]) {
    case 'users': {
      if (parts.length === 3) {
        allow('GET', 'POST');
        if (method === 'GET') return { status: 200, body: { users: t.listUsers().map((u) => t.toJson(u)) } };
        const u = await t.enroll(await readBody(req));
        return { status: 201, body: t.toJson(u) };
      }
      if (parts.length !== 4) break;
      const userId = decodeSegment(parts[3]);
      allow('GET', 'PATCH', 'DELETE');
      if (method === 'GET') {
        const u = t.userById(userId);
        if (!u) throw new HttpError(404, `no user ${JSON.stringify(userId)} on terminal ${t.index}`);
        return { status: 200, body: t.toJson(u) };
      }
      if (method === 'PATCH') {
        const body = await readBody(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the edit must be a JSON object');
        return { status: 200, body: t.toJson(await t.edit(userId, body)) };
      }
      await t.remove(userId);
      return { status: 204 };
    }
    case 'punches': {
      if (parts.length !== 3) break;
      allow('POST');
      const b = (await readBody(req)) as { userId?: unknown; status?: unknown; punch?: unknown };
      if (typeof b !== 'object' || b === null || typeof b.userId !== 'string') throw new HttpError(400, 'a punch is {"userId": "..."}');
      const small = (v: unknown, k: string) => {
        if (v === undefined) return 0;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) throw new HttpError(400, `${k} must be 0..255`);
        return v;
      };
      await t.punch(b.userId, small(b.status, 'status'), small(b.punch, 'punch'));
      return { status: 201, body: { ok: true } };
    }
    case 'faults': {
      if (parts.length !== 3) break;
      allow('POST');
      return { status: 200, body: { ok: true, ...applyFault(t, await readBody(req)) } };
    }
  }
  throw new HttpError(404, `no such resource: ${url.pathname}`);
}

export interface ZkControlServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the control API (keep it on loopback: it has no authentication). */
export async function startZkControlServer(target: ZkControlTarget, host: string, port: number, log?: Logger): Promise<ZkControlServer> {
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
        } else if (e instanceof ZkSimError) send(e.httpStatus, { error: e.message });
        else {
          log?.error({ err: e }, 'ZK control API internal error');
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
  log?.info({ host, port: actual }, 'ZK control API listening');
  return {
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
