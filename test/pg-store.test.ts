// The SiteStore contract (test/helpers/store-contract.ts) for the PostgreSQL
// backend, against a real PostgreSQL: each test gets a fresh database.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersEqual } from '../src/model/merge.js';
import { emptyUser, hashPin, type UserRecord } from '../src/model/user.js';
import { PgSiteStore } from '../src/store/pg/backend.js';
import { describeStoreContract } from './helpers/store-contract.js';
import { findPostgres, startPostgres, type TestPostgres } from './helpers/postgres.js';

const { reason } = findPostgres();
if (reason) process.stderr.write(`test/pg-store.test.ts SKIPPED: ${reason}\n`);

describe.skipIf(reason !== null)(`PostgreSQL backend${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  describeStoreContract('postgres', async () => {
    const store = await PgSiteStore.open({ url: await server.createDatabase() });
    return { store, close: () => store.close() };
  });

  function fullUser(id: string): UserRecord {
    const u = emptyUser(id);
    u.name = `Full ${id}`;
    u.phrase = 'open sesame';
    u.authGroupId = 3;
    u.setting = { startTime: 1_700_000_000, endTime: 1_800_000_000, fingerAuthMode: 1, cardAuthMode: 2, idAuthMode: 3, securityLevel: 4 };
    u.pinHash = hashPin('4711');
    u.photo = Buffer.from('a tiny photo');
    u.cards = [{ type: 1, data: Buffer.from(`c1-${id}`) }, { type: 2, data: Buffer.from(`c2-${id}`) }];
    u.fingers = [{ index: 3, flag: 1, templates: [Buffer.alloc(384, 7), Buffer.alloc(384, 9)] }];
    u.faces = [{ index: 0, flag: 0, data: Buffer.from('face') }];
    u.accessGroups = [5, 2, 9];
    u.jobCodes = [{ code: 11, label: 'night' }, { code: 4, label: 'day' }];
    return u;
  }

  it('every part of a user survives the round trip, written alone (admin) or in a batch (ingest), in its order', async () => {
    const store = await PgSiteStore.open({ url: await server.createDatabase(), listen: false });
    try {
      await store.upsertTerminal({ id: 'T', direction: 'dial' });
      const a = fullUser('admin-1');
      await store.putUser(a);
      expect(usersEqual((await store.getUser('admin-1'))!, a)).toBe(true);
      const batch = ['d1', 'd2', 'd3'].map(fullUser);
      batch[1]!.accessGroups = [];
      const results = await store.ingest({ terminalId: 'T', merges: batch.map((user, i) => ({ user, ctx: { terminalId: 'T', eventId: i + 1 } })), advance: null });
      expect(results.map((r) => r.created)).toEqual([true, true, true]);
      for (const u of batch) expect(usersEqual((await store.getUser(u.id))!, u)).toBe(true);
      // a device that holds the user with fewer parts fills nothing and changes nothing
      const less = fullUser('d1');
      less.cards = [];
      const [again] = await store.ingest({ terminalId: 'T', merges: [{ user: less, ctx: { terminalId: 'T', eventId: 9 } }], advance: null });
      expect(again).toMatchObject({ changed: false, differsFromDevice: true });
      const walked = await store.walkUsers({ limit: 10 });
      expect(walked.map((w) => w.user.id)).toEqual(['admin-1', 'd1', 'd2', 'd3']);
      expect(walked.every((w, i) => usersEqual(w.user, [a, ...batch][i]!))).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('a terminal waiting for approval is owed nothing from the feed and holds back no tombstone (as on SQLite)', async () => {
    const store = await PgSiteStore.open({ url: await server.createDatabase(), listen: false });
    try {
      await store.upsertTerminal({ id: 'ok', direction: 'dial', approved: true });
      await store.upsertTerminal({ id: 'waiting', direction: 'listen', approved: false });
      await store.putUser(emptyUser('gone'));
      await store.deleteUser('gone');
      expect(await store.owedCounts()).toEqual({ total: 1, byTerminal: { ok: 1 } });
      expect(await store.owedCount('waiting')).toBe(0);
      await store.setFeedCursor('ok', await store.feedHead());
      expect(await store.collectTombstones()).toBe(1);
    } finally {
      await store.close();
    }
  });
});
