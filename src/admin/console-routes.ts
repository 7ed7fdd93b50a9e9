// Admin API routes the operator console needs beyond the basic CRUD of
// src/admin/server.ts, and the console's static files:
//
// Everything here goes through the site's port (site.ts), so it works the same
// on one daemon (SQLite) and on any daemon of several (PostgreSQL).
//
//   GET  /console/ and /console/FILE            the console (src/admin/console/: HTML, CSS, JS; no token needed, no data in them)
//   GET  /api/user-search?q=&by=name|id&after=&limit=
//                                              {users: [summary], next}: users whose ID or name starts with q, keyset-paged
//   GET  /api/users/:id/sync                   the user's sync state on every terminal
//   POST /api/push-failures/retry              {terminalId, userId?}: queue the refused push(es) again
//   POST /api/terminals/:id/reject             reject a terminal waiting for approval (it is removed)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { TerminalView } from '../daemon.js';
import type { SiteStore } from '../store/backend.js';
import type { SearchField } from '../store/user-search.js';
import { HttpError, intParam, readJsonObject, strParam, type Reply, type Router } from './http.js';
import type { AdminSite } from './site.js';

/** Content-Security-Policy of the console: its own files only, requests to its own origin only. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CONSOLE_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
};

const SEARCH_PAGE_MAX = 200;

/** The console's files, read once (they ship beside this module). */
function loadConsoleFiles(): Map<string, Buffer> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'console');
  const out = new Map<string, Buffer>();
  for (const name of Object.keys(CONSOLE_FILES)) out.set(name, readFileSync(path.join(dir, name)));
  return out;
}

/**
 * How many users a terminal held at its last full resync (the RECONCILE
 * event's terminalUsers), or null when it was never resynced.
 */
export async function usersHeld(store: Pick<SiteStore, 'listEvents'>, terminalId: string): Promise<{ count: number; at: number } | null> {
  const e = (await store.listEvents({ type: 'RECONCILE', terminalId, newestFirst: true, limit: 1 }))[0];
  if (!e?.detail) return null;
  try {
    const d = JSON.parse(e.detail) as { terminalUsers?: unknown };
    return typeof d.terminalUsers === 'number' ? { count: d.terminalUsers, at: e.time } : null;
  } catch {
    return null;
  }
}

export type SyncState = 'current' | 'owed' | 'refused' | 'out-of-scope' | 'offline' | 'pending';

export interface TerminalSyncState {
  terminal: string;
  state: SyncState;
  /** the terminal's session state */
  terminalState: TerminalView['state'];
  /** the daemon that drives it (several daemons on PostgreSQL only) */
  owner?: string | null;
  /** owed: queued since; refused: refused at; ms since the epoch */
  since?: number;
  attempts?: number;
  lastError?: string | null;
  /** refused: the terminal's reason; out-of-scope / pending: why */
  reason?: string;
  status?: number;
  /** refused for a duplicate card: the server's users holding one of this user's cards */
  heldBy?: string[];
}

export interface ConsoleRoutesOptions {
  site: AdminSite;
  log: Logger;
}

