// The G-SDK TerminalDriver: Suprema terminals reached through Suprema's device
// gateway (gRPC over TLS, port 4000). One gateway connection serves every
// terminal behind it. A terminal is named on the server `gsdk-DEVICEID`; it is
// dialled by telling the gateway about it:
//   - DialTarget host:port is the gateway's own address: the terminal dials
//     the gateway (device-to-server mode), so its device ID goes into the
//     gateway's accept filter (SetAcceptFilter);
//   - any other host:port is the terminal's address: the gateway connects to it
//     and keeps reconnecting (AddAsyncConnection).
// Then the driver waits for the gateway to report the terminal connected
// (SubscribeStatus / GetDeviceList), reads what it is (GetInfo,
// GetCapabilityInfo) and hands back a GsdkSession. The key of a DialTarget is
// not used: the gateway holds the terminals' keys; the TLS trust is the
// gateway's CA (--gsdk-ca-file).
import type { Logger } from 'pino';
import { DriverError, type DeviceSession, type DialTarget, type TerminalDriver } from '../../sync/ports.js';
import { GSDK_DEVICE_PORT } from './constants.js';
import { EchoMemory } from './echo.js';
import { asDriverError, GatewayClient } from './gateway.js';
import type { CapabilityInfo, FactoryInfo } from './proto.js';
import { GsdkSession, PROTOCOL } from './session.js';

export const DEFAULT_LOG_CHECK_MS = 10_000;
/** tries at telling the gateway a removed terminal is gone, when it does not answer */
const FORGET_ATTEMPTS = 3;

export interface GsdkDriverOptions {
  /** the device gateway, HOST and PORT (--gsdk-gateway) */
  gateway: { host: string; port: number };
  /** the gateway's root CA, PEM (--gsdk-ca-file) */
  ca: Buffer;
  /** deadline of one gateway call, ms (default 10000) */
  requestTimeoutMs?: number;
  /** how long a dial waits for the gateway to report the terminal connected, ms (default requestTimeoutMs) */
  connectTimeoutMs?: number;
  /** read each terminal's log after its last event this often, ms, to find realtime events the gateway dropped at the end of a burst (default 10000; 0: never) */
  logCheckMs?: number;
  /** largest answer taken from the gateway, bytes (default 32 MiB: gateway.ts DEFAULT_MAX_MESSAGE_BYTES) */
  maxMessageBytes?: number;
  /** the name on the gateway's certificate, when it is not the host dialled */
  serverName?: string;
  log?: Logger;
}

/** The server's name of the terminal with this device ID. */
export function gsdkTerminalId(deviceID: number): string {
  return `gsdk-${deviceID}`;
}

/** The device ID in a server terminal name `gsdk-DEVICEID`, or undefined. */
export function gsdkDeviceIdOf(terminalId: string): number | undefined {
  const m = /^gsdk-([0-9]{1,10})$/.exec(terminalId);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n >= 1 && n <= 0xffff_ffff ? n : undefined;
}

export interface GsdkDriver extends TerminalDriver {
  readonly gateway: { host: string; port: number };
  readonly echo: EchoMemory;
  /**
   * The terminal was removed from termsync: the gateway stops holding a
   * connection for it (DeleteAsyncConnection, or its device ID out of the
   * accept filter). Never rejects: a failure is logged with its reason (a
   * restarted gateway has forgotten it anyway). A dial of the same device ID
   * waits for it to finish.
   */
  forget(target: DialTarget): Promise<void>;
  /** closes the gateway connection (the daemon's sessions end with it) */
  close(): void;
}

