// Two daemons (src/cluster/node.ts: sessions, the sync engine on the
// PostgreSQL store, terminal leases) sharing one real PostgreSQL and six
// simulated terminals: each drives half; a user enrolled at a terminal of one
// reaches the terminals of the other (the feed, woken by NOTIFY); one crashes
// and the other takes its terminals after the lease TTL, and a user enrolled
// at one of them then reaches every terminal.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode } from '../src/cluster/node.js';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-node.test.ts SKIPPED: ${reason}\n`);

const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
const person = (id: string): UserRecord => userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }] });

describe.skipIf(reason !== null)(`two daemons, six terminals, one PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let sim: Simulator;
  const stores: PgSiteStore[] = [];
  const nodes: ClusterNode[] = [];
  beforeAll(async () => {
    server = await startPostgres();
    sim = await Simulator.start({ terminals: 6, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  }, 60_000);
  afterAll(async () => {
    try {
      for (const n of nodes) await n.stop().catch(() => {});
      for (const s of stores) await s.close().catch(() => {});
      await sim?.close();
    } finally {
      await server?.stop();
    }
  });

  const holds = (u: UserRecord) => sim.terminals.every((t) => {
    const held = t.getUser(u.id);
    return held !== undefined && usersEqual(held, u);
  });

  it('each drives half; an enrollment anywhere reaches every terminal; after a crash the other takes over and sync goes on', { timeout: 120_000 }, async () => {
    const url = await server.createDatabase();
    const ports = sim.ports();
    const targets = sim.terminals.map((t, i) => ({ id: `t${t.index}`, host: '127.0.0.1', port: ports[i]! }));
    for (const name of ['a', 'b']) {
      const store = await PgSiteStore.open({ url, writerId: `daemon-${name}`, logger: log });
      stores.push(store);
      if (name === 'a') await store.setSyncMode('all');
      nodes.push(await ClusterNode.start({ store, targets, commKey: DEV_COMM_KEY, leaseSec: 3, renewEveryMs: 500, log, heartbeatSec: 2, requestTimeoutMs: 5000, reconnectMinMs: 20, reconnectMaxMs: 200, engine: { dbRetryMs: 50 } }));
    }
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    await waitFor(() => a.leases.heldTerminals().length === 3 && b.leases.heldTerminals().length === 3, { timeoutMs: 20_000, message: 'leases not 3/3' });

    // a terminal driven by a: its enrollment is merged by a and pushed by b to b's terminals too
    const aTerminal = Number(a.leases.heldTerminals()[0]!.slice(1));
    await sim.terminal(aTerminal)!.enroll(person('5001'));
    const server1 = async () => (await stores[1]!.getUser('5001')) ?? person('x');
    await waitFor(async () => holds(await server1()), { timeoutMs: 30_000, message: 'user 5001 did not reach every terminal' }).catch(async (e) => {
      const u = await stores[1]!.getUser('5001');
      throw new Error(`${(e as Error).message}: server ${u ? 'has it' : 'lacks it'}; terminals holding it: ${sim.terminals.filter((t) => t.getUser('5001')).map((t) => t.index)}; feed head ${await stores[0]!.feedHead()}; cursors ${JSON.stringify((await stores[0]!.listTerminals()).map((t) => [t.id, t.cursor]))}; owed ${JSON.stringify(await stores[0]!.owedCounts())}; a ${a.leases.heldTerminals()} b ${b.leases.heldTerminals()} enrolled at t${aTerminal}; events ${JSON.stringify((await stores[0]!.db.query('SELECT type, terminal_id, detail FROM events ORDER BY id')).rows)}; stats b ${JSON.stringify(b.engine.stats)}`);
    });

    // a crashes: b takes its three terminals after the TTL
    const aHeld = a.leases.heldTerminals();
    await a.crash();
    await waitFor(() => b.leases.heldTerminals().length === 6, { timeoutMs: 30_000, message: 'b did not take a\'s terminals' });
    // an enrollment at a terminal a used to drive reaches every terminal
    await sim.terminal(Number(aHeld[1]!.slice(1)))!.enroll(person('5002'));
    await waitFor(async () => {
      const u = await stores[1]!.getUser('5002');
      return u !== null && holds(u);
    }, { timeoutMs: 30_000, message: 'user 5002 did not reach every terminal after the takeover' });
    expect(await stores[1]!.userCount()).toBe(2);
  });
});
