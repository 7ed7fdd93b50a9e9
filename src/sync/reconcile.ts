// The sync engine's reconcile: a terminal's user list compared with the
// server's, both walked in ascending byte order of the user ID like a merge
// join, in slices that give the event loop back, within a deadline. What the
// terminal holds differently is pulled and merged; what it lacks and the feed
// will not deliver is owed to it. See scheduling.ts for the layers.
import { performance } from 'node:perf_hooks';
import { sameForTerminal } from '../model/merge.js';
import type { UserRecord } from '../model/user.js';
import type { SeqUser, SiteStore } from '../store/backend.js';
import type { DeviceSession, ReadResult, UserListing } from './ports.js';
import { utf8Compare } from '../utf8-order.js';
import { PushEngine } from './push.js';
import { EngineEvent, RECONCILE_PUSH_CHUNK, RECONCILE_RETRY_MAX_MS, SERVER_WALK_PAGE, SLICE_MS, type Lane } from './lanes.js';

export abstract class ReconcileEngine extends PushEngine {

  /**
   * Brings a terminal and the server together by comparing user lists: users the
   * terminal holds that the server lacks or holds differently are pulled and
   * merged (sync mode all/specific), and every server user the terminal lacks or
   * holds differently is queued for it. Then the cursor jumps to the terminal's
   * newest event.
   */
  protected async reconcile(lane: Lane, link: DeviceSession): Promise<void> {
    if (this.mode === 'off') {
      // Nothing is synced: only take note of where the terminal's log stands.
      await this.store.setLogPosition(lane.id, { cursor: Math.max(lane.subscribedFrom, lane.processed), logEpoch: lane.epoch }, this.fence(lane.id));
      lane.wantReconcile = false;
      return;
    }
    this.stats.reconciles++;
    const gen = lane.gen;
    // users whose pull failed before are tried again: by this reconcile when it pulls
    // them anyway, by the repull task after it otherwise
    if (this.pullEnabled()) await this.loadPullFailures(lane);
    // What the feed will still deliver (numbers past the terminal's feed cursor) is
    // not owed again here. A terminal at 0 (met for the first time) is compared
    // with the whole server: what it lacks up to the head is owed to it, and its
    // cursor then jumps to that head, so a terminal that already holds the
    // server's users costs this comparison and nothing else.
    const feedCursor = (await this.store.getFeedCursor(lane.id)) ?? 0;
    const head = feedCursor === 0 ? await this.store.feedHead() : feedCursor;
    const owedHere = (seq: number) => seq <= head;
    // The terminal's index and the server's users are both walked in ascending byte
    // order of the user ID (the terminal's order is checked by the driver), like a
    // merge join: only one page of each side is held at a time, and the work runs
    // in slices that give the event loop back every few milliseconds, within a deadline.
    const slicer = new Slicer(this.reconcileTimeoutMs);
    const maxUsers = Math.min(this.maxTerminalUsers, link.identity.userCapacity > 0 ? link.identity.userCapacity : Infinity);
    const pages = listingEntries(link.userPages ? link.userPages({ maxUsers }) : wholeListing(link));
    // the terminal holds the server's record `u` as listed in `entry`, or not: per its listing kind
    const parts = link.capabilities.parts;
    const digestOf = link.digestOf?.bind(link);
    const differs = (u: UserRecord, entry: ListingEntry): boolean => {
      if (entry.user) return !sameForTerminal(u, entry.user, parts);
      if (!digestOf) throw new Error(`the ${link.identity.protocol} driver lists digests but computes none (digestOf)`);
      return digestOf(u) !== entry.digest;
    };
    /** records a 'full-read' listing already gave: pulled without asking again */
    const listed = new Map<string, UserRecord>();
    const myGroups = new Set((await this.scopeOf(lane)) ?? []);
    const inScope = (u: UserRecord) => this.mode !== 'specific' || u.accessGroups.some((g) => myGroups.has(g));
    const touched = new Set<string>();
    const toPull: string[] = [];
    const toPush: string[] = [];
    let terminalUsers = 0;
    let pulledN = 0;
    let queuedN = 0;
    const server = new ServerWalk(this.store);
    const flush = async (final: boolean) => {
      while (toPull.length >= link.capabilities.maxBatch || (final && toPull.length)) {
        const ids = toPull.splice(0, link.capabilities.maxBatch);
        for (const id of ids) lane.repull.delete(id);
        const known = ids.map((id) => listed.get(id));
        const pulled: ReadResult[] = known.every((u) => u !== undefined) ? ids.map((userId, k) => ({ userId, user: known[k]! })) : await link.getUsers(ids);
        for (const id of ids) listed.delete(id);
        await slicer.yield();
        const out = this.pullOutcome(lane, link, pulled, () => 0);
        const results = await this.store.ingest({ terminalId: lane.id, fence: this.fence(lane.id), merges: out.merges, advance: null, events: out.events, pullFailed: out.failed, pullGone: out.gone });
        this.stats.pulls += out.merges.length;
        pulledN += ids.length;
        this.pullFailed(lane, out.failed);
        for (const r of results) {
          for (const t of r.enqueued) touched.add(t);
          this.notify('USER_UPDATE_SUCCESS_DEVICE', lane.id, r.record.id);
        }
      }
      if (toPush.length >= RECONCILE_PUSH_CHUNK || (final && toPush.length)) {
        queuedN += toPush.length;
        await this.store.owe(lane.id, toPush.splice(0));
      }
    };
    for await (const page of pages) {
      for (const entry of page) {
        await slicer.tick();
        terminalUsers++;
        // server users before this entry: the terminal lacks them
        for (let x = await server.peek(); x && byteOrder(x.user.id, entry.userId) < 0; x = await server.peek()) {
          await server.next();
          if (inScope(x.user) && owedHere(x.seq)) toPush.push(x.user.id);
          if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
          await slicer.tick();
        }
        const held = await server.peek();
        const x = held && held.user.id === entry.userId ? await server.next() : null;
        if (!x || differs(x.user, entry)) {
          if (this.pullEnabled()) {
            toPull.push(entry.userId);
            if (entry.user) listed.set(entry.userId, entry.user);
          } else if (x && owedHere(x.seq)) toPush.push(entry.userId);
        }
      }
      await flush(false);
      slicer.check();
    }
    // server users after the terminal's last one
    for (let x = await server.next(); x; x = await server.next()) {
      await slicer.tick();
      if (inScope(x.user) && owedHere(x.seq)) toPush.push(x.user.id);
      if (toPush.length >= RECONCILE_PUSH_CHUNK) await flush(false);
    }
    await flush(true);
    // Everything up to where this session's subscription started is now covered by
    // the comparison; events after it are (or will be) processed from the inbox.
    // A log reset meanwhile asks for another comparison (the list may predate it).
    if (lane.gen === gen && lane.link === link) {
      await this.store.setLogPosition(lane.id, { cursor: Math.max(lane.subscribedFrom, lane.processed), logEpoch: lane.epoch }, this.fence(lane.id));
      // met for the first time: everything up to the head it lacked is owed now, the rest it holds
      if (feedCursor === 0 && head > 0) await this.store.recordPush({ terminalId: lane.id, fence: this.fence(lane.id), feed: { from: 0, to: head } });
      lane.wantReconcile = false;
      lane.reconcileRetryMs = this.reconcileRetryMs;
    }
    this.emitEvent(EngineEvent.RECONCILE, lane.id, null, JSON.stringify({ terminalUsers, pulled: pulledN, queued: queuedN }));
    touched.add(lane.id);
    this.kickPushes([...touched]);
  }

