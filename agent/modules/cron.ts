// cron.present / cron.absent — one entry per file in /etc/cron.d
//
//   clearsessions:
//     cron.present:
//       - name: /srv/app/venv/bin/python /srv/app/current/manage.py clearsessions
//       - identifier: app-clearsessions      # the file: /etc/cron.d/app-clearsessions
//       - user: app
//       - minute: 15
//       - hour: 3
//       - env: {MAILTO: ops@example.com}
//   backup:
//     cron.present:
//       - name: /usr/local/bin/backup
//       - minute: random                     # as Salt: a value of its own per server, stable
//       - hour: 2
//   cleanup-on-boot:
//     cron.present:
//       - name: rm -rf /srv/app/tmp/cache
//       - special: '@reboot'
//
// `name` is the command, as in Salt. `identifier` names the file; it defaults to a slug of the
// command, so set it: then changing the command rewrites the entry instead of leaving the old one
// behind in another file. A file brine did not write (its first line is not `# managed by brine`)
// is never replaced nor removed: packages put their own entries in /etc/cron.d.
import { Type, type Static } from '@sinclair/typebox';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { findUser } from '../accounts.js';
import { AccountName, formatMode, pathClaim } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

/** Where cron reads its entries; tests point it at a fixture directory. */
export const cronPaths = { dir: '/etc/cron.d', machineId: '/etc/machine-id' };

const MANAGED_HEADER = '# managed by brine';

// cron ignores a file in cron.d whose name has a dot (and so also brine's temp files).
const IDENTIFIER = /^[A-Za-z0-9_-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TIME_FIELD = /^[A-Za-z0-9*/,-]+$/;

const TimeField = Type.Union([Type.String({ minLength: 1 }), Type.Integer({ minimum: 0 })], { default: '*' });
const SPECIALS = ['@reboot', '@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] as const;

const CronArgs = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'the command' }),
    identifier: Type.Optional(Type.String({ minLength: 1 })),
    minute: TimeField,
    hour: TimeField,
    daymonth: TimeField,
    month: TimeField,
    dayweek: TimeField,
    special: Type.Optional(Type.Union(SPECIALS.map((s) => Type.Literal(s)))),
    user: Type.String({ ...AccountName, default: 'root' }),
    /** Variables cron sets for the command: MAILTO, PATH, SHELL… */
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: false },
);

type CronArgs = Static<typeof CronArgs>;

const TIME_KEYS = ['minute', 'hour', 'daymonth', 'month', 'dayweek'] as const;

/** `php artisan schedule:run` → `php-artisan-schedule-run` */
export function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64)
    .replace(/-+$/, '');
}

function identifierOf(args: CronArgs): string {
  return args.identifier ?? slug(args.name);
}

function pathOf(args: CronArgs): string {
  return join(cronPaths.dir, identifierOf(args));
}

/**
 * Salt's `random` for a time field: a value in the field's range that is the server's own and the
 * same on every run — derived from /etc/machine-id, the entry and the field — so a fleet's
 * `minute: random` jobs spread over the hour and an entry never moves between runs.
 */
export function stableRandom(key: (typeof TIME_KEYS)[number], identifier: string): number {
  let seed: string;
  try {
    seed = readFileSync(cronPaths.machineId, 'utf8').trim();
  } catch {
    seed = '';
  }
  const { min, max } = FIELDS[key];
  const top = key === 'dayweek' ? 6 : key === 'daymonth' ? 28 : max;
  const n = createHash('sha256').update(`${seed || os.hostname()}\0${identifier}\0${key}`).digest().readUInt32BE(0);
  return min + (n % (top - min + 1));
}

function entryLine(args: CronArgs): string {
  const field = (k: (typeof TIME_KEYS)[number]) => (args[k] === 'random' ? String(stableRandom(k, identifierOf(args))) : String(args[k]));
  const when = args.special ?? TIME_KEYS.map(field).join(' ');
  return `${when} ${args.user} ${args.name}`;
}

function envLines(args: CronArgs): string[] {
  return Object.entries(args.env ?? {}).map(([k, v]) => `${k}=${v}`);
}

