// The `agent` command. `main()` returns an exit code; nothing deep inside calls process.exit.
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createRunner } from './exec.js';
import { ExitCode, InputError, UsageError, errorMessage } from './errors.js';
import { Facts } from './facts.js';
import { load, resolveEnv, type Loaded } from './load.js';
import { Lock, LockBusyError } from './lock.js';
import { suggest } from './compile.js';
import type { CompiledState } from './compile.js';
import type { Context } from './modules/types.js';
import { ConsoleReporter } from './report/console.js';
import { JsonReporter } from './report/json.js';
import type { Reporter } from './report/events.js';
import { Runner } from './runner.js';
import { Masker } from './secret.js';

declare const BRINE_VERSION: string | undefined;
export const VERSION = typeof BRINE_VERSION === 'string' ? BRINE_VERSION : 'dev';

export const DEFAULT_ROOT = '/srv/brine';
export const DEFAULT_LOCK = '/run/brine/agent.lock';

const USAGE = `usage: agent COMMAND [options]

commands:
  apply [--test] [--only ID…] [--json] [--cron]   converge this server (--test: change nothing, say what would change)
  validate                                         parse, render and check every state and pillar file
  show [--json]                                    the rendered states, secrets masked
  version

options:
  --root DIR     where states/, pillar/ and environment live (default ${DEFAULT_ROOT}, or $BRINE_ROOT)
  --env ENV      the environment (default: the one recorded in ROOT/environment)
  --wait SECS    how long apply waits for another run's lock (default 60)
  --verbose      also list states that were already correct

exit codes: 0 converged · 1 usage error · 2 a state failed · 3 invalid input, nothing applied · 4 another run holds the lock`;

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

const processIo: Io = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stdout.isTTY),
  env: process.env,
};

interface Parsed {
  command: string;
  root: string;
  env?: string;
  test: boolean;
  json: boolean;
  cron: boolean;
  verbose: boolean;
  only: string[];
  waitMs: number;
}

function parse(argv: string[], io: Io): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        test: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        cron: { type: 'boolean', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        only: { type: 'string', multiple: true },
        root: { type: 'string' },
        env: { type: 'string' },
        wait: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const command = values.help ? 'help' : values.version ? 'version' : (positionals[0] ?? 'help');
  const rest = positionals.slice(1);
  // `--only a b` and `--only a,b` and `--only a --only b` all work.
  const only = [...(values.only ?? []), ...(values.only ? rest : [])].flatMap((s) => s.split(',')).filter(Boolean);
  if (rest.length > 0 && !values.only) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const wait = values.wait === undefined ? 60 : Number(values.wait);
  if (!Number.isFinite(wait) || wait < 0) throw new UsageError(`--wait expects seconds, got "${values.wait}"`);
  return {
    command,
    root: values.root ?? io.env.BRINE_ROOT ?? DEFAULT_ROOT,
    env: values.env,
    test: values.test ?? false,
    json: values.json ?? false,
    cron: values.cron ?? false,
    verbose: values.verbose ?? false,
    only,
    waitMs: wait * 1000,
  };
}

function loadFor(p: Parsed): Loaded {
  const env = resolveEnv(p.root, p.env);
  if (!env) throw new UsageError(`no environment: pass --env ENV, or bootstrap this server (${p.root}/environment is missing)`);
  return load(p.root, env);
}

