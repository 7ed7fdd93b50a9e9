// What the device gateway controls, bounded: a gateway (here a small gRPC
// server on the same .proto subset that answers what a broken or hostile
// gateway could) cannot make the driver loop without end, hold a terminal's
// whole user table, take an answer of any size, or lose events by sending a
// realtime stream with a gap while the log is being read.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { EchoMemory } from '../src/drivers/gsdk/echo.js';
import { GatewayClient, MAX_KNOWN_TERMINALS } from '../src/drivers/gsdk/gateway.js';
import { gsdkServices, type EventLog, type UserHdr, type UserInfo } from '../src/drivers/gsdk/proto.js';
import { GSDK_MAX_BATCH, GsdkSession } from '../src/drivers/gsdk/session.js';
import { USER_LIMITS } from '../src/model/limits.js';
import type { DeviceFact, UserListing } from '../src/sync/ports.js';
import { DriverError } from '../src/sync/ports.js';
import { PeerLimitError } from '../src/sync/peer-limit.js';
import { emptyInfo } from '../src/sim/gsdk/device.js';
import { gatewayCerts } from './helpers/gsdk-site.js';
import { waitFor } from './helpers/wait.js';

const DEV = 5;

interface Behaviour {
  status?: (call: grpc.ServerWritableStream<unknown, unknown>) => void;
  getLog?: (req: { startEventID: number; maxNumOfLog: number }) => EventLog[] | Promise<EventLog[]>;
  hdrs?: () => UserHdr[];
  user?: (id: string) => UserInfo;
}

function ev(ID: number, userID = String(1000 + ID)): EventLog {
  return { ID, timestamp: 1_700_000_000, deviceID: DEV, userID, entityID: 0, eventCode: 0x2000, subCode: 0, TNAKey: 0, hasImage: false, changedOnDevice: false };
}

/** A gateway whose answers a test chooses; `realtime` holds the open realtime streams. */
async function oddGateway(b: Behaviour) {
  const s = gsdkServices();
  const server = new grpc.Server();
  const realtime: grpc.ServerWritableStream<unknown, EventLog>[] = [];
  const unary = (fn: (req: any) => unknown) => (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    Promise.resolve()
      .then(() => fn(call.request))
      .then((r) => cb(null, r), (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }));
  };
  server.addService(s.Connect.service, {
    GetDeviceList: unary(() => ({ deviceInfos: [{ deviceID: DEV, status: 2 }] })),
    SubscribeStatus: (call: grpc.ServerWritableStream<unknown, unknown>) => b.status?.(call),
  });
  server.addService(s.Event.service, {
    GetLog: unary(async (r) => ({ events: await (b.getLog ?? (() => []))(r) })),
    EnableMonitoring: unary(() => ({})),
    SubscribeRealtimeLog: (call: grpc.ServerWritableStream<unknown, EventLog>) => void realtime.push(call),
  });
  server.addService(s.User.service, {
    GetList: unary(() => ({ hdrs: (b.hdrs ?? (() => []))() })),
    Get: unary((r: { userIDs: string[] }) => ({ users: r.userIDs.map((id) => (b.user ?? ((x: string) => emptyInfo(x)))(id)) })),
  });
  const c = gatewayCerts();
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: c.cert, private_key: c.key }], false), (e, p) => (e ? rej(e) : res(p))));
  return { server, port, realtime };
}

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

async function sessionOn(b: Behaviour, o: { maxMessageBytes?: number } = {}) {
  const g = await oddGateway(b);
  const gw = new GatewayClient({ host: '127.0.0.1', port: g.port, ca: gatewayCerts().ca, requestTimeoutMs: 10_000, ...o });
  const session = new GsdkSession({ terminalId: `gsdk-${DEV}`, deviceID: DEV, gw, info: null, capability: null, echo: new EchoMemory() });
  cleanup.push(() => {
    void session.close('test over');
    gw.close();
    g.server.forceShutdown();
  });
  return { session, gw, ...g };
}

async function allPages(it: AsyncIterable<UserListing>): Promise<string[][]> {
  const out: string[][] = [];
  for await (const p of it) out.push(p.kind === 'full-read' ? p.users.map((u) => u.id) : []);
  return out;
}

