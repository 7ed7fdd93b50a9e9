// Admin API authentication: one shared bearer token.
//
// - API clients send `Authorization: Bearer <token>`.
// - A browser opens the status page once as `/?token=<token>`; the server answers
//   with a redirect to `/` (so the token leaves the address bar and history) and
//   an HttpOnly, SameSite=Strict cookie. The cookie holds HMAC-SHA256(token,
//   COOKIE_LABEL), not the token itself: it proves knowledge of the token,
//   survives a daemon restart with the same token, and stops working when the
//   token changes.
// - The cookie is accepted for GET/HEAD requests only. The status page only
//   reads, so a forged cross-site request can never change anything even if a
//   browser ignored SameSite; every change needs the Authorization header.
//
// Comparisons hash both sides to equal-length SHA-256 digests and compare them
// with crypto.timingSafeEqual, so neither the content nor the length of the
// token leaks through timing. Tokens are never logged.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';

export const COOKIE_NAME = 'termsync_admin';
const COOKIE_LABEL = 'termsync admin page cookie v1';

export class AdminAuth {
  private readonly tokenDigest: Buffer;
  private readonly cookieDigest: Buffer;
  /** the cookie value handed to a browser that presented the token */
  readonly cookieValue: string;

  constructor(token: Buffer) {
    if (token.length === 0) throw new RangeError('the admin token must not be empty');
    this.tokenDigest = sha256(token);
    this.cookieValue = createHmac('sha256', token).update(COOKIE_LABEL).digest('base64url');
    this.cookieDigest = sha256(Buffer.from(this.cookieValue, 'utf8'));
  }

  /** Constant-time check of a presented token (any length). */
  tokenMatches(presented: string | Buffer): boolean {
    return timingSafeEqual(sha256(typeof presented === 'string' ? Buffer.from(presented, 'utf8') : presented), this.tokenDigest);
  }

  private cookieMatches(value: string): boolean {
    return timingSafeEqual(sha256(Buffer.from(value, 'utf8')), this.cookieDigest);
  }

  /** True when the request carries the token (header) or, for reads, the page cookie. */
  authorized(req: http.IncomingMessage): boolean {
    const bearer = bearerToken(req.headers.authorization);
    if (bearer !== null) return this.tokenMatches(bearer);
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') return false;
    const cookie = readCookie(req.headers.cookie, COOKIE_NAME);
    return cookie !== null && this.cookieMatches(cookie);
  }

  /** The Set-Cookie header value for a browser that presented the token. */
  setCookieHeader(): string {
    return `${COOKIE_NAME}=${this.cookieValue}; Path=/; HttpOnly; SameSite=Strict`;
  }
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ \t]+(\S.*?)[ \t]*$/i.exec(header);
  return m ? m[1] : '';
}

export function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}
