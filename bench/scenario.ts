// Scenarios for the replay harness: what people do at the terminals, in time
// order. A scenario is a list of actions (enroll, edit, go offline, come back)
// per terminal with a time offset. It comes either from a deterministic
// generator (a seed plus parameters, so a large scenario is a few bytes in
// fixtures/) or from a recorded session (bench/recorder.ts extracts the
// actions from the frames the terminals sent).
import { emptyUser, hashPin, type UserRecord } from '../src/model/user.js';
import { LIMITS } from '../src/codec/index.js';
import type { UserPatch } from '../src/sim/terminal.js';

export type Action =
  /** a person enrolls a new user at terminal `term` (1-based) */
  | { t: number; term: number; op: 'enroll'; user: UserRecord }
  /** a person edits a user at the terminal (fields replace; addCards/addFingers append) */
  | { t: number; term: number; op: 'edit'; userId: string; patch: UserPatch }
  /**
   * a person edits a user so that the terminal ends up holding `user` (used by
   * recorded scenarios: the recording holds the result of the edit, not the
   * keystrokes); the replayer turns it into an edit against what the terminal holds
   */
  | { t: number; term: number; op: 'edit-to'; user: UserRecord }
  /** the terminal loses its network (sessions dropped, connections refused) */
  | { t: number; term: number; op: 'offline' }
  | { t: number; term: number; op: 'online' }
  /** generated scenarios only: wait until the site has converged before going on */
  | { t: number; term: 0; op: 'barrier' };

export interface Scenario {
  name: string;
  title: string;
  terminals: number;
  /** ascending by t (ms from the scenario's start) */
  actions: Action[];
  /** how the scenario was made (generator and parameters, or the recording's file) */
  source: Record<string, unknown>;
}

export interface GeneratorSpec {
  generator: keyof typeof GENERATORS;
  seed: number;
  params: Record<string, number>;
}

// ------------------------------------------------------------------ helpers

/** mulberry32: a small, fast, seedable PRNG (deterministic scenarios). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, Math.min(i, n - 4));
  return b;
}

const FIRST = ['Ana', 'Ben', 'Chen', 'Dara', 'Emil', 'Fatima', 'Goran', 'Hana', 'Ivo', 'Jana', 'Kofi', 'Lea', 'Mateo', 'Nina', 'Omar', 'Pia'];
const LAST = ['Novak', 'Schmidt', 'Okafor', 'Rossi', 'Kim', 'Silva', 'Horvat', 'Dubois', 'Nakamura', 'Lindqvist', 'Haddad', 'Zoë-Maria'];

export interface UserShape {
  cards: number;
  fingers: number;
  pin: boolean;
}

/** A deterministic user: name, optional PIN, `cards` 8-byte cards unique per user, `fingers` fingerprints. */
export function makeUser(id: string, rand: () => number, shape: UserShape): UserRecord {
  const u = emptyUser(id);
  u.name = `${FIRST[Math.floor(rand() * FIRST.length)]} ${LAST[Math.floor(rand() * LAST.length)]}`;
  if (shape.pin) u.pinHash = hashPin(String(1000 + Math.floor(rand() * 9000)));
  for (let c = 0; c < shape.cards; c++) u.cards.push(makeCard(id, c));
  for (let f = 0; f < shape.fingers; f++) u.fingers.push(makeFinger(rand, f));
  return u;
}

/** Card numbers derived from the user ID and slot, so no two users ever share one. */
export function makeCard(userId: string, slot: number): { type: number; data: Buffer } {
  const data = Buffer.alloc(8);
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(userId, 'utf8')) h = Math.imul(h ^ ch, 0x01000193) >>> 0;
  data.writeUInt32BE(h, 0);
  data.writeUInt32BE((0xca000000 + slot * 0x10000 + (userId.length & 0xffff)) >>> 0, 4);
  // the ID's hash alone may collide: mix the whole ID in as well
  const tail = Buffer.from(userId, 'utf8');
  for (let i = 0; i < tail.length; i++) data[4 + (i % 4)] ^= tail[i];
  return { type: 1, data: Buffer.concat([data, tail.subarray(0, LIMITS.cardDataBytes - 8)]) };
}

