// How a simulated terminal reaches a server: it listens (the server dials it) or
// it dials (reconnecting with backoff while the server is away). Either way each
// connection becomes a SimSession. The "refuse" fault closes the listener (the
// server sees ECONNREFUSED) or stops the dialler for its duration.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { SimSession } from './session.js';
import type { SimTerminal } from './terminal.js';

export interface SimTlsOptions {
  /** PEM certificate chain: the terminal's server certificate (listen) or client certificate (dial, mutual TLS) */
  cert?: string | Buffer;
  /** PEM private key for `cert` */
  key?: string | Buffer;
  /** PEM CA(s) to trust: the server's (dial) or the clients' (listen with requestCert) */
  ca?: string | Buffer;
  /** dial: verify the server's certificate (default true) */
  rejectUnauthorized?: boolean;
  /** dial: SNI / name to verify (default: the dialled host) */
  servername?: string;
  /** listen: ask the server (TLS client) for a certificate and require it to be signed by `ca` */
  requestCert?: boolean;
}

export interface EndpointOptions {
  terminal: SimTerminal;
  commKey: Buffer;
  heartbeatSec?: number;
  handshakeMs?: number;
  tls?: SimTlsOptions;
  logger?: Logger;
}

export interface Endpoint {
  /** the listening port (listen mode), or undefined */
  readonly port: number | undefined;
  close(): Promise<void>;
}

function remoteOf(s: net.Socket): string {
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
}

/** The terminal listens; the server dials it. */
/** The terminal side of one connection, whichever side dialled. */
function openSession(o: EndpointOptions, socket: net.Socket, remote: string): SimSession {
  return new SimSession({ terminal: o.terminal, socket, commKey: o.commKey, heartbeatSec: o.heartbeatSec, handshakeMs: o.handshakeMs, logger: o.logger, remote });
}

export class TerminalListener implements Endpoint {
  private server: net.Server | undefined;
  private _port: number;
  private closing = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger | undefined;
  private readonly onRefuse = (until: number) => this.refuseUntil(until);

  constructor(
    private readonly opts: EndpointOptions,
    private readonly host: string,
    port: number,
  ) {
    this._port = port;
    this.log = opts.logger?.child({ terminal: opts.terminal.index, deviceId: opts.terminal.deviceId });
    opts.terminal.on('refuse', this.onRefuse);
  }

  get port(): number {
    return this._port;
  }

  private makeServer(): net.Server {
    const onSocket = (socket: net.Socket) => {
      if (this.closing || this.opts.terminal.refusing) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      openSession(this.opts, socket, remoteOf(socket));
    };
    const t = this.opts.tls;
    if (t) {
      if (!t.cert || !t.key) throw new Error('a listening TLS terminal needs a certificate and a key');
      const srv = tls.createServer(
        { cert: t.cert, key: t.key, ca: t.ca, requestCert: t.requestCert ?? false, rejectUnauthorized: t.requestCert ?? false },
        onSocket,
      );
      srv.on('tlsClientError', (err) => this.log?.warn({ err: err.message }, 'TLS handshake with a server failed'));
      return srv;
    }
    return net.createServer(onSocket);
  }

  /** Starts listening; resolves with the port. */
  async start(): Promise<number> {
    const srv = this.makeServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: this.host, port: this._port, exclusive: true }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.log?.error({ err: err.message }, 'listener error'));
    this.server = srv;
    this._port = (srv.address() as net.AddressInfo).port;
    return this._port;
  }

  private refuseUntil(until: number): void {
    if (this.closing) return;
    if (until <= Date.now() && this.server) return; // not refusing (or a refusal lifted while open)
    if (this.server) {
      this.log?.info({ ms: until - Date.now() }, 'fault: refusing connections (listener closed)');
      this.server.close();
      this.server = undefined;
    }
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => void this.reopen(), Math.max(0, until - Date.now()));
    this.reopenTimer.unref();
  }

  private async reopen(): Promise<void> {
    this.reopenTimer = undefined;
    if (this.closing || this.server) return;
    const left = this.opts.terminal.refuseUntil - Date.now();
    if (left > 0) {
      this.reopenTimer = setTimeout(() => void this.reopen(), left);
      this.reopenTimer.unref();
      return;
    }
    try {
      await this.start();
      this.log?.info({ port: this._port }, 'accepting connections again');
    } catch (e) {
      this.log?.warn({ err: (e as Error).message, port: this._port }, 'cannot listen again yet; retrying');
      this.reopenTimer = setTimeout(() => void this.reopen(), 200);
      this.reopenTimer.unref();
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    this.opts.terminal.off('refuse', this.onRefuse);
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    const srv = this.server;
    this.server = undefined;
    const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
    await Promise.all([...this.opts.terminal.sessions].map((s) => (s instanceof SimSession ? s.bye() : s.destroy('simulator closing'))));
    await closed;
  }
}

