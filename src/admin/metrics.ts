// Prometheus metrics through prom-client, on a registry of our own (one per
// admin server, so tests can run several in one process).
//
// - prom-client's default metrics: process CPU, memory, open file
//   descriptors, start time; Node.js heap, event-loop lag (mean, p50, p90,
//   p99, max since the previous scrape), GC durations by kind, active handles
//   and requests. Names: process_* and nodejs_* (see prom-client).
// - termsync's own, read at scrape time: the database's figures in one
//   asynchronous snapshot before the metrics are rendered (the site's store:
//   SQLite or PostgreSQL), this daemon's engine and queue in each metric's
//   collect(); or counted from the session manager's events: listed in
//   METRIC_NAMES and in the README.
//
// Counters that mirror a count the engine keeps (pulls, pushes, ...) are set
// at scrape time to that count (reset + inc), so they stay counters for
// rate() without a second book-keeping that could drift.
import client from 'prom-client';
import type { Daemon } from '../daemon.js';
import type { DiskUsage } from '../store/types.js';
import { Priority } from '../sync/engine.js';
import { DaemonAdminSite } from './daemon-site.js';
import { LoopStallMonitor, STALL_BUCKETS } from './loop-stall.js';
import type { AdminSite } from './site.js';

export const CONTENT_TYPE = client.Registry.PROMETHEUS_CONTENT_TYPE;

/** Push latency buckets, seconds: from a fast LAN push to a terminal that was away. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * Feeds the push-latency histogram from SyncEngine.stats.lastPushLatencyMs.
 *
 * That array only grows by push(), and when it passes 10,000 entries the engine
 * drops the oldest 5,000 (splice). We remember how long it was when we last
 * looked: new samples are the entries past that length; if the array is shorter
 * than we remember, one trim happened and the newest `len - seen + 5000`
 * entries are new. drain() runs after every push notification (a microtask
 * after the engine's synchronous loop over one PUT_USERS batch) and at every
 * scrape, so between two drains far fewer than 5,000 samples are added and the
 * count is exact.
 */
export class PushLatencyObserver {
  private seen: number;
  private queued = false;

  constructor(
    private readonly samples: () => number[],
    /** called with each new sample, in seconds */
    private readonly observe: (seconds: number) => void,
    private readonly trim = 5000,
  ) {
    this.seen = samples().length;
  }

  drainSoon(): void {
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      this.drain();
    });
  }

  drain(): void {
    const a = this.samples();
    let fresh: number;
    if (a.length >= this.seen) fresh = a.length - this.seen;
    else fresh = Math.min(a.length, a.length - this.seen + this.trim);
    for (let i = a.length - fresh; i < a.length; i++) this.observe(a[i] / 1000);
    this.seen = a.length;
  }
}

/** termsync's own metrics: name -> [type, labels]. The README's table lists the same. */
export const METRIC_NAMES = {
  termsync_terminals: ['gauge', ['state']],
  termsync_outbox_entries: ['gauge', []],
  termsync_users: ['gauge', []],
  termsync_push_failures: ['gauge', []],
  termsync_db_up: ['gauge', []],
  termsync_pending_monitoring_events: ['gauge', []],
  termsync_sync_mode: ['gauge', ['mode']],
  termsync_queue_jobs: ['gauge', ['priority']],
  termsync_queue_running_jobs: ['gauge', []],
  termsync_ingest_backlog_events: ['gauge', []],
  termsync_lanes_waiting: ['gauge', []],
  termsync_pulls_total: ['counter', []],
  termsync_pulls_failed_total: ['counter', []],
  termsync_pushes_total: ['counter', ['result']],
  termsync_db_write_failures_total: ['counter', []],
  termsync_reconciles_total: ['counter', []],
  termsync_push_latency_seconds: ['histogram', []],
  termsync_heartbeat_timeouts_total: ['counter', []],
  termsync_reconnects_total: ['counter', []],
  termsync_admin_connections: ['gauge', []],
  termsync_admin_connections_evicted_total: ['counter', []],
  process_heap_used_bytes: ['gauge', []],
} as const;

export interface MetricsSourceOptions {
  /** the site (or, as before, a daemon on SQLite) */
  site?: AdminSite;
  daemon?: Daemon;
  /** the admin listener's connection count and evictions */
  admin?: () => { connections: number; evicted: number; refused?: number; held?: number };
  /** event-loop delay sampling, ms (default 20) */
  loopResolutionMs?: number;
}

const SYNC_MODES = ['off', 'server', 'all', 'specific'] as const;

/** the database's figures, read once per scrape */
interface Snapshot {
  terminals: { online: number; offline: number; pending: number };
  owed: number;
  users: number;
  pushFailures: number;
  disk: DiskUsage | null;
}

