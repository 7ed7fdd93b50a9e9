// Statements of PROTOCOL.md 1.1 about what a server does, checked against the real
// daemon over loopback with a hand-driven terminal (test/helpers/fake-terminal.ts):
//   - a HELLO with device ID 0 is refused with ERROR BAD_PAYLOAD and the connection closed (4.1, 2.1);
//   - a malformed answer (an empty GET_INFO OK) ends the session (2.1, 4.4);
//   - a terminal's own PING counts as traffic for the server's heartbeat (4.2).
import { afterEach, describe, expect, it } from 'vitest';
import { Command, FrameKind, Status, encodeFrame, encodeHello, type Frame } from '../src/codec/index.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { FakeTerminal } from './helpers/fake-terminal.js';
import { startSite, type Site } from './helpers/site.js';

let site: Site | undefined;
const fakes: FakeTerminal[] = [];

afterEach(async () => {
  for (const f of fakes.splice(0)) f.close();
  await site?.close();
  site = undefined;
});

async function listening(daemon: Record<string, unknown> = {}): Promise<number> {
  site = await startSite({ terminals: 1, daemon: { listen: [{ host: '127.0.0.1', port: 0 }], autoApprove: true, ...daemon } });
  return site.daemon.listenPorts[0];
}

async function fake(port: number, deviceId: number): Promise<FakeTerminal> {
  const f = await FakeTerminal.connect({ port, key: DEV_COMM_KEY, deviceId });
  fakes.push(f);
  return f;
}

const isRequest = (command: number) => (f: Frame) => f.kind === FrameKind.REQUEST && f.command === command;

describe('PROTOCOL.md 1.1 server rules, against the daemon', () => {
  it('a HELLO with device ID 0 is refused with ERROR BAD_PAYLOAD naming the HELLO, and the connection closes', async () => {
    const port = await listening();
    const f = await fake(port, 4242);
    const payload = encodeHello({
      deviceId: 1,
      minVersion: 1,
      maxVersion: 2,
      maxUsersPerBatch: 50,
      userCapacity: 1000,
      logCapacity: 1000,
      capabilities: 0,
      model: 'fake',
      firmware: '0',
      nonce: Buffer.alloc(16, 7),
    });
    payload.writeUInt32LE(0, 0);
    f.send(encodeFrame({ kind: FrameKind.REQUEST, seq: 1, command: Command.HELLO, payload }));
    const e = await f.waitFrame(() => true);
    expect([e.kind, e.seq, e.command, e.status]).toEqual([FrameKind.ERROR, 1, Command.HELLO, Status.BAD_PAYLOAD]);
    expect(e.payload.toString('utf8')).toMatch(/deviceId/);
    await f.closed;
  });

  it('a malformed answer (GET_INFO OK with an empty payload) ends the session', async () => {
    const port = await listening();
    const f = await fake(port, 4243);
    f.serve = false; // answer by hand
    expect(await f.handshake()).toBe(Status.OK);
    const req = await f.waitFrame(isRequest(Command.GET_INFO));
    f.send({ kind: FrameKind.RESPONSE, seq: req.seq, command: Command.GET_INFO });
    await f.closed; // the daemon closed it (an ERROR frame before is allowed, not required)
    expect(f.isClosed).toBe(true);
    // the daemon itself goes on: its other terminal is still online
    expect(site!.daemon.terminals().find((t) => t.id === 't1')?.state).toBe('online');
  }, 20_000);

  it("a terminal's own PING counts as traffic for the server's heartbeat; silence does not", async () => {
    // heartbeat 2 s: the daemon closes a session that sent nothing for 3 s; request timeout far away
    const port = await listening({ heartbeatSec: 2, requestTimeoutMs: 30_000 });
    const pinger = await fake(port, 4244);
    const silent = await fake(port, 4245);
    for (const f of [pinger, silent]) {
      expect(await f.handshake()).toBe(Status.OK);
      await f.waitFrame(isRequest(Command.SUBSCRIBE_LOG)); // answered: the session reached its steady state
    }
    // from now on neither answers anything (the daemon's PINGs stay unanswered);
    // only the pinger sends its own PING every 500 ms
    pinger.serve = false;
    silent.serve = false;
    const started = Date.now();
    const timer = setInterval(() => pinger.send({ kind: FrameKind.REQUEST, seq: pinger.nextSeq(), command: Command.PING }), 500);
    try {
      await silent.closed;
      const silentAfter = Date.now() - started;
      expect(silentAfter).toBeGreaterThanOrEqual(2500);
      // keep going well past the point where silence ended the other session
      await new Promise((r) => setTimeout(r, 3000));
      expect(pinger.isClosed).toBe(false);
      // and the daemon answered the pinger's PINGs
      expect(pinger.received.filter((x) => x.kind === FrameKind.RESPONSE && x.command === Command.PING).length).toBeGreaterThanOrEqual(8);
    } finally {
      clearInterval(timer);
    }
  }, 30_000);
});
