// The admin subcommands: they talk to a running daemon's admin HTTP API.
import type { Command } from 'commander';
import { addBackupCommand } from './backup.js';
import type { CliContext } from './common.js';
import { addEventsCommand } from './events.js';
import { addResyncCommand } from './resync.js';
import { addSettingsCommand } from './settings.js';
import { addTerminalsCommand } from './terminals.js';
import { addUsersCommand } from './users.js';

export { processIo, type CliContext, type CliIo } from './common.js';

/** Adds terminals, users, events, settings, resync and backup to the program. */
export function addAdminCommands(program: Command, ctx: CliContext): void {
  addTerminalsCommand(program, ctx);
  addUsersCommand(program, ctx);
  addEventsCommand(program, ctx);
  addSettingsCommand(program, ctx);
  addResyncCommand(program, ctx);
  addBackupCommand(program, ctx);
}
