// Shared bits of the fault and security tests: a seeded PRNG, people to enroll,
// a read-only look at a daemon's database from outside the daemon, and a
// convergence check of simulated terminals against it.
import { prng as mulberry32 } from '../../bench/scenario.js';
import { userFromJson, type UserRecord } from '../../src/model/user.js';
import type { Simulator } from '../../src/sim/simulator.js';
import { Store } from '../../src/store/store.js';
import { usersEqual } from '../../src/model/merge.js';

/** A seeded random source (a failure names its seed and reproduces). */
export function prng(seed: number) {
  const next = mulberry32(seed);
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)] };
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
    return { users, outbox: store.owedCount(), integrity };
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
