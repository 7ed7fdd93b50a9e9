// A mixed site end to end: the real daemon dials two termsync terminals (the
// termsync simulator) and two ZK terminals (the ZK simulator) over loopback,
// with a real SQLite file. Each test is one behaviour of issue 9 section 4.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mergeRunConfig } from '../src/cli/flagfile.js';
import { findFlag } from '../src/cli/options.js';
import { applyReload } from '../src/cli/run.js';
import { Daemon, type DaemonOptions } from '../src/daemon.js';
import { zkDriver } from '../src/drivers/zk/driver.js';
import { zkToUser, ZK_PARTS } from '../src/drivers/zk/mapping.js';
import { sameForTerminal } from '../src/model/merge.js';
import { hashPin, userFromJson, type UserRecord } from '../src/model/user.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { ZERO_ZK_TIMING, type ZkSimTerminal } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';
import { silent } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const ZK_KEY = '4321';
/** the daemon reads each ZK terminal's table this often here (30 s on a site) */
const POLL_SEC = 0.2;

interface MixedSite {
  ts: Simulator;
  zk: ZkSimulator;
  daemon: Daemon;
  /** terminal IDs on the server: termsync "t1", "t2"; ZK "zk1", "zk2" */
  tsIds: string[];
  zkIds: string[];
  zkTerminal(id: string): ZkSimTerminal;
  /** the server user, held by every terminal in `ids` (ZK terminals: as far as a ZK terminal can hold it) */
  heldEverywhere(userId: string, ids?: string[]): boolean;
  close(): Promise<void>;
}

let site: MixedSite | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

