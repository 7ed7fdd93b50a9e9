// WAL checkpoints run in a worker thread (the daemon's store): the WAL must still
// be recycled, or it would grow without bound once automatic checkpoints are off.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { userFromJson } from '../src/model/user.js';
import { Store } from '../src/store/store.js';

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function writeRounds(store: Store, rounds: number): Promise<number> {
  let peak = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 200; i++) store.putUserFromServer(userFromJson({ id: `u${i}`, name: `round ${r}`, photo: 'ab'.repeat(8000) }));
    peak = Math.max(peak, statSync(store.connection.name + '-wal').size);
    await new Promise((res) => setTimeout(res, 700)); // the worker checkpoints every 500 ms
  }
  return peak;
}

describe('checkpoints in a worker thread', () => {
  it('keep the WAL from growing with every round of writes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'termsync-ckpt-'));
    const store = Store.open(join(dir, 'a.db'), { checkpointInWorker: true });
    const peak = await writeRounds(store, 5);
    // each round writes ~200 users x 16 KB photos = over 3 MB of pages; five rounds
    // without checkpoints would leave a WAL of well over 15 MB
    expect(peak).toBeLessThan(8 * 1024 * 1024);
    await store.stopCheckpointer();
    store.close();
  }, 20_000);
});