  /** A reconcile ran past its deadline: keep the cursor, try again later (doubling the wait), keep the session. */
  protected reconcileAbandoned(lane: Lane, e: ReconcileTimeout): void {
    const wait = lane.reconcileRetryMs;
    lane.reconcileRetryMs = Math.min(RECONCILE_RETRY_MAX_MS, wait * 2);
    this.log.warn({ terminal: lane.id, timeoutMs: this.reconcileTimeoutMs, retryInMs: wait }, `${e.message}; abandoned, to be retried`);
    this.emitEvent(EngineEvent.RECONCILE, lane.id, null, JSON.stringify({ abandoned: true, reason: e.message, retryInMs: wait }));
    if (lane.reconcileTimer) clearTimeout(lane.reconcileTimer);
    lane.reconcileTimer = setTimeout(() => {
      lane.reconcileTimer = null;
      this.schedule(lane);
    }, wait);
    lane.reconcileTimer.unref?.();
  }
}


/** The reconcile ran past --reconcile-timeout-sec. */
export class ReconcileTimeout extends Error {
  constructor(ms: number) {
    super(`reconcile did not finish within ${Math.round(ms / 1000)} s`);
    this.name = 'ReconcileTimeout';
  }
}

/**
 * Cuts a long loop into slices: tick() gives the event loop back once a slice
 * has run SLICE_MS (so heartbeats, other terminals and the admin API are served
 * between slices), and fails with ReconcileTimeout once the deadline passed.
 */
