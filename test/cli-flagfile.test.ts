// Flag files and the command line as an administrator meets them: real files in
// a temp dir, the exact error messages they would read, and the precedence rules.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlagError, MAX_FLAGFILE_DEPTH, parseRunConfig, readFlagFile, runConfigFromCommand } from '../src/cli/flagfile.js';
import { addRunFlags, RUN_FLAGS, suggestFlag } from '../src/cli/options.js';
import { ConfigError, loadAdminToken, loadCommKey, RUN_DEFAULTS } from '../src/config.js';

let dir: string;
let n = 0;

/** Writes a flag file (lines joined with \n) and returns its path. */
function flags(lines: string[], name = `f${++n}.flags`): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

/** The FlagError message parseRunConfig throws for argv. */
function errorOf(argv: string[]): string {
  try {
    parseRunConfig(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(FlagError);
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(argv)} to fail`);
}

const DEV = '--insecure-dev-key';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'termsync-flags-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('flag file syntax', () => {
  it('reads flags, skipping comments, blank lines and surrounding whitespace', () => {
    const f = flags([
      '# termsync site flags',
      '',
      '   --db=/var/lib/termsync/site.db   ',
      '\t--sync-mode=server # trailing comment after whitespace',
      '--heartbeat-sec=15',
      '      # indented comment',
      '--auto-approve',
      '--terminal=7@10.0.0.20:51211',
      '--terminal=8@term-8.site.example',
      '--terminal=9@[fd00::9]:6000',
      '--admin-listen=0.0.0.0:8080',
      '--log-pretty',
      DEV,
    ]);
    const cfg = parseRunConfig([`--flagfile=${f}`]);
    expect(cfg.db).toBe('/var/lib/termsync/site.db');
    expect(cfg.syncMode).toBe('server');
    expect(cfg.heartbeatSec).toBe(15);
    expect(cfg.autoApprove).toBe(true);
    expect(cfg.logPretty).toBe(true);
    expect(cfg.terminals).toEqual([
      { id: 7, host: '10.0.0.20', port: 51211 },
      { id: 8, host: 'term-8.site.example', port: 51211 },
      { id: 9, host: 'fd00::9', port: 6000 },
    ]);
    expect(cfg.adminListen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(cfg.flagFiles).toHaveLength(1);
  });

  it('keeps # inside a value when no whitespace precedes it, and accepts CRLF line ends', () => {
    const path = join(dir, 'crlf.flags');
    writeFileSync(path, '--db=/data/site#2.db\r\n--insecure-dev-key\r\n');
    expect(parseRunConfig([`--flagfile=${path}`]).db).toBe('/data/site#2.db');
  });

  it('uses the documented defaults for everything not given', () => {
    const cfg = parseRunConfig([DEV]);
    const { flagFiles, ...rest } = cfg;
    expect(flagFiles).toEqual([]);
    expect(rest).toEqual({ ...RUN_DEFAULTS, insecureDevKey: true, terminals: [] });
    expect(cfg.db).toBe('./data/termsync.db');
    expect(cfg.adminListen).toEqual({ host: '127.0.0.1', port: 51280 });
    expect(cfg.syncMode).toBeUndefined();
    expect(cfg.listen).toBeUndefined();
  });

  it('resolves relative paths in a flag file against the file’s directory', () => {
    mkdirSync(join(dir, 'etc'), { recursive: true });
    const f = flags(['--comm-key-file=comm.key', '--db=../var/t.db'], 'etc/paths.flags');
    const cfg = parseRunConfig([`--flagfile=${f}`]);
    expect(cfg.commKeyFile).toBe(join(dir, 'etc', 'comm.key'));
    expect(cfg.db).toBe(join(dir, 'var', 't.db'));
  });
});

describe('flag file errors name the file and line', () => {
  it('unknown flag, with a suggestion', () => {
    const f = flags(['# 1', '# 2', '', DEV, '--db=x.db', '', '--sync-mod=all'], 'termsync.flags');
    expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:7: unknown flag --sync-mod (did you mean --sync-mode?)`);
  });

  it('unknown flag far from any known one: no suggestion', () => {
    const f = flags(['--frobnicate=yes']);
    expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:1: unknown flag --frobnicate`);
  });

  it('bad enum value', () => {
    const f = flags([DEV, '', '--sync-mode=alll']);
    expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:3: --sync-mode must be one of off, server, all, specific (got "alll")`);
  });

  it('bad integers: not a number, out of range', () => {
    const f1 = flags(['--heartbeat-sec=ten']);
    expect(errorOf([`--flagfile=${f1}`])).toBe(`${f1}:1: --heartbeat-sec must be an integer from 1 to 3600 (got "ten")`);
    const f2 = flags(['--concurrency=0']);
    expect(errorOf([`--flagfile=${f2}`])).toBe(`${f2}:1: --concurrency must be an integer from 1 to 4096 (got "0")`);
    const f3 = flags(['--request-timeout-ms=-5']);
    expect(errorOf([`--flagfile=${f3}`])).toMatch(/:1: --request-timeout-ms must be an integer from 100 to 600000 \(got "-5"\)$/);
  });

  it('bad host:port values', () => {
    const cases: [string, RegExp][] = [
      ['--listen=51212', /:1: --listen must be HOST:PORT, e\.g\. 0\.0\.0\.0:51212, or off \(got "51212"\)$/],
      ['--listen=0.0.0.0:70000', /--listen must be HOST:PORT.*\(got "0\.0\.0\.0:70000"\)$/],
      ['--listen=::1:51212', /put IPv6 addresses in brackets, e\.g\. \[::1\]:51212$/],
      ['--admin-listen=bad host:80', /--admin-listen must be HOST:PORT/],
      ['--terminal=10.0.0.20:51211', /:1: --terminal must be ID@HOST:PORT with ID the terminal's device id, e\.g\. 7@10\.0\.0\.20:51211 \(got "10\.0\.0\.20:51211"\)$/],
      ['--terminal=0@10.0.0.20', /--terminal must be ID@HOST:PORT/],
      ['--terminal=7@10.0.0.20:0', /--terminal must be ID@HOST:PORT/],
    ];
    for (const [line, re] of cases) {
      const f = flags([line]);
      const msg = errorOf([`--flagfile=${f}`]);
      expect(msg.startsWith(`${f}:1: `), msg).toBe(true);
      expect(msg).toMatch(re);
    }
  });

  it('missing value, space instead of =, value on a switch, stray text', () => {
    const cases: [string, string][] = [
      ['--db', '--db needs a value (--db=VALUE)'],
      ['--db=', '--db needs a value (--db=VALUE)'],
      ['--db /var/lib/termsync/t.db', 'write --db=VALUE (flag files take no space between flag and value)'],
      ['--auto-approve=false', '--auto-approve is a switch: write --auto-approve or --no-auto-approve (got "=false")'],
      ['sync-mode=all', 'expected --flag=value or --flag, got "sync-mode=all"'],
      ['-v', 'unknown flag -v'],
    ];
    for (const [line, detail] of cases) {
      const f = flags([DEV, line]);
      expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:2: ${detail}`);
    }
  });

  it('missing flag file: on the command line and as an include', () => {
    const missing = join(dir, 'nope.flags');
    expect(errorOf([`--flagfile=${missing}`])).toBe(`command line: cannot read flag file ${missing}: no such file`);
    const f = flags([DEV, '--flagfile=absent.flags']);
    expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:2: cannot read flag file ${join(dir, 'absent.flags')}: no such file`);
  });

  it('include cycles are refused at the including line', () => {
    writeFileSync(join(dir, 'cyc-a.flags'), `${DEV}\n--flagfile=cyc-b.flags\n`);
    writeFileSync(join(dir, 'cyc-b.flags'), '# b\n--flagfile=cyc-a.flags\n');
    const a = join(dir, 'cyc-a.flags');
    const b = join(dir, 'cyc-b.flags');
    expect(errorOf([`--flagfile=${a}`])).toBe(
      `${b}:2: --flagfile=${a} includes a file that is already being read (${a} -> ${b} -> ${a})`,
    );
    const self = flags(['--flagfile=self.flags'], 'self.flags');
    expect(errorOf([`--flagfile=${self}`])).toMatch(/self\.flags:1: --flagfile=.*self\.flags includes a file that is already being read/);
  });

  it(`include depth is limited to ${MAX_FLAGFILE_DEPTH} files`, () => {
    const chain = (len: number, prefix: string) => {
      for (let i = 1; i <= len; i++) {
        const body = i < len ? [`--flagfile=${prefix}${i + 1}.flags`] : [DEV, `--heartbeat-sec=${i}`];
        writeFileSync(join(dir, `${prefix}${i}.flags`), body.join('\n') + '\n');
      }
      return join(dir, `${prefix}1.flags`);
    };
    // exactly at the limit: fine, and the innermost value arrives
    const ok = parseRunConfig([`--flagfile=${chain(MAX_FLAGFILE_DEPTH, 'deep-ok-')}`]);
    expect(ok.heartbeatSec).toBe(MAX_FLAGFILE_DEPTH);
    expect(ok.flagFiles).toHaveLength(MAX_FLAGFILE_DEPTH);
    // one more: refused at the line that would open file number 9
    const msg = errorOf([`--flagfile=${chain(MAX_FLAGFILE_DEPTH + 1, 'deep-bad-')}`]);
    expect(msg).toMatch(new RegExp(`deep-bad-${MAX_FLAGFILE_DEPTH}\\.flags:1: --flagfile nesting is deeper than ${MAX_FLAGFILE_DEPTH} files \\(`));
  });

  it('errors inside an included file name that file, relative to the includer', () => {
    mkdirSync(join(dir, 'inc'), { recursive: true });
    writeFileSync(join(dir, 'inc', 'common.flags'), '--heartbeat-sec=5\n--request-timeout-ms=fast\n');
    const top = flags([DEV, '--flagfile=inc/common.flags']);
    expect(errorOf([`--flagfile=${top}`])).toBe(
      `${join(dir, 'inc', 'common.flags')}:2: --request-timeout-ms must be an integer from 100 to 600000 (got "fast")`,
    );
  });
});

