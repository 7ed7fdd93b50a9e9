// termsync terminals list | add ID HOST[:PORT] [--protocol zk] [--zk-password-file PATH] [--groups 1,2] | remove ID | approve ID | groups ID LIST
import { Command, InvalidArgumentError } from 'commander';
import { loadZkPassword, type HostPort } from '../../config.js';
import type { TerminalView } from '../admin-client.js';
import { parseHostPort } from '../options.js';
import { action, addCommonOptions, UsageError, clientFor, formatTable, groupsArg, timeText, writeJson, type CliContext, type CommonOptions } from './common.js';

/** HOST[:PORT]; port 0 = left out (the daemon uses the protocol's default port) */
function hostPortArg(v: string): HostPort {
  const hp = parseHostPort(v.trim(), { defaultPort: 0 });
  if (!hp) throw new InvalidArgumentError('must be HOST[:PORT], e.g. 10.0.0.20:51211 (IPv6 in brackets: [fd00::20]:51211); without a port, the protocol\'s (51211 termsync, 4370 zk)');
  return hp;
}

const PROTOCOLS = ['termsync', 'zk', 'gsdk'];

function protocolArg(v: string): string {
  if (!PROTOCOLS.includes(v)) throw new InvalidArgumentError(`must be one of: ${PROTOCOLS.join(', ')}`);
  return v;
}

function terminalIdArg(v: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(v)) throw new InvalidArgumentError('a terminal ID is 1..64 letters, digits, ".", "_" or "-"');
  return v;
}

export function terminalRows(list: (TerminalView & { owner?: string | null; lease?: unknown })[]): string {
  // several daemons on PostgreSQL: which one drives each terminal
  const cluster = list.some((t) => t.lease);
  return formatTable(
    ['ID', 'STATE', ...(cluster ? ['DRIVEN BY'] : []), 'APPROVED', 'DIRECTION', 'ADDRESS', 'PROTOCOL', 'DEVICE', 'MODEL', 'LAST EVENT', 'OWED', 'LAST SEEN', 'GROUPS'],
    list.map((t) => [
      t.id,
      t.state,
      ...(cluster ? [t.owner ?? ''] : []),
      t.approved,
      t.direction,
      t.address,
      t.protocol,
      t.deviceId,
      t.model,
      t.lastEventId,
      t.pushesOwed,
      timeText(t.lastSeen),
      t.accessGroups.length ? t.accessGroups.join(',') : '',
    ]),
  );
}

function describe(t: TerminalView): string {
  return `${t.id} (${t.address ?? 'no address'}, ${t.state}${t.approved ? '' : ', not approved'})`;
}

export function addTerminalsCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  const group = parent.command('terminals').description("list and manage the daemon's terminals");

  addCommonOptions(group.command('list').description('list every terminal with its state'))
    .action(
      action(ctx, async (o: CommonOptions) => {
        const list = await clientFor(o, io).terminals();
        if (o.json) writeJson(io, list);
        else io.out.write(list.length ? terminalRows(list) : 'no terminals\n');
      }),
    );

  addCommonOptions(
    group
      .command('add')
      .description('add a terminal the daemon dials (or change its address); it is approved at once')
      .argument('<id>', 'terminal ID (letters, digits, ".", "_", "-")', terminalIdArg)
      .argument('[host[:port]]', "the terminal's address (with --protocol the port may be left out: 51211 termsync, 4370 zk, 51211 gsdk); left out only for a gsdk terminal that dials the device gateway", hostPortArg)
      .option('--protocol <name>', "the terminal's protocol: termsync (default), zk, or gsdk (a Suprema terminal behind the daemon's --gsdk-gateway, ID gsdk-DEVICEID)", protocolArg)
      .option('--zk-password-file <path>', "zk: a file holding the terminal's comm key (digits, 0..4294967295); default 0 on an add, the current one on an update")
      .option('--groups <list>', 'access groups this terminal serves, e.g. 1,2 (sync mode "specific")', groupsArg),
  ).action(
    action(ctx, async (id: string, hpArg: HostPort | undefined, o: CommonOptions & { groups?: number[]; protocol?: string; zkPasswordFile?: string }) => {
      if (!hpArg && o.protocol !== 'gsdk') throw new UsageError('give the terminal\'s HOST[:PORT] (only a gsdk terminal that dials the device gateway has none)');
      const hp: HostPort | { host?: undefined; port?: undefined } = hpArg ?? {};
      if (o.zkPasswordFile !== undefined && o.protocol !== 'zk') throw new UsageError('--zk-password-file is for --protocol zk');
      // the port may be left out only when the protocol is named (a bare HOST is more likely a typo)
      if (hp.host !== undefined && !hp.port && !o.protocol) throw new UsageError(`${hp.host}: give HOST:PORT, or --protocol to dial the protocol's port (51211 termsync, 4370 zk)`);
      // the key is read here and sent once; it is never printed
      const zkPassword = o.zkPasswordFile !== undefined ? Number(loadZkPassword(o.zkPasswordFile).toString('latin1')) : undefined;
      const client = clientFor(o, io);
      const t = await client.addTerminal({
        id,
        ...(hp.host !== undefined ? { host: hp.host } : {}),
        ...(hp.port ? { port: hp.port } : {}),
        ...(o.protocol ? { protocol: o.protocol } : {}),
        ...(zkPassword !== undefined ? { zkPassword } : {}),
        ...(o.groups ? { accessGroups: o.groups } : {}),
      });
      if (o.json) writeJson(io, t);
      else io.out.write(`terminal ${describe(t)} saved; the daemon dials it${t.protocol && t.protocol !== 'termsync' ? ` (${t.protocol})` : ''}\n`);
    }),
  );

  addCommonOptions(
    group
      .command('remove')
      .alias('rm')
      .description("remove a terminal: its session ends and its queued pushes go; the server's users stay")
      .argument('<id>', 'terminal ID'),
  ).action(
    action(ctx, async (id: string, o: CommonOptions) => {
      await clientFor(o, io).removeTerminal(id);
      if (o.json) writeJson(io, { removed: id });
      else io.out.write(`terminal ${id} removed\n`);
    }),
  );

  addCommonOptions(
    group
      .command('approve')
      .description('approve a pending terminal (one that dialled in and is not configured); it starts syncing')
      .argument('<id>', 'terminal ID (for dial-in terminals: the device ID)'),
  ).action(
    action(ctx, async (id: string, o: CommonOptions) => {
      const t = await clientFor(o, io).approveTerminal(id);
      if (o.json) writeJson(io, t);
      else io.out.write(`terminal ${describe(t)} approved\n`);
    }),
  );

  addCommonOptions(
    group
      .command('groups')
      .description('set the access groups a terminal serves (sync mode "specific"); "" for none')
      .argument('<id>', 'terminal ID')
      .argument('<list>', 'access group numbers separated by commas, e.g. 1,2', groupsArg),
  ).action(
    action(ctx, async (id: string, groups: number[], o: CommonOptions) => {
      const t = await clientFor(o, io).setTerminalGroups(id, groups);
      if (o.json) writeJson(io, t);
      else io.out.write(`terminal ${t.id} serves access groups ${t.accessGroups.length ? t.accessGroups.join(',') : '(none)'}\n`);
    }),
  );

  return group;
}
