// Secrets and personal data, end to end through `termsync run` as a real
// process: a full run at debug level with --log-frames, while users carrying a
// PIN, card data, finger templates, a face and a photo travel both ways (pulled
// from a terminal, pushed by the admin API), must never put any of those bytes,
// the comm key or the admin token into any output line, in any encoding. The
// database and its -wal/-shm files are owner-only while it runs. A comm key file
// others can read stops the start with a clear message; an admin API bound
// beyond loopback without a token does not start.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPin, userFromJson } from '../src/model/user.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { usersEqual } from '../src/model/merge.js';
import { waitFor } from './helpers/wait.js';

const ROOT = join(import.meta.dirname, '..');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Run {
  out: () => string;
  lines: () => Record<string, unknown>[];
  exited: Promise<number | null>;
  kill(sig: NodeJS.Signals): void;
}

function termsync(args: string[]): Run {
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  p.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  cleanups.push(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    return exited;
  });
  return {
    out: () => out,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
    kill: (sig) => p.kill(sig),
  };
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-secrets-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** every way a byte string could show up in a text log */
function encodings(b: Buffer): string[] {
  const out = [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), b.toString('base64url')];
  if (/^[\x20-\x7e]+$/.test(b.toString('latin1'))) out.push(b.toString('latin1'));
  // any 8-byte window, in hex and base64: a partial dump is a leak too
  for (let i = 0; i + 8 <= b.length; i += 8) out.push(b.subarray(i, i + 8).toString('hex'), b.subarray(i, i + 9 > b.length ? b.length : i + 9).toString('base64'));
  return [...new Set(out)];
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('secrets and personal data in a full run', () => {
  it('debug level with --log-frames: no PIN, card, template, face, photo, comm key or token in any output line; database files owner-only', async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const keyFile = join(dir, 'comm.key');
    writeFileSync(keyFile, key.toString('hex') + '\n', { mode: 0o600 });
    const token = `tok-${randomBytes(18).toString('hex')}`;
    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });

    const pin = '738291046518';
    const card = Buffer.from('c0ffee5e7e11a1b2c3d4e5f6', 'hex');
    const template = Buffer.alloc(384);
    for (let i = 0; i < 384; i += 8) Buffer.from('deadbeefcafef00d', 'hex').copy(template, i);
    const template2 = Buffer.alloc(384, 0x5a);
    const face = Buffer.alloc(2048);
    for (let i = 0; i < face.length; i += 8) Buffer.from('facefeedfacefeed', 'hex').copy(face, i);
    const photo = Buffer.alloc(4096);
    for (let i = 0; i < photo.length; i += 8) Buffer.from('b0a710f0b0a710f1', 'hex').copy(photo, i);

    const sim = await Simulator.start({ terminals: 2, commKey: key, timing: ZERO_TIMING });
    cleanups.push(() => sim.close());
    const [p1, p2] = sim.ports();
    const db = join(dir, 'state', 'termsync.db');
    const run = termsync([
      'run',
      `--db=${db}`,
      `--comm-key-file=${keyFile}`,
      `--admin-token-file=${tokenFile}`,
      '--admin-listen=127.0.0.1:0',
      `--terminal=1001@127.0.0.1:${p1}`,
      `--terminal=1002@127.0.0.1:${p2}`,
      '--sync-mode=all',
      '--log-level=debug',
      '--log-frames',
      '--reconnect-min-ms=50',
    ]);
    await waitFor(() => run.lines().filter((l) => l.msg === 'terminal online').length === 2, { timeoutMs: 20_000, message: `the daemon did not bring both terminals online:\n${run.out()}` });
    const admin = run.lines().find((l) => l.msg === 'termsync running')!.admin as number;

    // a person enrolls at terminal 1: pulled by the daemon, pushed to terminal 2
    const device = userFromJson({
      id: 'pd-1',
      name: 'Data Subject',
      pin,
      cards: [{ type: 1, data: card.toString('hex') }],
      fingers: [{ index: 0, templates: [template.toString('hex'), template2.toString('hex')] }],
      faces: [{ index: 0, data: face.toString('hex') }],
      photo: photo.toString('hex'),
    });
    await sim.terminals[0].enroll(device);
    // an administrator adds one through the API: pushed to both terminals
    const res = await fetch(`http://127.0.0.1:${admin}/api/users/pd-2`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'pd-2', name: 'Admin Subject', pin, cards: [{ type: 2, data: Buffer.from(card).reverse().toString('hex') }], photo: photo.toString('hex') }),
    });
    expect(res.status).toBe(201); // created
    await waitFor(() => sim.terminals[1].getUser('pd-1') !== undefined && sim.terminals.every((t) => t.getUser('pd-2') !== undefined), { timeoutMs: 15_000 });
    expect(usersEqual(sim.terminals[1].getUser('pd-1')!, device)).toBe(true);

    // owner-only files while the daemon runs (SQLite removes -wal and -shm at a clean close)
    await waitFor(() => existsSync(db + '-wal') && existsSync(db + '-shm'));
    expect([mode(join(dir, 'state')), mode(db), mode(db + '-wal'), mode(db + '-shm')]).toEqual([0o700, 0o600, 0o600, 0o600]);

    run.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    const out = run.out();
    const lines = run.lines();
    // the run really logged frames, user commands included (redacted), so the search below means something
    const frames = lines.filter((l) => l.msg === '<' || l.msg === '>');
    expect(frames.length).toBeGreaterThan(20);
    expect(frames.some((l) => /bytes redacted/.test(String(l.frame)))).toBe(true);
    expect(lines.some((l) => l.level === 20)).toBe(true);

    const secrets: Record<string, Buffer> = {
      'comm key': key,
      'admin token': Buffer.from(token),
      pin: Buffer.from(pin),
      'pin hash': hashPin(pin),
      card,
      'finger template': template,
      'finger template 2': template2,
      face,
      photo,
    };
    const leaks: string[] = [];
    for (const [what, bytes] of Object.entries(secrets)) for (const enc of encodings(bytes)) if (out.includes(enc)) leaks.push(`${what} as ${enc.slice(0, 24)}`);
    expect(leaks).toEqual([]);
  });

  it('refuses to start with a comm key file others can read, saying how to fix it, and without logging the key', async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const keyFile = join(dir, 'comm.key');
    writeFileSync(keyFile, key.toString('hex'));
    chmodSync(keyFile, 0o644);
    const db = join(dir, 'termsync.db');
    const run = termsync(['run', `--db=${db}`, `--comm-key-file=${keyFile}`, '--admin-listen=off', '--terminal=1001@127.0.0.1:9']);
    expect(await run.exited).toBe(2);
    expect(run.out()).toContain(keyFile);
    expect(run.out()).toContain('chmod 600');
    for (const enc of encodings(key)) expect(run.out()).not.toContain(enc);
    expect(existsSync(db)).toBe(false); // nothing was started
  });

  it('refuses to start an admin API bound beyond loopback without a token', async () => {
    const dir = tempDir();
    const run = termsync(['run', `--db=${join(dir, 'termsync.db')}`, '--insecure-dev-key', '--admin-listen=0.0.0.0:0', '--log-level=error']);
    expect(await run.exited).not.toBe(0);
    expect(run.out()).toMatch(/beyond loopback.*--admin-token-file/);
  });
});
