// The hostile side of bench/campaigns/hostile.ts, in a process of its own:
// workers open connections to the daemon's listener and send hostile frames
// until --frames have been written.
//
//   node --import tsx bench/campaigns/hostile-client.ts '<json options>'
//
// Sessions (picked at random per connection):
// - pre-auth garbage: 1..8 mutated frames written one at a time;
// - pre-auth flood: 20..300 frames (mutated, valid PINGs, HELLO look-alikes) in one write;
// - pre-auth after HELLO: a valid HELLO, then mutated frames mid-handshake;
// - pre-auth slow: a header announcing a payload, then bytes trickled (a few at a time);
// - post-auth mutated: full handshake with the comm key (auto-approved device
//   IDs 9001..), then mutated vectors with current sequence numbers, one at a time;
// - post-auth flood: full handshake, then thousands of valid but pointless
//   frames (PINGs, LOG_ACKs, unsolicited responses), sometimes ended by a mutated one.
// Counting: before authentication a frame counts as sent when the socket's
// write callback reported no error (the bytes reached the kernel; the daemon
// stops reading a connection at its first bad frame, so the frames after it
// in the same write are not parsed). After authentication a frame counts only
// once the daemon is known to have read it: every batch ends with a PING
// request, and its answer confirms every frame before it (TCP keeps the
// order); a mutated frame is followed by a PING, and confirmed by its answer
// or by the daemon closing the connection. Floods keep at most 2,000
// unconfirmed frames in flight, so they go at the daemon's pace.
// Progress: a JSON line {"progress":..} on stdout every 2 s; at the end
// a line `DONE {json}` with the tallies.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, FrameKind, Status, encodeFrame } from '../../src/codec/index.js';
import { FakeTerminal } from '../../test/helpers/fake-terminal.js';
import { prng } from '../../test/helpers/faults.js';
import { floodFrame, loadVectors, mutate, randomBytes, type Rng } from './mutate.js';

interface Options {
  port: number;
  /** comm key, hex */
  key: string;
  frames: number;
  /** frames per second at most (0: as fast as it goes) */
  rate: number;
  seed: number;
  /** workers sending before authentication, each from its own loopback address */
  preauthWorkers: number;
  /** workers that authenticate (device IDs 9001..) */
  postauthWorkers: number;
}

const o = JSON.parse(process.argv[2] ?? process.env.HOSTILE_OPTS ?? '{}') as Options;
const vectors = loadVectors();
const key = Buffer.from(o.key, 'hex');
const t0 = Date.now();

const tally = {
  sent: 0,
  sentPreauth: 0,
  sentPostauth: 0,
  /** post-auth frames written but never confirmed (the connection closed first) */
  postauthUnconfirmed: 0,
  bytes: 0,
  connections: 0,
  connectRefused: 0,
  closedByDaemon: 0,
  closedByUs: 0,
  handshakes: 0,
  handshakeFailed: 0,
  sessions: {} as Record<string, number>,
  mutations: {} as Record<string, number>,
  writeErrors: 0,
};

function count(kind: string, into: Record<string, number>) {
  into[kind] = (into[kind] ?? 0) + 1;
}

const done = () => tally.sent >= o.frames;

async function pace(): Promise<void> {
  if (!o.rate) return;
  for (;;) {
    const allowed = ((Date.now() - t0) / 1000) * o.rate;
    if (tally.sent < allowed) return;
    await sleep(5);
  }
}

/** Writes bytes holding `frames` frames; counts them once the kernel took them. */
function write(s: net.Socket, bytes: Buffer, frames: number, phase: 'pre' | 'post'): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed || !s.writable) return resolve(false);
    const flushed = s.write(bytes, (err) => {
      if (err) {
        tally.writeErrors++;
        return resolve(false);
      }
      tally.bytes += bytes.length;
      if (phase === 'pre') {
        tally.sent += frames;
        tally.sentPreauth += frames;
      }
      if (flushed) resolve(true);
    });
    if (!flushed) s.once('drain', () => resolve(!s.destroyed));
  });
}

