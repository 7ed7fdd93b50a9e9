// The admin HTTP API, Prometheus metrics and the status page (node:http only).
//
//   GET    /healthz                          {ok, db, terminalsOnline}; 503 when the database cannot be read (no token needed)
//   GET    /                                 the status page (src/admin/page.ts); /?token=T sets the page cookie once
//   GET    /metrics                          Prometheus text format (src/admin/metrics.ts)
//   GET    /api/status                       counts for the status page: terminals, queue, outbox, push failures
//   GET    /api/terminals                    every terminal (Daemon.terminals())
//   POST   /api/terminals                    {id, host, port?, protocol?, zkPassword?, accessGroups?, pin?}: add (201) or update (200) a dialled
//                                            terminal; protocol 'termsync' (default) or a registered driver's ('zk'); port defaults
//                                            to the protocol's (4370 for zk); zkPassword: a ZK comm key, write-only;
//                                            'gsdk' (a Suprema terminal behind --gsdk-gateway): id gsdk-DEVICEID, host
//                                            left out when the terminal dials the gateway
//   GET    /api/terminals/:id                one terminal
//   DELETE /api/terminals/:id                remove it (204); the server's users stay
//   POST   /api/terminals/:id/approve        approve a pending dial-in terminal
//   PUT    /api/terminals/:id/groups         {accessGroups: [...]}
//   POST   /api/terminals/:id/resync         full resync (202); 409 when the terminal is not online
//   GET    /api/users?after=&limit=          users in ID order (user JSON, src/model/user.ts)
//   GET    /api/users/:id                    one user; 404 when absent
//   PUT    /api/users/:id[?merge=1]          create or change a user on the server and push it: {user, created, changed, pushedTo}
//   DELETE /api/users/:id                    delete a user on the server and on the terminals in scope (204)
//   GET    /api/events?after=&before=&limit=&type=&terminal=&user=&order=asc|desc
//                                            monitoring events [{id, time, type, label, terminal, user, detail}]
//   GET    /api/events/stream[?after=N]      server-sent events of new monitoring events (Last-Event-ID resumes)
//   GET    /api/settings                     {syncMode}
//   PUT    /api/settings                     {syncMode}
//   GET    /api/push-failures?terminal=&user=&limit=
//   GET    /api/pull-failures?terminal=&user=&limit=   device users that could not be read
//   POST   /api/pull-failures/retry          {terminalId, userId?}: pull them again now (202); 409 when offline
//   GET    /api/openapi.json                 the OpenAPI 3.1 description of all of this (src/admin/openapi.ts)
//   (console routes: src/admin/console-routes.ts)
//   POST   /api/backup                       {name}: online backup of the database to a new file in the backup directory
//
// One server for both kinds of daemon: the routes read and act through the
// AdminSite port (src/admin/site.ts): one daemon on SQLite (daemon-site.ts)
// or one of several on PostgreSQL (src/cluster/admin-site.ts), where every
// terminal of the site is listed with the daemon that drives it, a user
// written here is pushed by the daemons holding the terminals, and an action
// that needs a live session held by another daemon is answered 409 naming it.
//
// Browser safety (src/admin/access.ts): every request but /healthz must name the
// admin address in its Host header (403 otherwise: DNS rebinding); every
// request that changes something must come from the admin address itself
// (Origin / Sec-Fetch-Site / Referer; 403) and declare a JSON body (415).
//
// Errors are {"error": "message"}: 400 bad input or malformed JSON, 401 no or
// wrong token, 404 unknown route or object, 405 method not allowed (with
// Allow), 409 conflict, 413 body over 1 MiB, 503 database unavailable, 500
// anything unexpected (logged, not shown).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Daemon } from '../daemon.js';
import { UserJsonError, userFromJson, userToJson } from '../model/user.js';
import { StoreWriteError } from '../store/errors.js';
import { SYNC_MODES, type SyncMode } from '../store/types.js';
import { EngineEvent, Priority } from '../sync/engine.js';
import { DaemonAdminSite } from './daemon-site.js';
import { ActionRefused, type AdminSite, type AdminTerminal } from './site.js';
import { contentTypeProblem, crossSiteProblem, HostPolicy, SAFE_METHODS } from './access.js';
import { AdminAuth } from './auth.js';
import { addConsoleRoutes, usersHeld } from './console-routes.js';
import { openApiDocument } from './openapi.js';
import { ConnectionGuard } from './limits.js';
import { EventHub, eventToJson, lastEventId } from './events.js';
import { HttpError, Router, boolParam, intParam, readJsonObject, strParam, type Reply, type RouteContext } from './http.js';
import { CONTENT_TYPE as METRICS_CONTENT_TYPE, MetricsCollector } from './metrics.js';
import { PAGE_CSP, STATUS_PAGE_HTML } from './page.js';