describe('precedence and accumulation', () => {
  it('the command line overrides flag files; later lines override earlier ones; includes apply in place', () => {
    writeFileSync(join(dir, 'base.flags'), '--sync-mode=off\n--heartbeat-sec=20\n--concurrency=8\n--auto-approve\n--listen=0.0.0.0:51212\n');
    const site = flags([DEV, '--flagfile=base.flags', '--heartbeat-sec=30', '--db=/srv/site.db']);
    const fromFile = parseRunConfig([`--flagfile=${site}`]);
    expect(fromFile).toMatchObject({ syncMode: 'off', heartbeatSec: 30, concurrency: 8, autoApprove: true, db: '/srv/site.db' });
    expect(fromFile.listen).toEqual({ host: '0.0.0.0', port: 51212 });

    const cfg = parseRunConfig([
      '--sync-mode=all',
      `--flagfile=${site}`, // position does not matter: the command line always wins
      '--heartbeat-sec',
      '12',
      '--no-auto-approve',
      '--listen=off',
    ]);
    expect(cfg).toMatchObject({ syncMode: 'all', heartbeatSec: 12, concurrency: 8, autoApprove: false, db: '/srv/site.db' });
    expect(cfg.listen).toBeUndefined();
    expect(cfg.flagFiles).toHaveLength(2);
  });

  it('--terminal accumulates: flag-file values first (in file order), then the command line', () => {
    writeFileSync(join(dir, 'terms-inc.flags'), '--terminal=2@10.0.0.2\n');
    const f = flags([DEV, '--terminal=1@10.0.0.1', '--flagfile=terms-inc.flags', '--terminal=3@10.0.0.3']);
    const cfg = parseRunConfig(['--terminal=4@10.0.0.4', `--flagfile=${f}`, '--terminal', '5@10.0.0.5:6000']);
    expect(cfg.terminals.map((t) => t.id)).toEqual([1, 2, 3, 4, 5]);
    expect(cfg.terminals[4]).toEqual({ id: 5, host: '10.0.0.5', port: 6000 });
  });

  it('several --flagfile arguments apply in order', () => {
    const a = flags([DEV, '--heartbeat-sec=3', '--terminal=1@10.0.0.1']);
    const b = flags(['--heartbeat-sec=4', '--terminal=2@10.0.0.2']);
    const cfg = parseRunConfig([`--flagfile=${a}`, `--flagfile=${b}`]);
    expect(cfg.heartbeatSec).toBe(4);
    expect(cfg.terminals.map((t) => t.id)).toEqual([1, 2]);
  });

  it('a terminal given twice is an error naming both places', () => {
    const f = flags([DEV, '--terminal=7@10.0.0.7']);
    expect(errorOf([`--flagfile=${f}`, '--terminal=7@10.0.0.8'])).toBe(`command line: --terminal: terminal 7 is given already at ${f}:2`);
    expect(errorOf([`--flagfile=${f}`, '--terminal=8@10.0.0.7'])).toMatch(/^command line: --terminal: 10\.0\.0\.7:51211 is already terminal 7/);
  });
});

