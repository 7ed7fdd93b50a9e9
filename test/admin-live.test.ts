// The live parts of the admin API against a real site: the server-sent event
// stream of monitoring events, and the Prometheus metrics.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { userFromJson } from '../src/model/user.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const silent = pino({ level: 'silent' });
let site: Site;
let admin: AdminServer;
let base: string;

beforeAll(async () => {
  site = await startSite({ terminals: 3, daemon: { heartbeatSec: 1 }, sim: { control: 0 } });
  admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: null, log: silent });
  base = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin?.close();
  await site?.close();
});

interface SseMessage {
  id: string | undefined;
  data: any;
}

/** A minimal EventSource: parses `id:` and `data:` lines of a text/event-stream response. */
function openStream(path: string, headers: Record<string, string> = {}) {
  const messages: SseMessage[] = [];
  let status = 0;
  let contentType = '';
  let buf = '';
  const req = http.get(base + path, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
    status = res.statusCode ?? 0;
    contentType = String(res.headers['content-type']);
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let id: string | undefined;
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) id = line.slice(3).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (data.length) messages.push({ id, data: JSON.parse(data.join('\n')) });
      }
    });
  });
  req.on('error', () => {});
  return {
    messages,
    get status() {
      return status;
    },
    get contentType() {
      return contentType;
    },
    close: () => req.destroy(),
  };
}

describe('GET /api/events/stream', () => {
  it('delivers a new monitoring event live, with an id line, and resumes after Last-Event-ID', async () => {
    const newest = (await (await fetch(base + '/api/events?order=desc&limit=1')).json()) as { id: number }[];
    const before = newest[0]?.id ?? 0;
    const s = openStream('/api/events/stream');
    await waitFor(() => s.status === 200, { message: 'stream did not open' });
    expect(s.contentType).toMatch(/^text\/event-stream/);

    // someone enrolls a user at terminal 3 (through the simulator's control API)
    const enroll = await fetch(`http://127.0.0.1:${site.sim.controlPort}/terminals/3/users`, {
      method: 'POST',
      body: JSON.stringify({ id: '8001', name: 'Live One', cards: [{ type: 1, data: '8001' }] }),
    });
    expect(enroll.status).toBe(201);
    await waitFor(() => s.messages.some((m) => m.data.type === 'USER_UPDATE_SUCCESS_DEVICE' && m.data.user === '8001'), {
      message: 'the device event did not arrive on the stream',
    });
    const dev = s.messages.find((m) => m.data.type === 'USER_UPDATE_SUCCESS_DEVICE')!;
    expect(dev.id).toBe(String(dev.data.id));
    expect(dev.data).toMatchObject({ label: 'User update succeeded (Device)', terminal: 't3', user: '8001' });
    // then the pushes to the two other terminals
    const pushedTo = (list: SseMessage[], user: string) => new Set(list.filter((m) => m.data.type === 'USER_UPDATE_SUCCESS_SERVER' && m.data.user === user).map((m) => m.data.terminal));
    await waitFor(() => pushedTo(s.messages, '8001').size === 2, {
      message: 'the push events did not arrive on the stream',
    });
    const ids = s.messages.map((m) => Number(m.id));
    // without a position only new events are sent, nothing older
    expect(Math.min(...ids)).toBeGreaterThan(before);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    s.close();

    // a client that saw up to the device event resumes right after it
    const again = openStream('/api/events/stream', { 'last-event-id': String(dev.data.id) });
    await waitFor(() => again.messages.filter((m) => m.data.user === '8001').length >= 2, { message: 'resume did not replay' });
    expect(Number(again.messages[0].id)).toBeGreaterThan(dev.data.id);
    expect([...pushedTo(again.messages, '8001')].sort()).toEqual(['t1', 't2']);
    expect(again.messages.some((m) => m.data.type === 'USER_UPDATE_SUCCESS_DEVICE' && m.data.user === '8001')).toBe(false);
    again.close();

    // ?after= works the same for clients that cannot set headers
    const fromQuery = openStream(`/api/events/stream?after=${dev.data.id - 1}`);
    await waitFor(() => fromQuery.messages.length >= 1, { message: '?after did not replay' });
    expect(fromQuery.messages[0].data.id).toBe(dev.data.id);
    fromQuery.close();
  });

  it('a server-side change shows up on an open stream', async () => {
    const s = openStream('/api/events/stream');
    await waitFor(() => s.status === 200);
    const put = await fetch(base + '/api/users/8002', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'From the API' }) });
    expect(put.status).toBe(201);
    await waitFor(() => new Set(s.messages.filter((m) => m.data.user === '8002' && m.data.label === 'User update succeeded (Server)').map((m) => m.data.terminal)).size === 3, {
      message: 'push events for 8002 missing on the stream',
    });
    s.close();
  });
});