export interface ReconnectOptions {
  /** first wait after a failed or lost connection (default 250 ms) */
  minMs?: number;
  /** longest wait (default 10 s) */
  maxMs?: number;
}

/** The terminal dials the server and keeps dialling (with backoff) while it is away. */
export class TerminalDialler implements Endpoint {
  readonly port = undefined;
  private stopped = false;
  private current: SimSession | undefined;
  private connecting: net.Socket | undefined;
  private wakeUp: (() => void) | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly log: Logger | undefined;
  private readonly minMs: number;
  private readonly maxMs: number;
  /** a refusal set or lifted: re-evaluate at once */
  private readonly onRefuse = () => this.wakeUp?.();

  constructor(
    private readonly opts: EndpointOptions,
    private readonly host: string,
    private readonly serverPort: number,
    reconnect: ReconnectOptions = {},
  ) {
    this.minMs = reconnect.minMs ?? 250;
    this.maxMs = Math.max(this.minMs, reconnect.maxMs ?? 10_000);
    this.log = opts.logger?.child({ terminal: opts.terminal.index, deviceId: opts.terminal.deviceId, server: `${host}:${serverPort}` });
  }

  start(): void {
    this.opts.terminal.on('refuse', this.onRefuse);
    this.loopDone = this.loop();
  }

  private async sleep(ms: number): Promise<void> {
    if (this.stopped || ms <= 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = done;
    });
    this.wakeUp = undefined;
  }

  private async loop(): Promise<void> {
    let backoff = this.minMs;
    while (!this.stopped) {
      const refuseLeft = this.opts.terminal.refuseUntil - Date.now();
      if (refuseLeft > 0) {
        await this.sleep(refuseLeft);
        continue;
      }
      const socket = await this.connect();
      if (this.stopped) {
        socket?.destroy();
        break;
      }
      let authenticated = false;
      if (socket) {
        const session = openSession(this.opts, socket, `${this.host}:${this.serverPort}`);
        this.current = session;
        const reason = await session.closed;
        this.current = undefined;
        authenticated = session.everAuthenticated;
        this.log?.debug({ reason }, 'connection to the server ended');
      }
      if (this.stopped) break;
      backoff = authenticated ? this.minMs : Math.min(this.maxMs, backoff * 2);
      const wait = Math.round((authenticated ? this.minMs : backoff) * (0.8 + Math.random() * 0.4));
      await this.sleep(wait);
    }
  }

  /** One connection attempt; resolves with the connected socket or undefined. */
  private connect(): Promise<net.Socket | undefined> {
    return new Promise((resolve) => {
      const t = this.opts.tls;
      let socket: net.Socket;
      const ready = () => {
        cleanup();
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        resolve(socket);
      };
      const fail = (err: Error) => {
        cleanup();
        this.log?.debug({ err: err.message }, 'cannot reach the server');
        socket.destroy();
        resolve(undefined);
      };
      const closed = () => fail(new Error('connection attempt aborted'));
      const cleanup = () => {
        this.connecting = undefined;
        socket.off('error', fail);
        socket.off('close', closed);
        socket.setTimeout(0);
      };
      if (t) {
        socket = tls.connect({
          host: this.host,
          port: this.serverPort,
          ca: t.ca,
          cert: t.cert,
          key: t.key,
          rejectUnauthorized: t.rejectUnauthorized ?? true,
          servername: t.servername ?? (net.isIP(this.host) ? undefined : this.host),
        });
        socket.once('secureConnect', ready);
      } else {
        socket = net.connect({ host: this.host, port: this.serverPort });
        socket.once('connect', ready);
      }
      this.connecting = socket;
      socket.once('error', fail);
      socket.once('close', closed);
      socket.setTimeout(10_000, () => fail(new Error('connect timeout')));
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.opts.terminal.off('refuse', this.onRefuse);
    this.wakeUp?.();
    this.connecting?.destroy();
    if (this.current) await this.current.bye();
    await this.loopDone;
  }
}
