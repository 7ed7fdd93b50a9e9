// The shipped systemd unit, example flag file and sd_notify support, checked the
// way an administrator would: systemd's own tools judge the unit, the example
// flag file goes through the real parser, and readiness/watchdog messages go
// through the real systemd-notify to a real Unix datagram socket.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { RUN_FLAGS } from '../src/cli/options.js';
import {
  notifyReady,
  notifyReloading,
  notifyStatus,
  notifyStopping,
  notifyWatchdog,
  startWatchdog,
  watchdogIntervalMs,
} from '../src/cli/notify.js';
import { createLogger } from '../src/log.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const unitPath = join(root, 'systemd', 'termsync.service');
const flagsPath = join(root, 'systemd', 'termsync.flags');

/** Minimal systemd unit parser: section -> key -> every value in order. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = new Map();
      sections.set(sec[1], current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`unparsable unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    const values = current.get(key) ?? [];
    values.push(line.slice(eq + 1).trim());
    current.set(key, values);
  }
  return sections;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

const haveAnalyze = has('systemd-analyze');
const needsAnalyze = haveAnalyze ? '' : '[skipped: systemd-analyze is not installed] ';

describe('systemd/termsync.service', () => {
  const unit = parseUnit(readFileSync(unitPath, 'utf8'));
  const service = unit.get('Service')!;
  const one = (key: string) => {
    const v = service.get(key);
    expect(v, `${key}= is missing`).toBeDefined();
    return v![v!.length - 1];
  };

  it('runs termsync run with the flag file, as its own user, with state and configuration directories', () => {
    expect(one('ExecStart')).toMatch(/ run --flagfile=\/etc\/termsync\/termsync\.flags$/);
    expect(one('ExecReload')).toMatch(/kill -HUP \$MAINPID$/);
    expect(one('User')).toBe('termsync');
    expect(one('StateDirectory')).toBe('termsync');
    expect(one('StateDirectoryMode')).toBe('0700');
    expect(one('ConfigurationDirectory')).toBe('termsync');
    expect(one('UMask')).toBe('0077');
    expect(one('Restart')).toBe('on-failure');
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('reports readiness and is watched', () => {
    expect(one('Type')).toBe('notify');
    // the notifications come from the systemd-notify child (src/cli/notify.ts)
    expect(one('NotifyAccess')).toBe('all');
    expect(one('WatchdogSec')).toBe('30');
    expect(one('TimeoutStopSec')).toBe('30');
  });

  it('is hardened, but leaves V8 its JIT', () => {
    const expected: Record<string, string> = {
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      PrivateUsers: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectControlGroups: 'yes',
      ProtectClock: 'yes',
      ProtectHostname: 'yes',
      RestrictNamespaces: 'yes',
      RestrictRealtime: 'yes',
      RestrictSUIDSGID: 'yes',
      LockPersonality: 'yes',
      RemoveIPC: 'yes',
      SystemCallArchitectures: 'native',
      ProcSubset: 'pid',
      ProtectProc: 'invisible',
      DevicePolicy: 'closed',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
      CapabilityBoundingSet: '',
      SystemCallErrorNumber: 'EPERM',
    };
    for (const [k, v] of Object.entries(expected)) expect(one(k), k).toBe(v);
    expect(service.get('SystemCallFilter')).toContain('@system-service');
    expect(service.has('MemoryDenyWriteExecute'), 'MemoryDenyWriteExecute breaks V8').toBe(false);
  });

  it.skipIf(!haveAnalyze)(`${needsAnalyze}passes systemd-analyze verify`, () => {
    const execStart = one('ExecStart').split(/\s+/)[0];
    const r = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8' });
    if (!existsSync(execStart)) {
      // verify then only complains about the missing program (not installed here)
      expect(r.stderr).toContain(execStart);
      return;
    }
    expect(r.stderr.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it.skipIf(!haveAnalyze)(`${needsAnalyze}scores at most 2.0 in systemd-analyze security --offline=true`, () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', unitPath], { encoding: 'utf8' });
    const m = /Overall exposure level for termsync\.service: (\d+(?:\.\d+)?)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const score = Number(m![1]);
    expect(score).toBeLessThanOrEqual(2.0);
  });

});

describe('systemd/termsync.flags (the example flag file)', () => {
  it('parses with the real flag parser', () => {
    const cfg = parseRunConfig([`--flagfile=${flagsPath}`]);
    expect(cfg.db).toBe('/var/lib/termsync/termsync.db');
    expect(cfg.commKeyFile).toBe('/etc/termsync/comm.key');
    expect(cfg.adminTokenFile).toBe('/etc/termsync/admin.token');
    expect(cfg.adminListen).toEqual({ host: '127.0.0.1', port: 51280 });
  });

  it('mentions every flag, so an administrator can find it there', () => {
    const text = readFileSync(flagsPath, 'utf8');
    for (const f of RUN_FLAGS) if (f.name !== 'flagfile') expect(text, f.name).toContain(`--${f.name}`);
  });

  it('every commented-out example line is itself valid', () => {
    const text = readFileSync(flagsPath, 'utf8');
    const examples = text
      .split('\n')
      .filter((l) => /^#--/.test(l))
      .map((l) => l.slice(1));
    expect(examples.length).toBeGreaterThan(10);
    // one run with all of them: cross-flag rules (TLS needs cert and key, ...) hold too
    const cfg = parseRunConfig([`--flagfile=${flagsPath}`, ...examples]);
    expect(cfg.terminals.length).toBeGreaterThan(0);
  });
});

describe('sd_notify (src/cli/notify.ts)', () => {
  it('does nothing without NOTIFY_SOCKET', async () => {
    const env = { PATH: process.env.PATH };
    expect(await notifyReady('up', { env })).toBe(false);
    expect(await notifyWatchdog({ env })).toBe(false);
    expect(startWatchdog({ env: { ...env, WATCHDOG_USEC: '30000000' } }).intervalMs).toBeUndefined();
  });

  it('computes the watchdog interval as half of WATCHDOG_USEC, for this process only', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' })).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1234' }, 1234)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '99' }, 1234)).toBeUndefined();
    expect(watchdogIntervalMs({})).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' })).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' })).toBeUndefined();
  });

  it('reports a missing helper as a warning and carries on', async () => {
    const lines: string[] = [];
    const log = createLogger({ destination: { write: (s: string) => void lines.push(s) } });
    const ok = await notifyReady(undefined, { env: { NOTIFY_SOCKET: '/nonexistent' }, command: '/nonexistent/systemd-notify', log });
    expect(ok).toBe(false);
    expect(lines.join('')).toContain('systemd notification failed');
  });

  const canReceive = has('systemd-notify') && has('python3');
  describe.skipIf(!canReceive)(`${canReceive ? '' : '[skipped: needs systemd-notify and python3] '}through systemd-notify to a real notify socket`, () => {
    let dir: string;
    let receiver: ChildProcess;
    const received: string[] = [];
    let waiters: (() => void)[] = [];

    // Node has no AF_UNIX datagram sockets; python's standard library plays PID 1.
    const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("listening"), flush=True)
while True:
    msg = s.recv(4096)  # ancillary data (the BARRIER fd) is dropped, which closes it
    print(json.dumps(msg.decode()), flush=True)
`;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'termsync-notify-'));
      receiver = spawn('python3', ['-c', RECEIVER, join(dir, 'notify.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
      const rl = createInterface({ input: receiver.stdout! });
      await new Promise<void>((resolve, reject) => {
        receiver.once('error', reject);
        rl.on('line', (line) => {
          const msg = JSON.parse(line) as string;
          if (msg === 'listening') return resolve();
          if (msg !== 'BARRIER=1') received.push(msg);
          const w = waiters;
          waiters = [];
          for (const f of w) f();
        });
      });
    });

    afterAll(() => {
      receiver?.kill();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function nextMessage(count: number): Promise<string> {
      while (received.length < count) await new Promise<void>((r) => waiters.push(r));
      return received[count - 1];
    }

    it('sends READY, STATUS, WATCHDOG, RELOADING and STOPPING', async () => {
      const opts = { env: { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock') } };
      expect(await notifyReady('serving 3 terminals', opts)).toBe(true);
      expect(await nextMessage(1)).toBe('READY=1\nSTATUS=serving 3 terminals');
      expect(await notifyWatchdog(opts)).toBe(true);
      expect(await nextMessage(2)).toBe('WATCHDOG=1');
      expect(await notifyStatus('line one\nline two', opts)).toBe(true);
      expect(await nextMessage(3)).toBe('STATUS=line one line two');
      expect(await notifyReloading(undefined, opts)).toBe(true);
      expect(await nextMessage(4)).toBe('RELOADING=1');
      expect(await notifyStopping('shutting down', opts)).toBe(true);
      expect(await nextMessage(5)).toBe('STOPPING=1\nSTATUS=shutting down');
    });

    it('startWatchdog pings at half the watchdog period until stopped', async () => {
      const before = received.length;
      const env = { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '40000' };
      const wd = startWatchdog({ env });
      expect(wd.intervalMs).toBe(20);
      expect(await nextMessage(before + 1)).toBe('WATCHDOG=1');
      expect(await nextMessage(before + 2)).toBe('WATCHDOG=1');
      wd.stop();
    });

    it('startWatchdog feeds the watchdog only while the health check passes', async () => {
      const before = received.length;
      const env = { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '40000' };
      let checks = 0;
      const lines: string[] = [];
      const log = createLogger({ destination: { write: (s: string) => void lines.push(s) } });
      const wd = startWatchdog({ env, log, healthy: () => ++checks > 3 });
      expect(await nextMessage(before + 1)).toBe('WATCHDOG=1');
      wd.stop();
      expect(checks).toBeGreaterThanOrEqual(4); // three failed checks sent nothing
      expect(lines.join('')).toContain('not feeding the systemd watchdog');
      expect(lines.join('')).toContain('health check passes again');
    });
  });
});
