// Shared helpers of test/store-*.test.ts and test/merge.test.ts (not a test file).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserFlag } from '../src/codec/constants.js';
import { emptyUser, hashPin, type UserRecord } from '../src/model/user.js';
import { Store } from '../src/store/store.js';
import type { StoreOptions } from '../src/store/types.js';

/** A fresh temp directory; removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'termsync-store-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Opens a store in a fresh temp dir; close() closes it and removes the dir. */
export function openTemp(opts: StoreOptions = {}): { store: Store; file: string; dir: string; close: () => void } {
  const { dir, cleanup } = tempDir();
  const file = path.join(dir, 'db', 'termsync.db');
  const store = Store.open(file, opts);
  return {
    store,
    file,
    dir,
    close: () => {
      store.close();
      cleanup();
    },
  };
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

/** A user with every field held (non-vacant). `seed` varies the values. */
export function fullUser(id: string, seed = 1): UserRecord {
  const u = emptyUser(id);
  u.name = `User ${id} #${seed}`;
  u.phrase = `phrase ${seed}`;
  u.setting = { startTime: 1_700_000_000 + seed, endTime: 1_800_000_000 + seed, fingerAuthMode: 1 + (seed % 3), cardAuthMode: 2 + (seed % 3), idAuthMode: 3 + (seed % 3), securityLevel: 1 + (seed % 5) };
  u.authGroupId = 10 + seed;
  u.photo = bytes(200, seed);
  u.pinHash = hashPin(String(1000 + seed));
  u.cards = [
    { type: 1, data: bytes(4, seed) },
    { type: 2, data: bytes(32, seed + 1) },
  ];
  u.fingers = [{ index: 0, flag: 1, templates: [bytes(384, seed), bytes(384, seed + 2)] }];
  u.faces = [{ index: 0, flag: 0, data: bytes(1000, seed) }];
  u.accessGroups = [seed, seed + 100];
  u.jobCodes = [{ code: 7 + seed, label: 'night shift' }];
  u.version = seed;
  return u;
}

/** A user as a terminal reports it after an edit on the device. */
export function deviceUser(id: string, seed = 2): UserRecord {
  const u = fullUser(id, seed);
  u.flag = UserFlag.UPDATED_ON_DEVICE;
  return u;
}
