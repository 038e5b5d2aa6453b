// Pillar: the data states are rendered with. `pillar/common.yaml`, the other top-level files
// (`devs.yaml`…), then `pillar/ENV/*.yaml`, deep-merged in that order. Values from files named
// `secrets*.yaml` are wrapped in `Secret`. Only the chosen environment's folder is ever read, so
// another environment's secrets can't leak into this one's run.
import { Ajv } from 'ajv';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { InputError } from './errors.js';
import { MIN_MASKED_LENGTH, Masker, Secret, revealDeep } from './secret.js';
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

function isPlainObject(v: unknown): v is Record<string, unknown> {
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

function wrapSecrets(value: unknown, path: string, file: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => wrapSecrets(v, `${path}[${i}]`, file));
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wrapSecrets(v, path ? `${path}.${k}` : k, file)]));
  if (value === null || value === undefined) return value;
  const text = String(value);
  if (text.length < MIN_MASKED_LENGTH)
    throw new InputError(`a secret must be at least ${MIN_MASKED_LENGTH} characters, or it cannot be masked in output (move plain settings to another pillar file)`, { file, key: path });
  return new Secret(text);
}

const isPillarFile = (name: string) => /\.ya?ml$/.test(name) && !/\.example\.ya?ml$/.test(name) && !/^schema\.ya?ml$/.test(name);
const isSecretsFile = (name: string) => /^secrets.*\.ya?ml$/.test(name);

function pillarFiles(pillarDir: string, env: string): string[] {
  const shared = readdirSync(pillarDir).filter((f) => isPillarFile(f) && isSecretsFile(f));
  if (shared.length > 0)
    throw new InputError('secrets belong in pillar/ENV/: a secrets file here would reach the servers of every environment', { file: `pillar/${shared[0]}` });
  const top = readdirSync(pillarDir, { withFileTypes: true })
    .filter((d) => d.isFile() && isPillarFile(d.name) && !isSecretsFile(d.name))
    .map((d) => d.name)
    .sort((a, b) => (a.startsWith('common.') ? -1 : b.startsWith('common.') ? 1 : a.localeCompare(b)));
  const envDir = join(pillarDir, env);
  // Secrets last, so an environment's secrets win over its plain values.
  const envFiles = readdirSync(envDir)
    .filter(isPillarFile)
    .sort((a, b) => Number(isSecretsFile(a)) - Number(isSecretsFile(b)) || a.localeCompare(b));
  return [...top.map((f) => join(pillarDir, f)), ...envFiles.map((f) => join(envDir, f))];
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
  const show = (p: string) => relative(shownBase, p) || p;
  if (!ENV_NAME.test(env)) throw new InputError(`invalid environment name "${env}" (lowercase letters, digits, - and _)`);
  if (!existsSync(join(pillarDir, env))) {
    const known = environments(pillarDir);
    throw new InputError(`unknown environment "${env}": there is no ${show(join(pillarDir, env))}/ (known: ${known.join(', ') || 'none'})`);
  }
  const files = pillarFiles(pillarDir, env);
  let data: PillarTree = {};
  for (const file of files) {
    const secret = isSecretsFile(file.split('/').pop()!);
    let value = parseYaml(readFileSync(file, 'utf8'), show(file), { secret }).toJS();
    if (value === null || value === undefined) continue;
    if (!isPlainObject(value)) throw new InputError('a pillar file must be a mapping of keys to values', { file: show(file), line: 1 });
    if (secret) value = wrapSecrets(value, '', show(file));
    data = deepMerge(data, value as PillarTree);
  }
  const masker = new Masker();
  masker.addFrom(data);
  const pillar: Pillar = { env, data, files: files.map(show), masker };
  for (const schemaFile of [join(pillarDir, 'schema.yaml'), join(pillarDir, env, 'schema.yaml')])
    if (existsSync(schemaFile)) checkSchema(pillar, schemaFile, show(schemaFile));
  return pillar;
}

/** pillar/schema.yaml: a JSON Schema the merged pillar must satisfy (e.g. required secrets). */
function checkSchema(pillar: Pillar, schemaFile: string, shown: string): void {
  const schema = parseYaml(readFileSync(schemaFile, 'utf8'), shown).toJS() as object;
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
