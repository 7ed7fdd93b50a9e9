// SIGHUP on a real `termsync run --db postgres://...` process (src/cluster/
// run.ts through src/cli/startup.ts serve): the flag file is read again; a
// terminal added becomes leasable and is driven; a terminal removed has its
// lease given back (recorded as TERMINAL_LEASE_LOST, reason released) and its
// session closed while the others keep theirs; a changed sync mode is written
// to the database; a flag SIGHUP cannot change is named in a warning; a bad
// flag file is refused and the old configuration keeps running.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersEqual } from '../src/model/merge.js';
import { userFromJson } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { RunProcess } from './helpers/run-process.js';
import { waitFor } from './helpers/wait.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-node-reload.test.ts SKIPPED: ${reason}\n`);


describe.skipIf(reason !== null)(`SIGHUP on a daemon on PostgreSQL${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  let sim: Simulator;
  let store: PgSiteStore;
  let dir: string;
  let proc: RunProcess | undefined;
  beforeAll(async () => {
    server = await startPostgres();
    sim = await Simulator.start({ terminals: 3, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
    dir = mkdtempSync(join(tmpdir(), 'termsync-pg-reload-'));
  }, 60_000);
  afterAll(async () => {
    try {
      if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
      await store?.close().catch(() => {});
      await sim?.close();
      rmSync(dir, { recursive: true, force: true });
    } finally {
      await server?.stop();
    }
  });

  it('a terminal added is leased and driven, one removed is given back and closed, the sync mode is written; a bad file changes nothing', { timeout: 120_000 }, async () => {
    const url = await server.createDatabase();
    store = await PgSiteStore.open({ url, writerId: 'observer' });
    const ports = sim.ports();
    const [d1, d2, d3] = sim.terminals.map((t) => String(t.deviceId));
    const flags = join(dir, 'termsync.flags');
    const write = (terminals: number[], syncMode: string, extra: string[] = []) =>
      writeFileSync(flags, [`--db=${url}`, '--insecure-dev-key', '--daemon-id=r1', '--lease-sec=3', `--sync-mode=${syncMode}`, '--heartbeat-sec=2', '--reconnect-min-ms=50', '--reconnect-max-ms=500', '--log-level=info',
        ...terminals.map((i) => `--terminal=${sim.terminals[i]!.deviceId}@127.0.0.1:${ports[i]}`), ...extra, ''].join('\n'));
    write([0, 1], 'all');
    const p = (proc = new RunProcess([`--flagfile=${flags}`]));
    const { child, logs } = p;
    const held = async () => (await store.db.query<{ terminal_id: string }>(`SELECT terminal_id FROM terminal_leases WHERE owner = 'r1' AND expires_at > now() ORDER BY terminal_id`)).rows.map((r) => r.terminal_id);
    const events = async (type: string, terminalId: string) =>
      (await store.db.query<{ detail: string }>('SELECT detail FROM events WHERE type = $1 AND terminal_id = $2 ORDER BY id', [type, terminalId])).rows.map((r) => JSON.parse(r.detail) as Record<string, unknown>);

    await waitFor(async () => JSON.stringify(await held().catch(() => [])) === JSON.stringify([d1, d2].sort()), { timeoutMs: 45_000, message: 'the daemon did not lease its two terminals' }).catch((e) => {
      throw new Error(`${(e as Error).message}: stderr ${p.stderr.slice(0, 1500)} logs ${JSON.stringify(logs.slice(-5))}`);
    });
    await waitFor(() => sim.terminals[0]!.connected && sim.terminals[1]!.connected, { timeoutMs: 20_000, message: 'terminals 1 and 2 not connected' });
    expect(sim.terminals[2]!.connected).toBe(false);

    // terminal 2 out, terminal 3 in, sync mode 'server'; --lease-sec changed too (only after a restart)
    write([0, 2], 'server', ['--lease-sec=5']);
    child.kill('SIGHUP');
    await waitFor(() => p.count('configuration reloaded') === 1, { timeoutMs: 20_000, message: 'the reload was not logged' });
    await waitFor(async () => JSON.stringify(await held()) === JSON.stringify([d1, d3].sort()), { timeoutMs: 20_000, message: 'leases not moved to terminals 1 and 3' });
    await waitFor(() => sim.terminals[2]!.connected && !sim.terminals[1]!.connected, { timeoutMs: 20_000, message: 'terminal 3 not driven, or terminal 2 not closed' });
    expect(sim.terminals[0]!.connected).toBe(true);
    expect(await store.getSyncMode()).toBe('server');
    expect(logs.find((l) => l.msg === 'these changed flags take effect only after a restart')?.flags).toEqual(['leaseSec']);
    expect((await events('TERMINAL_LEASE_LOST', d2!)).map((e) => [e.daemon, e.reason])).toEqual([['r1', 'released']]);
    expect((await events('TERMINAL_LEASE_ACQUIRED', d3!)).map((e) => e.daemon)).toEqual(['r1']);
    // the removed terminal's row stays in the database (other daemons may still list it), shown offline
    expect((await store.getTerminal(d2!))?.state).toBe('offline');
    await waitFor(async () => (await store.getTerminal(d3!))?.state === 'online', { timeoutMs: 10_000, message: 'the added terminal is not shown online' });

    // the added terminal syncs: a server change reaches it ('server' mode pushes the server's users)
    await store.putUser(userFromJson({ id: 'r-1', name: 'After Reload', cards: [{ type: 1, data: 'ab01' }] }));
    const u = (await store.getUser('r-1'))!;
    await waitFor(() => [0, 2].every((i) => { const h = sim.terminals[i]!.getUser('r-1'); return h !== undefined && usersEqual(h, u); }), { timeoutMs: 30_000, message: 'a server user did not reach terminals 1 and 3 after the reload' });
    expect(sim.terminals[1]!.getUser('r-1')).toBeUndefined();

    // a bad flag file: refused, the old configuration keeps running
    writeFileSync(flags, `--db=${url}\n--insecure-dev-key\n--no-such-flag\n`);
    child.kill('SIGHUP');
    await waitFor(() => p.count('new configuration refused; the old one keeps running') === 1, { timeoutMs: 20_000, message: 'the bad file was not refused' });
    expect(JSON.stringify(await held())).toBe(JSON.stringify([d1, d3].sort()));

    // SIGTERM: an orderly stop gives the leases back (recorded), exit 0
    child.kill('SIGTERM');
    const { code } = await p.exited;
    expect(code, p.stderr.slice(-1500)).toBe(0);
    expect(await held()).toEqual([]);
    // nobody drives them now, and the rows say so
    expect((await store.listTerminals()).map((t) => [t.id, t.state])).toEqual([d1, d2, d3].map((id) => [id, 'offline']));
    expect((await events('TERMINAL_LEASE_LOST', d1!)).at(-1)).toMatchObject({ daemon: 'r1', reason: 'released', stopping: true });
  });
});
