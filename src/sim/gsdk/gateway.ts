// A mock of Suprema's device gateway: a gRPC server over TLS built on
// termsync's own .proto subset (src/drivers/gsdk/proto), with simulated
// terminals behind it (device.ts). It follows the interface as documented:
// terminals connect when the gateway is told their address
// (AddAsyncConnection) or lets them in (SetAcceptFilter); connection changes
// stream to SubscribeStatus; EnableMonitoring + SubscribeRealtimeLog stream
// log events; GetLog reads the stored log; the user calls read and write the
// terminals. What a real gateway does beyond its documentation is not known
// here: this is the plumbing and the documented semantics, not the truth.
//
// Control for tests (in process): devices, device(id), setOnline(),
// connected(id), asyncConnectionIds(), acceptFilterIds(), and the
// faults: breakStreams() (every realtime stream ends with UNAVAILABLE),
// dropRealtime(n) (the next n realtime events are discarded, as when the
// gateway's queue is full), failNext(n) (the next n unary calls answer
// UNAVAILABLE), restart() (the server goes away and comes back on the same
// port, having forgotten its connections, filter and monitoring; the terminals
// keep their users and logs).
import * as grpc from '@grpc/grpc-js';
import { DeviceStatus } from '../../drivers/gsdk/constants.js';
import { gsdkServices } from '../../drivers/gsdk/proto.js';
import type { AcceptFilter, EventLog, StatusChange, UserInfo } from '../../drivers/gsdk/proto.js';
import { Code, GsdkSimDevice, GsdkSimError, normalizeInfo, type GsdkSimDeviceOptions } from './device.js';

export interface GsdkSimGatewayOptions {
  /** terminals behind the gateway */
  devices: GsdkSimDeviceOptions[];
  /** TLS: the gateway's certificate and key (PEM) */
  cert: Buffer;
  key: Buffer;
  host?: string;
  /** 0: any free port */
  port?: number;
  /** send EventLog.changedOnDevice (a newer gateway); default false (an older one: never set) */
  changedOnDevice?: boolean;
  /**
   * A timing model (default none: answers at once): every call to a terminal
   * waits `perCallMs`, plus `perUserWriteMs` for each user an Enroll writes;
   * each terminal serves one call at a time (an assumption for benchmarks, not
   * a measurement of real terminals).
   */
  timing?: { perCallMs: number; perUserWriteMs: number };
}

interface RealtimeSub {
  call: grpc.ServerWritableStream<{ queueSize: number; deviceIDs: number[]; eventCodes: number[] }, EventLog>;
  devices: Set<number>;
  codes: Set<number>;
}

