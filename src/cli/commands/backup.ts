// termsync backup NAME: an online backup of the daemon's database, written by
// the daemon as a new file NAME in its backup directory (--backup-dir of
// `termsync run`, by default a "backups" folder beside the database). The
// daemon never overwrites a file and creates it readable by its own user only.
import type { Command } from 'commander';
import { Progress } from '../progress.js';
import { action, addCommonOptions, clientFor, UsageError, writeJson, type CliContext, type CommonOptions } from './common.js';

export function addBackupCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  return addCommonOptions(
    parent
      .command('backup')
      .description("write an online backup of the daemon's database to a new file NAME in the daemon's backup directory (mode 0600)")
      .argument('<name>', 'file name to create in the backup directory (no directories; an existing file is never replaced)'),
  ).action(
    action(ctx, async (name: string, o: CommonOptions) => {
      if (name.includes('/') || name.includes('\\')) {
        throw new UsageError(`backup takes a file name, not a path: the daemon writes it to its backup directory (--backup-dir); got ${JSON.stringify(name)}`);
      }
      const client = clientFor(o, io);
      // The API answers when the copy is complete and reports no progress on the
      // way: show that it is working, and how long it has taken.
      const progress = new Progress({ stream: io.err, label: `backing up the database to ${name}` }).keepAlive();
      let r;
      try {
        r = await client.backup(name);
      } catch (e) {
        progress.fail();
        throw e;
      }
      progress.done(`done in ${(r.ms / 1000).toFixed(1)}s`);
      if (o.json) writeJson(io, r);
      else io.out.write(`backup written to ${r.path} (${r.totalPages} pages)\n`);
    }),
  );
}
