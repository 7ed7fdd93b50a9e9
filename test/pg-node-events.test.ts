// Lease changes are monitoring events (src/cluster/node.ts LeaseEvent),
// written through the store's event API: TERMINAL_LEASE_ACQUIRED (daemon,
// fencing token, previous owner when it had one) and TERMINAL_LEASE_LOST
// (daemon, reason). Two cluster nodes on one real PostgreSQL, four simulated
// terminals: the leases settle (acquired, from nobody); one node crashes and
// the other takes its terminals (acquired, previous owner the crashed node);
// another daemon takes a lease from under a node (lost: taken); PostgreSQL
// goes away past the TTL (lost: database unreachable, kept in memory and
// written once it is back).
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode } from '../src/cluster/node.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-node-events.test.ts SKIPPED: ${reason}\n`);
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

interface LeaseEv { terminal: string; daemon: string; token?: number; previousOwner?: string | null; reason?: string }

describe.skipIf(reason !== null)(`lease changes as monitoring events${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let sim: Simulator;
  let observer: PgSiteStore;
  const stores: PgSiteStore[] = [];
  const nodes: ClusterNode[] = [];
  beforeAll(async () => {
    server = await startPostgres();
    sim = await Simulator.start({ terminals: 4, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  }, 60_000);
  afterAll(async () => {
    try {
      for (const n of nodes) await n.stop().catch(() => {});
      for (const s of stores) await s.close().catch(() => {});
      await observer?.close().catch(() => {});
      await sim?.close();
    } finally {
      await server?.stop();
    }
  });

  const events = async (type: string): Promise<LeaseEv[]> =>
    (await observer.db.query<{ terminal_id: string; detail: string }>('SELECT terminal_id, detail FROM events WHERE type = $1 ORDER BY id', [type])).rows.map((r) => ({ terminal: r.terminal_id, ...(JSON.parse(r.detail) as Omit<LeaseEv, 'terminal'>) }));

  it('acquired from nobody, from a crashed daemon, lost when taken and when the database is unreachable', { timeout: 120_000 }, async () => {
    const url = await server.createDatabase();
    observer = await PgSiteStore.open({ url, writerId: 'observer', logger: log });
    const ports = sim.ports();
    const targets = sim.terminals.map((t, i) => ({ id: `t${t.index}`, host: '127.0.0.1', port: ports[i]! }));
    for (const name of ['a', 'b']) {
      const store = await PgSiteStore.open({ url, writerId: name, logger: log });
      stores.push(store);
      nodes.push(await ClusterNode.start({ store, targets, commKey: DEV_COMM_KEY, leaseSec: 2, renewEveryMs: 400, log, heartbeatSec: 2, requestTimeoutMs: 5000, reconnectMinMs: 20, reconnectMaxMs: 200 }));
    }
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    await waitFor(() => a.leases.heldTerminals().length === 2 && b.leases.heldTerminals().length === 2, { timeoutMs: 20_000, message: 'leases not 2/2' });
    await waitFor(async () => (await events('TERMINAL_LEASE_ACQUIRED')).filter((e) => e.daemon === 'b').length === 2, { timeoutMs: 10_000, message: 'b\'s leases were not recorded' });
    // a may have taken all four before b started, then given two back: b's came from nobody (a released them)
    const settled = await events('TERMINAL_LEASE_ACQUIRED');
    for (const id of b.leases.heldTerminals()) {
      const e = settled.filter((x) => x.terminal === id).at(-1)!;
      expect(e).toMatchObject({ daemon: 'b', previousOwner: null });
      expect(e.token).toBe(b.leases.token(id));
    }

    // b crashes: a takes its terminals after the TTL; the events name b as the previous owner
    const fromB = b.leases.heldTerminals();
    await b.crash();
    await waitFor(() => a.leases.heldTerminals().length === 4, { timeoutMs: 20_000, message: 'a did not take b\'s terminals' });
    await waitFor(async () => (await events('TERMINAL_LEASE_ACQUIRED')).filter((e) => e.daemon === 'a' && e.previousOwner === 'b').length === 2, { timeoutMs: 10_000, message: 'the takeover was not recorded with the previous owner' });
    expect((await events('TERMINAL_LEASE_ACQUIRED')).filter((e) => e.previousOwner === 'b').map((e) => e.terminal).sort()).toEqual(fromB.sort());

    // another daemon takes one of a's leases from under it (as one that found it expired would): lost, taken
    const victim = a.leases.heldTerminals()[0]!;
    await observer.db.query(`UPDATE terminal_leases SET owner = 'intruder', token = nextval('lease_token_seq'), expires_at = now() + interval '1 hour' WHERE terminal_id = $1`, [victim]);
    await waitFor(async () => (await events('TERMINAL_LEASE_LOST')).some((e) => e.terminal === victim && e.daemon === 'a' && e.reason === 'taken'), { timeoutMs: 10_000, message: 'the lease taken from a was not recorded' });
    expect(a.leases.token(victim)).toBeUndefined();

    // PostgreSQL goes away past the TTL: a drops its leases; the events wait in memory and are written once it is back
    const heldBefore = a.leases.heldTerminals();
    expect(heldBefore.length).toBe(3);
    await server.stopServer();
    try {
      await waitFor(() => a.leases.heldTerminals().length === 0, { timeoutMs: 20_000, message: 'a still counted leases as held with the database down' });
    } finally {
      await server.startServer();
    }
    await waitFor(() => a.leases.heldTerminals().length === 3, { timeoutMs: 30_000, message: 'a did not take its leases back after the database returned' });
    await waitFor(async () => (await events('TERMINAL_LEASE_LOST').catch(() => [])).filter((e) => e.reason === 'database unreachable').length === 3, { timeoutMs: 30_000, message: 'the leases lost while the database was down were not recorded once it was back' });
    expect((await events('TERMINAL_LEASE_LOST')).filter((e) => e.reason === 'database unreachable').map((e) => e.terminal).sort()).toEqual(heldBefore);
  });
});