/** The states `--only` names (by ID or name), with everything they depend on. */
function selectOnly(states: CompiledState[], only: string[]): CompiledState[] {
  const wanted = new Set<CompiledState>();
  const add = (s: CompiledState) => {
    if (wanted.has(s)) return;
    wanted.add(s);
    s.deps.forEach((d) => add(d.state));
  };
  for (const id of only) {
    const matches = states.filter((s) => s.id === id || s.args.name === id);
    if (matches.length === 0) {
      const hint = suggest(id, [...new Set(states.map((s) => s.id))]);
      throw new UsageError(`--only: no state "${id}"${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
    matches.forEach(add);
  }
  return states.filter((s) => wanted.has(s));
}

async function apply(p: Parsed, io: Io): Promise<number> {
  const loaded = loadFor(p);
  const masker: Masker = loaded.pillar.masker;
  const states = p.only.length ? selectOnly(loaded.states, p.only) : loaded.states;
  const lock = new Lock(io.env.BRINE_LOCK ?? DEFAULT_LOCK);
  await lock.acquire(`agent apply${p.test ? ' --test' : ''}${p.cron ? ' --cron' : ''}`, p.waitMs);
  try {
    const ctx: Context = {
      runner: createRunner(masker),
      facts: new Facts(),
      masker,
      statesDir: loaded.statesDir,
      renderTemplate: (path, extra) => loaded.renderer.renderFile(path, extra),
    };
    const reporters: Reporter[] = [];
    if (p.json) reporters.push(new JsonReporter(io.stdout, masker));
    else
      reporters.push(
        new ConsoleReporter({
          write: io.stdout,
          masker,
          color: io.isTTY && !io.env.NO_COLOR,
          progress: io.isTTY,
          quietWhenClean: p.cron,
          verbose: p.verbose,
        }),
      );
    const summary = await new Runner(states, ctx, {
      env: loaded.env,
      test: p.test,
      startedBy: p.cron ? 'cron' : 'hand',
      reporters,
    }).run();
    for (const r of reporters) await r.close?.();
    return summary.failed + summary.skipped > 0 ? ExitCode.failed : ExitCode.ok;
  } finally {
    await lock.release();
  }
}

function validate(p: Parsed, io: Io): number {
  const loaded = loadFor(p);
  io.stdout(`valid: ${loaded.env} · ${loaded.files.length} state files · ${loaded.states.length} states · pillar from ${loaded.pillar.files.length} files\n`);
  return ExitCode.ok;
}

function show(p: Parsed, io: Io): number {
  const loaded = loadFor(p);
  const masker = loaded.pillar.masker;
  const rendered = loaded.states.map((s) => ({
    id: s.id,
    function: `${s.module}.${s.fn}`,
    file: `${s.place.file}:${s.place.line}`,
    args: s.args,
    ...(s.deps.length ? { requisites: s.deps.map((d) => ({ [d.kind]: `${d.state.module}.${d.state.fn} ${d.state.id}` })) } : {}),
    ...(Object.keys(s.conditions).length ? { conditions: s.conditions } : {}),
  }));
  const text = p.json ? JSON.stringify(rendered, null, 2) : stringify(rendered, { lineWidth: 0 });
  io.stdout(`${masker.mask(text)}\n`);
  return ExitCode.ok;
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let p: Parsed;
  try {
    p = parse(argv, io);
  } catch (err) {
    io.stderr(`agent: ${errorMessage(err)}\n${USAGE}\n`);
    return ExitCode.usage;
  }
  try {
    switch (p.command) {
      case 'apply':
        return await apply(p, io);
      case 'validate':
        return validate(p, io);
      case 'show':
        return show(p, io);
      case 'version':
        io.stdout(`brine ${VERSION} (node ${process.version})\n`);
        return ExitCode.ok;
      case 'help':
        io.stdout(`${USAGE}\n`);
        return ExitCode.ok;
      default: {
        const hint = suggest(p.command, ['apply', 'validate', 'show', 'version', 'help']);
        throw new UsageError(`unknown command "${p.command}"${hint ? ` (did you mean ${hint}?)` : ''}`);
      }
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`agent: ${err.message}\n`);
      return ExitCode.usage;
    }
    if (err instanceof InputError) {
      io.stderr(`error: ${err.format().split('\n').join('\nerror: ')}\nnothing was applied\n`);
      return ExitCode.invalid;
    }
    if (err instanceof LockBusyError) {
      io.stderr(`agent: ${err.message}\n`);
      return ExitCode.busy;
    }
    // A bug or an unexpected system error: say it plainly; the stack only on request.
    io.stderr(`agent: ${errorMessage(err)}\n${io.env.BRINE_DEBUG ? `${(err as Error).stack}\n` : ''}`);
    return ExitCode.failed;
  }
}
