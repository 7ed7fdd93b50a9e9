// Simulated terminals in a child process, so a test can stop them for real
// (SIGSTOP: the process hangs, its kernel still answers TCP). Run as
//   node --import tsx test/helpers/sim-child.ts   (options JSON in TERMSYNC_SIM_OPTS)
// Options: SimulatorOptions without logger; `commKey` as hex; `timing` as given.
// Prints `READY {"pid":..,"ports":[..]}`, then serves JSON-line commands on stdin:
// {"id":1,"op":"enroll","terminal":1,"user":<user JSON>}, {"op":"getUser","terminal":1,"userId":".."}
// (answers the user JSON or null), {"op":"userCount","terminal":1}, {"op":"drop","terminal":1}.
import { createInterface } from 'node:readline';
import { userFromJson, userToJson } from '../../src/model/user.js';
import { Simulator, type SimulatorOptions } from '../../src/sim/simulator.js';

async function main(): Promise<void> {
  const raw = process.env.TERMSYNC_SIM_OPTS;
  if (!raw) throw new Error('sim-child: TERMSYNC_SIM_OPTS missing');
  const o = JSON.parse(raw) as Omit<SimulatorOptions, 'commKey' | 'logger'> & { commKey: string };
  const sim = await Simulator.start({ ...o, commKey: Buffer.from(o.commKey, 'hex') });
  const out = (obj: unknown) => process.stdout.write(JSON.stringify(obj) + '\n');
  process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, ports: sim.ports() })}\n`);
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let m: { id?: unknown; op?: string; terminal?: number; user?: unknown; userId?: string };
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    const t = sim.terminal(m.terminal ?? 1);
    const answer = (p: Promise<unknown> | unknown) =>
      Promise.resolve(p).then(
        (result) => out({ id: m.id, ok: true, result }),
        (e: Error) => out({ id: m.id, ok: false, error: e.message }),
      );
    if (!t) return void answer(Promise.reject(new Error('no such terminal')));
    switch (m.op) {
      case 'enroll':
        return void answer(t.enroll(userFromJson(m.user)).then(() => true));
      case 'getUser': {
        const u = t.getUser(String(m.userId));
        return void answer(u ? userToJson(u) : null);
      }
      case 'userCount':
        return void answer(t.userCount);
      case 'drop':
        t.dropConnections();
        return void answer(true);
      default:
        return void answer(Promise.reject(new Error(`unknown op ${JSON.stringify(m.op)}`)));
    }
  });
  rl.on('close', () => void sim.close().then(() => process.exit(0)));
}

main().catch((e) => {
  process.stderr.write(`sim-child failed: ${(e as Error).stack ?? e}\n`);
  process.exit(3);
});
