// Shared bits of the fault and security tests: a seeded PRNG, people to enroll,
// a read-only look at a daemon's database from outside the daemon, and a
// convergence check of simulated terminals against it.
import { userFromJson, type UserRecord } from '../../src/model/user.js';
import type { Simulator } from '../../src/sim/simulator.js';
import { Store } from '../../src/store/store.js';
import { usersEqual } from '../../src/sync/merge.js';

/** mulberry32: small, fast, seedable (a failure names its seed and reproduces) */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n) };
}

export function person(id: string, extra: Record<string, unknown> = {}): UserRecord {
  return userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }], ...extra });
}

export interface ServerView {
  users: Map<string, UserRecord>;
  outbox: number;
  integrity: string;
}

/** Opens the database read-only (beside a running daemon, WAL lets it) and reads users, outbox and integrity. */
export function readServer(db: string, opts: { integrity?: boolean } = {}): ServerView {
  const store = Store.open(db, { readonly: true });
  try {
    const users = new Map(store.listUsers({ limit: 10_000_000 }).map((u) => [u.id, u]));
    const integrity = opts.integrity === false ? 'skipped' : String(store.connection.pragma('integrity_check', { simple: true }));
    return { users, outbox: store.outboxCount(), integrity };
  } finally {
    store.close();
  }
}

/** Terminals (1-based indexes) that do not hold every server user exactly as the server does. */
export function unconvergedTerminals(sim: Simulator, users: Iterable<UserRecord>): number[] {
  const list = [...users];
  return sim.terminals
    .filter((t) =>
      list.some((u) => {
        const held = t.getUser(u.id);
        return !held || !usersEqual(held, u);
      }),
    )
    .map((t) => t.index);
}
