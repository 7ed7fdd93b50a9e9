#!/usr/bin/env node
// termsync's command line. Exit codes: 0 ok, 1 runtime failure, 2 usage or
// configuration error.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.js';
import { simCommand } from '../sim/cli.js';
import { runDemo } from './demo.js';
import { FlagError } from './flagfile.js';
import { runDaemon } from './run.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function fail(e: unknown): number {
  if (e instanceof FlagError || e instanceof ConfigError) {
    process.stderr.write(`termsync: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? EXIT_OK : EXIT_USAGE;
  process.stderr.write(`termsync: ${(e as Error).message ?? String(e)}\n`);
  return EXIT_FAILURE;
}

export function program(): Command {
  const p = new Command('termsync')
    .description('device gateway daemon for access-control terminals')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError();
  p.command('run')
    .description('run the daemon (flags: termsync run --help)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[flags...]')
    .action(async (_flags: string[], _o: unknown, cmd: Command) => {
      process.exitCode = await runDaemon(cmd.args);
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
      process.exitCode = await runDemo({ dataDir: o.data, terminals: o.terminals, adminPort: o.adminPort, intervalMs: o.intervalMs, count: o.count });
    });
  return p;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (e) {
    return fail(e);
  }
}

const invoked = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').pop()!);
if (invoked) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
