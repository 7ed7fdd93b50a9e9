// Link faults against the real daemon, the simulator over loopback TCP and a
// real SQLite file: black-holed links with requests in flight, a connection
// dropped in the middle of PUT_USERS, a terminal that reads at 1 KB/s, a
// terminal reset while connected, and terminal clocks hours off.
import net, { type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Command, EventCode, HEADER_SIZE, MAGIC0, MAGIC1, MAX_PAYLOAD, ORIGIN_SERVER, Status } from '../src/codec/constants.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { usersEqual } from '../src/model/merge.js';
import type { TermsyncSession } from '../src/drivers/termsync/session.js';
import { RequestError } from '../src/drivers/termsync/connection.js';
import { person, prng } from './helpers/faults.js';
import { startThrottleProxy, type ThrottleProxy } from './helpers/proxy.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
let proxy: ThrottleProxy | undefined;
afterEach(async () => {
  await site?.close();
  await proxy?.close();
  site = undefined;
  proxy = undefined;
});

const stateOf = (s: Site, id: string) => s.daemon.terminals().find((t) => t.id === id)!.state;
const eventsOf = (s: Site, type: string, terminalId?: string) => s.daemon.store.listEvents({ type, terminalId, limit: 10_000 });
const linkOf = (s: Site, id: string) => (s.daemon.manager.link(id) as TermsyncSession).link;

describe('black-holed link', () => {
  it('requests in flight each fail by their own deadline and the session is destroyed', async () => {
    site = await startSite({ terminals: 2, daemon: { requestTimeoutMs: 2000, heartbeatSec: 30, handshakeDeadlineMs: 1000 } });
    const conn = linkOf(site, 't2').conn;
    site.sim.terminals[1].blackhole(3000);
    const t0 = Date.now();
    const deadlines = [300, 600, 900];
    const outcomes = await Promise.all(
      deadlines.map((ms) =>
        conn.request(Command.GET_INFO, undefined, ms).then(
          () => ({ ok: true, at: Date.now() - t0, message: '', status: 0 }),
          (e: RequestError) => ({ ok: false, at: Date.now() - t0, message: e.message, status: e.status }),
        ),
      ),
    );
    for (const [k, o] of outcomes.entries()) {
      expect(o.ok).toBe(false);
      expect(o.status).toBe(Status.TIMEOUT);
      expect(o.at).toBeLessThanOrEqual(deadlines[k] + 400);
    }
    // the first one timed out on its own clock; that ended the session, which failed the others at once
    expect(outcomes[0].at).toBeGreaterThanOrEqual(deadlines[0] - 5);
    expect(outcomes[0].message).toContain('timed out after 300 ms');
    expect(outcomes[1].message).toContain('session closed');
    expect(conn.closed).toBe(true);
    await waitFor(() => eventsOf(site!, 'TERMINAL_OFFLINE', 't2').length === 1);
    expect(eventsOf(site, 'TERMINAL_OFFLINE', 't2')[0].detail).toContain('timed out');
    expect(stateOf(site, 't1')).toBe('online');
    // when the black hole ends the terminal is back
    await waitFor(() => stateOf(site!, 't2') === 'online', { timeoutMs: 8000 });
  });

  it('a push into a black hole fails at the request timeout and returns to the outbox; it is delivered after the reconnect', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'server', requestTimeoutMs: 800, heartbeatSec: 30, handshakeDeadlineMs: 1000 } });
    // both sides past the handshake and the first-contact comparison (a black hole that begins
    // while the terminal still waits for the AUTH answer would break the handshake instead)
    await waitFor(() => site!.sim.terminals.every((t) => t.connected) && site!.ids.every((id) => eventsOf(site!, 'RECONCILE', id).length > 0));
    await site.daemon.engine.idle();
    site.sim.terminals[1].blackhole(2500);
    const t0 = Date.now();
    const users = Array.from({ length: 5 }, (_, i) => person(`bh${i}`));
    for (const u of users) site.daemon.putUser(u);
    await waitFor(() => stateOf(site!, 't2') === 'offline', { timeoutMs: 3000, message: 'the black-holed session was not destroyed' });
    const tookMs = Date.now() - t0;
    expect(tookMs).toBeGreaterThanOrEqual(800 - 5);
    expect(eventsOf(site, 'TERMINAL_OFFLINE', 't2')[0].detail).toMatch(/PUT_USERS timed out after 800 ms/);
    // nothing was acknowledged, so all five are still owed to t2; t1 got them meanwhile
    expect(site.daemon.store.owedCount('t2')).toBe(5);
    expect(site.sim.terminals[1].userCount).toBe(0);
    await site.waitConverged({ ids: ['t1'], count: 5 });
    await site.waitConverged({ count: 5, timeoutMs: 10_000 });
    // the terminal holds the users before the daemon has read its answer and settled what it owed
    await site.daemon.engine.idle();
    expect(site.daemon.store.owedCount()).toBe(0);
  });
});