/** Everything /metrics reports; start() subscribes, stop() unsubscribes. */
export class MetricsCollector {
  readonly registry = new client.Registry();
  private readonly site: AdminSite;
  /** the latest snapshot; null when the database could not be read */
  private snap: Snapshot | null = null;
  readonly latency: PushLatencyObserver;
  heartbeatTimeouts = 0;
  reconnects = 0;
  private readonly onOffline = (_id: string, reason: string) => {
    if (typeof reason === 'string' && reason.startsWith('heartbeat')) this.heartbeatTimeouts++;
  };
  private readonly onReconnecting = () => {
    this.reconnects++;
  };
  private unsubscribe: (() => void) | undefined;
  readonly stalls: LoopStallMonitor;

  constructor(o: MetricsSourceOptions) {
    if (!o.site && !o.daemon) throw new TypeError('MetricsCollector needs a site or a daemon');
    const site = (this.site = o.site ?? new DaemonAdminSite(o.daemon!));
    const engine = site.engine;
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: o.loopResolutionMs ?? 20 });
    const latency = new client.Histogram({
      name: 'termsync_push_latency_seconds',
      help: 'Time from a device event arriving to the last push of that user to the other terminals.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // the event loop's stalls, and the part of each that was this process's own work (see loop-stall.ts)
    const stallHist = new client.Histogram({
      name: 'termsync_eventloop_stall_seconds',
      help: 'How late a 20 ms timer ran (measure="wall"), and the part of it the process spent on the CPU (measure="own": its own work, not waiting for a core).',
      labelNames: ['measure'],
      buckets: STALL_BUCKETS,
      registers,
    });
    const wall = stallHist.labels('wall');
    const own = stallHist.labels('own');
    this.stalls = new LoopStallMonitor(20, (w, o) => {
      wall.observe(w);
      own.observe(o);
    });
    const stalls = this.stalls;
    new client.Gauge({
      name: 'termsync_eventloop_stall_max_seconds',
      help: 'The largest stall since the previous scrape (measure="wall"), and the largest own part of one (measure="own").',
      labelNames: ['measure'],
      registers,
      collect() {
        const s = stalls.take();
        this.set({ measure: 'wall' }, s.maxMs / 1000);
        this.set({ measure: 'own' }, s.ownMaxMs / 1000);
      },
    });
    this.latency = new PushLatencyObserver(() => engine.stats.lastPushLatencyMs, (s) => latency.observe(s));
    const self = this;
    // the snapshot is null when the database could not be read; db_up says so
    const fromStore = (fn: (s: Snapshot) => void) => {
      if (self.snap) fn(self.snap);
    };
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: client.Gauge) => void) =>
      new client.Gauge({ name, help, labelNames, registers, collect() { collect(this); } });
    const counter = (name: string, help: string, labelNames: string[], value: () => number | [Record<string, string>, number][]) =>
      new client.Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const v = value();
          if (typeof v === 'number') this.inc(v);
          else for (const [labels, n] of v) this.inc(labels, n);
        },
      });

    gauge('termsync_terminals', 'Terminals by session state (every terminal of the site).', ['state'], (g) =>
      fromStore((s) => {
        for (const [state, n] of Object.entries(s.terminals)) g.set({ state }, n);
      }),
    );
    gauge('termsync_outbox_entries', 'Pushes owed to terminals: change-feed entries past the cursor of each terminal, plus targeted owed entries.', [], (g) => fromStore((s) => g.set(s.owed)));
    gauge('termsync_users', 'Users in the server database.', [], (g) => fromStore((s) => g.set(s.users)));
    gauge('termsync_push_failures', 'Users a terminal refused (up to 10000 counted).', [], (g) => fromStore((s) => g.set(s.pushFailures)));
    // the file sizes of a SQLite database (PostgreSQL keeps its own)
    if (site.kind === 'sqlite') {
      gauge('termsync_db_disk_bytes', 'Bytes of the database on disk, by file.', ['file'], (g) =>
        fromStore((s) => {
          if (!s.disk) return;
          g.set({ file: 'db' }, s.disk.dbBytes);
          g.set({ file: 'wal' }, s.disk.walBytes);
        }),
      );
      gauge('termsync_db_free_bytes', 'Free pages inside the database file, bytes (reused before the file grows).', [], (g) =>
        fromStore((s) => {
          if (s.disk) g.set(s.disk.freePages * s.disk.pageSize);
        }),
      );
    }
    gauge('termsync_db_up', '1 when the database could be read at this scrape.', [], (g) => g.set(self.snap ? 1 : 0));
    gauge('termsync_pending_monitoring_events', 'Monitoring events kept in memory because the database refused them.', [], (g) => g.set(site.pendingEventCount()));
    gauge('termsync_sync_mode', 'The sync mode: 1 for the mode in force, 0 for the others.', ['mode'], (g) => {
      for (const mode of SYNC_MODES) g.set({ mode }, engine.syncMode === mode ? 1 : 0);
    });
    gauge('termsync_queue_jobs', 'Sync jobs waiting in the global queue, by priority.', ['priority'], (g) => {
      const q = engine.queue;
      g.set({ priority: 'pull' }, q.sizeBy({ priority: Priority.PULL }));
      g.set({ priority: 'push' }, q.sizeBy({ priority: Priority.PUSH }));
      g.set({ priority: 'catchup' }, q.sizeBy({ priority: Priority.CATCHUP }));
    });
    gauge('termsync_queue_running_jobs', 'Sync jobs running now.', [], (g) => g.set(engine.queue.pending));
    gauge('termsync_ingest_backlog_events', 'Terminal events received and not yet processed.', [], (g) => g.set(engine.laneDepths().ingestBacklog));
    gauge('termsync_lanes_waiting', 'Terminal lanes with work not yet submitted to the queue.', [], (g) => g.set(engine.laneDepths().lanesWaiting));
    const st = () => engine.stats;
    counter('termsync_pulls_total', 'Users pulled from terminals.', [], () => st().pulls);
    counter('termsync_pulls_failed_total', 'Users a terminal reported changed but could not deliver.', [], () => st().pullsFailed);
    counter('termsync_pushes_total', 'Users pushed to terminals, by result.', ['result'], () => [
      [{ result: 'ok' }, st().pushes],
      [{ result: 'failed' }, st().pushesFailed],
    ]);
    counter('termsync_db_write_failures_total', 'Database writes of the sync engine that failed ("Fail to save to the server DB").', [], () => st().dbWriteFailures);
    counter('termsync_reconciles_total', 'Full resyncs (user-list comparisons).', [], () => st().reconciles);
    counter('termsync_heartbeat_timeouts_total', 'Sessions ended because the terminal stayed silent past the heartbeat deadline.', [], () => self.heartbeatTimeouts);
    counter('termsync_reconnects_total', 'Reconnect attempts scheduled for terminals the server dials.', [], () => self.reconnects);
    if (o.admin) {
      const admin = o.admin;
      gauge('termsync_admin_connections', 'Open connections to the admin listener.', [], (g) => g.set(admin().connections));
      counter('termsync_admin_connections_evicted_total', 'Admin connections closed to make room (a client over its per-address cap).', [], () => admin().evicted);
      counter('termsync_admin_connections_refused_total', 'Admin connections refused before any HTTP work (their address was over its connect rate).', [], () => admin().refused ?? 0);
      gauge('termsync_admin_connections_held_refused', 'Refused admin connections held unread before their reset.', [], (g) => g.set(admin().held ?? 0));
    }
    gauge('process_heap_used_bytes', 'V8 heap in use, bytes (kept for older dashboards; see nodejs_heap_size_used_bytes).', [], (g) => g.set(process.memoryUsage().heapUsed));
  }

  start(): void {
    this.stalls.start();
    this.site.manager.on('offline', this.onOffline);
    this.site.manager.on('reconnecting', this.onReconnecting);
    this.unsubscribe = this.site.engine.onActivity((e) => {
      if (e.type === 'USER_UPDATE_SUCCESS_SERVER') this.latency.drainSoon();
    });
  }

  stop(): void {
    this.stalls.stop();
    this.unsubscribe?.();
    this.site.manager.off('offline', this.onOffline);
    this.site.manager.off('reconnecting', this.onReconnecting);
    // the default metrics' event-loop monitor and GC observer end with the registry's metrics
    this.registry.clear();
  }

  /** The database's figures for one scrape (rejects when the database cannot be read). */
  private async read(): Promise<Snapshot> {
    const store = this.site.store;
    const [terminals, owed, users, failures, disk] = await Promise.all([
      this.site.terminals(),
      store.owedCounts(),
      store.userCount(),
      store.listPushFailures({ limit: 10_000 }),
      this.site.disk(),
    ]);
    const counts = { online: 0, offline: 0, pending: 0 };
    for (const t of terminals) counts[t.state]++;
    return { terminals: counts, owed: owed.total, users, pushFailures: failures.length, disk };
  }

  /** The exposition document. */
  async render(): Promise<string> {
    this.latency.drain();
    this.snap = await this.read().catch(() => null);
    // prom-client writes a not-a-number as "Nan" (an event-loop lag with no sample
    // since the previous scrape); the format spells it NaN
    return (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  }
}
