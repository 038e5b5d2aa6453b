// env.file — the app's environment file, built from pillar
//
//   app-env:
//     env.file:
//       - name: /srv/app/shared/.env
//       - sources: [env, secrets]      # pillar keys, merged in order (later wins); the default
//       - aliases:                     # the app's own names for pillar values (a secret stays one)
//           LOCAL_PW: secrets.DB_PASSWORD
//       - extra:                       # more variables, after the pillar ones (they win)
//           BRINE_ENV: staging
//       - group: app                   # who may read it: the app's group (required)
//       - mode: '0640'                 # the default; a file holding a secret is never world-readable
//
// Each source is a pillar mapping of NAME: value (a dotted path such as `apps.web.env` reaches
// into nested pillar). Values from secrets*.yaml stay wrapped until the bytes are written, and
// the diff shows them as ********.
//
// The file is read the same way by python-dotenv (with or without its `${VAR}` interpolation) and
// by POSIX sh (`set -a; . ./.env; set +a`): one `NAME='value'` line per variable, in pillar order
// (a variable keeps the place where it first appeared), after a comment line saying brine manages
// it. A value is single-quoted, which both read literally; a value that single quotes can't carry
// the same way to both (it holds a ', or a \ that python-dotenv would read as an escape) is
// double-quoted with \ and " escaped, which both read alike as long as it holds no $ or `. A value
// that no quoting keeps identical for both (a ' or such a \ together with $ or `; a `${…}`, which
// python-dotenv expands even in single quotes; a \ at the very end) is refused, naming the
// variable, never its value. Newlines are kept inside the quotes.
import { Type } from '@sinclair/typebox';
import * as fs from 'node:fs/promises';
import { dirname } from 'node:path';
import { findGroup, findUser } from '../accounts.js';
import { unifiedDiff, writeFileAtomic } from '../atomic.js';
import { InputError } from '../errors.js';
import { MASK, isSecret } from '../secret.js';
import { AccountName, Mode, formatMode, parseMode, pathClaim } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_MODE = '0640';
const HEADER = '# Managed by brine (env.file): changes made here are overwritten on the next run.\n';

const FileArgs = Type.Object(
  {
    name: Type.String({ pattern: '^/', description: 'an absolute path' }),
    sources: Type.Array(Type.String({ minLength: 1 }), { default: ['env', 'secrets'] }),
    aliases: Type.Optional(Type.Record(Type.String(), Type.String({ minLength: 1, description: 'a pillar key (secrets.DB_PASSWORD)' }))),
    extra: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]))),
    user: Type.String({ ...AccountName, default: 'root' }),
    group: AccountName,
    mode: Type.Optional(Mode),
    makedirs: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

export interface EnvVar {
  name: string;
  value: string;
  /** From a secrets pillar, or holding a secret's text: never shown, never world-readable. */
  secret: boolean;
}

/** Where a variable came from, for messages: `secrets.DB_PASSWORD`, `extra.BRINE_ENV`. */
type Origin = string;

/** Stands for an account that does not exist (yet); never equal to a real id. */
const UNKNOWN_ID = -2;

function lookup(pillar: Record<string, unknown>, path: string): { found: boolean; value: unknown } {
  let node: unknown = pillar;
  for (const part of path.split(/[.:]/)) {
    if (node === null || typeof node !== 'object' || Array.isArray(node) || isSecret(node) || !Object.prototype.hasOwnProperty.call(node, part))
      return { found: false, value: undefined };
    node = (node as Record<string, unknown>)[part];
  }
  return { found: true, value: node };
}

/** Every secret's text in the pillar, and the forms templates commonly turn it into. */
function secretTexts(tree: unknown, out: string[] = []): string[] {
  if (isSecret(tree)) {
    const text = tree.reveal();
    if (text) out.push(text, encodeURIComponent(text));
  } else if (Array.isArray(tree)) tree.forEach((v) => secretTexts(v, out));
  else if (tree && typeof tree === 'object') Object.values(tree).forEach((v) => secretTexts(v, out));
  return out;
}

