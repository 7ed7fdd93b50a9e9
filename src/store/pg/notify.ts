// Waking the push lanes of every daemon when any daemon commits a change to
// the feed or an owed set: the writer's transaction runs
// pg_notify('termsync_feed', '<head> <writer id>'), which PostgreSQL delivers to
// every listening connection when (and only if) the transaction commits.
//
// Each store keeps one dedicated connection (outside the pool) that LISTENs.
// When it breaks (PostgreSQL restarted, a network cut), notifications are lost
// until it is back, so the listener falls back to a slow poll of the feed head
// and reconnects with backoff; on reconnecting it wakes the lanes once, since
// owed-set changes made meanwhile do not move the head.
import pg from 'pg';
import type { Logger } from 'pino';

export const FEED_CHANNEL = 'termsync_feed';

export interface FeedListenerOptions {
  config: pg.ClientConfig;
  /** this store's writer ID: its own notifications are skipped (the store tells its listeners directly) */
  selfId: string;
  /** called with the feed head whenever another daemon's change committed (or may have) */
  wake: (head: number) => void;
  /** reads the head with a pooled connection (the fallback poll) */
  readHead: () => Promise<number>;
  /** poll period while LISTEN is down, ms; default 5000 */
  pollMs?: number;
  /** reconnect delays grow to this, ms; default 5000 */
  maxBackoffMs?: number;
  logger?: Logger;
}

export class FeedListener {
  private client: pg.Client | null = null;
  private closed = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs = 100;
  private lastPolledHead = -1;
  /** true while the LISTEN connection is up */
  listening = false;
  /** notifications received from other writers */
  received = 0;

  constructor(private readonly o: FeedListenerOptions) {}

  async start(): Promise<void> {
    await this.connect().catch(() => this.fallBack());
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const c = new pg.Client({ ...this.o.config, application_name: `${this.o.config.application_name ?? 'termsync'} listen` });
    this.client = c;
    c.on('error', (err) => this.broken(c, err));
    c.on('end', () => this.broken(c, new Error('connection ended')));
    c.on('notification', (n) => {
      if (n.channel !== FEED_CHANNEL || !n.payload) return;
      const [headText, writer] = n.payload.split(' ');
      if (writer === this.o.selfId) return;
      this.received++;
      this.safeWake(Number(headText));
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${FEED_CHANNEL}`);
    } catch (e) {
      this.broken(c, e as Error);
      throw e;
    }
    const wasDown = this.pollTimer !== null || this.lastPolledHead >= 0;
    this.listening = true;
    this.backoffMs = 100;
    this.stopPoll();
    if (wasDown) {
      this.o.logger?.info('feed notifications (LISTEN) back: slow poll stopped');
      // what committed while nobody listened: wake the lanes once
      const head = await this.o.readHead().catch(() => null);
      if (head !== null) this.safeWake(head);
    }
  }

  private broken(c: pg.Client, err: Error): void {
    if (this.client !== c) return;
    this.client = null;
    this.listening = false;
    c.removeAllListeners('notification');
    c.end().catch(() => {});
    if (this.closed) return;
    this.o.logger?.warn({ err: err.message }, 'feed notifications (LISTEN) lost: polling the feed head until reconnected');
    this.fallBack();
  }

  private fallBack(): void {
    if (this.closed) return;
    if (!this.pollTimer) {
      const poll = () => {
        this.pollTimer = setTimeout(async () => {
          const head = await this.o.readHead().catch(() => null);
          if (head !== null && head !== this.lastPolledHead) {
            if (this.lastPolledHead >= 0) this.safeWake(head);
            this.lastPolledHead = head;
          }
          if (this.pollTimer && !this.closed) poll();
        }, this.o.pollMs ?? 5000);
        this.pollTimer.unref?.();
      };
      this.lastPolledHead = Math.max(this.lastPolledHead, 0);
      poll();
    }
    if (!this.reconnectTimer) {
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.connect().catch(() => {
          this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 5000);
          this.fallBack();
        });
      }, this.backoffMs);
      this.reconnectTimer.unref?.();
    }
  }

  private stopPoll(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  private safeWake(head: number): void {
    try {
      this.o.wake(head);
    } catch (e) {
      this.o.logger?.error({ err: (e as Error).message }, 'feed listener failed');
    }
  }

  /** cuts the LISTEN connection as a network fault would (tests) */
  simulateBreak(): void {
    const c = this.client;
    if (c) this.broken(c, new Error('cut by a test'));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPoll();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const c = this.client;
    this.client = null;
    this.listening = false;
    if (c) await c.end().catch(() => {});
  }
}
