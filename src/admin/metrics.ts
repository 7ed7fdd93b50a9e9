// Prometheus metrics in the text exposition format (version 0.0.4), written by
// hand: HELP and TYPE lines, then samples; label values escaped.
//
// Sources:
// - terminals by state, outbox, users, push failures: the daemon and the store,
//   read at scrape time;
// - pulls, pushes, DB write failures, reconciles: SyncEngine.stats counters;
// - queued jobs by priority: the engine's p-queue (sizeBy per priority) plus
//   laneDepths() for work not yet submitted;
// - push latency: a real histogram fed with every new sample the engine appends
//   to stats.lastPushLatencyMs (see PushLatencyObserver);
// - heartbeat timeouts and reconnects: counted from the session manager's
//   'offline' (reason starting with "heartbeat") and 'reconnecting' events;
// - process: resident memory, CPU seconds, heap, event-loop delay
//   (perf_hooks.monitorEventLoopDelay, percentiles over the window since the
//   previous scrape).
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Daemon } from '../daemon.js';
import { Priority } from '../sync/engine.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Push latency buckets, seconds: from a fast LAN push to a terminal that was away. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Builds one exposition document. */
export class Exposition {
  private out: string[] = [];

  /** A metric family with one or more samples. */
  family(name: string, type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped', help: string, samples: [Labels, number][] | number): this {
    this.out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    const list: [Labels, number][] = typeof samples === 'number' ? [[{}, samples]] : samples;
    for (const [labels, v] of list) this.sample(name, labels, v);
    return this;
  }

  sample(name: string, labels: Labels, v: number): this {
    const l = Object.entries(labels);
    const ls = l.length ? `{${l.map(([k, x]) => `${k}="${escapeLabel(x)}"`).join(',')}}` : '';
    this.out.push(`${name}${ls} ${formatValue(v)}`);
    return this;
  }

