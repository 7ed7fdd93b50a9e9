// The enrollment burst on Suprema terminals behind a device gateway: termsync's
// daemon next to Suprema's own sync recipe (its tutorial: one enrollment
// terminal; per realtime 0x2000 event, Get the user from it and EnrollMulti it
// to the others, one event after the other).
//
//   npx tsx bench/gsdk-burst.ts                        10 terminals, 1,000 users
//   npx tsx bench/gsdk-burst.ts --terminals=20 --users=2000 --call-ms=2 --write-ms=3
//
// Both run against the mock gateway (src/sim/gsdk) with its timing model: each
// call to a terminal waits --call-ms, an Enroll --write-ms more per user, one
// call at a time per terminal. These figures are assumptions (no real
// terminal was measured), so the result compares the two ways of syncing, not
// real throughput. The users are enrolled at terminal 1 as fast as it takes
// them; measured: first enrollment to every terminal holding every user.
//
// Prints the result and writes bench/results/gsdk-burst.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { Daemon } from '../src/daemon.js';
import { gsdkDriver } from '../src/drivers/gsdk/driver.js';
import { GatewayClient } from '../src/drivers/gsdk/gateway.js';
import type { EventLog, UserInfo } from '../src/drivers/gsdk/proto.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { makeGatewayCerts } from '../src/sim/gsdk/certs.js';
import { GsdkSimGateway } from '../src/sim/gsdk/gateway.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const { values: args } = parseArgs({
  options: {
    terminals: { type: 'string', default: '10' },
    users: { type: 'string', default: '1000' },
    'call-ms': { type: 'string', default: '2' },
    'write-ms': { type: 'string', default: '3' },
    'no-write': { type: 'boolean', default: false },
  },
});
const N = Number(args.terminals);
const USERS = Number(args.users);
const timing = { perCallMs: Number(args['call-ms']), perUserWriteMs: Number(args['write-ms']) };
const log = pino({ level: 'silent' });
const certs = makeGatewayCerts();
const BASE = 7000;
const ids = Array.from({ length: USERS }, (_, i) => String(100_000 + i));

async function gateway(): Promise<GsdkSimGateway> {
  return GsdkSimGateway.start({ devices: Array.from({ length: N }, (_, i) => ({ deviceID: BASE + i + 1, ip: `10.7.0.${i + 1}` })), cert: certs.cert, key: certs.key, timing });
}

async function until(pred: () => boolean, what: string, limitMs = 600_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not done within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const everywhere = (gw: GsdkSimGateway) => () => gw.devices.every((d) => d.userCount >= USERS);

function enrollAll(gw: GsdkSimGateway): void {
  const d = gw.device(BASE + 1);
  for (const id of ids) d.enroll({ id, name: `Burst ${id}`, cards: [{ data: Number(id).toString(16).padStart(8, '0') }] });
}

async function termsyncRun(): Promise<number> {
  const gw = await gateway();
  const dir = mkdtempSync(join(tmpdir(), 'gsdk-bench-'));
  const driver = gsdkDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: certs.ca, requestTimeoutMs: 30_000, log });
  const daemon = await Daemon.start({
    db: join(dir, 'bench.db'),
    log,
    commKey: DEV_COMM_KEY,
    terminals: gw.devices.map((d) => ({ id: `gsdk-${d.deviceID}`, host: '127.0.0.1', port: gw.port, protocol: 'gsdk' })),
    drivers: [driver],
    syncMode: 'all',
    requestTimeoutMs: 30_000,
  });
  try {
    await until(() => gw.devices.every((d) => gw.connected(d.deviceID)) && daemon.terminals().every((t) => t.state === 'online'), 'terminals online');
    await daemon.engine.idle();
    const t0 = performance.now();
    enrollAll(gw);
    await until(everywhere(gw), 'termsync: every user everywhere');
    return performance.now() - t0;
  } finally {
    await daemon.stop(2000);
    driver.close();
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Suprema's tutorial recipe, sequential per event. */
async function recipeRun(): Promise<number> {
  const gw = await gateway();
  const c = new GatewayClient({ host: '127.0.0.1', port: gw.port, ca: certs.ca, requestTimeoutMs: 30_000 });
  try {
    const src = BASE + 1;
    const targets = gw.devices.map((d) => d.deviceID).filter((d) => d !== src);
    await c.call(c.connect, 'SetAcceptFilter', { filter: { allowAll: true, deviceIDs: [], IPAddrs: [], subnetMasks: [] } });
    await c.call(c.event, 'EnableMonitoring', { deviceID: src });
    const stream = (c.event as unknown as { SubscribeRealtimeLog(r: unknown): grpc.ClientReadableStream<EventLog> }).SubscribeRealtimeLog({ queueSize: 100_000, deviceIDs: [src], eventCodes: [] });
    const queue: EventLog[] = [];
    let wake: (() => void) | undefined;
    stream.on('data', (e: EventLog) => {
      queue.push(e);
      wake?.();
    });
    stream.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 200));
    let done = 0;
    const t0 = performance.now();
    const worker = (async () => {
      while (done < USERS) {
        const e = queue.shift();
        if (!e) {
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        if ((e.eventCode & 0xff00) !== 0x2000 && (e.eventCode & 0xff00) !== 0x2200) continue;
        const { users } = await c.call<{ users: UserInfo[] }>(c.user, 'Get', { deviceID: src, userIDs: [e.userID] });
        await c.call(c.user, 'EnrollMulti', { deviceIDs: targets, users, overwrite: true });
        done++;
      }
    })();
    enrollAll(gw);
    await worker;
    await until(everywhere(gw), 'recipe: every user everywhere');
    stream.cancel();
    return performance.now() - t0;
  } finally {
    c.close();
    await gw.close();
  }
}

const termsyncMs = await termsyncRun();
const recipeMs = await recipeRun();
const result = {
  at: new Date().toISOString(),
  terminals: N,
  users: USERS,
  timing,
  termsync: { ms: Math.round(termsyncMs), usersPerSec: Math.round((USERS / termsyncMs) * 1000) },
  recipe: { ms: Math.round(recipeMs), usersPerSec: Math.round((USERS / recipeMs) * 1000) },
  speedup: Math.round((recipeMs / termsyncMs) * 100) / 100,
  machine: { cpus: cpus().length, load1: Math.round(loadavg()[0] * 100) / 100, node: process.version },
};
console.log(JSON.stringify(result, null, 2));
if (!args['no-write']) {
  mkdirSync(join(HERE, 'results'), { recursive: true });
  writeFileSync(join(HERE, 'results', 'gsdk-burst.json'), JSON.stringify(result, null, 2) + '\n');
}
process.exit(0);
