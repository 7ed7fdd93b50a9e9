// Database failures under a running daemon: the database refuses writes
// (read-only), is full (PRAGMA max_page_count: the database cannot grow), or
// another process holds the write lock past the busy timeout. Each time:
// "Fail to save to the server DB" is recorded (SERVER_DB_SAVE_FAIL, with the
// reason), nothing is pushed from a change that was not saved, the pushes
// already owed to an offline terminal stay in the outbox, terminals that
// reconnect meanwhile do not bring the daemon down, and once the database
// works again the change is taken in and every terminal converges.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { person, unconvergedTerminals } from './helpers/faults.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await site?.close();
  site = undefined;
});

/** Another process takes the database's write lock (BEGIN IMMEDIATE) and holds it until released. */
async function holdWriteLock(db: string): Promise<{ release(): Promise<void> }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1]);
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write('LOCKED\\n');
    process.stdin.on('data', () => { db.exec('ROLLBACK'); db.close(); process.exit(0); });
  `;
  const p = spawn(process.execPath, ['-e', script, db], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: p.stdout! }).once('line', (l) => (l === 'LOCKED' ? resolve() : reject(new Error(l))));
    p.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  const exited = new Promise((r) => p.once('exit', r));
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    p.stdin!.write('release\n');
    await exited;
  };
  cleanups.push(release);
  return { release };
}

type Mode = 'READONLY' | 'FULL' | 'BUSY';

async function failDatabase(s: Site, mode: Mode): Promise<() => Promise<void>> {
  const db = s.daemon.store.connection;
  switch (mode) {
    case 'READONLY':
      db.pragma('query_only = 1'); // SQLITE_READONLY on every write, as for a read-only file
      return async () => void db.pragma('query_only = 0');
    case 'FULL': {
      const pages = db.pragma('page_count', { simple: true }) as number;
      db.pragma(`max_page_count = ${pages}`); // SQLITE_FULL as soon as the file would grow
      return async () => void db.pragma('max_page_count = 1073741823');
    }
    case 'BUSY': {
      const lock = await holdWriteLock(s.db);
      return () => lock.release();
    }
  }
}

/** a user large enough that storing it always needs new database pages */
function bulky(id: string) {
  return userFromJson({
    id,
    name: `Bulky ${id}`,
    cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }],
    photo: Buffer.alloc(16_000, id.length).toString('hex'),
    faces: [{ index: 0, data: Buffer.alloc(30_000, 7).toString('hex') }],
  });
}

describe('database failures', () => {
  for (const mode of ['READONLY', 'FULL', 'BUSY'] as const) {
    it(`${mode}: the failure is recorded, owed pushes stay queued, reconnects are survived, and the change is taken in afterwards`, async () => {
      site = await startSite({ terminals: 3, daemon: { busyTimeoutMs: 100, dbRetryMs: 50, autoApprove: true, listen: [{ host: '127.0.0.1', port: 0 }] } });
      const s = site;
      // a terminal that dials in (known before the failure) and one that dials in for the first time during it
      const dialIn = (base: number) =>
        Simulator.start({ terminals: 1, deviceIdBase: base, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: s.daemon.listenPorts[0] }, reconnect: { minMs: 50, maxMs: 200 } });
      const known = await dialIn(5000);
      cleanups.push(() => known.close());
      await waitFor(() => s.daemon.terminals().some((t) => t.id === '5001' && t.state === 'online'));
      const state = (id: string) => s.daemon.terminals().find((t) => t.id === id)!.state;
      const [t1, t2, t3] = s.sim.terminals;
      // t3 is away; five server users are owed to it
      t3.refuse(60_000);
      t3.dropConnections();
      await waitFor(() => state('t3') === 'offline');
      for (let i = 0; i < 5; i++) s.daemon.putUser(person(`owed${i}`));
      await s.waitConverged({ ids: ['t1', 't2'], count: 5 });
      expect(s.daemon.store.owedCount('t3')).toBe(5);

      const restore = await failDatabase(s, mode);
      const failuresBefore = s.daemon.engine.stats.dbWriteFailures;
      await t1.enroll(bulky('dev1'));
      await waitFor(() => s.daemon.engine.stats.dbWriteFailures > failuresBefore, { message: 'the failed save was not noticed' });
      // sessions come and go while the database fails: t2 and the dial-in terminal drop, t3 returns,
      // a terminal never seen before dials in
      t2.dropConnections();
      known.terminals[0].dropConnections();
      t3.refuse(0);
      const newcomer = await dialIn(6000);
      cleanups.push(() => newcomer.close());
      await t1.enroll(bulky('dev2'));
      await new Promise((r) => setTimeout(r, 600)); // several retry rounds and reconnect attempts
      expect(s.daemon.store.getUser('dev1')).toBeNull();
      expect(t2.getUser('dev1')).toBeUndefined(); // nothing unsaved was pushed
      // nothing owed was dropped: each owed user is still queued for t3 or t3 already holds it
      const queued = new Set(s.daemon.store.owedUserIds('t3', 100));
      for (let i = 0; i < 5; i++) expect(queued.has(`owed${i}`) || t3.getUser(`owed${i}`) !== undefined).toBe(true);

      await restore();
      await s.waitConverged({ count: 7, timeoutMs: 15_000 });
      await waitFor(() => s.daemon.store.owedCount() === 0);
      expect(['t1', 't2', 't3'].map(state)).toEqual(['online', 'online', 'online']);
      for (const id of ['owed0', 'owed4', 'dev1', 'dev2']) expect(t3.getUser(id)).toBeDefined();
      // the dial-in terminals, the new one included, are online and hold every server user
      await waitFor(() => ['5001', '6001'].every((id) => s.daemon.terminals().some((t) => t.id === id && t.state === 'online')), { message: 'dial-in terminals did not come back' });
      const all = s.daemon.store.listUsers({ limit: 1000 });
      await waitFor(() => [known, newcomer].every((sim) => unconvergedTerminals(sim, all).length === 0), { message: 'dial-in terminals did not converge' });
      // "Fail to save to the server DB", with the reason, kept in memory while the database failed and saved since
      await waitFor(() => s.daemon.store.pendingEventCount === 0);
      const fails = s.daemon.store.listEvents({ type: 'SERVER_DB_SAVE_FAIL', limit: 1000 });
      expect(fails.some((e) => e.userId === 'dev1' && e.terminalId === 't1')).toBe(true);
      expect(JSON.parse(fails[0].detail!).code).toBe(mode);
      expect(s.daemon.store.droppedEventCount).toBe(0);
    });
  }
});
