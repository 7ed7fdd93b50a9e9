// Simulator: many simulated terminals in one process, each with its own device
// ID, user store, event log and listener (or dialler), plus the optional
// control API and state persistence.
import pino, { type Logger } from 'pino';
import { CAP_TLS, MIN_COMM_KEY_BYTES } from '../codec/index.js';
import { startControlServer, type ControlServer } from './control.js';
import { TerminalDialler, TerminalListener, type Endpoint, type ReconnectOptions, type SimTlsOptions } from './endpoint.js';
import { ensureStateDir, TerminalStateFile } from './state.js';
import { SimTerminal } from './terminal.js';
import { resolveTiming, type TimingModel } from './timing.js';

export const DEFAULT_DEVICE_ID_BASE = 1000;

export interface HostPort {
  host: string;
  port: number;
}

export interface SimulatorOptions {
  /** number of terminals (1..10000) */
  terminals: number;
  /** listen mode: address the terminals listen on (default 127.0.0.1) */
  listenHost?: string;
  /** listen mode: terminal i (1-based) listens on basePort + i - 1; 0 = an ephemeral port each (default 0) */
  basePort?: number;
  /** dial mode: the terminals dial this server instead of listening ("host:port" or {host, port}) */
  dial?: HostPort | string;
  /** the comm key shared with the server (at least 16 bytes) */
  commKey: Buffer;
  /** idle timeout fallback when the server announces heartbeatSec 0 (default 30) */
  heartbeatSec?: number;
  /** handshake deadline in ms (default 10000) */
  handshakeMs?: number;
  /** latency model (default: roughly a real terminal; ZERO_TIMING in tests) */
  timing?: Partial<TimingModel>;
  /** start the control API on this address ("host:port", {host, port} or a port on 127.0.0.1) */
  control?: HostPort | string | number;
  /** directory holding one state file per terminal; loaded at start, saved (debounced) on change */
  state?: string;
  stateDebounceMs?: number;
  userCapacity?: number;
  logCapacity?: number;
  maxUsersPerBatch?: number;
  /** terminal i (1-based) gets device ID deviceIdBase + i (default 1000 -> 1001, 1002, ...) */
  deviceIdBase?: number;
  /** TLS: listen mode needs cert+key; dial mode uses TLS when this is given */
  tls?: SimTlsOptions;
  /** dial mode: reconnect backoff */
  reconnect?: ReconnectOptions;
  model?: string;
  firmware?: string;
  /** the newest protocol version the terminals offer (2 = protocol 1.1, the default; 1 = behave as protocol 1.0 terminals) */
  maxVersion?: number;
  logger?: Logger;
}

