// The G-SDK driver's parts on their own: the field mapping, echo memory, TLS
// trust of the gateway, and decoding what a newer gateway sends (fields the
// .proto subset does not name are skipped).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, describe, expect, it } from 'vitest';
import { gsdkDriver } from '../src/drivers/gsdk/driver.js';
import { EchoMemory, EXPECT_MS } from '../src/drivers/gsdk/echo.js';
import { cardFromGsdk, cardToGsdk, GSDK_PARTS, gsdkToUser, userToGsdk } from '../src/drivers/gsdk/mapping.js';
import { gsdkServices, LOADER_OPTIONS, type EventLog, type UserInfo } from '../src/drivers/gsdk/proto.js';
import { fitForTerminal } from '../src/model/parts.js';
import { sameForTerminal } from '../src/model/merge.js';
import { hashPin, userFromJson } from '../src/model/user.js';
import { DriverError } from '../src/sync/ports.js';
import { devicePinHash, normalizeInfo } from '../src/sim/gsdk/device.js';
import { GsdkSimGateway } from '../src/sim/gsdk/gateway.js';
import { gatewayCerts } from './helpers/gsdk-site.js';

const hex = (n: number, fill: number) => Buffer.alloc(n, fill).toString('hex');

describe('mapping a termsync user to a Suprema terminal and back', () => {
  const full = userFromJson({
    id: '123456',
    name: 'Zoë Ünicode-Name',
    startTime: 1_700_000_000,
    endTime: 1_800_000_000,
    securityLevel: 3,
    fingerAuthMode: 1,
    cardAuthMode: 2,
    idAuthMode: 3,
    authGroupId: 4,
    cards: [{ type: 1, data: '000f1206' }, { type: 2, data: 'a1b2c3d4e5f60718' }],
    fingers: [{ index: 2, flag: 1, templates: [hex(384, 0x11), hex(384, 0x22)] }],
    accessGroups: [1, 2, 3],
    photo: 'ffd8ffe0',
  });

  it('what the terminal stores reads back as what the server record fits to', () => {
    const { info, dropped } = userToGsdk(full, { alphanumericIds: false });
    expect(dropped).toEqual([]);
    expect(info.cards.every((c) => c.size === 32 && c.data.length === 32)).toBe(true);
    // as the gateway hands it back (every field present, cards 32 bytes)
    const back = gsdkToUser(normalizeInfo(info));
    expect(back).toEqual(fitForTerminal(full, GSDK_PARTS));
    expect(sameForTerminal(full, back, GSDK_PARTS)).toBe(true);
  });

  it('the PIN, faces, job codes, phrase and the disabled bit do not go; the PIN read back is the terminal\'s hash and is not taken', () => {
    const u = userFromJson({ id: '77', name: 'P', faces: [{ index: 0, data: 'aa' }], jobCodes: [{ code: 1, label: 'x' }], phrase: 'hi', disabled: true });
    u.pinHash = hashPin('1234');
    const { info, dropped } = userToGsdk(u, { alphanumericIds: false });
    expect(dropped.sort()).toEqual(['disabled', 'faces', 'jobCodes', 'phrase', 'pin']);
    expect(info.PIN.length).toBe(0);
    const stored: UserInfo = { ...normalizeInfo(info), PIN: devicePinHash(Buffer.from('1234')) };
    const back = gsdkToUser(stored);
    expect(back.pinHash.length).toBe(0);
    // the merge sees no difference in what the terminal cannot carry
    expect(sameForTerminal(u, back, GSDK_PARTS)).toBe(true);
  });

  it('cards: right-aligned in 32 bytes; read back without leading zeros, at least 4 bytes kept', () => {
    expect(cardToGsdk({ type: 1, data: Buffer.from('0102', 'hex') }).data.toString('hex')).toBe('00'.repeat(30) + '0102');
    expect(cardFromGsdk(cardToGsdk({ type: 1, data: Buffer.from('0102', 'hex') })).data.toString('hex')).toBe('00000102');
    expect(cardFromGsdk(cardToGsdk({ type: 1, data: Buffer.from('000f1206', 'hex') })).data.toString('hex')).toBe('000f1206');
    const long = Buffer.alloc(32, 0xab);
    expect(cardFromGsdk(cardToGsdk({ type: 10, data: long })).data.equals(long)).toBe(true);
  });

  it('cards shorter than 4 bytes or with leading zeros: the terminal\'s copy compares equal to the server\'s, a different card does not', () => {
    const server = userFromJson({ id: '5001', name: 'Short cards', cards: [{ type: 1, data: '0102' }, { type: 1, data: '00' }, { type: 2, data: '0000000000001234' }, { type: 1, data: 'ab' }] });
    const back = gsdkToUser(normalizeInfo(userToGsdk(server, { alphanumericIds: false }).info));
    // as the terminal reads them back: padded to 4 bytes, leading zeros stripped, the card of zeros gone
    expect(back.cards.map((c) => c.data.toString('hex'))).toEqual(['00000102', '00001234', '000000ab']);
    expect(back).toEqual(fitForTerminal(server, GSDK_PARTS));
    expect(sameForTerminal(server, back, GSDK_PARTS)).toBe(true);
    // and the other way: a record whose cards the terminal padded equals the server's short form
    expect(sameForTerminal(back, server, GSDK_PARTS)).toBe(true);
    const other = userFromJson({ id: '5001', name: 'Short cards', cards: [{ type: 1, data: '0103' }, { type: 2, data: '1234' }, { type: 1, data: 'ab' }] });
    expect(sameForTerminal(other, back, GSDK_PARTS)).toBe(false);
    // a terminal that keeps card data as given still sees 0102 and 00000102 as different cards
    expect(sameForTerminal(server, back, { ...GSDK_PARTS, cards: { max: 8, maxDataBytes: 32, typed: true } })).toBe(false);
  });

  it('user IDs: numbers unless the terminal takes alphanumeric IDs', () => {
    expect(() => userToGsdk(userFromJson({ id: 'ann' }), { alphanumericIds: false })).toThrow(/not a number/);
    expect(() => userToGsdk(userFromJson({ id: '0' }), { alphanumericIds: false })).toThrow(/not a number/);
    expect(() => userToGsdk(userFromJson({ id: '4294967296' }), { alphanumericIds: false })).toThrow(/above/);
    expect(userToGsdk(userFromJson({ id: 'ann-7' }), { alphanumericIds: true }).info.hdr.ID).toBe('ann-7');
  });
});