describe('bounds on what the device gateway sends', () => {
  it('a gateway that answers every log probe: the newest event ID stops at 2^32 - 1', async () => {
    const { session } = await sessionOn({ getLog: (r) => [ev(Math.max(1, r.startEventID))] });
    const st = await session.feedState();
    expect(st.firstRef).toBe(1);
    expect(st.lastRef).toBe(0xffff_ffff);
  }, 60_000);

  it('the user list: paged in byte order, no longer than the engine accepts, no ID twice, impossible IDs left out; names and cards cut to a terminal\'s', async () => {
    const ids = Array.from({ length: 70 }, (_, i) => String(1 + i));
    let hdrs: UserHdr[] = [...ids, '', 'x'.repeat(33)].map((ID) => ({ ID, numOfCard: 0, numOfFinger: 0, numOfFace: 0, authGroupID: 0 }));
    const { session } = await sessionOn({
      hdrs: () => hdrs,
      user: (id) => {
        const u = emptyInfo(id);
        u.name = 'N'.repeat(1000);
        u.cards = [{ type: 1, size: 40, data: Buffer.alloc(40, 7) }, { type: 1, size: 32, data: Buffer.concat([Buffer.alloc(28), Buffer.from('00000102', 'hex')]) }];
        return u;
      },
    });
    const pages = await allPages(session.userPages({ maxUsers: 100 }));
    expect(pages.every((p) => p.length <= GSDK_MAX_BATCH)).toBe(true);
    expect(pages.flat()).toEqual([...ids].sort());
    const one = (await session.getUsers(['7']))[0].user!;
    expect(Buffer.byteLength(one.name)).toBeLessThanOrEqual(USER_LIMITS.nameBytes);
    expect(one.cards.map((c) => c.data.toString('hex'))).toEqual(['00000102']);
    // longer than accepted
    const long = await allPages(session.userPages({ maxUsers: 50 })).catch((e) => e);
    expect(long).toBeInstanceOf(PeerLimitError);
    expect(long.limit).toBe('list-total');
    // an ID twice
    hdrs = [...hdrs, hdrs[3]];
    const twice = await allPages(session.userPages({ maxUsers: 100 })).catch((e) => e);
    expect(twice).toBeInstanceOf(PeerLimitError);
    expect(twice.limit).toBe('list-order');
  }, 60_000);

  it('an answer bigger than the client takes fails that call as unreadable; the connection goes on', async () => {
    const hdrs = Array.from({ length: 20_000 }, (_, i) => ({ ID: String(100_000 + i), numOfCard: 1, numOfFinger: 2, numOfFace: 0, authGroupID: 3 }));
    let small = false;
    const { session } = await sessionOn({ hdrs: () => (small ? hdrs.slice(0, 3) : hdrs) }, { maxMessageBytes: 64 * 1024 });
    const err = await allPages(session.userPages({ maxUsers: 1_000_000 })).catch((e) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect(err.reason).toBe('unreadable');
    expect(err.message).toMatch(/larger than max/);
    small = true;
    expect((await allPages(session.userPages({ maxUsers: 1_000_000 }))).flat()).toEqual(['100000', '100001', '100002']);
  }, 60_000);

  it('realtime events with a gap, delivered while the log is read: the missing one is read from the log, nothing is lost', async () => {
    // the log holds 1..5 when the first read starts; 6, 7, 8 are logged during it, and the stream delivers 6 and 8 (7 dropped by the gateway)
    const log = [1, 2, 3, 4, 5].map((i) => ev(i));
    let first = true;
    const g: { realtime?: grpc.ServerWritableStream<unknown, EventLog>[] } = {};
    const { session, realtime } = await sessionOn({
      getLog: async (r) => {
        const answer = log.filter((e) => e.ID >= r.startEventID).slice(0, r.maxNumOfLog || undefined);
        if (first && r.maxNumOfLog > 1) {
          first = false;
          await waitFor(() => g.realtime!.length > 0, { timeoutMs: 10_000, message: 'no realtime stream' });
          log.push(ev(6), ev(7), ev(8));
          for (const s of g.realtime!) {
            s.write(ev(6));
            s.write(ev(8));
          }
          // the stream's events reach the client before this answer
          await new Promise((res) => setTimeout(res, 300));
        }
        return answer;
      },
    });
    g.realtime = realtime;
    const refs: number[] = [];
    await session.watch(0, (_epoch, facts: DeviceFact[]) => {
      for (const f of facts) refs.push(f.ref);
      session.ack(facts[facts.length - 1].ref);
    });
    await waitFor(() => refs.length >= 8, { timeoutMs: 30_000, message: `events handed over: ${refs.join(',')}` });
    expect(refs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  }, 60_000);

  it('a status stream naming ever new terminals: the statuses kept stop at MAX_KNOWN_TERMINALS', async () => {
    const n = MAX_KNOWN_TERMINALS + 500;
    const { gw } = await sessionOn({
      status: (call) => {
        for (let i = 1; i <= n; i++) call.write({ deviceID: 1_000_000 + i, status: 2, timestamp: 1 });
      },
    });
    let seen = 0;
    gw.on('status', () => seen++);
    await gw.watchStatus();
    await waitFor(() => seen >= n - 1, { timeoutMs: 60_000, message: `status changes seen: ${seen}` });
    expect(gw.status.size).toBe(MAX_KNOWN_TERMINALS);
  }, 90_000);
});
