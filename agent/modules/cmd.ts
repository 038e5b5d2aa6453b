// cmd.run — a command
//
//   collectstatic:
//     cmd.run:
//       - name: [/srv/app/venv/bin/python, manage.py, collectstatic, --noinput]
//       - cwd: /srv/app/current
//       - runas: app                  # or Salt's older user: app; group: to run as another group
//       - env: {DJANGO_SETTINGS_MODULE: app.settings}
//       - timeout: 300
//       - onchanges:
//         - git: app-checkout
//   nightly-dump:
//     cmd.run:
//       - name: pg_dump app | gzip > /var/backups/app.sql.gz
//       - shell: true
//       - creates: /var/backups/app.sql.gz
//
// A string command is split into words with no shell features; pipes, redirects and variables
// need `shell: true`, so a shell runs only where the user asked for one. Whether the command runs
// at all is the engine's business (`unless`, `onlyif`, `creates`, `onchanges`): once the engine
// gets here, it runs.
import { Type } from '@sinclair/typebox';
import { stat } from 'node:fs/promises';
import { findUser } from '../accounts.js';
import { CommandSyntaxError, commandArgv } from '../argv.js';
import { displayCommand, type RunOptions } from '../exec.js';
import { AccountName, Command } from './common.js';
import { stateFunction, type ArgProblem, type StateModule } from './types.js';

const RunArgs = Type.Object(
  {
    name: Command,
    shell: Type.Boolean({ default: false }),
    cwd: Type.Optional(Type.String({ pattern: '^/', description: 'an absolute path' })),
    runas: Type.Optional(AccountName),
    /** Salt's older name of runas. */
    user: Type.Optional(AccountName),
    /** The group to run as (with runas, or root's otherwise). */
    group: Type.Optional(AccountName),
    env: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), { additionalProperties: false })),
    /** Seconds; the default is the runner's (10 minutes). */
    timeout: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  },
  { additionalProperties: false },
);

/** The command as the user wrote it: the string itself, or the argv quoted for reading. */
function shown(command: string | string[]): string {
  return typeof command === 'string' ? command : displayCommand(command);
}

const TAIL_LINES = 10;

function tail(text: string): string {
  const lines = text.trimEnd().split('\n');
  return lines.length > TAIL_LINES ? ['…', ...lines.slice(-TAIL_LINES)].join('\n') : lines.join('\n');
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

// Exit codes a shell gives meaning to.
const EXIT_WORDS: Record<number, string> = { 126: 'not executable', 127: 'command not found' };

const run = stateFunction(RunArgs, {
  action: true,
  validate(args) {
    const problems: ArgProblem[] = [];
    if (typeof args.name === 'string' && !args.shell) {
      try {
        commandArgv(args.name);
      } catch (err) {
        if (!(err instanceof CommandSyntaxError)) throw err;
        problems.push({ key: 'name', message: err.message });
      }
    }
    if (args.runas !== undefined && args.user !== undefined) problems.push({ key: 'user', message: 'user is the older name of runas: give one of them' });
    if (Array.isArray(args.name) && args.shell)
      problems.push({ key: 'shell', message: 'shell: true needs the command as one string, not an argv list' });
    return problems;
  },
  commandLines: (args) => [{ key: 'name', command: args.name }],
  async check() {
    return null;
  },
  plan(_current, args) {
    return { changes: [{ what: 'command', old: null, new: shown(args.name) }] };
  },
  async apply(args, _plan, _current, ctx) {
    let argv = commandArgv(args.name, args.shell);
    const runas = args.runas ?? args.user;
    if (runas !== undefined || args.group !== undefined) {
      // The user may have been created by an earlier state of this run: look now, not at validate.
      if (runas !== undefined && !(await findUser(runas))) throw new Error(`user ${runas} does not exist`);
      argv = ['runuser', '-u', runas ?? 'root', ...(args.group !== undefined ? ['-g', args.group] : []), '--', ...argv];
    }
    const options: RunOptions = { allowFailure: true };
    if (args.cwd !== undefined) {
      // Otherwise the spawn error would read as "command not found".
      if (!(await isDirectory(args.cwd))) throw new Error(`cwd ${args.cwd} is not a directory`);
      options.cwd = args.cwd;
    }
    if (args.env !== undefined) options.env = args.env;
    if (args.timeout !== undefined) options.timeoutMs = Math.round(args.timeout * 1000);
    const result = await ctx.runner.run(argv, options);
    if (result.code === 0) return;
    const word = EXIT_WORDS[result.code];
    const parts = [`\`${shown(args.name)}\` exited ${result.code}${word ? ` (${word})` : ''}`];
    if (result.stderr.trim()) parts.push(`stderr:\n${tail(result.stderr)}`);
    if (result.stdout.trim()) parts.push(`stdout:\n${tail(result.stdout)}`);
    throw new Error(ctx.masker.mask(parts.join('\n')));
  },
});

export const cmdModule: StateModule = {
  name: 'cmd',
  functions: { run },
};
