// A mixed site for the G-SDK end-to-end tests: the real daemon (real SQLite
// file) with two termsync terminals (the termsync simulator), one ZK terminal
// (the ZK simulator) and two Suprema terminals behind the mock device gateway
// (gRPC over TLS with a CA made at test time): gsdk-1001 reached by the
// gateway at its address (AddAsyncConnection), gsdk-1002 dialling the gateway
// (SetAcceptFilter).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, type DaemonOptions } from '../../src/daemon.js';
import { gsdkDriver, type GsdkDriver, type GsdkDriverOptions } from '../../src/drivers/gsdk/driver.js';
import { GSDK_PARTS, gsdkToUser } from '../../src/drivers/gsdk/mapping.js';
import { zkDriver } from '../../src/drivers/zk/driver.js';
import { ZK_PARTS, zkToUser } from '../../src/drivers/zk/mapping.js';
import { sameForTerminal } from '../../src/model/merge.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { makeGatewayCerts, type GatewayCerts } from '../../src/sim/gsdk/certs.js';
import { GsdkSimGateway } from '../../src/sim/gsdk/gateway.js';
import type { GsdkSimDevice } from '../../src/sim/gsdk/device.js';
import { Simulator } from '../../src/sim/simulator.js';
import { ZERO_TIMING } from '../../src/sim/timing.js';
import { ZERO_ZK_TIMING } from '../../src/sim/zk/device.js';
import { ZkSimulator } from '../../src/sim/zk/simulator.js';
import { silent } from './site.js';
import { waitFor } from './wait.js';

const ZK_KEY = '4321';
export const DEVICE_A = 1001;
export const DEVICE_B = 1002;

let certs: GatewayCerts | undefined;
/** One CA and gateway certificate per test file (openssl is slow under load). */
export function gatewayCerts(): GatewayCerts {
  return (certs ??= makeGatewayCerts());
}

export interface GsdkSite {
  ts: Simulator;
  zk: ZkSimulator;
  gw: GsdkSimGateway;
  driver: GsdkDriver;
  daemon: Daemon;
  /** every terminal ID on the server */
  ids: string[];
  dev(id: string): GsdkSimDevice;
  /** the server user is held by every terminal in `ids`, as far as each can hold it */
  heldEverywhere(userId: string, ids?: string[]): boolean;
  allOnline(ids?: string[]): Promise<void>;
  converge(userId: string, ids?: string[]): Promise<void>;
  events(type: string): { terminalId: string | null; userId: string | null }[];
  close(): Promise<void>;
}

export async function startGsdkSite(o: { changedOnDevice?: boolean; daemon?: Partial<DaemonOptions>; driver?: Partial<GsdkDriverOptions>; extraDevices?: number[] } = {}): Promise<GsdkSite> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-gsdk-site-'));
  const c = gatewayCerts();
  const ts = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  const zk = await ZkSimulator.start({ terminals: 1, password: Number(ZK_KEY), timing: ZERO_ZK_TIMING });
  const gw = await GsdkSimGateway.start({
    devices: [
      { deviceID: DEVICE_A, ip: '10.1.0.11', port: 51211 },
      { deviceID: DEVICE_B, ip: '10.1.0.12', port: 51211 },
      // behind the gateway, not configured in the daemon (for tests that add terminals)
      ...(o.extraDevices ?? []).map((deviceID, i) => ({ deviceID, ip: `10.1.0.${20 + i}`, port: 51211 })),
    ],
    cert: c.cert,
    key: c.key,
    changedOnDevice: o.changedOnDevice,
  });
  const driver = gsdkDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: c.ca, requestTimeoutMs: 5000, log: silent, ...o.driver });
  const options: DaemonOptions = {
    db: join(dir, 'termsync.db'),
    log: silent,
    commKey: DEV_COMM_KEY,
    terminals: [
      { id: 't1', host: '127.0.0.1', port: ts.ports()[0] },
      { id: 't2', host: '127.0.0.1', port: ts.ports()[1] },
      { id: 'zk1', host: '127.0.0.1', port: zk.ports()[0], protocol: 'zk', key: Buffer.from(ZK_KEY) },
      // the gateway dials this one at its address
      { id: `gsdk-${DEVICE_A}`, host: '10.1.0.11', port: 51211, protocol: 'gsdk' },
      // this one dials the gateway: its address is the gateway's
      { id: `gsdk-${DEVICE_B}`, host: '127.0.0.1', port: gw.port, protocol: 'gsdk' },
    ],
    drivers: [zkDriver({ pollSec: 0.2, requestTimeoutMs: 5000, log: silent }), driver],
    syncMode: 'all',
    heartbeatSec: 2,
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 300,
    dbRetryMs: 50,
    ...o.daemon,
  };
  const daemon = await Daemon.start(options);
  const ids = ['t1', 't2', 'zk1', `gsdk-${DEVICE_A}`, `gsdk-${DEVICE_B}`];
  const s: GsdkSite = {
    ts,
    zk,
    gw,
    driver,
    daemon,
    ids,
    dev: (id) => gw.device(Number(id.replace(/^gsdk-/, ''))),
    heldEverywhere(userId, only = ids) {
      const server = daemon.store.getUser(userId);
      if (!server) return false;
      for (const id of only) {
        if (id.startsWith('gsdk-')) {
          const held = s.dev(id).user(userId);
          if (!held || !sameForTerminal(server, gsdkToUser(held), GSDK_PARTS)) return false;
        } else if (id.startsWith('zk')) {
          const held = zk.terminal(Number(id.slice(2)))!.userById(userId);
          if (!held || !sameForTerminal(server, zkToUser(held).user, ZK_PARTS)) return false;
        } else {
          const held = ts.terminal(Number(id.slice(1)))!.getUser(userId);
          if (!held || held.name !== server.name || !sameForTerminal(server, held, GSDK_PARTS)) return false;
        }
      }
      return true;
    },
    async allOnline(only = ids) {
      await waitFor(() => only.every((id) => daemon.terminals().find((t) => t.id === id)?.state === 'online'), { timeoutMs: 30_000, message: 'terminals did not come online' });
      await daemon.engine.idle();
    },
    converge: (userId, only) => waitFor(() => s.heldEverywhere(userId, only), { timeoutMs: 30_000, message: `user ${userId} did not reach every terminal` }),
    events: (type) => daemon.store.listEvents({ type, limit: 10_000 }),
    async close() {
      await daemon.stop(1000).catch(() => undefined);
      driver.close();
      await gw.close();
      await ts.close();
      await zk.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return s;
}
