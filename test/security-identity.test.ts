// Device identity for terminals that dial in (issue 14.6): a device ID is
// bound to what authenticated it (its own key, a client certificate, or, with
// the site key, its source address); a second session for an online device ID
// is refused and recorded while the current one keeps running and keeps
// receiving its pushes; a session that does not match the binding is held
// pending and gets nothing until approved; --auto-approve is limited by
// address range and by the rate of new device IDs.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Command, FrameKind, Status, decodePutUsersRequest, decodeUser } from '../src/codec/index.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { parseCidr } from '../src/terminal/identity.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { person } from './helpers/faults.js';
import { startSite, type Site } from './helpers/site.js';
import { makePki, type Pki } from './helpers/tls-certs.js';
import { waitFor } from './helpers/wait.js';

let site: Site | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await site?.close();
  site = undefined;
});

async function listeningSite(extra: Record<string, unknown> = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  site = await startSite({ terminals: 1, daemon: { log, listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, ...extra } });
  return { s: site, port: site.daemon.listenPorts[0], lines };
}

async function fake(port: number, o: { localAddress?: string; deviceId?: number } = {}): Promise<FakeTerminal> {
  const f = await FakeTerminal.connect({ port, key: DEV_COMM_KEY, localAddress: o.localAddress, deviceId: o.deviceId });
  cleanups.push(() => f.close());
  return f;
}

/** user IDs this terminal received in PUT_USERS */
const pushedTo = (f: FakeTerminal) =>
  f.received.filter((x) => x.command === Command.PUT_USERS && x.kind === FrameKind.REQUEST).flatMap((x) => decodePutUsersRequest(x.payload).records.map((r) => decodeUser(r).user.id));

