import { mkdtempSync } from 'node:fs'; import { tmpdir } from 'node:os'; import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/store/store.js';
import { makeUser, prng } from './scenario.js';
const mode = process.argv[2] ?? 'default';
const dir = mkdtempSync(join(tmpdir(), 'x-'));
const store = Store.open(join(dir, 'b.db'));
if (mode.includes('cache')) store.connection.pragma('cache_size = -65536');
if (mode.includes('ckpt')) store.connection.pragma('wal_autocheckpoint = 10000');
const T = 50, N = 2000, B = 200;
const ids = Array.from({ length: T }, (_, i) => `t${i + 1}`);
for (const id of ids) store.upsertTerminal({ id, direction: 'dial', address: 'x:1', approved: true });
const rand = prng(1);
const users = Array.from({ length: N }, (_, k) => makeUser(`E${k}`, rand, { cards: 1, fingers: 1, pin: true }));
const t0 = performance.now();
let enq = 0, take = 0, ack = 0, get = 0;
for (let i = 0; i < N; i += B) { const s = performance.now(); store.mergeDeviceUsers(users.slice(i, i + B).map((u, k) => ({ user: u, ctx: { terminalId: ids[k % T], eventId: 1, pushTo: ids } }))); enq += performance.now() - s; }
for (const t of ids) for (;;) {
  let s = performance.now(); const items = store.take(t, B); take += performance.now() - s; if (!items.length) break;
  s = performance.now(); store.getUsersShared(items.map((x) => x.userId)); get += performance.now() - s;
  s = performance.now(); store.ackPushed(t, items, items.map((x) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: t, userId: x.userId }))); ack += performance.now() - s;
}
const ms = performance.now() - t0;
console.log(mode, { ms: Math.round(ms), perRecordUs: Math.round((ms * 1000) / (N * (T - 1))), enq: Math.round(enq), take: Math.round(take), get: Math.round(get), ack: Math.round(ack) });
