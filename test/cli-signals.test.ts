// `termsync run` as a real process: SIGTERM stops it in order (exit 0, the
// database intact, no push lost), SIGHUP re-reads the flag files (terminals
// added and removed without dropping the others' sessions; a bad file is
// refused and the old configuration keeps running), and a bad flag file at
// start-up exits 2 with file:line. The simulator runs in the test process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/cli/admin-client.js';
import type { CliIo } from '../src/cli/commands/common.js';
import { main } from '../src/cli/main.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { RunProcess } from './helpers/run-process.js';
import { waitFor } from './helpers/wait.js';

class DaemonProcess extends RunProcess {
  /** Waits for "termsync running" and returns a client for its admin API. */
  async running(): Promise<AdminClient> {
    const l = await this.waitLog((x) => x.msg === 'termsync running', 'the daemon did not start');
    return new AdminClient({ url: `http://127.0.0.1:${l.admin as number}` });
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

let dir: string | undefined;
let sim: Simulator | undefined;
let proc: DaemonProcess | undefined;

afterEach(async () => {
  if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.kill('SIGKILL');
    await proc.exited;
  }
  proc = undefined;
  await sim?.close();
  sim = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function flagFile(path: string, lines: string[]): void {
  writeFileSync(path, lines.join('\n') + '\n');
}

function baseFlags(db: string): string[] {
  return ['# written by test/cli-signals.test.ts', '--insecure-dev-key', `--db=${db}`, '--admin-listen=127.0.0.1:0', '--sync-mode=all', '--reconnect-min-ms=50', '--reconnect-max-ms=500', '--log-level=info'];
}

async function onlineIds(client: AdminClient): Promise<string[]> {
  return (await client.terminals()).filter((t) => t.state === 'online').map((t) => t.id).sort();
}

async function onlineEvents(client: AdminClient, terminal: string): Promise<number> {
  return (await client.events({ type: 'TERMINAL_ONLINE', terminal, limit: 10_000 })).length;
}

/** Runs the CLI in-process against the daemon (its output is returned, not printed). */
async function cli(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: { write: (s: string) => ((out += s), true) },
    err: { write: (s: string) => ((err += s), true) },
    stdin: Readable.from([]),
    env: {},
    cwd,
  };
  const code = await main(args, io);
  return { code, out, err };
}

describe('termsync run: signals', () => {
  it('SIGTERM: exits 0 after an orderly stop; the database is intact and no push is lost', async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-sig-'));
    // slow terminals, so pushes are still in flight when the signal comes
    sim = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: { ...ZERO_TIMING, perCommandMs: 5, perUserWriteMs: 8 }, maxUsersPerBatch: 20 });
    const db = join(dir, 'termsync.db');
    const flags = join(dir, 'termsync.flags');
    const [p1, p2] = sim.ports();
    flagFile(flags, [...baseFlags(db), `--terminal=1001@127.0.0.1:${p1}`, `--terminal=1002@127.0.0.1:${p2}`]);
    proc = new DaemonProcess([`--flagfile=${flags}`]);
    const client = await proc.running();
    await waitFor(async () => (await onlineIds(client)).length === 2, { message: 'terminals did not come online' });

    // 300 users from the server side: each is owed to both terminals
    const ids = Array.from({ length: 300 }, (_, i) => `sig-${String(i).padStart(4, '0')}`);
    writeFileSync(join(dir, 'users.jsonl'), ids.map((id) => JSON.stringify({ id, name: `User ${id}`, cards: [{ type: 1, data: Buffer.from(id).toString('hex') }] })).join('\n') + '\n');
    const im = await cli(['users', 'import', 'users.jsonl', '--admin', client.url], dir);
    expect(im.code, im.err).toBe(0);
    // pushes are under way
    await waitFor(() => sim!.terminals.some((t) => ids.some((id) => t.getUser(id) !== undefined)), { message: 'no push reached a terminal' });

    const signalled = Date.now();
    proc.kill('SIGTERM');
    const exit = await proc.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(20_000);
    expect(proc.find((l) => l.msg === 'stopping' && l.signal === 'SIGTERM')).toBeDefined();
    expect(proc.find((l) => l.msg === 'stopped')).toBeDefined();

    const d = new Database(db, { readonly: true });
    try {
      expect(d.pragma('integrity_check', { simple: true })).toBe('ok');
      expect((d.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n).toBe(ids.length);
      // owed: a targeted entry, or the user's change past the terminal's feed cursor
      const owed = d.prepare(
        `SELECT 1 FROM outbox WHERE terminal_id = @t AND user_id = @u
         UNION ALL SELECT 1 FROM users u JOIN terminals t ON t.id = @t WHERE u.id = @u AND u.seq > t.feed_cursor`,
      );
      const lost: string[] = [];
      let delivered = 0;
      let queued = 0;
      for (const [i, term] of ['1001', '1002'].entries()) {
        for (const id of ids) {
          const has = sim.terminals[i].getUser(id) !== undefined;
          const inOutbox = owed.get({ t: term, u: id }) !== undefined;
          if (has) delivered++;
          if (inOutbox) queued++;
          if (!has && !inOutbox) lost.push(`${term}/${id}`);
        }
      }
      expect(lost).toEqual([]);
      expect(delivered).toBeGreaterThan(0);
      expect(delivered + queued).toBeGreaterThanOrEqual(2 * ids.length);
    } finally {
      d.close();
    }
  });

  it('SIGHUP: terminals added and removed from the flag file without dropping the others; a bad file is refused', async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-hup-'));
    sim = await Simulator.start({ terminals: 3, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    const db = join(dir, 'termsync.db');
    const flags = join(dir, 'termsync.flags');
    const [p1, p2, p3] = sim.ports();
    flagFile(flags, [...baseFlags(db), `--terminal=1001@127.0.0.1:${p1}`, `--terminal=1002@127.0.0.1:${p2}`]);
    proc = new DaemonProcess([`--flagfile=${flags}`]);
    const client = await proc.running();
    await waitFor(async () => (await onlineIds(client)).join() === '1001,1002', { message: 'terminals did not come online' });
    expect(await onlineEvents(client, '1001')).toBe(1);

    // 1002 goes, 1003 comes
    flagFile(flags, [...baseFlags(db), `--terminal=1001@127.0.0.1:${p1}`, `--terminal=1003@127.0.0.1:${p3}`]);
    proc.kill('SIGHUP');
    await proc.waitLog((l) => l.msg === 'configuration reloaded', 'the configuration was not reloaded');
    await waitFor(async () => (await onlineIds(client)).join() === '1001,1003', { message: 'the added terminal did not come online' });
    expect((await client.terminals()).map((t) => t.id).sort()).toEqual(['1001', '1003']);
    await waitFor(() => !sim!.terminals[1].connected, { message: 'the removed terminal kept its session' });
    // 1001's session was never dropped: no second TERMINAL_ONLINE, and it still syncs
    expect(await onlineEvents(client, '1001')).toBe(1);
    expect(sim.terminals[0].connected).toBe(true);
    await sim.terminals[2].enroll(userFromJson({ id: 'hup-1', name: 'After reload' }));
    await waitFor(() => sim!.terminals[0].getUser('hup-1') !== undefined, { message: 'an enrollment on the added terminal did not reach the kept one' });

    // an unknown flag: refused with the place, and nothing changes
    flagFile(flags, [...baseFlags(db), `--terminal=1001@127.0.0.1:${p1}`, '--no-such-flag=1']);
    const badLine = baseFlags(db).length + 2;
    proc.kill('SIGHUP');
    const refused = await proc.waitLog((l) => l.msg.includes('refused'), 'the bad configuration was not refused');
    expect(refused.level).toBeGreaterThanOrEqual(50);
    expect(String(refused.err)).toContain(`${flags}:${badLine}: unknown flag --no-such-flag`);
    expect(await onlineIds(client)).toEqual(['1001', '1003']);
    expect(sim.terminals[2].connected).toBe(true);
    expect(await onlineEvents(client, '1001')).toBe(1);
    expect(await onlineEvents(client, '1003')).toBe(1);
    expect(proc.child.exitCode).toBeNull();

    proc.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);
  });

  it('a bad flag file at start-up exits 2 with file:line', async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-bad-'));
    const flags = join(dir, 'bad.flags');
    flagFile(flags, ['--insecure-dev-key', `--db=${join(dir, 'x.db')}`, '--heartbeat-sec=soon']);
    proc = new DaemonProcess([`--flagfile=${flags}`]);
    const exit = await proc.exited;
    expect(exit.code).toBe(2);
    expect(proc.stderr).toBe(`termsync: ${flags}:3: --heartbeat-sec must be an integer from 1 to 3600 (got "soon")\n`);
    expect(proc.logs).toEqual([]);
  });
});
