// termsync settings get | set --sync-mode MODE
import { Option, type Command } from 'commander';
import { SYNC_MODES } from '../../config.js';
import { action, addCommonOptions, clientFor, formatTable, writeJson, type CliContext, type CommonOptions } from './common.js';

const MEANING: Record<string, string> = {
  off: 'no sync: terminal changes are recorded only',
  server: 'server changes are pushed; terminal changes are not pulled',
  all: 'terminal changes are pulled and pushed to every terminal',
  specific: 'as all, but only to terminals serving the user\'s access groups',
};

export function addSettingsCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  const group = parent.command('settings').description("the daemon's runtime settings (sync mode)");

  addCommonOptions(group.command('get').description('show the settings')).action(
    action(ctx, async (o: CommonOptions) => {
      const s = await clientFor(o, io).settings();
      if (o.json) writeJson(io, s);
      else io.out.write(formatTable(['SETTING', 'VALUE', 'MEANING'], [['sync-mode', s.syncMode, MEANING[s.syncMode] ?? '']]));
    }),
  );

  addCommonOptions(
    group
      .command('set')
      .description('change settings (persisted in the database)')
      .addOption(new Option('--sync-mode <mode>', 'the sync mode').choices(SYNC_MODES).makeOptionMandatory()),
  ).action(
    action(ctx, async (o: CommonOptions & { syncMode: string }) => {
      const s = await clientFor(o, io).setSettings({ syncMode: o.syncMode });
      if (o.json) writeJson(io, s);
      else io.out.write(`sync mode is now ${s.syncMode}\n`);
    }),
  );

  return group;
}