function connect(localAddress: string): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: o.port, localAddress });
    s.once('connect', () => {
      s.removeAllListeners('error');
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', () => {
      tally.connectRefused++;
      resolve(null);
    });
  });
}

/** Waits up to ms for the daemon to close the connection; then closes it ourselves. */
async function finish(s: net.Socket, ms: number): Promise<void> {
  const closed = new Promise<boolean>((r) => {
    if (s.destroyed) return r(true);
    s.once('close', () => r(true));
  });
  const byDaemon = await Promise.race([closed, sleep(ms).then(() => false)]);
  if (byDaemon) tally.closedByDaemon++;
  else tally.closedByUs++;
  s.destroy();
}

const hellos = vectors.filter((v) => v.readUInt16LE(8) === Command.HELLO && v[3] === FrameKind.REQUEST);

function helloLike(r: Rng): Buffer {
  return r.next() < 0.5 && hellos.length ? r.pick(hellos) : mutate(r, r.pick(vectors)).bytes;
}

async function preauthSession(r: Rng, addr: string): Promise<void> {
  const s = await connect(addr);
  if (!s) return sleep(20);
  tally.connections++;
  const k = r.int(10);
  if (k < 5) {
    count('preauth-garbage', tally.sessions);
    for (let n = 1 + r.int(8); n > 0 && !done(); n--) {
      await pace();
      const m = mutate(r, r.pick(vectors));
      count(m.kind, tally.mutations);
      if (!(await write(s, m.bytes, 1, 'pre'))) break;
      await new Promise((res) => setImmediate(res));
    }
    return finish(s, 200);
  }
  if (k < 8) {
    count('preauth-flood', tally.sessions);
    const n = 20 + r.int(280);
    await pace();
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const x = r.next();
      if (x < 0.4) parts.push(encodeFrame({ kind: FrameKind.REQUEST, seq: i + 1, command: Command.PING }));
      else if (x < 0.7) parts.push(helloLike(r));
      else {
        const m = mutate(r, r.pick(vectors));
        count(m.kind, tally.mutations);
        parts.push(m.bytes);
      }
    }
    await write(s, Buffer.concat(parts), n, 'pre');
    return finish(s, 300);
  }
  if (k < 9) {
    count('preauth-after-hello', tally.sessions);
    await pace();
    if (await write(s, r.pick(hellos), 1, 'pre')) {
      for (let n = 1 + r.int(6); n > 0 && !done(); n--) {
        const m = mutate(r, r.pick(vectors), 2);
        count(m.kind, tally.mutations);
        if (!(await write(s, m.bytes, 1, 'pre'))) break;
      }
    }
    return finish(s, 300);
  }
  count('preauth-slow', tally.sessions);
  // a header that announces a payload (or part of one), then the rest a few bytes at a time
  const base = Buffer.from(r.pick(vectors));
  const announce = Buffer.concat([base, randomBytes(r, r.int(300))]);
  await pace();
  let ok = await write(s, announce.subarray(0, 3 + r.int(17)), 1, 'pre');
  for (let off = 20; ok && off < announce.length && !s.destroyed; off += 1 + r.int(8)) {
    await sleep(50 + r.int(200));
    ok = (await write(s, announce.subarray(off, off + 1 + r.int(8)), 0, 'pre')) && !done();
  }
  return finish(s, 500);
}

