// Independent ZK clients from npm against termsync's ZK simulator:
// node-zklib 1.3.0 and zkteco-js 1.7.2 read users and device info, zkteco-js
// writes and deletes users, node-zklib decodes a realtime punch. Their known defects are worked around here, never in
// the simulator: they frame replies by 'data' events (so the simulator's default
// pause between the frames of a chunked read is kept), have no comm key support
// (terminals without a key), write card numbers as u16, cap user IDs at 9
// characters, and never send REFRESHDATA (sent here by hand).
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { ZkClient } from '../src/drivers/zk/client.js';
import { Cmd } from '../src/drivers/zk/constants.js';
import { DEFAULT_ZK_TIMING, ZERO_ZK_TIMING } from '../src/sim/zk/device.js';
import { ZkSimulator } from '../src/sim/zk/simulator.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const NodeZklib: any = require('node-zklib');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const ZktecoJs: any = require('zkteco-js');

const closers: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

// the clients print progress and errors with console.log/error; keep the test output readable
function quiet(): void {
  const log = console.log;
  const error = console.error;
  console.log = () => undefined;
  console.error = () => undefined;
  closers.push(() => {
    console.log = log;
    console.error = error;
  });
}

async function sim(directDataMax = 0): Promise<ZkSimulator> {
  const s = await ZkSimulator.start({ terminals: 1, timing: { ...ZERO_ZK_TIMING, frameGapMs: DEFAULT_ZK_TIMING.frameGapMs }, directDataMax });
  closers.push(() => s.close());
  return s;
}

async function enrollMany(s: ZkSimulator, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) await s.terminals[0].enroll({ id: String(1000 + i), name: `Person ${i}`, card: 5000 + i, password: String(100 + i) });
}

describe('node-zklib 1.3.0 against the ZK simulator', () => {
  it('reads the device info and every user of a chunked table (1008-byte DATA frames)', async () => {
    quiet();
    const s = await sim();
    await enrollMany(s, 40);
    const zk = new NodeZklib('127.0.0.1', s.ports()[0], 5000, 4000);
    await zk.createSocket();
    closers.push(() => zk.disconnect().catch(() => undefined));
    const info = await zk.getInfo();
    expect(info).toMatchObject({ userCounts: 40, logCapacity: 100_000 });
    const { data, err } = await zk.getUsers();
    expect(err ?? null).toBeNull();
    expect(data).toHaveLength(40);
    expect(data[0]).toMatchObject({ uid: 1, userId: '1001', name: 'Person 1', cardno: 5001, password: '101' });
    expect(data[39]).toMatchObject({ uid: 40, userId: '1040', name: 'Person 40', cardno: 5040 });
  });
});

describe('node-zklib 1.3.0 realtime', () => {
  it('decodes a punch sent as a 32-byte EF_ATTLOG event', async () => {
    quiet();
    const s = await sim();
    const t = s.terminals[0];
    await t.enroll({ id: '4711', name: 'Punch' });
    const zk = new NodeZklib('127.0.0.1', s.ports()[0], 5000, 4000);
    await zk.createSocket();
    closers.push(() => zk.disconnect().catch(() => undefined));
    const registered = new Promise((resolve) => t.once('registered', resolve));
    const got = new Promise<{ userId: string; attTime: Date }>((resolve) => zk.getRealTimeLogs(resolve));
    expect(await registered).toBe(1); // EF_ATTLOG only
    // node-zklib looks at the first frame of each socket read only: let its read of
    // the REG_EVENT reply happen before the punch, as a person at a terminal would
    await new Promise((r) => setTimeout(r, 100));
    await t.punch('4711');
    const ev = await got;
    expect(ev.userId).toBe('4711');
    expect(Math.abs(new Date(ev.attTime).getTime() - Date.now())).toBeLessThan(120_000);
  });
});

describe('zkteco-js 1.7.2 against the ZK simulator', () => {
  async function connect(s: ZkSimulator) {
    const zk = new ZktecoJs('127.0.0.1', s.ports()[0], 5000, 4000);
    await zk.createSocket();
    closers.push(() => zk.disconnect().catch(() => undefined));
    return zk;
  }

  it('reads the device info, serial number, firmware and users', async () => {
    quiet();
    const s = await sim();
    await enrollMany(s, 25);
    const zk = await connect(s);
    expect(await zk.getInfo()).toMatchObject({ userCounts: 25, logCapacity: 100_000 });
    expect(await zk.getSerialNumber()).toBe(s.terminals[0].serialNumber);
    expect(await zk.getPIN()).toBe('23');
    const { data } = await zk.getUsers();
    expect(data).toHaveLength(25);
    expect(data[24]).toMatchObject({ uid: 25, userId: '1025', name: 'Person 25', cardno: 5025 });
  });

  it('writes and deletes users; termsync\'s client sees the result', async () => {
    quiet();
    const s = await sim(4096);
    const zk = await connect(s);
    // zkteco-js writes the card as u16 (cards above 65535 throw) and no REFRESHDATA: send it by hand
    await zk.setUser(7, '7007', 'Grace', '1234', 14, 4242);
    await zk.setUser(8, '8008', 'Heidi', '', 0, 65535);
    await zk.executeCmd(Cmd.REFRESHDATA, '');
    const t = s.terminals[0];
    expect(t.userByUid(7)).toMatchObject({ userId: '7007', name: 'Grace', password: '1234', privilege: 14, card: 4242 });
    expect(t.userByUid(8)).toMatchObject({ userId: '8008', card: 65535 });
    // its deleteUser sends a 72-byte buffer whose first two bytes are the uid
    await zk.deleteUser(8);
    await zk.executeCmd(Cmd.REFRESHDATA, '');
    expect(t.userByUid(8)).toBeUndefined();
    // and an independent reader agrees: termsync's own client
    const c = await ZkClient.connect({ host: '127.0.0.1', port: s.ports()[0], timeoutMs: 5000 });
    closers.push(() => c.close());
    expect((await c.readUsers()).users.map((u) => [u.uid, u.userId, u.name, u.card])).toEqual([[7, '7007', 'Grace', 4242]]);
  });
});
