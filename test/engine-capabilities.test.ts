// The engine adapts to what a driver declares (src/sync/ports.ts). A driver of
// a terminal without an event log that lists whole records and carries only
// some parts of a user (as a ZK terminal does) is played here by a real
// termsync terminal of the simulator behind a driver registered in the daemon
// under its own protocol name, declaring eventLog 'none', listing 'full-read'
// and fewer parts. What it must give: users compared at every connect (no
// reset or gap recorded for its new epoch each session), compared with
// sameForTerminal (parts it cannot carry are no difference), written as it can
// hold them, and those parts never lost on the server.
import { afterEach, describe, expect, it } from 'vitest';
import { termsyncDriver } from '../src/drivers/termsync/driver.js';
import { ALL_PARTS, fitForTerminal, type PartsSupport } from '../src/model/parts.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { DriverError, type DeviceSession, type DialTarget, type DriverCapabilities, type FeedState, type TerminalDriver, type UserListing } from '../src/sync/ports.js';
import { silent, startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | null = null;
afterEach(async () => {
  await site?.close();
  site = null;
});

/** Fewer parts than the model: no access groups, job codes or photo, one card. */
const FEW: PartsSupport = { ...ALL_PARTS, accessGroups: 0, jobCodes: 0, photo: false, faces: 0, cards: { ...ALL_PARTS.cards, max: 1 } };

let epochs = 0;

/** A session without a log that lists whole records, over a real termsync session. */
function polled(inner: DeviceSession): DeviceSession {
  const capabilities: DriverCapabilities = { eventLog: 'none', realtime: 'none', listing: 'full-read', maxBatch: inner.capabilities.maxBatch, parts: FEW };
  const epoch = ++epochs;
  const feed = (): FeedState => ({ epoch, firstRef: 0, lastRef: 0 });
  return {
    identity: { ...inner.identity, protocol: 'polled' },
    capabilities,
    get remote() {
      return inner.remote;
    },
    get closed() {
      return inner.closed;
    },
    onClose: (fn) => inner.onClose(fn),
    close: (reason) => inner.close(reason),
    feedState: async () => ({ ...feed(), userCount: (await inner.feedState()).userCount }),
    watch: async () => feed(),
    ack: () => {},
    async listUsers(): Promise<UserListing> {
      const listed = await inner.listUsers();
      const ids = listed.kind === 'digest' ? listed.entries.map((e) => e.userId) : listed.users.map((u) => u.id);
      const read = ids.length ? await inner.getUsers(ids) : [];
      return { kind: 'full-read', users: read.flatMap((r) => (r.user ? [r.user] : [])) };
    },
    getUsers: (ids) => inner.getUsers(ids),
    putUsers: (users) => inner.putUsers(users.map((u) => fitForTerminal(u, FEW))),
    deleteUsers: (ids) => inner.deleteUsers(ids),
  };
}

function polledDriver(): TerminalDriver {
  const termsync = termsyncDriver({ heartbeatSec: 2, requestTimeoutMs: 5000, log: silent });
  return { protocol: 'polled', defaultPort: 1, dial: async (t: DialTarget) => polled(await termsync.dial(t)) };
}

const person = (id: string, extra: Record<string, unknown> = {}): UserRecord => userFromJson({ id, name: `Person ${id}`, ...extra });
const events = (type: string, terminalId: string) => site!.daemon.store.listEvents({ type, terminalId, limit: 1000 });

describe('a driver without an event log, listing whole records, carrying fewer parts', () => {
  it('is compared at every connect; parts it cannot carry are no difference and stay on the server', async () => {
    site = await startSite({ terminals: 2, daemon: { drivers: [polledDriver()] } });
    const port = site.sim.ports()[1];
    site.daemon.addTerminal({ id: 't2', host: '127.0.0.1', port, protocol: 'polled', key: DEV_COMM_KEY });
    expect(site.daemon.store.getTerminal('t2')!.protocol).toBe('polled');
    const reconciled = events('RECONCILE', 't2').length;
    await waitFor(() => events('RECONCILE', 't2').length > reconciled && site!.daemon.terminals().find((t) => t.id === 't2')!.state === 'online');
    expect(site.daemon.terminals().find((t) => t.id === 't2')!.protocol).toBe('polled');

    // a server user with parts the terminal cannot carry
    const rich = person('rich', { accessGroups: [1, 2], jobCodes: [{ code: 7, label: 'night' }], cards: [{ type: 3, data: 'aa01' }, { type: 4, data: 'aa02' }] });
    site.daemon.putUser(rich);
    const t2 = site.sim.terminals[1];
    await waitFor(() => t2.getUser('rich') !== undefined, { message: 'the user never reached the terminal' });
    const held = t2.getUser('rich')!;
    expect(held.accessGroups).toEqual([]);
    expect(held.jobCodes).toEqual([]);
    expect(held.cards.map((c) => c.data.toString('hex'))).toEqual(['aa01']);
    // the other terminal carries everything
    await site.waitConverged({ ids: ['t1'], users: ['rich'] });

    // someone enrolls at the terminal: without a log, the next connect finds it
    await t2.enroll(person('walkin', { cards: [{ type: 1, data: 'bb01' }] }));
    const before = events('RECONCILE', 't2').length;
    t2.dropConnections();
    await waitFor(() => events('RECONCILE', 't2').length > before, { timeoutMs: 15_000, message: 'no comparison after the reconnect' });
    await waitFor(() => site!.daemon.store.getUser('walkin') !== null);
    await site.waitConverged({ ids: ['t1'], users: ['walkin'] });
    const last = JSON.parse(events('RECONCILE', 't2').at(-1)!.detail!);
    // only the walk-in differed: the server's record of 'rich' is what the terminal can hold of it
    expect(last).toMatchObject({ pulled: 1, queued: 0 });

    // nothing of 'rich' was lost on the server, and a new epoch each session is no reset or gap
    const kept = site.daemon.store.getUser('rich')!;
    expect(kept.accessGroups).toEqual([1, 2]);
    expect(kept.jobCodes).toEqual([{ code: 7, label: 'night' }]);
    expect(kept.cards).toHaveLength(2);
    expect(events('TERMINAL_RESET', 't2')).toEqual([]);
    expect(events('LOG_GAP', 't2')).toEqual([]);
    expect(site.daemon.store.owedCount('t2')).toBe(0);
  });

  it('a terminal of a protocol without a driver is refused with a clear error', async () => {
    site = await startSite({ terminals: 1 });
    expect(() => site!.daemon.addTerminal({ id: 'x1', host: '127.0.0.1', port: 4370, protocol: 'nope' })).toThrow(/no driver for protocol "nope" \(known: termsync\)/);
    expect(site.daemon.store.getTerminal('x1')).toBeNull();
  });
});

/** A termsync session whose terminal is busy at first: the first GET_USERS fails as a whole, the first pushes come back busy per record. */
function moodyDriver(): TerminalDriver & { busyPuts: number; busyGets: number } {
  const termsync = termsyncDriver({ heartbeatSec: 2, requestTimeoutMs: 5000, log: silent });
  const d = {
    protocol: 'moody',
    defaultPort: 1,
    busyPuts: 2,
    busyGets: 1,
    async dial(t: DialTarget): Promise<DeviceSession> {
      const inner = await termsync.dial(t);
      const s = Object.create(inner) as DeviceSession;
      return Object.assign(s, {
        identity: { ...inner.identity, protocol: 'moody' },
        async putUsers(users: UserRecord[]) {
          if (d.busyPuts > 0) {
            d.busyPuts--;
            return users.map(() => ({ ok: false as const, reason: 'busy' as const, detail: 'terminal busy' }));
          }
          return inner.putUsers(users);
        },
        async getUsers(ids: string[]) {
          if (d.busyGets > 0) {
            d.busyGets--;
            throw new DriverError('busy', 'terminal busy');
          }
          return inner.getUsers(ids);
        },
      });
    },
  };
  return d;
}

describe("a terminal that answers 'busy'", () => {
  it('keeps its session; what it did not take is tried again later in the session, nothing is recorded as refused', async () => {
    const moody = moodyDriver();
    site = await startSite({ terminals: 2, daemon: { drivers: [moody] } });
    const onlineBefore = events('TERMINAL_ONLINE', 't2').length;
    site.daemon.addTerminal({ id: 't2', host: '127.0.0.1', port: site.sim.ports()[1], protocol: 'moody', key: DEV_COMM_KEY });
    await waitFor(() => events('TERMINAL_ONLINE', 't2').length > onlineBefore && site!.daemon.terminals().find((t) => t.id === 't2')!.state === 'online');
    const sessions = events('TERMINAL_ONLINE', 't2').length;
    site.daemon.putUser(person('b1'));
    site.daemon.putUser(person('b2'));
    await site.waitConverged({ users: ['b1', 'b2'], timeoutMs: 15_000 });
    expect(moody.busyPuts).toBe(0);
    await site.sim.terminals[1].enroll(person('b3'));
    await waitFor(() => site!.daemon.store.getUser('b3') !== null, { timeoutMs: 15_000, message: 'the enrolled user was never pulled' });
    expect(moody.busyGets).toBe(0);
    await waitFor(() => site!.daemon.store.owedCount() === 0);
    expect(events('PUSH_FAILED', 't2')).toEqual([]);
    expect(site.daemon.store.listPushFailures({ terminalId: 't2' })).toEqual([]);
    // one session end: the termsync session replaced by the moody one when the protocol changed
    expect(events('TERMINAL_OFFLINE', 't2')).toHaveLength(1);
    expect(events('TERMINAL_ONLINE', 't2')).toHaveLength(sessions);
  });
});