// ---------------------------------------------------------------- metrics

/** Each line of the text exposition format 0.0.4. */
const HELP = /^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/;
const TYPE = /^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)( -?[0-9]+)?$/;

function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    // the format allows empty lines (prom-client puts one between families)
    if (line === '') continue;
    if (line.startsWith('#')) {
      expect(HELP.test(line) || TYPE.test(line), line).toBe(true);
      continue;
    }
    const m = SAMPLE.exec(line);
    expect(m, line).not.toBeNull();
    const [series, value] = [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)];
    values.set(series, value === '+Inf' ? Infinity : Number(value));
  }
  return values;
}

async function scrape(): Promise<{ text: string; values: Map<string, number> }> {
  const r = await fetch(base + '/metrics');
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  return { text, values: parseMetrics(text) };
}

describe('GET /metrics', () => {
  it('parses as the exposition format and carries every termsync metric', async () => {
    // a device enrollment so there is a pull, pushes and a push latency
    await site.sim.terminals[0].enroll(userFromJson({ id: '8101', name: 'Metered', cards: [{ type: 1, data: '8101' }] }));
    await site.waitConverged({ users: ['8101'] });
    await waitFor(() => site.daemon.engine.stats.lastPushLatencyMs.length > 0, { message: 'no push latency sample' });

    // (a 1 s heartbeat on a busy machine can drop a session for a moment: wait for all three)
    let text = '';
    let values = new Map<string, number>();
    await waitFor(
      async () => {
        ({ text, values } = await scrape());
        return values.get('termsync_terminals{state="online"}') === 3;
      },
      { message: 'not all terminals online in the metrics' },
    );
    for (const name of [
      'termsync_terminals',
      'termsync_queue_jobs',
      'termsync_outbox_entries',
      'termsync_pulls_total',
      'termsync_pushes_total',
      'termsync_db_write_failures_total',
      'termsync_reconciles_total',
      'termsync_push_latency_seconds',
      'termsync_heartbeat_timeouts_total',
      'termsync_reconnects_total',
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_eventloop_lag_mean_seconds',
      'nodejs_eventloop_lag_max_seconds',
      'nodejs_gc_duration_seconds',
      'nodejs_active_handles_total',
      'nodejs_heap_size_used_bytes',
      'process_start_time_seconds',
      'process_heap_used_bytes',
      'termsync_sync_mode',
      'termsync_db_up',
      'termsync_admin_connections',
      'termsync_admin_connections_refused_total',
      'termsync_admin_connections_held_refused',
      'termsync_eventloop_stall_seconds',
      'termsync_eventloop_stall_max_seconds',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    expect(values.get('termsync_terminals{state="online"}')).toBe(3);
    expect(values.get('termsync_terminals{state="offline"}')).toBe(0);
    expect(values.get('termsync_terminals{state="pending"}')).toBe(0);
    for (const p of ['pull', 'push', 'catchup']) expect(values.has(`termsync_queue_jobs{priority="${p}"}`)).toBe(true);
    expect(values.get('termsync_pulls_total')).toBeGreaterThanOrEqual(1);
    expect(values.get('termsync_pushes_total{result="ok"}')).toBeGreaterThanOrEqual(2);
    expect(values.has('termsync_pushes_total{result="failed"}')).toBe(true);
    expect(values.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(values.get('termsync_sync_mode{mode="all"}')).toBe(1);
    expect(values.get('termsync_sync_mode{mode="off"}')).toBe(0);
    expect(values.get('termsync_db_up')).toBe(1);
    expect(values.get('termsync_admin_connections')).toBeGreaterThanOrEqual(1);
    // the loop's stalls, and their own part, counted on every tick of the same timer
    expect(values.get('termsync_eventloop_stall_seconds_count{measure="wall"}')).toBeGreaterThan(0);
    expect(values.get('termsync_eventloop_stall_seconds_count{measure="own"}')).toBe(values.get('termsync_eventloop_stall_seconds_count{measure="wall"}'));
    expect(values.get('termsync_eventloop_stall_max_seconds{measure="own"}')).toBeLessThanOrEqual(values.get('termsync_eventloop_stall_max_seconds{measure="wall"}')!);

    // the histogram: cumulative buckets ending in +Inf = count, and it holds the engine's samples
    expect(text).toContain('# TYPE termsync_push_latency_seconds histogram');
    const buckets = [...values].filter(([k]) => k.startsWith('termsync_push_latency_seconds_bucket'));
    const counts = buckets.map(([, v]) => v);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(buckets[buckets.length - 1][0]).toBe('termsync_push_latency_seconds_bucket{le="+Inf"}');
    expect(values.get('termsync_push_latency_seconds_count')).toBe(counts[counts.length - 1]);
    // every sample the engine had when scraped (a push finishing after the scrape adds one more)
    expect(values.get('termsync_push_latency_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(values.get('termsync_push_latency_seconds_count')).toBeLessThanOrEqual(site.daemon.engine.stats.lastPushLatencyMs.length);
  });

  it('the Grafana dashboard (systemd/grafana-dashboard.json) only queries metrics that /metrics serves', async () => {
    const dash = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'systemd', 'grafana-dashboard.json'), 'utf8'));
    const exprs: string[] = dash.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
    const used = new Set(exprs.flatMap((e) => e.match(/\b(termsync|nodejs|process)_[a-z0-9_]+/g) ?? []).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    expect(used.size).toBeGreaterThanOrEqual(12);
    const { text } = await scrape();
    for (const name of used) expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    const titles = dash.panels.map((p: any) => p.title).join(' | ');
    for (const want of [/Terminals online/, /Sync latency/, /Pushes owed/, /Failures/, /Database write failures/, /Event-loop lag/]) expect(titles).toMatch(want);
  });

  it('counts heartbeat timeouts and reconnects from the session manager', async () => {
    const before = (await scrape()).values;
    // terminal 2 goes silent: the daemon's 1 s heartbeat declares it dead, then redials
    const fault = await fetch(`http://127.0.0.1:${site.sim.controlPort}/terminals/2/faults`, { method: 'POST', body: JSON.stringify({ type: 'blackhole', ms: 2500 }) });
    expect(fault.status).toBe(200);
    let now = before;
    await waitFor(
      async () => {
        now = (await scrape()).values;
        return now.get('termsync_heartbeat_timeouts_total')! > before.get('termsync_heartbeat_timeouts_total')!;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: 'no heartbeat timeout counted' },
    );
    expect(now.get('termsync_terminals{state="offline"}')).toBeGreaterThanOrEqual(1);
    // the daemon schedules a redial as soon as the session is declared dead
    await waitFor(async () => (await scrape()).values.get('termsync_reconnects_total')! > before.get('termsync_reconnects_total')!, {
      intervalMs: 50,
      message: 'no reconnect counted',
    });
  });
});
