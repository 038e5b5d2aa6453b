// The `agent` command. `main()` returns an exit code; nothing deep inside calls process.exit.
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYamlText, stringify } from 'yaml';
import { deepMerge, isPlainObject } from '../pillar.js';
import { ExitCode, InputError, UsageError, errorMessage } from '../errors.js';
import type { Loaded } from '../load.js';
import { readGrains } from '../grains.js';
import { traverse } from '../render/salt.js';
import type { Context } from '../modules/types.js';
import { Lock, LockBusyError } from '../lock.js';
import { suggest } from '../compile.js';
import type { CompiledState } from '../compile.js';
import { ConsoleReporter } from '../report/console.js';
import { JsonReporter } from '../report/json.js';
import type { Reporter, RunSummary, StateResult } from '../report/events.js';
import { JournalReporter } from '../report/journal.js';
import { NotifyReporter } from '../notify/reporter.js';
import { releaseOutcomes } from '../notify/releases.js';
import { readMemory } from '../notify/memory.js';
import { notifyTest } from './notify.js';
import { systemJournal } from '../journal.js';
import { Reactions, reactionPaths } from '../reactions.js';
import { Runner } from '../runner.js';
import { deployKey } from './deploykey.js';
import { postgresChild } from '../postgres/child.js';
import { DEFAULT_LOCK, DEFAULT_ROOT, loadFor, withRunContext, type Io, type Parsed } from './context.js';
export { DEFAULT_LOCK, DEFAULT_ROOT, type Io } from './context.js';
import { describeLastRun, history, runRecords } from './history.js';
import { releaseCommand, releasesCommand, rollbackCommand } from './releases.js';

declare const BRINE_VERSION: string | undefined;
export const VERSION = typeof BRINE_VERSION === 'string' ? BRINE_VERSION : 'dev';


const USAGE = `usage: agent COMMAND [options]

commands:
  apply [--test] [--only ID…] [--json] [--cron]   converge this server (--test: change nothing, say what would change)
        [--pillar JSON] [pillar=JSON]              pillar merged over the tree's for this run only (as Salt's pillar=)
  validate                                         parse, render and check every state and pillar file
  show [--json]                                    the rendered states, secrets masked
  grains [KEY…] [--json]                           this server's grains (Salt's names, and custom ones from /etc/brine/grains)
  history [--last N] [--json]                      past runs, from the systemd journal
  deploy-key ENV [--root REPO]                     (on your machine) make the app's deploy key for ENV
  status [--json]                                  the last run, and whether the server is converged now
  releases [--json] [--app APP]                    the app's releases: status, age, build and switch times, which is live
  rollback [RELEASE] [--force] [--app APP]         back to the last good release before the live one (or RELEASE), no rebuild
  release [--retry] [--app APP]                    converge the release now; --retry deploys a held-back commit again
  notify-test                                      send a test message to the Slack channel / webhook in pillar
  version

options:
  --root DIR     where states/, pillar/ and environment live (default ${DEFAULT_ROOT}, or $BRINE_ROOT)
  --env ENV      the environment (default: the one recorded in ROOT/environment)
  --wait SECS    how long apply waits for another run's lock (default 60)
  --splay SECS   wait a random time up to SECS before starting (cron: spread a fleet's runs)
  --verbose      also say why each state that was already correct needed nothing

exit codes: 0 converged · 1 usage error · 2 a state failed (status: not converged) · 3 invalid input, nothing applied
            4 another run holds the lock`;

const processIo: Io = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stdout.isTTY),
  env: process.env,
};

/** Commands that take positional arguments of their own. */
const COMMANDS_WITH_ARGUMENTS = ['deploy-key', '__postgres', '__swap-tree', 'rollback', 'grains'];