export function makeFinger(rand: () => number, index: number): { index: number; flag: number; templates: [Buffer, Buffer] } {
  return { index, flag: 0, templates: [bytes(rand, LIMITS.fingerTemplateBytes), bytes(rand, LIMITS.fingerTemplateBytes)] };
}

/** JSON form of a card / finger for an edit patch (the simulator's control-API shape). */
function cardJson(c: { type: number; data: Buffer }) {
  return { type: c.type, data: c.data.toString('hex') };
}
function fingerJson(f: { index: number; flag: number; templates: [Buffer, Buffer] }) {
  return { index: f.index, flag: f.flag, templates: [f.templates[0].toString('hex'), f.templates[1].toString('hex')] };
}

// --------------------------------------------------------------- generators

/**
 * Enrollment burst: a new site goes live. `users` users are enrolled across
 * `terminals` terminals (user k at terminal (k mod T) + 1), each terminal
 * enrolling back to back as fast as it logs them (t is only the order here:
 * replayed at "max" speed). Each user has a name, a PIN, `cards` cards and
 * `fingers` fingerprints.
 */
function burst(seed: number, p: Record<string, number>): Scenario {
  const T = p.terminals ?? 50;
  const N = p.users ?? 10_000;
  const rand = prng(seed);
  const shape = { cards: p.cards ?? 1, fingers: p.fingers ?? 1, pin: true };
  const actions: Action[] = [];
  for (let k = 0; k < N; k++) {
    const term = (k % T) + 1;
    actions.push({ t: Math.floor(k / T) * 5, term, op: 'enroll', user: makeUser(`E${String(k + 1).padStart(6, '0')}`, rand, shape) });
  }
  return { name: 'burst', title: `Enrollment burst: ${N} users across ${T} terminals`, terminals: T, actions, source: { generator: 'burst', seed, params: p } };
}

/**
 * A quiet day: `terminals` terminals, people enrolled now and then during
 * office hours (`users` over `hours`), a share of them getting a card or a
 * fingerprint added later at some other terminal.
 */
function quietDay(seed: number, p: Record<string, number>): Scenario {
  const T = p.terminals ?? 6;
  const N = p.users ?? 40;
  const H = p.hours ?? 24;
  const rand = prng(seed);
  const dayMs = H * 3_600_000;
  const actions: Action[] = [];
  const times = Array.from({ length: N }, () => dayMs * (0.3 + 0.45 * rand())).sort((a, b) => a - b);
  times.forEach((t, k) => {
    const term = 1 + Math.floor(rand() * T);
    const id = `Q${String(k + 1).padStart(4, '0')}`;
    const withCard = rand() < 0.5;
    const u = makeUser(id, rand, { cards: withCard ? 1 : 0, fingers: 0, pin: rand() < 0.5 });
    actions.push({ t: Math.round(t), term, op: 'enroll', user: u });
    if (rand() < 0.4) {
      // later that day the user gets a fingerprint (or a card) at another door
      const later = Math.round(Math.min(dayMs - 1, t + 3_600_000 + rand() * 3_600_000 * 4));
      const other = 1 + ((term + Math.floor(rand() * (T - 1))) % T);
      const patch: UserPatch = withCard ? { addFingers: [fingerJson(makeFinger(rand, 0))] } : { addCards: [cardJson(makeCard(id, 0))] };
      actions.push({ t: later, term: other, op: 'edit', userId: id, patch });
    }
  });
  return finish({ name: 'quiet-day', title: `A quiet day: ${N} enrollments and a few credential additions on ${T} terminals over ${H} h`, terminals: T, actions, source: { generator: 'quietDay', seed, params: p } });
}

/**
 * Edits with credential additions: `users` people enrolled with a name only,
 * then (once everyone has them) cards added at one terminal and fingerprints
 * at another, the way a site collects credentials after a first sign-up day.
 */
