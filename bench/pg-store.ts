// The PostgreSQL backend next to SQLite, at the store level (no daemon, no
// terminals: the daemon does not run on PostgreSQL yet), on a throwaway
// PostgreSQL started like the tests' (fsync off: these figures are the
// store's CPU and round trips, not a disk's fsync rate):
//   ingest: device users merged per second, batches of 200 (one transaction
//     each, as the engine's ingest), SQLite vs PostgreSQL, one writer;
//   scaling: 1, 2 and 3 writer PROCESSES (daemons) ingesting distinct users
//     at once into one PostgreSQL: users per second in total;
//   feed reads: batches of 200 read by 50 terminals from their cursors;
//   lease failover: 3 daemons x 30 terminals at the default --lease-sec 10,
//     one stops renewing: time until the others hold its terminals.
// Run: npx tsx bench/pg-store.ts [--users N] [--skip-failover]
// Writes bench/results/pg-store.json and prints a summary.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LeaseManager } from '../src/cluster/leases.js';
import type { SiteStore } from '../src/store/backend.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { PgDatabase } from '../src/store/pg/db.js';
import { SqliteSiteStore } from '../src/store/sqlite-backend.js';
import { Store } from '../src/store/store.js';
import { findPostgres, startPostgres } from '../test/helpers/postgres.js';
import { makeUser, prng } from './scenario.js';

const BATCH = 200;

async function ingestRun(store: SiteStore, terminal: string, prefix: string, users: number): Promise<number> {
  await store.upsertTerminal({ id: terminal, direction: 'dial', approved: true });
  const rand = prng(users + prefix.length);
  const recs = Array.from({ length: users }, (_, i) => makeUser(`${prefix}${String(i).padStart(7, '0')}`, rand, { pin: true, cards: 1, fingers: 1 }));
  const t = performance.now();
  for (let i = 0; i < recs.length; i += BATCH) {
    const merges = recs.slice(i, i + BATCH).map((user, k) => ({ user, ctx: { terminalId: terminal, eventId: i + k + 1 } }));
    await store.ingest({ terminalId: terminal, merges, advance: { logEpoch: 1, cursor: i + merges.length } });
  }
  return users / ((performance.now() - t) / 1000);
}

async function feedReadRun(store: SiteStore, terminals: number): Promise<{ batchesPerSec: number; recordsPerSec: number }> {
  const ids = Array.from({ length: terminals }, (_, i) => `r${i}`);
  for (const id of ids) await store.upsertTerminal({ id, direction: 'dial', approved: true });
  let batches = 0;
  let records = 0;
  const t = performance.now();
  for (const id of ids) {
    for (;;) {
      const b = await store.readFeed(id, { limit: BATCH });
      if (!b.entries.length) break;
      batches++;
      records += b.entries.length;
      await store.recordPush({ terminalId: id, feed: { from: b.from, to: b.upTo } });
    }
  }
  const s = (performance.now() - t) / 1000;
  return { batchesPerSec: batches / s, recordsPerSec: records / s };
}

/** child mode: one writer process ("daemon") */
async function writer(url: string, name: string, users: number): Promise<void> {
  const store = await PgSiteStore.open({ url, listen: false, writerId: name });
  // wait for the parent's go, so every writer starts together
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.destroy(); // or the open pipe keeps this process alive
  const t = performance.now();
  const rate = await ingestRun(store, name, `${name}-`, users);
  process.stdout.write(JSON.stringify({ rate, ms: performance.now() - t }) + '\n');
  await store.close();
}