export function gsdkDriver(o: GsdkDriverOptions): GsdkDriver {
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  const echo = new EchoMemory();
  let gw: GatewayClient | undefined;
  /** per device ID: a forget() in progress (a dial of the same terminal waits for it) */
  const forgetting = new Map<number, Promise<void>>();
  const client = () => (gw ??= new GatewayClient({ host: o.gateway.host, port: o.gateway.port, ca: o.ca, requestTimeoutMs: timeoutMs, maxMessageBytes: o.maxMessageBytes, serverName: o.serverName, log: o.log }));
  return {
    protocol: PROTOCOL,
    defaultPort: GSDK_DEVICE_PORT,
    gateway: o.gateway,
    echo,
    close() {
      gw?.close();
      gw = undefined;
    },
    forget(target: DialTarget): Promise<void> {
      const id = target.terminalId;
      const deviceID = gsdkDeviceIdOf(id);
      if (deviceID === undefined) return Promise.resolve();
      const viaGateway = target.host === o.gateway.host && target.port === o.gateway.port;
      const run = async () => {
        const g = client();
        const mode = viaGateway ? 'device-to-gateway' : 'gateway-to-device';
        for (let attempt = 1; ; attempt++) {
          try {
            await g.call(g.event, 'DisableMonitoring', { deviceID }).catch(() => undefined);
            if (viaGateway) {
              if (!(await g.unaccept(deviceID))) o.log?.warn({ terminal: id, deviceID }, 'Suprema terminal removed, but the device gateway accepts every terminal (allowAll): it stays connected to the gateway');
            } else await g.deleteAsync(deviceID);
            o.log?.info({ terminal: id, deviceID, mode, reason: 'terminal removed from termsync' }, 'Suprema terminal removed from the device gateway');
            return;
          } catch (e) {
            const err = asDriverError(e, `removing Suprema terminal ${id} from the device gateway ${g.address}`);
            if (err.reason !== 'transport' || attempt >= FORGET_ATTEMPTS) {
              o.log?.warn({ terminal: id, deviceID, mode, err: err.message }, 'Suprema terminal removed from termsync; the device gateway could not be told, it may keep its connection until it restarts');
              return;
            }
            await new Promise((r) => setTimeout(r, 500 * attempt));
          }
        }
      };
      const before = forgetting.get(deviceID) ?? Promise.resolve();
      const p = before.then(run);
      forgetting.set(deviceID, p);
      void p.finally(() => {
        if (forgetting.get(deviceID) === p) forgetting.delete(deviceID);
      });
      return p;
    },
    async dial(target: DialTarget): Promise<DeviceSession> {
      const id = target.terminalId;
      const deviceID = gsdkDeviceIdOf(id);
      if (deviceID === undefined) throw new DriverError('invalid', `a Suprema terminal's name must be gsdk-DEVICEID (its device ID 1..4294967295), not ${JSON.stringify(id)}`);
      if (target.signal?.aborted) throw new DriverError('transport', `dialling Suprema terminal ${id}: aborted`);
      const g = client();
      const what = `Suprema terminal ${id} through the device gateway ${g.address}`;
      try {
        await forgetting.get(deviceID);
        await g.watchStatus();
        const viaGateway = target.host === o.gateway.host && target.port === o.gateway.port;
        // removed meanwhile (its forget() may already have run): the gateway is not told about it again
        if (target.signal?.aborted) throw new DriverError('transport', `dialling Suprema terminal ${id}: aborted`);
        if (viaGateway) await g.accept(deviceID);
        else await g.addAsync({ deviceID, IPAddr: target.host, port: target.port, useSSL: false });
        await g.waitConnected(deviceID, o.connectTimeoutMs ?? timeoutMs, target.signal);
        const info = await g.call<{ info: FactoryInfo | null }>(g.device, 'GetInfo', { deviceID }).then((r) => r.info);
        const cap = await g.call<{ capInfo: CapabilityInfo | null }>(g.device, 'GetCapabilityInfo', { deviceID }).then((r) => r.capInfo);
        const session = new GsdkSession({ terminalId: id, deviceID, gw: g, info, capability: cap, echo, logCheckMs: o.logCheckMs ?? DEFAULT_LOG_CHECK_MS, log: o.log?.child({ terminal: id }) });
        o.log?.info({ terminal: id, deviceID, gateway: g.address, model: info?.modelName, mode: viaGateway ? 'device-to-gateway' : 'gateway-to-device' }, 'Suprema terminal connected through the device gateway');
        return session;
      } catch (e) {
        throw asDriverError(e, what);
      }
    },
  };
}
