// Terminals that dial the server (with reconnect and backoff), TLS, and writes
// under backpressure.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { Command, FrameKind, decodeGetLogResponse, encodeGetLogRequest } from '../src/codec/index.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SimClient, startTestServer } from './helpers/sim-client.js';
import { waitFor } from './helpers/wait.js';

const key = DEV_COMM_KEY;
let sim: Simulator | undefined;
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  await sim?.close();
  sim = undefined;
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('dial mode', () => {
  it('every terminal dials the server, authenticates, and redials after the connection is lost', async () => {
    const server = await startTestServer({ key });
    cleanups.push(() => server.close());
    sim = await Simulator.start({ terminals: 3, commKey: key, timing: ZERO_TIMING, dial: `127.0.0.1:${server.port}`, reconnect: { minMs: 20, maxMs: 200 } });
    expect(sim.ports()).toEqual([]);
    const first = await Promise.all([server.next(), server.next(), server.next()]);
    expect(first.map((c) => c.hello.deviceId).sort()).toEqual([1001, 1002, 1003]);
    await waitFor(() => sim!.terminals.every((t) => t.connected));
    const c2 = first.find((c) => c.hello.deviceId === 1002)!;
    await sim.terminals[1].enroll(userFromJson({ id: 'u1' }));
    expect((await c2.getLog(0)).events.map((e) => e.userId)).toEqual(['u1']);
    // the server drops terminal 2's connection: it comes back by itself
    c2.destroy();
    const back = await server.next();
    expect(back.hello.deviceId).toBe(1002);
    expect((await back.getInfo()).lastEventId).toBe(1);
  });

  it('keeps dialling with backoff while the server is away', async () => {
    const port = await freePort();
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port }, reconnect: { minMs: 20, maxMs: 100 } });
    // nobody listens yet; the terminal retries. Now the server appears on that port.
    let connected: SimClient | undefined;
    const srv = net.createServer((s) => {
      void SimClient.accept(s, { key }).then((c) => (connected = c));
    });
    cleanups.push(() => new Promise((r) => srv.close(r)));
    cleanups.push(() => connected?.destroy());
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
    await waitFor(() => connected !== undefined && sim!.terminals[0].connected);
    expect((await connected!.getInfo()).deviceId).toBe(1001);
  });

  it('a server without the key is refused by dialling terminals too', async () => {
    const server = await startTestServer({ key: Buffer.from('not-the-right-key-at-all-0123456') });
    cleanups.push(() => server.close());
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING, dial: `127.0.0.1:${server.port}`, reconnect: { minMs: 20, maxMs: 50 } });
    // connections come and go (the terminal keeps retrying) but never authenticate
    await waitFor(() => server.connections() >= 3, { timeoutMs: 5000 });
    expect(sim.terminals[0].connected).toBe(false);
  });
});

describe('TLS', () => {
  it('a listening terminal speaks the protocol inside TLS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-sim-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    } catch {
      return; // no openssl on this machine: nothing to test with
    }
    const cert = readFileSync(join(dir, 'cert.pem'));
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING, tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
    const socket = tls.connect({ host: '127.0.0.1', port: sim.ports()[0], ca: cert, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    const c = await SimClient.accept(socket, { key });
    cleanups.push(() => c.destroy());
    expect(c.hello.capabilities & 0x4).toBe(0x4);
    expect((await c.getInfo()).deviceId).toBe(1001);
  });
});

describe('backpressure', () => {
  it('a server that stops reading gets every answer, in order, once it reads again', async () => {
    sim = await Simulator.start({ terminals: 1, commKey: key, timing: ZERO_TIMING });
    const t = sim.terminals[0];
    for (let i = 0; i < 1000; i++) await t.enroll(userFromJson({ id: `bp${i}` }));
    const c = await SimClient.connect(sim.ports()[0], { key });
    cleanups.push(() => c.destroy());
    c.socket.pause();
    // 200 pages of 1000 events (about 48 KB each, ~10 MB): more than the socket buffers hold
    const answers = Array.from({ length: 200 }, () => c.request(Command.GET_LOG, encodeGetLogRequest({ afterId: 0, maxCount: 1000 }), 20_000));
    await new Promise((r) => setTimeout(r, 200));
    c.socket.resume();
    const frames = await Promise.all(answers);
    expect(frames.every((f) => f.kind === FrameKind.RESPONSE && decodeGetLogResponse(f.payload).events.length === 1000)).toBe(true);
    const seqs = c.received.filter((f) => f.command === Command.GET_LOG).map((f) => f.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });
});