describe('connection dropped in the middle of PUT_USERS', () => {
  it('the terminal stored the batch but the answer was lost: the resend leaves the same state; nothing is lost or doubled', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'server' } });
    const t2 = site.sim.terminals[1];
    t2.timing = { ...ZERO_TIMING, perUserWriteMs: 10 }; // 20 users: 200 ms inside PUT_USERS
    let dropped = 0;
    const handle = t2.handle.bind(t2);
    t2.handle = ((frame, hooks) => {
      if (frame.command === Command.PUT_USERS && dropped === 0) {
        dropped++;
        setTimeout(() => t2.dropConnections(), 30);
      }
      return handle(frame, hooks);
    }) as SimTerminal['handle'];
    const users = Array.from({ length: 20 }, (_, i) => person(`mid${String(i).padStart(2, '0')}`, { pin: String(5000 + i) }));
    for (const u of users) site.daemon.putUser(u);
    await waitFor(() => eventsOf(site!, 'TERMINAL_OFFLINE', 't2').length === 1);
    await site.waitConverged({ count: 20 });
    await site.daemon.engine.idle();
    expect(dropped).toBe(1);
    expect(site.daemon.store.owedCount()).toBe(0);
    expect(t2.userCount).toBe(20);
    for (const u of users) expect(usersEqual(t2.getUser(u.id)!, site.daemon.store.getUser(u.id)!)).toBe(true);
    // the batch really was written twice: first in the dropped session, again after the reconnect
    const serverWrites = new Map<string, number>();
    for (const e of t2.ring.after(0, 10_000)) if (e.param === ORIGIN_SERVER && (e.code === EventCode.USER_ENROLL_SUCCESS || e.code === EventCode.USER_UPDATE_SUCCESS)) serverWrites.set(e.userId, (serverWrites.get(e.userId) ?? 0) + 1);
    // (users acknowledged before the drop were written once; the batch cut off was written twice)
    expect(serverWrites.size).toBe(20);
    expect([...serverWrites.values()].every((n) => n === 1 || n === 2)).toBe(true);
    expect([...serverWrites.values()].filter((n) => n === 2).length).toBeGreaterThan(0);
    // and the server counted each user delivered to t2
    expect(new Set(eventsOf(site, 'USER_UPDATE_SUCCESS_SERVER', 't2').map((e) => e.userId)).size).toBe(20);
  });

  it('pushing the same record twice leaves the terminal in the same state', async () => {
    site = await startSite({ terminals: 1, daemon: { syncMode: 'off' } });
    const t1 = site.sim.terminals[0];
    const link = linkOf(site, 't1');
    const u = person('twice', { pin: '2468', accessGroups: [3, 4], fingers: [{ index: 1, templates: ['aa'.repeat(384), 'bb'.repeat(384)] }] });
    expect(await link.putUsers([u])).toEqual([Status.OK]);
    const first = t1.getUser('twice')!;
    const count = t1.userCount;
    expect(await link.putUsers([u, u])).toEqual([Status.OK, Status.OK]);
    expect(t1.userCount).toBe(count);
    expect(usersEqual(t1.getUser('twice')!, first)).toBe(true);
    expect(usersEqual(t1.getUser('twice')!, u)).toBe(true);
  });
});