/** `--pillar '{"app": {"rev": "v2"}}'` (JSON, or YAML's flow form): mappings, merged in order. */
function commandLinePillar(texts: string[]): Record<string, unknown> {
  let merged: Record<string, unknown> = {};
  for (const text of texts) {
    let value: unknown;
    try {
      value = parseYamlText(text);
    } catch {
      value = undefined;
    }
    if (!isPlainObject(value)) throw new UsageError(`--pillar expects a mapping, as in --pillar '{"app": {"rev": "v2"}}'`);
    merged = deepMerge(merged, value);
  }
  return merged;
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
        splay: { type: 'string' },
        last: { type: 'string', short: 'n' },
        force: { type: 'boolean', default: false },
        app: { type: 'string' },
        retry: { type: 'boolean', default: false },
        pillar: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const command = values.help ? 'help' : values.version ? 'version' : (positionals[0] ?? 'help');
  // Salt's `state.apply pillar='{…}'` form, beside --pillar.
  const pillarArgs = [...(values.pillar ?? []), ...positionals.slice(1).filter((a) => a.startsWith('pillar=')).map((a) => a.slice('pillar='.length))];
  const rest = positionals.slice(1).filter((a) => !a.startsWith('pillar='));
  // `--only a b` and `--only a,b` and `--only a --only b` all work.
  const only = [...(values.only ?? []), ...(values.only ? rest : [])].flatMap((s) => s.split(',')).filter(Boolean);
  if (rest.length > 0 && !values.only && !COMMANDS_WITH_ARGUMENTS.includes(command)) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const seconds = (name: string, value: string | undefined, fallback: number) => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} expects seconds, got "${value}"`);
    return n;
  };
  const wait = seconds('wait', values.wait, 60);
  const splay = seconds('splay', values.splay, 0);
  const last = values.last === undefined ? 20 : Number(values.last);
  if (!Number.isInteger(last) || last < 1) throw new UsageError(`--last expects a number of runs, got "${values.last}"`);
  const cron = values.cron ?? false;
  return {
    command,
    // deploy-key parses its own options; --force is one of them.
    args: COMMANDS_WITH_ARGUMENTS.includes(command) ? [...rest, ...(values.force && command === 'deploy-key' ? ['--force'] : [])] : [],
    root: values.root ?? io.env.BRINE_ROOT ?? DEFAULT_ROOT,
    env: values.env,
    test: values.test ?? false,
    json: values.json ?? false,
    cron,
    verbose: values.verbose ?? false,
    only,
    waitMs: wait * 1000,
    splayMs: splay * 1000,
    last,
    // bootstrap.sh says who started the run; cron runs say so with --cron.
    startedBy: cron ? 'cron' : io.env.BRINE_STARTED_BY === 'bootstrap' ? 'bootstrap' : 'hand',
    app: values.app,
    retry: values.retry ?? false,
    force: values.force ?? false,
    ...(pillarArgs.length ? { pillar: commandLinePillar(pillarArgs) } : {}),
  };
}

/** The states `--only` names (by ID or name), with everything they depend on. */
function selectOnly(states: CompiledState[], only: string[]): CompiledState[] {
  const wanted = new Set<CompiledState>();
  // With a stack of its own: a long chain of requisites must not overflow the call stack.
  const add = (first: CompiledState) => {
    const todo = [first];
    for (let s = todo.pop(); s; s = todo.pop()) {
      if (wanted.has(s)) continue;
      wanted.add(s);
      todo.push(...s.deps.map((d) => d.state));
    }
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

/** Runs states with the run's context and reporters; the JSON report prints at the end. */
async function runStates(p: Parsed, io: Io, loaded: Loaded, ctx: Context, states: CompiledState[], test: boolean, reporters: Reporter[]): Promise<RunSummary> {
  if (io.env.BRINE_REACTIONS) reactionPaths.file = io.env.BRINE_REACTIONS;
  const reactions = await Reactions.load(test);
  const summary = await new Runner(states, ctx, { env: loaded.env, test, startedBy: p.startedBy, reporters, reactions, wholeTree: states === loaded.states }).run();
  for (const r of reporters) await r.close?.();
  return summary;
}

function reportersFor(p: Parsed, io: Io, loaded: Loaded): Reporter[] {
  const masker = loaded.pillar.masker;
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
  const journal = systemJournal();
  if (journal.available && io.env.BRINE_JOURNAL !== '0') reporters.push(new JournalReporter(journal, masker));
  if (loaded.notify && !p.test)
    reporters.push(new NotifyReporter({ settings: loaded.notify, masker, journal, releases: releaseOutcomes(loaded.states, new Date().toISOString()) }));
  return reporters;
}

export async function apply(p: Parsed, io: Io): Promise<number> {
  // A fleet on the same cron schedule should not converge (and hit the mirror) all at once. The
  // wait comes first: the tree is read after it, under the lock (withRunContext).
  if (p.splayMs > 0) await new Promise((r) => setTimeout(r, Math.floor(Math.random() * p.splayMs)));
  const summary = await withRunContext(p, io, `agent apply${p.test ? ' --test' : ''}${p.cron ? ' --cron' : ''}`, (loaded, ctx) => {
    const states = p.only.length ? selectOnly(loaded.states, p.only) : loaded.states;
    return runStates(p, io, loaded, ctx, states, p.test, reportersFor(p, io, loaded));
  });
  return summary.failed + summary.skipped > 0 ? ExitCode.failed : ExitCode.ok;
}

/** The last run, what failed in it, and whether the server is converged now (a --test pass). */
async function status(p: Parsed, io: Io): Promise<number> {
  const journal = systemJournal();
  const last = journal.available ? (await runRecords(journal, 20, io.env.BRINE_LOCK ?? DEFAULT_LOCK)).filter((r) => !r.test).at(-1) : undefined;
  const failedStates = last && last.result === 'failed' ? await journal.read([`BRINE_RUN_ID=${last.runId}`, 'BRINE_EVENT=state', 'BRINE_RESULT=failed']) : [];
  const collected: StateResult[] = [];
  const collector: Reporter = { on: (e) => void (e.kind === 'state-result' && collected.push(e.result)) };
  const { summary, loaded } = await withRunContext(p, io, 'agent status', async (loaded, ctx) => ({ summary: await runStates(p, io, loaded, ctx, loaded.states, true, [collector]), loaded }));
  const pending = collected.filter((r) => r.status === 'would-change' || r.status === 'failed');
  const converged = pending.length === 0;
  // Messages the last runs could not deliver are pending too (sent first by the next run).
  const waiting = loaded.notify ? (await readMemory()).outbox.length : 0;
  if (p.json) {
    io.stdout(`${loaded.pillar.masker.mask(JSON.stringify({ lastRun: last ?? null, converged, pending: pending.map((r) => ({ id: r.id, function: r.function, status: r.status, changes: r.changes })), notificationsWaiting: waiting }, null, 2))}\n`);
  } else {
    const lines: string[] = [];
    lines.push(describeLastRun(last));
    for (const f of failedStates) lines.push(`  failed: ${f.BRINE_FUNCTION} ${f.BRINE_NAME}`);
    lines.push(
      converged
        ? `converged now: yes (${summary.total} states checked)`
        : `converged now: no, ${pending.length} of ${summary.total} states would change or fail:`,
    );
    // An owed restart reads as one: `pending restart: nginx.site app changed (since …)`.
    const what = (c: StateResult['changes'][number]) => (c.what === 'refresh' && typeof c.new === 'string' && c.new.startsWith('pending') ? `${c.new.replace(/^pending since (\S+): (.*)$/, 'pending restart: $2, since $1')}` : c.what);
    for (const r of pending) lines.push(`  ${r.status === 'failed' ? '✗' : '?'} ${r.function} ${r.name}${r.changes.length ? ` (${r.changes.map(what).join(', ')})` : ''}`);
    if (waiting) lines.push(`notifications: ${waiting} not delivered yet, sent with the next run (journalctl -t agent BRINE_EVENT=notify says why)`);
    io.stdout(`${loaded.pillar.masker.mask(lines.join('\n'))}\n`);
  }
  return converged ? ExitCode.ok : ExitCode.failed;
}

/**
 * Puts the tree bootstrap.sh synced beside ROOT in its place. Under the run lock, so no run reads
 * states from one sync and pillar from another; two renames, so ROOT is never half-written.
 */
async function swapTree(p: Parsed, io: Io): Promise<number> {
  const next = p.args[0];
  if (!next || p.args.length !== 1) throw new UsageError('__swap-tree needs the synced tree');
  if (!existsSync(join(next, 'states')) || !existsSync(join(next, 'pillar'))) throw new UsageError(`${next} is not a synced tree (no states/ or pillar/)`);
  const lock = new Lock(io.env.BRINE_LOCK ?? DEFAULT_LOCK);
  await lock.acquire('bootstrap.sh: swapping in the synced tree', Math.max(p.waitMs, 600_000));
  try {
    const old = `${p.root}.old`;
    await rm(old, { recursive: true, force: true });
    if (existsSync(p.root)) await rename(p.root, old);
    await rename(next, p.root);
    await rm(old, { recursive: true, force: true });
  } finally {
    await lock.release();
  }
  return ExitCode.ok;
}

function validate(p: Parsed, io: Io): number {
  const loaded = loadFor(p);
  for (const w of loaded.warnings) io.stderr(`warning: ${w.format()}\n`);
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

/** `agent grains [KEY…]`: what templates see as grains (a colon path reaches inside: ip4_interfaces:eth0). */
function grainsCommand(p: Parsed, io: Io): number {
  const all = readGrains();
  const picked = p.args.length === 0 ? all : Object.fromEntries(p.args.map((k) => [k, traverse(all, k, null)]));
  io.stdout(p.json ? `${JSON.stringify(picked, null, 2)}\n` : stringify(picked, { lineWidth: 0 }));
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
      case 'grains':
        return grainsCommand(p, io);
      case 'history':
        return await history(p, io, io.env.BRINE_LOCK ?? DEFAULT_LOCK);
      case 'deploy-key':
        return await deployKey(p.args, p.root, io);
      case '__swap-tree':
        // Internal: bootstrap.sh's freshly synced tree replaces ROOT, under the run lock.
        return await swapTree(p, io);
      case '__postgres':
        // Internal: the Postgres client, run as the postgres OS user (peer authentication).
        return await postgresChild();
      case 'status':
        return await status(p, io);
      case 'releases':
        return await releasesCommand(p, io);
      case 'rollback':
        return await rollbackCommand(p, io);
      case 'release':
        return await releaseCommand(p, io, apply);
      case 'notify-test':
        return await notifyTest(p, io);
      case 'version':
        io.stdout(`brine ${VERSION} (node ${process.version})\n`);
        return ExitCode.ok;
      case 'help':
        io.stdout(`${USAGE}\n`);
        return ExitCode.ok;
      default: {
        const hint = suggest(p.command, ['apply', 'validate', 'show', 'grains', 'history', 'status', 'releases', 'rollback', 'release', 'notify-test', 'version', 'help']);
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