export interface AdminOptions {
  /** the site the API shows and acts on (see site.ts) */
  site?: AdminSite;
  /** one daemon on SQLite (the same as site: new DaemonAdminSite(daemon)) */
  daemon?: Daemon;
  host: string;
  port: number;
  /** when set, every request except GET /healthz needs it (Bearer header, or the page cookie for reads) */
  token?: Buffer | null;
  log: Logger;
  /** how often the event stream polls the database, ms (default 250) */
  streamPollMs?: number;
  /** extra Host names the admin address is reached by (reverse proxies): NAME or NAME:PORT */
  adminHosts?: readonly string[];
  /** where POST /api/backup writes (default: a "backups" folder beside the SQLite database) */
  backupDir?: string;
  /** most open connections from one client address (default 64; the oldest non-stream one is closed to make room) */
  maxConnsPerAddress?: number;
  /** most open connections in total (default 512) */
  maxConns?: number;
  /** time a client gets to send a request's headers, ms (default 5000) */
  headerTimeoutMs?: number;
  /** most event streams open from one client address (default 8) */
  maxStreamsPerAddress?: number;
  /** new connections per second from one client address (default 100, burst twice that; 0: no limit); checked before any HTTP work */
  connectRatePerAddress?: number;
  /** the machine's names and addresses, for a wildcard listener (tests); default from node:os */
  machine?: { hostnames: string[]; addresses: string[] };
}

export interface AdminServer {
  /** the port actually bound (useful with port 0) */
  port: number;
  /** every route of the API (method and path pattern) */
  routes: { method: string; path: string }[];
  /** the directory backups are written to ('' on PostgreSQL: no file backups) */
  backupDir: string;
  close(): Promise<void>;
}

const USER_PAGE_DEFAULT = 100;
const USER_PAGE_MAX = 1000;
const EVENT_PAGE_DEFAULT = 100;
const EVENT_PAGE_MAX = 10_000;
/** push failures counted for the status page; more shows as "1000+" */
const PUSH_FAILURES_COUNTED = 1000;
const TERMINAL_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** how long a terminal's users-held figure is kept at most, and how many terminals' figures */
const HELD_TTL_MS = 10_000;
const HELD_CACHE_MAX = 100_000;
/** a backup file name: no directories, no hidden files, no ".." */
const BACKUP_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

const LOOPBACK = /^(127\.|::1$|\[::1\]$|localhost$)/;

/** Headers on every response. */
const BASE_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

function isDbReadError(e: unknown): boolean {
  if (e instanceof StoreWriteError) return true;
  const err = e as { name?: unknown; message?: unknown; code?: unknown } | null;
  if (err?.name === 'SqliteError' || (typeof err?.message === 'string' && /database connection is not open/i.test(err.message))) return true;
  // PostgreSQL: a connection refused, lost or timed out, or the server's own SQLSTATE (class 08 connection, 57 operator intervention, 53 resources)
  if (typeof err?.code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|08...|57P..|53...)$/.test(err.code)) return true;
  return typeof err?.message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(err.message);
}

function groupsOf(v: unknown, field: string): number[] {
  if (!Array.isArray(v)) throw new HttpError(400, `${field} must be an array of access group numbers`);
  if (v.length > 4096) throw new HttpError(400, `${field} holds at most 4096 groups`);
  for (const g of v) {
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 0 || g > 0xffffffff) throw new HttpError(400, `${field} must hold whole numbers in 0..4294967295`);
  }
  return [...new Set(v as number[])].sort((a, b) => a - b);
}

