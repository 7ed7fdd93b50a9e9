#!/usr/bin/env node
// Runs the compiled JavaScript (dist/, made by `npm run build`). A checkout
// without dist/ (development, a fresh clone) runs the TypeScript sources
// through tsx, a development dependency, instead; so does one whose sources
// changed after the last build while tsx is there, so that an old build is
// never run by mistake.
import { existsSync, readdirSync, statSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
const sources = new URL('../src/', import.meta.url);

/** The newest modification time under a directory, ms. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

async function fromSource() {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    return null;
  }
  register();
  return (await import('../src/cli/main.ts')).main;
}

let main = null;
const built = existsSync(compiled);
if (!built || (existsSync(sources) && newest(sources) > statSync(compiled).mtimeMs)) main = await fromSource();
if (!main && built) ({ main } = await import(compiled.href));
if (!main) {
  process.stderr.write('termsync: not built (no dist/) and tsx is not installed: run `npm run build` (or `npm install` for development)\n');
  process.exit(2);
}
process.exitCode = await main(process.argv.slice(2));
