// One TLS gRPC connection to a device gateway, shared by every terminal
// behind it: promise-returning calls with a deadline, and the gateway's stream
// of connection changes (SubscribeStatus) kept open while any terminal needs
// it. When that stream breaks (the gateway restarted, or the network), every
// terminal's session ends (each is redialled by the terminal manager, which
// reopens the stream); the gateway forgets the connections it was told to
// make, so each dial tells it again.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { DriverError, type RefusalReason } from '../../sync/ports.js';
import { isConnected } from './constants.js';
import { gsdkServices, type AcceptFilter, type AsyncConnectInfo, type DeviceInfo, type StatusChange } from './proto.js';

/**
 * The largest answer taken from the gateway, bytes. The largest answers are
 * GetList (one UserHdr per user, at most about 50 bytes with a 32-byte ID: 32 MiB
 * holds the list of a terminal with over 600,000 users) and Get of
 * GSDK_MAX_BATCH users (each at most about 25 KB without faces). A bigger answer
 * fails that call ('unreadable'), not the process.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/**
 * Terminals whose last status is kept (a gateway serves hundreds, a big one
 * thousands): a gateway that reports ever new device IDs cannot grow the map
 * past this. Past it, a new ID's changes are still passed on ('status'), not kept.
 */
export const MAX_KNOWN_TERMINALS = 65_536;

export interface GatewayOptions {
  host: string;
  port: number;
  /** the gateway's root CA (PEM) */
  ca: Buffer;
  /** deadline of one call, ms */
  requestTimeoutMs: number;
  /** largest answer taken, bytes (default DEFAULT_MAX_MESSAGE_BYTES) */
  maxMessageBytes?: number;
  log?: Logger;
  /** TLS name to check the gateway's certificate against, when not its host */
  serverName?: string;
}

/** A gRPC failure as the port's reason. */
export function grpcReason(code: number | undefined): RefusalReason {
  switch (code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.CANCELLED:
      return 'transport';
    case grpc.status.NOT_FOUND:
      return 'not-found';
    case grpc.status.ALREADY_EXISTS:
      return 'duplicate-credential';
    case grpc.status.RESOURCE_EXHAUSTED:
      return 'full';
    case grpc.status.ABORTED:
      return 'busy';
    case grpc.status.DATA_LOSS:
      return 'unreadable';
    default:
      return 'invalid';
  }
}

export function isGrpcError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as grpc.ServiceError).code === 'number';
}

/** An answer bigger than the client takes (grpc-js says RESOURCE_EXHAUSTED, which from the gateway itself means a full terminal). */
export function isTooLarge(e: unknown): boolean {
  return isGrpcError(e) && e.code === grpc.status.RESOURCE_EXHAUSTED && /larger than max/i.test(e.details || e.message);
}

/** A gRPC failure's reason for the port. */
export function reasonOf(e: grpc.ServiceError): RefusalReason {
  return isTooLarge(e) ? 'unreadable' : grpcReason(e.code);
}

export function asDriverError(e: unknown, what: string): DriverError {
  if (e instanceof DriverError) return e;
  if (isGrpcError(e)) return new DriverError(reasonOf(e), `${what}: ${e.details || e.message} (gRPC ${grpc.status[e.code] ?? e.code})`);
  return new DriverError('transport', `${what}: ${(e as Error).message}`);
}

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

/**
 * Events: 'status' (StatusChange) for every connection change the gateway
 * reports, and 'lost' (reason) once when the status stream breaks; a later
 * call to watchStatus() opens a new one.
 */
export class GatewayClient extends EventEmitter {
  readonly address: string;
  readonly connect: grpc.Client;
  readonly event: grpc.Client;
  readonly user: grpc.Client;
  readonly device: grpc.Client;
  private readonly channelCreds: grpc.ChannelCredentials;
  /** the last status the gateway reported of each terminal */
  readonly status = new Map<number, number>();
  private statusCall: grpc.ClientReadableStream<StatusChange> | undefined;
  private statusReady: Promise<void> | undefined;
  private closed = false;