/** The variables, in order: each source's mapping merged over the previous, then `aliases`, then `extra`. */
export function collectVars(args: { sources: string[]; aliases?: Record<string, string>; extra?: Record<string, unknown> }, ctx: Pick<Context, 'pillar' | 'masker'>): EnvVar[] {
  const merged = new Map<string, { value: unknown; origin: Origin }>();
  for (const source of args.sources) {
    const { found, value } = lookup(ctx.pillar, source);
    if (!found) throw new InputError(`the pillar has no "${source}" (env.file takes its variables from ${args.sources.join(', ')})`, { key: 'sources' });
    if (value === null || typeof value !== 'object' || Array.isArray(value) || isSecret(value))
      throw new InputError(`pillar "${source}" must be a mapping of NAME: value`, { key: 'sources' });
    for (const [name, v] of Object.entries(value)) merged.set(name, { value: v, origin: `${source}.${name}` });
  }
  for (const [name, path] of Object.entries(args.aliases ?? {})) {
    const { found, value } = lookup(ctx.pillar, path);
    if (!found) throw new InputError(`the pillar has no "${path}" (the alias ${name} takes its value)`, { key: `aliases.${name}` });
    merged.set(name, { value, origin: `aliases.${name}` });
  }
  for (const [name, v] of Object.entries(args.extra ?? {})) merged.set(name, { value: v, origin: `extra.${name}` });

  const secrets = secretTexts(ctx.pillar).filter((s) => s.length >= 4);
  const vars: EnvVar[] = [];
  for (const [name, { value, origin }] of merged) {
    if (!NAME.test(name)) throw new InputError(`"${name}" is not a valid variable name (letters, digits and _, not starting with a digit)`, { key: origin });
    let text: string;
    if (isSecret(value)) text = value.reveal();
    else if (value === null || value === undefined) text = '';
    else if (typeof value === 'string') text = value;
    else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') text = String(value);
    else throw new InputError(`must be a single value, not a ${Array.isArray(value) ? 'list' : 'mapping'}`, { key: origin });
    const secret = isSecret(value) || ctx.masker.contains(text) || secrets.some((s) => text.includes(s));
    vars.push({ name, value: text, secret });
  }
  return vars;
}

/** Why a value can't be written for both readers, or undefined. Never mentions the value. */
function unrepresentable(value: string): string | undefined {
  if (value.includes('\0')) return 'holds a NUL character, which no environment variable can';
  if (/\$\{[^}]*\}/.test(value)) return "holds ${…}, which python-dotenv would expand and sh would not in single quotes";
  return undefined;
}

/** One value, quoted so that python-dotenv and sh read exactly `value` (see the header comment). */
export function quoteValue(value: string): string {
  // Before a closing quote, python-dotenv takes a \ for an escaped quote, in either kind of quotes.
  if (value.endsWith('\\')) throw new Error('ends with \\, which python-dotenv would read as escaping the closing quote');
  // python-dotenv reads \\ and \' in single quotes as escapes; sh reads everything literally.
  if (!value.includes("'") && !value.includes('\\\\')) return `'${value}'`;
  // In double quotes both read \\ as \ and \" as ", but only sh expands $ and `.
  if (!value.includes('$') && !value.includes('`')) return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  throw new Error("holds ' or \\ together with $ or `, which no quoting keeps the same for python-dotenv and sh");
}

/** The file's bytes. `show` chooses what a value looks like (the real one, or masked). */
export function renderEnv(vars: EnvVar[], show: (v: EnvVar) => string = (v) => quoteValue(v.value)): string {
  return HEADER + vars.map((v) => `${v.name}=${show(v)}\n`).join('');
}

/** Checks every value can be written; throws naming the variable (never the value). */
function checkValues(vars: EnvVar[]): void {
  for (const v of vars) {
    const why = unrepresentable(v.value);
    try {
      if (why) throw new Error(why);
      quoteValue(v.value);
    } catch (err) {
      throw new InputError(`the value ${(err as Error).message}; change the value`, { key: v.name });
    }
  }
}

/**
 * Reads back a file in the format renderEnv writes (for the diff only): NAME → raw value text.
 * Lines it doesn't understand are kept under a synthetic name so they still show, masked.
 */
export function parseEnvFile(text: string): { name: string; raw: string }[] {
  const out: { name: string; raw: string }[] = [];
  let i = 0;
  const lines = text.split('\n');
  while (i < lines.length) {
    const line = lines[i]!;
    i++;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) {
      out.push({ name: '', raw: line });
      continue;
    }
    let raw = m[2]!;
    const quote = raw[0];
    if (quote === "'" || quote === '"') {
      // A quoted value may go on over several lines until its closing quote.
      const closed = (s: string) => (quote === "'" ? /^'[^']*'$/.test(s) : /^"(?:\\[\s\S]|[^"\\])*"$/.test(s));
      while (!closed(raw) && i < lines.length) raw += `\n${lines[i++]}`;
    }
    out.push({ name: m[1]!, raw });
  }
  return out;
}

/**
 * Old and new contents as they may be shown: every secret value is the mask. A secret that
 * changed shows as a changed line, without either value. Variables of the old file that are not
 * wanted any more are masked too: brine can't know whether they were secret.
 */
export function maskedDiff(path: string, oldText: string | null, vars: EnvVar[]): string {
  const shownNew = renderEnv(vars, (v) => (v.secret ? `'${MASK}'` : quoteValue(v.value)));
  if (oldText === null) return unifiedDiff(path, '', shownNew);
  const wanted = new Map(vars.map((v) => [v.name, v]));
  const oldLines = parseEnvFile(oldText).map(({ name, raw }) => {
    const v = wanted.get(name);
    if (!name) return MASK;
    if (!v) return `${name}='${MASK}'`;
    if (!v.secret) return `${name}=${raw}`;
    return raw === quoteValue(v.value) ? `${name}='${MASK}'` : `${name}='${MASK}' (old value)`;
  });
  const header = oldText.startsWith(HEADER) ? HEADER : '';
  return unifiedDiff(path, header + oldLines.map((l) => `${l}\n`).join(''), shownNew);
}

