// The admin subcommands against a REAL daemon: simulator terminals over
// loopback TCP, the daemon dialling them, a SQLite file in a temp dir, the admin
// HTTP API on an ephemeral port. The CLI runs in-process through main(argv, io)
// with its output captured.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { main } from '../src/cli/main.js';
import { Progress } from '../src/cli/progress.js';
import type { CliIo } from '../src/cli/commands/common.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { silent, startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

interface Ran {
  code: number;
  out: string;
  err: string;
}

interface Running {
  done: Promise<Ran>;
  readonly out: string;
  readonly err: string;
}

let site: Site;
let admin: AdminServer;
let url: string;
let dir: string;

function startCli(args: string[], o: { stdin?: string; signal?: AbortSignal; env?: Record<string, string | undefined> } = {}): Running {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: { write: (s: string) => ((out += s), true) },
    err: { write: (s: string) => ((err += s), true) },
    stdin: Readable.from(o.stdin === undefined ? [] : [Buffer.from(o.stdin)]),
    env: { TERMSYNC_ADMIN: url, ...o.env },
    cwd: dir,
    signal: o.signal,
  };
  const done = main(args, io).then((code) => ({ code, out, err }));
  return {
    done,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

function cli(args: string[], o: { stdin?: string; env?: Record<string, string | undefined> } = {}): Promise<Ran> {
  return startCli(args, o).done;
}

function person(id: string, extra: Record<string, unknown> = {}): UserRecord {
  return userFromJson({ id, name: `Person ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }], ...extra });
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'termsync-cli-'));
  site = await startSite({ terminals: 3, daemon: { listen: [{ host: '127.0.0.1', port: 0 }] } });
  admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: null, log: silent, streamPollMs: 50 });
  url = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin?.close();
  await site?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('termsync terminals', () => {
  it('list shows every terminal with its state, as a table or as JSON', async () => {
    const r = await cli(['terminals', 'list']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STATE\s+APPROVED\s+DIRECTION\s+ADDRESS/);
    for (const id of site.ids) expect(lines.some((l) => new RegExp(`^${id}\\s+online\\s+yes\\s+dial\\s+127\\.0\\.0\\.1:`).test(l))).toBe(true);
    // aligned: the STATE column starts at the same offset on every line
    const col = lines[0].indexOf('STATE');
    for (const l of lines.slice(1)) expect(l.slice(col, col + 6)).toBe('online');

    const j = await cli(['terminals', 'list', '--json']);
    expect(j.code).toBe(0);
    const list = JSON.parse(j.out) as { id: string; state: string }[];
    expect(list.map((t) => t.id).sort()).toEqual(expect.arrayContaining(site.ids));
  });

  it('add dials a new terminal (with access groups); remove ends its session', async () => {
    const extra = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 7000 });
    try {
      const r = await cli(['terminals', 'add', 'door-7', `127.0.0.1:${extra.ports()[0]}`, '--groups', '5,2']);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/terminal door-7 .* saved/);
      await waitFor(() => site.daemon.terminals().find((t) => t.id === 'door-7')?.state === 'online', { message: 'door-7 did not come online' });
      const j = JSON.parse((await cli(['terminals', 'list', '--json'])).out) as { id: string; accessGroups: number[]; state: string }[];
      expect(j.find((t) => t.id === 'door-7')).toMatchObject({ state: 'online', accessGroups: [2, 5] });

      const rm = await cli(['terminals', 'remove', 'door-7']);
      expect(rm.code, rm.err).toBe(0);
      expect(rm.out).toBe('terminal door-7 removed\n');
      expect(site.daemon.terminals().some((t) => t.id === 'door-7')).toBe(false);
      await waitFor(() => !extra.terminals[0].connected, { message: 'the removed terminal kept its session' });
      // removing it again is the API's 404, exit 1
      const again = await cli(['terminals', 'remove', 'door-7']);
      expect(again.code).toBe(1);
      expect(again.err).toBe('termsync: no terminal "door-7"\n');
    } finally {
      await extra.close();
    }
  });

  it('approve lets a pending dial-in terminal sync', async () => {
    const port = site.daemon.listenPorts[0];
    const dialer = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 8000, dial: { host: '127.0.0.1', port } });
    try {
      await waitFor(() => site.daemon.terminals().find((t) => t.id === '8001')?.state === 'pending', { message: 'the dial-in terminal was not held pending' });
      const list = await cli(['terminals', 'list']);
      expect(list.out).toMatch(/^8001\s+pending\s+no\s+listen\s/m);
      const r = await cli(['terminals', 'approve', '8001']);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^terminal 8001 .* approved\n$/);
      await waitFor(() => site.daemon.terminals().find((t) => t.id === '8001')?.state === 'online', { message: 'the approved terminal did not come online' });
      expect((await cli(['terminals', 'approve', 'no-such'])).err).toBe('termsync: no terminal "no-such"\n');
    } finally {
      await cli(['terminals', 'remove', '8001']);
      await dialer.close();
    }
  });
});

describe('termsync users', () => {
  it('set (from a file and from stdin), get and list', async () => {
    writeFileSync(join(dir, 'ann.json'), JSON.stringify({ id: 'u-ann', name: 'Ann', pin: '2468', cards: [{ type: 1, data: 'a1b2c3' }], accessGroups: [3] }));
    const r = await cli(['users', 'set', 'ann.json']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^user u-ann created; pushing to 3 terminals/);
    await site.waitConverged({ users: ['u-ann'] });

    const s = await cli(['users', 'set', '-', '--json'], { stdin: JSON.stringify({ id: 'u-bob', name: 'Bob' }) });
    expect(s.code, s.err).toBe(0);
    expect(JSON.parse(s.out)).toMatchObject({ created: true, user: { id: 'u-bob', name: 'Bob' } });
    expect(site.daemon.store.getUser('u-bob')?.name).toBe('Bob');

    const g = await cli(['users', 'get', 'u-ann']);
    expect(g.code).toBe(0);
    expect(g.out).toMatch(/^id +u-ann$/m);
    expect(g.out).toMatch(/^name +Ann$/m);
    expect(g.out).toMatch(/^pin +set$/m);
    expect(g.out).toMatch(/^cards +1:a1b2c3$/m);
    const gj = JSON.parse((await cli(['users', 'get', 'u-ann', '--json'])).out);
    expect(gj).toMatchObject({ id: 'u-ann', pinSet: true, accessGroups: [3] });
    expect(gj.pin).toBeUndefined();

    const l = await cli(['users', 'list', '--after', 'u-', '--limit', '2']);
    expect(l.code).toBe(0);
    expect(l.out).toMatch(/^ID\s+NAME\s+CARDS/);
    expect(l.out).toMatch(/^u-ann\s+Ann\s+1\s+0\s+0\s+yes\s+3\s+no$/m);
    expect(l.out).toMatch(/^u-bob\s+Bob\s/m);

    const missing = await cli(['users', 'get', 'u-nobody']);
    expect(missing.code).toBe(1);
    expect(missing.err).toBe('termsync: no user "u-nobody"\n');
    const badFile = await cli(['users', 'set', 'no-such.json']);
    expect(badFile.code).toBe(2);
    expect(badFile.err).toMatch(/cannot read no-such\.json: no such file/);
    const notUser = await cli(['users', 'set', '-'], { stdin: '{"name":"no id"}' });
    expect(notUser.code).toBe(2);
    expect(notUser.err).toMatch(/stdin: the user has no "id"/);
  });

  it('export then import restores the users (JSON lines round trip), with progress on stderr', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `rt-${String(i).padStart(3, '0')}`);
    for (const id of ids) site.daemon.putUser(person(id, { pin: '1357', accessGroups: [1, 2] }));
    const ex = await cli(['users', 'export', 'users.jsonl']);
    expect(ex.code, ex.err).toBe(0);
    const total = site.daemon.store.userCount();
    expect(ex.out).toBe(`exported ${total} users to ${join(dir, 'users.jsonl')}\n`);
    expect(ex.err).toMatch(new RegExp(`exporting users: ${total}/${total} users \\(100%\\) done`));
    const lines = readFileSync(join(dir, 'users.jsonl'), 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(total);
    const exported = lines.map((l) => JSON.parse(l) as { id: string; name: string });
    expect(exported.map((u) => u.id)).toEqual([...exported.map((u) => u.id)].sort());
    expect(exported.find((u) => u.id === 'rt-007')).toMatchObject({ name: 'Person rt-007', pinSet: true });
    expect(existsSync(join(dir, 'users.jsonl.partial'))).toBe(false);

    // the server's copies drift: renamed, deleted
    site.daemon.putUser(person('rt-001', { name: 'Changed' }));
    site.daemon.deleteUser('rt-002');
    const im = await cli(['users', 'import', 'users.jsonl']);
    expect(im.code, im.err).toBe(0);
    expect(im.out).toMatch(new RegExp(`^imported ${total} users \\(1 created, 1 updated, ${total - 2} unchanged\\)\\n$`));
    expect(im.err).toMatch(new RegExp(`importing users: ${total}/${total} lines \\(100%\\) done`));
    expect(site.daemon.store.getUser('rt-001')!.name).toBe('Person rt-001');
    expect(site.daemon.store.getUser('rt-002')!.name).toBe('Person rt-002');
    // A PIN survives where the server still holds it (the line says pinSet: true and
    // the stored PIN is kept); exports cannot carry PINs, so where the server lost
    // it the import says so.
    expect(site.daemon.store.getUser('rt-005')!.pinHash.length).toBe(32);
    expect(site.daemon.store.getUser('rt-001')!.pinHash.length).toBe(0);
    expect(im.err).toMatch(/warning: users\.jsonl:\d+: user "rt-001" had a PIN/);
    expect(im.err).toMatch(/warning: users\.jsonl:\d+: user "rt-002" had a PIN/);
    await site.waitConverged({ users: ['rt-001', 'rt-002'] });

    // to stdout
    const so = await cli(['users', 'export']);
    expect(so.code).toBe(0);
    expect(so.out.trimEnd().split('\n')).toHaveLength(total);
  });

  it('import reports bad lines by number, carries on, and exits 1', async () => {
    const text = [
      JSON.stringify({ id: 'imp-1', name: 'One' }),
      '{not json',
      JSON.stringify({ id: 'imp-3', name: 'Three' }),
      JSON.stringify({ id: 'imp-4', cards: 'not a list' }),
      '[1, 2]',
      '',
      JSON.stringify({ id: 'imp-7', name: 'Seven', pinSet: true }),
    ].join('\n');
    writeFileSync(join(dir, 'bad.jsonl'), text + '\n');
    const r = await cli(['users', 'import', 'bad.jsonl']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^termsync: bad\.jsonl:2: not valid JSON/m);
    expect(r.err).toMatch(/^termsync: bad\.jsonl:4: user "imp-4": cards must be an array$/m);
    expect(r.err).toMatch(/^termsync: bad\.jsonl:5: a user must be a JSON object$/m);
    // a new user from a line that had a PIN it cannot carry: said, not hidden
    expect(r.err).toMatch(/warning: bad\.jsonl:7: user "imp-7" had a PIN/);
    expect(r.out).toBe('imported 3 users (3 created, 0 updated, 0 unchanged); 3 lines failed\n');
    for (const id of ['imp-1', 'imp-3', 'imp-7']) expect(site.daemon.store.getUser(id)).not.toBeNull();
    expect(site.daemon.store.getUser('imp-4')).toBeNull();

    const j = await cli(['users', 'import', '-', '--json'], { stdin: '{"id":"imp-8"}\nnope\n' });
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ imported: 1, failed: [{ line: 2 }] });
  });
});

describe('termsync events', () => {
  it('list shows monitoring events; --type, --after and --json narrow and shape it', async () => {
    await site.sim.terminals[0].enroll(person('ev-1'));
    await site.waitConverged({ users: ['ev-1'] });
    const r = await cli(['events', 'list', '--limit', '1000']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\s*ID\s+TIME\s+EVENT\s+TERMINAL\s+USER\s+DETAIL$/m);
    expect(r.out).toMatch(/User update succeeded \(Device\)\s+t1\s+ev-1/);

    const t = JSON.parse((await cli(['events', 'list', '--type', 'USER_UPDATE_SUCCESS_SERVER', '--user', 'ev-1', '--json'])).out) as { type: string; terminal: string }[];
    expect(t.map((e) => e.terminal).sort()).toEqual(['t2', 't3']);
    expect(t.every((e) => e.type === 'USER_UPDATE_SUCCESS_SERVER')).toBe(true);

    const all = JSON.parse((await cli(['events', 'list', '--json', '--limit', '10000'])).out) as { id: number }[];
    const mid = all[all.length - 3].id;
    const after = JSON.parse((await cli(['events', 'list', '--json', '--after', String(mid)])).out) as { id: number }[];
    expect(after.map((e) => e.id)).toEqual(all.slice(-2).map((e) => e.id));
  });

  it('--follow prints a new event as it happens and stops when told to (Ctrl-C)', async () => {
    const ac = new AbortController();
    const run = startCli(['events', 'list', '--follow', '--limit', '1'], { signal: ac.signal });
    try {
      await waitFor(() => /^\s*ID\s+TIME\s+EVENT/m.test(run.out), { message: 'no header' });
      const before = run.out;
      await site.sim.terminals[1].enroll(person('follow-1'));
      await waitFor(() => /User update succeeded \(Device\)\s+t2\s+follow-1/.test(run.out), { message: `the new event was not printed:\n${run.out}` });
      expect(run.out.startsWith(before)).toBe(true);
    } finally {
      ac.abort();
    }
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
  });

  it('--follow --json prints one event object per line', async () => {
    await site.sim.terminals[2].enroll(person('follow-1b'));
    await waitFor(() => site.daemon.store.listEvents({ type: 'USER_UPDATE_SUCCESS_DEVICE', userId: 'follow-1b', limit: 1 }).length === 1);
    const ac = new AbortController();
    const run = startCli(['events', 'list', '--follow', '--json', '--limit', '1', '--type', 'USER_UPDATE_SUCCESS_DEVICE'], { signal: ac.signal });
    try {
      await waitFor(() => run.out.includes('"follow-1b"'), { message: 'the listed event was not printed' });
      await site.sim.terminals[2].enroll(person('follow-2'));
      await waitFor(() => run.out.includes('"follow-2"'), { message: 'the new event was not printed' });
    } finally {
      ac.abort();
    }
    const r = await run.done;
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; user: string });
    expect(lines.every((e) => e.type === 'USER_UPDATE_SUCCESS_DEVICE')).toBe(true);
    expect(lines[lines.length - 1].user).toBe('follow-2');
  });
});

describe('termsync settings, resync, backup', () => {
  it('settings get and set --sync-mode', async () => {
    const g = await cli(['settings', 'get']);
    expect(g.code).toBe(0);
    expect(g.out).toMatch(/^SETTING\s+VALUE\s+MEANING\nsync-mode\s+all\s/);
    const s = await cli(['settings', 'set', '--sync-mode', 'server']);
    expect(s.code, s.err).toBe(0);
    expect(s.out).toBe('sync mode is now server\n');
    expect(site.daemon.engine.syncMode).toBe('server');
    expect(JSON.parse((await cli(['settings', 'get', '--json'])).out)).toEqual({ syncMode: 'server' });
    expect((await cli(['settings', 'set', '--sync-mode', 'all'])).code).toBe(0);
    expect(site.daemon.engine.syncMode).toBe('all');
    const bad = await cli(['settings', 'set', '--sync-mode', 'sometimes']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/Allowed choices are off, server, all, specific/);
    expect((await cli(['settings', 'set'])).code).toBe(2);
  });

  it('resync is accepted; with --wait it follows the pushes until the terminal has everything', async () => {
    site.daemon.putUser(person('rs-1'));
    site.daemon.putUser(person('rs-2'));
    await site.waitConverged({ users: ['rs-1', 'rs-2'] });
    // someone deletes the users at terminal 3; the daemon does not push them back by itself
    await site.sim.terminals[2].remove('rs-1');
    await site.sim.terminals[2].remove('rs-2');
    await waitFor(() => site.daemon.store.listEvents({ type: 'USER_DELETED_ON_DEVICE', userId: 'rs-2', limit: 10 }).length === 1);
    await site.daemon.engine.idle();
    expect(site.sim.terminals[2].getUser('rs-1')).toBeUndefined();

    const r = await cli(['resync', 't3', '--wait']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resync of terminal t3 accepted/);
    expect(r.err).toMatch(/resync of t3: \d+\/\d+ pushes \(100%\) done/);
    expect(r.out).toMatch(/^terminal t3 resynchronised: \d+ pulled, [1-9]\d* pushed\n$/);
    expect(site.sim.terminals[2].getUser('rs-1')).toBeDefined();
    expect(site.sim.terminals[2].getUser('rs-2')).toBeDefined();

    const plain = await cli(['resync', 't1', '--json']);
    expect(plain.code).toBe(0);
    expect(JSON.parse(plain.out)).toEqual({ terminal: 't1', accepted: true });
    const unknown = await cli(['resync', 'nowhere']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toBe('termsync: no terminal "nowhere"\n');
  });

  it('backup writes a new database file in the backup directory that opens and holds the users', async () => {
    const r = await cli(['backup', 'backup.db']);
    expect(r.code, r.err).toBe(0);
    const path = join(admin.backupDir, 'backup.db');
    expect(r.out).toMatch(new RegExp(`^backup written to ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(\\d+ pages\\)\n$`));
    expect(r.err).toMatch(/backing up the database to backup\.db: done in/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const n = (db.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n;
      expect(n).toBe(site.daemon.store.userCount());
      expect(db.prepare('SELECT name FROM users WHERE id = ?').get('u-ann')).toEqual({ name: 'Ann' });
    } finally {
      db.close();
    }
    // never replaces a file
    const again = await cli(['backup', 'backup.db']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^termsync: backup\.db already exists in the backup directory/m);
    // a path is a usage error: the daemon decides where backups go
    const path2 = await cli(['backup', join(dir, 'x.db')]);
    expect(path2.code).toBe(2);
    expect(path2.err).toMatch(/^termsync: backup takes a file name, not a path/m);
    const dots = await cli(['backup', '..']);
    expect(dots.code).toBe(1);
    expect(dots.err).toMatch(/plain file name/);
  });
});

describe('exit codes and messages', () => {
  it('1 with a clear message when the daemon cannot be reached', async () => {
    const port = await closedPort();
    const r = await cli(['terminals', 'list', '--admin', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`termsync: cannot reach the termsync admin API at http://127.0.0.1:${port}: ECONNREFUSED — is the daemon running?\n`);
    expect(r.out).toBe('');
    // from the environment too, and a bare host:port is taken as http
    const e = await cli(['settings', 'get'], { env: { TERMSYNC_ADMIN: `127.0.0.1:${port}` } });
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/ECONNREFUSED — is the daemon running\?/);
  });

  it('2 for usage errors, 0 for help', async () => {
    const cases: string[][] = [
      ['terminals', 'frobnicate'],
      ['terminals'],
      ['terminals', 'add', 'x'],
      ['terminals', 'add', 'x', 'host-without-port'],
      ['terminals', 'add', 'x', '127.0.0.1:1', '--groups', '1,two'],
      ['users', 'list', '--limit', '0'],
      ['events', 'list', '--after', '-3'],
      ['users', 'get'],
      ['users', 'get', 'a', 'b'],
      ['backup'],
      ['terminals', 'list', '--admin', 'ftp://example.com'],
      ['terminals', 'list', '--bogus'],
    ];
    for (const args of cases) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err, args.join(' ')).not.toBe('');
    }
    const h = await cli(['--help']);
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/terminals/);
    const sub = await cli(['users', 'import', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.out).toMatch(/--token-file <path>/);
  });

  it('a daemon with an admin token: refused without it (1), accepted with --token-file or the env, bad token file mode is 2', async () => {
    const token = 'a-long-enough-admin-token-0123456789';
    const guarded = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(token), log: silent });
    try {
      const gurl = `http://127.0.0.1:${guarded.port}`;
      const no = await cli(['settings', 'get', '--admin', gurl]);
      expect(no.code).toBe(1);
      expect(no.err).toMatch(/^termsync: missing or wrong admin token/);
      const tf = join(dir, 'admin.token');
      writeFileSync(tf, token + '\n', { mode: 0o600 });
      chmodSync(tf, 0o600);
      const yes = await cli(['settings', 'get', '--admin', gurl, '--token-file', 'admin.token']);
      expect(yes.code, yes.err).toBe(0);
      const env = await cli(['terminals', 'list'], { env: { TERMSYNC_ADMIN: gurl, TERMSYNC_ADMIN_TOKEN_FILE: tf } });
      expect(env.code, env.err).toBe(0);
      chmodSync(tf, 0o644);
      const loose = await cli(['settings', 'get', '--admin', gurl, '--token-file', tf]);
      expect(loose.code).toBe(2);
      expect(loose.err).toMatch(/readable by group\/others .*chmod 600/);
    } finally {
      await guarded.close();
    }
  });
});

