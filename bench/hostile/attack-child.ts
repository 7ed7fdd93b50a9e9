// An attacker in a process of its own (see inChild in attacks.ts): takes its
// task from the parent, runs it, answers with the result and exits.
import { floodSessions, holdAdmin, type ChildTask } from './attacks.js';

process.once('message', (t: ChildTask) => {
  const work = t.kind === 'flood' ? floodSessions(t, () => null) : holdAdmin(t.port, t.seconds);
  void work.then((r) => {
    process.send!(r, () => process.exit(0));
  });
});
