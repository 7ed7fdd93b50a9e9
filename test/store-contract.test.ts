// The SiteStore contract (test/helpers/store-contract.ts) for the SQLite backend.
import { describe, expect, it } from 'vitest';
import { SqliteSiteStore } from '../src/store/sqlite-backend.js';
import { describeStoreContract } from './helpers/store-contract.js';
import { openTemp } from './store-fixtures.js';

describeStoreContract('sqlite', async () => {
  const t = openTemp();
  return { store: new SqliteSiteStore(t.store), close: async () => t.close() };
});

// SQLite: the events of a push batch (written in one statement) come out one per user, in order
describe('sqlite: events of a push batch', () => {
  it('one USER_UPDATE_SUCCESS_SERVER per user, ascending IDs in the batch order, beside events with details', () => {
    const t = openTemp();
    try {
      const s = t.store;
      s.upsertTerminal({ id: 'A', direction: 'dial', approved: true });
      const ids = Array.from({ length: 20 }, (_, i) => `u${19 - i}`);
      s.recordPush({
        terminalId: 'A',
        events: [
          ...ids.map((userId) => ({ type: 'USER_UPDATE_SUCCESS_SERVER', terminalId: 'A', userId })),
          { type: 'PUSH_FAILED', terminalId: 'A', userId: 'x', detail: '{"status":"full"}' },
        ],
      });
      const evs = s.listEvents({ limit: 100 });
      expect(evs.map((e) => e.userId)).toEqual([...ids, 'x']);
      expect(evs.map((e) => e.type)).toEqual([...ids.map(() => 'USER_UPDATE_SUCCESS_SERVER'), 'PUSH_FAILED']);
      expect(evs[20].detail).toBe('{"status":"full"}');
      for (let i = 1; i < evs.length; i++) expect(evs[i].id).toBeGreaterThan(evs[i - 1].id);
      expect(evs.every((e) => e.terminalId === 'A' && e.time > 0)).toBe(true);
    } finally {
      t.close();
    }
  });
});
