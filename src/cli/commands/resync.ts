// termsync resync TERMINAL [--wait [--timeout SEC]]
//
// Asks the daemon for a full resync of one terminal (its user list is compared
// with the server's; differences are pulled and pushed). Without --wait the
// command ends when the daemon has accepted the request. With --wait it follows
// the resync: first the comparison (a RECONCILE monitoring event that says how
// many pushes it queued), then the terminal's owed pushes going down to 0.
import type { Command } from 'commander';
import { AdminHttpError, type AdminClient, type EventJson, type TerminalView } from '../admin-client.js';
import { Progress } from '../progress.js';
import { EXIT_FAILURE, action, addCommonOptions, clientFor, intArg, interruption, printError, sleep, writeJson, type CliContext, type CommonOptions } from './common.js';

const POLL_MS = 250;

interface WaitResult {
  terminal: string;
  queued: number;
  pulled: number;
  pushesOwed: number;
  done: boolean;
  reason?: string;
}

async function newestEventId(client: AdminClient): Promise<number> {
  return (await client.events({ order: 'desc', limit: 1 }))[0]?.id ?? 0;
}

function count(detail: unknown, key: string): number {
  const v = detail && typeof detail === 'object' ? (detail as Record<string, unknown>)[key] : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

export function addResyncCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  return addCommonOptions(
    parent
      .command('resync')
      .description("fully resync one terminal: compare its users with the server's and fix the differences")
      .argument('<terminal>', 'terminal ID (it must be online)')
      .option('--wait', 'follow the resync until every push it queued has reached the terminal')
      .option('--timeout <sec>', 'with --wait: give up after SEC seconds (the resync itself goes on)', intArg(1, 86_400), 600),
  ).action(
    action(ctx, async (id: string, o: CommonOptions & { wait?: boolean; timeout: number }) => {
      const client = clientFor(o, io);
      const before = o.wait ? await newestEventId(client) : 0;
      await client.resync(id);
      if (!o.wait) {
        if (o.json) writeJson(io, { terminal: id, accepted: true });
        else io.out.write(`resync of terminal ${id} accepted; it runs in the daemon (termsync events list --follow --terminal ${id} shows it)\n`);
        return;
      }
      if (!o.json) io.err.write(`resync of terminal ${id} accepted\n`);
      const mode = (await client.settings()).syncMode;
      if (mode === 'off') {
        const r: WaitResult = { terminal: id, queued: 0, pulled: 0, pushesOwed: 0, done: true, reason: 'sync mode is off: nothing is pulled or pushed' };
        if (o.json) writeJson(io, r);
        else io.out.write(`terminal ${id}: ${r.reason}\n`);
        return;
      }

      const stop = interruption(io);
      const deadline = Date.now() + o.timeout * 1000;
      const progress = new Progress({ stream: io.err, label: `resync of ${id}`, unit: 'pushes' }).keepAlive();
      const result: WaitResult = { terminal: id, queued: 0, pulled: 0, pushesOwed: 0, done: false };
      let failure: string | undefined;
      try {
        // 1. the comparison
        let reconcile: EventJson | undefined;
        while (!reconcile) {
          [reconcile] = await client.events({ after: before, type: 'RECONCILE', terminal: id, limit: 1, order: 'asc' });
          if (reconcile) break;
          const t: TerminalView = await client.terminal(id);
          if (t.state !== 'online') throw new Error(`terminal ${id} went ${t.state} before its user list was compared; run the resync again when it is online`);
          if (stop.signal.aborted) throw new Error('interrupted; the resync goes on in the daemon');
          if (Date.now() > deadline) throw new Error(`no comparison result after ${o.timeout} s; the resync goes on in the daemon`);
          await sleep(POLL_MS, stop.signal);
        }
        result.queued = count(reconcile.detail, 'queued');
        result.pulled = count(reconcile.detail, 'pulled');
        progress.setTotal(result.queued);
        // 2. the pushes it queued (and any others owed to the terminal meanwhile)
        for (;;) {
          const t = await client.terminal(id);
          result.pushesOwed = t.pushesOwed;
          if (t.pushesOwed > result.queued) progress.setTotal((result.queued = Math.max(result.queued, t.pushesOwed)));
          progress.update(Math.max(0, result.queued - t.pushesOwed));
          if (t.pushesOwed === 0) break;
          if (t.state !== 'online') throw new Error(`terminal ${id} went ${t.state} with ${t.pushesOwed} pushes owed; they are kept and sent when it is back`);
          if (stop.signal.aborted) throw new Error(`interrupted with ${t.pushesOwed} pushes owed; the resync goes on in the daemon`);
          if (Date.now() > deadline) throw new Error(`${t.pushesOwed} pushes still owed after ${o.timeout} s; the resync goes on in the daemon`);
          await sleep(POLL_MS, stop.signal);
        }
        result.done = true;
        progress.done();
      } catch (e) {
        if (e instanceof AdminHttpError && e.status === 404) failure = `terminal ${id} was removed during the resync`;
        else failure = (e as Error).message;
        progress.fail();
      } finally {
        stop.dispose();
      }
      if (failure) result.reason = failure;
      if (o.json) writeJson(io, result);
      else if (result.done) io.out.write(`terminal ${id} resynchronised: ${result.pulled} pulled, ${result.queued} pushed\n`);
      if (failure) {
        printError(io, failure);
        return EXIT_FAILURE;
      }
    }),
  );
}
