// Pillar: the data states are rendered with. `pillar/common.yaml`, the other top-level files
// (`devs.yaml`…), then `pillar/ENV/*.yaml`, deep-merged in that order. Values from files named
// `secrets*.yaml` are wrapped in `Secret`. Only the chosen environment's folder is ever read, so
// another environment's secrets can't leak into this one's run.
import { Ajv } from 'ajv';
import { existsSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join, relative } from 'node:path';
import type { Node } from 'yaml';
import { InputError } from './errors.js';
import { MIN_MASKED_LENGTH, Masker, Secret, revealDeep } from './secret.js';
import { Tree } from './treefile.js';
import { parseYaml } from './yamlfile.js';

export type PillarTree = Record<string, unknown>;

export interface Pillar {
  env: string;
  /** Merged data; secrets are `Secret` objects. */
  data: PillarTree;
  /** The files read, in merge order (relative to the pillar dir's parent, for messages). */
  files: string[];
  masker: Masker;
}

const ENV_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** A mapping (not a list, not a Secret). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Secret);
}

/** Later values win; mappings merge key by key; lists and scalars are replaced whole. */
export function deepMerge(base: PillarTree, over: PillarTree): PillarTree {
  const out: PillarTree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const old = out[k];
    out[k] = isPlainObject(old) && isPlainObject(v) ? deepMerge(old, v) : v;
  }
  return out;
}

/** Wraps every value of a secrets file in `Secret`; `at` gives a value's line in the file. */
function wrapSecrets(value: unknown, path: (string | number)[], file: string, at: (path: (string | number)[]) => number | undefined): unknown {
  if (Array.isArray(value)) return value.map((v, i) => wrapSecrets(v, [...path, i], file, at));
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wrapSecrets(v, [...path, k], file, at)]));
  if (value === null || value === undefined) return value;
  const text = String(value);
  // Masking by text needs a few characters: a shorter value would mask half of every line.
  if (text.length < MIN_MASKED_LENGTH)
    throw new InputError(`a secret must be at least ${MIN_MASKED_LENGTH} characters, or it cannot be masked in output (move plain settings to another pillar file)`, {
      file,
      line: at(path),
      key: path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join(''),
    });
  return new Secret(text);
}

const isPillarFile = (name: string) => /\.ya?ml$/.test(name) && !/\.example\.ya?ml$/.test(name) && !/^schema\.ya?ml$/.test(name);
const isSecretsFile = (name: string) => /^secrets.*\.ya?ml$/.test(name);

/** The pillar files of an environment, relative to the pillar tree, in merge order. */
function pillarFiles(tree: Tree, env: string): string[] {
  const shared = readdirSync(tree.root).filter((f) => isPillarFile(f) && isSecretsFile(f));
  if (shared.length > 0)
    throw new InputError('secrets belong in pillar/ENV/: a secrets file here would reach the servers of every environment', { file: tree.show(shared[0]!) });
  // Files (and links, which tree.text checks) at the top; directories are environments.
  const top = readdirSync(tree.root, { withFileTypes: true })
    .filter((d) => !d.isDirectory() && isPillarFile(d.name) && !isSecretsFile(d.name))
    .map((d) => d.name)
    .sort((a, b) => (a.startsWith('common.') ? -1 : b.startsWith('common.') ? 1 : a.localeCompare(b)));
  // Secrets last, so an environment's secrets win over its plain values.
  const envFiles = readdirSync(join(tree.root, env))
    .filter(isPillarFile)
    .sort((a, b) => Number(isSecretsFile(a)) - Number(isSecretsFile(b)) || a.localeCompare(b));
  return [...top, ...envFiles.map((f) => join(env, f))];
}

/** The environments a pillar tree defines (its sub-folders). */
export function environments(pillarDir: string): string[] {
  if (!existsSync(pillarDir)) return [];
  return readdirSync(pillarDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && ENV_NAME.test(d.name))
    .map((d) => d.name)
    .sort();
}

export function loadPillar(pillarDir: string, env: string, shownBase = join(pillarDir, '..')): Pillar {
  const tree = new Tree(pillarDir, relative(shownBase, pillarDir) || 'pillar');
  if (!ENV_NAME.test(env)) throw new InputError(`invalid environment name "${env}" (lowercase letters, digits, - and _)`);
  const envDir = statOrNull(join(pillarDir, env));
  if (!envDir) {
    const known = environments(pillarDir);
    throw new InputError(`unknown environment "${env}": there is no ${tree.show(env)}/ (known: ${known.join(', ') || 'none'})`);
  }
  if (!envDir.isDirectory()) throw new InputError(`${tree.show(env)} is a file, not a directory: an environment's pillar is a directory`, { file: tree.show(env) });
  const files = pillarFiles(tree, env);
  let data: PillarTree = {};
  for (const file of files) {
    const secret = isSecretsFile(file.split('/').pop()!);
    const shown = tree.show(file);
    const yaml = parseYaml(tree.text(file, { place: { file: shown } }), shown, { secret });
    let value = yaml.toJS();
    if (value === null || value === undefined) continue;
    if (!isPlainObject(value)) throw new InputError('a pillar file must be a mapping of keys to values', { file: shown, line: 1 });
    if (secret) value = wrapSecrets(value, [], shown, (path) => yaml.lineOf(yaml.doc.getIn(path, true) as Node | undefined));
    data = deepMerge(data, value as PillarTree);
  }
  const masker = new Masker();
  masker.addFrom(data);
  const pillar: Pillar = { env, data, files: files.map((f) => tree.show(f)), masker };
  for (const schemaFile of ['schema.yaml', join(env, 'schema.yaml')]) if (tree.resolve(schemaFile) !== null) checkSchema(pillar, tree, schemaFile);
  return pillar;
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** pillar/schema.yaml: a JSON Schema the merged pillar must satisfy (e.g. required secrets). */
function checkSchema(pillar: Pillar, tree: Tree, schemaFile: string): void {
  const shown = tree.show(schemaFile);
  const schema = parseYaml(tree.text(schemaFile, { place: { file: shown } }), shown).toJS() as object;
  const ajv = new Ajv({ allErrors: true, strict: false });
  let validate;
  try {
    validate = ajv.compile(schema);
  } catch (err) {
    throw new InputError(`invalid JSON Schema: ${(err as Error).message}`, { file: shown });
  }
  if (validate(revealDeep(pillar.data))) return;
  const first = validate.errors![0]!;
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const missing = first.keyword === 'required' ? (first.params as { missingProperty: string }).missingProperty : undefined;
  const key = [path, missing].filter(Boolean).join('.') || '(pillar)';
  // ajv messages may quote the offending value: mask it.
  const message = missing ? `missing in the ${pillar.env} pillar (required by ${shown})` : pillar.masker.mask(`${first.message} (${shown})`);
  throw new InputError(message, { file: shown, key: `pillar.${key}` });
}
