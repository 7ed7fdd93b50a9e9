// The admin API of a daemon on PostgreSQL (a first, small part of the single
// daemon's API, src/admin/): the whole site is in the shared database, so any
// daemon answers for every terminal, and a user written here is pushed by
// whichever daemons hold the terminals (the feed; NOTIFY wakes them).
//   GET    /healthz            200 {ok, daemon, held} while the database answers, else 503
//   GET    /api/terminals      every terminal with its lease: owner, live, token
//   GET    /api/users/:id      the user (user JSON)
//   PUT    /api/users/:id      create or replace (user JSON); 201 created, 200 otherwise
//   DELETE /api/users/:id      204; 404 if unknown
// With a token (--admin-token-file) every request but /healthz needs
// "Authorization: Bearer TOKEN".
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { UserJsonError, userFromJson, userToJson, validateUser } from '../model/user.js';
import { LeaseTable } from '../store/pg/leases.js';
import type { ClusterNode } from './node.js';

const MAX_BODY = 1 << 20;

export interface ClusterAdmin {
  port: number;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new HttpError(413, `body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new HttpError(400, 'the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

export async function startClusterAdmin(o: { node: ClusterNode; host: string; port: number; token: Buffer | null; log: Logger }): Promise<ClusterAdmin> {
  const { node, log } = o;
  const store = node.store;
  const leases = new LeaseTable(store.db);
  const authorized = (req: IncomingMessage): boolean => {
    if (!o.token) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = Buffer.from(m[1]!);
    return got.length === o.token.length && timingSafeEqual(got, o.token);
  };
  const handle = async (req: IncomingMessage): Promise<{ status: number; body?: unknown }> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/healthz') {
      try {
        await store.db.query('SELECT 1');
        return { status: 200, body: { ok: true, daemon: store.writerId, held: node.leases.heldTerminals().length } };
      } catch (e) {
        return { status: 503, body: { ok: false, daemon: store.writerId, error: (e as Error).message } };
      }
    }
    if (!authorized(req)) throw new HttpError(401, 'missing or wrong bearer token');
    if (req.method === 'GET' && path === '/api/terminals') {
      const [terminals, rows] = await Promise.all([store.listTerminals(), leases.list()]);
      const byId = new Map(rows.map((r) => [r.terminalId, r]));
      return {
        status: 200,
        body: terminals.map((t) => {
          const l = byId.get(t.id);
          return { id: t.id, direction: t.direction, address: t.address, approved: t.approved, owner: l?.live ? l.owner : null, leaseToken: l?.token ?? null };
        }),
      };
    }
    const m = /^\/api\/users\/([^/]+)$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      if (req.method === 'GET') {
        const u = await store.getUser(id);
        if (!u) throw new HttpError(404, `no user ${JSON.stringify(id)}`);
        return { status: 200, body: userToJson(u) };
      }
      if (req.method === 'PUT') {
        const body = await readBody(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the user must be a JSON object');
        const b = body as Record<string, unknown>;
        if (b.id !== undefined && b.id !== id) throw new HttpError(400, `the body's id ${JSON.stringify(b.id)} differs from the path's ${JSON.stringify(id)}`);
        let user;
        try {
          user = userFromJson({ ...b, id });
        } catch (e) {
          if (e instanceof UserJsonError) throw new HttpError(400, e.message);
          throw e;
        }
        const problem = validateUser(user);
        if (problem) throw new HttpError(400, problem);
        const r = await store.putUser(user);
        log.info({ user: id, created: r.created, changed: r.changed, seq: r.seq }, 'user saved through the admin API');
        const stored = await store.getUser(id);
        return { status: r.created ? 201 : 200, body: { user: stored ? userToJson(stored) : null, created: r.created, changed: r.changed } };
      }
      if (req.method === 'DELETE') {
        if (!(await store.deleteUser(id))) throw new HttpError(404, `no user ${JSON.stringify(id)}`);
        log.info({ user: id }, 'user deleted through the admin API');
        return { status: 204 };
      }
      throw new HttpError(405, `${req.method} not allowed here`);
    }
    throw new HttpError(404, `no route ${req.method} ${path}`);
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    handle(req)
      .then(({ status, body }) => {
        res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
        res.end(body === undefined ? undefined : JSON.stringify(body));
      })
      .catch((e: unknown) => {
        const status = e instanceof HttpError ? e.status : 500;
        if (status === 500) log.warn({ err: (e as Error).message, url: req.url }, 'admin request failed');
        if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: (e as Error).message }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