describe('flags that depend on each other', () => {
  it('a comm key is required unless --insecure-dev-key, and not both', () => {
    expect(errorOf([])).toBe('--comm-key-file is required (or --insecure-dev-key, for local testing only)');
    const f = flags(['--comm-key-file=/etc/termsync/comm.key']);
    expect(errorOf([`--flagfile=${f}`, DEV])).toBe(`command line: --insecure-dev-key and --comm-key-file (${f}:1) exclude each other; remove one`);
    expect(parseRunConfig(['--comm-key-file=/k']).commKeyFile).toBe('/k');
  });

  it('TLS listener needs certificate and key; client-cert requirement needs a CA', () => {
    const f = flags([DEV, '--tls-listen=0.0.0.0:51213']);
    expect(errorOf([`--flagfile=${f}`])).toBe(`${f}:2: --tls-listen needs --tls-cert and --tls-key`);
    expect(parseRunConfig([`--flagfile=${f}`, '--tls-cert=/c.pem', '--tls-key=/k.pem']).tlsListen).toEqual({ host: '0.0.0.0', port: 51213 });
    expect(errorOf([DEV, '--tls-require-client-cert'])).toBe('command line: --tls-require-client-cert needs --tls-ca (the CA that signs terminal certificates)');
  });

  it('reconnect bounds and listener ports are checked', () => {
    expect(errorOf([DEV, '--reconnect-min-ms=5000', '--reconnect-max-ms=1000'])).toBe(
      'command line: --reconnect-min-ms (5000) must not exceed --reconnect-max-ms (1000)',
    );
    expect(errorOf([DEV, '--listen=127.0.0.1:51280'])).toBe('--listen and --admin-listen are both 127.0.0.1:51280; give each its own port');
  });
});

