// The seven attacks of issue 14, each as a hostile peer (bench/hostile/peer.ts)
// or a local HTTP client against a real daemon process. Each runs at the
// size the issue gives, bounded by a deadline and by an RSS cap so that a
// daemon that has no bound does not take the machine with it.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  Command,
  DIGEST_BYTES,
  FrameKind,
  Status,
  decodeGetUsersRequest,
  encodeFrame,
  encodeGetUsersResponse,
  encodeListUsersResponse,
  encodeLogEvent,
  encodeSubscribeResponse,
} from '../../src/codec/index.js';
import { EventCode, ORIGIN_DEVICE } from '../../src/codec/constants.js';
import { DEV_COMM_KEY } from '../../src/sim/devkey.js';
import { DEFAULT_MAX_TERMINAL_USERS } from '../../src/sync/peer-limit.js';
import { dbBytes, eventRows, eventsOf, httpPut, round, terminalRows, type HostileSite, type SiteOptions } from './harness.js';
import { HostilePeer } from './peer.js';

export interface AttackContext {
  site: HostileSite;
  /** ms since the epoch at which the attack must stop */
  deadline: number;
  /** stop when the daemon's RSS passes this, MB */
  rssCapMb: number;
  log: (msg: string) => void;
}

export interface AttackResult {
  /** how far the attack got (the size reached, or why it stopped) */
  reached: string;
  figures: Record<string, unknown>;
}

export interface Attack {
  name: string;
  item: number;
  title: string;
  /** the size the issue gives */
  size: string;
  /** seconds the attack may run */
  deadlineSec: number;
  site?: SiteOptions;
  /** also measure an administrator's change reaching the terminals */
  adminLatency?: boolean;
  run(ctx: AttackContext): Promise<AttackResult>;
}

const KEY = DEV_COMM_KEY;
const DIGEST = randomBytes(DIGEST_BYTES);

/** Waits until stop() is true, the deadline passes, the daemon dies or passes the RSS cap; says which. */
async function until(ctx: AttackContext, stop: () => boolean = () => false, everyMs = 100): Promise<string> {
  for (;;) {
    if (stop()) return 'done';
    if (!ctx.site.daemon.alive) return `daemon died (${ctx.site.daemon.exit})`;
    let rss = 0;
    try {
      rss = ctx.site.daemon.rssMb();
    } catch {
      return 'daemon gone';
    }
    if (rss > ctx.rssCapMb) return `stopped at the RSS cap (${Math.round(rss)} MB)`;
    if (Date.now() > ctx.deadline) return 'deadline';
    await sleep(everyMs);
  }
}

/** GET_USERS: "not found" for every ID asked (a terminal that lists users it cannot deliver). */
function notFound(p: HostilePeer): void {
  p.on(Command.GET_USERS, (f, reply) => {
    const { userIds } = decodeGetUsersRequest(f.payload);
    reply(encodeGetUsersResponse({ results: userIds.map(() => ({ status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) })) }));
  });
}

function notFoundToo(p: HostilePeer): HostilePeer {
  notFound(p);
  return p;
}

function logFrame(p: HostilePeer, first: number, n: number, code: number, prefix: string): Buffer {
  const events = Array.from({ length: n }, (_, i) => ({ id: first + i, dateTime: Math.floor(Date.now() / 1000), deviceId: p.o.deviceId, userId: `${prefix}${first + i}`, code, param: ORIGIN_DEVICE, flags: 0 }));
  return encodeFrame({ kind: FrameKind.EVENT, seq: p.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: p.logEpoch, events }) });
}

/**
 * Streams device-origin log events as fast as the socket takes them, from the
 * moment the daemon subscribes. With `window`, never more than that many
 * unacknowledged (a terminal that keeps to the subscription window: only the
 * LOG_ACKs pace it); without, no regard for acknowledgements at all.
 */
