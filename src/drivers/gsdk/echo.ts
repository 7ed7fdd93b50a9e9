// Echo suppression. A Suprema terminal logs the users termsync writes to it
// like any other (0x2000 enrolled, 0x2200 updated, 0x2400 deleted), so in a
// many-to-many sync each push would come back as a device change. Newer
// gateways mark events with changedOnDevice ("the user was enrolled, changed
// or deleted at the device"); once a gateway has been seen to send it (a bool
// that is false is not on the wire, so only a true one shows the gateway
// knows it), an event without it is termsync's own write. Before that, and
// with older gateways, the driver remembers its own writes per terminal and
// user: the next matching event is taken as the echo of one of them.
//
// An expectation lapses after EXPECT_MS: a write the terminal never logged
// must not swallow a later edit made at the device.

export const EXPECT_MS = 10 * 60_000;

export type WriteKind = 'put' | 'delete';

interface Expect {
  kind: WriteKind;
  at: number;
}

export class EchoMemory {
  /** "terminal\0user" -> our writes not seen in the log yet, oldest first */
  private readonly pending = new Map<string, Expect[]>();
  /** the gateway has sent changedOnDevice = true at least once */
  flagSeen = false;

  constructor(private readonly now: () => number = Date.now) {}

  private key(terminal: string, userId: string): string {
    return `${terminal}\0${userId}`;
  }

  /** termsync is about to write (or delete) this user on this terminal. */
  expect(terminal: string, userId: string, kind: WriteKind): void {
    const k = this.key(terminal, userId);
    const l = this.pending.get(k) ?? [];
    l.push({ kind, at: this.now() });
    this.pending.set(k, l);
  }

  /** The write failed: the terminal logs nothing for it. */
  forget(terminal: string, userId: string, kind: WriteKind): void {
    const k = this.key(terminal, userId);
    const l = this.pending.get(k);
    if (!l) return;
    const i = l.map((e) => e.kind).lastIndexOf(kind);
    if (i >= 0) l.splice(i, 1);
    if (l.length === 0) this.pending.delete(k);
  }

  /**
   * Whose change a user event is: 'server' when it is the echo of a write of
   * ours (consumed), 'device' otherwise.
   */
  classify(terminal: string, userId: string, kind: WriteKind, changedOnDevice: boolean): 'device' | 'server' {
    const k = this.key(terminal, userId);
    const l = this.pending.get(k);
    const t = this.now();
    if (l) {
      while (l.length && t - l[0].at > EXPECT_MS) l.shift();
      if (l.length === 0) this.pending.delete(k);
    }
    if (changedOnDevice) {
      this.flagSeen = true;
      return 'device';
    }
    const i = l ? l.findIndex((e) => e.kind === kind) : -1;
    if (l && i >= 0) {
      l.splice(0, i + 1);
      if (l.length === 0) this.pending.delete(k);
      return 'server';
    }
    return this.flagSeen ? 'server' : 'device';
  }

  pendingCount(terminal?: string): number {
    let n = 0;
    for (const [k, l] of this.pending) if (terminal === undefined || k.startsWith(`${terminal}\0`)) n += l.length;
    return n;
  }
}
