// GET /api/openapi.json against the real router: every route is documented,
// and every documented operation, called on a real site, answers with one of
// the statuses it documents.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { startSite, type Site } from './helpers/site.js';

const TOKEN = 'openapi-test-token-a1';
let site: Site;
let admin: AdminServer;
let base: string;
let doc: any;

beforeAll(async () => {
  site = await startSite({ terminals: 2, daemon: { heartbeatSec: 2 } });
  admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: pino({ level: 'silent' }) });
  base = `http://127.0.0.1:${admin.port}`;
  const r = await fetch(`${base}/api/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(r.status).toBe(200);
  doc = await r.json();
});

afterAll(async () => {
  await admin?.close();
  await site?.close();
});

const toOpenApi = (path: string) => path.replace(/:(\w+)/g, '{$1}');

/** Parameters and a body that reach the operation's handler. */
function request(method: string, path: string): { url: string; body?: unknown } {
  const id = path.startsWith('/api/users/') ? 'oa-user' : 'oa-term';
  const url = path.replace('{id}', id).replace('{file}', 'console.js');
  const bodies: Record<string, unknown> = {
    'POST /api/terminals': { id: 'oa-term', host: '127.0.0.1', port: 9 },
    'PUT /api/terminals/{id}/groups': { accessGroups: [1] },
    'PUT /api/users/{id}': { name: 'OpenAPI' },
    'PUT /api/settings': { syncMode: 'all' },
    'POST /api/push-failures/retry': { terminalId: 't1' },
    'POST /api/pull-failures/retry': { terminalId: 't1' },
    'POST /api/backup': { name: `openapi-${Date.now()}.db` },
  };
  return { url, body: bodies[`${method} ${path}`] ?? (method === 'POST' ? {} : undefined) };
}

describe('GET /api/openapi.json', () => {
  it('is OpenAPI 3.1 and documents every route of the router', async () => {
    expect(doc.openapi).toBe('3.1.0');
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]: [string, any]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    const routes = admin.routes.map((r) => `${r.method} ${toOpenApi(r.path)}`);
    expect(routes.length).toBeGreaterThan(20);
    // against the full catalogue too: a route added without its description fails here
    const { PATHS } = await import('../src/admin/openapi.js');
    const catalogue = new Set(Object.entries(PATHS).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    for (const r of routes) expect(catalogue.has(r), `${r} is not documented in src/admin/openapi.ts`).toBe(true);
    for (const r of routes) expect(documented.has(r), `${r} is not served in the document`).toBe(true);
    // and nothing documented that the router does not have
    for (const d of documented) expect(routes.includes(d), `${d} is documented but not routed`).toBe(true);
    // every $ref resolves
    const text = JSON.stringify(doc);
    for (const m of text.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)) expect(doc.components.schemas[m[1]], m[1]).toBeDefined();
  });

  it('every documented operation answers with a status it documents', async () => {
    // objects the operations act on; deletes run last
    const ops = Object.entries(doc.paths).flatMap(([p, o]: [string, any]) => Object.entries(o).map(([m, spec]) => ({ method: m.toUpperCase(), path: p, spec: spec as any })));
    const rank = (o: { method: string; path: string }) => (o.method === 'POST' && o.path === '/api/terminals' ? 0 : o.method === 'DELETE' ? 2 : 1);
    ops.sort((a, b) => rank(a) - rank(b));
    const put = await fetch(`${base}/api/users/oa-user`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }) });
    expect(put.status).toBe(201);
    for (const { method, path, spec } of ops) {
      const { url, body } = request(method, path);
      const ac = new AbortController();
      const r = await fetch(base + url, {
        method,
        redirect: 'manual',
        signal: ac.signal,
        headers: { authorization: `Bearer ${TOKEN}`, ...(method === 'GET' || method === 'DELETE' ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // an event stream never ends: its status is enough
      if ((r.headers.get('content-type') ?? '').startsWith('text/event-stream')) ac.abort();
      else await r.arrayBuffer();
      expect(Object.keys(spec.responses), `${method} ${path} answered ${r.status}`).toContain(String(r.status));
      // the objects exist: everything succeeds but resyncing the offline terminal and rejecting the approved one (409)
      if (path === '/api/terminals/{id}/resync' || path === '/api/terminals/{id}/reject') expect(r.status, `${method} ${path}`).toBe(409);
      else expect(r.status, `${method} ${path}`).toBeLessThan(300);
    }
  });
});
