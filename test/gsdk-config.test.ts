// The G-SDK flags and the ways a Suprema terminal is added: `--terminal
// gsdk:DEVICEID[@HOST[:PORT]]`, `--gsdk-gateway`, `--gsdk-ca-file` (flag file
// and command line), a reload (SIGHUP), the admin API and `termsync
// terminals add`, on the real daemon with the mock device gateway.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import type { CliIo } from '../src/cli/commands/common.js';
import { FlagError, mergeRunConfig, parseRunConfig } from '../src/cli/flagfile.js';
import { main } from '../src/cli/main.js';
import { findFlag, parseFlagValue, parseTerminal } from '../src/cli/options.js';
import { applyReload, daemonOptions, dialTargets } from '../src/cli/run.js';
import { userFromJson } from '../src/model/user.js';
import { DEVICE_A, DEVICE_B, gatewayCerts, startGsdkSite, type GsdkSite } from './helpers/gsdk-site.js';
import { silent } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'gsdk-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function entries(flags: [string, string][]) {
  return flags.map(([name, raw]) => ({ spec: findFlag(name)!, value: parseFlagValue(findFlag(name)!, raw), origin: 'command line' as const }));
}
const dev = { spec: findFlag('insecure-dev-key')!, value: true, origin: 'command line' as const };

function caFile(): string {
  const p = join(dir, 'gateway-ca.crt');
  writeFileSync(p, gatewayCerts().ca);
  return p;
}

describe('--terminal gsdk:DEVICEID[@HOST[:PORT]], --gsdk-gateway, --gsdk-ca-file', () => {
  it('parses both forms: dialling the gateway (no address) and dialled by it (port 51211 by default)', () => {
    expect(parseTerminal('gsdk:541531029')).toEqual({ id: 'gsdk-541531029', host: '', port: 0, protocol: 'gsdk' });
    expect(parseTerminal('gsdk:7@10.0.0.40')).toEqual({ id: 'gsdk-7', host: '10.0.0.40', port: 51211, protocol: 'gsdk' });
    expect(parseTerminal('gsdk:7@[fd00::7]:51212')).toEqual({ id: 'gsdk-7', host: 'fd00::7', port: 51212, protocol: 'gsdk' });
    for (const bad of ['gsdk:', 'gsdk:0', 'gsdk:abc', 'gsdk:4294967296', 'gsdk:7@', 'gsdk:7@10.0.0.1:99999'])
      expect(() => parseTerminal(bad), bad).toThrow(/gsdk:DEVICEID/);
  });

  it('needs the gateway and its CA; two terminals dialling the gateway are not one address', () => {
    const run = (flags: [string, string][]) => mergeRunConfig([...entries(flags), dev]);
    expect(() => run([['terminal', 'gsdk:7']])).toThrow(/needs --gsdk-gateway/);
    expect(() => run([['terminal', 'gsdk:7'], ['gsdk-gateway', '10.0.0.2:4000']])).toThrow(/needs --gsdk-ca-file/);
    const ok = run([['terminal', 'gsdk:7'], ['terminal', 'gsdk:8'], ['terminal', 'gsdk:9@10.0.0.9'], ['gsdk-gateway', '10.0.0.2:4000'], ['gsdk-ca-file', '/etc/termsync/gw-ca.crt']]);
    expect(ok.gsdkGateway).toEqual({ host: '10.0.0.2', port: 4000 });
    expect(ok.terminals.map((t) => t.id)).toEqual(['gsdk-7', 'gsdk-8', 'gsdk-9']);
    expect(() => run([['terminal', 'gsdk:7'], ['terminal', 'gsdk:7@10.0.0.9'], ['gsdk-gateway', '10.0.0.2:4000'], ['gsdk-ca-file', '/x']])).toThrow(FlagError);
  });

  it('a flag file sets them; termsync run dials gsdk terminals through the gateway with the G-SDK driver', () => {
    const ff = join(dir, 'termsync.flags');
    writeFileSync(ff, `--insecure-dev-key\n--terminal=7@10.0.0.20\n--terminal=gsdk:1001\n--terminal=gsdk:1002@10.1.0.12\n--gsdk-gateway=127.0.0.1:4000\n--gsdk-ca-file=${caFile()}\n`);
    const cfg = parseRunConfig([`--flagfile=${ff}`]);
    expect(dialTargets(cfg)).toEqual([
      { id: '7', host: '10.0.0.20', port: 51211 },
      { id: 'gsdk-1001', host: '127.0.0.1', port: 4000, protocol: 'gsdk' },
      { id: 'gsdk-1002', host: '10.1.0.12', port: 51211, protocol: 'gsdk' },
    ]);
    const o = daemonOptions(cfg, pino({ level: 'silent' }));
    expect(o.drivers?.map((d) => d.protocol)).toEqual(['zk', 'gsdk']);
    for (const d of o.drivers ?? []) (d as { close?: () => void }).close?.();
    // without a gateway there is no G-SDK driver
    expect(daemonOptions(mergeRunConfig([dev]), silent).drivers?.map((d) => d.protocol)).toEqual(['zk']);
  });
});

