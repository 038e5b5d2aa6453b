// Everything before a run touches the system: pillar, host facts, rendering, the state tree, and
// its validation. Any problem here is an InputError, and nothing has been applied.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile, type CompiledState } from './compile.js';
import { AggregateInputError, InputError, throwCollected } from './errors.js';
import type { PrepareContext } from './modules/types.js';
import { revealDeep, type Masker } from './secret.js';
import { readGrains, type Grains } from './grains.js';
import { registry } from './modules/index.js';
import { notifySettings, type NotifySettings } from './notify/settings.js';
import { deepMerge, environments, loadPillar, type Pillar } from './pillar.js';
import { Renderer } from './render/render.js';
import { loadTree, strayTopKeys } from './sls.js';
import { hasSaltTop } from './top.js';

export interface Loaded {
  /** Problems that do not stop a run but are worth saying (validate and apply print them). */
  warnings: InputError[];
  root: string;
  env: string;
  pillar: Pillar;
  grains: Grains;
  renderer: Renderer;
  statesDir: string;
  files: string[];
  states: CompiledState[];
  /** Where failed runs, deploys and rollbacks are told (pillar notify:, slack:), if anywhere. */
  notify: NotifySettings | null;
}

/** The environment this server was bootstrapped for (ROOT/environment), unless given. */
export function resolveEnv(root: string, given?: string): string | undefined {
  if (given) return given;
  const file = join(root, 'environment');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

/** More states than this is not a server's configuration, and would take minutes to check. */
const MAX_STATES = 50_000;

export interface LoadOptions {
  /** Pillar given on the command line (`--pillar JSON`), merged over the tree's, last. */
  pillar?: Record<string, unknown>;
}

export function load(root: string, env: string, options: LoadOptions = {}): Loaded {
  const statesDir = join(root, 'states');
  const pillarDir = join(root, 'pillar');
  if (!existsSync(statesDir)) throw new InputError(`no states directory at ${statesDir}`);
  if (!existsSync(pillarDir)) throw new InputError(`no pillar directory at ${pillarDir}`);
  const pillar = loadPillar(pillarDir, env, root);
  if (options.pillar) pillar.data = deepMerge(pillar.data, options.pillar);
  const notify = notifySettings(pillar, root);
  const grains = readGrains();
  const renderer = new Renderer(statesDir, { pillar: pillar.data, env, grains, masker: pillar.masker });
  try {
    const tree = loadTree(statesDir, env, renderer, { id: grains.id, grains, pillar: revealDeep(pillar.data) });
    const stray = strayTopKeys(statesDir, environments(pillarDir)).map(
      (k) => new InputError(`"${k.key}" matches no environment (there are ${environments(pillarDir).join(', ')})${k.meant ? `: did you mean ${k.meant}?` : ''}`, { file: 'states/top.yaml', line: k.line, key: k.key }),
    );
    const warnings = [...tree.warnings, ...stray];
    const topFile = hasSaltTop(statesDir) ? 'states/top.sls' : 'states/top.yaml';
    if (tree.states.length > MAX_STATES)
      throw new InputError(`${tree.states.length.toLocaleString('en')} states: at most ${MAX_STATES.toLocaleString('en')} in one tree`, { file: topFile });
    if (tree.states.length === 0)
      throw new InputError(`nothing applies to ${topFile.endsWith('.sls') ? `this server (${grains.id})` : env}: ${topFile.slice('states/'.length)} selects no state file for it${warnings.length ? ` (${warnings.map((w) => w.message).join('; ')})` : ''}`, { file: topFile });
    const states = compile(tree.states, registry, warnings);
    prepare(states, { renderTemplate: (path, extra) => renderer.renderFile(path, extra), pillar: pillar.data, env, masker: pillar.masker, statesDir });
    return { warnings, root, env, pillar, grains, renderer, statesDir, files: tree.files, states, notify };
  } catch (err) {
    // A rendered state file holds secrets' real values; an error may quote one.
    throw maskInputError(err, pillar.masker);
  }
}

/**
 * The checks a state can make before anything runs, with pillar and templates at hand (a file
 * template renders, an env.file's pillar keys exist): found here, a problem changes nothing.
 */
function prepare(states: CompiledState[], ctx: PrepareContext): void {
  const errors: InputError[] = [];
  for (const s of states) {
    try {
      refuseSecretCommands(s, ctx.masker);
      s.function.prepare?.(s.args, ctx);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // Errors in another file (a template) keep their place; others get the state's.
      const place = err.place.file ? err.place : { file: s.place.file, line: s.place.line, key: `${s.id}: ${err.place.key ?? ''}`.replace(/: $/, '') };
      errors.push(new InputError(err.message, place));
    }
  }
  throwCollected(errors);
}

/**
 * A secret on a command line is there for any user of the server to read, in ps or
 * /proc/PID/cmdline, for as long as the command runs: refused, with where to put it instead.
 */
function refuseSecretCommands(s: CompiledState, masker: Masker): void {
  const { onlyif = [], unless = [] } = s.conditions;
  const lines = [
    ...(s.function.commandLines?.(s.args) ?? []),
    ...onlyif.map((c, i) => ({ key: `onlyif[${i}]`, command: c as unknown })),
    ...unless.map((c, i) => ({ key: `unless[${i}]`, command: c as unknown })),
  ];
  for (const { key, command } of lines) {
    const words = command === undefined ? [] : Array.isArray(command) ? command : [command];
    if (!words.some((w) => typeof w === 'string' && masker.contains(w))) continue;
    throw new InputError(
      'a secret on a command line can be read by every user of the server (ps, /proc): pass it in the environment (env:, env_file:) or a file, and refer to it there',
      { key },
    );
  }
}

function maskInputError(err: unknown, masker: Masker): unknown {
  if (err instanceof AggregateInputError) return new AggregateInputError(err.errors.map((e) => maskInputError(e, masker) as InputError));
  if (err instanceof InputError) {
    const { file, line, key } = err.place;
    return new InputError(masker.mask(err.message), { file, line, key: key === undefined ? undefined : masker.mask(key) });
  }
  return err;
}
