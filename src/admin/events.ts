// Monitoring events as the admin API shows them (with the wording an
// administrator reads), and the live stream of new events over server-sent
// events.
//
// The stream reads the events table, not an in-memory bus, so every event that
// is stored reaches every client exactly once and in order, whoever wrote it
// (sync engine, daemon, store), and a client that reconnects with
// Last-Event-ID resumes where it stopped. The hub polls the table every
// `pollMs` (250 ms) while at least one client is connected, and the sync
// engine's onActivity wakes it at once for the engine's own events.
//
// Several daemons on one PostgreSQL database write events in transactions
// that commit in any order, so an event may become visible after one with a
// higher ID. With `gapHoldMs` the stream stops in front of a missing ID
// while the event after it is younger than that (the missing one is still
// being committed, or was rolled back: then it is passed once the hold ends),
// so every event is sent once, in ID order, and Last-Event-ID stays a cursor.
import type http from 'node:http';
import type { Logger } from 'pino';
import type { SiteStore } from '../store/backend.js';
import { MONITORING_LABELS, type StoredEvent } from '../store/types.js';

/** The human wording of every event type termsync writes; unknown types show their type name. */
export const EVENT_LABELS: Readonly<Record<string, string>> = {
  ...MONITORING_LABELS,
  USER_DELETED_ON_DEVICE: 'User deleted on device',
  PUSH_FAILED: 'Push failed',
  RECONCILE: 'Terminal resynced (user lists compared)',
  TERMINAL_RESET: 'Terminal reset detected',
  LOG_GAP: 'Terminal log gap (events overwritten before read)',
  TERMINAL_ONLINE: 'Terminal online',
  TERMINAL_OFFLINE: 'Terminal offline',
  TERMINAL_PENDING: 'Terminal waiting for approval',
  USER_PULL_FAILED: 'Device user could not be read (pulled again later)',
  PEER_LIMIT_EXCEEDED: 'Terminal went past a limit (session ended)',
  SYNC_MODE_CHANGED: 'Sync mode changed',
};

export function eventLabel(type: string): string {
  return EVENT_LABELS[type] ?? type;
}

export interface EventJson {
  id: number;
  /** ms since the epoch */
  time: number;
  type: string;
  label: string;
  terminal: string | null;
  user: string | null;
  /** the stored detail: parsed when it is JSON, else the text */
  detail: unknown;
}

export function eventToJson(e: StoredEvent): EventJson {
  let detail: unknown = e.detail;
  if (e.detail !== null && (e.detail.startsWith('{') || e.detail.startsWith('['))) {
    try {
      detail = JSON.parse(e.detail);
    } catch {
      // free text that happens to start with a bracket
    }
  }
  return { id: e.id, time: e.time, type: e.type, label: eventLabel(e.type), terminal: e.terminalId, user: e.userId, detail };
}

/** The ID of the newest stored event (0 when there is none). */
export async function lastEventId(store: Pick<SiteStore, 'listEvents'>): Promise<number> {
  return (await store.listEvents({ newestFirst: true, limit: 1 }))[0]?.id ?? 0;
}

/**
 * The events of `events` (ascending by ID, all after `after`) that may be
 * sent now: up to the first missing ID whose following event is younger than
 * `holdMs` (by `now`). 0: all of them.
 */
export function deliverable(events: readonly StoredEvent[], after: number, holdMs: number, now = Date.now()): readonly StoredEvent[] {
  if (holdMs <= 0) return events;
  let prev = after;
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (e.id !== prev + 1 && prev !== 0 && now - e.time < holdMs) return events.slice(0, i);
    prev = e.id;
  }
  return events;
}

// ------------------------------------------------------------------- stream

interface Client {
  res: http.ServerResponse;
  /** last event ID sent */
  last: number;
  /** waiting for 'drain' */
  blocked: boolean;
  /** a read for this client is in flight */
  reading: boolean;
  /** woken during that read: read again after it */
  again: boolean;
}

export interface EventHubOptions {
  store: Pick<SiteStore, 'listEvents'>;
  log: Logger;
  /** how long a gap in event IDs is waited for, ms (0: IDs commit in order) */
  gapHoldMs?: number;
  pollMs?: number;
  /** comment line sent to idle streams so proxies and browsers keep them open */
  keepAliveMs?: number;
  maxClients?: number;
  /** events read per client per wake-up (the rest follow on the next one) */
  batch?: number;
}