describe('command line', () => {
  it('errors read like the flag-file ones', () => {
    expect(errorOf([DEV, '--sync-mod=all'])).toBe('command line: unknown flag --sync-mod (did you mean --sync-mode?)');
    expect(errorOf([DEV, '--sync-mode', 'alll'])).toBe('command line: --sync-mode must be one of off, server, all, specific (got "alll")');
    expect(errorOf([DEV, '--heartbeat-sec=ten'])).toBe('command line: --heartbeat-sec must be an integer from 1 to 3600 (got "ten")');
    expect(errorOf([DEV, '--db'])).toBe('command line: --db needs a value (--db=VALUE)');
    expect(errorOf([DEV, '--log-frames=yes'])).toBe('command line: --log-frames is a switch: write --log-frames or --no-log-frames (got "=yes")');
    expect(errorOf([DEV, 'demo'])).toBe('command line: unexpected argument "demo": termsync run takes only --flags');
    expect(errorOf([DEV, '--terminal=x'])).toMatch(/^command line: --terminal must be ID@HOST:PORT/);
  });

  it('works as a subcommand of a program (how main.ts uses it), with --help from the same table', () => {
    const program = new Command('termsync').exitOverride();
    let seen: ReturnType<typeof runConfigFromCommand> | undefined;
    const run = addRunFlags(program.command('run')).action((_o, cmd: Command) => {
      seen = runConfigFromCommand(cmd);
    });
    program.parse(['node', 'termsync', 'run', DEV, '--terminal=3@10.0.0.3', '--sync-mode=specific'], { from: 'node' });
    expect(seen?.terminals).toEqual([{ id: 3, host: '10.0.0.3', port: 51211 }]);
    expect(seen?.syncMode).toBe('specific');
    const help = run.helpInformation().replace(/\s+/g, ' ');
    for (const f of RUN_FLAGS) expect(help).toContain(`--${f.name}`);
    expect(help).toContain('(default: 127.0.0.1:51280)');
    expect(help).toContain('(default: 10)');
  });

  it('suggests the closest flag', () => {
    expect(suggestFlag('terminals')).toBe('terminal');
    expect(suggestFlag('comm-key')).toBe('comm-key-file');
    expect(suggestFlag('xyzzy')).toBeUndefined();
  });

  it('readFlagFile returns entries with their origin', () => {
    const f = flags(['# x', '--db=/a.db']);
    const entries = readFlagFile(f);
    expect(entries).toHaveLength(1);
    expect(entries[0].origin).toEqual({ file: f, line: 2 });
  });
});

