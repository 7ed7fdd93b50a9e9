// Start-up time and memory of `termsync run`, from the compiled code (dist/)
// or from the TypeScript sources through tsx:
//   node bench/startup.mjs [runs]           (whichever bin/termsync.js picks)
//   TERMSYNC_STARTUP=source node bench/startup.mjs
// Each run starts the daemon on an empty database with no terminals, waits
// for its "termsync running" log line, reads its resident memory
// (/proc/PID/status VmRSS), then stops it with SIGTERM. Prints the median.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const runs = Number(process.argv[2] ?? 5);
const source = process.env.TERMSYNC_STARTUP === 'source';
const args = source ? ['--import', 'tsx', 'src/cli/main.ts'] : ['bin/termsync.js'];

function once() {
  return new Promise((resolve, reject) => {
    const dir = mkdtempSync(join(tmpdir(), 'termsync-startup-'));
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [...args, 'run', '--insecure-dev-key', `--db=${join(dir, 't.db')}`, '--admin-listen=127.0.0.1:0', '--log-level=info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    child.stdout.on('data', (c) => {
      out += c;
      if (!done && out.includes('termsync running')) {
        done = true;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        // let the first second of work settle before reading memory
        setTimeout(() => {
          const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
          const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
          child.kill('SIGTERM');
          child.on('exit', () => {
            rmSync(dir, { recursive: true, force: true });
            resolve({ ms, rssMb: rssKb / 1024 });
          });
        }, 1000);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!done) reject(new Error(`exited ${code} before it was running`));
    });
  });
}

const results = [];
for (let i = 0; i < runs; i++) results.push(await once());
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({ mode: source ? 'source (tsx)' : 'bin/termsync.js', runs, startMs: Math.round(median(results.map((r) => r.ms))), rssMb: Math.round(median(results.map((r) => r.rssMb)) * 10) / 10, all: results.map((r) => [Math.round(r.ms), Math.round(r.rssMb)]) }));