type Handler = (call: grpc.ServerUnaryCall<any, any>) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class GsdkSimGateway {
  readonly devices: GsdkSimDevice[];
  port = 0;
  readonly host: string;
  private server: grpc.Server | undefined;
  private readonly o: GsdkSimGatewayOptions;
  private readonly asyncConns = new Map<number, { ip: string; port: number }>();
  private filter: AcceptFilter = { allowAll: false, deviceIDs: [], IPAddrs: [], subnetMasks: [] };
  private readonly monitoring = new Set<number>();
  private readonly statusSubs = new Set<grpc.ServerWritableStream<unknown, StatusChange>>();
  private readonly realtimeSubs = new Set<RealtimeSub>();
  private readonly status = new Map<number, number>();
  private dropping = 0;
  private failing = 0;
  /** counters for tests */
  readonly stats = { realtimeSent: 0, realtimeDropped: 0, getLogCalls: 0, getListCalls: 0, enrollCalls: 0, unavailableAnswered: 0, restarts: 0 };

  private constructor(o: GsdkSimGatewayOptions) {
    this.o = o;
    this.host = o.host ?? '127.0.0.1';
    this.devices = o.devices.map((d) => new GsdkSimDevice(d));
    for (const d of this.devices) {
      this.status.set(d.deviceID, DeviceStatus.DISCONNECTED);
      d.on('event', (e: EventLog) => this.realtime(e));
    }
  }

  static async start(o: GsdkSimGatewayOptions): Promise<GsdkSimGateway> {
    const g = new GsdkSimGateway(o);
    await g.listen(o.port ?? 0);
    return g;
  }

  device(deviceID: number): GsdkSimDevice {
    const d = this.devices.find((x) => x.deviceID === deviceID);
    if (!d) throw new Error(`no mock terminal ${deviceID}`);
    return d;
  }

  /** Whether the gateway holds a connection to the terminal now. */
  connected(deviceID: number): boolean {
    const s = this.status.get(deviceID);
    return s === DeviceStatus.TLS_CONNECTED || s === DeviceStatus.TCP_CONNECTED;
  }

  /** Device IDs the gateway was told to keep connecting to (AddAsyncConnection), ascending. */
  asyncConnectionIds(): number[] {
    return [...this.asyncConns.keys()].sort((a, b) => a - b);
  }

  /** Device IDs in the accept filter (SetAcceptFilter), ascending. */
  acceptFilterIds(): number[] {
    return [...this.filter.deviceIDs].sort((a, b) => a - b);
  }

  // ------------------------------------------------------------ control

  /** Switches a terminal on or off (its connection comes or goes). */
  setOnline(deviceID: number, on: boolean): void {
    this.device(deviceID).online = on;
    this.recompute();
  }

  /** Every realtime stream ends with UNAVAILABLE (the gateway dropped its subscribers). */
  breakStreams(): void {
    for (const s of [...this.realtimeSubs]) {
      this.realtimeSubs.delete(s);
      s.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'mock gateway: stream broken' });
    }
  }

  /** The next `n` realtime events are discarded (the gateway's queue was full). */
  dropRealtime(n: number): void {
    this.dropping += n;
  }

  /** The next `n` unary calls fail with UNAVAILABLE. */
  failNext(n: number): void {
    this.failing += n;
  }

  /** The gateway process restarts: every stream and connection ends; it comes back on the same port knowing nothing of its clients' setup. */
  async restart(downMs = 0): Promise<void> {
    await this.stopServer();
    this.asyncConns.clear();
    this.filter = { allowAll: false, deviceIDs: [], IPAddrs: [], subnetMasks: [] };
    this.monitoring.clear();
    for (const d of this.devices) this.status.set(d.deviceID, DeviceStatus.DISCONNECTED);
    this.stats.restarts++;
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    await this.stopServer();
  }

  private async stopServer(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    for (const c of this.statusSubs) c.emit('error', { code: grpc.status.UNAVAILABLE, details: 'mock gateway shutting down' });
    for (const c of this.realtimeSubs) c.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'mock gateway shutting down' });
    this.statusSubs.clear();
    this.realtimeSubs.clear();
    s.forceShutdown();
  }

  // ------------------------------------------------------------ state

  private wants(d: GsdkSimDevice): boolean {
    if (!d.online) return false;
    const a = this.asyncConns.get(d.deviceID);
    if (a) return a.ip === d.ip && a.port === d.port;
    return this.filter.allowAll || this.filter.deviceIDs.includes(d.deviceID);
  }

  private recompute(): void {
    for (const d of this.devices) {
      const now = this.wants(d) ? DeviceStatus.TLS_CONNECTED : DeviceStatus.DISCONNECTED;
      if (this.status.get(d.deviceID) === now) continue;
      this.status.set(d.deviceID, now);
      if (now === DeviceStatus.DISCONNECTED) this.monitoring.delete(d.deviceID);
      const c: StatusChange = { deviceID: d.deviceID, status: now, timestamp: Math.floor(Date.now() / 1000) };
      for (const s of this.statusSubs) s.write(c);
    }
  }

  private realtime(e: EventLog): void {
    if (!this.monitoring.has(e.deviceID) || !this.connected(e.deviceID)) return;
    const out = { ...e, changedOnDevice: this.o.changedOnDevice ? e.changedOnDevice : false };
    for (const s of this.realtimeSubs) {
      if (s.devices.size && !s.devices.has(e.deviceID)) continue;
      if (s.codes.size && !s.codes.has(e.eventCode) && !s.codes.has(e.eventCode & 0xff00)) continue;
      if (this.dropping > 0) {
        this.dropping--;
        this.stats.realtimeDropped++;
        continue;
      }
      this.stats.realtimeSent++;
      s.call.write(out);
    }
  }

  private connectedDevice(deviceID: number): GsdkSimDevice {
    const d = this.devices.find((x) => x.deviceID === deviceID);
    if (!d) throw new GsdkSimError(Code.NOT_FOUND, `device ${deviceID} is unknown to the gateway`);
    if (!this.connected(deviceID)) throw new GsdkSimError(Code.UNAVAILABLE, `device ${deviceID} is not connected`);
    return d;
  }

  // ------------------------------------------------------------ server

  private unary(fn: Handler): grpc.handleUnaryCall<unknown, unknown> {
    return (call, cb) => {
      if (this.failing > 0) {
        this.failing--;
        this.stats.unavailableAnswered++;
        cb({ code: grpc.status.UNAVAILABLE, details: 'mock gateway: unavailable' });
        return;
      }
      const answer = () => {
        try {
          cb(null, fn(call));
        } catch (e) {
          if (e instanceof GsdkSimError) cb({ code: e.code, details: e.message });
          else cb({ code: grpc.status.INTERNAL, details: (e as Error).message });
        }
      };
      const t = this.o.timing;
      const req = call.request as { deviceID?: number; deviceIDs?: number[]; users?: unknown[] };
      if (!t) return answer();
      // one call at a time per terminal; an Enroll takes longer per user
      const devices = req.deviceIDs ?? (req.deviceID ? [req.deviceID] : []);
      const ms = t.perCallMs + (Array.isArray(req.users) ? req.users.length * t.perUserWriteMs : 0);
      const run = Promise.all(devices.map((d) => this.busy.get(d) ?? Promise.resolve())).then(() => sleep(ms)).then(answer);
      for (const d of devices) this.busy.set(d, run.catch(() => undefined));
    };
  }

  /** per terminal: the call it is serving (timing model) */
  private readonly busy = new Map<number, Promise<unknown>>();

  private listen(port: number): Promise<void> {
    const s = gsdkServices();
    const server = new grpc.Server();
    const u = (fn: Handler) => this.unary(fn);
    server.addService(s.Connect.service, {
      AddAsyncConnection: u((c) => {
        for (const i of c.request.connectInfos as { deviceID: number; IPAddr: string; port: number }[]) this.asyncConns.set(i.deviceID, { ip: i.IPAddr, port: i.port });
        this.recompute();
        return {};
      }),
      DeleteAsyncConnection: u((c) => {
        for (const id of c.request.deviceIDs as number[]) this.asyncConns.delete(id);
        this.recompute();
        return {};
      }),
      SetAcceptFilter: u((c) => {
        const f = c.request.filter as AcceptFilter | null;
        this.filter = f ? { allowAll: f.allowAll, deviceIDs: [...f.deviceIDs], IPAddrs: [...f.IPAddrs], subnetMasks: [...f.subnetMasks] } : { allowAll: false, deviceIDs: [], IPAddrs: [], subnetMasks: [] };
        this.recompute();
        return {};
      }),
      GetAcceptFilter: u(() => ({ filter: this.filter })),
      GetDeviceList: u(() => ({
        deviceInfos: this.devices
          .filter((d) => this.asyncConns.has(d.deviceID) || this.connected(d.deviceID))
          .map((d) => ({ deviceID: d.deviceID, connectionMode: this.asyncConns.has(d.deviceID) ? 0 : 1, IPAddr: d.ip, port: d.port, status: this.status.get(d.deviceID) ?? 0, autoReconnect: this.asyncConns.has(d.deviceID), useSSL: false })),
      })),
      SubscribeStatus: (call: grpc.ServerWritableStream<unknown, StatusChange>) => {
        this.statusSubs.add(call);
        call.on('cancelled', () => this.statusSubs.delete(call));
        call.on('close', () => this.statusSubs.delete(call));
      },
    });
    server.addService(s.Event.service, {
      GetLog: u((c) => {
        this.stats.getLogCalls++;
        const d = this.connectedDevice(c.request.deviceID);
        return { events: d.events(c.request.startEventID, c.request.maxNumOfLog).map((e) => ({ ...e, changedOnDevice: this.o.changedOnDevice ? e.changedOnDevice : false })) };
      }),
      EnableMonitoring: u((c) => {
        this.connectedDevice(c.request.deviceID);
        this.monitoring.add(c.request.deviceID);
        return {};
      }),
      DisableMonitoring: u((c) => {
        this.monitoring.delete(c.request.deviceID);
        return {};
      }),
      SubscribeRealtimeLog: (call: RealtimeSub['call']) => {
        const sub: RealtimeSub = { call, devices: new Set(call.request.deviceIDs), codes: new Set(call.request.eventCodes) };
        this.realtimeSubs.add(sub);
        const gone = () => this.realtimeSubs.delete(sub);
        call.on('cancelled', gone);
        call.on('close', gone);
      },
    });
    server.addService(s.User.service, {
      GetList: u((c) => {
        this.stats.getListCalls++;
        const d = this.connectedDevice(c.request.deviceID);
        return { hdrs: d.userIds().map((id) => d.user(id)!.hdr) };
      }),
      Get: u((c) => {
        const d = this.connectedDevice(c.request.deviceID);
        const ids = c.request.userIDs as string[];
        const missing = ids.find((id) => !d.user(id));
        if (missing !== undefined) throw new GsdkSimError(Code.NOT_FOUND, `user ${missing} not found`);
        return { users: ids.map((id) => d.user(id)!) };
      }),
      GetPartial: u((c) => {
        const d = this.connectedDevice(c.request.deviceID);
        return { users: (c.request.userIDs as string[]).map((id) => d.user(id)).filter((x) => x) };
      }),
      Enroll: u((c) => {
        this.stats.enrollCalls++;
        const d = this.connectedDevice(c.request.deviceID);
        d.enrollFromGateway((c.request.users as Partial<UserInfo>[]).map(normalizeInfo), c.request.overwrite);
        return {};
      }),
      EnrollMulti: u((c) => {
        const errs: { deviceID: number; code: number; msg: string }[] = [];
        for (const id of c.request.deviceIDs as number[]) {
          try {
            this.connectedDevice(id).enrollFromGateway((c.request.users as Partial<UserInfo>[]).map(normalizeInfo), c.request.overwrite);
          } catch (e) {
            errs.push({ deviceID: id, code: e instanceof GsdkSimError ? e.code : grpc.status.INTERNAL, msg: (e as Error).message });
          }
        }
        return { deviceErrors: errs };
      }),
      Delete: u((c) => {
        this.connectedDevice(c.request.deviceID).deleteFromGateway(c.request.userIDs);
        return {};
      }),
      DeleteMulti: u((c) => {
        const errs: { deviceID: number; code: number; msg: string }[] = [];
        for (const id of c.request.deviceIDs as number[]) {
          try {
            this.connectedDevice(id).deleteFromGateway(c.request.userIDs);
          } catch (e) {
            errs.push({ deviceID: id, code: e instanceof GsdkSimError ? e.code : grpc.status.INTERNAL, msg: (e as Error).message });
          }
        }
        return { deviceErrors: errs };
      }),
    });
    server.addService(s.Device.service, {
      GetInfo: u((c) => {
        const d = this.connectedDevice(c.request.deviceID);
        return { info: { deviceID: d.deviceID, MACAddr: '00:17:fc:00:00:01', modelName: d.model, firmwareVersion: d.firmware, kernelVersion: '', BSCoreVersion: '', boardVersion: '' } };
      }),
      GetCapabilityInfo: u((c) => {
        const d = this.connectedDevice(c.request.deviceID);
        return { capInfo: { type: 0, maxNumOfUser: d.capacity, PINSupported: true, cardSupported: true, fingerSupported: true, faceSupported: false, userNameSupported: true, alphanumericIDSupported: d.alphanumericIds } };
      }),
    });
    const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: this.o.cert, private_key: this.o.key }], false);
    return new Promise((resolve, reject) => {
      server.bindAsync(`${this.host}:${port}`, creds, (e, bound) => {
        if (e) return reject(e);
        this.port = bound;
        this.server = server;
        resolve();
      });
    });
  }
}
