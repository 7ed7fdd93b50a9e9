// `npm run campaign -- NAME [flags]`: runs one fault campaign (see README.md here).
//   crash   -> bench/campaigns/crash.ts   (SIGKILL rounds)
//   hostile -> bench/campaigns/hostile.ts (hostile frames)
//   soak    -> bench/soak.ts --no-daemon-faults --results-key soak (one long-lived daemon)
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const SCRIPTS: Record<string, { file: string; args: string[] }> = {
  crash: { file: join(import.meta.dirname, 'crash.ts'), args: [] },
  hostile: { file: join(import.meta.dirname, 'hostile.ts'), args: [] },
  soak: { file: join(import.meta.dirname, '..', 'soak.ts'), args: ['--no-daemon-faults', '--results-key', 'soak'] },
};

const [name, ...rest] = process.argv.slice(2);
const s = name ? SCRIPTS[name] : undefined;
if (!s) {
  process.stderr.write(`usage: npm run campaign -- ${Object.keys(SCRIPTS).join('|')} [flags]\n`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', s.file, ...s.args, ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