interface EnvCurrent {
  exists: boolean;
  content: string | null;
  uid: number;
  gid: number;
  mode: number;
  userName: string;
  groupName: string;
  vars: EnvVar[];
  wantedContent: string;
  wantedUid: number;
  wantedGid: number;
}

const file = stateFunction(FileArgs, {
  claims: (args) => [pathClaim(args.name)],
  validate(args) {
    const problems: ArgProblem[] = [];
    for (const key of ['aliases', 'extra'] as const) {
      const bad = Object.keys(args[key] ?? {}).find((k) => !NAME.test(k));
      if (bad !== undefined) problems.push({ key, message: `"${bad}" is not a valid variable name (letters, digits and _, not starting with a digit)` });
    }
    return problems;
  },
  prepare(args, ctx) {
    const vars = collectVars(args, ctx);
    checkValues(vars);
    const mode = parseMode(args.mode ?? DEFAULT_MODE);
    if (vars.some((v) => v.secret) && mode & 0o007) throw new InputError(`mode ${formatMode(mode)} would make a file holding secrets world-readable`, { key: 'mode' });
  },
  async check(args, ctx): Promise<EnvCurrent> {
    const vars = collectVars(args, ctx);
    checkValues(vars);
    const mode = parseMode(args.mode ?? DEFAULT_MODE);
    if (vars.some((v) => v.secret) && mode & 0o007)
      throw new InputError(`mode ${formatMode(mode)} would make a file holding secrets world-readable`, { key: 'mode' });
    let st = null;
    try {
      st = await fs.lstat(args.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (st && !st.isFile()) throw new Error(`${args.name} is not a regular file; remove it first (file.absent)`);
    const content = st ? await fs.readFile(args.name, 'utf8') : null;
    const [user, group] = await Promise.all([findUser(args.user), findGroup(args.group)]);
    const [nowUser, nowGroup] = st ? await Promise.all([findUser(st.uid), findGroup(st.gid)]) : [undefined, undefined];
    return {
      exists: st !== null,
      content,
      uid: st?.uid ?? -1,
      gid: st?.gid ?? -1,
      mode: st ? st.mode & 0o7777 : 0,
      userName: nowUser?.name ?? String(st?.uid),
      groupName: nowGroup?.name ?? String(st?.gid),
      vars,
      wantedContent: renderEnv(vars),
      wantedUid: user?.uid ?? UNKNOWN_ID,
      wantedGid: group?.gid ?? UNKNOWN_ID,
    };
  },
  plan(current, args) {
    const changes: Change[] = [];
    const mode = parseMode(args.mode ?? DEFAULT_MODE);
    if (!current.exists) {
      changes.push(
        { what: 'file', old: null, new: 'created', diff: maskedDiff(args.name, null, current.vars) },
        { what: 'user', old: null, new: args.user },
        { what: 'group', old: null, new: args.group },
        { what: 'mode', old: null, new: formatMode(mode) },
      );
      return { changes };
    }
    if (current.content !== current.wantedContent) changes.push({ what: 'content', diff: maskedDiff(args.name, current.content, current.vars) });
    if (current.uid !== current.wantedUid) changes.push({ what: 'user', old: current.userName, new: args.user });
    if (current.gid !== current.wantedGid) changes.push({ what: 'group', old: current.groupName, new: args.group });
    if (current.mode !== mode) changes.push({ what: 'mode', old: formatMode(current.mode), new: formatMode(mode) });
    return { changes, reason: changes.length ? undefined : `the file has the ${current.vars.length} variables, owner and mode it should` };
  },
  async apply(args, plan, current) {
    if (current.wantedUid === UNKNOWN_ID) throw new Error(`user ${args.user} does not exist`);
    if (current.wantedGid === UNKNOWN_ID) throw new Error(`group ${args.group} does not exist`);
    const owner = { uid: current.wantedUid, gid: current.wantedGid, mode: parseMode(args.mode ?? DEFAULT_MODE) };
    const writes = plan.changes.some((c) => c.what === 'file' || c.what === 'content');
    if (!writes) {
      // Mode first: a file being narrowed must not be readable by the new group in between.
      await fs.chmod(args.name, owner.mode);
      await fs.chown(args.name, owner.uid, owner.gid);
      return;
    }
    if (args.makedirs) await fs.mkdir(dirname(args.name), { recursive: true });
    else
      await fs.stat(dirname(args.name)).catch(() => {
        throw new Error(`directory ${dirname(args.name)} does not exist (set makedirs: true to create it)`);
      });
    await writeFileAtomic(args.name, current.wantedContent, owner);
  },
});

export const envModule: StateModule = {
  name: 'env',
  functions: { file },
};
