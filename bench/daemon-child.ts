// The daemon under test, in a process of its own so that its CPU time and
// memory are its own. Started by bench/daemon-proc.ts with an IPC channel:
//   parent -> child  {type:'start', options}   child -> parent {type:'ready', adminPort, pid}
//   parent -> child  {type:'state'}            child -> parent {type:'state', ...}
//   parent -> child  {type:'profile', file}     child -> parent {type:'profiling'}: a CPU profile from now on
//   parent -> child  {type:'profile-end'}       child -> parent {type:'profiled', file}: written (V8 .cpuprofile)
//   parent -> child  {type:'stop'}             child -> parent {type:'stopped', stats}, then exits
// While running, the child sends {type:'sample', ...} every sampleMs: its own
// CPU time and memory, the outbox depth and the engine's queue.
// It runs exactly what `termsync run` runs: Daemon.start plus startAdmin.
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
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
  /** reconciles started */
  reconciles: number;
  /** reconciles that ended (a RECONCILE monitoring event: done, or abandoned past its deadline) */
  reconcilesEnded: number;
}

let daemon: Daemon | null = null;
let admin: AdminServer | null = null;
let timer: NodeJS.Timeout | null = null;
let reconcilesEnded = 0;

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
    reconcilesEnded,
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
  daemon.engine.onActivity((e) => {
    if (e.type === 'RECONCILE') reconcilesEnded++;
  });
  admin = await startAdmin({ daemon, host: '127.0.0.1', port: 0, token: null, log: log.child({ component: 'admin' }) });
  if (o.sampleMs > 0) timer = setInterval(() => send({ type: 'sample', sample: sample() }), o.sampleMs);
  await heapStart();
  send({ type: 'ready', adminPort: admin.port, pid: process.pid, listenPorts: daemon.listenPorts });
}

/**
 * TERMSYNC_BENCH_HEAP_SAMPLES=FILE: a sampling heap profile of everything the
 * daemon allocates (collected objects included), written to FILE at stop.
 */
const heapFile = process.env.TERMSYNC_BENCH_HEAP_SAMPLES;
let heapSession: Session | null = null;
async function heapStart(): Promise<void> {
  if (!heapFile) return;
  heapSession = new Session();
  heapSession.connect();
  await heapSession.post('HeapProfiler.enable');
  await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 64 * 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as object);
}
async function heapEnd(): Promise<void> {
  if (!heapSession || !heapFile) return;
  const { profile } = await heapSession.post('HeapProfiler.stopSampling');
  writeFileSync(heapFile, JSON.stringify(profile));
  heapSession.disconnect();
}

async function stop(): Promise<void> {
  if (timer) clearInterval(timer);
  await heapEnd();
  const stats = daemon ? { ...state(), latencyMs: daemon.engine.stats.lastPushLatencyMs.slice(-10_000) } : null;
  await admin?.close();
  await daemon?.stop(2000);
  send({ type: 'stopped', stats });
  // let the IPC message go out, then leave (--cpu-prof writes its profile on exit)
  setTimeout(() => process.exit(0), 50);
}

/** A CPU profile of a window of the run (the inspector in this process), e.g. only the idle phase. */
let profiler: { session: Session; file: string } | null = null;

async function profileStart(file: string): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  profiler = { session, file };
  send({ type: 'profiling' });
}

async function profileEnd(): Promise<void> {
  const p = profiler;
  profiler = null;
  if (!p) return send({ type: 'profiled', file: null });
  const { profile } = await p.session.post('Profiler.stop');
  writeFileSync(p.file, JSON.stringify(profile));
  p.session.disconnect();
  send({ type: 'profiled', file: p.file });
}

process.on('message', (m: { type: string; options?: ChildStartOptions; file?: string }) => {
  if (m.type === 'profile') void profileStart(m.file!);
  else if (m.type === 'profile-end') void profileEnd();
  else if (m.type === 'start') {
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
