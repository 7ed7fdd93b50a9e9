// `termsync sim --protocol zk`: simulated ZK terminals, each listening on its own
// port (terminal i on PORT + i - 1), plus the control API (control.ts).
import net from 'node:net';
import pino, { type Logger } from 'pino';
import { ZkSimSession } from './session.js';
import { ZkSimTerminal, type ZkSimTerminalOptions, type ZkTimingModel } from './device.js';
import { startZkControlServer, type ZkControlServer } from './control.js';

export interface ZkSimulatorOptions {
  terminals: number;
  listenHost?: string;
  /** terminal i (1-based) listens on basePort + i - 1; 0 = ephemeral ports */
  basePort?: number;
  /** comm key password of every terminal (0 = none) */
  password?: number;
  /** first uid per terminal: one value for all, or one per terminal (different uid numbering per terminal) */
  uidStart?: number | number[];
  recordSize?: 72 | 28;
  userCapacity?: number;
  fingerCapacity?: number;
  directDataMax?: number;
  attlogSize?: 12 | 32;
  timing?: Partial<ZkTimingModel>;
  control?: { host: string; port: number } | number;
  logger?: Logger;
}

class ZkListener {
  private server: net.Server | undefined;
  private port_ = 0;
  private reopen: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly terminal: ZkSimTerminal,
    private readonly host: string,
    private readonly wantPort: number,
    private readonly log: Logger,
  ) {
    terminal.on('refuse', (until: number) => this.refuseUntil(until));
  }

  get port(): number {
    return this.port_;
  }

  async start(): Promise<void> {
    const server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      new ZkSimSession(this.terminal, s, this.log);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port_ || this.wantPort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port_ = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  private refuseUntil(until: number): void {
    if (this.closing) return;
    const s = this.server;
    this.server = undefined;
    s?.close();
    if (this.reopen) clearTimeout(this.reopen);
    this.reopen = setTimeout(() => {
      this.reopen = undefined;
      if (!this.closing && !this.server) this.start().catch((e) => this.log.error({ err: (e as Error).message }, 'zk sim: cannot listen again'));
    }, Math.max(0, until - Date.now()));
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.reopen) clearTimeout(this.reopen);
    for (const s of this.sockets) s.destroy();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

export class ZkSimulator {
  private control: ZkControlServer | undefined;
  private constructor(
    readonly terminals: ZkSimTerminal[],
    private readonly listeners: ZkListener[],
    readonly log: Logger,
  ) {}

  static async start(o: ZkSimulatorOptions): Promise<ZkSimulator> {
    const n = o.terminals;
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new RangeError('terminals must be 1..1000');
    const basePort = o.basePort ?? 0;
    if (!Number.isInteger(basePort) || basePort < 0 || (basePort > 0 && basePort + n - 1 > 65535)) throw new RangeError('basePort + terminals - 1 must be a TCP port');
    const password = o.password ?? 0;
    if (!Number.isInteger(password) || password < 0 || password > 0xffffffff) throw new RangeError('the ZK comm key must be a whole number 0..4294967295');
    const starts = Array.isArray(o.uidStart) ? o.uidStart : undefined;
    if (starts && starts.length !== n) throw new RangeError(`give one uid start for all terminals or one per terminal (${n})`);
    const log = o.logger ?? pino({ level: 'silent' });
    const terminals: ZkSimTerminal[] = [];
    for (let i = 1; i <= n; i++) {
      const opts: ZkSimTerminalOptions = {
        index: i,
        password,
        uidStart: starts ? starts[i - 1] : typeof o.uidStart === 'number' ? o.uidStart : 1,
        recordSize: o.recordSize,
        userCapacity: o.userCapacity,
        fingerCapacity: o.fingerCapacity,
        directDataMax: o.directDataMax,
        attlogSize: o.attlogSize,
        timing: o.timing,
        logger: log,
      };
      terminals.push(new ZkSimTerminal(opts));
    }
    const host = o.listenHost ?? '127.0.0.1';
    const listeners = terminals.map((t, i) => new ZkListener(t, host, basePort === 0 ? 0 : basePort + i, log));
    const sim = new ZkSimulator(terminals, listeners, log);
    try {
      for (const [i, l] of listeners.entries()) {
        try {
          await l.start();
        } catch (e) {
          throw new Error(`ZK terminal ${i + 1} cannot listen on ${host}:${basePort === 0 ? 0 : basePort + i}: ${(e as Error).message}`);
        }
      }
      if (o.control !== undefined) {
        const c = typeof o.control === 'number' ? { host: '127.0.0.1', port: o.control } : o.control;
        sim.control = await startZkControlServer({ terminals, portOf: (i) => listeners[i]?.port }, c.host, c.port, log);
      }
    } catch (e) {
      await sim.close();
      throw e;
    }
    log.info({ terminals: n, ports: sim.ports() }, 'ZK simulator started');
    return sim;
  }

  ports(): number[] {
    return this.listeners.map((l) => l.port);
  }

  get controlPort(): number | undefined {
    return this.control?.port;
  }

  terminal(id: number): ZkSimTerminal | undefined {
    return this.terminals[id - 1];
  }

  async close(): Promise<void> {
    await this.control?.close();
    await Promise.all(this.listeners.map((l) => l.close()));
  }
}
