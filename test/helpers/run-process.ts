// `termsync run` as a child process (the sources through tsx), its JSON log
// lines collected as they come: for the tests and benchmarks that start real
// daemons and read what they log.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { waitFor } from './wait.js';

const ROOT = join(import.meta.dirname, '..', '..');

export interface LogLine {
  level: number;
  msg: string;
  time?: number;
  [k: string]: unknown;
}

export class RunProcess {
  readonly child: ChildProcess;
  /** every stdout line, parsed (a line that is not JSON as {level: 0, msg: line}) */
  readonly logs: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private partial = '';

  /** `args` follow `termsync run`; the process is not under systemd (no NOTIFY_SOCKET, no watchdog) */
  constructor(args: string[]) {
    const env = { ...process.env };
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.partial += s;
      let nl: number;
      while ((nl = this.partial.indexOf('\n')) >= 0) {
        const line = this.partial.slice(0, nl);
        this.partial = this.partial.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ level: 0, msg: line });
        }
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** how many lines with this message were logged (from line `since` on) */
  count(msg: string, since = 0): number {
    let n = 0;
    for (let i = since; i < this.logs.length; i++) if (this.logs[i]!.msg === msg) n++;
    return n;
  }

  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.logs.find(pred);
  }

  /** the latest line with this message */
  last(msg: string): LogLine | undefined {
    return this.logs.findLast((l) => l.msg === msg);
  }

  /** Waits for a line the predicate takes; fails at once, with the log, if the process exits first. */
  async waitLog(pred: (l: LogLine) => boolean, message: string, timeoutMs = 20_000): Promise<LogLine> {
    await waitFor(() => this.find(pred) !== undefined || this.child.exitCode !== null, { timeoutMs, message: `${message}; log so far:\n${this.dump()}` });
    const l = this.find(pred);
    if (!l) throw new Error(`${message}: the daemon exited (${this.child.exitCode}); stderr: ${this.stderr}\n${this.dump()}`);
    return l;
  }

  dump(): string {
    return this.logs.map((l) => JSON.stringify(l)).join('\n');
  }
}