export class EventHub {
  private readonly clients = new Set<Client>();
  private readonly store: Pick<SiteStore, 'listEvents'>;
  private readonly log: Logger;
  private readonly gapHoldMs: number;
  private readonly pollMs: number;
  private readonly keepAliveMs: number;
  readonly maxClients: number;
  private readonly batch: number;
  private pollTimer: NodeJS.Timeout | null = null;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private wakeQueued = false;
  private closed = false;
  /** the last read failed (the database is unreachable): not logged again until one succeeds */
  private failing = false;

  constructor(o: EventHubOptions) {
    this.store = o.store;
    this.log = o.log;
    this.gapHoldMs = o.gapHoldMs ?? 0;
    this.pollMs = o.pollMs ?? 250;
    this.keepAliveMs = o.keepAliveMs ?? 15_000;
    this.maxClients = o.maxClients ?? 100;
    this.batch = o.batch ?? 500;
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts streaming to `res`: events with id > `after` now, then every new one. */
  add(res: http.ServerResponse, after: number): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx and similar proxies would otherwise buffer the stream
      'x-accel-buffering': 'no',
    });
    // tell EventSource how long to wait before reconnecting
    res.write('retry: 2000\n\n');
    const c: Client = { res, last: after, blocked: false, reading: false, again: false };
    this.clients.add(c);
    // 'close' on the response: it ended, or the client went away
    res.on('close', () => this.clients.delete(c) && this.stopTimersIfIdle());
    res.on('drain', () => {
      c.blocked = false;
      this.wake();
    });
    this.startTimers();
    this.pump(c);
  }

  /** Sends new events soon (coalesced into one read per event-loop turn). */
  wake(): void {
    if (this.wakeQueued || this.closed || this.clients.size === 0) return;
    this.wakeQueued = true;
    setImmediate(() => {
      this.wakeQueued = false;
      this.pumpAll();
    });
  }

  /** Ends every stream (the server is closing). */
  close(): void {
    this.closed = true;
    this.stopTimers();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }

  private startTimers(): void {
    if (this.closed) return;
    this.pollTimer ??= setInterval(() => this.pumpAll(), this.pollMs).unref();
    this.keepAliveTimer ??= setInterval(() => {
      for (const c of this.clients) if (!c.blocked) c.res.write(': keep-alive\n\n');
    }, this.keepAliveMs).unref();
  }

  private stopTimersIfIdle(): void {
    if (this.clients.size === 0) this.stopTimers();
  }

  private stopTimers(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.pollTimer = this.keepAliveTimer = null;
  }

  private pumpAll(): void {
    // clients at the same position share one query
    const byCursor = new Map<number, Promise<StoredEvent[] | null>>();
    for (const c of this.clients) this.pump(c, byCursor);
  }

  private read(after: number): Promise<StoredEvent[] | null> {
    return this.store.listEvents({ after, limit: this.batch }).then(
      (events) => {
        if (this.failing) this.log.info('event stream: monitoring events readable again');
        this.failing = false;
        return events;
      },
      (e: unknown) => {
        // the database cannot be read right now; the next poll tries again (logged once per outage)
        if (!this.failing) this.log.warn({ err: (e as Error).message }, 'event stream: reading monitoring events failed');
        this.failing = true;
        return null;
      },
    );
  }

  private pump(c: Client, cache?: Map<number, Promise<StoredEvent[] | null>>): void {
    if (c.reading) {
      c.again = true;
      return;
    }
    if (c.blocked || c.res.writableEnded || this.closed) return;
    const from = c.last;
    let pending = cache?.get(from);
    if (pending === undefined) {
      pending = this.read(from);
      cache?.set(from, pending);
    }
    c.reading = true;
    void pending.then((read) => {
      c.reading = false;
      const again = c.again;
      c.again = false;
      if (again) setImmediate(() => this.pump(c));
      if (!read || read.length === 0 || c.res.writableEnded || this.closed || c.last !== from) return;
      const events = deliverable(read, from, this.gapHoldMs);
      if (events.length === 0) return;
      let text = '';
      for (const e of events) text += `id: ${e.id}\ndata: ${JSON.stringify(eventToJson(e))}\n\n`;
      c.last = events[events.length - 1].id;
      if (!c.res.write(text)) c.blocked = true;
      // a full batch: more may be waiting
      else if (events.length === this.batch) this.wake();
    });
  }
}
