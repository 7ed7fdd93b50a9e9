// A device user whose record the daemon cannot read is never dropped silently:
// it is recorded durably (pull_failures, USER_PULL_FAILED, a warn line), listed
// by the admin API, and pulled again at the next session start, on a retry
// request and on a reconcile; a later successful pull clears it. Real daemon,
// real simulator over loopback, real SQLite file; the simulator's GET_USERS
// answers are rewritten to carry a record of an unknown formatVersion.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { Command, Status } from '../src/codec/constants.js';
import { decodeGetUsersResponse, encodeGetUsersResponse, type FrameInit } from '../src/codec/index.js';
import { userFromJson, type UserRecord } from '../src/model/user.js';
import type { SimTerminal } from '../src/sim/terminal.js';
import { LATEST_SCHEMA_VERSION } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { startSite, silent, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';
import { tempDir } from './store-fixtures.js';

let site: Site | undefined;
let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  await site?.close();
  site = undefined;
  admin = undefined;
});

const person = (id: string): UserRecord => userFromJson({ id, name: `Secret Name ${id}`, cards: [{ type: 1, data: Buffer.from(`card-${id}`).toString('hex') }] });
/** offset of formatVersion in a user record (after the 32-byte user ID) */
const FORMAT_VERSION_AT = 32;

/** Rewrites t's GET_USERS answers: records of `unreadable` users get formatVersion 9; `notFound` users answer USER_NOT_FOUND. */
function tamper(t: SimTerminal) {
  const unreadable = new Set<string>();
  const notFound = new Set<string>();
  const handle = t.handle.bind(t);
  t.handle = (async (frame, hooks) => {
    const res: FrameInit = await handle(frame, hooks);
    if (frame.command !== Command.GET_USERS || res.status !== Status.OK || !res.payload) return res;
    const ids = (await import('../src/codec/index.js')).decodeGetUsersRequest(frame.payload).userIds;
    const r = decodeGetUsersResponse(res.payload);
    r.results = r.results.map((x, k) => {
      if (notFound.has(ids[k])) return { status: Status.USER_NOT_FOUND, record: Buffer.alloc(0) };
      if (!unreadable.has(ids[k]) || x.status !== Status.OK) return x;
      const rec = Buffer.from(x.record);
      rec[FORMAT_VERSION_AT] = 9;
      return { status: x.status, record: rec };
    });
    return { ...res, payload: encodeGetUsersResponse(r) };
  }) as SimTerminal['handle'];
  return { unreadable, notFound };
}

/** startSite waits for idle, which can come before a terminal's first-contact reconcile was scheduled */
async function quiet(s: Site): Promise<void> {
  await waitFor(() => s.ids.every((id) => s.daemon.store.listEvents({ type: 'RECONCILE', terminalId: id }).length > 0));
  await s.daemon.engine.idle();
}

async function api(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`http://127.0.0.1:${admin!.port}${p}`, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}

