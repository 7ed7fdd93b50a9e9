// A terminal that keeps to its subscription window but streams log events as
// fast as the LOG_ACKs come back (issue 14.5, the delete flood) is slowed to
// its event rate (--terminal-event-rate): past its burst, the daemon holds
// its acknowledgements back, so the terminal's window stays full and it cannot
// send more; nothing is read and discarded, the session is not cut, and the
// other terminals go on. A real daemon with a real SQLite file; the hostile
// terminal is scripted from the codec over loopback (test/engine-peer.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { Command } from '../src/codec/constants.js';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { daemonOptions } from '../src/cli/run.js';
import { userFromJson } from '../src/model/user.js';
import { DEFAULT_EVENT_RATE } from '../src/sync/peer-limit.js';
import { ScriptedPeer } from './engine-peer.js';
import { silent, startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
const peers: ScriptedPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await site?.close();
  site = undefined;
});

/** A log event that names no user: only the window, the rate and the acknowledgements matter. */
const plain = (id: number) => ({ id, dateTime: 0, deviceId: 1, userId: '', code: 0x3300, param: 0, flags: 0 });

const RATE = 20;
const WINDOW = 8;
/** the burst: EVENT_RATE_BURST_SEC (10) seconds' worth */
const BURST = RATE * 10;

describe('the event rate of one terminal (--terminal-event-rate)', () => {
  it('is a flag with a default', () => {
    expect(parseRunConfig(['--insecure-dev-key', '--db=/tmp/x.db']).terminalEventRate).toBe(DEFAULT_EVENT_RATE);
    expect(parseRunConfig(['--insecure-dev-key', '--db=/tmp/x.db', '--terminal-event-rate=50']).terminalEventRate).toBe(50);
    expect(parseRunConfig(['--insecure-dev-key', '--db=/tmp/x.db', '--terminal-event-rate=0']).terminalEventRate).toBe(0);
    // and it reaches the engine
    expect(daemonOptions(parseRunConfig(['--insecure-dev-key', '--terminal-event-rate=50']), silent).engine?.terminalEventRate).toBe(50);
  });

  it('a terminal streaming within its window is slowed to the rate by held-back LOG_ACKs, not cut off; the others go on', async () => {
    site = await startSite({ terminals: 1, daemon: { listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, engine: { terminalEventRate: RATE, subscribeWindow: WINDOW } } });
    const p = await ScriptedPeer.connect({ port: site.daemon.listenPorts[0], deviceId: 7501 });
    peers.push(p);
    await waitFor(() => p.count(Command.SUBSCRIBE_LOG) > 0);
    await site.daemon.engine.idle();

    // keep to the window: send WINDOW events, wait for their LOG_ACK, again, for 3 s
    const t0 = Date.now();
    let id = 0;
    let rounds = 0;
    while (Date.now() - t0 < 3000) {
      p.sendEvents(Array.from({ length: WINDOW }, () => plain(++id)));
      const want = id;
      const deadline = Date.now() + 3000;
      while (!p.acks.includes(want) && Date.now() < deadline && !p.closed) await new Promise((r) => setTimeout(r, 5));
      if (!p.acks.includes(want)) break;
      rounds++;
    }
    const elapsedSec = (Date.now() - t0) / 1000;
    const acked = Math.max(0, ...p.acks);
    // the burst went at once; after it, no more than the rate allowed (plus one window in flight)
    expect(acked).toBeGreaterThanOrEqual(BURST);
    expect(acked).toBeLessThanOrEqual(BURST + RATE * elapsedSec + WINDOW);
    // without the rate the same loop runs thousands of rounds in 3 s; here it waited for its acknowledgements
    expect(rounds).toBeLessThan((BURST + RATE * elapsedSec) / WINDOW + 2);
    // paced, not punished: the session is open, nothing recorded against it
    expect(p.closed).toBe(false);
    expect(site.daemon.store.listEvents({ type: 'PEER_LIMIT_EXCEEDED', terminalId: '7501', limit: 10 })).toEqual([]);
    // the events sent and not yet acknowledged are acknowledged once the rate allows
    await waitFor(() => p.acks.includes(id), { timeoutMs: 15_000, message: 'the last events were never acknowledged' });
    // and the well-behaved terminal is served meanwhile
    site.daemon.putUser(userFromJson({ id: 'rate-1', name: 'Rate One' }));
    await site.waitConverged({ ids: ['t1'], users: ['rate-1'] });
  }, 40_000);

  it('with --terminal-event-rate=0 there is no pacing: every window is acknowledged at once', async () => {
    site = await startSite({ terminals: 1, daemon: { listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, engine: { terminalEventRate: 0, subscribeWindow: WINDOW } } });
    const p = await ScriptedPeer.connect({ port: site.daemon.listenPorts[0], deviceId: 7502 });
    peers.push(p);
    await waitFor(() => p.count(Command.SUBSCRIBE_LOG) > 0);
    let id = 0;
    // far more than the burst a rate of 20 would allow, each window acknowledged
    for (let r = 0; r < 40; r++) {
      p.sendEvents(Array.from({ length: WINDOW }, () => plain(++id)));
      const want = id;
      await waitFor(() => p.acks.includes(want), { message: `window ending at ${want} was not acknowledged` });
    }
    expect(Math.max(...p.acks)).toBe(320);
    expect(p.closed).toBe(false);
  }, 40_000);
});
