// Prometheus metrics through prom-client, on a registry of our own (one per
// admin server, so tests can run several in one process).
//
// - prom-client's default metrics: process CPU, memory, open file
//   descriptors, start time; Node.js heap, event-loop lag (mean, p50, p90,
//   p99, max since the previous scrape), GC durations by kind, active handles
//   and requests. Names: process_* and nodejs_* (see prom-client).
// - termsync's own, read from the daemon and the store at scrape time (each
//   metric's collect()), or counted from the session manager's events:
//   listed in METRIC_NAMES and in the README.
//
// Counters that mirror a count the engine keeps (pulls, pushes, ...) are set
// at scrape time to that count (reset + inc), so they stay counters for
// rate() without a second book-keeping that could drift.
import client from 'prom-client';
import type { Daemon } from '../daemon.js';
import { Priority } from '../sync/engine.js';

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
  daemon: Daemon;
  /** the admin listener's connection count and evictions */
  admin?: () => { connections: number; evicted: number };
  /** event-loop delay sampling, ms (default 20) */
  loopResolutionMs?: number;
}

const SYNC_MODES = ['off', 'server', 'all', 'specific'] as const;

/** Everything /metrics reports; start() subscribes, stop() unsubscribes. */
export class MetricsCollector {
  readonly registry = new client.Registry();
  private readonly daemon: Daemon;
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

  constructor(o: MetricsSourceOptions) {
    const d = (this.daemon = o.daemon);
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: o.loopResolutionMs ?? 20 });
    const latency = new client.Histogram({
      name: 'termsync_push_latency_seconds',
      help: 'Time from a device event arriving to the last push of that user to the other terminals.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.latency = new PushLatencyObserver(() => d.engine.stats.lastPushLatencyMs, (s) => latency.observe(s));
    const self = this;
    // store reads fail together when the database is unreadable; db_up says so
    let dbUp = 1;
    const fromStore = (fn: () => void) => {
      try {
        fn();
      } catch {
        dbUp = 0;
      }
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

    // registered first: collected first, so db_up below sees these reads
    gauge('termsync_terminals', 'Terminals by session state.', ['state'], (g) => {
      dbUp = 1;
      fromStore(() => {
        const counts = { online: 0, offline: 0, pending: 0 };
        for (const t of d.terminals()) counts[t.state]++;
        for (const [state, n] of Object.entries(counts)) g.set({ state }, n);
      });
    });
    gauge('termsync_outbox_entries', 'Pushes owed to terminals: change-feed entries past the cursor of each terminal, plus targeted owed entries.', [], (g) => fromStore(() => g.set(d.store.owedCount())));
    gauge('termsync_users', 'Users in the server database.', [], (g) => fromStore(() => g.set(d.store.userCount())));
    gauge('termsync_push_failures', 'Users a terminal refused (up to 10000 counted).', [], (g) => fromStore(() => g.set(d.store.listPushFailures({ limit: 10_000 }).length)));
    gauge('termsync_db_disk_bytes', 'Bytes of the database on disk, by file.', ['file'], (g) =>
      fromStore(() => {
        const disk = d.store.diskUsage();
        g.set({ file: 'db' }, disk.dbBytes);
        g.set({ file: 'wal' }, disk.walBytes);
      }),
    );
    gauge('termsync_db_free_bytes', 'Free pages inside the database file, bytes (reused before the file grows).', [], (g) =>
      fromStore(() => {
        const disk = d.store.diskUsage();
        g.set(disk.freePages * disk.pageSize);
      }),
    );
    gauge('termsync_db_up', '1 when the database could be read at this scrape.', [], (g) => g.set(dbUp));
    gauge('termsync_pending_monitoring_events', 'Monitoring events kept in memory because the database refused them.', [], (g) => g.set(d.store.pendingEventCount));
    gauge('termsync_sync_mode', 'The sync mode: 1 for the mode in force, 0 for the others.', ['mode'], (g) => {
      for (const mode of SYNC_MODES) g.set({ mode }, d.engine.syncMode === mode ? 1 : 0);
    });
    gauge('termsync_queue_jobs', 'Sync jobs waiting in the global queue, by priority.', ['priority'], (g) => {
      const q = d.engine.queue;
      g.set({ priority: 'pull' }, q.sizeBy({ priority: Priority.PULL }));
      g.set({ priority: 'push' }, q.sizeBy({ priority: Priority.PUSH }));
      g.set({ priority: 'catchup' }, q.sizeBy({ priority: Priority.CATCHUP }));
    });
    gauge('termsync_queue_running_jobs', 'Sync jobs running now.', [], (g) => g.set(d.engine.queue.pending));
    gauge('termsync_ingest_backlog_events', 'Terminal events received and not yet processed.', [], (g) => g.set(d.engine.laneDepths().ingestBacklog));
    gauge('termsync_lanes_waiting', 'Terminal lanes with work not yet submitted to the queue.', [], (g) => g.set(d.engine.laneDepths().lanesWaiting));
    const st = () => d.engine.stats;
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
    }
    gauge('process_heap_used_bytes', 'V8 heap in use, bytes (kept for older dashboards; see nodejs_heap_size_used_bytes).', [], (g) => g.set(process.memoryUsage().heapUsed));
  }

  start(): void {
    this.daemon.manager.on('offline', this.onOffline);
    this.daemon.manager.on('reconnecting', this.onReconnecting);
    this.unsubscribe = this.daemon.engine.onActivity((e) => {
      if (e.type === 'USER_UPDATE_SUCCESS_SERVER') this.latency.drainSoon();
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.daemon.manager.off('offline', this.onOffline);
    this.daemon.manager.off('reconnecting', this.onReconnecting);
    // the default metrics' event-loop monitor and GC observer end with the registry's metrics
    this.registry.clear();
  }

  /** The exposition document. */
  async render(): Promise<string> {
    this.latency.drain();
    // prom-client writes a not-a-number as "Nan" (an event-loop lag with no sample
    // since the previous scrape); the format spells it NaN
    return (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  }
}