describe('secret files', () => {
  const secret = (name: string, content: string | Buffer, mode: number) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    chmodSync(path, mode); // explicit: the umask must not decide the test
    return path;
  };

  it('refuses a comm key file that group or others can read, saying how to fix it', () => {
    const path = secret('comm-0644.key', 'a-long-enough-comm-key-123\n', 0o644);
    expect(() => loadCommKey(path)).toThrow(ConfigError);
    expect(() => loadCommKey(path)).toThrow(`comm key file ${path} is readable by group/others (mode 0644); chmod 600 ${path}`);
    const g = secret('comm-0640.key', 'a-long-enough-comm-key-123\n', 0o640);
    expect(() => loadCommKey(g)).toThrow(`(mode 0640); chmod 600 ${g}`);
    try {
      loadCommKey(g);
    } catch (e) {
      expect((e as ConfigError).code).toBe('SECRET_FILE_MODE');
    }
  });

  it('loads a 0600 key, strips one trailing newline, and accepts hex', () => {
    const raw = secret('comm-raw.key', 'a-long-enough-comm-key-123\n', 0o600);
    expect(loadCommKey(raw).toString()).toBe('a-long-enough-comm-key-123');
    const hex = secret('comm-hex.key', '00112233445566778899aabbccddeeff\n', 0o600);
    expect(loadCommKey(hex)).toEqual(Buffer.from('00112233445566778899aabbccddeeff', 'hex'));
  });

  it('refuses a short key and a missing file', () => {
    const short = secret('comm-short.key', 'short\n', 0o600);
    expect(() => loadCommKey(short)).toThrow(/at least 16 bytes/);
    expect(() => loadCommKey(join(dir, 'absent.key'))).toThrow(`comm key file ${join(dir, 'absent.key')} does not exist`);
  });

  it('admin token: same mode rule, trimmed, at least 16 characters', () => {
    const open = secret('admin-open.token', 'abcdefghijklmnopqrstuvwxyz\n', 0o604);
    expect(() => loadAdminToken(open)).toThrow(/readable by group\/others \(mode 0604\); chmod 600/);
    const ok = secret('admin.token', '  abcdefghijklmnopqrstuvwxyz\n', 0o600);
    expect(loadAdminToken(ok)).toBe('abcdefghijklmnopqrstuvwxyz');
  });
});
