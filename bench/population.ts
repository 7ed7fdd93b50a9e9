// A large, deterministic population of users for the restart bench: user i is
// the same record wherever it is made (the SQLite seeder in the bench process,
// the simulated terminals in their own process), so both sides hold equal users
// without shipping a million records between processes.
import Database from 'better-sqlite3';
import { emptyUser, type UserRecord } from '../src/model/user.js';
import { Store } from '../src/store/store.js';
import { UserTables } from '../src/store/users.js';
import { makeCard } from './scenario.js';

const FIRST = ['Ana', 'Ben', 'Chen', 'Dara', 'Emil', 'Fatima', 'Goran', 'Hana', 'Ivo', 'Jana', 'Kofi', 'Lea', 'Mateo', 'Nina', 'Omar', 'Pia'];
const LAST = ['Novak', 'Schmidt', 'Okafor', 'Rossi', 'Kim', 'Silva', 'Horvat', 'Dubois', 'Nakamura', 'Lindqvist', 'Haddad', 'Zoë-Maria'];
const EMPTY = Buffer.alloc(0);

/** the ID of user i (fixed width: ID order is index order) */
export function populationId(i: number): string {
  return `p${String(i).padStart(8, '0')}`;
}

/** User i of the population: a name, one card unique to it, one access group of eight. */
export function populationUser(i: number): UserRecord {
  const id = populationId(i);
  const u = emptyUser(id);
  // nobody mutates these in place: one empty buffer for all (a million users are a lot of small objects)
  u.photo = EMPTY;
  u.pinHash = EMPTY;
  u.name = `${FIRST[i % FIRST.length]} ${LAST[Math.floor(i / FIRST.length) % LAST.length]} ${i}`;
  u.cards.push(makeCard(id, 0));
  u.accessGroups.push(1 + (i % 8));
  return u;
}

/**
 * Writes users 0..n-1 into a fresh termsync database at `file` (the schema made
 * by Store.open, the rows by the store's own UserTables), in big transactions.
 * Returns the time it took.
 */
export function seedPopulation(file: string, n: number, progress?: (done: number) => void): number {
  const t0 = Date.now();
  Store.open(file).close(); // schema and migrations
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    // the name and card indexes take inserts all over: keep their pages in memory (256 MB)
    db.pragma('cache_size = -262144');
    const tables = new UserTables(db);
    const now = Date.now();
    const BATCH = 50_000;
    for (let from = 0; from < n; from += BATCH) {
      const to = Math.min(n, from + BATCH);
      db.transaction(() => {
        for (let i = from; i < to; i++) tables.write(populationUser(i), null, now, i + 1); // feed number i+1: the population is the feed
      })();
      progress?.(to);
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return Date.now() - t0;
}