async function startMixedSite(
  o: { uidStart?: number[]; zkKeys?: string[]; daemon?: Partial<DaemonOptions>; before?: (zk: ZkSimulator) => Promise<void> } = {},
): Promise<MixedSite> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-zk-site-'));
  const ts = await Simulator.start({ terminals: 2, commKey: DEV_COMM_KEY, timing: ZERO_TIMING });
  const zk = await ZkSimulator.start({ terminals: 2, password: Number(ZK_KEY), timing: ZERO_ZK_TIMING, uidStart: o.uidStart });
  const tsIds = ['t1', 't2'];
  const zkIds = ['zk1', 'zk2'];
  await o.before?.(zk);
  const options: DaemonOptions = {
    db: join(dir, 'termsync.db'),
    log: silent,
    commKey: DEV_COMM_KEY,
    terminals: [
      ...tsIds.map((id, i) => ({ id, host: '127.0.0.1', port: ts.ports()[i] })),
      ...zkIds.map((id, i) => ({ id, host: '127.0.0.1', port: zk.ports()[i], protocol: 'zk', key: Buffer.from(o.zkKeys?.[i] ?? ZK_KEY) })),
    ],
    drivers: [zkDriver({ pollSec: POLL_SEC, requestTimeoutMs: 5000, log: silent })],
    syncMode: 'all',
    heartbeatSec: 2,
    requestTimeoutMs: 5000,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    dbRetryMs: 50,
    ...o.daemon,
  };
  const daemon = await Daemon.start(options);
  const s: MixedSite = {
    ts,
    zk,
    daemon,
    tsIds,
    zkIds,
    zkTerminal: (id) => zk.terminal(Number(id.slice(2)))!,
    heldEverywhere(userId, ids = [...tsIds, ...zkIds]) {
      const server = daemon.store.getUser(userId);
      if (!server) return false;
      for (const id of ids) {
        if (id.startsWith('zk')) {
          const held = s.zkTerminal(id).userById(userId);
          if (!held || !sameForTerminal(server, zkToUser(held).user, ZK_PARTS)) return false;
        } else {
          const held = ts.terminal(Number(id.slice(1)))!.getUser(userId);
          if (!held || !sameForTerminal(server, held, ZK_PARTS) || held.name !== server.name) return false;
        }
      }
      return true;
    },
    async close() {
      await daemon.stop(1000).catch(() => undefined);
      await ts.close();
      await zk.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return s;
}

async function allOnline(s: MixedSite, ids = [...s.tsIds, ...s.zkIds]) {
  await waitFor(() => ids.every((id) => s.daemon.terminals().find((t) => t.id === id)?.state === 'online'), { timeoutMs: 15_000, message: 'terminals did not come online' });
  await s.daemon.engine.idle();
}

function events(s: MixedSite, type: string) {
  return s.daemon.store.listEvents({ type, limit: 10_000 });
}

const converge = (s: MixedSite, userId: string, ids?: string[]) =>
  waitFor(() => s.heldEverywhere(userId, ids), { timeoutMs: 20_000, message: `user ${userId} did not reach every terminal` });

describe('a mixed site: ZK terminals beside termsync terminals', () => {
  it('an enroll on a ZK terminal reaches the server and every other terminal of both kinds', async () => {
    site = await startMixedSite();
    await allOnline(site);
    await site.zkTerminal('zk1').enroll({ id: '1001', name: 'Ann', card: 987654, password: '42' });
    await converge(site, '1001');
    const server = site.daemon.store.getUser('1001')!;
    expect(server.name).toBe('Ann');
    expect(server.cards.map((c) => [c.type, c.data.toString('hex')])).toEqual([[1, '000f1206']]);
    expect(server.pinHash.equals(hashPin('42'))).toBe(true);
    // the plain password read from zk1 goes on to zk2
    expect(site.zkTerminal('zk2').userById('1001')).toMatchObject({ name: 'Ann', card: 987654, password: '42' });
    expect(site.ts.terminal(1)!.getUser('1001')!.cards[0].data.toString('hex')).toBe('000f1206');
    await waitFor(() => events(site!, 'USER_UPDATE_SUCCESS_DEVICE').some((e) => e.terminalId === 'zk1' && e.userId === '1001'));
  }, 60_000);

  it('an edit on a ZK terminal (no event) is found by the poll and merged: server fields kept, vacant fields filled', async () => {
    site = await startMixedSite();
    await allOnline(site);
    site.daemon.putUser(userFromJson({ id: '2002', name: 'Server Name', accessGroups: [1, 2] }));
    await converge(site, '2002');
    await site.zkTerminal('zk2').edit('2002', { name: 'Device Name', card: 4242, password: '77' });
    await waitFor(() => site!.daemon.store.getUser('2002')!.cards.length === 1, { timeoutMs: 20_000, message: 'the edit was not pulled' });
    const u = site.daemon.store.getUser('2002')!;
    expect(u.name).toBe('Server Name');
    expect(u.accessGroups).toEqual([1, 2]);
    expect(u.cards[0].data.toString('hex')).toBe('00001092');
    expect(u.pinHash.equals(hashPin('77'))).toBe(true);
    // the merged record goes everywhere, the editing terminal included (its name back to the server's)
    await converge(site, '2002');
    expect(site.zkTerminal('zk2').userById('2002')).toMatchObject({ name: 'Server Name', card: 4242, password: '77' });
    expect(site.ts.terminal(2)!.getUser('2002')!.accessGroups).toEqual([1, 2]);
  }, 60_000);

  it('a user enrolled on a termsync terminal reaches the ZK terminals with name and card', async () => {
    site = await startMixedSite();
    await allOnline(site);
    await site.ts.terminals[0].enroll(userFromJson({ id: '3003', name: 'Tom from termsync', cards: [{ type: 1, data: '0001e240' }], accessGroups: [5] }));
    await converge(site, '3003');
    for (const id of site.zkIds) expect(site.zkTerminal(id).userById('3003')).toMatchObject({ name: 'Tom from termsync', card: 123456 });
    expect(site.daemon.store.getUser('3003')!.accessGroups).toEqual([5]);
    // pushes to the ZK terminals do not come back as device changes
    await new Promise((r) => setTimeout(r, 5 * POLL_SEC * 1000));
    await site.daemon.engine.idle();
    expect(events(site, 'USER_UPDATE_SUCCESS_DEVICE').map((e) => e.terminalId)).toEqual(['t1']);
  }, 60_000);

  it('a delete on a ZK terminal keeps the server user', async () => {
    site = await startMixedSite();
    await allOnline(site);
    await site.zkTerminal('zk1').enroll({ id: '4004', name: 'Dee', card: 44 });
    await converge(site, '4004');
    await site.zkTerminal('zk1').remove('4004');
    await waitFor(() => events(site!, 'USER_DELETED_ON_DEVICE').some((e) => e.terminalId === 'zk1' && e.userId === '4004'), { timeoutMs: 20_000, message: 'the delete was not seen' });
    expect(site.daemon.store.getUser('4004')).not.toBeNull();
    expect(site.zkTerminal('zk2').userById('4004')).toBeDefined();
    expect(site.ts.terminal(1)!.getUser('4004')).toBeDefined();
  }, 60_000);

  it('a ZK terminal that was offline catches up when it returns', async () => {
    site = await startMixedSite();
    await allOnline(site);
    const zk2 = site.zkTerminal('zk2');
    zk2.refuse(1500);
    zk2.dropConnections();
    await waitFor(() => site!.daemon.terminals().find((t) => t.id === 'zk2')?.state === 'offline');
    await site.ts.terminals[1].enroll(userFromJson({ id: '5005', name: 'While away', cards: [{ type: 1, data: '00000505' }] }));
    await converge(site, '5005', ['t1', 't2', 'zk1']);
    expect(zk2.userById('5005')).toBeUndefined();
    await converge(site, '5005');
    expect(zk2.userById('5005')).toMatchObject({ name: 'While away', card: 0x505 });
  }, 60_000);

  it('a ZK terminal whose uid numbering differs gets the right users, and keeps its own', async () => {
    // zk2 numbers its users from 500; it holds a user of its own before the daemon starts
    site = await startMixedSite({ uidStart: [1, 500], before: async (zk) => void (await zk.terminals[1].enroll({ id: 'own-2', name: 'Only on zk2 at first', card: 222 })) });
    await allOnline(site);
    await converge(site, 'own-2');
    await site.zkTerminal('zk1').enroll({ id: '6006', name: 'Uid differs', card: 606 });
    await site.zkTerminal('zk1').enroll({ id: '6007', name: 'And another', card: 607 });
    await converge(site, '6006');
    await converge(site, '6007');
    const [a, b] = [site.zkTerminal('zk1'), site.zkTerminal('zk2')];
    expect(b.userById('own-2')).toMatchObject({ uid: 500, name: 'Only on zk2 at first', card: 222 });
    for (const [id, name, card] of [['6006', 'Uid differs', 606], ['6007', 'And another', 607]] as const) {
      expect(a.userById(id)).toMatchObject({ name, card });
      expect(b.userById(id)).toMatchObject({ name, card });
      expect(b.userById(id)!.uid).toBeGreaterThan(500);
    }
    expect(a.userById('6006')!.uid).not.toBe(b.userById('6006')!.uid);
  }, 60_000);

  it('a ZK terminal with another comm key is refused: never online, nothing written to it', async () => {
    site = await startMixedSite({ zkKeys: [ZK_KEY, '9999'] });
    await allOnline(site, ['t1', 't2', 'zk1']);
    await site.zkTerminal('zk1').enroll({ id: '7007', name: 'Eve', card: 77 });
    await converge(site, '7007', ['t1', 't2', 'zk1']);
    await new Promise((r) => setTimeout(r, 500));
    expect(site.daemon.terminals().find((t) => t.id === 'zk2')?.state).not.toBe('online');
    expect(site.zkTerminal('zk2').userCount).toBe(0);
  }, 60_000);

  it('a reloaded configuration (SIGHUP) adds a ZK terminal with its key and removes one', async () => {
    site = await startMixedSite();
    await allOnline(site);
    const keyDir = mkdtempSync(join(tmpdir(), 'zk-reload-'));
    const keyFile = join(keyDir, 'zk.key');
    writeFileSync(keyFile, `${ZK_KEY}\n`, { mode: 0o600 });
    const extra = await ZkSimulator.start({ terminals: 1, password: Number(ZK_KEY), timing: ZERO_ZK_TIMING });
    try {
      const base = mergeRunConfig([{ spec: findFlag('insecure-dev-key')!, value: true, origin: 'command line' }]);
      const zk = (id: string, port: number) => ({ id, host: '127.0.0.1', port, protocol: 'zk' as const });
      const before = { ...base, terminals: [zk('zk1', site.zk.ports()[0])], zkPasswordFile: keyFile };
      const after = { ...before, terminals: [zk('zk3', extra.ports()[0])] };
      applyReload(site.daemon, before, after, silent);
      await waitFor(() => site!.daemon.terminals().find((t) => t.id === 'zk3')?.state === 'online', { message: 'zk3 did not come online' });
      expect(site.daemon.terminals().find((t) => t.id === 'zk1')).toBeUndefined();
      await site.zkTerminal('zk2').enroll({ id: '8008', name: 'After the reload', card: 88 });
      await waitFor(() => extra.terminals[0].userById('8008')?.name === 'After the reload', { timeoutMs: 20_000, message: 'the new ZK terminal did not get the user' });
    } finally {
      await extra.close();
      rmSync(keyDir, { recursive: true, force: true });
    }
  }, 60_000);
});
