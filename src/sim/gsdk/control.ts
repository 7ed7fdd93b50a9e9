// The mock device gateway's control API (JSON over HTTP; keep it on loopback:
// it has no authentication). Terminals are named by device ID.
//
//   GET    /devices                          every terminal: deviceID, ip, port, online, connected, userCount, lastEventId
//   GET    /devices/:id                      one
//   GET    /devices/:id/users                its users (the user JSON below)
//   GET    /devices/:id/users/:userId        one user (404 when absent)
//   POST   /devices/:id/users                a person enrolls a user at the terminal (logs 0x2000); 201, 409 if it exists
//   PATCH  /devices/:id/users/:userId        a person edits a user at the terminal (logs 0x2200); the fields given replace
//   DELETE /devices/:id/users/:userId        a person deletes a user at the terminal (logs 0x2400); 204
//   GET    /devices/:id/events?start=&max=   its event log
//   POST   /devices/:id/online               {"online": false|true}: the terminal loses / regains its connection
//   POST   /faults                           {"type": "break-streams" | "drop-realtime" | "unavailable" | "restart", "n"?, "ms"?}
//
// User JSON in: {id, name?, pin?, cards?: [{type?, data: hex}], fingers?: [{index, flag?, templates: [hex, hex]}],
// accessGroups?, authGroupId?, startTime?, endTime?, securityLevel?, photo?: hex}. Out: the same without the PIN
// (pinSet says whether the terminal holds one: it keeps a hash), card data as the terminal holds it (32 bytes).
import type http from 'node:http';
import type { Logger } from 'pino';
import type { UserInfo } from '../../drivers/gsdk/proto.js';
import { HttpError, parseRequest, readBody, startJsonServer, type JsonReply, type JsonServer } from '../http.js';
import { Code, GsdkSimError, type GsdkSimDevice, type GsdkUserJson } from './device.js';
import type { GsdkSimGateway } from './gateway.js';

export function userJson(u: UserInfo) {
  return {
    id: u.hdr.ID,
    name: u.name,
    pinSet: u.PIN.length > 0,
    cards: u.cards.map((c) => ({ type: c.type, data: c.data.toString('hex') })),
    fingers: u.fingers.map((f) => ({ index: f.index, flag: f.flag })),
    accessGroups: u.accessGroupIDs,
    authGroupId: u.hdr.authGroupID,
    startTime: u.setting.startTime,
    endTime: u.setting.endTime,
    securityLevel: u.setting.securityLevel,
    photoBytes: u.photo.length,
  };
}

function deviceJson(g: GsdkSimGateway, d: GsdkSimDevice) {
  return { deviceID: d.deviceID, ip: d.ip, port: d.port, online: d.online, connected: g.connected(d.deviceID), model: d.model, userCount: d.userCount, lastEventId: d.lastEventId };
}

function userBody(body: unknown, id?: string): GsdkUserJson {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the user must be a JSON object');
  const b = body as Record<string, unknown>;
  const uid = id ?? b.id;
  if (typeof uid !== 'string' || uid === '') throw new HttpError(400, 'id must be a non-empty string');
  for (const k of ['name', 'pin', 'photo']) if (b[k] !== undefined && typeof b[k] !== 'string') throw new HttpError(400, `${k} must be a string`);
  for (const k of ['authGroupId', 'startTime', 'endTime', 'securityLevel'])
    if (b[k] !== undefined && (typeof b[k] !== 'number' || !Number.isInteger(b[k]) || (b[k] as number) < 0)) throw new HttpError(400, `${k} must be a whole number >= 0`);
  const hexOk = (v: unknown) => typeof v === 'string' && /^([0-9a-fA-F]{2})*$/.test(v);
  if (b.cards !== undefined && (!Array.isArray(b.cards) || b.cards.some((c) => typeof c !== 'object' || c === null || !hexOk((c as { data?: unknown }).data))))
    throw new HttpError(400, 'cards must be [{type?, data: hex}]');
  if (b.accessGroups !== undefined && (!Array.isArray(b.accessGroups) || b.accessGroups.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0)))
    throw new HttpError(400, 'accessGroups must be whole numbers');
  if (b.fingers !== undefined && (!Array.isArray(b.fingers) || b.fingers.some((f) => !Array.isArray((f as { templates?: unknown }).templates) || !(f as { templates: unknown[] }).templates.every(hexOk))))
    throw new HttpError(400, 'fingers must be [{index, flag?, templates: [hex, hex]}]');
  return { ...(b as object), id: uid } as GsdkUserJson;
}

