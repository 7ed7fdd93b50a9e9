// termsync users list | get ID | set FILE.json|- | import FILE.jsonl|- | export [FILE.jsonl]
//
// Import and export use JSON lines: one user JSON object (src/model/user.ts,
// the form GET /api/users returns) per line. Export pages through GET
// /api/users; import PUTs each line (a whole record: fields a line leaves out are
// vacant), reports the line numbers of bad lines and carries on, and exits 1 if
// any line failed.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { AdminHttpError, AdminUnreachableError, type AdminClient, type PutUserResult, type UserJson } from '../admin-client.js';
import { Progress } from '../progress.js';
import {
  EXIT_FAILURE,
  UsageError,
  action,
  addCommonOptions,
  clientFor,
  formatFields,
  formatTable,
  intArg,
  plural,
  printError,
  readInput,
  timeText,
  writeJson,
  type CliContext,
  type CliIo,
  type CommonOptions,
} from './common.js';

/** PUTs in flight at once during an import. */
const IMPORT_CONCURRENCY = 4;
const PAGE = 1000;

function userRows(users: UserJson[]): string {
  return formatTable(
    ['ID', 'NAME', 'CARDS', 'FINGERS', 'FACES', 'PIN', 'GROUPS', 'DISABLED'],
    users.map((u) => [
      u.id,
      u.name,
      u.cards?.length ?? 0,
      u.fingers?.length ?? 0,
      u.faces?.length ?? 0,
      u.pinSet ?? false,
      u.accessGroups?.join(',') ?? '',
      u.disabled ?? false,
    ]),
  );
}

function userFields(u: UserJson): string {
  const secs = (s: number | undefined) => (s ? timeText(s * 1000) : '');
  return formatFields([
    ['id', u.id],
    ['name', u.name],
    ['disabled', u.disabled ?? false],
    ['pin', u.pinSet ? 'set' : 'none'],
    ['cards', (u.cards ?? []).map((c) => `${c.type}:${c.data}`).join(' ')],
    ['fingers', (u.fingers ?? []).map((f) => `#${f.index}`).join(' ')],
    ['faces', (u.faces ?? []).map((f) => `#${f.index}`).join(' ')],
    ['access groups', (u.accessGroups ?? []).join(',')],
    ['auth group', u.authGroupId],
    ['valid from', secs(u.startTime)],
    ['valid until', secs(u.endTime)],
    ['security level', u.securityLevel],
    ['job codes', (u.jobCodes ?? []).map((j) => `${j.code}${j.label ? `=${j.label}` : ''}`).join(' ')],
    ['phrase', u.phrase],
    ['photo', u.photo ? `${u.photo.length / 2} bytes` : ''],
  ]);
}

function saved(r: PutUserResult, id: string): string {
  const what = r.created ? 'created' : r.changed ? 'updated' : 'unchanged (the server already held this record)';
  const push = r.pushedTo.length ? `; pushing to ${plural(r.pushedTo.length, 'terminal')}: ${r.pushedTo.join(', ')}` : '';
  return `user ${id} ${what}${push}\n`;
}