describe('echo memory', () => {
  it('an expected write is taken as ours once; a write it never logged lapses', () => {
    let now = 0;
    const m = new EchoMemory(() => now);
    m.expect('t', 'u1', 'put');
    expect(m.classify('t', 'u1', 'put', false)).toBe('server');
    expect(m.classify('t', 'u1', 'put', false)).toBe('device');
    m.expect('t', 'u2', 'delete');
    expect(m.classify('t', 'u2', 'put', false)).toBe('device');
    expect(m.classify('t', 'u2', 'delete', false)).toBe('server');
    m.expect('t', 'u3', 'put');
    now += EXPECT_MS + 1;
    expect(m.classify('t', 'u3', 'put', false)).toBe('device');
    m.expect('t', 'u4', 'put');
    m.forget('t', 'u4', 'put');
    expect(m.pendingCount()).toBe(0);
  });

  it('once the gateway sends changedOnDevice, an event without it is ours', () => {
    const m = new EchoMemory();
    expect(m.classify('t', 'u', 'put', true)).toBe('device');
    expect(m.flagSeen).toBe(true);
    expect(m.classify('t', 'u', 'put', false)).toBe('server');
  });
});

describe('the gateway connection', () => {
  let gw: GsdkSimGateway | undefined;
  afterAll(async () => gw?.close());

  it('refuses a gateway whose certificate does not chain to --gsdk-ca-file; dials with the right CA', async () => {
    const c = gatewayCerts();
    gw = await GsdkSimGateway.start({ devices: [{ deviceID: 5 }], cert: c.cert, key: c.key });
    const wrong = gsdkDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: c.otherCa, requestTimeoutMs: 2000 });
    const err = await wrong.dial({ terminalId: 'gsdk-5', host: '127.0.0.1', port: gw.port, key: Buffer.alloc(0) }).catch((e) => e);
    wrong.close();
    expect(err).toBeInstanceOf(DriverError);
    expect(err.reason).toBe('transport');
    expect(gw.connected(5)).toBe(false);
    const right = gsdkDriver({ gateway: { host: '127.0.0.1', port: gw.port }, ca: c.ca, requestTimeoutMs: 2000 });
    const s = await right.dial({ terminalId: 'gsdk-5', host: '127.0.0.1', port: gw.port, key: Buffer.alloc(0) });
    expect(s.identity).toMatchObject({ protocol: 'gsdk', deviceId: 5, model: 'BioStation 2 (mock)' });
    expect(s.capabilities).toMatchObject({ eventLog: 'cursor', realtime: 'all-changes', listing: 'full-read' });
    // the feed's bounds come from GetLog probes
    for (let i = 0; i < 37; i++) gw.device(5).punch(String(i + 1));
    const lists = gw.stats.getListCalls;
    expect(await s.feedState()).toMatchObject({ firstRef: 1, lastRef: 37 });
    // and without listing every user of the terminal
    expect(gw.stats.getListCalls).toBe(lists);
    const bad = await right.dial({ terminalId: 'door-5', host: '127.0.0.1', port: gw.port, key: Buffer.alloc(0) }).catch((e) => e);
    expect(bad.reason).toBe('invalid');
    await s.close('test over');
    right.close();
  }, 60_000);

  it('skips fields a newer gateway sends that the subset does not name', async () => {
    // a "newer gateway": EventLog and UserInfo with fields termsync's subset lacks
    const dir = mkdtempSync(join(tmpdir(), 'gsdk-newer-'));
    try {
      writeFileSync(
        join(dir, 'newer.proto'),
        `syntax = "proto3";
package event;
service Event { rpc GetLog(GetLogRequest) returns (GetLogResponse); }
message CardData { bytes data = 1; uint32 size = 2; }
message EventLog { uint32 ID = 1; uint32 timestamp = 2; uint32 deviceID = 3; string userID = 4; uint32 eventCode = 6;
  bool changedOnDevice = 10; float temperature = 11; CardData cardData = 12; string futureText = 40; repeated uint64 futureList = 41; }
message GetLogRequest { uint32 deviceID = 1; uint32 startEventID = 2; uint32 maxNumOfLog = 3; string futureFilter = 9; }
message GetLogResponse { repeated EventLog events = 1; uint64 futureTotal = 7; }
`,
      );
      const newer = grpc.loadPackageDefinition(protoLoader.loadSync(join(dir, 'newer.proto'), LOADER_OPTIONS)) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      const c = gatewayCerts();
      const server = new grpc.Server();
      server.addService(newer.event.Event.service, {
        GetLog: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
          cb(null, {
            events: [{ ID: 9, timestamp: 1_700_000_000, deviceID: 5, userID: '42', eventCode: 0x2200, changedOnDevice: true, temperature: 36.6, cardData: { data: Buffer.from('abcd', 'hex'), size: 32 }, futureText: 'x'.repeat(100), futureList: [1, 2, 3] }],
            futureTotal: 123,
          }),
      });
      const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: c.cert, private_key: c.key }], false), (e, p) => (e ? rej(e) : res(p))));
      const client = new (gsdkServices().Event)(`127.0.0.1:${port}`, grpc.credentials.createSsl(c.ca)) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      const r = await new Promise<{ events: EventLog[] }>((res, rej) => client.GetLog({ deviceID: 5, startEventID: 1, maxNumOfLog: 0 }, (e: Error | null, v: { events: EventLog[] }) => (e ? rej(e) : res(v))));
      client.close();
      server.forceShutdown();
      expect(r.events).toHaveLength(1);
      expect(r.events[0]).toMatchObject({ ID: 9, deviceID: 5, userID: '42', eventCode: 0x2200, changedOnDevice: true });
      expect(Object.keys(r.events[0])).not.toContain('temperature');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