export function parseHostPort(s: string, what: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new RangeError(`${what} must be HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function hostPort(v: HostPort | string | number, what: string): HostPort {
  if (typeof v === 'number') return { host: '127.0.0.1', port: v };
  if (typeof v === 'string') return parseHostPort(v, what);
  return v;
}

export class Simulator {
  readonly terminals: SimTerminal[];
  private readonly endpoints: Endpoint[] = [];
  private readonly stateFiles: TerminalStateFile[] = [];
  private control: ControlServer | undefined;
  private closing: Promise<void> | undefined;
  readonly log: Logger;

  private constructor(terminals: SimTerminal[], log: Logger) {
    this.terminals = terminals;
    this.log = log;
  }

  static async start(opts: SimulatorOptions): Promise<Simulator> {
    const n = opts.terminals;
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new RangeError('terminals must be 1..10000');
    if (!Buffer.isBuffer(opts.commKey) || opts.commKey.length < MIN_COMM_KEY_BYTES)
      throw new RangeError(`the comm key must be at least ${MIN_COMM_KEY_BYTES} bytes`);
    const base = opts.deviceIdBase ?? DEFAULT_DEVICE_ID_BASE;
    if (!Number.isInteger(base) || base < 0 || base + n > 0xffffffff) throw new RangeError('deviceIdBase + terminals must fit a u32');
    const basePort = opts.basePort ?? 0;
    if (!Number.isInteger(basePort) || basePort < 0 || (basePort > 0 && basePort + n - 1 > 65535))
      throw new RangeError('basePort + terminals - 1 must be a TCP port');
    const timing = resolveTiming(opts.timing);
    const log = opts.logger ?? pino({ level: 'silent' });
    const dial = opts.dial !== undefined ? hostPort(opts.dial, 'dial') : undefined;
    if (!dial && opts.tls && (!opts.tls.cert || !opts.tls.key)) throw new RangeError('listening terminals need a TLS certificate and key');

    const terminals: SimTerminal[] = [];
    for (let i = 1; i <= n; i++) {
      const t = new SimTerminal({
        index: i,
        deviceId: base + i,
        userCapacity: opts.userCapacity,
        logCapacity: opts.logCapacity,
        maxUsersPerBatch: opts.maxUsersPerBatch,
        timing,
        model: opts.model,
        firmware: opts.firmware,
        maxVersion: opts.maxVersion,
        logger: log,
      });
      if (opts.tls) t.capabilities |= CAP_TLS;
      terminals.push(t);
    }
    const sim = new Simulator(terminals, log);
    try {
      if (opts.state) {
        ensureStateDir(opts.state);
        for (const t of terminals) {
          const f = new TerminalStateFile(t, opts.state, opts.stateDebounceMs, log);
          if (f.load()) log.info({ terminal: t.index, users: t.userCount, lastEventId: t.ring.lastEventId }, 'terminal state loaded');
          sim.stateFiles.push(f);
        }
      }
      for (let i = 0; i < n; i++) {
        const ep = { terminal: terminals[i], commKey: opts.commKey, heartbeatSec: opts.heartbeatSec, handshakeMs: opts.handshakeMs, tls: opts.tls, logger: log };
        if (dial) {
          const d = new TerminalDialler(ep, dial.host, dial.port, opts.reconnect);
          sim.endpoints.push(d);
          d.start();
        } else {
          const l = new TerminalListener(ep, opts.listenHost ?? '127.0.0.1', basePort === 0 ? 0 : basePort + i);
          sim.endpoints.push(l);
          try {
            await l.start();
          } catch (e) {
            throw new Error(`terminal ${i + 1} cannot listen on ${opts.listenHost ?? '127.0.0.1'}:${basePort === 0 ? 0 : basePort + i}: ${(e as Error).message}`);
          }
        }
      }
      if (opts.control !== undefined) {
        const c = hostPort(opts.control, 'control');
        sim.control = await startControlServer({ terminals, portOf: (i) => sim.endpoints[i]?.port }, c.host, c.port, log);
      }
    } catch (e) {
      await sim.close();
      throw e;
    }
    log.info(
      dial ? { terminals: n, dial: `${dial.host}:${dial.port}` } : { terminals: n, ports: sim.ports() },
      'simulator started',
    );
    return sim;
  }

  /** The listening port of every terminal, in order (empty in dial mode). */
  ports(): number[] {
    return this.endpoints.map((e) => e.port).filter((p): p is number => p !== undefined);
  }

  /** The control API's port, or undefined when it is not running. */
  get controlPort(): number | undefined {
    return this.control?.port;
  }

  /** Terminal by its 1-based id. */
  terminal(id: number): SimTerminal | undefined {
    return this.terminals[id - 1];
  }

  /** Orderly shutdown: BYE on every session, listeners closed, state saved. */
  close(): Promise<void> {
    if (!this.closing) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.control?.close();
    await Promise.all(this.endpoints.map((e) => e.close()));
    await Promise.all(this.stateFiles.map((f) => f.close()));
    for (const t of this.terminals) t.dispose();
    this.log.info('simulator stopped');
  }
}
