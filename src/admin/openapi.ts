// The OpenAPI 3.1 description of the admin API, served at GET /api/openapi.json
// so integrators can generate clients. PATHS documents every route the admin
// API has or is about to have; the served document holds the operations the
// router actually routes. test/admin-openapi.test.ts checks both ways: every
// route documented, every served operation answering with one of its
// documented statuses.
import { SYNC_MODES } from '../store/types.js';

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json, description = 'OK') => ({ description, content: { 'application/json': { schema } } });
const error = (description: string) => json(ref('Error'), description);
const param = (name: string, description: string, schema: Json = { type: 'string' }, where: 'path' | 'query' = 'query', required = where === 'path') => ({
  name,
  in: where,
  required,
  description,
  schema,
});
const idParam = (what: string) => param('id', `the ${what}'s ID`, { type: 'string' }, 'path');
const body = (schema: Json, required = true) => ({ required, content: { 'application/json': { schema } } });

const AUTH_ERRORS = { '401': error('missing or wrong admin token'), '403': error('foreign Host name, or a change from another origin') };
const CHANGE_ERRORS = { ...AUTH_ERRORS, '400': error('bad input or malformed JSON'), '413': error('body over 1 MiB'), '415': error('the body is not declared application/json') };

function op(summary: string, responses: Json, extra: Json = {}, change = false): Json {
  return { summary, responses: { ...responses, ...(change ? CHANGE_ERRORS : AUTH_ERRORS), '503': error('database unavailable') }, ...extra };
}

const schemas: Record<string, Json> = {
  Error: { type: 'object', required: ['error'], properties: { error: { type: 'string' } } },
  User: {
    type: 'object',
    description: 'The user JSON form (README: "The user JSON form"). pin and pinHash are input only; pinSet is output only.',
    required: ['id'],
    properties: {
      id: { type: 'string' },
      name: { type: 'string' },
      startTime: { type: 'integer' },
      endTime: { type: 'integer' },
      securityLevel: { type: 'integer' },
      fingerAuthMode: { type: 'integer' },
      cardAuthMode: { type: 'integer' },
      idAuthMode: { type: 'integer' },
      authGroupId: { type: 'integer' },
      disabled: { type: 'boolean' },
      cards: { type: 'array', items: { type: 'object', properties: { type: { type: 'integer' }, data: { type: 'string', description: 'hex' } } } },
      fingers: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, flag: { type: 'integer' }, templates: { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 2 } } } },
      faces: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, flag: { type: 'integer' }, data: { type: 'string' } } } },
      accessGroups: { type: 'array', items: { type: 'integer' } },
      jobCodes: { type: 'array', items: { type: 'object', properties: { code: { type: 'integer' }, label: { type: 'string' } } } },
      phrase: { type: 'string' },
      photo: { type: 'string', description: 'hex' },
      pin: { type: 'string', writeOnly: true },
      pinHash: { type: 'string', writeOnly: true },
      pinSet: { type: 'boolean', readOnly: true },
    },
  },
  UserSummary: {
    type: 'object',
    properties: { id: { type: 'string' }, name: { type: 'string' }, disabled: { type: 'boolean' }, cards: { type: 'integer' }, fingers: { type: 'integer' }, faces: { type: 'integer' }, pinSet: { type: 'boolean' } },
  },
  Terminal: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      deviceId: { type: ['integer', 'null'] },
      address: { type: ['string', 'null'] },
      direction: { enum: ['dial', 'listen'] },
      state: { enum: ['online', 'offline', 'pending'] },
      approved: { type: 'boolean' },
      lastEventId: { type: 'integer' },
      lastSeen: { type: ['integer', 'null'] },
      pushesOwed: { type: 'integer' },
      model: { type: ['string', 'null'] },
      firmware: { type: ['string', 'null'] },
      accessGroups: { type: 'array', items: { type: 'integer' } },
      protocol: { type: 'string', description: "the driver that speaks to it: 'termsync', 'zk' or 'gsdk'" },
      owner: { type: ['string', 'null'], description: 'several daemons on PostgreSQL: the daemon that drives it now (its live lease); null on one daemon (SQLite) or while no daemon holds it' },
      lease: {
        description: 'several daemons on PostgreSQL: its lease row; null on one daemon',
        oneOf: [{ type: 'null' }, { type: 'object', properties: { owner: { type: ['string', 'null'] }, token: { type: 'integer' }, expiresAt: { type: ['integer', 'null'] }, live: { type: 'boolean' } } }],
      },
      usersHeld: {
        description: 'users the terminal held at its last full resync (null: never resynced)',
        oneOf: [{ type: 'null' }, { type: 'object', properties: { count: { type: 'integer' }, at: { type: 'integer' } } }],
      },
    },
  },
  Event: {
    type: 'object',
    properties: {
      id: { type: 'integer' },
      time: { type: 'integer', description: 'ms since the epoch' },
      type: { type: 'string' },
      label: { type: 'string' },
      terminal: { type: ['string', 'null'] },
      user: { type: ['string', 'null'] },
      detail: {},
    },
  },
  PullFailure: {
    type: 'object',
    properties: { terminalId: { type: 'string' }, userId: { type: 'string' }, reason: { type: 'string' }, firstAt: { type: 'integer' }, lastAt: { type: 'integer' }, attempts: { type: 'integer' } },
  },
  PushFailure: {
    type: 'object',
    properties: { terminalId: { type: 'string' }, userId: { type: 'string' }, status: { type: 'integer' }, reason: { type: 'string' }, time: { type: 'integer' } },
  },
  Settings: { type: 'object', required: ['syncMode'], properties: { syncMode: { enum: [...SYNC_MODES] } } },
  SyncState: {
    type: 'object',
    properties: {
      terminal: { type: 'string' },
      state: { enum: ['current', 'owed', 'refused', 'out-of-scope', 'offline', 'pending'] },
      terminalState: { enum: ['online', 'offline', 'pending'] },
      since: { type: 'integer' },
      attempts: { type: 'integer' },
      lastError: { type: ['string', 'null'] },
      reason: { type: 'string' },
      status: { type: 'integer' },
      heldBy: { type: 'array', items: { type: 'string' } },
    },
  },
};