describe('--max-concurrent-dials', () => {
  it('the flag file sets the start-up dial limit of the terminal manager (default 256); 0 is refused', () => {
    const ff = join(dir, 'dials.flags');
    writeFileSync(ff, `--insecure-dev-key\n--terminal=gsdk:1001\n--gsdk-gateway=127.0.0.1:4000\n--gsdk-ca-file=${caFile()}\n--max-concurrent-dials=16\n`);
    const cfg = parseRunConfig([`--flagfile=${ff}`]);
    expect(cfg.maxConcurrentDials).toBe(16);
    const o = daemonOptions(cfg, silent);
    expect(o.maxConcurrentDials).toBe(16);
    for (const d of o.drivers ?? []) (d as { close?: () => void }).close?.();
    expect(daemonOptions(mergeRunConfig([dev]), silent).maxConcurrentDials).toBe(256);
    expect(parseRunConfig(['--insecure-dev-key', '--max-concurrent-dials', '3']).maxConcurrentDials).toBe(3);
    expect(() => parseRunConfig(['--insecure-dev-key', '--max-concurrent-dials=0'])).toThrow(/max-concurrent-dials/);
  });
});

describe('adding Suprema terminals to a running daemon', () => {
  let site: GsdkSite | undefined;
  let admin: AdminServer | undefined;
  afterEach(async () => {
    await admin?.close();
    admin = undefined;
    await site?.close();
    site = undefined;
  });

  it('a reload (SIGHUP) adds a gsdk terminal and removes one', async () => {
    site = await startGsdkSite({ extraDevices: [1003] });
    await site.allOnline();
    const s = site;
    const gw = { host: '127.0.0.1', port: s.gw.port };
    const base = mergeRunConfig([dev]);
    const before = { ...base, gsdkGateway: gw, gsdkCaFile: caFile(), terminals: [parseTerminal(`gsdk:${DEVICE_A}@10.1.0.11`), parseTerminal(`gsdk:${DEVICE_B}`)] };
    const after = { ...before, terminals: [parseTerminal(`gsdk:${DEVICE_A}@10.1.0.11`), parseTerminal('gsdk:1003')] };
    applyReload(s.daemon, before, after, silent);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === 'gsdk-1003')?.state === 'online', { timeoutMs: 30_000, message: 'gsdk-1003 did not come online' });
    expect(s.daemon.terminals().find((t) => t.id === `gsdk-${DEVICE_B}`)).toBeUndefined();
    // B dialled the gateway: it is out of the accept filter, and the gateway holds no connection for it
    await waitFor(() => !s.gw.acceptFilterIds().includes(DEVICE_B) && !s.gw.connected(DEVICE_B), { timeoutMs: 30_000, message: `the gateway still lets ${DEVICE_B} in` });
    expect(s.gw.acceptFilterIds()).toEqual([1003]);
    expect(s.gw.connected(DEVICE_A)).toBe(true);
    s.dev(`gsdk-${DEVICE_A}`).enroll({ id: '70001', name: 'After the reload' });
    await waitFor(() => s.gw.device(1003).user('70001')?.name === 'After the reload', { timeoutMs: 30_000, message: 'the new terminal did not get the user' });
  }, 120_000);

  it('the admin API and `termsync terminals add` add gsdk terminals; the status list shows the protocol', async () => {
    site = await startGsdkSite({ extraDevices: [1003, 1004] });
    await site.allOnline();
    const s = site;
    s.daemon.putUser(userFromJson({ id: '80001', name: 'Everyone gets me' }));
    admin = await startAdmin({ daemon: s.daemon, host: '127.0.0.1', port: 0, log: silent });
    const base = `http://127.0.0.1:${admin.port}`;
    const post = (body: unknown) => fetch(`${base}/api/terminals`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    // no host: it dials the gateway, and is reached at the gateway's address
    const r = await post({ id: 'gsdk-1003', protocol: 'gsdk' });
    expect(r.status).toBe(201);
    expect(await r.json()).toMatchObject({ id: 'gsdk-1003', protocol: 'gsdk', address: `127.0.0.1:${s.gw.port}` });
    const bad = await post({ id: 'door-9', protocol: 'gsdk' });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/gsdk-DEVICEID/);
    // the CLI, with the terminal's own address: the gateway dials it
    let out = '';
    let err = '';
    const io: CliIo = {
      out: { write: (x: string) => ((out += x), true) },
      err: { write: (x: string) => ((err += x), true) },
      stdin: Readable.from([]),
      env: { TERMSYNC_ADMIN: base },
      cwd: dir,
    };
    expect(await main(['terminals', 'add', 'gsdk-1004', '10.1.0.21', '--protocol', 'gsdk'], io), err).toBe(0);
    expect(out).toMatch(/gsdk-1004.*\(gsdk\)/);
    await waitFor(() => ['gsdk-1003', 'gsdk-1004'].every((id) => s.daemon.terminals().find((t) => t.id === id)?.state === 'online'), { timeoutMs: 30_000, message: 'the added terminals did not come online' });
    await waitFor(() => s.gw.device(1003).user('80001') !== undefined && s.gw.device(1004).user('80001') !== undefined, { timeoutMs: 30_000, message: 'the added terminals did not get the users' });
    const list = (await (await fetch(`${base}/api/terminals`)).json()) as { id: string; protocol: string; state: string }[];
    expect(list.filter((t) => t.protocol === 'gsdk').map((t) => t.id).sort()).toEqual(['gsdk-1001', 'gsdk-1002', 'gsdk-1003', 'gsdk-1004']);
    // DELETE: the gateway stops connecting to the one it dialled (1004), and lets the one that dials it (1003) in no more
    expect(s.gw.asyncConnectionIds()).toEqual([DEVICE_A, 1004]);
    expect(s.gw.acceptFilterIds()).toEqual([DEVICE_B, 1003]);
    for (const id of ['gsdk-1003', 'gsdk-1004']) expect((await fetch(`${base}/api/terminals/${id}`, { method: 'DELETE' })).status).toBeLessThan(300);
    await waitFor(() => !s.gw.connected(1003) && !s.gw.connected(1004), { timeoutMs: 30_000, message: 'the gateway still holds connections for the removed terminals' });
    expect(s.gw.asyncConnectionIds()).toEqual([DEVICE_A]);
    expect(s.gw.acceptFilterIds()).toEqual([DEVICE_B]);
    // the others stay
    expect(s.gw.connected(DEVICE_A) && s.gw.connected(DEVICE_B)).toBe(true);
    // added again: it comes back
    expect((await post({ id: 'gsdk-1003', protocol: 'gsdk' })).status).toBe(201);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === 'gsdk-1003')?.state === 'online', { timeoutMs: 30_000, message: 'gsdk-1003 did not come back' });
    expect(s.gw.acceptFilterIds()).toEqual([DEVICE_B, 1003]);
  }, 120_000);
});