function editsCredentials(seed: number, p: Record<string, number>): Scenario {
  const T = p.terminals ?? 8;
  const N = p.users ?? 200;
  const rand = prng(seed);
  const actions: Action[] = [];
  const ids: string[] = [];
  for (let k = 0; k < N; k++) {
    const id = `C${String(k + 1).padStart(5, '0')}`;
    ids.push(id);
    actions.push({ t: k * 20, term: 1 + (k % T), op: 'enroll', user: makeUser(id, rand, { cards: 0, fingers: 0, pin: false }) });
  }
  let t = N * 20 + 100;
  actions.push({ t, term: 0, op: 'barrier' });
  for (const id of ids) {
    t += 25;
    actions.push({ t, term: 1 + Math.floor(rand() * T), op: 'edit', userId: id, patch: { addCards: [cardJson(makeCard(id, 0))], pin: String(1000 + Math.floor(rand() * 9000)) } });
  }
  t += 100;
  actions.push({ t, term: 0, op: 'barrier' });
  for (const id of ids) {
    if (rand() < 0.75) {
      t += 25;
      actions.push({ t, term: 1 + Math.floor(rand() * T), op: 'edit', userId: id, patch: { addFingers: [fingerJson(makeFinger(rand, 0)), fingerJson(makeFinger(rand, 1))] } });
    }
  }
  return finish({ name: 'edits-credentials', title: `Edits with credential additions: ${N} users get cards, PINs and fingerprints on ${T} terminals`, terminals: T, actions, source: { generator: 'editsCredentials', seed, params: p } });
}

/**
 * A terminal returning after a day offline: terminal T loses its network at
 * the start of the day; during the day `users` people are enrolled on the
 * others and `localUsers` at the offline terminal itself (it works standalone);
 * after `hours` it comes back and must catch up both ways.
 */
function offlineReturn(seed: number, p: Record<string, number>): Scenario {
  const T = p.terminals ?? 6;
  const N = p.users ?? 120;
  const L = p.localUsers ?? 12;
  const H = p.hours ?? 24;
  const rand = prng(seed);
  const dayMs = H * 3_600_000;
  const actions: Action[] = [{ t: 0, term: T, op: 'offline' }];
  for (let k = 0; k < N + L; k++) {
    const local = k % Math.ceil((N + L) / L) === 0 && actions.filter((a) => a.op === 'enroll' && a.term === T).length < L;
    const term = local ? T : 1 + Math.floor(rand() * (T - 1));
    const t = Math.round(60_000 + (dayMs - 120_000) * ((k + rand()) / (N + L)));
    actions.push({ t, term, op: 'enroll', user: makeUser(`R${String(k + 1).padStart(5, '0')}`, rand, { cards: 1, fingers: rand() < 0.3 ? 1 : 0, pin: true }) });
  }
  actions.push({ t: dayMs, term: T, op: 'online' });
  return finish({ name: 'offline-return', title: `A terminal back after ${H} h offline: ${N} users enrolled elsewhere, ${L} at the offline terminal`, terminals: T, actions, source: { generator: 'offlineReturn', seed, params: p } });
}

function finish(s: Scenario): Scenario {
  s.actions.sort((a, b) => a.t - b.t);
  return s;
}

export const GENERATORS = { burst, quietDay, editsCredentials, offlineReturn } as const;

export function generate(spec: GeneratorSpec): Scenario {
  const g = GENERATORS[spec.generator];
  if (!g) throw new Error(`unknown scenario generator ${JSON.stringify(spec.generator)} (known: ${Object.keys(GENERATORS).join(', ')})`);
  return g(spec.seed, spec.params);
}

/** Users a scenario enrolls, in order. */
export function enrolledUsers(s: Scenario): string[] {
  return s.actions.filter((a): a is Extract<Action, { op: 'enroll' }> => a.op === 'enroll').map((a) => a.user.id);
}

/** The first `count` enrollments (and nothing else): a sample of an enrollment scenario. */
export function sampleEnrollments(s: Scenario, count: number): Scenario {
  const actions = s.actions.filter((a) => a.op === 'enroll').slice(0, count);
  return { ...s, name: `${s.name}-sample`, title: `${s.title} (first ${actions.length} enrollments)`, actions, source: { ...s.source, sample: count } };
}
