// SQLite micro-benchmarks of the store's hot paths, on a real file (WAL):
//   merge upserts per second: mergeDeviceUsers one user per transaction vs
//   batches of 200 (a PUT/GET batch);
//   the change feed (mitata): changes written per second (an administrator's
//   change, one transaction each: the user and its feed number, whatever the
//   number of terminals), feed batches read per second (200 entries after a
//   terminal's cursor, one range read, records shared), and the push cycle
//   per record: every one of 49 terminals reads its batch and records the
//   answers (a USER_UPDATE_SUCCESS_SERVER event per user) with its cursor.
// Run: npx tsx bench/store.bench.ts   (or call runStoreBench() from bench/run.ts)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { do_not_optimize, measure } from 'mitata';
import { Store } from '../src/store/store.js';
import { makeUser, prng } from './scenario.js';

export interface StoreBenchResult {
  mergeUnbatchedPerSec: number;
  mergeBatchedPerSec: number;
  batchSize: number;
  /** user records per second through the push cycle: readFeed + recordPush (with an event per user) for each of the other terminals */
  fanoutRecordsPerSec: number;
  fanoutTerminals: number;
  /** feed (mitata): changes written per second, one transaction each */
  feedChangesPerSec: number;
  /** feed (mitata): batches of `feedBatch` entries read per second (users read once, then shared) */
  feedBatchReadsPerSec: number;
  feedBatch: number;
}

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

export async function runStoreBench(o: { users?: number; terminals?: number } = {}): Promise<StoreBenchResult> {
  const N = o.users ?? 4000;
  const T = o.terminals ?? 50;
  const dir = mkdtempSync(join(tmpdir(), 'termsync-storebench-'));
  try {
    const store = Store.open(join(dir, 'bench.db'));
    const ids: string[] = [];
    for (let i = 1; i <= T; i++) {
      store.upsertTerminal({ id: `t${i}`, direction: 'dial', address: `127.0.0.1:${10000 + i}`, approved: true });
      ids.push(`t${i}`);
    }
    const rand = prng(7);
    const users = Array.from({ length: N * 2 }, (_, k) => makeUser(`M${k}`, rand, { cards: 1, fingers: 1, pin: true }));
    // merges, one per transaction
    const single = users.slice(0, N);
    const msSingle = timed(() => {
      for (const u of single) store.mergeDeviceUsers([{ user: u, ctx: { terminalId: 't1', eventId: 1 } }]);
    });
    // merges, 200 per transaction
    const B = 200;
    const batched = users.slice(N);
    const msBatched = timed(() => {
      for (let i = 0; i < batched.length; i += B) store.mergeDeviceUsers(batched.slice(i, i + B).map((u) => ({ user: u, ctx: { terminalId: 't1', eventId: 1 } })));
    });
    // push cycle: the first `fan` users to every other terminal through the feed, in the engine's batch shape
    const fan = Math.min(N, 1000);
    const others = ids.slice(1);
    const fanUsers = single.slice(0, fan);
    for (const t of ids) store.setFeedCursor(t, store.feedHead());
    for (const u of fanUsers) {
      const v = { ...u, name: `${u.name} (changed)` };
      store.putUserFromServer(v);
    }
    const msFan = timed(() => {
      for (const t of others) {
        for (;;) {
          const b = store.readFeed(t, { limit: B });
          if (b.entries.length === 0) break;
          store.recordPush({
            terminalId: t,
            feed: { from: b.from, to: b.upTo },
            ok: b.entries.map((e) => ({ userId: e.userId })),
            events: b.entries.map((e) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: t, userId: e.userId })),
          });
        }
      }
    });
    // feed, mitata: a change written (an administrator's edit, one transaction: the user and its number)
    const opts = { min_cpu_time: 300e6 };
    let k = 0;
    const writeStats = await measure(() => {
      const u = single[k++ % single.length];
      do_not_optimize(store.putUserFromServer({ ...u, name: `edit ${k}` }));
    }, opts);
    // feed, mitata: a batch of B entries read after a terminal's cursor (users shared after the first read)
    const after = Math.max(0, store.feedHead() - 5 * B);
    const readStats = await measure(() => do_not_optimize(store.readFeed('t2', { after, limit: B })), opts);
    store.close();
    return {
      mergeUnbatchedPerSec: Math.round((N * 1000) / msSingle),
      mergeBatchedPerSec: Math.round((N * 1000) / msBatched),
      batchSize: B,
      fanoutRecordsPerSec: Math.round((fan * others.length * 1000) / msFan),
      fanoutTerminals: T,
      feedChangesPerSec: Math.round(1e9 / writeStats.avg),
      feedBatchReadsPerSec: Math.round(1e9 / readStats.avg),
      feedBatch: B,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runStoreBench();
  process.stdout.write(
    [
      `merge upserts, one per transaction:   ${r.mergeUnbatchedPerSec} users/s`,
      `merge upserts, ${r.batchSize} per transaction:  ${r.mergeBatchedPerSec} users/s`,
      `feed: changes written (one transaction each): ${r.feedChangesPerSec}/s`,
      `feed: batches of ${r.feedBatch} entries read: ${r.feedBatchReadsPerSec}/s (${r.feedBatchReadsPerSec * r.feedBatch} entries/s)`,
      `push cycle to ${r.fanoutTerminals - 1} terminals (readFeed + recordPush with events): ${r.fanoutRecordsPerSec} records/s`,
      '',
    ].join('\n'),
  );
}
