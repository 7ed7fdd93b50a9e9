// A hung terminal: its process is stopped (SIGSTOP), so its kernel still
// accepts and acknowledges TCP and keepalive cannot tell. The daemon's
// application heartbeat must tear the session down within 1.5 heartbeat
// intervals of the last frame received (plus the checker's tick), other
// terminals must go on, and the terminal must reconnect and sync once it wakes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../src/daemon.js';
import { userToJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { spawnSim } from './helpers/child.js';
import { person } from './helpers/faults.js';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('hung terminal (SIGSTOP)', () => {
  it('the heartbeat tears the session down within 1.5 intervals of the last frame; it reconnects when the terminal wakes', async () => {
    const HEARTBEAT_MS = 1000;
    const TICK_MS = HEARTBEAT_MS / 4; // the heartbeat checks every quarter interval
    const dir = mkdtempSync(join(tmpdir(), 'termsync-hung-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const child = await spawnSim({ terminals: 1, deviceIdBase: 7000, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanups.push(() => {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    });
    const sim = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanups.push(() => sim.close());

    // every frame the daemon receives is logged (--log-frames) with its time: that is "the last frame"
    const rx: { t: number; terminal: string }[] = [];
    const log = pino(
      { level: 'debug', timestamp: pino.stdTimeFunctions.epochTime },
      {
        write(line: string) {
          const o = JSON.parse(line) as { msg?: string; time: number; terminal?: string };
          if (o.msg === '<' && o.terminal) rx.push({ t: o.time, terminal: o.terminal });
        },
      },
    );
    const daemon = await Daemon.start({
      db: join(dir, 'termsync.db'),
      log,
      logFrames: true,
      commKey: DEV_COMM_KEY,
      terminals: [
        { id: 'h1', host: '127.0.0.1', port: child.ready.ports[0] },
        { id: 't2', host: '127.0.0.1', port: sim.ports()[0] },
      ],
      syncMode: 'all',
      heartbeatSec: HEARTBEAT_MS / 1000,
      requestTimeoutMs: 10_000, // longer than the heartbeat: the heartbeat must be what notices
      handshakeDeadlineMs: 1000,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
    });
    cleanups.push(() => daemon.stop(500));
    const state = (id: string) => daemon.terminals().find((t) => t.id === id)!.state;
    await waitFor(() => state('h1') === 'online' && state('t2') === 'online');

    // the link works before the hang
    await child.call('enroll', { user: userToJson(person('before')) });
    await waitFor(() => sim.terminals[0].getUser('before') !== undefined);
    // let a couple of heartbeats pass so the last frame is a PING answer, not sync traffic
    await new Promise((r) => setTimeout(r, 1200));

    child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await waitFor(() => daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 'h1' }).length > 0, { timeoutMs: 6000, message: 'the hung session was not torn down' });
    const [off] = daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 'h1' });
    expect(off.detail).toContain('heartbeat');
    const lastRx = Math.max(...rx.filter((r) => r.terminal === 'h1' && r.t <= off.time).map((r) => r.t));
    // the PING answers kept coming until the process stopped
    expect(lastRx).toBeGreaterThanOrEqual(stoppedAt - HEARTBEAT_MS - TICK_MS - 300);
    expect(lastRx).toBeLessThanOrEqual(stoppedAt + 300);
    const silentMs = off.time - lastRx;
    // not before 1.5 intervals of silence, and no later than 1.5 intervals + one tick (+ a margin for a busy machine)
    expect(silentMs).toBeGreaterThanOrEqual(1.5 * HEARTBEAT_MS - 5);
    expect(silentMs).toBeLessThanOrEqual(1.5 * HEARTBEAT_MS + TICK_MS + 500);

    // the other terminal is unaffected while h1 hangs
    expect(state('t2')).toBe('online');
    await sim.terminals[0].enroll(person('during'));
    await waitFor(() => daemon.store.getUser('during') !== null);

    child.kill('SIGCONT');
    await waitFor(() => daemon.store.listEvents({ type: 'TERMINAL_ONLINE', terminalId: 'h1', after: off.id }).length > 0, { timeoutMs: 10_000, message: 'the terminal did not reconnect after waking' });
    await waitFor(async () => (await child.call('getUser', { userId: 'during' })) !== null, { message: 'the woken terminal did not receive what it missed' });
    await child.call('enroll', { user: userToJson(person('after')) });
    await waitFor(() => sim.terminals[0].getUser('after') !== undefined);
  });
});