describe('slow-reading terminal (1 KB/s)', () => {
  it('at most two PUT_USERS frames in flight, none written into an undrained socket; the rest waits in the outbox; other terminals are unaffected', async () => {
    site = await startSite({ terminals: 2, daemon: { syncMode: 'server', heartbeatSec: 30, requestTimeoutMs: 30_000 } });
    proxy = await startThrottleProxy(site.sim.ports()[1]);
    site.daemon.addTerminal({ id: 't2', host: '127.0.0.1', port: proxy.port });
    await waitFor(() => stateOf(site!, 't2') === 'online' && linkOf(site!, 't2')?.remote.endsWith(`:${proxy!.port}`));
    await site.daemon.engine.idle();
    const t2 = site.sim.terminals[1];
    // 400 users with ten fingers each (two 384-byte templates per finger): about 3 MB of PUT_USERS,
    // owed to t2 while it is away, so its catch-up starts with full batches
    t2.refuse(60_000);
    t2.dropConnections();
    await waitFor(() => stateOf(site!, 't2') === 'offline');
    const tpl = (i: number, k: number) => Buffer.alloc(384, (i + k) & 0xff).toString('hex');
    const users: UserRecord[] = Array.from({ length: 400 }, (_, i) =>
      userFromJson({ id: `slow${String(i).padStart(3, '0')}`, name: `Slow ${i}`, fingers: Array.from({ length: 10 }, (_, k) => ({ index: k, templates: [tpl(i, k), tpl(i, k + 1)] })) }),
    );
    for (const u of users) site.daemon.putUser(u);
    expect(site.daemon.store.owedCount('t2')).toBe(400);
    proxy.setRate(1024);
    const from = proxy.bytesFromDaemon;
    // every write the daemon makes on its socket to the slow terminal, with the socket's state around it;
    // `frame`: the bytes of the frame a write begins (a frame may be written as its header and then its
    // payload's parts, corked), 0 for a write that continues one
    const writes: { bytes: number; frame: number; needDrainBefore: boolean; accepted: boolean; buffered: number }[] = [];
    const write = net.Socket.prototype.write;
    const proxyPort = proxy.port;
    net.Socket.prototype.write = function (this: net.Socket, chunk: Buffer, ...rest: unknown[]) {
      if (this.remotePort !== proxyPort) return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      const needDrainBefore = this.writableNeedDrain;
      const accepted = (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      const starts = chunk.length >= HEADER_SIZE && chunk[0] === MAGIC0 && chunk[1] === MAGIC1;
      writes.push({ bytes: chunk.length, frame: starts ? HEADER_SIZE + chunk.readUInt32LE(12) : 0, needDrainBefore, accepted, buffered: this.writableLength });
      return accepted;
    } as typeof write;
    try {
      t2.refuse(0);
      await waitFor(() => stateOf(site!, 't2') === 'online', { timeoutMs: 8000 });
      const started = Date.now();
      let t1Done = 0;
      while (Date.now() - started < 3000) {
        if (!t1Done && site.converged({ ids: ['t1'], count: 400 })) t1Done = Date.now() - started;
        await new Promise((r) => setTimeout(r, 20));
      }
      const big = writes.filter((w) => w.frame > 64 * 1024);
      // the catch-up started with full PUT_USERS frames, which the terminal is still reading: the engine
      // keeps at most two batches in flight per terminal (the one being answered and the one behind it),
      // so in three seconds at most two large frames were written, not the whole 3 MB ...
      expect(big.length).toBeGreaterThanOrEqual(1);
      expect(big.length, JSON.stringify({ big, offline: eventsOf(site, 'TERMINAL_OFFLINE', 't2').map((e) => e.detail) })).toBeLessThanOrEqual(2);
      // ... none was written while the socket still wanted a drain (on loopback the kernel takes a
      // whole 1 MiB frame, so write() itself rarely says false here) ...
      expect(big.filter((w) => w.needDrainBefore)).toEqual([]);
      // ... and nothing piled up behind it: at most one PUT_USERS frame (plus a few tiny frames) buffered
      expect(Math.max(...writes.map((w) => w.buffered))).toBeLessThanOrEqual(HEADER_SIZE + MAX_PAYLOAD + 1024);
      // what the slow terminal has not taken waits in the outbox on disk, not in memory
      expect(site.daemon.store.owedCount('t2')).toBeGreaterThan(0);
      expect(proxy.bytesFromDaemon - from).toBeLessThan(64 * 1024);
      // the fast terminal got everything meanwhile
      expect(t1Done).toBeGreaterThan(0);
      expect(stateOf(site, 't1')).toBe('online');
    } finally {
      net.Socket.prototype.write = write;
    }
    // full speed again: the slow terminal catches up
    proxy.setRate(null);
    await site.waitConverged({ count: 400, timeoutMs: 20_000 });
    // caught up on the same session: no timeout, no teardown
    expect(eventsOf(site, 'TERMINAL_OFFLINE', 't2').filter((e) => /timed out|heartbeat/.test(e.detail ?? ''))).toEqual([]);
  });
});

describe('terminal reset while connected', () => {
  it('a factory reset under a live session (no reconnect by the terminal) is reconciled within the session and the terminal refilled', async () => {
    site = await startSite({ terminals: 2 });
    for (let i = 0; i < 5; i++) site.daemon.putUser(person(`live${i}`));
    await site.waitConverged({ count: 5 });
    const t2 = site.sim.terminals[1];
    // enough events before the reset that the new epoch's IDs (from 1 again) are below the old ones
    for (let i = 0; i < 4; i++) await t2.enroll(person(`pre${i}`));
    await site.waitConverged({ count: 9 });
    for (let i = 0; i < 12; i++) await t2.edit('pre0', { phrase: `edit ${i}` });
    await waitFor(() => site!.daemon.store.getUser('pre0')!.phrase !== '');
    await site.waitConverged({ count: 9 });
    await site.daemon.engine.idle();
    const oldLast = t2.ring.lastEventId;
    const epoch = t2.ring.logEpoch;
    t2.factoryReset(); // the session stays up; the next LOG_EVENT carries the new epoch
    expect(t2.ring.logEpoch).not.toBe(epoch);
    await waitFor(() => eventsOf(site!, 'TERMINAL_RESET', 't2').length === 1, { timeoutMs: 10_000 });
    await site.waitConverged({ count: 9 });
    expect(t2.userCount).toBe(9);
    // an enrollment under the new epoch has an ID the old epoch had used: it is taken, not skipped as seen
    await t2.enroll(person('after-reset'));
    expect(t2.ring.lastEventId).toBeLessThan(oldLast);
    await site.waitConverged({ count: 10 });
    await site.daemon.engine.idle();
    // the same session all along, and the cursor is (new epoch, last processed)
    expect(eventsOf(site, 'TERMINAL_OFFLINE', 't2')).toEqual([]);
    await waitFor(() => site!.daemon.store.getCursor('t2')!.cursor === t2.ring.lastEventId);
    expect(site.daemon.store.getCursor('t2')).toEqual({ logEpoch: t2.ring.logEpoch, cursor: t2.ring.lastEventId });
  });
});

describe('terminal clocks hours off', () => {
  it('events are taken in event-ID order whatever their timestamps; nothing is skipped, also across a restart', async () => {
    site = await startSite({ terminals: 3 });
    const rnd = prng(0xc10c);
    const HOUR = 3600;
    const skew = (t: SimTerminal, offset: () => number) => {
      const append = t.ring.append.bind(t.ring);
      t.ring.append = ((e: Parameters<typeof append>[0]) => append({ ...e, dateTime: Math.max(0, e.dateTime + offset()) })) as typeof t.ring.append;
    };
    const [t1, t2] = site.sim.terminals;
    skew(t1, () => (rnd.int(25) - 12) * HOUR); // jumps back and forth by up to 12 hours, event to event
    skew(t2, () => -9 * HOUR); // a steady nine hours behind
    for (let i = 0; i < 15; i++) {
      await t1.enroll(person(`sk1-${i}`));
      await t2.enroll(person(`sk2-${i}`));
    }
    await site.waitConverged({ count: 30 });
    const times = t1.ring.after(0, 1000).map((e) => e.dateTime);
    expect(times.some((t, k) => k > 0 && t < times[k - 1])).toBe(true); // the clock really went backwards
    // while the daemon is down, t1's clock falls a day behind: the restart must still take those events
    await site.daemon.stop(1000);
    skew(t1, () => -24 * HOUR);
    for (let i = 15; i < 20; i++) await t1.enroll(person(`sk1-${i}`));
    await site.startDaemon();
    await site.waitConverged({ count: 35 });
    for (let i = 0; i < 20; i++) expect(site.daemon.store.getUser(`sk1-${i}`)).not.toBeNull();
    expect(site.daemon.store.getCursor('t1')!.cursor).toBe(t1.ring.lastEventId);
    // the merges were recorded in event-ID order per terminal
    for (const id of ['t1', 't2']) {
      const ids = eventsOf(site, 'USER_UPDATE_SUCCESS_DEVICE', id).map((e) => (JSON.parse(e.detail!) as { eventId: number }).eventId);
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
    }
  });
});
