// The device-bound limit: how fast a scenario could converge if the server
// cost nothing at all. A terminal serves one command at a time (the
// simulator's timing model says how long each takes), so a terminal cannot
// hold every user before it has done all of its own on-device work and written
// every user it is owed, each no earlier than the moment that user's change
// happened on its origin terminal.
//
// For terminal j, every threshold r gives a lower bound: the work released at
// or after r (own actions starting at or after r, writes of changes completed
// at or after r, at least one PUT_USERS command per maxBatch of those writes)
// must all run after r, one at a time:
//     bound_j = max over r of ( r + work_j(>= r) )
// The scenario's bound is the largest bound_j: the busiest terminal. Pulls
// (GET_USERS on the origin), network and server time are not counted, so no
// implementation can beat it.
import type { TimingModel } from '../src/sim/timing.js';
import type { Scenario } from './scenario.js';

export interface BoundResult {
  boundMs: number;
  /** 1-based terminal that sets the bound */
  busiestTerminal: number;
  perTerminalMs: number[];
  /** user writes the scenario owes the terminals in total */
  writesOwed: number;
}

/**
 * @param speed replay speed (a number: scenario times are divided by it; 'max': actions
 *   start as soon as the terminal is free)
 */
export function deviceBound(s: Scenario, timing: TimingModel, maxBatch: number, speed: number | 'max' = 'max'): BoundResult {
  const T = s.terminals;
  const actionCost = timing.perCommandMs + timing.perUserWriteMs; // enroll/edit on the device
  // 1. when each on-device action could start and finish if its terminal did nothing else
  const free = new Array<number>(T + 1).fill(0);
  const own: { term: number; start: number }[] = [];
  const changes: { origin: number; done: number }[] = [];
  /** per terminal: offline windows [from, to) (to = Infinity while it never returns) */
  const windows: { from: number; to: number }[][] = Array.from({ length: T + 1 }, () => []);
  // at "max" speed an offline/online action waits for every earlier action (replay.ts): a sync point
  let segStart = 0;
  const at = (t: number) => (speed === 'max' ? segStart : t / speed);
  for (const a of s.actions) {
    if (a.op === 'barrier') throw new Error(`scenario ${s.name} waits for convergence midway: no device bound for it`);
    if (a.op === 'offline' || a.op === 'online') {
      if (speed === 'max') segStart = Math.max(segStart, ...free);
      if (a.op === 'offline') windows[a.term].push({ from: at(a.t), to: Infinity });
      else {
        const w = windows[a.term][windows[a.term].length - 1];
        if (w && w.to === Infinity) w.to = at(a.t);
      }
    } else if (a.op === 'enroll' || a.op === 'edit' || a.op === 'edit-to') {
      const start = Math.max(at(a.t), free[a.term]);
      free[a.term] = start + actionCost;
      own.push({ term: a.term, start });
      changes.push({ origin: a.term, done: free[a.term] });
    }
  }
  // 2. per terminal: jobs (release, duration); a write owed to an offline terminal is released when it returns
  const returns = (term: number, t: number): number => {
    for (const w of windows[term]) if (t >= w.from && t < w.to) return w.to;
    return t;
  };
  const per: number[] = [];
  let writesOwed = 0;
  for (let j = 1; j <= T; j++) {
    const jobs: { r: number; own: boolean }[] = [];
    for (const o of own) if (o.term === j) jobs.push({ r: o.start, own: true });
    for (const c of changes) if (c.origin !== j) jobs.push({ r: returns(j, c.done), own: false });
    writesOwed += jobs.filter((x) => !x.own).length;
    jobs.sort((a, b) => b.r - a.r); // latest release first: suffix sums
    let ownAfter = 0;
    let writesAfter = 0;
    let best = 0;
    for (let i = 0; i < jobs.length; i++) {
      if (jobs[i].own) ownAfter++;
      else writesAfter++;
      // only evaluate at the last job of a group with the same release
      if (i + 1 < jobs.length && jobs[i + 1].r === jobs[i].r) continue;
      const work = ownAfter * actionCost + writesAfter * timing.perUserWriteMs + Math.ceil(writesAfter / maxBatch) * timing.perCommandMs;
      best = Math.max(best, jobs[i].r + work);
    }
    per.push(best);
  }
  let busiest = 0;
  for (let j = 1; j < per.length; j++) if (per[j] > per[busiest]) busiest = j;
  return { boundMs: per[busiest] ?? 0, busiestTerminal: busiest + 1, perTerminalMs: per, writesOwed };
}
