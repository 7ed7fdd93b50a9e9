// The termsync TerminalDriver: dials a terminal (TCP, or TLS when given TLS
// options), runs the server side of the handshake and hands back a
// DeviceSession. Reconnect policy and listeners for terminals that dial in stay
// with the terminal manager, which hands accepted sessions over through
// sessionOf().
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { DEFAULT_TERMINAL_PORT } from '../../codec/index.js';
import { DriverError, type DeviceSession, type DialTarget, type TerminalDriver } from '../../sync/ports.js';
import { HandshakeError, TerminalConnection } from './connection.js';
import { ProtocolLink } from './protocol-link.js';
import { PROTOCOL, TermsyncSession } from './session.js';

export interface TermsyncDriverOptions {
  heartbeatSec: number;
  requestTimeoutMs: number;
  handshakeDeadlineMs?: number;
  /** give up a connection attempt after this long (default 10 s) */
  connectTimeoutMs?: number;
  /** dial with TLS using these options (servername, ca, cert, key, ...) */
  tls?: tls.ConnectionOptions;
  log: Logger;
  logFrames?: boolean;
}

/** The session of an authenticated termsync connection (dialled or accepted). */
export function sessionOf(conn: TerminalConnection): TermsyncSession {
  return new TermsyncSession(new ProtocolLink(conn));
}

export function termsyncDriver(o: TermsyncDriverOptions): TerminalDriver {
  return {
    protocol: PROTOCOL,
    defaultPort: DEFAULT_TERMINAL_PORT,
    async dial(target: DialTarget): Promise<DeviceSession> {
      const socket = await connect(target, o);
      try {
        const conn = await TerminalConnection.handshake({
          socket,
          keyFor: () => target.key,
          heartbeatSec: o.heartbeatSec,
          requestTimeoutMs: o.requestTimeoutMs,
          handshakeDeadlineMs: o.handshakeDeadlineMs,
          log: o.log.child({ terminal: target.terminalId }),
          logFrames: o.logFrames,
        });
        return sessionOf(conn);
      } catch (e) {
        const he = e as HandshakeError;
        const refused = he.reason === 'auth-failed' || he.reason === 'unknown-key' || he.reason === 'version';
        throw new DriverError(refused ? 'invalid' : 'transport', `handshake with terminal ${target.terminalId} failed: ${he.message}`);
      }
    },
  };
}

function connect(target: DialTarget, o: TermsyncDriverOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const { host, port, signal } = target;
    const socket = o.tls ? tls.connect({ ...o.tls, host, port }) : net.connect({ host, port });
    const fail = (why: string) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(new DriverError('transport', `cannot reach terminal ${target.terminalId} at ${host}:${port}: ${why}`));
    };
    const onAbort = () => fail('aborted');
    const timer = setTimeout(() => fail(`no connection within ${o.connectTimeoutMs ?? 10_000} ms`), o.connectTimeoutMs ?? 10_000);
    if (signal?.aborted) return fail('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (e) => fail(e.message));
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