const TEXT = (type: string, description = 'OK') => ({ description, content: { [type]: { schema: { type: 'string' } } } });

/** The served document: PATHS limited to the operations `routes` (the router's list) has. */
export function openApiDocument(routes: readonly { method: string; path: string }[]): Json {
  const routed = new Set(routes.map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`));
  const paths: Record<string, Json> = {};
  for (const [p, ops] of Object.entries(PATHS)) {
    const kept = Object.fromEntries(Object.entries(ops).filter(([m]) => routed.has(`${m} ${p}`)));
    if (Object.keys(kept).length) paths[p] = kept;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'termsync admin API',
      version: '1',
      description:
        'Administration of a termsync device gateway. With a token configured every request but /healthz and the console files needs `Authorization: Bearer TOKEN`. Requests must name the admin address in Host; changes must not come from another origin and must declare application/json.',
    },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}

/** Every operation, documented. */
export const PATHS: Record<string, Record<string, Json>> = {
  '/healthz': { get: { summary: 'liveness', security: [], responses: { '200': json({ type: 'object' }), '503': json({ type: 'object' }, 'the database cannot be read') } } },
  '/': { get: op('the status page (HTML); /?token=T trades the token for a read-only cookie', { '200': TEXT('text/html'), '303': { description: 'token accepted: cookie set' } }) },
  '/favicon.ico': { get: { summary: 'no icon', security: [], responses: { '204': { description: 'none' } } } },
  '/console': { get: { summary: 'the operator console (HTML; also at /console/)', security: [], responses: { '200': TEXT('text/html'), '403': error('foreign Host name') } } },
  '/console/{file}': {
    get: { summary: 'a console file', security: [], parameters: [param('file', 'console.js or console.css', { type: 'string' }, 'path')], responses: { '200': TEXT('text/javascript'), '404': error('no such file'), '403': error('foreign Host name') } },
  },
  '/metrics': { get: op('Prometheus metrics (README: Metrics)', { '200': TEXT('text/plain') }) },
  '/api/openapi.json': { get: op('this document', { '200': json({ type: 'object' }) }) },
  '/api/status': { get: op('counts for the status page', { '200': json({ type: 'object' }) }) },
  '/api/terminals': {
    get: op('every terminal', { '200': json({ type: 'array', items: ref('Terminal') }) }),
    post: op(
      'add (201) or update (200) a terminal the server dials',
      { '200': json(ref('Terminal')), '201': json(ref('Terminal'), 'added'), '400': error('bad input, or a protocol the daemon has no driver for (the message names the known ones)') },
      {
        requestBody: body({
          type: 'object',
          required: ['id'],
          properties: {
            id: { type: 'string', description: "the terminal's name; a Suprema terminal (gsdk) is gsdk-DEVICEID" },
            host: { type: 'string', description: "required, except for a Suprema terminal (gsdk) that dials the device gateway (left out: reached at the gateway's address)" },
            protocol: { type: 'string', default: 'termsync', description: "the terminal's protocol: 'termsync', 'zk' or 'gsdk' (a driver the daemon has; gsdk needs --gsdk-gateway)" },
            port: { type: 'integer', description: "default: the protocol's port (51211 for termsync, 4370 for zk, 51211 for a gsdk terminal the gateway dials)" },
            zkPassword: { type: 'integer', minimum: 0, maximum: 4294967295, writeOnly: true, description: "zk only: the terminal's comm key (default 0, none; an update that leaves it out keeps the current one); never returned" },
            accessGroups: { type: 'array', items: { type: 'integer' } },
            pin: { type: 'string' },
          },
        }),
      },
      true,
    ),
  },
  '/api/terminals/{id}': {
    get: op('one terminal', { '200': json(ref('Terminal')), '404': error('no such terminal') }, { parameters: [idParam('terminal')] }),
    delete: op('remove a terminal (the server keeps its users)', { '204': { description: 'removed' }, '404': error('no such terminal') }, { parameters: [idParam('terminal')] }, true),
  },
  '/api/terminals/{id}/approve': { post: op('approve a pending terminal', { '200': json(ref('Terminal')), '404': error('no such terminal') }, { parameters: [idParam('terminal')] }, true) },
  '/api/terminals/{id}/reject': {
    post: op('reject (remove) a terminal waiting for approval', { '200': json({ type: 'object' }), '404': error('no such terminal'), '409': error('the terminal is approved') }, { parameters: [idParam('terminal')] }, true),
  },
  '/api/terminals/{id}/groups': {
    put: op('set the access groups a terminal serves', { '200': json(ref('Terminal')), '404': error('no such terminal') }, { parameters: [idParam('terminal')], requestBody: body({ type: 'object', properties: { accessGroups: { type: 'array', items: { type: 'integer' } } } }) }, true),
  },
  '/api/terminals/{id}/resync': {
    post: op('compare user lists with the terminal and fix both sides', { '202': json({ type: 'object' }, 'started'), '404': error('no such terminal'), '409': error('the terminal is not online (several daemons: or another daemon drives it; the message names it)') }, { parameters: [idParam('terminal')] }, true),
  },
  '/api/users': {
    get: op('users in ID order', { '200': json({ type: 'array', items: ref('User') }) }, { parameters: [param('after', 'list IDs after this one'), param('limit', '1..1000', { type: 'integer' })] }),
  },
  '/api/user-search': {
    get: op(
      'users whose name or ID starts with q, keyset-paged',
      { '200': json({ type: 'object', properties: { users: { type: 'array', items: ref('UserSummary') }, next: { type: ['string', 'null'] } } }) },
      { parameters: [param('q', 'prefix'), param('by', 'name (default) or id', { enum: ['name', 'id'] }), param('after', 'next of the previous page'), param('limit', '1..200', { type: 'integer' })] },
    ),
  },
  '/api/users/{id}': {
    get: op('one user', { '200': json(ref('User')), '404': error('no such user') }, { parameters: [idParam('user')] }),
    put: op(
      'create (201) or change (200) a user on the server; pushed to the terminals in scope',
      { '200': json({ type: 'object' }), '201': json({ type: 'object' }, 'created') },
      { parameters: [idParam('user'), param('merge', '1: change only the fields given', { type: 'string' })], requestBody: body(ref('User')) },
      true,
    ),
    delete: op('delete a user on the server and the terminals in scope', { '204': { description: 'deleted' }, '404': error('no such user') }, { parameters: [idParam('user')] }, true),
  },
  '/api/users/{id}/sync': {
    get: op('the user\'s sync state on each terminal', { '200': json({ type: 'object', properties: { user: { type: 'string' }, syncMode: { type: 'string' }, terminals: { type: 'array', items: ref('SyncState') } } }), '404': error('no such user') }, { parameters: [idParam('user')] }),
  },
  '/api/events': {
    get: op('monitoring events', { '200': json({ type: 'array', items: ref('Event') }) }, {
      parameters: ['after', 'before', 'limit'].map((n) => param(n, n, { type: 'integer' })).concat([param('type', 'event type'), param('terminal', 'terminal ID'), param('user', 'user ID'), param('order', 'asc or desc', { enum: ['asc', 'desc'] })]),
    }),
  },
  '/api/events/stream': {
    get: op('new monitoring events as server-sent events (Last-Event-ID resumes)', { '200': TEXT('text/event-stream'), '429': error('too many streams from this address') }, { parameters: [param('after', 'start after this event ID', { type: 'integer' })] }),
  },
  '/api/settings': {
    get: op('the sync mode', { '200': json(ref('Settings')) }),
    put: op('change the sync mode (logged as SYNC_MODE_CHANGED)', { '200': json(ref('Settings')) }, { requestBody: body(ref('Settings')) }, true),
  },
  '/api/push-failures': {
    get: op('users a terminal refused', { '200': json({ type: 'array', items: ref('PushFailure') }) }, { parameters: [param('terminal', 'terminal ID'), param('user', 'user ID'), param('limit', '1..10000', { type: 'integer' })] }),
  },
  '/api/push-failures/retry': {
    post: op('queue refused pushes again', { '200': json({ type: 'object' }), '404': error('no such terminal') }, { requestBody: body({ type: 'object', required: ['terminalId'], properties: { terminalId: { type: 'string' }, userId: { type: 'string' } } }) }, true),
  },
  '/api/backup': {
    post: op(
      'online backup to a new file in the backup directory (mode 0600, never replacing a file)',
      { '200': json({ type: 'object' }), '409': error('the name exists, or a backup is running'), '501': error('the database is PostgreSQL (back it up with its own tools)') },
      { requestBody: body({ type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$' } } }) },
      true,
    ),
  },
  // the engine's pull failures (a user a terminal reported changed but could not deliver)
  '/api/pull-failures': {
    get: op('users a terminal could not deliver when asked, with the reason', { '200': json({ type: 'array', items: ref('PullFailure') }) }, { parameters: [param('terminal', 'terminal ID'), param('user', 'user ID'), param('limit', 'how many', { type: 'integer' })] }),
  },
  '/api/pull-failures/retry': {
    post: op('ask the terminal for those users again (queued at once; the terminal must be online)', { '202': json({ type: 'object', properties: { terminalId: { type: 'string' }, queued: { type: 'integer' } } }), '404': error('no such terminal'), '409': error('the terminal is not online (its failed pulls are retried when its session starts)') }, { requestBody: body({ type: 'object', required: ['terminalId'], properties: { terminalId: { type: 'string' }, userId: { type: 'string' } } }) }, true),
  },
};