async function scaling(url: string, procs: number, users: number): Promise<{ totalPerSec: number; perWriter: number[] }> {
  const children = Array.from({ length: procs }, (_, i) =>
    spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--writer', url, `w${procs}x${i}`, String(users)], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  const outs = children.map(
    (c) =>
      new Promise<{ rate: number; ms: number }>((resolve, reject) => {
        let buf = '';
        c.stdout!.on('data', (d: Buffer) => (buf += d.toString()));
        c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(buf.trim().split('\n').pop()!)) : reject(new Error(`writer exited ${code}`))));
      }),
  );
  await new Promise((r) => setTimeout(r, 1500)); // let them connect
  const t = performance.now();
  for (const c of children) c.stdin!.end('go\n');
  const res = await Promise.all(outs);
  const wall = (performance.now() - t) / 1000;
  return { totalPerSec: (procs * users) / wall, perWriter: res.map((r) => Math.round(r.rate)) };
}

async function failover(url: string): Promise<{ ttlMs: number; heartbeatMs: number; takeoverMs: number }> {
  const db = await PgDatabase.open({ url });
  const terminals = Array.from({ length: 30 }, (_, i) => `f${i}`);
  const ms = ['d1', 'd2', 'd3'].map((id) => new LeaseManager({ db, daemonId: id, terminals: () => terminals }));
  await Promise.all(ms.map((m) => m.start()));
  const held = () => ms.map((m) => m.heldTerminals().length);
  while (held().join() !== '10,10,10') await new Promise((r) => setTimeout(r, 100));
  ms[2]!.halt();
  const t = performance.now();
  while (held()[0]! + held()[1]! < 30) await new Promise((r) => setTimeout(r, 20));
  const takeoverMs = performance.now() - t;
  for (const m of ms.slice(0, 2)) await m.stop();
  await db.close();
  return { ttlMs: ms[0]!.ttlMs, heartbeatMs: ms[0]!.renewEveryMs, takeoverMs: Math.round(takeoverMs) };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--writer') return writer(args[1]!, args[2]!, Number(args[3]));
  const users = Number(args[args.indexOf('--users') + 1] || 0) || 10_000;
  const { reason } = findPostgres();
  if (reason) {
    console.error(`bench/pg-store.ts: ${reason}`);
    process.exit(2);
  }
  const say = (m: string) => process.stderr.write(`[pg-store] ${m}\n`);
  say('starting PostgreSQL');
  const server = await startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'termsync-pgbench-'));
  // interrupted: take the server down with us
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void server.stop().finally(() => process.exit(130));
    });
  }
  try {
    say('SQLite ingest');
    const lite = new SqliteSiteStore(Store.open(join(dir, 'bench.db')));
    const sqliteIngest = await ingestRun(lite, 'T', 'u', users);
    const sqliteFeed = await feedReadRun(lite, 50);
    await lite.close();

    say('PostgreSQL ingest');
    const pg = await PgSiteStore.open({ url: await server.createDatabase(), listen: false });
    const pgIngest = await ingestRun(pg, 'T', 'u', users);
    const pgFeed = await feedReadRun(pg, 50);
    await pg.close();

    const scale: Record<string, { totalPerSec: number; perWriter: number[] }> = {};
    for (const n of [1, 2, 3]) say(`${n} writer process(es)`), (scale[n] = await scaling(await server.createDatabase(), n, Math.round(users / 2)));

    say('lease failover');
    const fo = args.includes('--skip-failover') ? null : await failover(await server.createDatabase());
    const result = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '?' },
      users,
      batch: BATCH,
      ingestUsersPerSec: { sqlite: Math.round(sqliteIngest), postgres: Math.round(pgIngest) },
      feedRead50Terminals: {
        sqlite: { batchesPerSec: Math.round(sqliteFeed.batchesPerSec), recordsPerSec: Math.round(sqliteFeed.recordsPerSec) },
        postgres: { batchesPerSec: Math.round(pgFeed.batchesPerSec), recordsPerSec: Math.round(pgFeed.recordsPerSec) },
      },
      postgresWriters: Object.fromEntries(Object.entries(scale).map(([k, v]) => [k, { totalPerSec: Math.round(v.totalPerSec), perWriter: v.perWriter }])),
      leaseFailover: fo,
      when: new Date().toISOString(),
    };
    writeFileSync(join(import.meta.dirname, 'results', 'pg-store.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await server.stop();
  }
}

await main();
