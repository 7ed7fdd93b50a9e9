// The ZK TerminalDriver: dials a ZK terminal (TCP 4370 by default), CONNECT and
// AUTH with the comm key, reads the device info, registers for EF_ENROLLUSER,
// reads the user table once (the uid map and the baseline for change
// detection) and hands back a ZkSession. Reconnecting is the caller's (the
// terminal manager's) business, as for every driver.
//
// The comm key of a ZK terminal is a number (0..4294967295, 0 = none); the key
// a DialTarget carries is the key file's bytes: its digits, surrounding
// whitespace ignored (parseZkPassword).
import type { Logger } from 'pino';
import { DriverError, type DeviceSession, type DialTarget, type TerminalDriver } from '../../sync/ports.js';
import { ZkClient, ZkError } from './client.js';
import { EventFlag, ZK_DEFAULT_PORT } from './constants.js';
import { PROTOCOL, ZkSession, zkReason, type ZkDriverMemory } from './session.js';
import { ZkChangeTracker } from './tracker.js';

export const DEFAULT_ZK_POLL_SEC = 30;

export interface ZkDriverOptions {
  /** read and diff each terminal's user table this often, seconds (--zk-poll-sec; default 30); 0 = only on EF_ENROLLUSER and the engine's reads */
  pollSec?: number;
  /** longest wait for any frame of a reply, ms (default 10000) */
  requestTimeoutMs?: number;
  /** give up a connection attempt after this long, ms (default requestTimeoutMs) */
  connectTimeoutMs?: number;
  log?: Logger;
}

/** The ZK comm key in a key file: digits (0..4294967295), surrounding whitespace ignored; an empty file means no key (0). */
export function parseZkPassword(raw: Buffer | string, what = 'ZK comm key'): number {
  const text = (typeof raw === 'string' ? raw : raw.toString('latin1')).trim();
  if (text === '') return 0;
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffff_ffff) throw new Error(`${what} must be the terminal's numeric comm key (0..4294967295, digits only)`);
  return Number(text);
}

export function zkDriver(o: ZkDriverOptions = {}): TerminalDriver & { readonly memory: ZkDriverMemory } {
  const memory: ZkDriverMemory = { tracker: new ZkChangeTracker(), extras: new Map() };
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  const pollMs = Math.round((o.pollSec ?? DEFAULT_ZK_POLL_SEC) * 1000);
  return {
    protocol: PROTOCOL,
    defaultPort: ZK_DEFAULT_PORT,
    memory,
    async dial(target: DialTarget): Promise<DeviceSession> {
      const id = target.terminalId;
      let password: number;
      try {
        password = parseZkPassword(target.key, `the comm key of ZK terminal ${id}`);
      } catch (e) {
        throw new DriverError('invalid', (e as Error).message);
      }
      if (target.signal?.aborted) throw new DriverError('transport', `dialling ZK terminal ${id}: aborted`);
      let client: ZkClient;
      try {
        client = await ZkClient.connect({ host: target.host, port: target.port, password, timeoutMs, connectTimeoutMs: o.connectTimeoutMs ?? timeoutMs, logger: o.log });
      } catch (e) {
        if (e instanceof ZkError && e.code === 'UNAUTHORIZED') throw new DriverError('invalid', `ZK terminal ${id} at ${target.host}:${target.port} refused the comm key`);
        throw new DriverError('transport', `cannot reach ZK terminal ${id} at ${target.host}:${target.port}: ${(e as Error).message}`);
      }
      const onAbort = () => client.destroy();
      target.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const info = await client.deviceInfo();
        await client.registerEvents(EventFlag.ENROLLUSER);
        const session = new ZkSession({ terminalId: id, remote: `${target.host}:${target.port}`, client, info, memory, pollMs, log: o.log?.child({ terminal: id }) });
        await session.start();
        return session;
      } catch (e) {
        client.destroy();
        const d = zkReason(e);
        throw new DriverError(d.reason === 'invalid' ? 'invalid' : 'transport', `ZK terminal ${id} at ${target.host}:${target.port}: ${d.message}`);
      } finally {
        target.signal?.removeEventListener('abort', onAbort);
      }
    },
  };
}
