// Cluster nodes (src/cluster/node.ts) drive every kind of terminal the single
// daemon drives, leased the same way: two daemons on one real PostgreSQL,
// two termsync terminals (the termsync simulator), two ZK terminals (the ZK
// simulator) and one Suprema terminal behind the mock G-SDK device gateway.
// The drivers come from the one registry (src/drivers/registry.ts). An
// enrollment at a ZK terminal reaches the termsync and Suprema terminals and
// one at a termsync terminal reaches the ZK ones, whichever daemon drives
// which. A daemon that stops gives its leases back; one holding the Suprema
// terminal lets the gateway's connection go first, and the other daemon takes
// the terminal and connects it again.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode } from '../src/cluster/node.js';
import { gsdkDriver } from '../src/drivers/gsdk/driver.js';
import { GSDK_PARTS, gsdkToUser } from '../src/drivers/gsdk/mapping.js';
import { zkDriver } from '../src/drivers/zk/driver.js';
import { ZK_PARTS, zkToUser } from '../src/drivers/zk/mapping.js';
import { sameForTerminal } from '../src/model/merge.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { makeGatewayCerts, type GatewayCerts } from '../src/sim/gsdk/certs.js';
import { GsdkSimGateway } from '../src/sim/gsdk/gateway.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import type { DialTarget } from '../src/terminal/manager.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-node-drivers.test.ts SKIPPED: ${reason}\n`);
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
const ZK_KEY = '4321';
const DEVICE = 1001;
const GSDK_ID = `gsdk-${DEVICE}`;

describe.skipIf(reason !== null)(`cluster nodes driving termsync, ZK and Suprema terminals${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let ts: Simulator;
  let zk: ZkSimulator;
  let gw: GsdkSimGateway;
  let certs: GatewayCerts;
  let observer: PgSiteStore;
  const stores: PgSiteStore[] = [];
  const nodes: ClusterNode[] = [];

  beforeAll(async () => {
    server = await startPostgres();
    certs = makeGatewayCerts();
    ts = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    zk = await ZkSimulator.start({ terminals: 2, password: Number(ZK_KEY), timing: ZERO_ZK_TIMING });
    gw = await GsdkSimGateway.start({ devices: [{ deviceID: DEVICE, ip: '10.1.0.11', port: 51211 }], cert: certs.cert, key: certs.key });
  }, 60_000);
  afterAll(async () => {
    try {
      for (const n of nodes) await n.stop().catch(() => {});
      for (const s of stores) await s.close().catch(() => {});
      await observer?.close().catch(() => {});
      await gw?.close();
      await ts?.close();
      await zk?.close();
    } finally {
      await server?.stop();
    }
  });

  /** the server's user is on every terminal in `ids`, as far as each kind can hold it */
  const heldOn = async (userId: string, ids: string[]) => {
    const u = await observer.getUser(userId);
    if (!u) return false;
    return ids.every((id) => {
      if (id.startsWith('zk')) {
        const h = zk.terminal(Number(id.slice(2)))!.userById(userId);
        return h !== undefined && sameForTerminal(u, zkToUser(h).user, ZK_PARTS);
      }
      if (id.startsWith('gsdk-')) {
        const h = gw.device(DEVICE).user(userId);
        return h !== undefined && sameForTerminal(u, gsdkToUser(h), GSDK_PARTS);
      }
      const h = ts.terminal(Number(id.slice(1)))!.getUser(userId);
      return h !== undefined && h.name === u.name && sameForTerminal(u, h, ZK_PARTS);
    });
  };

  it('an enrollment at a ZK terminal and one at a termsync terminal reach every terminal of every kind; a lease given back lets the gateway go', { timeout: 150_000 }, async () => {
    const url = await server.createDatabase();
    observer = await PgSiteStore.open({ url, writerId: 'observer', logger: log });
    await observer.setSyncMode('all');
    const targets: DialTarget[] = [
      { id: 't1', host: '127.0.0.1', port: ts.ports()[0]! },
      { id: 't2', host: '127.0.0.1', port: ts.ports()[1]! },
      { id: 'zk1', host: '127.0.0.1', port: zk.ports()[0]!, protocol: 'zk', key: Buffer.from(ZK_KEY) },
      { id: 'zk2', host: '127.0.0.1', port: zk.ports()[1]!, protocol: 'zk', key: Buffer.from(ZK_KEY) },
      // the gateway dials this one at its address (AddAsyncConnection)
      { id: GSDK_ID, host: '10.1.0.11', port: 51211, protocol: 'gsdk' },
    ];
    const all = targets.map((t) => t.id);
    for (const name of ['a', 'b']) {
      const store = await PgSiteStore.open({ url, writerId: name, logger: log });
      stores.push(store);
      nodes.push(
        await ClusterNode.start({
          store,
          targets,
          commKey: DEV_COMM_KEY,
          drivers: [zkDriver({ pollSec: 0.2, requestTimeoutMs: 5000, log }), gsdkDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: certs.ca, requestTimeoutMs: 5000, log })],
          leaseSec: 3,
          renewEveryMs: 500,
          log,
          heartbeatSec: 2,
          requestTimeoutMs: 5000,
          reconnectMinMs: 20,
          reconnectMaxMs: 300,
          engine: { dbRetryMs: 50 },
        }),
      );
    }
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    // five terminals shared 3/2 (the first daemon by ID takes the extra one)
    await waitFor(() => a.leases.heldTerminals().length === 3 && b.leases.heldTerminals().length === 2, { timeoutMs: 30_000, message: 'leases not 3/2' });
    const rows = await observer.listTerminals();
    expect(Object.fromEntries(rows.map((r) => [r.id, r.protocol]))).toEqual({ t1: 'termsync', t2: 'termsync', zk1: 'zk', zk2: 'zk', [GSDK_ID]: 'gsdk' });
    // every terminal online somewhere: each daemon attached the sessions of the leases it holds
    await waitFor(async () => (await observer.listTerminals()).every((r) => r.state === 'online'), { timeoutMs: 30_000, message: 'not every terminal online' }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify((await observer.listTerminals()).map((r) => [r.id, r.state, r.deviceId]))}`);
    });

    await zk.terminal(1)!.enroll({ id: '5001', name: 'Zed Kay', card: 987654, password: '42' });
    await waitFor(() => heldOn('5001', all), { timeoutMs: 40_000, message: 'the ZK enrollment did not reach every terminal' });
    expect((await observer.getUser('5001'))!.name).toBe('Zed Kay');

    const u = userFromJson({ id: '5002', name: 'Tess Sync', cards: [{ type: 1, data: '00aa5002' }] });
    await ts.terminal(2)!.enroll(u);
    await waitFor(() => heldOn('5002', all), { timeoutMs: 40_000, message: 'the termsync enrollment did not reach every terminal' });

    // the daemon driving the Suprema terminal stops: the gateway's connection goes, the other daemon takes it
    const holder = a.leases.token(GSDK_ID) !== undefined ? a : b;
    const other = holder === a ? b : a;
    expect(gw.asyncConnectionIds()).toEqual([DEVICE]);
    let seenGone = false;
    const probe = setInterval(() => {
      if (!gw.asyncConnectionIds().includes(DEVICE)) seenGone = true;
    }, 5);
    try {
      await holder.stop();
      await waitFor(() => other.leases.heldTerminals().length === 5, { timeoutMs: 30_000, message: 'the other daemon did not take every terminal' });
      await waitFor(() => gw.asyncConnectionIds().includes(DEVICE), { timeoutMs: 30_000, message: 'the Suprema terminal was not connected again' });
    } finally {
      clearInterval(probe);
    }
    expect(seenGone).toBe(true);
    gw.device(DEVICE).enroll({ id: '5003', name: 'Sue Prema', cards: [{ data: '00bb5003' }] });
    await waitFor(() => heldOn('5003', ['t1', 't2']), { timeoutMs: 40_000, message: 'an enrollment at the Suprema terminal did not reach the termsync terminals after the move' });
  });
});
