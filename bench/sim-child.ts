// A share of the simulated terminals in a process of its own (see
// bench/sim-host.ts). Requests arrive over IPC with an id and are answered
// {type:'reply', id, value|error}; log events go out as {type:'events'}.
import type { UserRecord } from '../src/model/user.js';
import { DEFAULT_DEVICE_ID_BASE, Simulator } from '../src/sim/simulator.js';
import { SharedUsers } from '../src/sim/terminal.js';
import { populationUser } from './population.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import type { Action } from './scenario.js';
import { instrument, performOn, verifyTerminals, type CommandCounts } from './sim-host.js';

let sim: Simulator | null = null;
let offset = 0;
let counts: CommandCounts | null = null;

const buf = (x: unknown): Buffer => (Buffer.isBuffer(x) ? x : Buffer.from((x as Uint8Array).buffer, (x as Uint8Array).byteOffset, (x as Uint8Array).byteLength));

/** IPC hands typed arrays over as Uint8Array: make the user's bytes Buffers again. */
function revive(u: UserRecord): UserRecord {
  u.photo = buf(u.photo);
  u.pinHash = buf(u.pinHash);
  for (const c of u.cards) c.data = buf(c.data);
  for (const f of u.fingers) f.templates = [buf(f.templates[0]), buf(f.templates[1])];
  for (const f of u.faces) f.data = buf(f.data);
  return u;
}

async function handle(m: any): Promise<unknown> {
  switch (m.type) {
    case 'start': {
      offset = m.first - 1;
      sim = await Simulator.start({
        terminals: m.count,
        commKey: DEV_COMM_KEY,
        timing: m.timing ?? undefined,
        deviceIdBase: DEFAULT_DEVICE_ID_BASE + offset,
        ...(m.userCapacity ? { userCapacity: m.userCapacity } : {}),
      });
      counts = instrument(sim, offset, (events) => process.send!({ type: 'events', events })).counts;
      if (m.population > 0) {
        // every terminal holds users 0..population-1 (bench/population.ts), one shared copy
        const pop = new SharedUsers((function* () {
          for (let i = 0; i < m.population; i++) yield populationUser(i);
        })());
        for (const t of sim.terminals) t.holdShared(pop);
      }
      return sim.ports();
    }
    case 'perform': {
      const a = m.action as Action;
      if (a.op === 'enroll' || a.op === 'edit-to') revive(a.user);
      await performOn(sim!.terminal(m.term - offset)!, a);
      return null;
    }
    case 'counts':
      return counts;
    case 'logs':
      // where each terminal's event log stands (what a daemon that synced it before has as its cursor)
      return sim!.terminals.map((t) => ({ term: offset + t.index, logEpoch: t.ring.logEpoch, lastEventId: t.ring.lastEventId, users: t.userCount }));
    case 'verify':
      return verifyTerminals(sim!.terminals, offset, m.db, new Set(m.skip));
    case 'close':
      await sim?.close();
      return null;
  }
  throw new Error(`unknown request ${m.type}`);
}

process.on('message', (m: any) => {
  handle(m).then(
    (value) => process.send!({ type: 'reply', id: m.id, value }),
    (e: Error) => process.send!({ type: 'reply', id: m.id, error: e.message }),
  );
});
process.on('disconnect', () => process.exit(0));
