// The session manager dials at most maxConcurrentDials terminals at once (TCP
// connect plus handshake); the others wait their turn, so a cold start of
// thousands of terminals does not time out its own handshakes.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { SessionManager } from '../src/terminal/manager.js';
import { silent } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

function manager(max: number, extra: Partial<ConstructorParameters<typeof SessionManager>[0]> = {}) {
  const m = new SessionManager({
    keyFor: () => DEV_COMM_KEY,
    resolveDialIn: () => {
      throw new Error('no dial-in here');
    },
    log: silent,
    heartbeatSec: 5,
    requestTimeoutMs: 5000,
    reconnectMinMs: 60_000,
    reconnectMaxMs: 60_000,
    maxConcurrentDials: max,
    ...extra,
  });
  cleanup.push(() => m.close());
  return m;
}

describe('dial concurrency', () => {
  it('terminals that never answer the handshake hold a dial slot only until the handshake deadline; the rest wait their turn', async () => {
    // dials in progress as the terminals see them: contacted, and not yet given up by the manager
    let failed = 0;
    let mostInProgress = 0;
    const contacted = new Set<number>();
    const servers = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const s = net.createServer((sock) => {
          contacted.add(i);
          mostInProgress = Math.max(mostInProgress, contacted.size - failed);
          sock.on('error', () => {});
        });
        await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
        cleanup.push(() => new Promise((r) => s.close(r)));
        return s;
      }),
    );
    const m = manager(2, { handshakeDeadlineMs: 300 });
    m.on('reconnecting', () => failed++);
    servers.forEach((s, i) => m.addTarget({ id: `t${i}`, host: '127.0.0.1', port: (s.address() as net.AddressInfo).port }));
    expect(m.dialState).toEqual({ dialing: 2, waiting: 3 });
    await waitFor(() => contacted.size === 5, { timeoutMs: 5000 });
    expect(mostInProgress).toBe(2);
    expect(failed).toBeGreaterThanOrEqual(3);
    // every dial failed (and waits for its redial): no slot is left taken
    await waitFor(() => m.dialState.dialing === 0 && m.dialState.waiting === 0, { timeoutMs: 5000 });
  });

  it('every simulated terminal comes online through a few dial slots', async () => {
    const sim = await Simulator.start({ terminals: 20, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    cleanup.push(() => sim.close());
    const m = manager(3);
    let most = 0;
    const online = new Set<string>();
    m.on('online', (id) => {
      online.add(id);
      most = Math.max(most, m.dialState.dialing);
    });
    sim.ports().forEach((port, i) => m.addTarget({ id: `t${i + 1}`, host: '127.0.0.1', port }));
    expect(m.dialState.dialing).toBe(3);
    await waitFor(() => online.size === 20, { timeoutMs: 10_000 });
    expect(m.onlineCount).toBe(20);
    expect(most).toBeLessThanOrEqual(3);
    expect(m.dialState).toEqual({ dialing: 0, waiting: 0 });
  });
});
