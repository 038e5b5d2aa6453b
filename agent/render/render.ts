// Jinja-syntax rendering (nunjucks) of state files and file templates. Pillar is strict: reading a
// key that does not exist is an error naming the key, the file and the line — never an empty
// string in a config file. Optional keys are read with `pillar.get('a:b', default)`, as in Salt.
import nunjucks from 'nunjucks';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative } from 'node:path';
import { InputError } from '../errors.js';
import { Masker, isSecret } from '../secret.js';
import { installSalt, saltFunctions, slsVariables } from './salt.js';
import { STRICT, Undefined, installPython, refuseUndefinedFilters, undefinedAware } from './python.js';
import { SecretUseError, guardFilters, installSecretGuards, withMasker } from './secrets.js';
import { Tree } from '../treefile.js';
import type { Grains } from '../grains.js';

/**
 * What one render may cost: its output, the steps of its loops, its time, the items of one range().
 * Past any of them it is an input error naming the file, in seconds and bounded memory, never
 * minutes of CPU or an out-of-memory crash (a loop of 100 million took over a minute here).
 */
export const renderLimits = { outputChars: 16 * 1024 * 1024, steps: 1_000_000, ms: 10_000, rangeItems: 1_000_000 };

class RenderLimitError extends Error {
  override name = 'RenderLimitError';
}

/** The budget of the render in progress (renders are synchronous: one at a time). */
let budget: { output: number; steps: number; deadline: number } | undefined;

const runtime = (nunjucks as unknown as { runtime: { suppressValue: (v: unknown, a: boolean) => unknown; Frame: { prototype: { set: (...a: unknown[]) => unknown } } } }).runtime;
const suppressValue = runtime.suppressValue;
runtime.suppressValue = function (value: unknown, autoescape: boolean) {
  const out = suppressValue.call(this, value, autoescape);
  if (budget && typeof out === 'string' && (budget.output += out.length) > renderLimits.outputChars)
    throw new RenderLimitError(`the output is over ${renderLimits.outputChars / 1024 / 1024} MB (a loop too big?)`);
  return out;
};
const frameSet = runtime.Frame.prototype.set;
// Every loop iteration binds its variables with frame.set, and so does {% set %}: the place to
// count steps, watch the clock, and catch a string doubled until memory runs out.
runtime.Frame.prototype.set = function (this: unknown, ...args: unknown[]) {
  if (budget) {
    if (++budget.steps > renderLimits.steps) throw new RenderLimitError(`more than ${renderLimits.steps.toLocaleString('en')} loop steps (a loop too big?)`);
    if ((budget.steps & 1023) === 0 && Date.now() > budget.deadline) throw new RenderLimitError(`rendering took more than ${renderLimits.ms / 1000} s (a loop too big?)`);
    if (typeof args[1] === 'string' && args[1].length > renderLimits.outputChars) throw new RenderLimitError(`a value is over ${renderLimits.outputChars / 1024 / 1024} MB`);
  }
  return frameSet.apply(this, args);
};

/**
 * Runs one render within its budget. Literal text is written to the output without passing
 * suppressValue, so the finished output is measured too; a string past what V8 holds is a
 * RangeError, which says the same.
 */
function withinBudget(render: () => string): string {
  const outer = budget;
  budget = { output: 0, steps: 0, deadline: Date.now() + renderLimits.ms };
  let out: string;
  try {
    out = render();
  } catch (err) {
    if (err instanceof RangeError || /Invalid string length/.test((err as Error)?.message ?? '')) throw new RenderLimitError('the output grew past what memory can hold (a loop too big?)');
    throw err;
  } finally {
    budget = outer;
  }
  if (out.length > renderLimits.outputChars) throw new RenderLimitError(`the output is over ${renderLimits.outputChars / 1024 / 1024} MB (a loop too big?)`);
  return out;
}

/** range() as Jinja's, but refusing one so long that building it would be the problem. */
function range(start: number, stop?: number, step = 1): number[] {
  const [from, to] = stop === undefined ? [0, start] : [start, stop];
  if (!step) throw new Error('range: step cannot be 0');
  const count = Math.max(0, Math.ceil((to - from) / step));
  if (count > renderLimits.rangeItems) throw new RenderLimitError(`range of ${count.toLocaleString('en')} items: at most ${renderLimits.rangeItems.toLocaleString('en')}`);
  return Array.from({ length: count }, (_, i) => from + i * step);
}

