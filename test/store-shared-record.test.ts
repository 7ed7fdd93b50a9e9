// The records the push lanes share (Store.readFeed): a change this connection
// merged is shared as written, not read back from SQLite; it must be exactly
// the record a read of SQLite returns, and a rolled-back merge must leave
// nothing behind.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserFlag } from '../src/codec/constants.js';
import { emptyUser, type UserRecord } from '../src/model/user.js';
import { Store } from '../src/store/store.js';
import { deviceUser, fullUser, openTemp } from './store-fixtures.js';

let t: ReturnType<typeof openTemp>;
let store: Store;
beforeEach(() => {
  t = openTemp();
  store = t.store;
  for (const id of ['T1', 'T2']) store.upsertTerminal({ id, direction: 'dial', approved: true });
});
afterEach(() => t.close());

/** what T2's push lane reads for `id` (the shared record) */
function pushed(id: string): UserRecord | null {
  const b = store.readFeed('T2', { after: 0, limit: 100 });
  return b.entries.find((e) => e.userId === id)?.user ?? null;
}

describe('store: shared records of merged changes', () => {
  it('are exactly what SQLite holds: new users, server fields kept, bare users, flag bits dropped', () => {
    const d = deviceUser('u1', 3);
    store.mergeDeviceUsers([{ user: d, ctx: { terminalId: 'T1', eventId: 1 } }]);
    const a = pushed('u1');
    expect(a).toEqual(store.getUser('u1'));
    // not the device's record or its buffers: the lanes never see a later change to them
    expect(a).not.toBe(d);
    expect(a!.fingers[0].templates[0]).not.toBe(d.fingers[0].templates[0]);
    expect(a!.flag).toBe(0);

    // the server's fields win; the device fills only what is vacant
    const edit = deviceUser('u1', 4);
    edit.name = '';
    edit.jobCodes = [];
    store.mergeDeviceUsers([{ user: { ...edit, faces: [] }, ctx: { terminalId: 'T1', eventId: 2 } }]);
    expect(pushed('u1')).toEqual(store.getUser('u1'));

    // a user with nothing but an ID, and one disabled with a PIN of zeros
    const bare = emptyUser('u2');
    bare.flag = UserFlag.UPDATED_ON_DEVICE;
    const zero = fullUser('u3', 5);
    zero.pinHash = Buffer.alloc(32);
    zero.photo = Buffer.alloc(0);
    store.mergeDeviceUsers([
      { user: bare, ctx: { terminalId: 'T1', eventId: 3 } },
      { user: zero, ctx: { terminalId: 'T1', eventId: 4 } },
    ]);
    expect(pushed('u2')).toEqual(store.getUser('u2'));
    expect(pushed('u3')).toEqual(store.getUser('u3'));
  });

  it('a rolled-back merge shares nothing: the next change at the same feed number is served as written', () => {
    const head = store.feedHead();
    const first = fullUser('u9', 1);
    // the unknown terminal's log position fails the transaction after the merge ran
    expect(() => store.ingest({ terminalId: 'nope', merges: [{ user: first, ctx: { terminalId: 'nope', eventId: 1 } }], advance: { logEpoch: 1, cursor: 5 } })).toThrow();
    expect(store.getUser('u9')).toBeNull();
    const second = fullUser('u9', 2);
    store.mergeDeviceUsers([{ user: second, ctx: { terminalId: 'T1', eventId: 1 } }]);
    expect(store.feedHead()).toBe(head + 1);
    const p = pushed('u9');
    expect(p?.name).toBe(second.name);
    expect(p).toEqual(store.getUser('u9'));
  });
});