describe('progress display', () => {
  function stream(tty: boolean) {
    const s = { text: '', isTTY: tty, columns: 100, write: (x: string) => ((s.text += x), true) };
    return s;
  }

  it('on a terminal: one line redrawn in place with a bar, a newline at the end', () => {
    let now = 0;
    const out = stream(true);
    const p = new Progress({ stream: out, label: 'importing users', total: 200, unit: 'lines', now: () => now });
    for (let i = 0; i < 200; i++) {
      now += 5;
      p.tick();
    }
    p.done();
    expect(out.text.split('\n')).toHaveLength(2); // one line, one newline
    const frames = out.text.split('\r').filter(Boolean);
    expect(frames.length).toBeGreaterThan(3);
    expect(frames.length).toBeLessThan(20); // redrawn at most every 100 ms, not per tick
    expect(frames[frames.length - 1]).toMatch(/^importing users \[#{30}\] 200\/200 lines \(100%\) 1\.0s\s*\n$/);
    expect(frames.some((f) => /\[#{15}-{15}\] 100\/200 lines \(50%\)/.test(f) || /\(4\d%\)|\(5\d%\)/.test(f))).toBe(true);
  });

  it('elsewhere: a plain line every 10% or every 2 s, never a carriage return', () => {
    let now = 0;
    const out = stream(false);
    const p = new Progress({ stream: out, label: 'exporting users', total: 1000, unit: 'users', now: () => now });
    for (let i = 0; i < 1000; i++) p.tick(); // fast: one line per 10%
    p.done();
    const lines = out.text.trimEnd().split('\n');
    expect(out.text).not.toContain('\r');
    expect(lines).toHaveLength(10);
    expect(lines[0]).toBe('exporting users: 100/1000 users (10%), 0.0s');
    expect(lines[9]).toBe('exporting users: 1000/1000 users (100%) done, 0.0s');

    const slow = stream(false);
    const q = new Progress({ stream: slow, label: 'backing up', now: () => now });
    now += 1000;
    q.update(0);
    now += 1500;
    q.update(0); // 2.5 s since start: a line
    now += 500;
    q.update(0);
    q.done('done in 3.0s');
    expect(slow.text).toBe('backing up: 2.5s\nbacking up: done in 3.0s\n');
  });
});
