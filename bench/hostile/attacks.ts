// The seven attacks of issue 14, each as a hostile peer (bench/hostile/peer.ts)
// or a local HTTP client against a real daemon process. Each runs at the
// size the issue gives, bounded by a deadline and by an RSS cap so that a
// daemon that has no bound does not take the machine with it.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
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

function logFrame(p: HostilePeer, first: number, n: number, code: number, prefix: string): Buffer {
  const events = Array.from({ length: n }, (_, i) => ({ id: first + i, dateTime: Math.floor(Date.now() / 1000), deviceId: p.o.deviceId, userId: `${prefix}${first + i}`, code, param: ORIGIN_DEVICE, flags: 0 }));
  return encodeFrame({ kind: FrameKind.EVENT, seq: p.nextSeq(), command: Command.LOG_EVENT, payload: encodeLogEvent({ logEpoch: p.logEpoch, events }) });
}

/** Streams device-origin log events as fast as the socket takes them, from the moment the daemon subscribes. */
function streamEvents(p: HostilePeer, code: number, prefix: string, max: number, stopAt: () => boolean): { sent: () => number; started: () => number | null } {
  let sent = 0;
  let startedAt: number | null = null;
  p.on(Command.SUBSCRIBE_LOG, (_f, reply) => {
    reply(encodeSubscribeResponse({ logEpoch: p.logEpoch, firstEventId: 0, lastEventId: 0 }));
    startedAt = Date.now();
    void (async () => {
      let id = 1;
      while (sent < max && !stopAt() && !p.isClosed) {
        const n = Math.min(1000, max - sent);
        if (!(await p.sendPaced(logFrame(p, id, n, code, prefix)))) break;
        id += n;
        sent += n;
        if (id % 50_000 === 1) await new Promise((r) => setImmediate(r)); // let the harness breathe
      }
    })();
  });
  return { sent: () => sent, started: () => startedAt };
}

export const ATTACKS: Attack[] = [
  {
    name: 'listflood',
    item: 1,
    title: 'A user list that never ends',
    size: 'LIST_USERS pages of 1,000 new entries with more=1, forever (daemon heap 768 MB)',
    deadlineSec: 60,
    site: { nodeArgs: ['--max-old-space-size=768'] },
    async run(ctx) {
      let pages = 0;
      const p = await HostilePeer.open({ port: ctx.site.listenPort, deviceId: 7101, key: KEY, userCapacity: 10_000 }, (peer) =>
        peer.on(Command.LIST_USERS, (_f, reply) => {
          const base = pages++ * 1000;
          const entries = Array.from({ length: 1000 }, (_, i) => ({ userId: `flood-${base + i}`, flag: 0, version: 1, digest: DIGEST }));
          reply(encodeListUsersResponse({ total: 10_000, more: true, entries }));
        }),
      );
      const t0 = Date.now();
      const why = await until(ctx, () => p.isClosed);
      const sec = round((Date.now() - t0) / 1000);
      p.close();
      return { reached: `${pages.toLocaleString('en')} pages (${(pages * 1000).toLocaleString('en')} entries) in ${sec} s; ${why === 'done' ? 'the daemon ended the session' : why}`, figures: { pages, entries: pages * 1000, seconds: sec, stop: why, sessionEndedByDaemon: why === 'done' } };
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
    size: '12.4 M device-origin enroll events without waiting for LOG_ACK (window 1,000)',
    deadlineSec: 30,
    async run(ctx) {
      let stopped = false;
      let st: ReturnType<typeof streamEvents> | undefined;
      const p = await HostilePeer.open({ port: ctx.site.listenPort, deviceId: 7301, key: KEY }, (peer) => {
        notFound(peer);
        st = streamEvents(peer, EventCode.USER_ENROLL_SUCCESS, 'lf-', 12_400_000, () => stopped);
      });
      const why = await until(ctx, () => p.isClosed || st!.sent() >= 12_400_000);
      stopped = true;
      const endedByDaemon = p.isClosed;
      const backlog = Math.max(0, ...ctx.site.daemon.samples.map((s) => s.ingestBacklog));
      const sec = st!.started() ? round((Date.now() - st!.started()!) / 1000) : 0;
      p.close();
      return {
        reached: `${st!.sent().toLocaleString('en')} events sent in ${sec} s; ${why === 'done' ? (endedByDaemon ? 'the daemon ended the session' : 'all sent') : why}`,
        figures: { eventsSent: st!.sent(), seconds: sec, maxIngestBacklog: backlog, sessionEndedByDaemon: endedByDaemon, stop: why },
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
    size: 'device-origin delete events streamed for 10 s',
    deadlineSec: 12,
    async run(ctx) {
      const rows0 = eventRows(ctx.site.db);
      const bytes0 = dbBytes(ctx.site.db);
      let stopped = false;
      let st: ReturnType<typeof streamEvents> | undefined;
      const p = await HostilePeer.open({ port: ctx.site.listenPort, deviceId: 7501, key: KEY }, (peer) => {
        st = streamEvents(peer, EventCode.USER_DELETE_SUCCESS, 'del-', Number.MAX_SAFE_INTEGER, () => stopped);
      });
      const why = await until(ctx, () => p.isClosed || (st!.started() !== null && Date.now() - st!.started()! > 10_000));
      stopped = true;
      const endedByDaemon = p.isClosed;
      const sec = st!.started() ? (Date.now() - st!.started()!) / 1000 : 0;
      p.close();
      await sleep(1000); // what was received is still being written
      const rows = ctx.site.daemon.alive ? eventRows(ctx.site.db) - rows0 : NaN;
      const deletes = ctx.site.daemon.alive ? eventRows(ctx.site.db, 'USER_DELETED_ON_DEVICE') : NaN;
      const bytes = dbBytes(ctx.site.db) - bytes0;
      return {
        reached: `${st!.sent().toLocaleString('en')} delete events sent in ${round(sec)} s; ${why === 'done' ? (endedByDaemon ? 'the daemon ended the session' : '10 s') : why}`,
        figures: { eventsSent: st!.sent(), seconds: round(sec), sessionEndedByDaemon: endedByDaemon, rowsWritten: rows, deleteRows: deletes, dbGrowthMb: round(bytes / 1048576), mbPerSec: round(bytes / 1048576 / Math.max(sec, 0.001)), stop: why },
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
      const port = ctx.site.daemon.adminPort;
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
              // a holder keeps the count up: reopen what the server closed
              if (refused < 20_000) setTimeout(() => void open(partial), 50);
            }
          });
          setTimeout(resolve, 2000);
        });
      const work: Promise<void>[] = [];
      for (let i = 0; i < 520; i++) work.push(open(true));
      for (let i = 0; i < 101; i++) work.push(open(false));
      await Promise.all(work);
      // trickle one header line per connection every 2 s (a slowloris keeps its requests alive)
      const trickle = setInterval(() => {
        let n = 0;
        for (const s of socks) if (!s.destroyed) s.write(`X-${n++}: y\r\n`);
      }, 2000);
      const t0 = Date.now();
      let peakHeld = socks.size;
      const why = await until(ctx, () => {
        peakHeld = Math.max(peakHeld, socks.size);
        return Date.now() - t0 > 15_000;
      });
      stop = true;
      clearInterval(trickle);
      const heldAtEnd = socks.size;
      for (const s of socks) s.destroy();
      return { reached: `${opened} connections opened, ${heldAtEnd} held at the end (peak ${peakHeld}), ${refused} closed by the server; ${why}`, figures: { opened, peakHeld, heldAtEnd, closedByServer: refused, stop: why } };
    },
  },
];
