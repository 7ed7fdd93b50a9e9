#!/usr/bin/env node
// termsync's command line. Exit codes: 0 ok, 1 runtime failure, 2 usage or
// configuration error.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.js';
import { simCommand } from '../sim/cli.js';
import { addAdminCommands, processIo, type CliContext, type CliIo } from './commands/index.js';
import { runDemo } from './demo.js';
import { FlagError } from './flagfile.js';
import { runDaemon } from './run.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function fail(e: unknown, io: CliIo): number {
  if (e instanceof FlagError || e instanceof ConfigError) {
    io.err.write(`termsync: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? EXIT_OK : EXIT_USAGE;
  io.err.write(`termsync: ${(e as Error).message ?? String(e)}\n`);
  return EXIT_FAILURE;
}

/**
 * The command tree. Actions store their exit code in `ctx` (not in
 * process.exitCode, so main() can run more than once in one process, as the
 * tests do) and write through ctx.io.
 */
export function program(ctx: CliContext = { io: processIo(), exitCode: EXIT_OK }): Command {
  const { io } = ctx;
  const p = new Command('termsync')
    .description('device gateway daemon for access-control terminals')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError()
    // subcommands made with .command() inherit this (and exitOverride)
    .configureOutput({
      writeOut: (s) => void io.out.write(s),
      writeErr: (s) => void io.err.write(s),
      getOutHelpWidth: () => io.out.columns ?? 80,
      getErrHelpWidth: () => io.err.columns ?? 80,
    });
  p.command('run')
    .description('run the daemon (flags: termsync run --help)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[flags...]')
    .action(async (_flags: string[], _o: unknown, cmd: Command) => {
      ctx.exitCode = await runDaemon(cmd.args);
    });
  p.addCommand(simCommand());
  p.command('demo')
    .description('the daemon with simulated terminals on embedded defaults (what npm start runs)')
    .option('--data <dir>', 'data directory', './data/demo')
    .option('--terminals <n>', 'simulated terminals', (v) => Number(v), 4)
    .option('--admin-port <port>', 'admin API and status page port', (v) => Number(v), 51280)
    .option('--interval-ms <ms>', 'one enrollment every MS', (v) => Number(v), 3000)
    .option('--count <n>', 'stop enrolling after N users (0 = never)', (v) => Number(v), 0)
    .action(async (o) => {
      ctx.exitCode = await runDemo({ dataDir: o.data, terminals: o.terminals, adminPort: o.adminPort, intervalMs: o.intervalMs, count: o.count });
    });
  addAdminCommands(p, ctx);
  p.addHelpText(
    'after',
    '\nThe admin commands (terminals, users, events, settings, resync, backup) talk to a running\n' +
      "daemon's admin API: --admin URL (default $TERMSYNC_ADMIN or http://127.0.0.1:51280),\n" +
      '--token-file PATH ($TERMSYNC_ADMIN_TOKEN_FILE), --json. Exit codes: 0 ok, 1 failure, 2 usage error.',
  );
  return p;
}

/**
 * Runs the CLI with `argv` (the arguments after the program name) and returns
 * the exit code. `io` defaults to the process's streams; tests pass their own.
 */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const ctx: CliContext = { io, exitCode: EXIT_OK };
  try {
    await program(ctx).parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    return fail(e, io);
  }
}

const invoked = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').pop()!);
if (invoked) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
