// Who may talk to the admin API from a browser, decided before any route runs.
//
// Two attacks a web page can mount against an admin API on a private address,
// and what stops each:
//
// - Cross-site request forgery: a page on another origin sends a "simple"
//   request (POST with Content-Type text/plain, no preflight) to the admin
//   address. The browser sends it, cookies or not; only the answer is hidden.
//   So every state-changing request must (1) come from the admin address
//   itself: its Origin, or without Origin its Sec-Fetch-Site / Referer, must
//   not name another origin; and (2) carry a JSON body declared as
//   application/json, which a page can send cross-origin only after a CORS
//   preflight that this server never grants.
// - DNS rebinding: the page's own host name is re-pointed at the admin address,
//   so the browser thinks the requests are same-origin and lets the page read
//   the answers. The Host header still carries the attacker's name: only the
//   names the admin address stands for are accepted, on every request.
//
// Requests without any of these headers (curl, the CLI, scripts) are not from
// a browser page and pass the origin check; they still need the token.
import type http from 'node:http';
import { isIP } from 'node:net';
import os from 'node:os';

/** Methods that change nothing; every other method is checked as a change. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface HostPolicyOptions {
  /** the listen host as configured (an address or a name) */
  listenHost: string;
  /** the port actually bound */
  port: number;
  /** extra names (reverse proxies): "NAME" (any port) or "NAME:PORT" */
  extraHosts?: readonly string[];
  /** the machine's names and addresses (tests inject them); default from node:os */
  machine?: { hostnames: string[]; addresses: string[] };
}

const WILDCARD = new Set(['0.0.0.0', '::', '[::]', '']);
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The machine's host name(s) and interface addresses. */
export function machineIdentity(): { hostnames: string[]; addresses: string[] } {
  const hostnames = new Set<string>();
  const h = os.hostname();
  if (h) {
    hostnames.add(h);
    hostnames.add(h.split('.')[0]);
  }
  const addresses: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) addresses.push(a.address.replace(/%.*$/, ''));
  }
  return { hostnames: [...hostnames], addresses };
}

/**
 * A Host header value split into a lower-case name (IPv6 without brackets) and
 * a port (null when absent). Null when it is not a plausible host[:port].
 */
export function parseHostHeader(value: string): { name: string; port: number | null } | null {
  const v = value.trim().toLowerCase();
  let name: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(v);
  if (v6) {
    name = v6[1];
    portText = v6[2];
  } else {
    const m = /^([a-z0-9._-]{1,253})(?::(\d{1,5}))?$/.exec(v);
    if (!m) return null;
    name = m[1].replace(/\.$/, '');
    portText = m[2];
  }
  const port = portText === undefined ? null : Number(portText);
  if (port !== null && port > 65535) return null;
  return { name, port };
}

/**
 * The Host names a request to the admin address may carry. For a listener on a
 * wildcard address that is every name and address of the machine; otherwise the
 * listen host itself (and the loopback names when it is a loopback address).
 * The port must be the bound port, except for extra names given without one.
 */
export class HostPolicy {
  /** names accepted with the bound port (or no port when it is 80) */
  private readonly names = new Set<string>();
  /** names accepted with any port (extra names given without a port) */
  private readonly anyPort = new Set<string>();
  /** extra NAME:PORT pairs */
  private readonly pairs = new Set<string>();
  readonly port: number;

  constructor(o: HostPolicyOptions) {
    this.port = o.port;
    const host = o.listenHost.toLowerCase().replace(/^\[(.*)\]$/, '$1');
    if (WILDCARD.has(host)) {
      const m = o.machine ?? machineIdentity();
      for (const n of [...m.hostnames, ...m.addresses, ...LOOPBACK_NAMES]) this.names.add(n.toLowerCase());
    } else {
      this.names.add(host);
      if (isLoopback(host)) for (const n of LOOPBACK_NAMES) this.names.add(n);
    }
    for (const raw of o.extraHosts ?? []) {
      const p = parseHostHeader(raw);
      if (!p) continue;
      if (p.port === null) this.anyPort.add(p.name);
      else this.pairs.add(`${p.name}|${p.port}`);
    }
  }

  /** True when a Host header value names the admin address. */
  allows(hostHeader: string | undefined): boolean {
    if (hostHeader === undefined) return false;
    const p = parseHostHeader(hostHeader);
    if (!p) return false;
    if (this.anyPort.has(p.name)) return true;
    if (p.port !== null && this.pairs.has(`${p.name}|${p.port}`)) return true;
    if (!this.names.has(p.name)) return false;
    return p.port === this.port || (p.port === null && this.port === 80);
  }

  /** The accepted names, for the log line at start-up. */
  describe(): string[] {
    const hostPort = (n: string) => (isIP(n) === 6 ? `[${n}]:${this.port}` : `${n}:${this.port}`);
    return [...[...this.names].map(hostPort), ...this.anyPort, ...[...this.pairs].map((p) => p.replace('|', ':'))];
  }
}

/**
 * Why a state-changing request is refused as cross-site, or null when it may
 * proceed. The request's Host has already been checked by HostPolicy. An
 * origin is the admin address itself when its host is the request's Host, or
 * (`isAdminHost`) another name of the admin address: a TLS proxy named with
 * --admin-host that passes the request on under the listen address.
 */
export function crossSiteProblem(req: http.IncomingMessage, isAdminHost: (host: string) => boolean = () => false): string | null {
  const host = req.headers.host ?? '';
  const sameOrigin = (origin: string): boolean => {
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      return false;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
    return u.host.toLowerCase() === host.toLowerCase() || isAdminHost(u.host);
  };
  const origin = req.headers.origin;
  if (typeof origin === 'string') {
    if (!sameOrigin(origin)) return `requests that change something must come from the admin address itself, not from ${JSON.stringify(origin.slice(0, 200))}`;
    return null;
  }
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') {
    return `requests that change something must come from the admin address itself (Sec-Fetch-Site: ${site.slice(0, 40)})`;
  }
  const referer = req.headers.referer;
  if (typeof referer === 'string' && referer !== '') {
    let refOrigin: string;
    try {
      refOrigin = new URL(referer).origin;
    } catch {
      return 'requests that change something must come from the admin address itself (unreadable Referer)';
    }
    if (!sameOrigin(refOrigin)) return `requests that change something must come from the admin address itself, not from ${JSON.stringify(refOrigin.slice(0, 200))}`;
  }
  return null;
}

/**
 * Why a state-changing request's body is refused (415), or null. POST, PUT and
 * PATCH must declare application/json, even with an empty body (a form or a
 * text/plain request is what another site's page can send without a
 * preflight); a DELETE may have no body, but a body it has must be JSON.
 */
export function contentTypeProblem(req: http.IncomingMessage): string | null {
  const method = req.method ?? 'GET';
  if (SAFE_METHODS.has(method)) return null;
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  if (method === 'DELETE' && !hasBody && type === '') return null;
  if (type !== 'application/json') {
    return `${method} requests must send Content-Type: application/json${type ? ` (got ${JSON.stringify(type.slice(0, 100))})` : ''}`;
  }
  return null;
}
