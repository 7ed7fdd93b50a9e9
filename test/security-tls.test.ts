// TLS on terminal links, both directions, with a PKI made by openssl at test
// time. The daemon dialling a terminal verifies the terminal's certificate
// against the CA and, when configured, its pinned fingerprint; a terminal may
// demand the daemon's client certificate. The daemon's TLS listener may demand
// client certificates from terminals dialling in. Wrong CA, expired
// certificates, a wrong pin and a missing client certificate are all refused
// (never an authenticated session), with the reason in the log; the right
// configuration syncs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, type DaemonOptions } from '../src/daemon.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import type { SimTlsOptions } from '../src/sim/endpoint.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { person } from './helpers/faults.js';
import { makePki, type Pki } from './helpers/tls-certs.js';
import { waitFor } from './helpers/wait.js';

let pki: Pki;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki?.cleanup());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Line = Record<string, unknown> & { msg: string };

async function daemonWith(o: Partial<DaemonOptions>): Promise<{ daemon: Daemon; lines: Line[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-tls-'));
  const lines: Line[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const daemon = await Daemon.start({ db: join(dir, 'termsync.db'), log, commKey: DEV_COMM_KEY, syncMode: 'server', heartbeatSec: 5, reconnectMinMs: 30, reconnectMaxMs: 150, autoApprove: true, ...o });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => daemon.stop(500));
  return { daemon, lines };
}

async function listeningTerminal(tls: SimTlsOptions, deviceIdBase = 1000): Promise<Simulator> {
  const sim = await Simulator.start({ terminals: 1, deviceIdBase, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, tls });
  cleanups.push(() => sim.close());
  return sim;
}

async function diallingTerminal(port: number, tls: SimTlsOptions, deviceIdBase: number): Promise<Simulator> {
  const sim = await Simulator.start({ terminals: 1, deviceIdBase, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, dial: { host: '127.0.0.1', port }, tls, reconnect: { minMs: 30, maxMs: 150 } });
  cleanups.push(() => sim.close());
  return sim;
}

const online = (d: Daemon, id: string) => d.terminals().some((t) => t.id === id && t.state === 'online');

/** The daemon dialled `id` at least three times and every attempt failed for `why`; the terminal never got a session. */
async function expectDialRefused(d: { daemon: Daemon; lines: Line[] }, sim: Simulator, id: string, why: RegExp): Promise<void> {
  const failures = () => d.lines.filter((l) => l.msg === 'reconnect scheduled' && l.terminal === id);
  await waitFor(() => failures().length >= 3, { message: `${id}: the daemon did not keep trying` });
  const reasons = failures().map((l) => String(l.why));
  expect(reasons.every((r) => why.test(r)), reasons.join(' | ')).toBe(true);
  expect(online(d.daemon, id)).toBe(false);
  expect(d.daemon.store.listEvents({ type: 'TERMINAL_ONLINE' })).toEqual([]);
  expect(sim.terminals[0].connected).toBe(false);
  expect(sim.terminals[0].sessions.size).toBe(0);
}

describe('the daemon dials terminals over TLS', () => {
  it('the right CA and the right pin: online and syncing', async () => {
    const sim = await listeningTerminal({ cert: pki.server.cert, key: pki.server.key });
    const d = await daemonWith({ dialTls: { ca: pki.ca }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0], pin: pki.server.fingerprint }] });
    await waitFor(() => online(d.daemon, 'tls1'));
    d.daemon.putUser(person('over-tls'));
    await waitFor(() => sim.terminals[0].getUser('over-tls') !== undefined);
  });

  it('a terminal certificate from another CA is refused', async () => {
    const sim = await listeningTerminal({ cert: pki.serverOtherCa.cert, key: pki.serverOtherCa.key });
    const d = await daemonWith({ dialTls: { ca: pki.ca }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0] }] });
    await expectDialRefused(d, sim, 'tls1', /certificate|self.signed|unable to (get|verify)/i);
  });

  it('an expired terminal certificate is refused', async () => {
    const sim = await listeningTerminal({ cert: pki.serverExpired.cert, key: pki.serverExpired.key });
    const d = await daemonWith({ dialTls: { ca: pki.ca }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0] }] });
    await expectDialRefused(d, sim, 'tls1', /expired/i);
  });

  it('a valid certificate that does not match the pin is refused', async () => {
    const sim = await listeningTerminal({ cert: pki.serverSibling.cert, key: pki.serverSibling.key });
    const d = await daemonWith({ dialTls: { ca: pki.ca }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0], pin: pki.server.fingerprint }] });
    await expectDialRefused(d, sim, 'tls1', /pin mismatch/);
  });

  it('a terminal that demands a client certificate refuses a daemon without one, and accepts the right one', async () => {
    const tls: SimTlsOptions = { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, requestCert: true };
    const sim = await listeningTerminal(tls);
    const without = await daemonWith({ dialTls: { ca: pki.ca }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0] }] });
    await expectDialRefused(without, sim, 'tls1', /certificate|closed|ECONNRESET|socket hang up|alert/i);
    await without.daemon.stop(200);
    const withCert = await daemonWith({ dialTls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, terminals: [{ id: 'tls1', host: '127.0.0.1', port: sim.ports()[0] }] });
    await waitFor(() => online(withCert.daemon, 'tls1'));
  });
});

describe('terminals dial the daemon’s TLS listener with client certificates', () => {
  it('the right client certificate gets in; a missing one, one from another CA and an expired one are refused', async () => {
    const d = await daemonWith({ tlsListen: [{ host: '127.0.0.1', port: 0, tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, requireClientCert: true } }] });
    const port = d.daemon.listenPorts[0];
    const good = await diallingTerminal(port, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, 2000);
    const none = await diallingTerminal(port, { ca: pki.ca }, 3000);
    const other = await diallingTerminal(port, { ca: pki.ca, cert: pki.clientOtherCa.cert, key: pki.clientOtherCa.key }, 4000);
    const expired = await diallingTerminal(port, { ca: pki.ca, cert: pki.clientExpired.cert, key: pki.clientExpired.key }, 5000);
    await waitFor(() => online(d.daemon, '2001'), { message: 'the terminal with the right client certificate did not get in' });
    // each refused terminal kept trying; the listener refused every TLS handshake
    await waitFor(() => d.lines.filter((l) => l.msg === 'TLS handshake refused').length >= 9, { message: 'refused handshakes not logged' });
    const reasons = d.lines.filter((l) => l.msg === 'TLS handshake refused').map((l) => `${String(l.err)} ${String(l.reason)}`);
    expect(reasons.some((r) => /did not return a certificate/i.test(r))).toBe(true); // missing
    expect(reasons.some((r) => /UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(r))).toBe(true); // another CA
    expect(reasons.some((r) => /CERT_HAS_EXPIRED/.test(r))).toBe(true); // expired
    expect(d.daemon.terminals().map((t) => t.id)).toEqual(['2001']);
    for (const s of [none, other, expired]) expect(s.terminals[0].connected).toBe(false);
    d.daemon.putUser(person('mtls'));
    await waitFor(() => good.terminals[0].getUser('mtls') !== undefined);
  });
});
