// A small client for a running daemon's admin HTTP API (src/admin/server.ts),
// used by the admin subcommands of the CLI. Node's global fetch; no extra
// dependency.
//
// Failures come in two kinds the CLI tells apart:
//   AdminUnreachableError  the daemon could not be reached (connection refused,
//                          host unknown, timeout): "is the daemon running?"
//   AdminHttpError         the API answered with an error status; the message is
//                          the API's own {"error": "..."} text.
import type { EventJson } from '../admin/events.js';
import type { TerminalView } from '../daemon.js';
import type { UserJson } from '../model/user.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:51280';

export type { EventJson, TerminalView, UserJson };

export interface AdminClientOptions {
  /** base URL of the admin API, e.g. http://127.0.0.1:51280 */
  url: string;
  /** bearer token, when the daemon has one configured */
  token?: string | null;
  /** per-request timeout in ms (default 30 s; event streams have none) */
  timeoutMs?: number;
}

/** The daemon could not be reached at all. */
export class AdminUnreachableError extends Error {
  readonly url: string;
  /** ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ... */
  readonly reason: string;
  constructor(url: string, reason: string) {
    super(`cannot reach the termsync admin API at ${url}: ${reason} — is the daemon running?`);
    this.name = 'AdminUnreachableError';
    this.url = url;
    this.reason = reason;
  }
}

/** The API answered with an error status. The message is the API's. */
export class AdminHttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'AdminHttpError';
    this.status = status;
  }
}

/** The error code behind a fetch failure (undici wraps it in `cause`, sometimes in an AggregateError). */
export function networkReason(e: unknown): string {
  const seen = new Set<unknown>();
  let cur: unknown = e;
  while (cur && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    const c = cur as { code?: unknown; name?: unknown; errors?: unknown[]; cause?: unknown; message?: unknown };
    if (typeof c.code === 'string' && c.code !== 'UND_ERR_SOCKET' && !c.code.startsWith('ERR_')) return c.code;
    if (c.name === 'TimeoutError') return 'ETIMEDOUT (no answer in time)';
    if (Array.isArray(c.errors) && c.errors.length > 0) {
      const inner = networkReason(c.errors[0]);
      if (inner) return inner;
    }
    if (c.cause === undefined) return typeof c.message === 'string' && c.message !== 'fetch failed' ? c.message : String(c.code ?? c.message ?? 'unknown error');
    cur = c.cause;
  }
  return 'unknown error';
}

export interface TerminalInput {
  id: string;
  /** required, except for a gsdk terminal that dials the device gateway */
  host?: string;
  /** default: the protocol's port (51211 termsync, 4370 zk, 51211 gsdk) */
  port?: number;
  /** 'termsync' (default), 'zk' or 'gsdk' */
  protocol?: string;
  /** zk only: the terminal's numeric comm key (write-only) */
  zkPassword?: number;
  accessGroups?: number[];
}

export interface PutUserResult {
  user: UserJson | null;
  created: boolean;
  changed: boolean;
  pushedTo: string[];
}

export interface Settings {
  syncMode: string;
}

export interface BackupResult {
  /** the file name in the daemon's backup directory */
  name: string;
  /** where the daemon wrote it (on the daemon's machine) */
  path: string;
  totalPages: number;
  remainingPages: number;
  ms: number;
}

export interface AdminStatus {
  syncMode: string;
  terminals: { online: number; offline: number; pending: number };
  outbox: number;
  users: number;
  [k: string]: unknown;
}

export interface EventQuery {
  after?: number;
  limit?: number;
  type?: string;
  terminal?: string;
  user?: string;
  order?: 'asc' | 'desc';
}

export interface StreamOptions {
  /** start after this event ID (default: only events newer than now) */
  after?: number;
  signal?: AbortSignal;
  /** called when the stream broke and is about to be reopened */
  onReconnect?: (reason: string, delayMs: number) => void;
  /** reopen a broken stream (default true); false ends the iteration instead */
  reconnect?: boolean;
}

export class AdminClient {
  readonly url: string;
  private readonly token: string | null;
  private readonly timeoutMs: number;

