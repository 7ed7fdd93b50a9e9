// The bench's daemon child on the production path: the daemon's code from
// dist/ (compiled by `npm run build`, what bin/termsync.js runs), without the
// tsx loader. bench/daemon-child.ts itself is transpiled by esbuild (a
// dependency of tsx) into dist/.bench/daemon-child.mjs with its `../src/`
// imports pointed at dist/; the build is run first when src/ is newer than it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST_MAIN = join(ROOT, 'dist', 'cli', 'main.js');

/** how the bench runs the daemon's process: from dist/ (production) or the TypeScript sources through tsx */
export type DaemonRuntime = 'dist' | 'tsx';

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ (`npm run build`) unless it is newer than every file under src/. */
export function ensureBuilt(log?: (m: string) => void): void {
  if (existsSync(DIST_MAIN) && statSync(DIST_MAIN).mtimeMs >= newest(join(ROOT, 'src'))) return;
  log?.('dist/ is missing or older than src/: npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status}): the bench cannot run the daemon from dist/`);
}

/** The path of `bench/<name>.ts` transpiled to run against dist/ (built first when needed). */
export function compiledBenchModule(name: string, log?: (m: string) => void): string {
  ensureBuilt(log);
  const src = join(ROOT, 'bench', `${name}.ts`);
  const out = join(ROOT, 'dist', '.bench', `${name}.mjs`);
  const { code } = transformSync(readFileSync(src, 'utf8'), { loader: 'ts', format: 'esm', target: 'node20', sourcefile: src });
  // bench/x.ts imports '../src/a/b.js'; from dist/.bench/x.mjs that module is '../a/b.js'
  const js = code.replace(/(from\s+|import\s*\(\s*)(['"])\.\.\/src\//g, '$1$2../');
  // an import of another bench module (./x.js) would not exist under dist/.bench
  if (/(from\s+|import\s*\(\s*)['"]\.\//.test(js)) throw new Error(`bench/${name}.ts imports another bench module: it cannot run from dist/`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, js);
  return out;
}
