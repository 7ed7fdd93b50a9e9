// Progress for long CLI operations (users import/export, backup, resync --wait).
//
// On a terminal: one line redrawn in place with \r (a bar when the total is
// known, a spinner otherwise), at most every REDRAW_MS. Elsewhere (a pipe, a
// log file, CI): a plain line every PERIODIC_MS or every 10% of the total,
// whichever comes first, so logs stay readable. Progress goes to stderr; stdout
// is kept for the command's output.

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** where to draw (stderr) */
  stream: ProgressStream;
  /** what is being done, e.g. "importing users" */
  label: string;
  /** the amount of work when known */
  total?: number;
  /** what is counted, e.g. "users" (shown after the numbers) */
  unit?: string;
  /** force TTY or line mode (default: stream.isTTY) */
  tty?: boolean;
  /** line mode: a line at least this often (default 2000 ms) */
  periodicMs?: number;
  /** the clock (tests) */
  now?: () => number;
  /** draw nothing (e.g. --quiet) */
  silent?: boolean;
}

export const REDRAW_MS = 100;
export const PERIODIC_MS = 2000;
const SPINNER = ['|', '/', '-', '\\'];
const BAR_WIDTH = 30;

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

export class Progress {
  private readonly stream: ProgressStream;
  private readonly label: string;
  private readonly unit: string;
  private readonly tty: boolean;
  private readonly periodicMs: number;
  private readonly now: () => number;
  private readonly silent: boolean;
  private readonly started: number;
  private total: number | undefined;
  private doneCount = 0;
  private lastDraw = -Infinity;
  private lastLine: number;
  private lastDecile = 0;
  private spin = 0;
  private drawnWidth = 0;
  private finished = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(o: ProgressOptions) {
    this.stream = o.stream;
    this.label = o.label;
    this.unit = o.unit ?? '';
    this.tty = o.tty ?? o.stream.isTTY === true;
    this.periodicMs = o.periodicMs ?? PERIODIC_MS;
    this.now = o.now ?? Date.now;
    this.silent = o.silent ?? false;
    this.total = o.total;
    this.started = this.now();
    this.lastLine = this.started;
    if (this.tty && !this.silent) this.draw(true);
  }

  get count(): number {
    return this.doneCount;
  }

  get isTTY(): boolean {
    return this.tty;
  }

  /** Sets or changes the total (e.g. once it becomes known). */
  setTotal(total: number | undefined): void {
    this.total = total;
    this.maybeDraw();
  }

  /** `n` more units done. */
  tick(n = 1): void {
    this.update(this.doneCount + n);
  }

  /** `done` units done so far. */
  update(done: number, total?: number): void {
    this.doneCount = done;
    if (total !== undefined) this.total = total;
    this.maybeDraw();
  }

  /**
   * Keeps the display alive while nothing is counted (a spinner and the elapsed
   * time on a TTY; a line every periodicMs elsewhere), until done() or fail().
   */
  keepAlive(): this {
    if (this.silent || this.timer) return this;
    this.timer = setInterval(() => this.maybeDraw(), this.tty ? 250 : Math.min(this.periodicMs, 1000));
    this.timer.unref();
    return this;
  }

  /** Finishes: the final state, then a newline; `message` replaces the numbers. */
  done(message?: string): void {
    this.finish(message);
  }

  /** Finishes after a failure (the bar stays where it stopped). */
  fail(message?: string): void {
    this.finish(message ?? 'failed');
  }

  private finish(message?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.silent) return;
    const text = message === undefined ? this.text(true) : `${this.label}: ${message}`;
    if (this.tty) this.writeTty(text + '\n');
    else this.stream.write(text + '\n');
  }

  private maybeDraw(): void {
    if (this.silent || this.finished) return;
    const now = this.now();
    if (this.tty) {
      if (now - this.lastDraw >= REDRAW_MS) this.draw(false);
      return;
    }
    let due = now - this.lastLine >= this.periodicMs;
    if (this.total && this.total > 0) {
      const decile = Math.floor((Math.min(this.doneCount, this.total) / this.total) * 10);
      if (decile > this.lastDecile && decile < 10) {
        this.lastDecile = decile;
        due = true;
      }
    }
    if (due) {
      this.lastLine = now;
      this.stream.write(this.text(false) + '\n');
    }
  }

  private draw(first: boolean): void {
    this.lastDraw = this.now();
    this.writeTty(this.text(false, first));
  }

  private writeTty(s: string): void {
    const nl = s.endsWith('\n');
    let line = nl ? s.slice(0, -1) : s;
    // a pty may report 0 columns (no size set): then assume 80
    const cols = this.stream.columns !== undefined && this.stream.columns >= 20 ? this.stream.columns : 80;
    const max = cols - 1;
    if (line.length > max) line = line.slice(0, max);
    // clear what a longer previous line left behind
    const pad = this.drawnWidth > line.length ? ' '.repeat(this.drawnWidth - line.length) : '';
    this.stream.write(`\r${line}${pad}${nl ? '\n' : ''}`);
    this.drawnWidth = nl ? 0 : line.length;
  }

  private numbers(): string {
    const unit = this.unit ? ` ${this.unit}` : '';
    if (this.total !== undefined) {
      const pct = this.total > 0 ? Math.floor((Math.min(this.doneCount, this.total) / this.total) * 100) : 100;
      return `${this.doneCount}/${this.total}${unit} (${pct}%)`;
    }
    if (!this.unit && this.doneCount === 0) return '';
    return `${this.doneCount}${unit}`;
  }

  private text(final: boolean, first = false): string {
    const elapsed = seconds(this.now() - this.started);
    const nums = this.numbers();
    if (!this.tty) return `${this.label}: ${[nums + (final ? (nums ? ' done' : 'done') : ''), elapsed].filter(Boolean).join(', ')}`;
    if (this.total !== undefined && this.total > 0) {
      const frac = Math.min(this.doneCount, this.total) / this.total;
      const full = Math.round(frac * BAR_WIDTH);
      const bar = '#'.repeat(full) + '-'.repeat(BAR_WIDTH - full);
      return `${this.label} [${bar}] ${this.numbers()} ${elapsed}`;
    }
    const s = final ? ' ' : SPINNER[first ? 0 : ++this.spin % SPINNER.length];
    return `${this.label} ${s} ${nums ? nums + ' ' : ''}${elapsed}`;
  }
}
