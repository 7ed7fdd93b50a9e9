// The naive baseline: what people write with a terminal client library.
//
//   for each enrollment event (in the order they arrive):
//     read that user from the terminal it was enrolled on (one GET_USERS, one user)
//     for each other terminal, one at a time:
//       write that user (one PUT_USERS, one user), wait for the answer
//
// Connections are opened once and reused (the friendliest reading of "connect
// or reuse a connection"); no coalescing, no batching, no parallelism, no
// database. It speaks the same protocol with the same handshake as the daemon
// (src/drivers/termsync/connection.ts is the server side of the handshake, and
// src/drivers/termsync/protocol-link.ts the typed commands), against the same simulator.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { EventCode, ORIGIN_DEVICE } from '../src/codec/index.js';
import type { UserRecord } from '../src/model/user.js';
import type { Simulator } from '../src/sim/simulator.js';
import { TerminalConnection } from '../src/drivers/termsync/connection.js';
import { ProtocolLink } from '../src/drivers/termsync/protocol-link.js';
import type { Scenario } from './scenario.js';

export interface NaiveResult {
  enrollments: number;
  writes: number;
  /** first enrollment started -> last write answered */
  convergenceMs: number;
  /** every terminal holds every enrolled user (checked on the simulator) */
  complete: boolean;
}

async function connect(port: number, commKey: Buffer): Promise<ProtocolLink> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const conn = await TerminalConnection.handshake({
    socket,
    keyFor: () => commKey,
    heartbeatSec: 60,
    requestTimeoutMs: 60_000,
    log: pino({ level: 'silent' }),
  });
  return new ProtocolLink(conn);
}

/**
 * Runs the enrollments of `scenario` (at maximum speed, as the replayer does)
 * on `sim` and syncs them the naive way. `sim` must be fresh (no daemon).
 */
export async function runNaive(sim: Simulator, scenario: Scenario, commKey: Buffer): Promise<NaiveResult> {
  const ports = sim.ports();
  const links = await Promise.all(ports.map((p) => connect(p, commKey)));
  const enrolls = scenario.actions.filter((a): a is Extract<typeof a, { op: 'enroll' }> => a.op === 'enroll');
  const queue: { term: number; userId: string }[] = [];
  let wake: (() => void) | null = null;
  // subscribe to every terminal's log from its newest event
  await Promise.all(
    links.map(async (link, i) => {
      const info = await link.info();
      await link.subscribe(info.lastEventId, (_epoch, events) => {
        for (const e of events) {
          if (e.param === ORIGIN_DEVICE && e.code === EventCode.USER_ENROLL_SUCCESS) queue.push({ term: i, userId: e.userId });
        }
        link.ack(events[events.length - 1].id);
        wake?.();
      });
    }),
  );

  const t0 = performance.now();
  let lastWrite = t0;
  let writes = 0;
  // the people at the terminals: each terminal enrolls its users back to back
  const byTerm = new Map<number, UserRecord[]>();
  for (const a of enrolls) {
    let l = byTerm.get(a.term);
    if (!l) byTerm.set(a.term, (l = []));
    l.push(a.user);
  }
  const people = Promise.all([...byTerm].map(async ([term, users]) => {
    for (const u of users) await sim.terminal(term)!.enroll(u);
  }));

  // the naive sync loop
  let done = 0;
  while (done < enrolls.length) {
    const next = queue.shift();
    if (!next) {
      await new Promise<void>((r) => (wake = r));
      wake = null;
      continue;
    }
    const [got] = await links[next.term].getUsers([next.userId]);
    if (got.user) {
      for (let j = 0; j < links.length; j++) {
        if (j === next.term) continue;
        await links[j].putUsers([got.user]);
        writes++;
        lastWrite = performance.now();
      }
    }
    done++;
  }
  await people;
  await Promise.all(links.map((l) => l.close('shutdown')));
  const complete = sim.terminals.every((t) => enrolls.every((a) => t.getUser(a.user.id) !== undefined));
  return { enrollments: enrolls.length, writes, convergenceMs: lastWrite - t0, complete };
}
