// The admin API against the attacks a web page can mount (cross-site request
// forgery, DNS rebinding) and a local client hogging the listener: a real
// daemon and simulator, startAdmin on loopback, raw HTTP over node:http so the
// test controls every header (fetch would refuse to set Host or Origin).
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostPolicy, parseHostHeader } from '../src/admin/access.js';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { startRunning, type Running } from '../src/cli/run.js';
import { userFromJson } from '../src/model/user.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'security-test-token-77aa';
const silent = pino({ level: 'silent' });

interface Raw {
  status: number;
  body: any;
  headers: http.IncomingHttpHeaders;
}

/** One request with exactly these headers (Host included). */
function raw(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    // an explicit length: node sends a DELETE body unframed otherwise
    const all = body === undefined ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers };
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: all, setHost: false, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : text;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A request body that suits each route (valid enough to get past the guards). */
function sampleBody(method: string, path: string): string | undefined {
  if (method === 'DELETE') return undefined;
  if (path === '/api/settings') return JSON.stringify({ syncMode: 'off' });
  if (path === '/api/terminals') return JSON.stringify({ id: 'evil', host: '127.0.0.1', port: 9 });
  if (path.endsWith('/groups')) return JSON.stringify({ accessGroups: [66] });
  if (path === '/api/backup') return JSON.stringify({ name: 'evil.db' });
  if (path.startsWith('/api/users/')) return JSON.stringify({ name: 'Evil' });
  return JSON.stringify({});
}

/** Fills the route's parameters with objects that exist. */
function concrete(path: string): string {
  return path.replace(':id', path.startsWith('/api/terminals') ? 't1' : '5001').replace(/:(\w+)/g, 'x');
}