describe('device identity of terminals that dial in', () => {
  it('a second session for an online device ID is refused and recorded; the current one keeps running and keeps its pushes', async () => {
    const { s, port, lines } = await listeningSite();
    const real = await fake(port, { deviceId: 9500 });
    expect(await real.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9500')?.state === 'online');
    await real.waitFrame((x) => x.command === Command.SUBSCRIBE_LOG);
    await s.daemon.engine.idle();

    // the impostor holds the site key and comes from the same address: the strongest case
    const impostor = await fake(port, { deviceId: 9500 });
    expect(await impostor.handshake()).toBe(Status.OK); // the key is right; the session is then refused
    await impostor.closed;
    await waitFor(() => s.daemon.store.listEvents({ type: 'PEER_IDENTITY_CONFLICT', terminalId: '9500' }).length === 1);
    expect(lines.some((l) => l.level === 40 && l.terminal === '9500' && /second session/.test(String(l.msg)))).toBe(true);

    // the real terminal never dropped, and it is the one that receives the server's changes
    expect(real.isClosed).toBe(false);
    expect(s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: '9500' })).toEqual([]);
    s.daemon.putUser(person('after-conflict'));
    await waitFor(() => pushedTo(real).includes('after-conflict'), { message: 'the real terminal did not receive the push' });
    expect(pushedTo(impostor)).toEqual([]);
    expect(s.daemon.store.owedCount('9500')).toBe(0);
  });

  it('a session from outside the bound address is held pending and gets nothing; the bound terminal takes its place; approval re-binds', async () => {
    const { s, port } = await listeningSite();
    const first = await fake(port, { deviceId: 9501, localAddress: '127.0.0.1' });
    expect(await first.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'online');
    expect(JSON.parse(s.daemon.store.getTerminal('9501')!.identity!)).toEqual({ kind: 'address', net: '127.0.0.1/32' });
    first.close();
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'offline');

    // another address with the site key claims the ID while the terminal is away
    const impostor = await fake(port, { deviceId: 9501, localAddress: '127.0.0.9' });
    expect(await impostor.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'pending');
    const [mm] = s.daemon.store.listEvents({ type: 'PEER_IDENTITY_MISMATCH', terminalId: '9501' });
    expect(JSON.parse(mm.detail!).reason).toMatch(/127\.0\.0\.1\/32.*127\.0\.0\.9\/32/);
    s.daemon.putUser(person('while-held'));
    await s.daemon.engine.idle();
    expect(pushedTo(impostor)).toEqual([]);
    expect(impostor.received.some((x) => x.command === Command.SUBSCRIBE_LOG)).toBe(false);
    expect(s.daemon.store.getTerminal('9501')!.address).toMatch(/^127\.0\.0\.1:/); // the row kept the real terminal's data

    // the real terminal returns: it takes the ID back from the held session and catches up
    const back = await fake(port, { deviceId: 9501, localAddress: '127.0.0.1' });
    expect(await back.handshake()).toBe(Status.OK);
    await impostor.closed;
    await waitFor(() => pushedTo(back).includes('while-held'), { message: 'the returning terminal did not catch up' });
    back.close();
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'offline');

    // a terminal that really moved: held, then approved by the administrator, which binds the new address
    const moved = await fake(port, { deviceId: 9501, localAddress: '127.0.0.9' });
    expect(await moved.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'pending');
    expect(s.daemon.approve('9501')).toBe(true);
    expect(JSON.parse(s.daemon.store.getTerminal('9501')!.identity!)).toEqual({ kind: 'address', net: '127.0.0.9/32' });
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9501')?.state === 'online');
  });

  it('a device ID the server dials may not dial in', async () => {
    const { s, port } = await listeningSite();
    const dialled = s.daemon.store.getTerminal('t1')!;
    expect(dialled.deviceId).not.toBeNull();
    const impostor = await fake(port, { deviceId: dialled.deviceId! });
    expect(await impostor.handshake()).toBe(Status.OK);
    await impostor.closed;
    await waitFor(() => s.daemon.store.listEvents({ type: 'PEER_IDENTITY_MISMATCH', terminalId: 't1' }).length === 1);
    expect(s.daemon.terminals().find((t) => t.id === 't1')!.state).toBe('online');
    expect(s.daemon.store.listEvents({ type: 'TERMINAL_OFFLINE', terminalId: 't1' })).toEqual([]);
  });

  it('--auto-approve-from: only terminals from the range are approved, the others are held pending', async () => {
    const { s, port } = await listeningSite({ autoApproveFrom: [parseCidr('127.0.0.0/30')!] });
    const inside = await fake(port, { deviceId: 9601, localAddress: '127.0.0.2' });
    const outside = await fake(port, { deviceId: 9602, localAddress: '127.0.0.7' });
    expect(await inside.handshake()).toBe(Status.OK);
    expect(await outside.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9601')?.state === 'online');
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '9602')?.state === 'pending');
    expect(s.daemon.store.getTerminal('9602')!.approved).toBe(false);
  });

  it('--auto-approve-rate: new device IDs beyond the rate are refused and not recorded', async () => {
    const { s, port, lines } = await listeningSite({ newDeviceRate: { ratePerSec: 1 / 3600, burst: 3 } });
    const before = s.daemon.store.listTerminals().length;
    const statuses: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      const f = await fake(port, { deviceId: 9700 + i });
      await f.handshake();
      // refused sessions are closed right after the handshake
      const closed = await Promise.race([f.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 500))]);
      statuses.push(!closed);
    }
    expect(statuses).toEqual([true, true, true, false, false, false]);
    expect(s.daemon.store.listTerminals().length).toBe(before + 3);
    expect(s.daemon.store.listEvents({ type: 'NEW_DEVICE_REFUSED' }).length).toBe(1); // once a minute, with a count
    expect(lines.filter((l) => /faster than --auto-approve-rate/.test(String(l.msg))).length).toBe(1);
    expect(lines.filter((l) => l.msg === 'terminal session refused').length).toBe(3);
  });
});

describe('a device ID bound to a TLS client certificate', () => {
  let pki: Pki;
  beforeAll(() => {
    pki = makePki();
  });
  afterAll(() => pki?.cleanup());

  it('is bound to the certificate fingerprint; a site-key session without it, even from the same address, is held pending', async () => {
    const { s, port } = await listeningSite({ tlsListen: [{ host: '127.0.0.1', port: 0, tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, requireClientCert: true } }] });
    const tlsPort = s.daemon.listenPorts[1];
    const sim = await Simulator.start({ terminals: 1, deviceIdBase: 3000, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port: tlsPort }, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, reconnect: { minMs: 30, maxMs: 150 } });
    cleanups.push(() => sim.close());
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '3001')?.state === 'online');
    expect(JSON.parse(s.daemon.store.getTerminal('3001')!.identity!)).toEqual({ kind: 'cert', sha256: pki.client.fingerprint.replace(/:/g, '').toLowerCase() });
    await sim.close();
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '3001')?.state === 'offline');

    const impostor = await fake(port, { deviceId: 3001, localAddress: '127.0.0.1' });
    expect(await impostor.handshake()).toBe(Status.OK);
    await waitFor(() => s.daemon.terminals().find((t) => t.id === '3001')?.state === 'pending');
    const [mm] = s.daemon.store.listEvents({ type: 'PEER_IDENTITY_MISMATCH', terminalId: '3001' });
    expect(JSON.parse(mm.detail!).reason).toMatch(/client certificate/);
    s.daemon.putUser(person('cert-bound'));
    await s.daemon.engine.idle();
    expect(pushedTo(impostor)).toEqual([]);
  });
});
