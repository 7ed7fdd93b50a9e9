// termsync backup PATH: an online backup of the daemon's database, written by
// the daemon (so PATH is on the daemon's machine; a relative PATH is taken
// relative to this shell's directory and sent as an absolute path).
import { isAbsolute, resolve } from 'node:path';
import type { Command } from 'commander';
import { Progress } from '../progress.js';
import { action, addCommonOptions, clientFor, writeJson, type CliContext, type CommonOptions } from './common.js';

export function addBackupCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  return addCommonOptions(
    parent
      .command('backup')
      .description("write an online backup of the daemon's database to PATH (on the daemon's machine; mode 0600)")
      .argument('<path>', 'backup file to write (an existing file is replaced)'),
  ).action(
    action(ctx, async (path: string, o: CommonOptions) => {
      const client = clientFor(o, io);
      const dest = isAbsolute(path) ? path : resolve(io.cwd, path);
      // The API answers when the copy is complete and reports no progress on the
      // way: show that it is working, and how long it has taken.
      const progress = new Progress({ stream: io.err, label: `backing up the database to ${dest}` }).keepAlive();
      let r;
      try {
        r = await client.backup(dest);
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
