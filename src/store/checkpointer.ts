// WAL checkpoints off the event loop. With synchronous=NORMAL the expensive part
// of a commit is the automatic checkpoint (it fsyncs the WAL and the database)
// that SQLite runs inside whichever commit crosses wal_autocheckpoint pages. On
// the daemon's one thread that stalls every session and the admin API for tens
// of milliseconds during a burst. Instead the main connection turns automatic
// checkpoints off and a worker thread with a connection of its own runs PASSIVE
// checkpoints on a timer. Durability is the same: a checkpoint only copies
// committed pages. If the worker dies, automatic checkpoints come back on.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true, timeout: 1000 });
const checkpoint = () => { try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (e) { parentPort.postMessage(String(e && e.message)); } };
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', () => { clearInterval(timer); checkpoint(); db.close(); parentPort.close(); });
`;

/** SQLite's default, restored when the worker is gone */
const AUTOCHECKPOINT_PAGES = 1000;

export class Checkpointer {
  private readonly worker: Worker;
  private stopped = false;

  constructor(db: Database.Database, file: string, log: Logger | undefined, intervalMs = 500) {
    db.pragma('wal_autocheckpoint = 0');
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, file, intervalMs } });
    this.worker.unref();
    this.worker.on('message', (m) => log?.warn({ err: m }, 'WAL checkpoint failed'));
    const fallBack = (why: string) => {
      if (this.stopped || !db.open) return;
      log?.warn({ why }, 'checkpoint worker gone; SQLite checkpoints automatically again');
      db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    };
    this.worker.on('error', (e) => fallBack(e.message));
    this.worker.on('exit', (code) => fallBack(`exit ${code}`));
  }

  /** Runs a last checkpoint and ends the worker. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // unref'd while running; while stopping it must keep the process alive until it is done
    this.worker.ref();
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    await this.worker.terminate();
  }
}
