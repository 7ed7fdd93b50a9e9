// Small HTTP plumbing for the admin API (node:http only): a typed error that
// carries its status, a bounded JSON body reader, a tiny path router that tells
// 404 from 405, and query-parameter parsing with messages a person can act on.
import type http from 'node:http';

/** Request bodies larger than this are refused with 413. */
export const MAX_BODY_BYTES = 1024 * 1024;
/**
 * An oversize body is still read (and thrown away) up to this many bytes so the
 * client gets to read our 413 instead of a reset connection; past it, or when
 * Content-Length already says so, the connection is closed after the 413.
 */
const DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The body as text, at most MAX_BODY_BYTES (HttpError 413 beyond). */
export async function readBodyText(req: http.IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > DRAIN_LIMIT_BYTES) {
    throw new HttpError(413, `request body of ${declared} bytes is over the limit of ${limit} bytes`, { connection: 'close' });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > DRAIN_LIMIT_BYTES) throw new HttpError(413, `request body is over the limit of ${limit} bytes`, { connection: 'close' });
    if (size <= limit) chunks.push(chunk);
  }
  if (size > limit) throw new HttpError(413, `request body of ${size} bytes is over the limit of ${limit} bytes`);
  return Buffer.concat(chunks).toString('utf8');
}

/** The body parsed as JSON; 400 for an empty or malformed body, 413 for an oversize one. */
export async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const text = await readBodyText(req);
  if (text.trim() === '') throw new HttpError(400, 'a JSON body is required');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `malformed JSON in the request body: ${(e as Error).message}`);
  }
}

/** The body as a JSON object (not an array or a scalar). */
export async function readJsonObject(req: http.IncomingMessage, what = 'the request body'): Promise<Record<string, unknown>> {
  const v = await readJson(req);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, `${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

// ------------------------------------------------------------------ queries

/** An optional whole-number query parameter in min..max (400 otherwise). */
export function intParam(url: URL, name: string, min: number, max: number): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, `query parameter ${name} must be a whole number in ${min}..${max}`);
  return Number(v);
}

export function strParam(url: URL, name: string, maxLength = 256): string | undefined {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return undefined;
  if (v.length > maxLength) throw new HttpError(400, `query parameter ${name} is longer than ${maxLength} characters`);
  return v;
}

export function boolParam(url: URL, name: string): boolean {
  const v = url.searchParams.get(name);
  if (v === null) return false;
  if (v === '' || v === '1' || v === 'true' || v === 'yes') return true;
  if (v === '0' || v === 'false' || v === 'no') return false;
  throw new HttpError(400, `query parameter ${name} must be 1 or 0`);
}

// ------------------------------------------------------------------- router

export interface Reply {
  status: number;
  /** JSON-serialised unless `raw` is set */
  body?: unknown;
  raw?: { contentType: string; text: string | Buffer };
  headers?: Record<string, string | string[]>;
}

export interface RouteContext {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: Record<string, string>;
  method: string;
}

/** A handler returns a reply, or null when it wrote the response itself (server-sent events). */
export type Handler = (ctx: RouteContext) => Reply | null | Promise<Reply | null>;

interface Route {
  segments: string[];
  methods: Map<string, Handler>;
}

export type RouteMatch = { kind: 'found'; handler: Handler; params: Record<string, string> } | { kind: 'method'; allow: string[] } | { kind: 'none' };

/** Paths like '/api/terminals/:id/approve'; a ':name' segment matches one non-empty path segment (percent-decoded). */
export class Router {
  private readonly routes: Route[] = [];

  on(method: string, path: string, handler: Handler): this {
    const segments = path.split('/').filter((s) => s !== '');
    let r = this.routes.find((x) => x.segments.join('/') === segments.join('/'));
    if (!r) {
      r = { segments, methods: new Map() };
      this.routes.push(r);
    }
    r.methods.set(method, handler);
    return this;
  }

  /** Every route as declared: method and path pattern (e.g. '/api/users/:id'). */
  list(): { method: string; path: string }[] {
    const out: { method: string; path: string }[] = [];
    for (const r of this.routes) for (const m of r.methods.keys()) out.push({ method: m, path: '/' + r.segments.join('/') });
    return out;
  }

  match(method: string, pathname: string): RouteMatch {
    const parts = pathname.split('/').filter((s) => s !== '');
    let allow: string[] | null = null;
    for (const r of this.routes) {
      const params = matchSegments(r.segments, parts);
      if (!params) continue;
      // HEAD is answered like GET (node drops the body of a HEAD response)
      const h = r.methods.get(method) ?? (method === 'HEAD' ? r.methods.get('GET') : undefined);
      if (h) return { kind: 'found', handler: h, params };
      allow ??= [...r.methods.keys()];
    }
    return allow ? { kind: 'method', allow } : { kind: 'none' };
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p.startsWith(':')) {
      let v: string;
      try {
        v = decodeURIComponent(parts[i]);
      } catch {
        throw new HttpError(400, 'malformed percent-encoding in the path');
      }
      params[p.slice(1)] = v;
    } else if (p !== parts[i]) return null;
  }
  return params;
}