function streamEvents(p: HostilePeer, code: number, prefix: string, max: number, stopAt: () => boolean, window?: number): { sent: () => number; started: () => number | null } {
  let sent = 0;
  let startedAt: number | null = null;
  p.on(Command.SUBSCRIBE_LOG, (_f, reply) => {
    reply(encodeSubscribeResponse({ logEpoch: p.logEpoch, firstEventId: 0, lastEventId: 0 }));
    startedAt = Date.now();
    void (async () => {
      let id = 1;
      while (sent < max && !stopAt() && !p.isClosed) {
        let n = Math.min(1000, max - sent);
        if (window !== undefined) {
          const room = window - (id - 1 - p.lastAck);
          if (room <= 0) {
            await p.nextAck();
            continue;
          }
          n = Math.min(n, room);
        }
        if (!(await p.sendPaced(logFrame(p, id, n, code, prefix)))) break;
        id += n;
        sent += n;
        if (id % 50_000 === 1) await new Promise((r) => setImmediate(r)); // let the harness breathe
      }
    })();
  });
  return { sent: () => sent, started: () => startedAt };
}

export interface FloodOptions {
  port: number;
  deviceId: number;
  code: number;
  prefix: string;
  seconds: number;
  window?: number;
  /** ms since the epoch */
  deadline: number;
}

export interface FloodResult {
  sent: number;
  sessions: number;
  endedByDaemon: number;
  sec: number;
  why: string;
}

/**
 * One hostile terminal streaming events until `seconds` have passed since the
 * first subscription; when the daemon ends its session it dials again at once.
 * `halt` says why to stop early (null: go on).
 */
export async function floodSessions(o: FloodOptions, halt: () => string | null): Promise<FloodResult> {
  let sent = 0;
  let sessions = 0;
  let endedByDaemon = 0;
  let firstStart: number | null = null;
  let why: string | null = null;
  const over = () => firstStart !== null && Date.now() - firstStart > o.seconds * 1000;
  while (!over() && Date.now() < o.deadline && (why = halt()) === null) {
    let st: ReturnType<typeof streamEvents> | undefined;
    let stopped = false;
    const p = await HostilePeer.open({ port: o.port, deviceId: o.deviceId, key: KEY }, (peer) => {
      notFound(peer);
      st = streamEvents(peer, o.code, `${o.prefix}${sessions}-`, Number.MAX_SAFE_INTEGER, () => stopped, o.window);
    }).catch(() => null);
    sessions++;
    if (!p) {
      await sleep(50);
      continue;
    }
    for (;;) {
      firstStart ??= st!.started();
      if (p.isClosed || over() || Date.now() > o.deadline || (why = halt()) !== null) break;
      await sleep(20);
    }
    stopped = true;
    if (p.isClosed) endedByDaemon++;
    sent += st!.sent();
    p.close();
    if (why !== null) break;
  }
  const sec = firstStart ? round((Date.now() - firstStart) / 1000) : 0;
  return { sent, sessions, endedByDaemon, sec, why: why ?? (over() ? `${o.seconds} s` : 'deadline') };
}

const CHILD = fileURLToPath(new URL('./attack-child.ts', import.meta.url));

/** What the attack process is asked to do. */
export type ChildTask = ({ kind: 'flood' } & FloodOptions) | { kind: 'adminhold'; port: number; seconds: number };

/**
 * Runs the attacker in a process of its own: a sender that encodes hundreds of
 * thousands of events, or opens tens of thousands of connections, would slow
 * the simulated well-behaved terminals living in the harness's process and
 * charge the daemon with the harness's delay. Stops it when the daemon dies or
 * passes the RSS cap.
 */
async function inChild<T>(ctx: AttackContext, task: ChildTask): Promise<T | { failed: string }> {
  const child = fork(CHILD, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let result: T | null = null;
  child.on('message', (m) => (result = m as T));
  let gone = false;
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      gone = true;
      r();
    }),
  );
  child.send(task);
  const why = await until(ctx, () => result !== null || gone, 50);
  if (result === null) {
    child.kill();
    await exited;
    return { failed: why === 'done' ? 'the attack process ended without a result' : why };
  }
  await exited;
  return result;
}

async function eventFloodSessions(ctx: AttackContext, deviceId: number, code: number, prefix: string, seconds: number, window?: number): Promise<FloodResult> {
  const r = await inChild<FloodResult>(ctx, { kind: 'flood', port: ctx.site.listenPort, deviceId, code, prefix, seconds, window, deadline: ctx.deadline });
  return 'failed' in r ? { sent: NaN, sessions: NaN, endedByDaemon: NaN, sec: NaN, why: r.failed } : r;
}

