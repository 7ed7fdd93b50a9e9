// The real daemon in a child process, for tests that must kill it (SIGKILL) or
// stop it (SIGSTOP) and for the soak script. Run as
//   node --import tsx test/helpers/daemon-child.ts '<json options>'
// (or with the JSON in TERMSYNC_CHILD_OPTS). The JSON is DaemonOptions without
// `log`; Buffers are written as {"type":"Buffer","data":[...]} (what
// JSON.stringify makes of a Buffer) and `commKey` may also be a hex string.
// Extra keys: `logLevel` (default 'silent'), `logFile` (pino JSON lines go there,
// default stderr).
//
// Once started it prints one line `READY {"pid":..,"ports":[..]}` on stdout.
// It then serves JSON-line commands on stdin, answering `{"id":..,"ok":..}` on
// stdout: {"id":1,"op":"putUser","user":<user JSON>}, {"id":2,"op":"deleteUser","userId":".."},
// {"id":3,"op":"stats"}, {"id":4,"op":"stop"} (orderly stop, then exit 0).
import { createInterface } from 'node:readline';
import { createLogger } from '../../src/log.js';
import { Daemon, type DaemonOptions } from '../../src/daemon.js';
import { userFromJson } from '../../src/model/user.js';
import pino from 'pino';

type ChildOptions = Omit<DaemonOptions, 'log' | 'commKey'> & { commKey: string | Buffer; logLevel?: string; logFile?: string };

function revive(_k: string, v: unknown): unknown {
  if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
    return Buffer.from((v as { data: number[] }).data);
  }
  return v;
}

async function main(): Promise<void> {
  const raw = process.argv[2] ?? process.env.TERMSYNC_CHILD_OPTS;
  if (!raw) throw new Error('daemon-child: options JSON missing');
  const o = JSON.parse(raw, revive) as ChildOptions;
  const level = o.logLevel ?? 'silent';
  const log =
    level === 'silent'
      ? pino({ level: 'silent' })
      : createLogger({ level, destination: pino.destination({ dest: o.logFile ?? 2, sync: true, append: true }) });
  const commKey = typeof o.commKey === 'string' ? Buffer.from(o.commKey, 'hex') : o.commKey;
  const { logLevel: _l, logFile: _f, ...rest } = o;
  const daemon = await Daemon.start({ ...rest, commKey, log });
  const out = (obj: unknown) => process.stdout.write(JSON.stringify(obj) + '\n');
  process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, ports: daemon.listenPorts })}\n`);

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await daemon.stop(2000).catch(() => {});
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop(0));

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let msg: { id?: unknown; op?: string; user?: unknown; userId?: string };
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    const id = msg.id;
    try {
      switch (msg.op) {
        case 'putUser':
          return out({ id, ok: true, result: daemon.putUser(userFromJson(msg.user)) });
        case 'deleteUser':
          return out({ id, ok: true, result: daemon.deleteUser(String(msg.userId)) });
        case 'stats':
          return out({
            id,
            ok: true,
            result: {
              ...daemon.engine.stats,
              lastPushLatencyMs: undefined,
              outbox: daemon.store.owedCount(),
              users: daemon.store.userCount(),
              rss: process.memoryUsage().rss,
              heapUsed: process.memoryUsage().heapUsed,
              online: daemon.terminals().filter((t) => t.state === 'online').length,
            },
          });
        case 'stop':
          out({ id, ok: true });
          return void stop(0);
        default:
          return out({ id, ok: false, error: `unknown op ${JSON.stringify(msg.op)}` });
      }
    } catch (e) {
      out({ id, ok: false, error: (e as Error).message });
    }
  });
  // the parent went away: stop too (an orphaned daemon would hold the ports and the file)
  rl.on('close', () => void stop(0));
}

main().catch((e) => {
  process.stderr.write(`daemon-child failed: ${(e as Error).stack ?? e}\n`);
  process.exit(3);
});
