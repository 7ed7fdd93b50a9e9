// The sender of the event floods (logflood, deleteflood) in a process of its
// own (see eventFloodSessions in attacks.ts): takes its FloodOptions from the
// parent, streams, answers with the FloodResult and exits.
import { floodSessions, type FloodOptions } from './attacks.js';

process.once('message', (o: FloodOptions) => {
  void floodSessions(o, () => null).then((r) => {
    process.send!(r, () => process.exit(0));
  });
});
