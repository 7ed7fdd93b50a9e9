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
import type http from 'node:http';
import type { Logger } from 'pino';
import { applyCommonFault, faultBody, HttpError, readBody, routeTerminalApi, startJsonServer, type JsonReply, type JsonServer, type TerminalRequest, type UserOps } from '../http.js';
import type { ZkUser } from '../../drivers/zk/records.js';
import { ZkSimError, type ZkSimTerminal } from './device.js';

export interface ZkControlTarget {
  terminals: ZkSimTerminal[];
  portOf(i: number): number | undefined;
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

function applyFault(t: ZkSimTerminal, body: unknown): Record<string, unknown> {
  const f = faultBody(body);
  if (f.type === 'reset') {
    t.factoryReset();
    return { type: 'reset' };
  }
  const applied = applyCommonFault(t, f);
  if (!applied) throw new HttpError(400, 'fault type must be one of drop, stall, corrupt, refuse, reset, blackhole');
  return applied;
}

/** The routes below a terminal besides its users: punches and faults. */
async function terminalRoute(r: TerminalRequest<ZkSimTerminal>, req: http.IncomingMessage): Promise<JsonReply | undefined> {
  const { parts, allow, t } = r;
  if (parts.length !== 3) return undefined;
  switch (parts[2]) {
    case 'punches': {
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
      allow('POST');
      return { status: 200, body: { ok: true, ...applyFault(t, await readBody(req)) } };
    }
  }
  return undefined;
}

function route(target: ZkControlTarget, req: http.IncomingMessage): Promise<JsonReply> {
  const users = (t: ZkSimTerminal): UserOps<ZkUser> => ({ enroll: (body) => t.enroll(body), get: (userId) => t.userById(userId), edit: (userId, patch) => t.edit(userId, patch), json: (u) => t.toJson(u) });
  return routeTerminalApi(req, target.terminals, (i) => terminalJson(target, i), users, (r) => terminalRoute(r, req));
}

export type ZkControlServer = JsonServer;

/** Starts the control API (keep it on loopback: it has no authentication). */
export function startZkControlServer(target: ZkControlTarget, host: string, port: number, log?: Logger): Promise<ZkControlServer> {
  return startJsonServer(
    (req) => route(target, req),
    (e) => (e instanceof ZkSimError ? { status: e.httpStatus, body: { error: e.message } } : undefined),
    host,
    port,
    log,
    'ZK control API',
  );
}