describe('cross-site requests and DNS rebinding', () => {
  let site: Site;
  let admin: AdminServer;
  let host: string;

  beforeAll(async () => {
    site = await startSite({ terminals: 2, daemon: { heartbeatSec: 1 } });
    admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: silent });
    host = `127.0.0.1:${admin.port}`;
    site.daemon.putUser(userFromJson({ id: '5001', name: 'Victim', cards: [{ type: 1, data: 'c0ffee' }] }));
  });

  afterAll(async () => {
    await admin?.close();
    await site?.close();
  });

  const auth = { authorization: `Bearer ${TOKEN}` };

  it("the issue's attack: PUT /api/settings from http://evil.example as text/plain is refused and the mode stays", async () => {
    const before = site.daemon.engine.syncMode;
    expect(before).not.toBe('off');
    // exactly what a page can send without a preflight (with and without the token: a page has none, a browser extension might)
    for (const h of [{}, auth]) {
      const r = await raw(admin.port, 'PUT', '/api/settings', { host, origin: 'http://evil.example', 'content-type': 'text/plain', ...h }, '{"syncMode":"off"}');
      expect(r.status).toBe(403);
      expect(r.body.error).toMatch(/admin address itself/);
    }
    // from the right origin but as text/plain: 415
    const plain = await raw(admin.port, 'PUT', '/api/settings', { host, origin: `http://${host}`, 'content-type': 'text/plain', ...auth }, '{"syncMode":"off"}');
    expect(plain.status).toBe(415);
    expect(plain.body.error).toMatch(/application\/json/);
    expect(site.daemon.engine.syncMode).toBe(before);
    expect(site.daemon.store.getSyncMode()).toBe(before);
    // no CORS is ever granted: the preflight a page would need finds no route
    const pre = await raw(admin.port, 'OPTIONS', '/api/settings', { host, origin: 'http://evil.example', 'access-control-request-method': 'PUT' });
    expect(pre.status).toBeGreaterThanOrEqual(400);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
  });

  it("the issue's attack: GET /api/users with Host: evil.example (DNS rebinding) is refused", async () => {
    const r = await raw(admin.port, 'GET', '/api/users', { host: 'evil.example', ...auth });
    expect(r.status).toBe(403);
    expect(JSON.stringify(r.body)).not.toContain('c0ffee');
    expect(r.body.error).toMatch(/not one of its names/);
    for (const h of ['evil.example:' + admin.port, `127.0.0.1:${admin.port + 1}`, '127.0.0.1', `attacker.127.0.0.1.nip.io:${admin.port}`, '']) {
      expect((await raw(admin.port, 'GET', '/api/users', { host: h, ...auth })).status, h).toBe(403);
    }
    // the admin address itself, in each of its loopback spellings
    for (const h of [host, `localhost:${admin.port}`, `LOCALHOST:${admin.port}`, `[::1]:${admin.port}`]) {
      const ok = await raw(admin.port, 'GET', '/api/users', { host: h, ...auth });
      expect(ok.status, h).toBe(200);
      expect(ok.body.map((u: any) => u.id)).toContain('5001');
    }
    // the static status page and the console are refused under a foreign name too
    expect((await raw(admin.port, 'GET', '/', { host: 'evil.example' })).status).toBe(403);
    // health checks carry no data and stay open to load balancers
    expect((await raw(admin.port, 'GET', '/healthz', { host: 'evil.example' })).status).toBe(200);
  });

  it('every state-changing route refuses another origin, a cross-site fetch, a foreign Referer and a non-JSON body', async () => {
    const changing = admin.routes.filter((r) => r.method !== 'GET' && r.method !== 'HEAD');
    // the router's own list: a new route without protection fails here
    expect(changing.length).toBeGreaterThanOrEqual(9);
    const modeBefore = site.daemon.engine.syncMode;
    const usersBefore = site.daemon.store.userCount();
    const terminalsBefore = JSON.stringify(site.daemon.terminals().map((t) => [t.id, t.accessGroups]));
    for (const { method, path } of changing) {
      const p = concrete(path);
      const body = sampleBody(method, path);
      const json = { host, 'content-type': 'application/json', ...auth };
      const cases: [string, Record<string, string>, number][] = [
        ['foreign Origin', { ...json, origin: 'http://evil.example' }, 403],
        ['Origin null (sandboxed frame)', { ...json, origin: 'null' }, 403],
        ['Origin on another port', { ...json, origin: `http://127.0.0.1:${admin.port + 1}` }, 403],
        ['Sec-Fetch-Site cross-site', { ...json, 'sec-fetch-site': 'cross-site' }, 403],
        ['Sec-Fetch-Site same-site', { ...json, 'sec-fetch-site': 'same-site' }, 403],
        ['foreign Referer', { ...json, referer: 'http://evil.example/page.html' }, 403],
        ['foreign Host', { ...json, host: 'evil.example' }, 403],
        ['text/plain body', { ...json, 'content-type': 'text/plain', origin: `http://${host}` }, 415],
        ['form body', { ...json, 'content-type': 'application/x-www-form-urlencoded' }, 415],
      ];
      if (method === 'DELETE') cases.pop(); // a DELETE without a body needs no type; one with a text body is the case above
      for (const [what, headers, status] of cases) {
        const send = method === 'DELETE' && status === 415 ? '{}' : body;
        const r = await raw(admin.port, method, p, headers, send);
        expect(r.status, `${method} ${path}: ${what}: ${JSON.stringify(r.body)}`).toBe(status);
      }
    }
    // none of it changed anything
    expect(site.daemon.engine.syncMode).toBe(modeBefore);
    expect(site.daemon.store.userCount()).toBe(usersBefore);
    expect(site.daemon.store.getUser('5001')?.name).toBe('Victim');
    expect(JSON.stringify(site.daemon.terminals().map((t) => [t.id, t.accessGroups]))).toBe(terminalsBefore);
  });

  it('the same changes from the admin address itself (Origin, same-origin fetch, CLI without either) go through', async () => {
    const json = { host, 'content-type': 'application/json', ...auth };
    expect((await raw(admin.port, 'PUT', '/api/users/5002', { ...json, origin: `http://${host}` }, '{"name":"Same origin"}')).status).toBe(201);
    expect((await raw(admin.port, 'PUT', '/api/users/5003', { ...json, 'sec-fetch-site': 'same-origin', referer: `http://${host}/console/` }, '{"name":"Fetch metadata"}')).status).toBe(201);
    expect((await raw(admin.port, 'PUT', '/api/users/5004', json, '{"name":"Command line"}')).status).toBe(201);
    expect((await raw(admin.port, 'PUT', '/api/users/5005', { ...json, 'content-type': 'application/json; charset=utf-8' }, '{"name":"With charset"}')).status).toBe(201);
    expect((await raw(admin.port, 'POST', '/api/terminals/t1/approve', { ...json, origin: `http://${host}` })).status).toBe(200);
    expect((await raw(admin.port, 'DELETE', '/api/users/5005', { host, ...auth, origin: `http://${host}` })).status).toBe(204);
  });
});

