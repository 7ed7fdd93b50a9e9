// Scenario mode: enroll users on the terminals at a steady rate, as people at
// the doors would, without a control client (`--scenario-users N ...`).
//   spread "round-robin": user k is enrolled on terminal ((k-1) mod T) + 1
//   spread "all":         user k is enrolled on every terminal (the same person at every door)
// The rate is in enrollment steps per second (one step = one user, on one
// terminal or on all of them).
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { LIMITS } from '../codec/index.js';
import { emptyUser, type UserRecord } from '../model/user.js';
import type { SimTerminal } from './terminal.js';

export type ScenarioSpread = 'all' | 'round-robin';

export interface ScenarioOptions {
  users: number;
  /** users per second (> 0) */
  rate: number;
  spread?: ScenarioSpread;
  /** cards per user (0..8) */
  cards?: number;
  /** fingers per user (0..10) */
  fingers?: number;
  /** user IDs are `${idPrefix}${k}` (default "sim-") */
  idPrefix?: string;
  /** first k (default 1) */
  firstIndex?: number;
  signal?: AbortSignal;
}

export interface ScenarioResult {
  enrolled: number;
  failed: number;
  elapsedMs: number;
}

/** The user a scenario enrolls as number k: deterministic, so runs are reproducible. */
export function scenarioUser(k: number, cards: number, fingers: number, idPrefix = 'sim-'): UserRecord {
  const u = emptyUser(`${idPrefix}${k}`);
  u.name = `Simulated User ${k}`;
  for (let c = 0; c < cards; c++) {
    // 8-byte CSN-style card numbers, unique per (k, c)
    const data = Buffer.alloc(8);
    data.writeUInt32BE(k >>> 0, 0);
    data.writeUInt32BE((0x5c000000 + c) >>> 0, 4);
    u.cards.push({ type: 1, data });
  }
  for (let f = 0; f < fingers; f++) {
    const t = (n: number) => {
      const out = Buffer.alloc(LIMITS.fingerTemplateBytes);
      let seed = createHash('sha256').update(`${k}/${f}/${n}`).digest();
      for (let p = 0; p < out.length; p += seed.length) {
        seed.copy(out, p);
        seed = createHash('sha256').update(seed).digest();
      }
      return out;
    };
    u.fingers.push({ index: f, flag: 0, templates: [t(0), t(1)] });
  }
  return u;
}

export function checkScenarioOptions(o: ScenarioOptions): void {
  if (!Number.isInteger(o.users) || o.users < 0) throw new RangeError('--scenario-users must be a whole number >= 0');
  if (!(o.rate > 0) || !Number.isFinite(o.rate)) throw new RangeError('--scenario-rate must be a number > 0 (users per second)');
  if (o.spread !== undefined && o.spread !== 'all' && o.spread !== 'round-robin')
    throw new RangeError('--scenario-spread must be "all" or "round-robin"');
  const cards = o.cards ?? 1;
  const fingers = o.fingers ?? 0;
  if (!Number.isInteger(cards) || cards < 0 || cards > LIMITS.cards) throw new RangeError(`--scenario-cards must be 0..${LIMITS.cards}`);
  if (!Number.isInteger(fingers) || fingers < 0 || fingers > LIMITS.fingers) throw new RangeError(`--scenario-fingers must be 0..${LIMITS.fingers}`);
}

/** Runs a scenario to its end (or until the signal aborts). */
export async function runScenario(terminals: SimTerminal[], o: ScenarioOptions, log?: Logger): Promise<ScenarioResult> {
  checkScenarioOptions(o);
  const spread = o.spread ?? 'round-robin';
  const cards = o.cards ?? 1;
  const fingers = o.fingers ?? 0;
  const first = o.firstIndex ?? 1;
  const start = Date.now();
  let enrolled = 0;
  let failed = 0;
  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<unknown>) => {
    const q = p.then(
      () => {
        enrolled++;
      },
      (e: Error) => {
        failed++;
        log?.warn({ err: e.message }, 'scenario enrollment failed');
      },
    );
    inflight.add(q);
    void q.finally(() => inflight.delete(q));
  };
  log?.info({ users: o.users, rate: o.rate, spread, cards, fingers, terminals: terminals.length }, 'scenario started');
  let progressAt = start;
  for (let i = 0; i < o.users; i++) {
    if (o.signal?.aborted) break;
    // step i is due at start + i / rate: sleep until then (a steady rate without drift)
    const due = start + (i * 1000) / o.rate;
    const wait = due - Date.now();
    if (wait >= 1) {
      try {
        await sleep(Math.round(wait), undefined, { signal: o.signal });
      } catch {
        break;
      }
    }
    const k = first + i;
    const user = scenarioUser(k, cards, fingers, o.idPrefix);
    if (spread === 'all') for (const t of terminals) track(t.enroll(user));
    else track(terminals[i % terminals.length].enroll(user));
    if (Date.now() - progressAt >= 5000) {
      progressAt = Date.now();
      log?.info({ done: i + 1, of: o.users, enrolled, failed }, 'scenario progress');
    }
  }
  await Promise.all([...inflight]);
  const result = { enrolled, failed, elapsedMs: Date.now() - start };
  log?.info(result, 'scenario finished');
  return result;
}