  constructor(readonly o: GatewayOptions) {
    super();
    this.setMaxListeners(0);
    this.address = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
    this.channelCreds = grpc.credentials.createSsl(o.ca);
    const s = gsdkServices();
    const opts: grpc.ClientOptions = {
      'grpc.max_receive_message_length': o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      // a restarted gateway is found again quickly
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
      // a dead connection is found by the streams' keepalive; gRPC servers refuse
      // pings more often than every 5 minutes by default (GOAWAY too_many_pings)
      'grpc.keepalive_time_ms': 300_000,
      'grpc.keepalive_timeout_ms': 20_000,
      ...(o.serverName ? { 'grpc.ssl_target_name_override': o.serverName, 'grpc.default_authority': o.serverName } : {}),
    };
    this.connect = new s.Connect(this.address, this.channelCreds, opts);
    // the other services share the first client's channel
    const shared = { ...opts, channelOverride: this.connect.getChannel() };
    this.event = new s.Event(this.address, this.channelCreds, shared);
    this.user = new s.User(this.address, this.channelCreds, shared);
    this.device = new s.Device(this.address, this.channelCreds, shared);
  }

  /** One unary call with the deadline; rejects with the gRPC error. */
  call<T>(client: grpc.Client, method: string, req: unknown, timeoutMs = this.o.requestTimeoutMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fn = (client as unknown as Record<string, Unary>)[method];
      if (typeof fn !== 'function') return reject(new Error(`no gateway method ${method}`));
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, res) => (e ? reject(e) : resolve(res as T)));
    });
  }

  /**
   * Opens the status stream unless it is open, and learns every terminal's
   * state (GetDeviceList) once it is: resolves when both are done.
   */
  watchStatus(): Promise<void> {
    if (this.closed) return Promise.reject(new DriverError('transport', `gateway ${this.address}: client closed`));
    if (this.statusReady) return this.statusReady;
    const call = (this.connect as unknown as { SubscribeStatus(req: unknown): grpc.ClientReadableStream<StatusChange> }).SubscribeStatus({ queueSize: 256 });
    this.statusCall = call;
    let lost = false;
    const lose = (why: string) => {
      if (lost) return;
      lost = true;
      if (this.statusCall === call) {
        this.statusCall = undefined;
        this.statusReady = undefined;
        this.status.clear();
      }
      this.o.log?.warn({ gateway: this.address, why }, 'device gateway: status stream ended');
      this.emit('lost', why);
    };
    call.on('data', (c: StatusChange) => {
      this.remember(c.deviceID, c.status);
      this.emit('status', c);
    });
    call.on('error', (e: grpc.ServiceError) => lose(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`));
    call.on('end', () => lose('the gateway ended the status stream'));
    const ready = this.call<{ deviceInfos: DeviceInfo[] }>(this.connect, 'GetDeviceList', {}).then(
      (r) => {
        for (const d of r.deviceInfos) if (!this.status.has(d.deviceID) || isConnected(d.status)) this.remember(d.deviceID, d.status);
        this.o.log?.info({ gateway: this.address, terminals: r.deviceInfos.length, connected: r.deviceInfos.filter((d) => isConnected(d.status)).length }, 'device gateway: status stream open');
      },
      (e) => {
        call.cancel();
        lose((e as Error).message);
        throw asDriverError(e, `device gateway ${this.address}`);
      },
    );
    this.statusReady = ready;
    return ready;
  }

  private remember(deviceID: number, status: number): void {
    if (this.status.size >= MAX_KNOWN_TERMINALS && !this.status.has(deviceID)) return;
    this.status.set(deviceID, status);
  }

  /** Tells the gateway to keep connecting to a terminal at an address (server-to-device mode). */
  async addAsync(info: AsyncConnectInfo): Promise<void> {
    try {
      await this.call(this.connect, 'AddAsyncConnection', { connectInfos: [info] });
    } catch (e) {
      // already known to the gateway: nothing to do
      if (isGrpcError(e) && e.code === grpc.status.ALREADY_EXISTS) return;
      throw e;
    }
  }

  private filterLock: Promise<unknown> = Promise.resolve();

  /**
   * Adds a terminal to the gateway's accept filter (device-to-server mode): the
   * union with what is there. One read-modify-write at a time: terminals dialled
   * together must not drop each other's IDs.
   */
  accept(deviceID: number): Promise<void> {
    const next = this.filterLock.then(() => this.doAccept(deviceID));
    this.filterLock = next.catch(() => undefined);
    return next;
  }

  private async doAccept(deviceID: number): Promise<void> {
    const r = await this.call<{ filter: AcceptFilter | null }>(this.connect, 'GetAcceptFilter', {});
    const f = r.filter ?? { allowAll: false, deviceIDs: [], IPAddrs: [], subnetMasks: [] };
    if (f.allowAll || f.deviceIDs.includes(deviceID)) return;
    await this.call(this.connect, 'SetAcceptFilter', { filter: { ...f, deviceIDs: [...f.deviceIDs, deviceID] } });
  }

  /** Tells the gateway to stop connecting to a terminal it was told the address of (AddAsyncConnection undone). */
  async deleteAsync(deviceID: number): Promise<void> {
    try {
      await this.call(this.connect, 'DeleteAsyncConnection', { deviceIDs: [deviceID] });
    } catch (e) {
      // the gateway does not know it (it restarted meanwhile): nothing to undo
      if (isGrpcError(e) && e.code === grpc.status.NOT_FOUND) return;
      throw e;
    }
  }

  /**
   * Takes a terminal out of the gateway's accept filter (the rest stays), one
   * read-modify-write at a time like accept(). Returns false when the filter
   * lets every terminal in (allowAll): set by someone else, left as it is.
   */
  unaccept(deviceID: number): Promise<boolean> {
    const next = this.filterLock.then(() => this.doUnaccept(deviceID));
    this.filterLock = next.catch(() => undefined);
    return next;
  }

  private async doUnaccept(deviceID: number): Promise<boolean> {
    const r = await this.call<{ filter: AcceptFilter | null }>(this.connect, 'GetAcceptFilter', {});
    const f = r.filter ?? { allowAll: false, deviceIDs: [], IPAddrs: [], subnetMasks: [] };
    if (f.deviceIDs.includes(deviceID)) await this.call(this.connect, 'SetAcceptFilter', { filter: { ...f, deviceIDs: f.deviceIDs.filter((d) => d !== deviceID) } });
    return !f.allowAll;
  }

  /**
   * Waits until the gateway reports the terminal connected (TCP or TLS), at most
   * `timeoutMs`; rejects with 'transport' otherwise or when the status stream breaks.
   */
  waitConnected(deviceID: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (isConnected(this.status.get(deviceID) ?? 0)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (e?: Error) => {
        clearTimeout(timer);
        this.off('status', onStatus);
        this.off('lost', onLost);
        signal?.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve();
      };
      const onStatus = (c: StatusChange) => {
        if (c.deviceID === deviceID && isConnected(c.status)) done();
      };
      const onLost = (why: string) => done(new DriverError('transport', `device gateway ${this.address}: ${why}`));
      const onAbort = () => done(new DriverError('transport', `terminal ${deviceID}: dialling aborted`));
      const timer = setTimeout(() => done(new DriverError('transport', `terminal ${deviceID} is not connected to the device gateway ${this.address} (status ${this.status.get(deviceID) ?? 'unknown'})`)), timeoutMs);
      this.on('status', onStatus);
      this.on('lost', onLost);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.statusCall?.cancel();
    for (const c of [this.event, this.user, this.device, this.connect]) c.close();
  }
}
