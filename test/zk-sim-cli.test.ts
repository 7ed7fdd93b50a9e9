// `termsync sim --protocol zk` as a user runs it: ZK terminals on their ports,
// the comm key from --zk-password, per-terminal uid numbering, the control API,
// and a clean stop on SIGTERM.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { ZkClient } from '../src/drivers/zk/client.js';

const ROOT = join(import.meta.dirname, '..');

describe('termsync sim --protocol zk', () => {
  it('serves ZK terminals with a comm key and different uid numbering, driven by the control API', async () => {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'sim', '--protocol', 'zk', '--terminals', '2', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--zk-password', '77', '--zk-uid-start', '1,300', '--no-latency'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    try {
      const ready = await new Promise<{ terminals: { id: string; port: number }[]; control: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the ZK simulator did not start')), 20_000);
        createInterface({ input: proc.stdout! }).on('line', (line) => {
          try {
            const m = JSON.parse(line);
            if (m.msg === 'simulated ZK terminals ready') {
              clearTimeout(timer);
              resolve(m);
            }
          } catch {
            /* not a log line */
          }
        });
      });
      expect(ready.terminals.map((t) => t.id)).toEqual(['1', '2']);
      const api = `http://${ready.control}`;
      const list = (await (await fetch(`${api}/terminals`)).json()) as { terminals: { protocol: string; uidStart: number }[] };
      expect(list.terminals.map((t: { protocol: string; uidStart: number }) => [t.protocol, t.uidStart])).toEqual([
        ['zk', 1],
        ['zk', 300],
      ]);
      for (const id of ['1', '2']) {
        const r = await fetch(`${api}/terminals/${id}/users`, { method: 'POST', body: JSON.stringify({ id: 'ann', name: 'Ann', card: 987654 }) });
        expect(r.status).toBe(201);
      }
      const dup = await fetch(`${api}/terminals/1/users`, { method: 'POST', body: JSON.stringify({ id: 'ann' }) });
      expect(dup.status).toBe(409);
      const uids: number[] = [];
      for (const t of ready.terminals) {
        const c = await ZkClient.connect({ host: '127.0.0.1', port: t.port, password: 77, timeoutMs: 5000 });
        const { users } = await c.readUsers();
        expect(users.map((u) => [u.userId, u.name, u.card])).toEqual([['ann', 'Ann', 987654]]);
        uids.push(users[0].uid);
        await c.close();
      }
      expect(uids).toEqual([1, 300]);
      await expect(ZkClient.connect({ host: '127.0.0.1', port: ready.terminals[0].port, password: 78, timeoutMs: 5000 })).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  });
});
