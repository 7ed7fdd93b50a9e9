// The engine runs on the protocol-neutral port (src/sync/ports.ts): nothing
// under src/sync imports a codec, a driver or the session code of a protocol.
// A protocol's codes, wire rules and digests live in its driver (src/drivers/*).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..', 'src');

/** Every module specifier a file imports or re-exports (static and dynamic). */
function specifiers(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  const stat = [...src.matchAll(/^\s*(?:import|export)[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1]);
  const bare = [...src.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]);
  const dyn = [...src.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
  return [...stat, ...bare, ...dyn];
}

describe('layering of src/sync', () => {
  const dir = path.join(root, 'sync');
  const files = fs.readdirSync(dir).filter((n) => n.endsWith('.ts'));

  it('has files to check (engine, ports)', () => {
    expect(files).toEqual(expect.arrayContaining(['engine.ts', 'ports.ts']));
  });

  it.each(files)('%s imports nothing of src/codec, src/drivers or src/terminal', (f) => {
    for (const s of specifiers(path.join(dir, f))) {
      if (!s.startsWith('.')) continue;
      const target = path.relative(root, path.resolve(dir, s));
      expect(target.split(path.sep)[0], `${f} imports ${s}`).not.toMatch(/^(codec|drivers|terminal)$/);
    }
  });

  it('the check sees an import of the codec when there is one', () => {
    const tmp = fs.mkdtempSync(path.join(fs.realpathSync(import.meta.dirname), '.layering-'));
    try {
      const f = path.join(tmp, 'x.ts');
      fs.writeFileSync(f, "import { Status } from '../src/codec/constants.js';\nconst m = await import('../src/codec/index.js');\n");
      expect(specifiers(f)).toEqual(['../src/codec/constants.js', '../src/codec/index.js']);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
