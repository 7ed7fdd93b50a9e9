// termsync events list [--after N] [--limit M] [--type T] [--terminal ID] [--user ID] [--follow]
//
// Without --after the newest M events are shown (oldest first); with --after N,
// the M events after N. --follow then keeps printing new events from the
// admin API's server-sent event stream until Ctrl-C (with --json: one JSON
// object per line, the listed events included).
import type { Command } from 'commander';
import type { EventJson } from '../admin-client.js';
import { action, addCommonOptions, clientFor, formatTable, intArg, interruption, timeText, writeJson, type CliContext, type CommonOptions } from './common.js';

interface EventOptions extends CommonOptions {
  after?: number;
  limit: number;
  type?: string;
  terminal?: string;
  user?: string;
  follow?: boolean;
}

function detailText(d: unknown): string {
  if (d === null || d === undefined) return '';
  return typeof d === 'string' ? d : JSON.stringify(d);
}

const HEADERS = ['ID', 'TIME', 'EVENT', 'TERMINAL', 'USER', 'DETAIL'];

function cells(e: EventJson): (string | number | null)[] {
  return [e.id, timeText(e.time), e.label, e.terminal, e.user, detailText(e.detail)];
}

/** Fixed column widths for --follow, where rows arrive one at a time. */
const FOLLOW_WIDTHS = [7, 19, 34, 10, 12];

function followLine(row: (string | number | null)[]): string {
  return (
    row
      .map((c, i) => {
        const s = c === null || c === '' ? '-' : String(c);
        if (i >= FOLLOW_WIDTHS.length) return s;
        return i === 0 ? s.padStart(FOLLOW_WIDTHS[i]) : s.padEnd(FOLLOW_WIDTHS[i]);
      })
      .join('  ')
      .trimEnd() + '\n'
  );
}

function matches(e: EventJson, o: EventOptions): boolean {
  return (o.type === undefined || e.type === o.type) && (o.terminal === undefined || e.terminal === o.terminal) && (o.user === undefined || e.user === o.user);
}

export function addEventsCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  const group = parent.command('events').description('monitoring events (user updates, failures, terminals coming and going)');

  addCommonOptions(
    group
      .command('list')
      .description('list monitoring events, oldest first; --follow keeps printing new ones until Ctrl-C')
      .option('--after <id>', 'events after this event ID (default: the newest ones)', intArg(0, Number.MAX_SAFE_INTEGER))
      .option('--limit <n>', 'at most N events', intArg(1, 10_000), 100)
      .option('--type <type>', 'only this event type, e.g. USER_UPDATE_SUCCESS_DEVICE')
      .option('--terminal <id>', "only this terminal's events")
      .option('--user <id>', "only this user's events")
      .option('-f, --follow', 'then print new events as they happen, until Ctrl-C'),
  ).action(
    action(ctx, async (o: EventOptions) => {
      const client = clientFor(o, io);
      const q = { limit: o.limit, type: o.type, terminal: o.terminal, user: o.user };
      let list: EventJson[];
      if (o.after !== undefined) list = await client.events({ ...q, after: o.after, order: 'asc' });
      else list = (await client.events({ ...q, order: 'desc' })).reverse();

      if (!o.follow) {
        if (o.json) writeJson(io, list);
        else io.out.write(list.length ? formatTable(HEADERS, list.map(cells)) : 'no events\n');
        return;
      }

      const print = (e: EventJson) => io.out.write(o.json ? JSON.stringify(e) + '\n' : followLine(cells(e)));
      if (!o.json) io.out.write(followLine(HEADERS));
      for (const e of list) print(e);
      // Follow from the last event shown. When the filtered list was empty,
      // from the newest event of all (or --after): only new events follow.
      let after = list.length ? list[list.length - 1].id : o.after;
      if (after === undefined) after = (await client.events({ order: 'desc', limit: 1 }))[0]?.id ?? 0;
      const stop = interruption(io);
      try {
        const stream = client.streamEvents({
          after,
          signal: stop.signal,
          onReconnect: (reason, ms) => io.err.write(`termsync: event stream interrupted (${reason}); reconnecting in ${Math.round(ms / 1000)} s\n`),
        });
        for await (const e of stream) if (matches(e, o)) print(e);
      } finally {
        stop.dispose();
      }
    }),
  );

  return group;
}
