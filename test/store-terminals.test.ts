import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../src/store/store.js';
import { MONITORING_LABELS, MonitoringEvent } from '../src/store/types.js';
import { openTemp } from './store-fixtures.js';

let t: ReturnType<typeof openTemp>;
let store: Store;
let clock = 0;
beforeEach(() => {
  clock = 5_000;
  t = openTemp({ now: () => clock });
  store = t.store;
});
afterEach(() => t.close());

describe('store: terminals', () => {
  it('creates, patches, lists and deletes terminals', () => {
    const a = store.upsertTerminal({ id: 'lobby', direction: 'dial', address: '10.0.0.5:51211', deviceId: 540001 });
    expect(a).toMatchObject({ id: 'lobby', direction: 'dial', address: '10.0.0.5:51211', deviceId: 540001, state: 'unknown', approved: false, cursor: 0, logEpoch: null, accessGroups: [], createdAt: 5_000 });
    clock = 6_000;
    const b = store.upsertTerminal({ id: 'lobby', direction: 'dial', approved: true, model: 'BS3', firmware: '1.2.0', userCapacity: 50_000, maxBatch: 100, lastSeen: 6_000, state: 'connected' });
    expect(b).toMatchObject({ address: '10.0.0.5:51211', approved: true, model: 'BS3', userCapacity: 50_000, maxBatch: 100, state: 'connected', createdAt: 5_000, updatedAt: 6_000 });
    store.upsertTerminal({ id: 'gate', direction: 'listen', accessGroups: [3, 1] });
    expect(store.updateTerminal('gate', { accessGroups: [2], state: 'pending' })).toMatchObject({ accessGroups: [2], state: 'pending' });
    expect(store.updateTerminal('missing', { state: 'x' })).toBeNull();
    expect(store.listTerminals().map((x) => [x.id, x.accessGroups])).toEqual([
      ['gate', [2]],
      ['lobby', []],
    ]);
    expect(store.getTerminalByDeviceId(540001)?.id).toBe('lobby');
    expect(store.deleteTerminal('gate')).toBe(true);
    expect(store.getTerminal('gate')).toBeNull();
    expect(store.deleteTerminal('gate')).toBe(false);
  });

  it('rejects an invalid direction', () => {
    expect(() => store.upsertTerminal({ id: 'x', direction: 'sideways' as 'dial' })).toThrow(expect.objectContaining({ code: 'CONSTRAINT' }));
  });

  it('keeps the log position: setCursor sets (also back, with a new epoch), advanceCursor only moves forward', () => {
    store.upsertTerminal({ id: 'T', direction: 'listen' });
    expect(store.getCursor('T')).toEqual({ logEpoch: null, cursor: 0 });
    store.setCursor('T', 100, 0xdeadbeef);
    expect(store.advanceCursor('T', 150)).toBe(true);
    expect(store.advanceCursor('T', 120)).toBe(false);
    expect(store.getCursor('T')).toEqual({ logEpoch: 0xdeadbeef, cursor: 150 });
    store.setCursor('T', 0, 42); // the terminal's log was reset
    expect(store.getCursor('T')).toEqual({ logEpoch: 42, cursor: 0 });
    store.setCursor('T', 7);
    expect(store.getCursor('T')).toEqual({ logEpoch: 42, cursor: 7 });
    expect(store.getCursor('nope')).toBeNull();
    expect(() => store.setCursor('nope', 1)).toThrow(expect.objectContaining({ code: 'CONSTRAINT' }));
    expect(() => store.advanceCursor('nope', 1)).toThrow(expect.objectContaining({ code: 'CONSTRAINT' }));
  });
});

describe('store: monitoring events', () => {
  it('appends and lists with after / type / terminal filters and newest-first', () => {
    const id1 = store.appendEvent({ type: MonitoringEvent.USER_UPDATE_SUCCESS_SERVER, terminalId: 'A', userId: '1' });
    const ids = store.appendEvents([
      { type: MonitoringEvent.SERVER_DB_SAVE_FAIL, terminalId: 'B', userId: '2', detail: 'FULL' },
      { type: 'TERMINAL_CONNECTED', terminalId: 'A', time: 123 },
    ]);
    expect(ids).toEqual([id1 + 1, id1 + 2]);
    expect(store.listEvents().map((e) => e.id)).toEqual([id1, id1 + 1, id1 + 2]);
    expect(store.listEvents({ after: id1 }).map((e) => e.id)).toEqual([id1 + 1, id1 + 2]);
    expect(store.listEvents({ type: MonitoringEvent.SERVER_DB_SAVE_FAIL })).toEqual([
      { id: id1 + 1, time: 5_000, type: 'SERVER_DB_SAVE_FAIL', terminalId: 'B', userId: '2', detail: 'FULL' },
    ]);
    expect(store.listEvents({ terminalId: 'A', newestFirst: true }).map((e) => e.time)).toEqual([123, 5_000]);
    expect(store.listEvents({ limit: 1 })).toHaveLength(1);
    expect(MONITORING_LABELS[MonitoringEvent.SERVER_DB_SAVE_FAIL]).toBe('Fail to save to the server DB');
  });

  it('prunes to a bound so the log cannot grow without limit; IDs are never reused', () => {
    for (let i = 0; i < 20; i++) store.appendEvent({ type: 'X', time: i });
    expect(store.pruneEvents({ keepLast: 5 })).toBe(15);
    expect(store.eventCount()).toBe(5);
    expect(store.pruneEvents({ olderThan: 18 })).toBe(3);
    const next = store.appendEvent({ type: 'X' });
    expect(next).toBe(21);
  });
});

describe('store: settings', () => {
  it('get/set/remove; syncMode defaults to server and is validated', () => {
    expect(store.getSetting('k')).toBeNull();
    store.setSetting('k', 'v');
    expect(store.getSetting('k')).toBe('v');
    store.setSetting('k', null);
    expect(store.getSetting('k')).toBeNull();
    expect(store.getSyncMode()).toBe('server');
    store.setSyncMode('all');
    expect(store.getSyncMode()).toBe('all');
    expect(() => store.setSyncMode('sometimes' as 'all')).toThrow(/syncMode must be one of/);
  });
});