describe('unreadable device users', () => {
  it('are recorded with the reason, acknowledged only with the failure row, listed, and pulled again on retry', async () => {
    site = await startSite({ terminals: 2 });
    await quiet(site);
    admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: null, log: silent });
    const [t1, t2] = site.sim.terminals;
    const fx = tamper(t1);
    fx.unreadable.add('bad1');
    await t1.enroll(person('bad1'));
    await t1.enroll(person('good1'));
    await site.waitConverged({ users: ['good1'] });
    await site.daemon.engine.idle();
    const store = site.daemon.store;
    // not on the server, but owed: a durable row with the reason, a monitoring event
    expect(store.getUser('bad1')).toBeNull();
    const rows = store.listPullFailures({ terminalId: 't1' });
    expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ terminalId: 't1', userId: 'bad1', attempts: 1 });
    expect(rows[0].reason).toMatch(/formatVersion 9/);
    const ev = store.listEvents({ type: 'USER_PULL_FAILED' });
    expect(ev.map((e) => [e.terminalId, e.userId])).toEqual([['t1', 'bad1']]);
    expect(JSON.parse(ev[0].detail!)).toMatchObject({ status: expect.any(String), reason: expect.stringMatching(/formatVersion 9/) });
    expect(ev[0].detail).not.toContain('Secret Name');
    // the cursor passed both events: they were acknowledged with the failure row committed
    expect(store.getCursor('t1')!.cursor).toBe(t1.ring.lastEventId);
    // the admin API lists it
    const listed = await api('GET', '/api/pull-failures?terminal=t1');
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([expect.objectContaining({ terminalId: 't1', userId: 'bad1', reason: expect.stringMatching(/formatVersion/) })]);
    expect((await api('GET', '/api/status')).body.pullFailures).toBe(1);
    expect((await api('POST', '/api/pull-failures/retry', {})).status).toBe(400);
    expect((await api('POST', '/api/pull-failures/retry', { terminalId: 'nope' })).status).toBe(404);

    // still unreadable: a retry counts another attempt and keeps the row
    expect((await api('POST', '/api/pull-failures/retry', { terminalId: 't1' })).status).toBe(202);
    await waitFor(() => store.listPullFailures({ terminalId: 't1' })[0]?.attempts === 2);
    // a resync (reconcile by user list) pulls it again too: once, not twice
    expect(site.daemon.resync('t1')).toBe(true);
    await waitFor(() => store.listPullFailures({ terminalId: 't1' })[0]?.attempts === 3);
    await site.daemon.engine.idle();
    expect(store.listPullFailures({ terminalId: 't1' })[0].attempts).toBe(3);
    // "after an upgrade" the record reads: the retry brings the user in and clears the row
    fx.unreadable.clear();
    const r = await api('POST', '/api/pull-failures/retry', { terminalId: 't1', userId: 'bad1' });
    expect(r).toMatchObject({ status: 202, body: { queued: 1 } });
    await site.waitConverged({ users: ['bad1', 'good1'] });
    expect(store.getUser('bad1')!.name).toBe('Secret Name bad1');
    expect(t2.getUser('bad1')).toBeDefined();
    expect(store.listPullFailures()).toEqual([]);
  });

  it('are pulled again at the next session start; a user deleted before the pull (USER_NOT_FOUND) is no failure', async () => {
    site = await startSite({ terminals: 2 });
    await quiet(site);
    const [t1] = site.sim.terminals;
    const fx = tamper(t1);
    fx.unreadable.add('bad2');
    fx.notFound.add('gone2');
    await t1.enroll(person('bad2'));
    await t1.enroll(person('gone2'));
    await t1.enroll(person('good2'));
    await site.waitConverged({ users: ['good2'] });
    await site.daemon.engine.idle();
    const store = site.daemon.store;
    expect(store.listPullFailures().map((f) => f.userId)).toEqual(['bad2']);
    expect(store.getUser('gone2')).toBeNull();
    expect(store.listEvents({ type: 'USER_PULL_FAILED' }).map((e) => e.userId)).toEqual(['bad2']);
    // the daemon restarts (after an upgrade, say) and the terminal now answers readably
    await site.daemon.stop(1000);
    fx.unreadable.clear();
    await site.startDaemon();
    await site.waitConverged({ users: ['bad2', 'good2'] });
    await waitFor(() => site!.daemon.store.listPullFailures().length === 0);
  });
});

describe('migration 2', () => {
  it('a schema-1 database gains pull_failures; users, cursors and owed pushes are kept', () => {
    const { dir, cleanup } = tempDir();
    try {
      const file = path.join(dir, 'v1.db');
      fs.copyFileSync(path.join(import.meta.dirname, '..', 'fixtures', 'db', 'schema-v1.db'), file);
      fs.chmodSync(file, 0o600);
      const s = Store.open(file);
      try {
        expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
        expect(s.userCount()).toBe(5);
        expect(s.getUser('3')).not.toBeNull();
        expect(s.getCursor('t1')).toEqual({ logEpoch: 7, cursor: 42 });
        expect(s.getCursor('t2')).toEqual({ logEpoch: 3, cursor: 17 });
        expect(s.outboxCount('t2')).toBe(3);
        expect(s.take('t2', 10).map((i) => i.userId).sort()).toEqual(['1', '2', '3']);
        expect(s.getSyncMode()).toBe('all');
        expect(s.listPullFailures()).toEqual([]);
        s.recordPullFailure('t1', '9', 'formatVersion 9');
        s.recordPullFailure('t1', '9', 'formatVersion 10');
        expect(s.listPullFailures({ terminalId: 't1' })).toEqual([expect.objectContaining({ userId: '9', reason: 'formatVersion 10', attempts: 2 })]);
        expect(s.clearPullFailure('t1', '9')).toBe(true);
        expect(s.listPullFailures()).toEqual([]);
      } finally {
        s.close();
      }
    } finally {
      cleanup();
    }
  });
});