/** A user JSON object from text; throws with a message fit for "FILE:LINE: ..." */
function parseUserObject(text: string): Record<string, unknown> & { id: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('a user must be a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'string' || o.id === '') throw new Error('the user has no "id" (a non-empty string)');
  return o as Record<string, unknown> & { id: string };
}

interface ImportSummary {
  lines: number;
  imported: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: { line: number; id?: string; error: string }[];
  warnings: { line: number; id: string; warning: string }[];
  aborted?: string;
}

async function importUsers(client: AdminClient, io: CliIo, source: string, text: string, json: boolean): Promise<ImportSummary> {
  const lines = text.split(/\r?\n/);
  const work: { line: number; text: string }[] = [];
  lines.forEach((t, i) => {
    if (t.trim() !== '') work.push({ line: i + 1, text: t });
  });
  const s: ImportSummary = { lines: work.length, imported: 0, created: 0, updated: 0, unchanged: 0, failed: [], warnings: [] };
  const where = source === '-' ? 'stdin' : source;
  const progress = new Progress({ stream: io.err, label: 'importing users', total: work.length, unit: 'lines' });
  const bad = (line: number, error: string, id?: string) => {
    s.failed.push({ line, error, ...(id !== undefined ? { id } : {}) });
    if (!json) printError(io, `${where}:${line}: ${id !== undefined ? `user ${JSON.stringify(id)}: ` : ''}${error}`);
  };
  let next = 0;
  const worker = async () => {
    while (next < work.length && s.aborted === undefined) {
      const item = work[next++];
      let u: Record<string, unknown> & { id: string };
      try {
        u = parseUserObject(item.text);
      } catch (e) {
        bad(item.line, (e as Error).message);
        progress.tick();
        continue;
      }
      try {
        const r = await client.putUser(u.id, u);
        s.imported++;
        if (r.created) s.created++;
        else if (r.changed) s.updated++;
        else s.unchanged++;
        // The API never shows a PIN (only pinSet), so an export cannot carry one:
        // a user created from such a line has no PIN. Say so instead of losing it quietly.
        if (u.pinSet === true && u.pin === undefined && u.pinHash === undefined && r.user && !r.user.pinSet) {
          const warning = 'had a PIN, but the line does not carry it (exports never do); the user now has none';
          s.warnings.push({ line: item.line, id: u.id, warning });
          if (!json) io.err.write(`termsync: warning: ${where}:${item.line}: user ${JSON.stringify(u.id)} ${warning}\n`);
        }
      } catch (e) {
        // Nothing after this can succeed: stop instead of failing every line.
        if (e instanceof AdminUnreachableError || (e instanceof AdminHttpError && e.status === 401)) {
          s.aborted ??= e.message;
          bad(item.line, e.message, u.id);
        } else bad(item.line, (e as Error).message, u.id);
      }
      progress.tick();
    }
  };
  await Promise.all(Array.from({ length: Math.min(IMPORT_CONCURRENCY, Math.max(1, work.length)) }, worker));
  s.failed.sort((a, b) => a.line - b.line);
  if (s.aborted !== undefined) progress.fail(`stopped after ${progress.count} of ${work.length} lines`);
  else progress.done();
  return s;
}

export function addUsersCommand(parent: Command, ctx: CliContext): Command {
  const { io } = ctx;
  const group = parent.command('users').description("read and change the server's users (JSON, as the admin API shows them)");

  addCommonOptions(
    group
      .command('list')
      .description('list users in ID order')
      .option('--after <id>', 'start after this user ID')
      .option('--limit <n>', 'at most N users (default: all)', intArg(1, Number.MAX_SAFE_INTEGER)),
  ).action(
    action(ctx, async (o: CommonOptions & { after?: string; limit?: number }) => {
      const client = clientFor(o, io);
      const users: UserJson[] = [];
      if (o.limit !== undefined && o.limit <= PAGE) users.push(...(await client.users({ after: o.after, limit: o.limit })));
      else {
        for await (const u of client.allUsers({ after: o.after, pageSize: PAGE })) {
          users.push(u);
          if (o.limit !== undefined && users.length >= o.limit) break;
        }
      }
      if (o.json) writeJson(io, users);
      else io.out.write(users.length ? userRows(users) : 'no users\n');
    }),
  );

  addCommonOptions(group.command('get').description('show one user').argument('<id>', 'user ID')).action(
    action(ctx, async (id: string, o: CommonOptions) => {
      const u = await clientFor(o, io).user(id);
      if (o.json) writeJson(io, u);
      else io.out.write(userFields(u));
    }),
  );

  addCommonOptions(
    group
      .command('set')
      .description('create or replace a user from a JSON file ("-" reads stdin); the daemon pushes it to the terminals in scope')
      .argument('<file>', 'user JSON file, or - for stdin')
      .option('--merge', 'change only the fields the file gives (the others keep their stored values)'),
  ).action(
    action(ctx, async (file: string, o: CommonOptions & { merge?: boolean }) => {
      const text = await readInput(io, file);
      let u: Record<string, unknown> & { id: string };
      try {
        u = parseUserObject(text);
      } catch (e) {
        throw new UsageError(`${file === '-' ? 'stdin' : file}: ${(e as Error).message}`);
      }
      const client = clientFor(o, io);
      const r = o.merge
        ? await client.request<PutUserResult>('PUT', `/api/users/${encodeURIComponent(u.id)}?merge=1`, u)
        : await client.putUser(u.id, u);
      if (o.json) writeJson(io, r);
      else io.out.write(saved(r, u.id));
    }),
  );

  addCommonOptions(
    group
      .command('import')
      .description('create or replace users from JSON lines (one user per line; "-" reads stdin); bad lines are reported and skipped')
      .argument('<file>', 'JSON lines file, or - for stdin'),
  ).action(
    action(ctx, async (file: string, o: CommonOptions) => {
      const client = clientFor(o, io);
      const text = await readInput(io, file);
      const s = await importUsers(client, io, file, text, o.json === true);
      if (o.json) writeJson(io, s);
      else {
        const parts = [`${s.created} created`, `${s.updated} updated`, `${s.unchanged} unchanged`];
        io.out.write(`imported ${plural(s.imported, 'user')} (${parts.join(', ')})${s.failed.length ? `; ${plural(s.failed.length, 'line')} failed` : ''}\n`);
        if (s.aborted !== undefined) printError(io, `import stopped: ${s.aborted}`);
      }
      return s.failed.length > 0 ? EXIT_FAILURE : undefined;
    }),
  );

  addCommonOptions(
    group
      .command('export')
      .description('write every user as JSON lines (one user per line) to FILE, or to stdout')
      .argument('[file]', 'output file (written to FILE.partial, then renamed; mode 0600); - or none for stdout'),
  ).action(
    action(ctx, async (file: string | undefined, o: CommonOptions) => {
      const client = clientFor(o, io);
      const toStdout = file === undefined || file === '-';
      let total: number | undefined;
      try {
        total = (await client.status()).users;
      } catch (e) {
        if (e instanceof AdminUnreachableError) throw e;
        total = undefined; // an older daemon without /api/status: no total
      }
      const progress = new Progress({ stream: io.err, label: 'exporting users', total, unit: 'users' });
      const path = toStdout ? '' : resolve(io.cwd, file);
      const partial = `${path}.partial`;
      let fd: number | null = null;
      try {
        if (!toStdout) {
          try {
            fd = openSync(partial, 'w', 0o600);
          } catch (e) {
            throw new UsageError(`cannot write ${partial}: ${(e as Error).message}`);
          }
        }
        let n = 0;
        let chunk = '';
        const flush = () => {
          if (chunk === '') return;
          if (fd !== null) writeSync(fd, chunk);
          else io.out.write(chunk);
          chunk = '';
        };
        for await (const u of client.allUsers({ pageSize: PAGE })) {
          chunk += JSON.stringify(u) + '\n';
          n++;
          if (chunk.length > 1 << 16) flush();
          // the count may move while we page; never show more than 100%
          if (total !== undefined && n > total) progress.setTotal(n);
          progress.update(n);
        }
        flush();
        if (fd !== null) {
          closeSync(fd);
          fd = null;
          renameSync(partial, path);
        }
        progress.done();
        if (!toStdout) {
          if (o.json) writeJson(io, { path, users: n });
          else io.out.write(`exported ${plural(n, 'user')} to ${path}\n`);
        }
      } catch (e) {
        progress.fail();
        if (fd !== null) closeSync(fd);
        if (!toStdout) rmSync(partial, { force: true });
        throw e;
      }
    }),
  );

  return group;
}