class Slicer {
  private readonly deadline: number;
  private sliceStart = performance.now();
  private n = 0;
  constructor(private readonly timeoutMs: number) {
    this.deadline = performance.now() + timeoutMs;
  }

  /** cheap: looks at the clock every 8 calls */
  tick(): Promise<void> | void {
    if ((++this.n & 7) !== 0) return;
    if (performance.now() - this.sliceStart >= SLICE_MS) return this.yield();
  }

  async yield(): Promise<void> {
    this.check();
    await new Promise<void>((r) => setImmediate(r));
    this.sliceStart = performance.now();
  }

  check(): void {
    if (performance.now() > this.deadline) throw new ReconcileTimeout(this.timeoutMs);
  }
}

/** The server's users in ascending byte order of the ID, a page at a time. */
class ServerWalk {
  private page: SeqUser[] = [];
  private i = 0;
  private after = '';
  private done = false;
  constructor(private readonly store: SiteStore) {}

  async peek(): Promise<SeqUser | null> {
    if (this.i >= this.page.length && !this.done) {
      this.page = await this.store.walkUsers({ after: this.after, limit: SERVER_WALK_PAGE });
      this.i = 0;
      if (this.page.length === 0) this.done = true;
      else this.after = this.page[this.page.length - 1].user.id;
    }
    return this.i < this.page.length ? this.page[this.i] : null;
  }

  async next(): Promise<SeqUser | null> {
    const u = await this.peek();
    if (u) this.i++;
    return u;
  }
}

/** Byte order of two user IDs (UTF-8, shorter first on a common prefix): LIST_USERS order and SQLite's. */
function byteOrder(a: string, b: string): number {
  return utf8Compare(a, b);
}

interface ListingEntry {
  userId: string;
  /** listing 'digest' */
  digest?: string;
  /** listing 'full-read' */
  user?: UserRecord;
}

/** A listing's pages as entries of either kind. */
async function* listingEntries(pages: AsyncIterable<UserListing>): AsyncIterable<ListingEntry[]> {
  for await (const page of pages) yield page.kind === 'digest' ? page.entries : page.users.map((user) => ({ userId: user.id, user }));
}

/** A driver without paged listing: its whole listing, sorted, as one page. */
async function* wholeListing(session: DeviceSession): AsyncIterable<UserListing> {
  const all = await session.listUsers();
  if (all.kind === 'digest') yield { kind: 'digest', entries: all.entries.sort((x, y) => byteOrder(x.userId, y.userId)) };
  else yield { kind: 'full-read', users: all.users.sort((x, y) => byteOrder(x.id, y.id)) };
}
