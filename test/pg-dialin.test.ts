// Dial-in terminals with several daemons (src/cluster/node.ts): the daemon a
// terminal reached claims its lease; a second daemon reached by the same
// terminal ID while the first drives it closes the session with a reason; once
// the first session ends the lease goes back and the other daemon takes it.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode } from '../src/cluster/node.js';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-dialin.test.ts SKIPPED: ${reason}\n`);
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

describe.skipIf(reason !== null)(`dial-in terminals and leases${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  const stores: PgSiteStore[] = [];
  const nodes: ClusterNode[] = [];
  const sims: Simulator[] = [];
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    try {
      for (const s of sims) await s.close().catch(() => {});
      for (const n of nodes) await n.stop().catch(() => {});
      for (const s of stores) await s.close().catch(() => {});
    } finally {
      await server?.stop();
    }
  });

  it('the daemon reached claims the lease; another daemon reached by the same terminal refuses it until the lease is free', { timeout: 90_000 }, async () => {
    const url = await server.createDatabase();
    for (const name of ['a', 'b']) {
      const store = await PgSiteStore.open({ url, writerId: name, logger: log });
      stores.push(store);
      if (name === 'a') await store.setSyncMode('all');
      nodes.push(await ClusterNode.start({ store, targets: [], commKey: DEV_COMM_KEY, leaseSec: 3, log, heartbeatSec: 2, requestTimeoutMs: 5000, listen: { host: '127.0.0.1', port: 0 }, autoApprove: true }));
    }
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    const simA = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: a.listenPorts[0]! }, reconnect: { minMs: 50, maxMs: 200 } });
    sims.push(simA);
    await waitFor(() => a.leases.token('1001') !== undefined, { timeoutMs: 20_000, message: 'a did not claim the dial-in terminal' });
    // the same terminal ID reaches b (through a balancer, say): refused while a drives it
    const simB = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: b.listenPorts[0]! }, reconnect: { minMs: 50, maxMs: 200 } });
    sims.push(simB);
    await waitFor(() => b.refusedDialIns > 0, { timeoutMs: 20_000, message: 'b did not refuse the terminal a drives' });
    expect(b.leases.token('1001')).toBeUndefined();
    const u = userFromJson({ id: '77', name: 'Dial In', cards: [{ type: 1, data: 'aa01' }] });
    await simA.terminal(1)!.enroll(u);
    await waitFor(async () => (await stores[1]!.getUser('77')) !== null, { timeoutMs: 20_000, message: 'the enrollment at the terminal driven by a was not stored' });
    // a's session ends: the lease goes back, b's redialing terminal gets it and receives the user
    await simA.close();
    sims.shift();
    await waitFor(() => b.leases.token('1001') !== undefined, { timeoutMs: 30_000, message: 'b did not claim the terminal after a let it go' });
    expect(a.leases.token('1001')).toBeUndefined();
    const stored = (await stores[1]!.getUser('77'))!;
    await waitFor(() => { const h = simB.terminal(1)!.getUser('77'); return h !== undefined && usersEqual(h, stored); }, { timeoutMs: 30_000, message: 'the user did not reach the terminal through b' });
  });
});