// Properties nunjucks and JavaScript probe on any value; reading them must not throw.
const PROBED = new Set(['then', 'toJSON', 'length', '__keywords', 'constructor', 'prototype', 'toString', 'valueOf', 'inspect', 'nodeType']);

/**
 * Wraps a tree so that a missing key reads as an Undefined naming its path (python.ts: false in a
 * test, an error naming the key when printed or used).
 */
export function strict<T>(value: T, path: string): T {
  // A Secret is handed over as itself: secrets.ts decides what a template may do with it.
  if (value === null || typeof value !== 'object' || isSecret(value)) return value;
  return new Proxy(value as object, {
    get(target, prop, receiver) {
      if (prop === STRICT) return true;
      if (typeof prop === 'symbol') return Reflect.get(target, prop, receiver);
      if (Object.prototype.hasOwnProperty.call(target, prop) || (Array.isArray(target) && prop in target))
        return strict(Reflect.get(target, prop, receiver), Array.isArray(target) ? `${path}[${prop}]` : `${path}.${prop}`);
      if (prop === 'get' && !Array.isArray(target))
        return (key: string, fallback?: unknown) => strict(lookup(target, key, fallback), `${path}.${key.replace(/:/g, '.')}`);
      if (prop === 'items' && !Array.isArray(target)) return () => Object.entries(target).map(([k, v]) => [k, strict(v, `${path}.${k}`)]);
      if (prop === 'keys' && !Array.isArray(target)) return () => Object.keys(target);
      if (prop === 'values' && !Array.isArray(target)) return () => Object.entries(target).map(([k, v]) => strict(v, `${path}.${k}`));
      if (PROBED.has(prop) || prop in target) return Reflect.get(target, prop, receiver);
      return new Undefined(`${path}.${prop}`);
    },
  }) as T;
}

/** Salt's `pillar.get('app:domain', 'example.com')`: a colon path, with a fallback. */
function lookup(tree: object, key: string, fallback: unknown): unknown {
  let node: unknown = tree;
  for (const part of key.split(':')) {
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, part)) return fallback ?? null;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

export interface RenderScope {
  pillar: Record<string, unknown>;
  env: string;
  grains: Grains;
  /** Learns the text a template makes from a secret (`| b64encode`, `~`), to mask it in output. */
  masker?: Masker;
}

export class Renderer {
  readonly #env: nunjucks.Environment;
  readonly #loader: TreeTemplateLoader;
  readonly #scope: Record<string, unknown>;
  readonly #baseDir: string;
  readonly #masker: Masker;

  /** How a template's path is shown in messages: relative to the states dir, as `states/…`. */
  readonly #show = (path: string): string => (path.startsWith(`${this.#baseDir}/`) ? `states/${path.slice(this.#baseDir.length + 1)}` : path);