async function route(g: GsdkSimGateway, req: http.IncomingMessage): Promise<JsonReply> {
  const { url, parts, allow } = parseRequest(req);
  if (parts[0] === 'faults' && parts.length === 1) {
    allow('POST');
    const b = (await readBody(req)) as { type?: unknown; n?: unknown; ms?: unknown };
    const n = typeof b.n === 'number' && Number.isInteger(b.n) && b.n > 0 ? b.n : 1;
    switch (b.type) {
      case 'break-streams':
        g.breakStreams();
        break;
      case 'drop-realtime':
        g.dropRealtime(n);
        break;
      case 'unavailable':
        g.failNext(n);
        break;
      case 'restart':
        await g.restart(typeof b.ms === 'number' && b.ms > 0 ? Math.min(b.ms, 60_000) : 0);
        break;
      default:
        throw new HttpError(400, 'type must be one of break-streams, drop-realtime, unavailable, restart');
    }
    return { status: 200, body: { type: b.type, n } };
  }
  if (parts[0] !== 'devices') throw new HttpError(404, 'no such route');
  if (parts.length === 1) {
    allow('GET');
    return { status: 200, body: g.devices.map((d) => deviceJson(g, d)) };
  }
  const d = g.devices.find((x) => String(x.deviceID) === parts[1]);
  if (!d) throw new HttpError(404, `no terminal ${parts[1]}`);
  if (parts.length === 2) {
    allow('GET');
    return { status: 200, body: deviceJson(g, d) };
  }
  switch (parts[2]) {
    case 'online': {
      allow('POST');
      const b = (await readBody(req)) as { online?: unknown };
      if (typeof b.online !== 'boolean') throw new HttpError(400, 'online must be true or false');
      g.setOnline(d.deviceID, b.online);
      return { status: 200, body: deviceJson(g, d) };
    }
    case 'events': {
      allow('GET');
      const start = Number(url.searchParams.get('start') ?? 0);
      const max = Number(url.searchParams.get('max') ?? 0);
      return { status: 200, body: d.events(Number.isFinite(start) ? start : 0, Number.isFinite(max) ? max : 0) };
    }
    case 'users': {
      if (parts.length === 3) {
        allow('GET', 'POST');
        if (req.method === 'GET') return { status: 200, body: d.userIds().map((id) => userJson(d.user(id)!)) };
        return { status: 201, body: userJson(d.enroll(userBody(await readBody(req)))) };
      }
      const id = decodeURIComponent(parts[3]);
      allow('GET', 'PATCH', 'DELETE');
      if (req.method === 'GET') {
        const u = d.user(id);
        if (!u) throw new HttpError(404, `terminal ${d.deviceID} holds no user ${id}`);
        return { status: 200, body: userJson(u) };
      }
      if (req.method === 'PATCH') return { status: 200, body: userJson(d.edit(id, userBody(await readBody(req), id))) };
      d.remove(id);
      return { status: 204 };
    }
  }
  throw new HttpError(404, 'no such route');
}

export function startGsdkControl(g: GsdkSimGateway, host: string, port: number, log?: Logger): Promise<JsonServer> {
  return startJsonServer(
    (req) => route(g, req),
    (e) => {
      if (!(e instanceof GsdkSimError)) return undefined;
      const status = e.code === Code.NOT_FOUND ? 404 : e.code === Code.ALREADY_EXISTS ? 409 : e.code === Code.RESOURCE_EXHAUSTED ? 507 : 400;
      return { status, body: { error: e.message } };
    },
    host,
    port,
    log,
    'mock device gateway control API',
  );
}