export interface HoldResult {
  opened: number;
  peakHeld: number;
  leastHeld: number;
  heldAtEnd: number;
  closedByServer: number;
  why: string;
}

/**
 * 520 connections holding partial headers (one more header line every 2 s, as
 * a slowloris keeps its requests alive) and 101 event streams on the admin
 * port for `seconds`; what the server closes is opened again 50 ms later.
 */
export async function holdAdmin(port: number, seconds: number): Promise<HoldResult> {
  const socks = new Set<net.Socket>();
  let opened = 0;
  let refused = 0;
  let stop = false;
  const open = (partial: boolean) =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
      s.on('error', () => {});
      s.once('connect', () => {
        opened++;
        socks.add(s);
        s.write(partial ? 'GET /healthz HTTP/1.1\r\nHost: x\r\n' : 'GET /api/events/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
        resolve();
      });
      s.on('data', () => {});
      s.once('close', () => {
        socks.delete(s);
        if (!stop) {
          refused++;
          // a holder keeps the count up: reopen what the server closed, 50 ms later,
          // for as long as the attack lasts (a cap on reopenings would let the
          // attack fade before its time is up)
          setTimeout(() => void (stop ? undefined : open(partial)), 50);
        }
      });
      setTimeout(resolve, 2000);
    });
  const work: Promise<void>[] = [];
  for (let i = 0; i < 520; i++) work.push(open(true));
  for (let i = 0; i < 101; i++) work.push(open(false));
  await Promise.all(work);
  const trickle = setInterval(() => {
    let n = 0;
    for (const s of socks) if (!s.destroyed) s.write(`X-${n++}: y\r\n`);
  }, 2000);
  const t0 = Date.now();
  let peakHeld = socks.size;
  let leastHeld = socks.size;
  while (Date.now() - t0 <= seconds * 1000) {
    peakHeld = Math.max(peakHeld, socks.size);
    leastHeld = Math.min(leastHeld, socks.size);
    await sleep(100);
  }
  stop = true;
  clearInterval(trickle);
  const heldAtEnd = socks.size;
  for (const s of socks) s.destroy();
  return { opened, peakHeld, leastHeld, heldAtEnd, closedByServer: refused, why: `${seconds} s` };
}