/** The whole file: header, environment, the entry. cron wants the last line ended. */
export function cronFile(args: CronArgs): string {
  return [`${MANAGED_HEADER}; edits here are overwritten`, ...envLines(args), entryLine(args), ''].join('\n');
}

/** cron wants root's files that nobody else can write; one holding a secret is not world-readable. */
function fileMode(args: CronArgs, ctx: Context): number {
  return ctx.masker.contains(cronFile(args)) ? 0o600 : 0o644;
}

/** What each field takes, as cron reads it (crontab(5)): numbers in range, names, *, ranges, steps, lists. */
const FIELDS: Record<(typeof TIME_KEYS)[number], { min: number; max: number; names?: string[] }> = {
  minute: { min: 0, max: 59 },
  hour: { min: 0, max: 23 },
  daymonth: { min: 1, max: 31 },
  month: { min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  dayweek: { min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
};

/** Why a time field is not one cron accepts (cron would skip the whole file), or undefined. */
export function timeFieldProblem(key: (typeof TIME_KEYS)[number], value: string): string | undefined {
  const f = FIELDS[key];
  const range = `${f.min}-${f.max}${f.names ? ` or ${f.names[0]}-${f.names.at(-1)}` : ''}`;
  const bad = (why: string) => `"${value}" is not a cron ${key} field: ${why}`;
  if (value === 'random') return undefined;
  if (!TIME_FIELD.test(value)) return bad('use digits, names, *, -, / and , only');
  const number = (text: string): number | undefined => {
    const name = f.names?.indexOf(text.toLowerCase());
    if (name !== undefined && name >= 0) return key === 'month' ? name + 1 : name;
    return /^\d+$/.test(text) ? Number(text) : undefined;
  };
  for (const item of value.split(',')) {
    const [base, step, extra] = item.split('/');
    if (extra !== undefined || base === '' || step === '') return bad(`"${item}" is not a value, a range or a step`);
    if (step !== undefined && !(/^\d+$/.test(step) && Number(step) >= 1)) return bad(`the step in "${item}" must be a number from 1`);
    if (base === '*') continue;
    const [from, to, more] = base!.split('-');
    if (more !== undefined) return bad(`"${base}" is not a range`);
    for (const end of [from, to]) {
      if (end === undefined) continue;
      const n = number(end);
      if (n === undefined) return bad(`"${end}" is not a number${f.names ? ' or a name' : ''} (${range})`);
      if (n < f.min || n > f.max) return bad(`${n} is out of range (${range})`);
    }
    if (to !== undefined && number(from!)! > number(to)!) return bad(`the range "${base}" goes backwards`);
  }
  return undefined;
}

function validateCron(args: CronArgs): ArgProblem[] {
  const problems: ArgProblem[] = [];
  if (args.identifier !== undefined) {
    if (!IDENTIFIER.test(args.identifier))
      problems.push({
        key: 'identifier',
        message: `"${args.identifier}" can't name a file in cron.d: use only letters, digits, _ and - (cron ignores names with a dot)`,
      });
  } else if (slug(args.name) === '') problems.push({ key: 'identifier', message: 'set identifier: the command gives no usable file name' });
  if (/[\r\n]/.test(args.name)) problems.push({ key: 'name', message: 'the command must be one line' });
  // cron turns an unescaped % into a newline and feeds the rest to the command's stdin.
  if (/(^|[^\\])%/.test(args.name))
    problems.push({ key: 'name', message: 'cron reads % as a newline: write \\% for a literal percent sign (date +\\%F)' });
  for (const k of TIME_KEYS) {
    if (args.special !== undefined && args[k] !== '*') problems.push({ key: k, message: `give either special or ${k}, not both` });
    else {
      const why = timeFieldProblem(k, String(args[k]));
      if (why) problems.push({ key: k, message: why });
    }
  }
  for (const [k, v] of Object.entries(args.env ?? {})) {
    if (!ENV_NAME.test(k)) problems.push({ key: `env.${k}`, message: 'not a variable name' });
    if (/[\r\n]/.test(v)) problems.push({ key: `env.${k}`, message: 'the value must be one line' });
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Facts

interface CronCurrent {
  path: string;
  /** null: no such file. */
  content: string | null;
  mode?: number;
  uid?: number;
}

async function readCronFile(args: CronArgs): Promise<CronCurrent> {
  const path = pathOf(args);
  let content: string;
  try {
    content = await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { path, content: null };
    throw err;
  }
  if (!content.startsWith(MANAGED_HEADER))
    throw new Error(`${path} exists and was not written by brine; choose another identifier, or remove the file by hand`);
  const st = await fs.stat(path);
  return { path, content, mode: st.mode & 0o7777, uid: st.uid };
}

/** The entry and the variables of a file brine wrote (lines after the header). */
function parseCronFile(content: string): { entry: string | null; env: string[] } {
  const lines = content.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  const env = lines.filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l));
  const entries = lines.filter((l) => !env.includes(l));
  return { entry: entries.length === 1 ? entries[0]! : entries.join(' / ') || null, env };
}

// ---------------------------------------------------------------------------------------------
// cron.present

const present = stateFunction(CronArgs, {
  commandLines: (args) => [{ key: 'name', command: args.name }],
  claims: (args) => [pathClaim(pathOf(args))],
  validate: validateCron,
  check: readCronFile,
  plan(current, args, ctx) {
    const wanted = entryLine(args);
    const mode = fileMode(args, ctx);
    if (current.content === null) {
      const changes: Change[] = [{ what: 'entry', old: null, new: wanted }];
      if (args.env) changes.push({ what: 'env', old: null, new: envLines(args).join(' ') });
      return { changes };
    }
    const changes: Change[] = [];
    const now = parseCronFile(current.content);
    const wantedEnv = envLines(args).join(' ');
    if (now.entry !== wanted) changes.push({ what: 'entry', old: now.entry, new: wanted });
    if (now.env.join(' ') !== wantedEnv) changes.push({ what: 'env', old: now.env.join(' ') || null, new: wantedEnv || null });
    // Anything else that differs (an edited comment, a stray blank line) is rewritten too.
    if (changes.length === 0 && current.content !== cronFile(args)) changes.push({ what: 'content', old: 'edited', new: 'as declared' });
    if (current.mode !== mode) changes.push({ what: 'mode', old: formatMode(current.mode ?? 0), new: formatMode(mode) });
    if (current.uid !== 0) changes.push({ what: 'user', old: current.uid, new: 'root' });
    return changes.length ? { changes } : { changes, reason: `${current.path} is as declared` };
  },
  async apply(args, _plan, current, ctx) {
    // cron skips the entry of a user that does not exist, silently: say it now.
    if (!(await findUser(args.user))) throw new Error(`user ${args.user} does not exist`);
    const dir = cronPaths.dir;
    try {
      await fs.access(dir);
    } catch {
      throw new Error(`${dir} does not exist (is cron installed? pkg.installed: cron)`);
    }
    // A temp name with a dot, which cron ignores, renamed over the file: cron never reads half.
    const temp = join(dir, `.${identifierOf(args)}.brine-${randomBytes(4).toString('hex')}`);
    try {
      const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await handle.writeFile(cronFile(args));
        await handle.chown(0, 0);
        await handle.chmod(fileMode(args, ctx));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, current.path);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    const handle = await fs.open(dir, 'r');
    await handle.sync().finally(() => handle.close());
  },
});

// ---------------------------------------------------------------------------------------------
// cron.absent

// The same arguments as cron.present, so turning an entry off is changing one word.
const absent = stateFunction(CronArgs, {
  claims: (args) => [pathClaim(pathOf(args))],
  validate: validateCron,
  check: readCronFile,
  plan(current) {
    if (current.content === null) return { changes: [], reason: `${current.path} does not exist` };
    return { changes: [{ what: 'entry', old: parseCronFile(current.content).entry, new: null }] };
  },
  async apply(_args, _plan, current) {
    await fs.rm(current.path, { force: true });
  },
});

export const cronModule: StateModule = {
  name: 'cron',
  functions: { present, absent },
};
