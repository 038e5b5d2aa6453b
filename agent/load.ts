// Everything before a run touches the system: pillar, host facts, rendering, the state tree, and
// its validation. Any problem here is an InputError, and nothing has been applied.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile, type CompiledState } from './compile.js';
import { InputError } from './errors.js';
import { readGrains, type Grains } from './grains.js';
import { registry } from './modules/index.js';
import { loadPillar, type Pillar } from './pillar.js';
import { Renderer } from './render.js';
import { loadTree } from './sls.js';

export interface Loaded {
  root: string;
  env: string;
  pillar: Pillar;
  grains: Grains;
  renderer: Renderer;
  statesDir: string;
  files: string[];
  states: CompiledState[];
}

/** The environment this server was bootstrapped for (ROOT/environment), unless given. */
export function resolveEnv(root: string, given?: string): string | undefined {
  if (given) return given;
  const file = join(root, 'environment');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

export function load(root: string, env: string): Loaded {
  const statesDir = join(root, 'states');
  const pillarDir = join(root, 'pillar');
  if (!existsSync(statesDir)) throw new InputError(`no states directory at ${statesDir}`);
  if (!existsSync(pillarDir)) throw new InputError(`no pillar directory at ${pillarDir}`);
  const pillar = loadPillar(pillarDir, env, root);
  const grains = readGrains();
  const renderer = new Renderer(statesDir, { pillar: pillar.data, env, grains });
  const tree = loadTree(statesDir, env, renderer);
  const states = compile(tree.states, registry);
  return { root, env, pillar, grains, renderer, statesDir, files: tree.files, states };
}