  histogram(name: string, help: string, h: Histogram): this {
    this.out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} histogram`);
    let cum = 0;
    h.bounds.forEach((b, i) => {
      cum += h.counts[i];
      this.sample(`${name}_bucket`, { le: formatValue(b) }, cum);
    });
    this.sample(`${name}_bucket`, { le: '+Inf' }, h.count);
    this.sample(`${name}_sum`, {}, h.sum);
    this.sample(`${name}_count`, {}, h.count);
    return this;
  }

  text(): string {
    return this.out.join('\n') + '\n';
  }
}

/** A cumulative histogram (counts per bucket are kept non-cumulative, summed on output). */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const i = this.bounds.findIndex((b) => v <= b);
    if (i >= 0) this.counts[i]++;
  }
}

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
 * count is exact. An engine counter of samples ever taken (or a per-sample
 * callback) would make this independent of the trim size.
 */
export class PushLatencyObserver {
  readonly histogram = new Histogram(LATENCY_BUCKETS);
  private seen: number;
  private queued = false;

  constructor(
    private readonly samples: () => number[],
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
    for (let i = a.length - fresh; i < a.length; i++) this.histogram.observe(a[i] / 1000);
    this.seen = a.length;
  }
}

export interface MetricsSourceOptions {
  daemon: Daemon;
  /** how often the event-loop delay is sampled, ms (default 20) */
  loopResolutionMs?: number;
}

/** Everything /metrics reports; start() subscribes, stop() unsubscribes. */
export class MetricsCollector {
  private readonly daemon: Daemon;
  readonly latency: PushLatencyObserver;
  heartbeatTimeouts = 0;
  reconnects = 0;
  private readonly loop: IntervalHistogram;
  private readonly onOffline = (_id: string, reason: string) => {
    if (typeof reason === 'string' && reason.startsWith('heartbeat')) this.heartbeatTimeouts++;
  };
  private readonly onReconnecting = () => {
    this.reconnects++;
  };
  private stopped = false;
  private unsubscribe: (() => void) | undefined;

  constructor(o: MetricsSourceOptions) {
    this.daemon = o.daemon;
    this.latency = new PushLatencyObserver(() => this.daemon.engine.stats.lastPushLatencyMs);
    this.loop = monitorEventLoopDelay({ resolution: o.loopResolutionMs ?? 20 });
  }

  start(): void {
    this.daemon.manager.on('offline', this.onOffline);
    this.daemon.manager.on('reconnecting', this.onReconnecting);
    this.unsubscribe = this.daemon.engine.onActivity((e) => {
      if (e.type === 'USER_UPDATE_SUCCESS_SERVER') this.latency.drainSoon();
    });
    this.loop.enable();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.daemon.manager.off('offline', this.onOffline);
    this.daemon.manager.off('reconnecting', this.onReconnecting);
    this.loop.disable();
  }

  /** The exposition document. Store reads that fail are left out (termsync_db_up says so). */
  render(): string {
    const d = this.daemon;
    const x = new Exposition();
    const st = d.engine.stats;
    let dbUp = 1;

    try {
      const counts = { online: 0, offline: 0, pending: 0 };
      for (const t of d.terminals()) counts[t.state]++;
      x.family('termsync_terminals', 'gauge', 'Terminals by session state.', Object.entries(counts).map(([state, n]) => [{ state }, n]));
      x.family('termsync_outbox_entries', 'gauge', 'Pushes waiting in the outbox (one per terminal and user).', d.store.outboxCount());
      x.family('termsync_users', 'gauge', 'Users in the server database.', d.store.userCount());
      x.family('termsync_push_failures', 'gauge', 'Users a terminal refused (up to 10000 counted).', d.store.listPushFailures({ limit: 10_000 }).length);
      const disk = d.store.diskUsage();
      x.family('termsync_db_disk_bytes', 'gauge', 'Bytes of the database on disk, by file.', [[{ file: 'db' }, disk.dbBytes], [{ file: 'wal' }, disk.walBytes]]);
      x.family('termsync_db_free_bytes', 'gauge', 'Free pages inside the database file, bytes (reused before the file grows).', disk.freePages * disk.pageSize);
    } catch {
      dbUp = 0;
    }
    x.family('termsync_db_up', 'gauge', '1 when the database could be read at this scrape.', dbUp);
    x.family('termsync_pending_monitoring_events', 'gauge', 'Monitoring events kept in memory because the database refused them.', d.store.pendingEventCount);

    const q = d.engine.queue;
    x.family('termsync_queue_jobs', 'gauge', 'Sync jobs waiting in the global queue, by priority.', [
      [{ priority: 'pull' }, q.sizeBy({ priority: Priority.PULL })],
      [{ priority: 'push' }, q.sizeBy({ priority: Priority.PUSH })],
      [{ priority: 'catchup' }, q.sizeBy({ priority: Priority.CATCHUP })],
    ]);
    x.family('termsync_queue_running_jobs', 'gauge', 'Sync jobs running now.', q.pending);
    const lanes = d.engine.laneDepths();
    x.family('termsync_ingest_backlog_events', 'gauge', 'Terminal events received and not yet processed.', lanes.ingestBacklog);
    x.family('termsync_lanes_waiting', 'gauge', 'Terminal lanes with work not yet submitted to the queue.', lanes.lanesWaiting);

    x.family('termsync_pulls_total', 'counter', 'Users pulled from terminals.', st.pulls);
    x.family('termsync_pulls_failed_total', 'counter', 'Users a terminal reported changed but could not deliver.', st.pullsFailed);
    x.family('termsync_pushes_total', 'counter', 'Users pushed to terminals, by result.', [
      [{ result: 'ok' }, st.pushes],
      [{ result: 'failed' }, st.pushesFailed],
    ]);
    x.family('termsync_db_write_failures_total', 'counter', 'Database writes of the sync engine that failed ("Fail to save to the server DB").', st.dbWriteFailures);
    x.family('termsync_reconciles_total', 'counter', 'Full resyncs (user-list comparisons).', st.reconciles);
    this.latency.drain();
    x.histogram('termsync_push_latency_seconds', 'Time from a device event arriving to the last push of that user to the other terminals.', this.latency.histogram);
    x.family('termsync_heartbeat_timeouts_total', 'counter', 'Sessions ended because the terminal stayed silent past the heartbeat deadline.', this.heartbeatTimeouts);
    x.family('termsync_reconnects_total', 'counter', 'Reconnect attempts scheduled for terminals the server dials.', this.reconnects);

    const cpu = process.cpuUsage();
    const mem = process.memoryUsage();
    x.family('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, seconds.', (cpu.user + cpu.system) / 1e6);
    x.family('process_resident_memory_bytes', 'gauge', 'Resident memory size, bytes.', mem.rss);
    x.family('process_heap_used_bytes', 'gauge', 'V8 heap in use, bytes.', mem.heapUsed);
    x.family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, seconds.', Math.round(Date.now() / 1000 - process.uptime()));
    const loop = this.loop;
    const s = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
    x.family('nodejs_eventloop_lag_mean_seconds', 'gauge', 'Mean event-loop delay since the previous scrape.', loop.count > 0 ? s(loop.mean) : 0);
    x.family('nodejs_eventloop_lag_p99_seconds', 'gauge', '99th percentile event-loop delay since the previous scrape.', loop.count > 0 ? s(loop.percentile(99)) : 0);
    x.family('nodejs_eventloop_lag_max_seconds', 'gauge', 'Largest event-loop delay since the previous scrape.', loop.count > 0 ? s(loop.max) : 0);
    loop.reset();
    return x.text();
  }
}