  constructor(baseDir: string, scope: RenderScope) {
    this.#baseDir = baseDir;
    this.#loader = new TreeTemplateLoader(new Tree(baseDir, 'states'));
    this.#env = new nunjucks.Environment(this.#loader as unknown as nunjucks.ILoader, {
      autoescape: false,
      throwOnUndefined: true,
    });
    this.#env.addGlobal('range', range);
    // Secrets stay Secrets in templates: printed whole they are their real value (every printer
    // masks it again by value); what filters and `~` make of them is a Secret the masker learns.
    installSecretGuards();
    guardFilters(this.#env);
    // Python's methods, slices, truth and `do`; a missing key is false when tested, an error when used.
    installPython(this.#env);
    undefinedAware(this.#env);
    refuseUndefinedFilters(this.#env);
    // Salt's filters, import_yaml/load_yaml, and salt['pillar.get'] & co.
    installSalt(this.#env, (path, source, from) => this.#importFile(path, source, from));
    this.#masker = scope.masker ?? new Masker();
    const pillar = strict(scope.pillar, 'pillar');
    const grains = strict(scope.grains, 'grains');
    this.#scope = { pillar, env: scope.env, grains, salt: saltFunctions(pillar, grains), saltenv: 'base' };
  }

  /**
   * A file `{% import_yaml %}` reads, rendered as a template first (as Salt does). Its own error
   * is kept to be thrown as it is: nunjucks would wrap it into the importing template's.
   */
  #importFile(path: string, source: string, from: string): string {
    try {
      if (this.#loader.tree.resolve(path) === null) {
        const text = from ? readFileSync(join(this.#baseDir, from), 'utf8') : '';
        const line = text.split('\n').findIndex((l) => l.includes(source)) + 1 || undefined;
        throw new InputError(`${this.#loader.tree.show(path)} does not exist (an import is relative to states/, or to the template's directory with ./)`, { file: from ? `states/${from}` : undefined, line });
      }
      return this.renderFile(path, slsVariables(path));
    } catch (err) {
      this.#inner ??= err;
      throw err;
    }
  }

  /** An error of a file imported by the render in progress, to be reported as that file's. */
  #inner: unknown;

  #innerError(): unknown {
    const inner = this.#inner;
    this.#inner = undefined;
    return inner;
  }

  /** Renders text read from `file` (shown in errors, relative to the states dir). */
  renderString(text: string, file: string, extra: Record<string, unknown> = {}): string {
    this.#loader.refused = undefined;
    try {
      // Its path in the tree, so that `{% include './x.j2' %}` is found next to it.
      const path = file.startsWith('states/') ? join(this.#baseDir, file.slice('states/'.length)) : file;
      const salt = file.startsWith('states/') ? slsVariables(file.slice('states/'.length)) : {};
      return this.#render(() => this.#env.renderString(text, { ...this.#scope, ...salt, ...extra }, { path } as never) as unknown as string);
    } catch (err) {
      const inner = this.#innerError();
      if (inner) throw inner;
      if (err instanceof RenderLimitError || (err as Error)?.message?.includes('RenderLimitError')) throw limitError(err, file);
      if (isSecretUse(err)) throw secretUseError(err, file, text);
      throw this.#refusal(file, text) ?? toInputError(err, file, text, this.#show);
    }
  }

  /** Renders a template file, relative to the states dir. */
  renderFile(path: string, extra: Record<string, unknown> = {}): string {
    this.#loader.refused = undefined;
    const tree = this.#loader.tree;
    // The template itself must be a file of the tree: if not, the state that names it is at fault.
    if (tree.resolve(path, { key: 'source' }) === null) throw new InputError(`${tree.show(path)} does not exist (templates are relative to states/)`, { key: 'source' });
    try {
      return this.#render(() => this.#env.render(path, { ...this.#scope, ...slsVariables(path), ...extra }));
    } catch (err) {
      const inner = this.#innerError();
      if (inner) throw inner;
      if (err instanceof RenderLimitError || (err as Error)?.message?.includes('RenderLimitError')) throw limitError(err, tree.show(path));
      if (isSecretUse(err)) throw secretUseError(err, tree.show(path), readFileSync(join(this.#baseDir, path), 'utf8'));
      const refused = this.#refusal(tree.show(path), undefined, path);
      if (refused) throw refused;
      let source: string | undefined;
      try {
        source = readFileSync(join(this.#baseDir, path), 'utf8');
      } catch {
        source = undefined;
      }
      throw toInputError(err, this.#show(join(this.#baseDir, path)), source, this.#show);
    }
  }

  #render(render: () => string): string {
    return withMasker(this.#masker, () => withinBudget(render));
  }

  /** Knows every secret's text, and what templates made of them. */
  get masker(): Masker {
    return this.#masker;
  }

  get baseDir(): string {
    return this.#baseDir;
  }

  /**
   * A template the last render could not load: reported as the state's own problem when it is the
   * template the state names, else at the line of the file that includes or imports it.
   */
  #refusal(file: string, text: string | undefined, top?: string): InputError | undefined {
    const refused = this.#loader.refused;
    if (!refused) return undefined;
    if (refused.name === top) return new InputError(refused.error.message, { key: 'source' });
    let source = text;
    if (source === undefined && top !== undefined) source = readFileSync(join(this.#baseDir, top), 'utf8');
    const line = source ? source.split('\n').findIndex((l) => l.includes(refused.name.split('/').pop()!)) + 1 || undefined : undefined;
    return new InputError(refused.error.message, { file, line });
  }
}

/**
 * Templates, includes and imports come from the states tree only, as treefile.ts reads it: a name
 * that resolves outside it (../../etc/shadow, an absolute path, a link out), a device or a FIFO is
 * refused with an InputError, which renderFile and renderString pass on as it is.
 */
class TreeTemplateLoader extends nunjucks.Loader {
  readonly tree: Tree;
  /** What the last render refused to load, and the name it was asked for (nunjucks keeps only the text). */
  refused: { name: string; error: InputError } | undefined;

  constructor(tree: Tree) {
    super();
    this.tree = tree;
  }

  /** `./x` and `../x` are relative to the including template: resolved here, within the tree. */
  override isRelative(name: string): boolean {
    return name.startsWith('./') || name.startsWith('../');
  }

  override resolve(from: string, to: string): string {
    const fromRel = isAbsolute(from) ? relative(this.tree.root, from) : from;
    return normalize(join(dirname(fromRel), to));
  }

  getSource(name: string): { src: string; path: string; noCache: boolean } | null {
    // The including template's own path comes back as the parent of relative names.
    const rel = isAbsolute(name) && name.startsWith(`${this.tree.root}/`) ? name.slice(this.tree.root.length + 1) : name;
    try {
      if (this.tree.resolve(rel) === null) return null;
      return { src: this.tree.text(rel), path: join(this.tree.root, rel), noCache: false };
    } catch (err) {
      if (err instanceof InputError) this.refused = { name: rel, error: err };
      throw err;
    }
  }
}

/** A render past its budget, as an input error (nunjucks may have wrapped it: its text is kept). */
function limitError(err: unknown, file: string): InputError {
  const text = (err as Error).message ?? String(err);
  const why = /RenderLimitError: ([^\n]*)/.exec(text)?.[1] ?? text.split('\n').pop()!.trim();
  return new InputError(`template too costly: ${why}`, { file });
}

/** A text as a regular expression that matches it literally. */
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const isSecretUse = (err: unknown): boolean => err instanceof SecretUseError || /SecretUseError: /.test((err as Error)?.message ?? '');

/**
 * A template that would let a secret out unmasked, as an input error at its line (nunjucks may
 * have wrapped it: its text is kept, and its line when it gave one).
 */
function secretUseError(err: unknown, file: string, source: string | undefined): InputError {
  const text = (err as Error).message ?? String(err);
  const why = /SecretUseError: ([^\n]*)/.exec(text)?.[1] ?? text;
  const m = /\[Line (\d+), Column \d+\]/.exec(text);
  return new InputError(`a secret would leave unmasked: ${why}`, { file, line: secretUseLine(why, source, m ? Number(m[1]) : undefined) });
}

/**
 * nunjucks gives the line of the node that was running, 1- or 0-based as it happens: the line is
 * the one of those two (or the only one) where the refused construct is written.
 */
function secretUseLine(why: string, source: string | undefined, reported: number | undefined): number | undefined {
  if (source === undefined) return reported;
  const filter = /^\| (\w+)/.exec(why)?.[1];
  const member = /\((?:\.([^)]*)|\[(\d+)\])\)/.exec(why)?.slice(1).find((x) => x !== undefined);
  const construct = filter
    ? new RegExp(`\\|\\s*${escape(filter)}\\b`)
    : member !== undefined
      ? new RegExp(`\\.${escape(member)}\\b|\\[\\s*['"]?${escape(member)}['"]?\\s*\\]`)
      : /^[~+]/.test(why)
        ? new RegExp(escape(why[0]!))
        : undefined;
  if (!construct) return reported;
  const lines = source.split('\n');
  const at = lines.flatMap((l, i) => (l.includes('{') && construct.test(l) ? [i + 1] : []));
  if (reported !== undefined) for (const n of [reported, reported + 1]) if (at.includes(n)) return n;
  return at.length === 1 ? at[0] : reported;
}

/**
 * nunjucks reports `(outer) (inner) [Line 3, Column 7]\n  Error: …`; brine reports
 * `states/inner.j2:4: key: …`. The innermost file is the one at fault, and nunjucks' line numbers
 * are not reliable (0-based in some errors, the enclosing tag's in others), so a missing key is
 * looked up in that file's text.
 */
function toInputError(err: unknown, file: string, source: string | undefined, show: (path: string) => string): InputError {
  const e = err as Error & { lineno?: number };
  const text = e.message ?? String(err);
  const m = /\[Line (\d+), Column \d+\]/.exec(text);
  const reported = e.lineno ?? (m ? Number(m[1]) : undefined);
  const paths = [...text.matchAll(/\(([^()\n]+)\)/g)].map((x) => x[1]!).filter((p) => p !== 'unknown path' && (p.includes('/') || p.includes('.')));
  const inner = paths.pop();
  let innerSource = source;
  let shownFile = file;
  if (inner && inner !== file && show(inner) !== file) {
    shownFile = show(inner);
    try {
      innerSource = readFileSync(inner, 'utf8');
    } catch {
      innerSource = undefined;
    }
  }
  const undefinedKey = /(\S+) is not defined/.exec(text);
  if (undefinedKey) {
    const key = undefinedKey[1]!;
    const line = (innerSource ? lineMentioning(innerSource, key) : undefined) ?? reported;
    return new InputError('undefined in the template (use pillar.get(key, default) for optional keys)', { file: shownFile, line, key }, { cause: err });
  }
  const detail = text.split('\n').map((l) => l.trim()).filter((l) => l && !/^\(.*\) \[Line/.test(l) && !/^\([^)]*\)$/.test(l)).pop() ?? text;
  const clean = detail.replace(/^(Salt\w*)?Error: /, '').replace(/^Template render error: /, '');
  if (/^salt\['[^']*'\] is /.test(clean)) return new InputError(clean, { file: shownFile, line: errorLine(clean, innerSource) ?? reported }, { cause: err });
  if (/attempted to output null or undefined value/.test(clean))
    return new InputError('a template prints an undefined value', { file: shownFile, line: reported }, { cause: err });
  // A JavaScript error thrown while rendering comes with the 0-based line of the node.
  const line = errorLine(clean, innerSource) ?? (reported !== undefined && detail.startsWith('Error: ') ? reported + 1 : reported);
  return new InputError(`template error: ${clean}`, { file: shownFile, line }, { cause: err });
}

/** The line of errors nunjucks gives none (or the wrong one) for, found in the template's text. */
function errorLine(message: string, source: string | undefined): number | undefined {
  if (source === undefined) return undefined;
  const lines = source.split('\n');
  const first = (re: RegExp) => {
    const i = lines.findIndex((l) => re.test(l));
    return i >= 0 ? i + 1 : undefined;
  };
  const filter = /^filter not found: (\S+)/.exec(message);
  if (filter) return first(new RegExp(`\\|\\s*${escape(filter[1]!)}\\b`));
  const missing = /^template not found: (\S+)/.exec(message);
  if (missing) return first(new RegExp(`\\{%-?\\s*(include|import|from|extends)\\b.*${escape(missing[1]!)}`));
  if (/got end of file/.test(message)) return unclosedTag(lines);
  // nunjucks gives no line for an error in an expression: the first `+` inside a tag.
  if (/^cannot add a /.test(message)) return first(/\{[{%][^}%]*[^~]\+/);
  const call = /^salt\['([^']*)'\]/.exec(message);
  if (call) return first(new RegExp(`salt\\[\\s*['"]${escape(call[1]!)}['"]`));
  return undefined;
}

/** The line of the last block tag left open at the end of a template (`{% if %}` with no endif). */
function unclosedTag(lines: string[]): number | undefined {
  const BLOCKS = new Set(['if', 'for', 'macro', 'call', 'filter', 'block', 'raw', 'verbatim', 'set']);
  const open: { tag: string; line: number }[] = [];
  lines.forEach((l, i) => {
    for (const m of l.matchAll(/\{%-?\s*(\w+)([^%]*)%\}/g)) {
      const tag = m[1]!;
      // `{% set x = 1 %}` is whole; only `{% set x %}…{% endset %}` is a block.
      if (BLOCKS.has(tag) && !(tag === 'set' && m[2]!.includes('='))) open.push({ tag, line: i + 1 });
      else if (tag.startsWith('end') && open.length && open[open.length - 1]!.tag === tag.slice(3)) open.pop();
    }
  });
  return open.pop()?.line;
}

/**
 * nunjucks loses the line of an error thrown while looking up a member, so find the first line
 * that mentions the key (`pillar.db.password`), or failing that its last part.
 */
function lineMentioning(source: string, key: string): number | undefined {
  const lines = source.split('\n');
  const last = key.split(/[.[\]]/).filter(Boolean).pop() ?? key;
  const word = new RegExp(`\\b${last.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`);
  const at = (test: (l: string) => boolean) => lines.findIndex((l) => l.includes('{') && test(l));
  const i = at((l) => l.includes(key)) >= 0 ? at((l) => l.includes(key)) : at((l) => word.test(l));
  return i >= 0 ? i + 1 : undefined;
}