async function postauthSession(r: Rng, addr: string, deviceId: number): Promise<void> {
  let ft: FakeTerminal;
  try {
    ft = await FakeTerminal.connect({ port: o.port, localAddress: addr, deviceId, key });
  } catch {
    tally.connectRefused++;
    await sleep(50);
    return;
  }
  tally.connections++;
  let st: number;
  try {
    st = await ft.handshake();
  } catch {
    st = Status.AUTH_FAILED;
  }
  if (st !== Status.OK) {
    tally.handshakeFailed++;
    ft.close();
    await sleep(100);
    return;
  }
  tally.handshakes++;
  const s = ft.socket;
  // let the daemon's catch-up requests (GET_INFO, SUBSCRIBE_LOG, LIST_USERS) be answered first, sometimes
  if (r.next() < 0.5) await sleep(r.int(200));
  let seq = 1000;
  // PING seq -> frames written in this session up to and including that PING
  const marks = new Map<number, number>();
  let written = 0;
  let confirmed = 0;
  const confirm = () => {
    for (const f of ft.received) {
      if (f.kind !== FrameKind.RESPONSE || f.command !== Command.PING) continue;
      const upTo = marks.get(f.seq);
      if (upTo === undefined) continue;
      marks.delete(f.seq);
      if (upTo > confirmed) {
        tally.sent += upTo - confirmed;
        tally.sentPostauth += upTo - confirmed;
        confirmed = upTo;
      }
    }
    ft.received.length = 0;
  };
  const ping = () => {
    const q = ++seq;
    return { seq: q, bytes: encodeFrame({ kind: FrameKind.REQUEST, seq: q, command: Command.PING }) };
  };
  const waitConfirmed = async (upTo: number, ms: number) => {
    const until = Date.now() + ms;
    for (confirm(); confirmed < upTo && !ft.isClosed && Date.now() < until; confirm()) await sleep(2);
  };
  if (r.next() < 0.5) {
    count('postauth-mutated', tally.sessions);
    for (let n = 1 + r.int(50); n > 0 && !done() && !ft.isClosed; n--) {
      await pace();
      const m = mutate(r, r.pick(vectors), ++seq);
      count(m.kind, tally.mutations);
      const p = ping();
      marks.set(p.seq, written + 2);
      if (!(await write(s, Buffer.concat([m.bytes, p.bytes]), 2, 'post'))) break;
      written += 2;
      await waitConfirmed(written, 1000);
      if (confirmed < written && ft.isClosed) {
        // closed by the daemon: it read the mutated frame (and refused it); the PING after it never counted
        tally.sent += 1;
        tally.sentPostauth += 1;
        confirmed += 1;
      }
    }
  } else {
    count('postauth-flood', tally.sessions);
    const total = 200 + r.int(3000);
    for (let n = 0; n < total && !done() && !ft.isClosed; ) {
      await pace();
      const k = Math.min(99, total - n);
      const parts: Buffer[] = [];
      for (let i = 0; i < k; i++) parts.push(floodFrame(r, ++seq, 1));
      const p = ping();
      parts.push(p.bytes);
      marks.set(p.seq, written + k + 1);
      if (!(await write(s, Buffer.concat(parts), k + 1, 'post'))) break;
      written += k + 1;
      n += k + 1;
      // at most 2,000 frames in flight: the flood goes at the daemon's pace
      await waitConfirmed(written - 2000, 10_000);
    }
    await waitConfirmed(written, 3000);
    if (r.next() < 0.3 && !ft.isClosed) {
      const m = mutate(r, r.pick(vectors), ++seq);
      count(m.kind, tally.mutations);
      const p = ping();
      marks.set(p.seq, written + 2);
      if (await write(s, Buffer.concat([m.bytes, p.bytes]), 2, 'post')) {
        written += 2;
        await waitConfirmed(written, 1000);
      }
    }
  }
  confirm();
  tally.postauthUnconfirmed += written - confirmed;
  return finish(s, 300);
}

async function worker(i: number, post: boolean): Promise<void> {
  const r = prng(o.seed * 1000 + i + (post ? 500 : 0));
  // its own loopback address, so the daemon's per-address connection limit is per worker
  const addr = `127.0.${post ? 1 : 0}.${2 + i}`;
  while (!done()) {
    if (post) await postauthSession(r, addr, 9001 + i);
    else await preauthSession(r, addr);
  }
}

const progress = setInterval(() => {
  process.stdout.write(JSON.stringify({ progress: { sent: tally.sent, connections: tally.connections, elapsedSec: Math.round((Date.now() - t0) / 1000) } }) + '\n');
}, 2000);
await Promise.all([
  ...Array.from({ length: o.preauthWorkers }, (_, i) => worker(i, false)),
  ...Array.from({ length: o.postauthWorkers }, (_, i) => worker(i, true)),
]);
clearInterval(progress);
process.stdout.write(`DONE ${JSON.stringify({ ...tally, elapsedSec: (Date.now() - t0) / 1000 })}\n`);
process.exit(0);