export async function startAdmin(o: AdminOptions): Promise<AdminServer> {
  const { log } = o;
  if (!o.site && !o.daemon) throw new TypeError('startAdmin needs a site or a daemon');
  const site: AdminSite = o.site ?? new DaemonAdminSite(o.daemon!);
  const store = site.store;
  const auth = o.token ? new AdminAuth(o.token) : null;
  if (!auth && !LOOPBACK.test(o.host)) log.warn({ host: o.host }, 'admin API listens beyond loopback without a token: anyone who reaches it can change users');

  const hub = new EventHub({ store, log, pollMs: o.streamPollMs, gapHoldMs: site.eventGapHoldMs });
  const metrics = new MetricsCollector({ site, admin: () => ({ connections: guard.size, evicted: guard.evicted, refused: guard.refused, held: guard.heldRefused }) });
  metrics.start();
  const unsubscribe = site.onActivity(() => hub.wake());
  let backupRunning = false;
  const guard = new ConnectionGuard({ maxConnsPerAddress: o.maxConnsPerAddress, maxConns: o.maxConns, maxStreamsPerAddress: o.maxStreamsPerAddress, connectRatePerAddress: o.connectRatePerAddress });
  const backupDir = site.dbPath === null ? '' : path.resolve(o.backupDir ?? path.join(path.dirname(path.resolve(site.dbPath)), 'backups'));
  // set once the port is bound
  let hosts: HostPolicy | null = null;

  // a terminal as the API shows it: the site's view plus the users it held at its last resync.
  // That figure is one event lookup per terminal: it is kept until this daemon's engine reconciles
  // the terminal again, and at most HELD_TTL_MS (another daemon's reconciles are not seen here),
  // so a terminal list costs no query per terminal while the site is busy.
  const held = new Map<string, { until: number; v: ReturnType<typeof usersHeld> }>();
  const unheld = site.engine.onActivity((e) => {
    if (e.type === EngineEvent.RECONCILE && e.terminalId !== undefined) held.delete(e.terminalId);
  });
  const usersHeldOf = (id: string) => {
    const now = Date.now();
    const c = held.get(id);
    if (c && c.until > now) return c.v;
    if (held.size >= HELD_CACHE_MAX) held.clear();
    const v = usersHeld(store, id);
    held.set(id, { until: now + HELD_TTL_MS, v });
    v.catch(() => held.delete(id));
    return v;
  };
  const withHeld = async (t: AdminTerminal) => ({ ...t, usersHeld: await usersHeldOf(t.id) });
  const terminalView = async (id: string) => {
    const t = (await site.terminals()).find((x) => x.id === id);
    if (!t) throw new HttpError(404, `no terminal ${JSON.stringify(id)}`);
    return withHeld(t);
  };
  const needTerminal = async (id: string) => {
    if (!(await store.getTerminal(id))) throw new HttpError(404, `no terminal ${JSON.stringify(id)}`);
  };

  const r = new Router();

  // ------------------------------------------------------------- health
  r.on('GET', '/healthz', async () => {
    const h = await site.health();
    const db: 'ok' | 'failing' = h.db ? 'ok' : 'failing';
    const body = { ok: h.db, db, terminalsOnline: h.terminalsOnline, ...(site.daemonId !== null ? { daemon: site.daemonId } : {}) };
    return { status: h.db ? 200 : 503, body };
  });

  r.on('GET', '/', () => ({
    status: 200,
    raw: { contentType: 'text/html; charset=utf-8', text: STATUS_PAGE_HTML },
    headers: { 'content-security-policy': PAGE_CSP, 'x-frame-options': 'DENY' },
  }));
  r.on('GET', '/favicon.ico', () => ({ status: 204 }));

  r.on('GET', '/metrics', async () => ({ status: 200, raw: { contentType: METRICS_CONTENT_TYPE, text: await metrics.render() } }));

  r.on('GET', '/api/status', async () => {
    const counts = { online: 0, offline: 0, pending: 0 };
    const q = site.engine.queue;
    const lanes = site.engine.laneDepths();
    const [terminals, pushFailures, pullFailures, owed, users, disk] = await Promise.all([
      site.terminals(),
      store.listPushFailures({ limit: PUSH_FAILURES_COUNTED + 1 }),
      store.listPullFailures({ limit: PUSH_FAILURES_COUNTED }),
      store.owedCounts(),
      store.userCount(),
      site.disk(),
    ]);
    for (const t of terminals) counts[t.state]++;
    const failures = pushFailures.length;
    return {
      status: 200,
      body: {
        // several daemons: this daemon's ID, and how many terminals it drives (the queue figures are its own)
        ...(site.daemonId !== null ? { daemon: site.daemonId, driven: terminals.filter((t) => t.owner === site.daemonId).length } : {}),
        syncMode: site.syncMode(),
        terminals: counts,
        queue: {
          waiting: { pull: q.sizeBy({ priority: Priority.PULL }), push: q.sizeBy({ priority: Priority.PUSH }), catchup: q.sizeBy({ priority: Priority.CATCHUP }) },
          running: q.pending,
          ingestBacklog: lanes.ingestBacklog,
        },
        outbox: owed.total,
        pushFailures: Math.min(failures, PUSH_FAILURES_COUNTED),
        pushFailuresMore: failures > PUSH_FAILURES_COUNTED,
        // device users that could not be read (GET /api/pull-failures)
        pullFailures: pullFailures.length,
        users,
        pendingEvents: site.pendingEventCount(),
        // null on PostgreSQL (the database server keeps its files)
        disk,
      },
    };
  });

  // ---------------------------------------------------------- terminals
  r.on('GET', '/api/terminals', async () => ({ status: 200, body: await Promise.all((await site.terminals()).map(withHeld)) }));

  r.on('POST', '/api/terminals', async ({ req }) => {
    const b = await readJsonObject(req, 'the terminal');
    if (typeof b.id !== 'string' || !TERMINAL_ID.test(b.id)) throw new HttpError(400, 'id must be 1..64 letters, digits, ".", "_" or "-"');
    const protocol = b.protocol === undefined ? 'termsync' : b.protocol;
    const driver = typeof protocol === 'string' ? site.drivers.get(protocol) : undefined;
    // a Suprema terminal (gsdk) is named gsdk-DEVICEID; without a host it dials the device gateway, so it is reached at the gateway's address
    const gateway = protocol === 'gsdk' ? (driver as { gateway?: { host: string; port: number } } | undefined)?.gateway : undefined;
    if (protocol === 'gsdk' && !/^gsdk-[0-9]{1,10}$/.test(b.id)) throw new HttpError(400, 'a Suprema terminal\'s id must be gsdk-DEVICEID (its device ID)');
    if (gateway && b.host === undefined && b.port === undefined) b.host = gateway.host;
    if (typeof b.host !== 'string' || b.host.trim() === '' || b.host.length > 253) throw new HttpError(400, 'host must be a host name or IP address');
    if (!driver || typeof protocol !== 'string') throw new HttpError(400, `protocol must be one of: ${[...site.drivers.keys()].join(', ')}`);
    const port = b.port === undefined ? (gateway && b.host === gateway.host ? gateway.port : driver.defaultPort) : b.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new HttpError(400, 'port must be a whole number in 1..65535');
    if (b.pin !== undefined && (typeof b.pin !== 'string' || !/^[0-9a-fA-F:]{64,95}$/.test(b.pin))) throw new HttpError(400, 'pin must be a SHA-256 certificate fingerprint in hex');
    if (b.zkPassword !== undefined) {
      if (protocol !== 'zk') throw new HttpError(400, 'zkPassword is for protocol "zk" only');
      if (typeof b.zkPassword !== 'number' || !Number.isInteger(b.zkPassword) || b.zkPassword < 0 || b.zkPassword > 0xffff_ffff)
        throw new HttpError(400, 'zkPassword must be the terminal\'s numeric comm key, a whole number in 0..4294967295');
    }
    const groups = b.accessGroups === undefined ? undefined : groupsOf(b.accessGroups, 'accessGroups');
    const existed = (await store.getTerminal(b.id)) !== null;
    // a ZK terminal's comm key (write-only): the one given, else the one it is dialled with now (an update that leaves it out keeps it), else none (0)
    const current = site.dialTarget(b.id);
    const key =
      protocol !== 'zk' ? undefined
      : typeof b.zkPassword === 'number' ? Buffer.from(String(b.zkPassword), 'latin1')
      : current && current.protocol === 'zk' && current.key ? current.key
      : Buffer.from('0', 'latin1');
    try {
      await site.addTerminal({ id: b.id, host: b.host.trim(), port, ...(protocol !== 'termsync' ? { protocol } : {}), ...(key ? { key } : {}), ...(typeof b.pin === 'string' ? { pin: b.pin } : {}) }, groups);
    } catch (e) {
      if (isDbReadError(e) || e instanceof ActionRefused) throw e;
      throw new HttpError(400, (e as Error).message);
    }
    log.info({ terminal: b.id, host: b.host, port, protocol }, 'terminal added through the admin API');
    return { status: existed ? 200 : 201, body: await terminalView(b.id) };
  });

  r.on('GET', '/api/terminals/:id', async ({ params }) => ({ status: 200, body: await terminalView(params.id) }));

  r.on('DELETE', '/api/terminals/:id', async ({ params }) => {
    await needTerminal(params.id);
    await site.removeTerminal(params.id);
    log.info({ terminal: params.id }, 'terminal removed through the admin API');
    return { status: 204 };
  });

  r.on('POST', '/api/terminals/:id/approve', async ({ params }) => {
    if (!(await site.approve(params.id))) throw new HttpError(404, `no terminal ${JSON.stringify(params.id)}`);
    log.info({ terminal: params.id }, 'terminal approved through the admin API');
    return { status: 200, body: await terminalView(params.id) };
  });

  r.on('PUT', '/api/terminals/:id/groups', async ({ req, params }) => {
    const b = await readJsonObject(req);
    const groups = groupsOf(b.accessGroups, 'accessGroups');
    if (!(await site.setTerminalGroups(params.id, groups))) throw new HttpError(404, `no terminal ${JSON.stringify(params.id)}`);
    return { status: 200, body: await terminalView(params.id) };
  });

  r.on('POST', '/api/terminals/:id/resync', async ({ params }) => {
    await needTerminal(params.id);
    await site.resync(params.id);
    log.info({ terminal: params.id }, 'resync requested through the admin API');
    return { status: 202, body: { ok: true, terminal: params.id } };
  });

  // -------------------------------------------------------------- users
  r.on('GET', '/api/users', async ({ url }) => {
    const after = strParam(url, 'after', 256);
    const limit = intParam(url, 'limit', 1, USER_PAGE_MAX) ?? USER_PAGE_DEFAULT;
    return { status: 200, body: (await store.walkUsers({ after, limit })).map((x) => userToJson(x.user)) };
  });

  r.on('GET', '/api/users/:id', async ({ params }) => {
    const u = await store.getUser(params.id);
    if (!u) throw new HttpError(404, `no user ${JSON.stringify(params.id)}`);
    return { status: 200, body: userToJson(u) };
  });

  r.on('PUT', '/api/users/:id', async ({ req, url, params }) => {
    const id = params.id;
    const merge = boolParam(url, 'merge');
    const body = await readJsonObject(req, 'the user');
    if (body.id !== undefined && body.id !== id) throw new HttpError(400, `the body's id ${JSON.stringify(body.id)} differs from the path's ${JSON.stringify(id)}`);
    const existing = await store.getUser(id);
    let user;
    try {
      user = userFromJson({ ...body, id }, merge ? (existing ?? undefined) : undefined);
    } catch (e) {
      if (e instanceof UserJsonError) throw new HttpError(400, e.message);
      throw e;
    }
    // userToJson never shows the PIN, only pinSet: a GET-edit-PUT round trip
    // that keeps pinSet:true keeps the stored PIN instead of clearing it.
    if (!merge && body.pinSet === true && body.pin === undefined && body.pinHash === undefined && existing) user.pinHash = Buffer.from(existing.pinHash);
    let result;
    try {
      result = await site.putUser(user);
    } catch (e) {
      if (isDbReadError(e)) throw e;
      throw new HttpError(400, (e as Error).message);
    }
    const stored = await store.getUser(id);
    log.info({ user: id, created: result.created, changed: result.changed, pushedTo: result.pushedTo.length }, 'user saved through the admin API');
    return { status: result.created ? 201 : 200, body: { user: stored ? userToJson(stored) : null, created: result.created, changed: result.changed, pushedTo: result.pushedTo } };
  });

  r.on('DELETE', '/api/users/:id', async ({ params }) => {
    if (!(await site.deleteUser(params.id))) throw new HttpError(404, `no user ${JSON.stringify(params.id)}`);
    log.info({ user: params.id }, 'user deleted through the admin API');
    return { status: 204 };
  });

  // ------------------------------------------------------------- events
  r.on('GET', '/api/events', async ({ url }) => {
    const order = strParam(url, 'order', 4) ?? 'asc';
    if (order !== 'asc' && order !== 'desc') throw new HttpError(400, 'query parameter order must be asc or desc');
    const events = await store.listEvents({
      after: intParam(url, 'after', 0, Number.MAX_SAFE_INTEGER),
      before: intParam(url, 'before', 0, Number.MAX_SAFE_INTEGER),
      limit: intParam(url, 'limit', 1, EVENT_PAGE_MAX) ?? EVENT_PAGE_DEFAULT,
      type: strParam(url, 'type', 64),
      terminalId: strParam(url, 'terminal', 64),
      userId: strParam(url, 'user', 256),
      newestFirst: order === 'desc',
    });
    return { status: 200, body: events.map(eventToJson) };
  });

  r.on('GET', '/api/events/stream', async ({ req, res, url, method }) => {
    if (method === 'HEAD') return { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8' } };
    const header = req.headers['last-event-id'];
    let after: number | undefined;
    if (typeof header === 'string' && /^[0-9]{1,15}$/.test(header.trim())) after = Number(header.trim());
    after ??= intParam(url, 'after', 0, Number.MAX_SAFE_INTEGER);
    after ??= await lastEventId(store);
    if (hub.size >= hub.maxClients) throw new HttpError(503, `too many event streams open (${hub.maxClients}); close one and retry`);
    const release = guard.openStream(req.socket);
    if (!release) throw new HttpError(429, `too many event streams open from your address (${guard.maxStreamsPerAddress}); close one and retry`, { 'retry-after': '5' });
    res.once('close', release);
    hub.add(res, after);
    return null;
  });

  // ----------------------------------------------------------- settings
  r.on('GET', '/api/settings', () => ({ status: 200, body: { syncMode: site.syncMode() } }));

  r.on('PUT', '/api/settings', async ({ req }) => {
    const b = await readJsonObject(req, 'the settings');
    if (b.syncMode === undefined) throw new HttpError(400, `syncMode is required (one of ${SYNC_MODES.join(', ')})`);
    if (typeof b.syncMode !== 'string' || !(SYNC_MODES as readonly string[]).includes(b.syncMode)) {
      throw new HttpError(400, `syncMode must be one of ${SYNC_MODES.join(', ')}, not ${JSON.stringify(b.syncMode)}`);
    }
    const from = site.syncMode();
    await site.setSyncMode(b.syncMode as SyncMode);
    log.info({ syncMode: b.syncMode, from }, 'sync mode changed through the admin API');
    if (from !== b.syncMode) {
      try {
        await store.appendEvents([{ type: 'SYNC_MODE_CHANGED', detail: JSON.stringify({ from, to: b.syncMode }) }]);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'the sync mode change could not be written to the monitoring log');
      }
    }
    return { status: 200, body: { syncMode: site.syncMode() } };
  });

  r.on('GET', '/api/push-failures', async ({ url }) => ({
    status: 200,
    body: await store.listPushFailures({ terminalId: strParam(url, 'terminal', 64), userId: strParam(url, 'user', 256), limit: intParam(url, 'limit', 1, 10_000) }),
  }));

  // ------------------------------------------------------ pull failures
  // device users the daemon could not read (pull_failures); retry pulls them again now
  r.on('GET', '/api/pull-failures', async ({ url }) => ({
    status: 200,
    body: await store.listPullFailures({ terminalId: strParam(url, 'terminal', 64), userId: strParam(url, 'user', 256), limit: intParam(url, 'limit', 1, 10_000) }),
  }));

  r.on('POST', '/api/pull-failures/retry', async ({ req }) => {
    const b = await readJsonObject(req, 'the retry request');
    if (typeof b.terminalId !== 'string' || !TERMINAL_ID.test(b.terminalId)) throw new HttpError(400, 'terminalId (the terminal whose users to pull again) is required');
    if (b.userId !== undefined && (typeof b.userId !== 'string' || b.userId === '' || Buffer.byteLength(b.userId) > 32)) throw new HttpError(400, 'userId must be a user ID of 1..32 bytes');
    await needTerminal(b.terminalId);
    const r = await site.retryPulls(b.terminalId, b.userId as string | undefined);
    return { status: 202, body: { terminalId: b.terminalId, queued: r.queued } };
  });

  // ------------------------------------------------------------- backup
  r.on('POST', '/api/backup', async ({ req }) => {
    const b = await readJsonObject(req, 'the backup request');
    if (site.dbPath === null) throw new ActionRefused(501, 'the database is PostgreSQL: back it up with PostgreSQL\'s own tools (pg_dump, pg_basebackup or your service\'s backups), not through termsync');
    if (b.path !== undefined) throw new HttpError(400, `backups are written to the backup directory (${backupDir}); give a file name as "name", not a path`);
    if (typeof b.name !== 'string' || b.name === '') throw new HttpError(400, 'name (the backup file to create in the backup directory) is required');
    if (!BACKUP_NAME.test(b.name) || b.name.includes('..')) {
      throw new HttpError(400, 'name must be a plain file name: 1..128 letters, digits, ".", "_" or "-", not starting with "." and without ".."');
    }
    const dest = path.join(backupDir, b.name);
    if (backupRunning) throw new HttpError(409, 'a backup is already running; wait for it to finish');
    backupRunning = true;
    const started = Date.now();
    // The copy goes to a fresh temporary name, then is linked to its final
    // name: link() fails when that name exists, so nothing is ever
    // overwritten, and a half-written backup never carries the final name.
    const temp = path.join(backupDir, `.partial-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      fs.mkdirSync(backupDir, { recursive: true, mode: 0o700 });
      if (fs.existsSync(dest)) throw new HttpError(409, `${b.name} already exists in the backup directory; choose another name`);
      const p = await site.backup(temp);
      try {
        fs.linkSync(temp, dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new HttpError(409, `${b.name} already exists in the backup directory; choose another name`);
        throw e;
      }
      log.info({ path: dest, pages: p.totalPages, ms: Date.now() - started }, 'database backup written');
      return { status: 200, body: { name: b.name, path: dest, totalPages: p.totalPages, remainingPages: p.remainingPages, ms: Date.now() - started } };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'EISDIR' || code === 'ENOTDIR' || code === 'EROFS' || code === 'ENOSPC' || code === 'EXDEV') {
        throw new HttpError(400, `cannot write the backup to ${dest}: ${(e as Error).message}`);
      }
      throw e;
    } finally {
      fs.rmSync(temp, { force: true });
      backupRunning = false;
    }
  });

  addConsoleRoutes(r, { site, log });

  // built at the first request, when every route is declared
  let openapi: unknown;
  r.on('GET', '/api/openapi.json', () => ({ status: 200, body: (openapi ??= openApiDocument(r.list())) }));

  // ----------------------------------------------------------- dispatch
  const send = (res: http.ServerResponse, reply: Reply) => {
    if (res.headersSent) {
      res.end();
      return;
    }
    const headers: Record<string, string | string[] | number> = { ...BASE_HEADERS, ...reply.headers };
    if (reply.raw) {
      const buf = typeof reply.raw.text === 'string' ? Buffer.from(reply.raw.text, 'utf8') : reply.raw.text;
      headers['content-type'] = reply.raw.contentType;
      headers['content-length'] = buf.length;
      headers['cache-control'] ??= 'no-store';
      res.writeHead(reply.status, headers).end(buf);
    } else if (reply.body === undefined) {
      res.writeHead(reply.status, headers).end();
    } else {
      const text = JSON.stringify(reply.body);
      headers['content-type'] = 'application/json; charset=utf-8';
      headers['content-length'] = Buffer.byteLength(text);
      headers['cache-control'] = 'no-store';
      res.writeHead(reply.status, headers).end(text);
    }
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<number> => {
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      throw new HttpError(400, 'malformed request URL');
    }
    // health, and the console's static files (they hold no data; the console asks for the token)
    const publicRoute = (method === 'GET' || method === 'HEAD') && (url.pathname === '/healthz' || url.pathname === '/console' || url.pathname.startsWith('/console/'));
    const healthCheck = url.pathname === '/healthz';
    // DNS rebinding: the Host must be a name of the admin address (health
    // checks are exempt: they carry no data and come from load balancers)
    if (!healthCheck && hosts && !hosts.allows(req.headers.host)) {
      throw new HttpError(403, `this is the termsync admin API; the Host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} is not one of its names (add it with --admin-host when a proxy uses it)`);
    }
    if (!SAFE_METHODS.has(method)) {
      const cross = crossSiteProblem(req, (h) => hosts?.allows(h) ?? false);
      if (cross) throw new HttpError(403, cross);
      const type = contentTypeProblem(req);
      if (type) throw new HttpError(415, type);
    }
    // The status page opened with ?token=: trade the token for the cookie and
    // drop it from the address bar (and the history) with a redirect.
    if (url.pathname === '/' && (method === 'GET' || method === 'HEAD') && url.searchParams.has('token')) {
      if (auth && !auth.tokenMatches(url.searchParams.get('token') ?? '')) {
        send(res, { status: 401, raw: { contentType: 'text/plain; charset=utf-8', text: 'Wrong admin token.\n' } });
        return 401;
      }
      send(res, { status: 303, headers: { location: '/', ...(auth ? { 'set-cookie': auth.setCookieHeader() } : {}) } });
      return 303;
    }
    if (auth && !publicRoute && !auth.authorized(req)) {
      if (url.pathname === '/') {
        send(res, {
          status: 401,
          raw: { contentType: 'text/plain; charset=utf-8', text: 'This termsync status page needs the admin token: open it once as /?token=YOUR_TOKEN\n' },
          headers: { 'www-authenticate': 'Bearer realm="termsync"' },
        });
        return 401;
      }
      throw new HttpError(401, 'missing or wrong admin token: send "Authorization: Bearer <token>"', { 'www-authenticate': 'Bearer realm="termsync"' });
    }
    const m = r.match(method, url.pathname);
    if (m.kind === 'none') throw new HttpError(404, `no such resource: ${method} ${url.pathname}`);
    if (m.kind === 'method') {
      const allow = m.allow.includes('GET') ? [...m.allow, 'HEAD'] : m.allow;
      throw new HttpError(405, `${method} is not allowed on ${url.pathname} (allowed: ${allow.join(', ')})`, { allow: allow.join(', ') });
    }
    const ctx: RouteContext = { req, res, url, params: m.params, method };
    const reply = await m.handler(ctx);
    if (reply) send(res, reply);
    return reply?.status ?? 200;
  };

  const headersTimeout = o.headerTimeoutMs ?? 5_000;
  const server = http.createServer({
    // slow or stuck clients cannot hold connections for long (event streams
    // are responses, so requestTimeout does not cut them); node checks these
    // deadlines every connectionsCheckingInterval
    headersTimeout,
    requestTimeout: Math.max(30_000, headersTimeout),
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(headersTimeout / 4))),
  }, (req, res) => {
    const started = Date.now();
    guard.busy(req.socket);
    res.once('close', () => guard.idle(req.socket));
    // the path only: a query string may carry the token
    const where = (req.url ?? '/').split('?')[0];
    handle(req, res).then(
      (status) => log.debug({ method: req.method, path: where, status, ms: Date.now() - started }, 'admin request'),
      (e: unknown) => {
        if (e instanceof ActionRefused) e = new HttpError(e.status, e.message);
        if (e instanceof HttpError) {
          const headers = { ...e.headers };
          send(res, { status: e.status, body: { error: e.message }, headers });
          // an oversize body was not read to its end: the connection cannot be reused
          if (e.headers.connection === 'close') res.once('finish', () => req.destroy());
          log.debug({ method: req.method, path: where, status: e.status, err: e.message }, 'admin request refused');
        } else if ((req.destroyed && !req.complete) || res.destroyed || req.socket.destroyed) {
          // the client went away while we read its body or answered (a body read to its end also
          // leaves req destroyed: that request still gets its answer)
          log.debug({ method: req.method, path: where, err: (e as Error).message }, 'admin request aborted by the client');
        } else if (isDbReadError(e)) {
          log.warn({ method: req.method, path: where, err: (e as Error).message }, 'admin request failed: database unavailable');
          send(res, { status: 503, body: { error: `the database is unavailable: ${(e as Error).message}` } });
        } else {
          log.error({ method: req.method, path: where, err: e }, 'admin request failed');
          send(res, { status: 500, body: { error: 'internal error (see the daemon log)' } });
        }
      },
    );
  });
  server.keepAliveTimeout = 5_000;
  // Sockets are accepted paused, and the guard sees each one before the HTTP
  // server does: one over its address's connect rate is never read nor set up
  // for HTTP (the guard holds it unread, then resets it); the others are
  // admitted (bounded per address and in total, making room by closing the
  // oldest) and only then handed to HTTP and read. node's own cap is only a
  // backstop above the guard's.
  (server as unknown as { pauseOnConnect: boolean }).pauseOnConnect = true;
  const httpConnection = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: net.Socket) => {
    if (!guard.gate(socket)) return;
    guard.admit(socket);
    if (socket.destroyed) return;
    for (const l of httpConnection) l.call(server, socket);
    socket.resume();
  });
  // (node counts the refused sockets the guard holds unread as connections too:
  // they must not push a health check from another address over node's cap)
  server.maxConnections = guard.maxConns + guard.maxConnsPerAddress + guard.maxHeldRefused;

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(new Error(`the admin API cannot listen on ${o.host}:${o.port}: ${e.message}`));
    server.once('error', onError);
    server.listen({ host: o.host, port: o.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => log.error({ err: e.message }, 'admin server error'));
  const port = (server.address() as AddressInfo).port;
  hosts = new HostPolicy({ listenHost: o.host, port, extraHosts: o.adminHosts, machine: o.machine });
  log.info({ host: o.host, port, auth: auth ? 'bearer token' : 'none', hostNames: hosts.describe() }, 'admin API listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    routes: r.list(),
    backupDir,
    close() {
      closing ??= new Promise<void>((resolve) => {
        unsubscribe();
        unheld();
        site.close?.();
        hub.close();
        metrics.stop();
        server.close(() => resolve());
        guard.close();
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
