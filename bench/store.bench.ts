// SQLite micro-benchmarks of the store's hot paths, on a real file (WAL):
//   merge upserts per second: mergeDeviceUsers one user per transaction vs
//   batches of 200 (a PUT/GET batch), with no fan-out;
//   fan-out cycle per pushed record: enqueue for 49 terminals, then per
//   terminal take a batch, read the records (shared), ack with the monitoring
//   event: what the daemon does per user record written to a terminal.
// Run: npx tsx bench/store.bench.ts   (or call runStoreBench() from bench/run.ts)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Store } from '../src/store/store.js';
import { makeUser, prng } from './scenario.js';

export interface StoreBenchResult {
  mergeUnbatchedPerSec: number;
  mergeBatchedPerSec: number;
  batchSize: number;
  /** user records per second through enqueue(49) + take + read + ack */
  fanoutRecordsPerSec: number;
  fanoutTerminals: number;
}

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

export function runStoreBench(o: { users?: number; terminals?: number } = {}): StoreBenchResult {
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
    // fan-out: the first `fan` users to every other terminal, in the engine's batch shape
    const fan = Math.min(N, 1000);
    const others = ids.slice(1);
    const fanIds = single.slice(0, fan).map((u) => u.id);
    const msFan = timed(() => {
      for (let i = 0; i < fanIds.length; i += B) store.enqueueMany(others, fanIds.slice(i, i + B));
      for (const t of others) {
        for (;;) {
          const items = store.take(t, B);
          if (items.length === 0) break;
          store.getUsersShared(items.map((x) => x.userId));
          store.ackPushed(t, items, items.map((x) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: t, userId: x.userId })));
        }
      }
    });
    store.close();
    return {
      mergeUnbatchedPerSec: Math.round((N * 1000) / msSingle),
      mergeBatchedPerSec: Math.round((N * 1000) / msBatched),
      batchSize: B,
      fanoutRecordsPerSec: Math.round((fan * others.length * 1000) / msFan),
      fanoutTerminals: T,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = runStoreBench();
  process.stdout.write(
    [
      `merge upserts, one per transaction:   ${r.mergeUnbatchedPerSec} users/s`,
      `merge upserts, ${r.batchSize} per transaction:  ${r.mergeBatchedPerSec} users/s`,
      `fan-out to ${r.fanoutTerminals - 1} terminals (enqueue+take+read+ack): ${r.fanoutRecordsPerSec} records/s`,
      '',
    ].join('\n'),
  );
}
