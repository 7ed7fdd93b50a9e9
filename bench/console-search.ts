// The console's user search on 1,000,000 users: time of the first page and of
// a page deep in the results, by name prefix and by ID prefix.
//   npx tsx bench/console-search.ts [users]
// Users are inserted straight into a fresh database (names from a small word
// list, so prefixes match many rows), then the searches run 20 times each;
// the median is printed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../src/store/store.js';
import { UserSearch } from '../src/store/user-search.js';

const n = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'termsync-search-bench-'));
const store = Store.open(join(dir, 'b.db'));
const words = ['Ada', 'Alan', 'Grace', 'Linus', 'Margaret', 'Edsger', 'Barbara', 'Donald', 'Ken', 'Dennis', 'Frances', 'Radia', 'שלום', 'Zoë'];
const t0 = performance.now();
const ins = store.connection.prepare('INSERT INTO users (id, name, created_at, updated_at) VALUES (?, ?, 0, 0)');
store.connection.transaction(() => {
  for (let i = 0; i < n; i++) ins.run(`u${String(i).padStart(7, '0')}`, `${words[i % words.length]} ${words[(i * 7) % words.length]} ${i}`);
})();
const loadMs = performance.now() - t0;
const s = new UserSearch(store.connection);
const median = (f: () => void) => {
  const t: number[] = [];
  for (let i = 0; i < 20; i++) {
    const a = performance.now();
    f();
    t.push(performance.now() - a);
  }
  return Math.round(t.sort((a, b) => a - b)[10] * 1000) / 1000;
};
let deepName: string | null = null;
let deepId: string | null = null;
// a page 200 pages in: walk there once
{
  let after: string | null = null;
  for (let i = 0; i < 200; i++) after = s.search('name', 'grace', after, 50).next;
  deepName = after;
  after = null;
  for (let i = 0; i < 200; i++) after = s.search('id', 'u05', after, 50).next;
  deepId = after;
}
const out = {
  users: n,
  loadSeconds: Math.round(loadMs / 100) / 10,
  nameFirstPageMs: median(() => s.search('name', 'grace', null, 50)),
  nameRareMs: median(() => s.search('name', 'zoë zoë', null, 50)),
  namePage200Ms: median(() => s.search('name', 'grace', deepName, 50)),
  idFirstPageMs: median(() => s.search('id', 'u05', null, 50)),
  idPage200Ms: median(() => s.search('id', 'u05', deepId, 50)),
  allFirstPageMs: median(() => s.search('name', '', null, 50)),
};
console.log(JSON.stringify(out));
store.close();
rmSync(dir, { recursive: true, force: true });