describe('which Host names a listener stands for', () => {
  it('a loopback listener: its address and the loopback names, on its port only', () => {
    const p = new HostPolicy({ listenHost: '127.0.0.1', port: 51280 });
    expect(p.allows('127.0.0.1:51280')).toBe(true);
    expect(p.allows('localhost:51280')).toBe(true);
    expect(p.allows('[::1]:51280')).toBe(true);
    expect(p.allows('127.0.0.1')).toBe(false);
    expect(p.allows('10.0.0.5:51280')).toBe(false);
    expect(p.allows('evil.example:51280')).toBe(false);
    expect(p.allows(undefined)).toBe(false);
  });

  it('a wildcard listener: the machine names and addresses, plus --admin-host names', () => {
    const machine = { hostnames: ['gatehouse', 'gatehouse.site.lan'], addresses: ['10.20.0.5', 'fd00::5', '127.0.0.1', '::1'] };
    const p = new HostPolicy({ listenHost: '0.0.0.0', port: 8080, machine, extraHosts: ['termsync.example.org', 'proxy.lan:8443'] });
    for (const h of ['gatehouse:8080', 'GATEHOUSE.site.lan:8080', '10.20.0.5:8080', '[fd00::5]:8080', 'localhost:8080', 'termsync.example.org', 'termsync.example.org:443', 'proxy.lan:8443']) {
      expect(p.allows(h), h).toBe(true);
    }
    for (const h of ['evil.example:8080', '10.20.0.6:8080', 'gatehouse:8081', 'proxy.lan:8080', 'proxy.lan']) expect(p.allows(h), h).toBe(false);
    const v6 = new HostPolicy({ listenHost: '::', port: 80, machine });
    expect(v6.allows('gatehouse')).toBe(true);
  });

  it('a change through a TLS proxy named with --admin-host: its https origin is the admin address too', async () => {
    const { crossSiteProblem } = await import('../src/admin/access.js');
    const p = new HostPolicy({ listenHost: '127.0.0.1', port: 51280, extraHosts: ['termsync.example.org'] });
    const req = (headers: Record<string, string>) => ({ headers }) as unknown as http.IncomingMessage;
    // the proxy passes the request on under the listen address
    expect(crossSiteProblem(req({ host: '127.0.0.1:51280', origin: 'https://termsync.example.org' }), (h) => p.allows(h))).toBeNull();
    expect(crossSiteProblem(req({ host: '127.0.0.1:51280', origin: 'https://evil.example' }), (h) => p.allows(h))).toMatch(/admin address itself/);
    expect(crossSiteProblem(req({ host: '127.0.0.1:51280', origin: 'ftp://termsync.example.org' }), (h) => p.allows(h))).toMatch(/admin address itself/);
  });

  it('parses Host headers strictly', () => {
    expect(parseHostHeader('Example.ORG:80')).toEqual({ name: 'example.org', port: 80 });
    expect(parseHostHeader('[::1]:9')).toEqual({ name: '::1', port: 9 });
    expect(parseHostHeader('a b')).toBeNull();
    expect(parseHostHeader('x:99999')).toBeNull();
    expect(parseHostHeader('user@host')).toBeNull();
  });
});

/** Opens a TCP connection and sends only the start of a request (headers never end). */
function partialConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
      // read what the server sends (its 408), so that its close reaches us
      s.resume();
      resolve(s);
    });
    s.on('error', () => {
      // the server closed it to make room: expected
    });
    s.once('error', reject);
  });
}

/** Opens an event stream and resolves with its status once the headers arrive. */
function openStream(port: number): Promise<{ status: number; req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/api/events/stream', headers: { accept: 'text/event-stream' }, agent: false }, (res) => {
      resolve({ status: res.statusCode ?? 0, req });
      if (res.statusCode !== 200) res.resume();
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the admin listener under one greedy local client (issue 14.7, small sizes set by the flags)', () => {
  let running: Running;
  let port: number;
  let dir: string;
  const sockets: net.Socket[] = [];
  const streams: http.ClientRequest[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-listener-'));
    // `termsync run` with the listener flags (defaults 64, 5000, 8), as an administrator would set them
    const cfg = parseRunConfig([
      '--insecure-dev-key',
      `--db=${join(dir, 't.db')}`,
      '--admin-listen=127.0.0.1:0',
      '--admin-max-conns-per-address=12',
      '--admin-header-timeout-ms=1500',
      '--admin-max-streams-per-address=3',
    ]);
    expect(cfg).toMatchObject({ adminMaxConnsPerAddress: 12, adminHeaderTimeoutMs: 1500, adminMaxStreamsPerAddress: 3 });
    running = await startRunning(cfg, silent);
    port = running.adminPort!;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    for (const r of streams) r.destroy();
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('/healthz answers while the client holds 60 partial-header connections and tries 10 event streams; streams past the cap get 429', async () => {
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await openStream(port));
    for (const r of results) streams.push(r.req);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    for (let i = 0; i < 60; i++) sockets.push(await partialConnection(port));
    // the listener made room by closing the client's oldest idle connections, never its streams
    const h = await raw(port, 'GET', '/healthz', { host: `127.0.0.1:${port}` });
    expect(h.status).toBe(200);
    expect(h.body.ok).toBe(true);
    const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
    expect(open).toBeLessThanOrEqual(12);
    expect(results.slice(0, 3).every((r) => !r.req.destroyed)).toBe(true);
    // and an API read too, many times over
    for (let i = 0; i < 5; i++) expect((await raw(port, 'GET', '/api/status', { host: `127.0.0.1:${port}` })).status).toBe(200);
    // the evictions show in the metrics
    const m = await raw(port, 'GET', '/metrics', { host: `127.0.0.1:${port}` });
    expect(Number(/^termsync_admin_connections_evicted_total (\d+)/m.exec(m.body)?.[1])).toBeGreaterThanOrEqual(40);
  });

  it('a connection that never finishes its headers is closed after the header timeout', async () => {
    const started = Date.now();
    const s = await partialConnection(port);
    const closed = new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
    await closed;
    const ms = Date.now() - started;
    // closed by the server's header deadline (1.5 s, checked every few hundred ms), not by the test
    expect(ms).toBeGreaterThanOrEqual(1000);
    await waitFor(() => s.destroyed);
  }, 20_000);
});

