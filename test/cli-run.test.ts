// The termsync executable as a user starts it: --help everywhere, `run --help`
// listing the run flags, and the process exit codes (0 ok, 1 runtime failure,
// 2 usage error) through bin/termsync.js.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startAdmin } from '../src/admin/server.js';
import { RUN_FLAGS } from '../src/cli/options.js';
import { userFromJson } from '../src/model/user.js';
import { silent, startSite } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 30_000 }, (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? ((e as { code: number }).code) : -1) : 0;
      resolve({ code, out, err });
    });
  });
}

const termsync = (args: string[], env?: Record<string, string>) => run(process.execPath, ['bin/termsync.js', ...args], env);

const dir = mkdtempSync(join(tmpdir(), 'termsync-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('termsync --help', () => {
  it('bin/termsync.js --help lists the commands and exits 0', async () => {
    const r = await termsync(['--help']);
    expect(r.code, r.err).toBe(0);
    for (const c of ['run', 'sim', 'demo', 'terminals', 'users', 'events', 'settings', 'resync', 'backup']) expect(r.out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('tsx src/cli/main.ts --help works too', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--help']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Usage: termsync /);
  });

  it('run --help prints every run flag and exits 0', async () => {
    const r = await termsync(['run', '--help']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Usage: termsync run /);
    for (const f of RUN_FLAGS) expect(r.out).toContain(`--${f.name}`);
  });
});

describe('process exit codes', () => {
  it('1 when the daemon cannot be reached, with the message on stderr', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const r = await termsync(['users', 'list'], { TERMSYNC_ADMIN: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(1);
    expect(r.err).toBe(`termsync: cannot reach the termsync admin API at http://127.0.0.1:${port}: ECONNREFUSED — is the daemon running?\n`);
  });

  it('2 for a usage error, of an admin command or of run', async () => {
    const a = await termsync(['events', 'list', '--limit', 'lots']);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--limit <n>.*must be a whole number/);
    const b = await termsync(['run', '--insecure-dev-key', `--db=${join(dir, 'x.db')}`, '--terminal=nonsense']);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/^termsync: command line: --terminal must be ID@HOST:PORT/);
    const flags = join(dir, 'f.flags');
    writeFileSync(flags, '--insecure-dev-key\n--bogus-flag\n');
    const c = await termsync(['run', `--flagfile=${flags}`]);
    expect(c.code).toBe(2);
    expect(c.err).toBe(`termsync: ${flags}:2: unknown flag --bogus-flag\n`);
  });
});

describe('events list --follow as a process', () => {
  it('prints new events as they happen and exits 0 on Ctrl-C (SIGINT)', async () => {
    const site = await startSite({ terminals: 2 });
    const admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: null, log: silent, streamPollMs: 50 });
    try {
      const child = spawn(process.execPath, ['bin/termsync.js', 'events', 'list', '--follow', '--limit', '5'], {
        cwd: ROOT,
        env: { ...process.env, TERMSYNC_ADMIN: `http://127.0.0.1:${admin.port}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await waitFor(() => /^\s*ID\s+TIME\s+EVENT/m.test(out), { timeoutMs: 20_000, message: `no header: ${err}` });
      await site.sim.terminals[0].enroll(userFromJson({ id: 'proc-follow', name: 'Followed' }));
      await waitFor(() => /User update succeeded \(Device\)\s+t1\s+proc-follow/.test(out), { message: `the new event was not printed:\n${out}` });
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(err).toBe('');
    } finally {
      await admin.close();
      await site.close();
    }
  });
});