  constructor(o: AdminClientOptions) {
    this.url = o.url.replace(/\/+$/, '');
    this.token = o.token ?? null;
    this.timeoutMs = o.timeoutMs ?? 30_000;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async send(method: string, path: string, body?: unknown, opts: { signal?: AbortSignal; accept?: string; timeout?: boolean } = {}): Promise<Response> {
    const signals: AbortSignal[] = [];
    if (opts.timeout !== false) signals.push(AbortSignal.timeout(this.timeoutMs));
    if (opts.signal) signals.push(opts.signal);
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: this.headers({
          // the API refuses changes that do not declare JSON (a cross-site guard), even without a body
          ...(body !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH' ? { 'content-type': 'application/json' } : {}),
          ...(opts.accept ? { accept: opts.accept } : {}),
        }),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals),
      });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new AdminUnreachableError(this.url, networkReason(e));
    }
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      const text = await res.text().catch(() => '');
      try {
        const j = JSON.parse(text) as { error?: unknown };
        if (typeof j.error === 'string') message = j.error;
      } catch {
        if (text.trim()) message = `${message}: ${text.trim().slice(0, 200)}`;
      }
      throw new AdminHttpError(res.status, message);
    }
    return res;
  }

  /** One request; the parsed JSON body (undefined for 204). */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new AdminHttpError(res.status, `the admin API at ${this.url} answered with something that is not JSON (is this termsync?)`);
    }
  }

  // ------------------------------------------------------------ endpoints

  health(): Promise<{ ok: boolean; db: string; terminalsOnline: number }> {
    return this.request('GET', '/healthz');
  }

  status(): Promise<AdminStatus> {
    return this.request('GET', '/api/status');
  }

  terminals(): Promise<TerminalView[]> {
    return this.request('GET', '/api/terminals');
  }

  terminal(id: string): Promise<TerminalView> {
    return this.request('GET', `/api/terminals/${enc(id)}`);
  }

  addTerminal(t: TerminalInput): Promise<TerminalView> {
    return this.request('POST', '/api/terminals', t);
  }

  removeTerminal(id: string): Promise<void> {
    return this.request('DELETE', `/api/terminals/${enc(id)}`);
  }

  approveTerminal(id: string): Promise<TerminalView> {
    return this.request('POST', `/api/terminals/${enc(id)}/approve`);
  }

  setTerminalGroups(id: string, accessGroups: number[]): Promise<TerminalView> {
    return this.request('PUT', `/api/terminals/${enc(id)}/groups`, { accessGroups });
  }

  resync(id: string): Promise<{ ok: boolean; terminal: string }> {
    return this.request('POST', `/api/terminals/${enc(id)}/resync`);
  }

  users(q: { after?: string; limit?: number } = {}): Promise<UserJson[]> {
    return this.request('GET', `/api/users${query({ after: q.after, limit: q.limit })}`);
  }

  /** Every user in ID order, a page at a time. */
  async *allUsers(opts: { after?: string; pageSize?: number } = {}): AsyncGenerator<UserJson> {
    const pageSize = opts.pageSize ?? 1000;
    let after = opts.after;
    for (;;) {
      const page = await this.users({ after, limit: pageSize });
      for (const u of page) yield u;
      if (page.length < pageSize) return;
      after = page[page.length - 1].id;
    }
  }

  user(id: string): Promise<UserJson> {
    return this.request('GET', `/api/users/${enc(id)}`);
  }

  putUser(id: string, body: Record<string, unknown>): Promise<PutUserResult> {
    return this.request('PUT', `/api/users/${enc(id)}`, body);
  }

  events(q: EventQuery = {}): Promise<EventJson[]> {
    return this.request('GET', `/api/events${query({ ...q })}`);
  }

  settings(): Promise<Settings> {
    return this.request('GET', '/api/settings');
  }

  setSettings(s: Partial<Settings>): Promise<Settings> {
    return this.request('PUT', '/api/settings', s);
  }

  pushFailures(q: { terminal?: string; user?: string; limit?: number } = {}): Promise<unknown[]> {
    return this.request('GET', `/api/push-failures${query(q)}`);
  }

  /** An online backup to a new file `name` in the daemon's backup directory (--backup-dir). */
  backup(name: string): Promise<BackupResult> {
    return this.request('POST', '/api/backup', { name });
  }

  /**
   * New monitoring events from the server-sent event stream, in order, until
   * `signal` aborts (the iteration then just ends). A broken stream is reopened
   * after the server's retry delay, resuming after the last event received. The
   * first connection failing throws (AdminUnreachableError / AdminHttpError).
   */
  async *streamEvents(o: StreamOptions = {}): AsyncGenerator<EventJson> {
    let last = o.after;
    let retryMs = 2000;
    let connected = false;
    while (!o.signal?.aborted) {
      let reason = 'the stream ended';
      try {
        const res = await this.send('GET', `/api/events/stream${query({ after: last })}`, undefined, {
          signal: o.signal,
          accept: 'text/event-stream',
          timeout: false,
        });
        connected = true;
        if (!res.body) throw new Error('no response body');
        const decoder = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true });
          let sep: number;
          while ((sep = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, sep);
            buf = buf.slice(sep + (buf[sep] === '\r' ? 4 : 2));
            const msg = parseSseBlock(block);
            if (msg.retry !== undefined) retryMs = msg.retry;
            if (msg.data === undefined) continue;
            const ev = JSON.parse(msg.data) as EventJson;
            if (msg.id !== undefined && /^\d+$/.test(msg.id)) last = Number(msg.id);
            else last = ev.id;
            yield ev;
          }
        }
      } catch (e) {
        if (o.signal?.aborted) return;
        if (!connected) throw e;
        reason = e instanceof AdminUnreachableError ? e.reason : e instanceof Error ? e.message : String(e);
      }
      if (o.signal?.aborted || o.reconnect === false) return;
      o.onReconnect?.(reason, retryMs);
      await sleep(retryMs, o.signal);
    }
  }
}

/** One server-sent event block (lines up to a blank line). */
export function parseSseBlock(block: string): { id?: string; data?: string; event?: string; retry?: number } {
  const out: { id?: string; data?: string; event?: string; retry?: number } = {};
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'id') out.id = value;
    else if (field === 'event') out.event = value;
    else if (field === 'retry' && /^\d+$/.test(value)) out.retry = Number(value);
  }
  if (data.length) out.data = data.join('\n');
  return out;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function query(q: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Waits `ms`, or less when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
