// The ZK flags of `termsync run`: `--terminal zk:NAME@HOST[:PORT]` beside
// `--terminal ID@HOST:PORT`, `--zk-password-file`, `--terminal-key NAME:PATH`
// for a ZK terminal, `--zk-poll-sec`; and the key files they name.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FlagError, mergeRunConfig } from '../src/cli/flagfile.js';
import { findFlag, parseFlagValue, parseTerminal, parseTerminalKey } from '../src/cli/options.js';
import { daemonOptions, dialTargets } from '../src/cli/run.js';
import { ConfigError, loadZkPassword, resolveZkKeys, termsyncKeyFiles } from '../src/config.js';
import pino from 'pino';

const dir = mkdtempSync(join(tmpdir(), 'zk-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function secret(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

function entries(flags: [string, string][]) {
  return flags.map(([name, raw]) => ({ spec: findFlag(name)!, value: parseFlagValue(findFlag(name)!, raw), origin: 'command line' as const }));
}

describe('--terminal zk:NAME@HOST[:PORT]', () => {
  it('parses a ZK terminal beside termsync terminals, port 4370 by default', () => {
    expect(parseTerminal('zk:door-1@10.0.0.30')).toEqual({ id: 'door-1', host: '10.0.0.30', port: 4370, protocol: 'zk' });
    expect(parseTerminal('zk:7@zk7.site.lan:4371')).toEqual({ id: '7', host: 'zk7.site.lan', port: 4371, protocol: 'zk' });
    expect(parseTerminal('zk:gate@[fe80::1]')).toEqual({ id: 'gate', host: 'fe80::1', port: 4370, protocol: 'zk' });
    expect(parseTerminal('7@10.0.0.20')).toEqual({ id: 7, host: '10.0.0.20', port: 51211 });
  });

  it('refuses a malformed one with a message that shows the form', () => {
    for (const bad of ['zk:@10.0.0.1', 'zk:door 1@10.0.0.1', 'zk:door-1', 'zk:door@10.0.0.1:99999', 'zk:door@::1'])
      expect(() => parseTerminal(bad), bad).toThrow(/zk:NAME@HOST\[:PORT\]/);
    expect(() => parseTerminal('door@10.0.0.1')).toThrow(/ID@HOST:PORT with ID the terminal's device id/);
  });

  it('one ID is one terminal, whatever its protocol; one address is one terminal', () => {
    const run = (flags: [string, string][]) => mergeRunConfig([...entries(flags), { spec: findFlag('insecure-dev-key')!, value: true, origin: 'command line' }]);
    const ok = run([['terminal', '7@10.0.0.20'], ['terminal', 'zk:door-1@10.0.0.30'], ['zk-poll-sec', '5']]);
    expect(ok.terminals).toEqual([{ id: 7, host: '10.0.0.20', port: 51211 }, { id: 'door-1', host: '10.0.0.30', port: 4370, protocol: 'zk' }]);
    expect(ok.zkPollSec).toBe(5);
    expect(() => run([['terminal', '7@10.0.0.20'], ['terminal', 'zk:7@10.0.0.31']])).toThrow(FlagError);
    expect(() => run([['terminal', 'zk:a@10.0.0.30'], ['terminal', 'zk:b@10.0.0.30:4370']])).toThrow(/one address is one terminal/);
  });

  it('--zk-poll-sec defaults to 30 and takes whole seconds', () => {
    expect(mergeRunConfig([{ spec: findFlag('insecure-dev-key')!, value: true, origin: 'command line' }]).zkPollSec).toBe(30);
    expect(() => parseFlagValue(findFlag('zk-poll-sec')!, '0')).toThrow(/1 to 86400/);
  });
});

describe('ZK comm keys', () => {
  it('--terminal-key takes a ZK terminal name as well as a device id', () => {
    expect(parseTerminalKey('door-1:/etc/termsync/door-1.key')).toEqual({ terminalId: 'door-1', path: '/etc/termsync/door-1.key' });
    expect(parseTerminalKey('7:/etc/termsync/terminal-7.key')).toEqual({ terminalId: '7', deviceId: 7, path: '/etc/termsync/terminal-7.key' });
    expect(() => parseTerminalKey('0:/x')).toThrow(/ID:PATH/);
    expect(() => parseTerminalKey('no path')).toThrow(/ID:PATH/);
  });

  it('a ZK key file holds the number; it must be owner-only', () => {
    expect(loadZkPassword(secret('ok.key', ' 123456\n')).toString()).toBe('123456');
    expect(() => loadZkPassword(secret('word.key', 'secret\n'))).toThrow(/as a number 0\.\.4294967295/);
    expect(() => loadZkPassword(secret('big.key', '4294967296'))).toThrow(ConfigError);
    expect(() => loadZkPassword(secret('open.key', '1234', 0o644))).toThrow(/chmod 600/);
  });

  it('each ZK terminal gets its own key file, else the site file, else none; termsync keys stay termsync keys', () => {
    const site = secret('site.key', '1111\n');
    const own = secret('own.key', '2222\n');
    const tsKey = join(dir, 'terminal-7.key');
    const terminals = [
      { id: 7, host: '10.0.0.20', port: 51211 },
      { id: 'door-1', host: '10.0.0.30', port: 4370, protocol: 'zk' as const },
      { id: 'door-2', host: '10.0.0.31', port: 4370, protocol: 'zk' as const },
    ];
    const terminalKeys = [parseTerminalKey(`door-2:${own}`), parseTerminalKey(`7:${tsKey}`)];
    const keys = resolveZkKeys({ terminals, terminalKeys, zkPasswordFile: site });
    expect([...keys].map(([id, k]) => [id, k.toString()])).toEqual([['door-1', '1111'], ['door-2', '2222']]);
    expect(resolveZkKeys({ terminals, terminalKeys: [], zkPasswordFile: undefined }).get('door-1')!.toString()).toBe('0');
    expect(termsyncKeyFiles({ terminals, terminalKeys })).toEqual([{ deviceId: 7, path: tsKey }]);
  });

  it('termsync run dials ZK terminals with the zk driver and their key, termsync terminals as before', () => {
    const site = secret('site2.key', '1111\n');
    const cfg = mergeRunConfig([
      ...entries([['terminal', '7@10.0.0.20'], ['terminal', 'zk:door-1@10.0.0.30'], ['zk-password-file', site], ['zk-poll-sec', '12']]),
      { spec: findFlag('insecure-dev-key')!, value: true, origin: 'command line' },
    ]);
    expect(dialTargets(cfg)).toEqual([
      { id: '7', host: '10.0.0.20', port: 51211 },
      { id: 'door-1', host: '10.0.0.30', port: 4370, protocol: 'zk', key: Buffer.from('1111') },
    ]);
    const o = daemonOptions(cfg, pino({ level: 'silent' }));
    expect(o.drivers?.map((d) => [d.protocol, d.defaultPort])).toEqual([['zk', 4370]]);
  });
});