export const ATTACKS: Attack[] = [
  {
    name: 'idle',
    item: 0,
    title: 'No attack (control)',
    size: 'the same site, probes and well-behaved enrollments for 20 s with no hostile terminal',
    deadlineSec: 20,
    async run(ctx) {
      const why = await until(ctx);
      return { reached: `20 s with no attack; ${why}`, figures: { stop: why } };
    },
  },
  {
    name: 'listflood',
    item: 1,
    title: 'A user list that never ends',
    size: "LIST_USERS pages of 1,000 entries with more=1, forever (new IDs in order each page, or the same page repeated, in turn), announcing a capacity of 2,000,000 (the daemon's ceiling), dialling again for 60 s (daemon heap 768 MB)",
    deadlineSec: 60,
    site: { nodeArgs: ['--max-old-space-size=768'] },
    async run(ctx) {
      // IDs in the listing order, so that what ends the session is the bound on
      // the list (its length, its progress), not the order check; when the
      // daemon ends a session the terminal dials again at once, as the crash
      // loop of the issue did, until the deadline
      let pages = 0;
      let sessions = 0;
      let maxPagesInSession = 0;
      let refused = 0;
      let why = 'deadline';
      while (Date.now() < ctx.deadline) {
        const repeat = sessions % 2 === 1;
        let mine = 0;
        const p = await HostilePeer.open({ port: ctx.site.listenPort, deviceId: 7101, key: KEY, userCapacity: DEFAULT_MAX_TERMINAL_USERS }, (peer) =>
          notFoundToo(peer).on(Command.LIST_USERS, (_f, reply) => {
            const base = (repeat ? 0 : mine) * 1000;
            mine++;
            pages++;
            const entries = Array.from({ length: 1000 }, (_, i) => ({ userId: `flood-${String(sessions).padStart(4, '0')}-${String(base + i).padStart(9, '0')}`, flag: 0, version: 1, digest: DIGEST }));
            reply(encodeListUsersResponse({ total: DEFAULT_MAX_TERMINAL_USERS, more: true, entries }));
          }),
        ).catch(() => null);
        sessions++;
        if (!p || p.isClosed) {
          refused++;
          await sleep(50);
          continue;
        }
        why = await until(ctx, () => p.isClosed);
        maxPagesInSession = Math.max(maxPagesInSession, mine);
        p.close();
        if (why !== 'done') break;
        why = 'deadline';
      }
      const sec = round((Date.now() - (ctx.deadline - 60_000)) / 1000);
      const limits = ctx.site.daemon.alive ? eventRows(ctx.site.db, 'PEER_LIMIT_EXCEEDED') : NaN;
      return {
        reached: `${sessions} sessions, ${pages.toLocaleString('en')} pages (${(pages * 1000).toLocaleString('en')} entries) in ${sec} s, at most ${maxPagesInSession} pages in one session; ${why}`,
        figures: { sessions, refusedAtHandshake: refused, pages, entries: pages * 1000, maxPagesInSession, limitEvents: limits, seconds: sec, stop: why },
      };
    },
  },
  {
    name: 'biglist',
    item: 2,
    title: 'A big but finite user list',
    size: '2,000,000 users listed (a valid total), 1,000 per page',
    deadlineSec: 120,
    async run(ctx) {
      const TOTAL = 2_000_000;
      let served = 0;
      let listDoneAt: number | null = null;
      let getUsers = 0;
      const offBefore = eventsOf(ctx.site.db, 't1', 'TERMINAL_OFFLINE') + eventsOf(ctx.site.db, 't2', 'TERMINAL_OFFLINE');
      const t0 = Date.now();
      const p = await HostilePeer.open({ port: ctx.site.listenPort, deviceId: 7201, key: KEY, userCapacity: TOTAL, maxBatch: 1000 }, (peer) => {
        peer.on(Command.LIST_USERS, (_f, reply) => {
          const n = Math.min(1000, TOTAL - served);
          const entries = Array.from({ length: n }, (_, i) => ({ userId: `big-${String(served + i).padStart(7, '0')}`, flag: 0, version: 1, digest: DIGEST }));
          served += n;
          if (served >= TOTAL && listDoneAt === null) listDoneAt = Date.now();
          reply(encodeListUsersResponse({ total: TOTAL, more: served < TOTAL, entries }));
        });
        peer.on(Command.GET_USERS, (f, reply) => {
          getUsers++;
          const { userIds } = decodeGetUsersRequest(f.payload);
          reply(encodeGetUsersResponse({ results: userIds.map(() => ({ status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) })) }));
        });
      });
      // the list, then 20 s of what the daemon does with it
      const why = await until(ctx, () => p.isClosed || (listDoneAt !== null && Date.now() - listDoneAt > 20_000));
      const endedByDaemon = p.isClosed;
      p.close();
      await sleep(500);
      const offAfter = ctx.site.daemon.alive ? eventsOf(ctx.site.db, 't1', 'TERMINAL_OFFLINE') + eventsOf(ctx.site.db, 't2', 'TERMINAL_OFFLINE') : NaN;
      return {
        reached: `${served.toLocaleString('en')} of ${TOTAL.toLocaleString('en')} entries listed${listDoneAt ? ` in ${round((listDoneAt - t0) / 1000)} s` : ''}; ${why === 'done' ? (endedByDaemon ? 'the daemon ended the session' : 'list done + 20 s') : why}`,
        figures: { listed: served, listSeconds: listDoneAt ? round((listDoneAt - t0) / 1000) : null, getUsersRequests: getUsers, wellBehavedDropped: offAfter - offBefore, sessionEndedByDaemon: endedByDaemon, stop: why },
      };
    },
  },
  {
    name: 'logflood',
    item: 3,
    title: 'Log events beyond the window',
    size: 'device-origin enroll events without waiting for LOG_ACK (window 1,000), as fast as one sender can, dialling again whenever the daemon ends the session, for 30 s (the issue: 12.4 M in 29 s)',
    deadlineSec: 40,
    async run(ctx) {
      const r = await eventFloodSessions(ctx, 7301, EventCode.USER_ENROLL_SUCCESS, 'lf-', 30);
      const backlog = Math.max(0, ...ctx.site.daemon.samples.map((s) => s.ingestBacklog));
      const limits = ctx.site.daemon.alive ? eventRows(ctx.site.db, 'PEER_LIMIT_EXCEEDED') : NaN;
      return {
        reached: `${r.sent.toLocaleString('en')} events sent in ${r.sec} s over ${r.sessions} sessions (${r.endedByDaemon} ended by the daemon); ${r.why}`,
        figures: { eventsSent: r.sent, seconds: r.sec, sessions: r.sessions, sessionsEndedByDaemon: r.endedByDaemon, limitEvents: limits, maxIngestBacklog: backlog, stop: r.why },
      };
    },
  },
  {
    name: 'slowpeers',
    item: 4,
    title: 'Slow terminals take every slot of the global queue',
    size: '32 sessions (two addresses) answering each LIST_USERS page 9 s late, one entry per page; 20 s',
    deadlineSec: 40,
    adminLatency: true,
    async run(ctx) {
      const peers: HostilePeer[] = [];
      const timers = new Set<NodeJS.Timeout>();
      for (let i = 0; i < 32; i++) {
        let page = 0;
        const p = await HostilePeer.open({ port: ctx.site.listenPort, localAddress: i < 16 ? '127.0.0.1' : '127.0.0.2', deviceId: 7400 + i, key: KEY, userCapacity: 1_000_000 }, (peer) =>
          peer.on(Command.LIST_USERS, (_f, reply) => {
            const t = setTimeout(() => {
              timers.delete(t);
              reply(encodeListUsersResponse({ total: 1_000_000, more: true, entries: [{ userId: `slow-${i}-${String(page++).padStart(6, '0')}`, flag: 0, version: 1, digest: DIGEST }] }));
            }, 9000);
            timers.add(t);
          }),
        );
        peers.push(p);
      }
      const t0 = Date.now();
      const why = await until(ctx, () => Date.now() - t0 > 20_000);
      for (const t of timers) clearTimeout(t);
      const open = peers.filter((p) => !p.isClosed).length;
      const lists = peers.reduce((a, p) => a + (p.requests.get(Command.LIST_USERS) ?? 0), 0);
      for (const p of peers) p.close();
      const during = ctx.site.daemon.samples.filter((x) => x.at >= t0);
      const running = Math.max(0, ...during.map((x) => x.queueRunning));
      const waiting = Math.max(0, ...during.map((x) => x.queueWaiting));
      return { reached: `32 slow sessions for 20 s (${open} still open at the end); ${why}`, figures: { sessions: 32, openAtEnd: open, listRequests: lists, maxQueueRunning: running, maxQueueWaiting: waiting, stop: why } };
    },
  },
  {
    name: 'deleteflood',
    item: 5,
    title: 'One terminal fills the disk',
    size: 'device-origin delete events for 10 s, keeping to the window (1,000 unacknowledged; only the LOG_ACKs pace it), dialling again if the daemon ends the session',
    deadlineSec: 20,
    async run(ctx) {
      const rows0 = eventRows(ctx.site.db);
      const bytes0 = dbBytes(ctx.site.db);
      const r = await eventFloodSessions(ctx, 7501, EventCode.USER_DELETE_SUCCESS, 'del-', 10, 1000);
      await sleep(1000); // what was received is still being written
      const rows = ctx.site.daemon.alive ? eventRows(ctx.site.db) - rows0 : NaN;
      const deletes = ctx.site.daemon.alive ? eventRows(ctx.site.db, 'USER_DELETED_ON_DEVICE') : NaN;
      const bytes = dbBytes(ctx.site.db) - bytes0;
      return {
        reached: `${r.sent.toLocaleString('en')} delete events sent in ${r.sec} s over ${r.sessions} sessions (${r.endedByDaemon} ended by the daemon); ${r.why}`,
        figures: { eventsSent: r.sent, seconds: r.sec, sessions: r.sessions, sessionsEndedByDaemon: r.endedByDaemon, rowsWritten: rows, deleteRows: deletes, dbGrowthMb: round(bytes / 1048576), mbPerSec: round(bytes / 1048576 / Math.max(r.sec, 0.001)), stop: r.why },
      };
    },
  },
  {
    name: 'impostor',
    item: 6,
    title: "Another terminal's device ID",
    size: 'a second session for an online device ID (another address, then the same address); new device IDs minted for 10 s',
    deadlineSec: 40,
    async run(ctx) {
      const port = ctx.site.listenPort;
      const admin = ctx.site.daemon.adminPort;
      const real = await HostilePeer.open({ port, localAddress: '127.0.0.1', deviceId: 7600, key: KEY });
      await real.waitFrame((f) => f.command === Command.SUBSCRIBE_LOG, 10_000);
      await sleep(500);
      const put = async (id: string) => void (await httpPut(admin, `/api/users/${id}`, { id, name: 'Pushed' }, 10_000).catch(() => 0));
      const arrived = async (id: string, peers: HostilePeer[]) => {
        const t = Date.now();
        while (Date.now() - t < 5000 && !peers.some((p) => p.pushed.includes(id))) await sleep(20);
      };
      const round1: Record<string, unknown> = {};
      const impostors: HostilePeer[] = [];
      for (const [k, addr] of [['otherAddress', '127.0.0.2'], ['sameAddress', '127.0.0.1']] as const) {
        const imp = await HostilePeer.open({ port, localAddress: addr, deviceId: 7600, key: KEY });
        impostors.push(imp);
        await sleep(1500);
        const uid = `imp-${k}`;
        await put(uid);
        await arrived(uid, [real, imp]);
        round1[k] = { impostorSessionKept: !imp.isClosed, realSessionDropped: real.isClosed, pushReachedImpostor: imp.pushed.includes(uid), pushReachedReal: real.pushed.includes(uid) };
        imp.close();
        if (real.isClosed) break;
      }
      const conflicts = ctx.site.daemon.alive ? eventRows(ctx.site.db, 'PEER_IDENTITY_CONFLICT') : NaN;
      real.close();
      // minting: new device IDs, one after another, from one address, for 10 s (at most 5,000)
      const rows0 = terminalRows(ctx.site.db);
      const t0 = Date.now();
      let tried = 0;
      let admitted = 0;
      while (Date.now() - t0 < 10_000 && tried < 5000 && ctx.site.daemon.alive) {
        const p = await HostilePeer.open({ port, localAddress: '127.0.0.3', deviceId: 80_000 + tried, key: KEY }).catch(() => null);
        tried++;
        if (p) {
          await Promise.race([p.closed, sleep(30)]);
          if (!p.isClosed) admitted++;
          p.close();
          await p.closed;
        }
      }
      const minted = terminalRows(ctx.site.db) - rows0;
      const adopted = Object.values(round1).some((r) => (r as { pushReachedImpostor: boolean; realSessionDropped: boolean }).pushReachedImpostor || (r as { realSessionDropped: boolean }).realSessionDropped);
      return {
        reached: `impostor ${adopted ? 'ADOPTED' : 'refused'}; ${minted} new device IDs recorded of ${tried} tried in 10 s`,
        figures: { ...round1, conflictEventsRecorded: conflicts, newIdsTried: tried, newIdsAdmitted: admitted, newIdsRecorded: minted },
      };
    },
  },
  {
    name: 'adminhold',
    item: 7,
    title: 'The admin port held by a local client',
    size: '520 connections holding partial headers + 101 event streams, held 15 s',
    deadlineSec: 30,
    async run(ctx) {
      const r = await inChild<HoldResult>(ctx, { kind: 'adminhold', port: ctx.site.daemon.adminPort, seconds: 15 });
      if ('failed' in r) return { reached: r.failed, figures: { stop: r.failed } };
      const { why, ...figures } = r;
      return { reached: `${r.opened} connections opened, ${r.heldAtEnd} held at the end (peak ${r.peakHeld}, least ${r.leastHeld}), ${r.closedByServer} closed by the server; ${why}`, figures: { ...figures, stop: why } };
    },
  },
];
