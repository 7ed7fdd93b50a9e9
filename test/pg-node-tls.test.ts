// Dial-in to a cluster node (src/cluster/node.ts) over TLS (--tls-listen), and
// the single daemon's admission rules on a cluster node (src/terminal/
// admission.ts): a device ID bound to the client certificate it first came
// with; a site-key session without it held pending (no lease, no pushes)
// until approved, which re-binds it; --auto-approve limited to
// --auto-approve-from ranges; new device IDs beyond --auto-approve-rate
// refused and recorded. One real PostgreSQL; the termsync simulator dials
// with a client certificate from a CA made at test time.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNode, type ClusterNodeOptions } from '../src/cluster/node.js';
import { Command, FrameKind, Status, decodePutUsersRequest, decodeUser } from '../src/codec/index.js';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { parseCidr } from '../src/terminal/identity.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { makePki, type Pki } from './helpers/tls-certs.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-node-tls.test.ts SKIPPED: ${reason}\n`);
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

const pushedTo = (f: FakeTerminal) =>
  f.received.filter((x) => x.command === Command.PUT_USERS && x.kind === FrameKind.REQUEST).flatMap((x) => decodePutUsersRequest(x.payload).records.map((r) => decodeUser(r).user.id));

describe.skipIf(reason !== null)(`dial-in to a cluster node: TLS and admission${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let pki: Pki;
  const cleanups: (() => unknown)[] = [];
  beforeAll(async () => {
    server = await startPostgres();
    pki = makePki();
  }, 60_000);
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    pki?.cleanup();
    await server?.stop();
  });

  /** one cluster node on a fresh database, listening on plain TCP (port 0 of listenPorts) and TLS (port 1) */
  async function node(o: Partial<ClusterNodeOptions> = {}): Promise<{ n: ClusterNode; store: PgSiteStore; events: (type: string, terminalId?: string) => Promise<{ terminal_id: string | null; detail: string | null }[]> }> {
    const url = await server.createDatabase();
    const store = await PgSiteStore.open({ url, writerId: 'node-a', logger: log });
    await store.setSyncMode('all');
    const n = await ClusterNode.start({
      store,
      targets: [],
      commKey: DEV_COMM_KEY,
      leaseSec: 3,
      renewEveryMs: 500,
      log,
      heartbeatSec: 2,
      requestTimeoutMs: 5000,
      listen: { host: '127.0.0.1', port: 0 },
      tlsListen: [{ host: '127.0.0.1', port: 0, tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, requireClientCert: true } }],
      autoApprove: true,
      ...o,
    });
    cleanups.push(async () => {
      await n.stop();
      await store.close();
    });
    const events = async (type: string, terminalId?: string) =>
      (await store.db.query<{ terminal_id: string | null; detail: string | null }>('SELECT terminal_id, detail FROM events WHERE type = $1 AND ($2::text IS NULL OR terminal_id = $2) ORDER BY id', [type, terminalId ?? null])).rows;
    return { n, store, events };
  }

  async function fake(port: number, deviceId: number): Promise<FakeTerminal> {
    const f = await FakeTerminal.connect({ port, key: DEV_COMM_KEY, localAddress: '127.0.0.1', deviceId });
    cleanups.push(() => f.close());
    return f;
  }

  it('a terminal dials in over TLS with a client certificate: leased, bound to the certificate, syncing; a site-key session without it is held pending until approved', { timeout: 90_000 }, async () => {
    const { n, store, events } = await node();
    expect(n.listenPorts).toHaveLength(2);
    const sim = await Simulator.start({ terminals: 1, deviceIdBase: 3000, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: n.listenPorts[1]! }, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, reconnect: { minMs: 30, maxMs: 150 } });
    cleanups.push(() => sim.close());
    await waitFor(() => n.leases.token('3001') !== undefined, { timeoutMs: 20_000, message: 'the TLS dial-in terminal was not leased' });
    const row = (await store.getTerminal('3001'))!;
    expect(row.direction).toBe('listen');
    expect(JSON.parse(row.identity!)).toEqual({ kind: 'cert', sha256: pki.client.fingerprint.replace(/:/g, '').toLowerCase() });
    // both ways over the TLS session
    const enrolled = userFromJson({ id: '31', name: 'Over TLS', cards: [{ type: 1, data: 'aa31' }] });
    await sim.terminal(1)!.enroll(enrolled);
    await waitFor(async () => (await store.getUser('31')) !== null, { timeoutMs: 20_000, message: 'the enrollment over TLS was not stored' });
    await store.putUser(userFromJson({ id: '32', name: 'From Server', cards: [{ type: 1, data: 'aa32' }] }));
    const server32 = (await store.getUser('32'))!;
    await waitFor(() => { const h = sim.terminal(1)!.getUser('32'); return h !== undefined && usersEqual(h, server32); }, { timeoutMs: 20_000, message: 'the server user did not reach the TLS terminal' });
    // (a session dropped and redialed under load would add a pair of lease events: the first is what matters)
    expect(JSON.parse((await events('TERMINAL_LEASE_ACQUIRED', '3001'))[0]!.detail!)).toEqual({ daemon: 'node-a', token: expect.any(Number), previousOwner: null, dialIn: true });

    // the terminal goes; its lease goes back
    await sim.close();
    await waitFor(() => n.leases.token('3001') === undefined, { timeoutMs: 20_000, message: 'the lease was not given back when the session ended' });
    await waitFor(async () => (await events('TERMINAL_LEASE_LOST', '3001')).length === (await events('TERMINAL_LEASE_ACQUIRED', '3001')).length, { timeoutMs: 10_000, message: 'the lease given back was not recorded' });
    expect(JSON.parse((await events('TERMINAL_LEASE_LOST', '3001')).at(-1)!.detail!)).toMatchObject({ daemon: 'node-a', reason: 'released' });

    // the site key alone, without the certificate, even from the same address: held pending, no lease, no pushes
    const impostor = await fake(n.listenPorts[0]!, 3001);
    expect(await impostor.handshake()).toBe(Status.OK);
    await waitFor(() => n.pendingTerminals().includes('3001'), { timeoutMs: 20_000, message: 'the session without the certificate was not held pending' });
    await waitFor(async () => (await events('PEER_IDENTITY_MISMATCH', '3001')).length === 1, { timeoutMs: 10_000, message: 'the mismatch was not recorded' });
    expect(JSON.parse((await events('PEER_IDENTITY_MISMATCH', '3001'))[0]!.detail!).reason).toMatch(/client certificate/);
    expect(n.leases.token('3001')).toBeUndefined();
    await store.putUser(userFromJson({ id: '33', name: 'Not For Impostors', cards: [{ type: 1, data: 'aa33' }] }));
    await new Promise((r) => setTimeout(r, 500));
    expect(pushedTo(impostor)).toEqual([]);

    // an administrator approves it: bound to what it presented (its address), leased, and it receives the users
    expect(await n.approve('3001')).toBe(true);
    expect(JSON.parse((await store.getTerminal('3001'))!.identity!)).toEqual({ kind: 'address', net: '127.0.0.1/32' });
    expect(n.leases.token('3001')).toBeDefined();
    await waitFor(() => pushedTo(impostor).includes('33'), { timeoutMs: 20_000, message: 'the approved terminal did not receive the users' });
  });

  it('--auto-approve-from: a new device outside the ranges is recorded but held pending; --auto-approve-rate: new devices beyond it are refused and recorded', { timeout: 60_000 }, async () => {
    const { n, store, events } = await node({ admission: { autoApprove: true, autoApproveFrom: [parseCidr('10.0.0.0/8')!], newDeviceRate: { ratePerSec: 0.001, burst: 1 } } });
    const first = await fake(n.listenPorts[0]!, 4001);
    expect(await first.handshake()).toBe(Status.OK);
    await waitFor(() => n.pendingTerminals().includes('4001'), { timeoutMs: 20_000, message: 'a device outside --auto-approve-from was not held pending' });
    const row = (await store.getTerminal('4001'))!;
    expect(row.approved).toBe(false);
    expect(n.leases.token('4001')).toBeUndefined();
    await waitFor(async () => (await events('TERMINAL_PENDING', '4001')).length === 1, { timeoutMs: 10_000, message: 'TERMINAL_PENDING not recorded' });

    // the burst of new device IDs is spent: the next new one is refused, not recorded, and the refusal is an event
    const second = await fake(n.listenPorts[0]!, 4002);
    expect(await second.handshake()).toBe(Status.OK);
    await second.closed;
    expect(await store.getTerminal('4002')).toBeNull();
    await waitFor(async () => (await events('NEW_DEVICE_REFUSED')).length === 1, { timeoutMs: 10_000, message: 'NEW_DEVICE_REFUSED not recorded' });
    expect(JSON.parse((await events('NEW_DEVICE_REFUSED'))[0]!.detail!)).toMatchObject({ deviceId: 4002 });
  });
});