export function addConsoleRoutes(r: Router, o: ConsoleRoutesOptions): void {
  const { site, log } = o;
  const store = site.store;
  const files = loadConsoleFiles();

  const serve = (name: string): Reply => {
    const body = files.get(name);
    if (!body) throw new HttpError(404, `no such console file: ${name}`);
    return {
      status: 200,
      raw: { contentType: CONSOLE_FILES[name], text: body },
      headers: { 'content-security-policy': CONSOLE_CSP, 'x-frame-options': 'DENY', 'cache-control': 'no-cache' },
    };
  };
  // '/console' and '/console/' are one route (the router ignores empty segments)
  r.on('GET', '/console/', () => serve('index.html'));
  r.on('GET', '/console/:file', ({ params }) => serve(params.file));

  r.on('GET', '/api/user-search', async ({ url }) => {
    const by = (strParam(url, 'by', 8) ?? 'name') as SearchField;
    if (by !== 'name' && by !== 'id') throw new HttpError(400, 'query parameter by must be name or id');
    const q = url.searchParams.get('q') ?? '';
    if (q.length > 256) throw new HttpError(400, 'query parameter q is longer than 256 characters');
    const after = url.searchParams.get('after');
    if (after !== null && after.length > 1024) throw new HttpError(400, 'query parameter after is too long');
    const limit = intParam(url, 'limit', 1, SEARCH_PAGE_MAX) ?? 50;
    return { status: 200, body: await store.searchUsers(by, q, after === '' ? null : after, limit) };
  });

  r.on('GET', '/api/users/:id/sync', async ({ params }) => {
    const u = await store.getUser(params.id);
    if (!u) throw new HttpError(404, `no user ${JSON.stringify(params.id)}`);
    const mode = site.syncMode();
    const [targetList, views] = await Promise.all([site.targetsFor(u), site.terminals()]);
    const targets = new Set(targetList);
    const [owedList, refusedList] = await Promise.all([store.owedTo(u.id, views.map((v) => v.id), mode), store.listPushFailures({ userId: u.id, limit: 10_000 })]);
    const owed = new Map(owedList.map((x) => [x.terminalId, x]));
    const refused = new Map(refusedList.map((f) => [f.terminalId, f]));
    const holders = refusedList.some((f) => /DUPLICATE_CARD/i.test(f.reason)) ? await store.cardHolders(u.id) : undefined;
    const terminals: TerminalSyncState[] = views.map((v) => {
      const base = { terminal: v.id, terminalState: v.state, ...(site.kind === 'postgres' ? { owner: v.owner } : {}) };
      const f = refused.get(v.id);
      if (f) {
        return { ...base, state: 'refused', since: f.time, reason: f.reason, status: f.status, ...(/DUPLICATE_CARD/i.test(f.reason) ? { heldBy: holders } : {}) };
      }
      const w = owed.get(v.id);
      if (w) return { ...base, state: v.state === 'online' ? 'owed' : 'offline', since: w.since, attempts: w.attempts, lastError: w.lastError };
      if (!v.approved) return { ...base, state: 'pending', reason: 'the terminal waits for approval' };
      if (!targets.has(v.id)) {
        let reason = `sync mode "${mode}"`;
        if (mode === 'off') reason = 'sync mode "off": server changes are not sent to terminals';
        else if (mode === 'specific') {
          reason = `sync mode "specific": the terminal serves access groups [${v.accessGroups.join(', ')}], the user is in [${u.accessGroups.join(', ')}]`;
        }
        return { ...base, state: 'out-of-scope', reason };
      }
      if (v.state !== 'online') return { ...base, state: 'offline', reason: 'nothing owed: the terminal held the current record when it was last synced' };
      return { ...base, state: 'current' };
    });
    return { status: 200, body: { user: u.id, syncMode: mode, terminals } };
  });

  r.on('POST', '/api/push-failures/retry', async ({ req }) => {
    const b = await readJsonObject(req, 'the retry request');
    if (typeof b.terminalId !== 'string' || b.terminalId === '') throw new HttpError(400, 'terminalId is required');
    if (b.userId !== undefined && (typeof b.userId !== 'string' || b.userId === '')) throw new HttpError(400, 'userId must be a user ID');
    if (!(await store.getTerminal(b.terminalId))) throw new HttpError(404, `no terminal ${JSON.stringify(b.terminalId)}`);
    const { retried, cleared } = await site.retryPushFailures(b.terminalId, b.userId as string | undefined);
    log.info({ terminal: b.terminalId, user: b.userId, retried, cleared }, 'refused pushes queued again through the admin API');
    return { status: 200, body: { terminalId: b.terminalId, retried, cleared } };
  });

  r.on('POST', '/api/terminals/:id/reject', async ({ params }) => {
    const t = await store.getTerminal(params.id);
    if (!t) throw new HttpError(404, `no terminal ${JSON.stringify(params.id)}`);
    if (t.approved) throw new HttpError(409, `terminal ${JSON.stringify(params.id)} is approved; remove it instead`);
    await site.removeTerminal(params.id);
    log.info({ terminal: params.id }, 'pending terminal rejected through the admin API');
    return { status: 200, body: { rejected: params.id } };
  });
}