/** A whole request on a fresh connection from `from`: what came back (bytes) and how the connection ended. */
function oneShot(port: number, from: string): Promise<{ opened: Promise<void>; done: Promise<{ text: string; error: string | null }> }> {
  return new Promise((resolveOuter) => {
    let text = '';
    let error: string | null = null;
    let openedResolve!: () => void;
    const opened = new Promise<void>((r) => (openedResolve = r));
    const done = new Promise<{ text: string; error: string | null }>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => {
        s.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
        openedResolve();
      });
      s.setEncoding('latin1');
      s.on('data', (c: string) => (text += c));
      s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      s.once('close', () => resolve({ text, error }));
    });
    resolveOuter({ opened, done });
  });
}

describe('the admin listener under a client churning connections (connect rate per address, set by --admin-connect-rate)', () => {
  let running: Running;
  let port: number;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-connrate-'));
    const cfg = parseRunConfig(['--insecure-dev-key', `--db=${join(dir, 't.db')}`, '--admin-listen=127.0.0.1:0', '--admin-connect-rate=2']);
    expect(cfg.adminConnectRate).toBe(2);
    expect(parseRunConfig(['--insecure-dev-key', `--db=${join(dir, 't.db')}`]).adminConnectRate).toBe(100);
    running = await startRunning(cfg, silent);
    port = running.adminPort!;
  });

  afterAll(async () => {
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connections over the rate get no HTTP at all (held unread, then reset); another address is served meanwhile and the refusals are counted', async () => {
    const N = 30;
    const t0 = Date.now();
    const shots = [];
    for (let i = 0; i < N; i++) {
      const s = await oneShot(port, '127.0.0.1');
      await s.opened;
      shots.push(s);
    }
    const elapsedSec = (Date.now() - t0) / 1000;
    // while 127.0.0.1 is over its rate, a health check from another address is served
    const other = await (await oneShot(port, '127.0.0.2')).done;
    expect(other.text).toMatch(/^HTTP\/1\.1 200/);
    const results = await Promise.all(shots.map((s) => s.done));
    const answered = results.filter((r) => r.text.startsWith('HTTP/1.1 200'));
    const refused = results.filter((r) => r.text === '');
    // every connection was either served in full or got nothing at all
    expect(answered.length + refused.length).toBe(N);
    // the burst (twice the rate) plus what the rate let in while they were opened
    expect(answered.length).toBeGreaterThanOrEqual(1);
    expect(answered.length).toBeLessThanOrEqual(4 + Math.ceil(2 * elapsedSec) + 1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    // a refused connection ends with a reset, not a response or an orderly close
    expect(refused.every((r) => r.error === 'ECONNRESET')).toBe(true);
    // counted in /metrics (asked from the other address)
    const m = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics', agent: false, localAddress: '127.0.0.2' }, (res) => {
          let b = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    expect(Number(/^termsync_admin_connections_refused_total (\d+)/m.exec(m)?.[1])).toBe(refused.length);
    expect(Number(/^termsync_admin_connections_held_refused (\d+)/m.exec(m)?.[1])).toBe(0);
  }, 30_000);

  it('the refused connections held unread do not count against the listener: with more of them than its total cap, another address is still served', async () => {
    // a listener of the same daemon with small caps: 8 connections in all, 4 per address, 2 new a second per address
    const small = await startAdmin({ daemon: running.daemon, host: '127.0.0.1', port: 0, log: silent, maxConns: 8, maxConnsPerAddress: 4, connectRatePerAddress: 2 });
    try {
      const shots = [];
      for (let i = 0; i < 30; i++) {
        const s = await oneShot(small.port, '127.0.0.1');
        await s.opened;
        shots.push(s);
      }
      const other = await (await oneShot(small.port, '127.0.0.2')).done;
      expect(other.text).toMatch(/^HTTP\/1\.1 200/);
      await Promise.all(shots.map((s) => s.done));
    } finally {
      await small.close();
    }
  }, 30_000);
});
