// The daemon under test, in a process of its own so that its CPU time and
// memory are its own. Started by bench/daemon-proc.ts with an IPC channel:
//   parent -> child  {type:'start', options}   child -> parent {type:'ready', adminPort, pid}
//   parent -> child  {type:'state'}            child -> parent {type:'state', ...}
//   parent -> child  {type:'stop'}             child -> parent {type:'stopped', stats}, then exits
// While running, the child sends {type:'sample', ...} every sampleMs: its own
// CPU time and memory, the outbox depth and the engine's queue.
// It runs exactly what `termsync run` runs: Daemon.start plus startAdmin.
import pino from 'pino';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { Daemon } from '../src/daemon.js';
import type { SyncMode } from '../src/store/types.js';

export interface ChildStartOptions {
  db: string;
  /** comm key, hex */
  commKey: string;
  terminals: { id: string; host: string; port: number }[];
  syncMode: SyncMode;
  heartbeatSec?: number;
  concurrency?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  requestTimeoutMs?: number;
  sampleMs: number;
  logLevel?: string;
  /** more Daemon options (JSON values only), e.g. listen, autoApprove, events (bench/hostile) */
  daemonExtra?: Record<string, unknown>;
}

export interface ChildSample {
  /** Date.now() in the child */
  at: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  outbox: number;
  queueWaiting: number;
  queueRunning: number;
  ingestBacklog: number;
  lanesWaiting: number;
  online: number;
  pushes: number;
  pulls: number;
  users: number;
}

export interface ChildState {
  online: number;
  outbox: number;
  /** no lane has work and the queue is empty */
  idle: boolean;
  users: number;
  pushes: number;
  pulls: number;
  pushesFailed: number;
  dbWriteFailures: number;
  reconciles: number;
}

let daemon: Daemon | null = null;
let admin: AdminServer | null = null;
let timer: NodeJS.Timeout | null = null;

function send(msg: unknown): void {
  process.send?.(msg);
}

function state(): ChildState {
  const d = daemon!;
  const lanes = d.engine.laneDepths();
  const outbox = d.store.owedCount();
  const q = d.engine.queue;
  return {
    online: lanes.online,
    outbox,
    idle: q.size === 0 && q.pending === 0 && lanes.lanesWaiting === 0 && lanes.ingestBacklog === 0,
    users: d.store.userCount(),
    pushes: d.engine.stats.pushes,
    pulls: d.engine.stats.pulls,
    pushesFailed: d.engine.stats.pushesFailed,
    dbWriteFailures: d.engine.stats.dbWriteFailures,
    reconciles: d.engine.stats.reconciles,
  };
}

function sample(): ChildSample {
  const d = daemon!;
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const lanes = d.engine.laneDepths();
  return {
    at: Date.now(),
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    outbox: d.store.owedCount(),
    queueWaiting: d.engine.queue.size,
    queueRunning: d.engine.queue.pending,
    ingestBacklog: lanes.ingestBacklog,
    lanesWaiting: lanes.lanesWaiting,
    online: lanes.online,
    pushes: d.engine.stats.pushes,
    pulls: d.engine.stats.pulls,
    users: d.store.userCount(),
  };
}

async function start(o: ChildStartOptions): Promise<void> {
  const log = pino({ level: o.logLevel ?? 'warn' });
  daemon = await Daemon.start({
    db: o.db,
    log,
    commKey: Buffer.from(o.commKey, 'hex'),
    terminals: o.terminals,
    syncMode: o.syncMode,
    heartbeatSec: o.heartbeatSec,
    concurrency: o.concurrency,
    reconnectMinMs: o.reconnectMinMs,
    reconnectMaxMs: o.reconnectMaxMs,
    requestTimeoutMs: o.requestTimeoutMs,
    ...o.daemonExtra,
  });
  admin = await startAdmin({ daemon, host: '127.0.0.1', port: 0, token: null, log: log.child({ component: 'admin' }) });
  if (o.sampleMs > 0) timer = setInterval(() => send({ type: 'sample', sample: sample() }), o.sampleMs);
  send({ type: 'ready', adminPort: admin.port, pid: process.pid, listenPorts: daemon.listenPorts });
}

async function stop(): Promise<void> {
  if (timer) clearInterval(timer);
  const stats = daemon ? { ...state(), latencyMs: daemon.engine.stats.lastPushLatencyMs.slice(-10_000) } : null;
  await admin?.close();
  await daemon?.stop(2000);
  send({ type: 'stopped', stats });
  // let the IPC message go out, then leave (--cpu-prof writes its profile on exit)
  setTimeout(() => process.exit(0), 50);
}

process.on('message', (m: { type: string; options?: ChildStartOptions }) => {
  if (m.type === 'start') {
    start(m.options!).catch((e: Error) => {
      send({ type: 'error', message: e.stack ?? e.message });
      process.exit(1);
    });
  } else if (m.type === 'state') {
    send({ type: 'state', state: state() });
  } else if (m.type === 'stop') {
    void stop();
  }
});
process.on('disconnect', () => process.exit(0));
