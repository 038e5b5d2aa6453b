// Secrets in templates stay secrets, whatever a template does with them.
//
// The masker replaces the text of every secret brine knows in everything it prints. A template
// can make new text from a secret — `| upper`, `| b64encode`, `| replace`, a slice, `~ "@host"` —
// which the masker would not know. So in a template a secret stays a `Secret`:
//   - printed (`{{ pillar.secrets.DB_PASSWORD }}`), it is its real value: the file gets it, the
//     masker knows it;
//   - through a filter, or joined with `~` or `+`, the result is a new Secret whose text the masker
//     learns (so `{{ s | b64encode }}` is masked in every diff, error and report);
//   - taken apart (`s.reveal()`, `s[0]`, `s.split(…)`, `{% for c in s %}`) it is refused, and so is a result that no
//     masking can hide: a number (its length), pieces shorter than 4 characters.
// Refusals are input errors naming the template: nothing is applied.
import nunjucks from 'nunjucks';
import { MIN_MASKED_LENGTH, Secret, isSecret, revealDeep, type Masker } from '../secret.js';

export class SecretUseError extends Error {
  override name = 'SecretUseError';
}

/** The masker of the render in progress (renders are synchronous: one at a time). */
let masker: Masker | undefined;

export function withMasker<T>(m: Masker, render: () => T): T {
  const outer = masker;
  masker = m;
  try {
    return render();
  } finally {
    masker = outer;
  }
}

/** Whether a value holds a Secret (a list or mapping of them counts). */
function holdsSecret(value: unknown, depth = 0): boolean {
  if (isSecret(value)) return true;
  if (depth > 20 || value === null || typeof value !== 'object') return false;
  return Object.values(value as object).some((v) => holdsSecret(v, depth + 1));
}

interface NunjucksRuntime {
  SafeString: new (v: string) => { val: string };
  memberLookup: (obj: unknown, val: unknown) => unknown;
  suppressValue: (v: unknown, autoescape: boolean) => unknown;
  [k: string]: unknown;
}

const runtime = (nunjucks as unknown as { runtime: NunjucksRuntime }).runtime;

/**
 * What a template made from a secret: a Secret again, its text known to the masker. Inside a list
 * or mapping the filter made (`| dictsort`, `| batch`), a string that was already in its input as
 * plain text (a key's name) stays plain.
 */
function derive(value: unknown, what: string, fromBare = true, plain: Set<string> = new Set(), nested = false): unknown {
  if (value instanceof runtime.SafeString) return derive(value.val, what, fromBare, plain, nested);
  if (typeof value === 'string') {
    if (nested && plain.has(value)) return value;
    if (value.length > 0 && value.length < MIN_MASKED_LENGTH) throw new SecretUseError(`${what} makes a piece of a secret too short to be masked (${value.length} characters): use the secret whole`);
    masker?.add(value);
    return new Secret(value);
  }
  // A number made from a secret is the secret (`| int`) or its length; one from a list or mapping
  // of secrets (`| length`) says nothing about them.
  if ((typeof value === 'number' || typeof value === 'bigint') && !fromBare) return value;
  if (typeof value === 'number' || typeof value === 'bigint')
    throw new SecretUseError(`${what} turns a secret into a number, which no output can mask: use the secret whole`);
  if (Array.isArray(value)) return value.map((v) => derive(v, what, fromBare, plain, true));
  if (value !== null && typeof value === 'object' && !isSecret(value))
    return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, derive(v, what, fromBare, plain, true)]));
  return value;
}

/** The plain (not secret) strings in a filter's arguments, keys of mappings included. */
function plainStrings(value: unknown, into: Set<string>, depth = 0): Set<string> {
  if (typeof value === 'string') into.add(value);
  else if (depth < 20 && value !== null && typeof value === 'object' && !isSecret(value))
    for (const [k, v] of Object.entries(value as object)) {
      if (!Array.isArray(value)) into.add(k);
      plainStrings(v, into, depth + 1);
    }
  return into;
}

const reveal = (v: unknown) => (isSecret(v) ? v.reveal() : v);

/** A filter (or a string method: `label` is how it is named in messages) made to derive what it makes from a secret. */
export function guarded(label: string, filter: (...args: unknown[]) => unknown): (...args: unknown[]) => unknown {
  return function (this: unknown, ...args: unknown[]) {
    if (!args.some((a) => holdsSecret(a))) return filter.apply(this, args);
    const plain = new Set<string>();
    for (const a of args) plainStrings(a, plain);
    let made: unknown;
    try {
      made = filter.apply(this, args.map((a) => revealDeep(a)));
    } catch (err) {
      // Its message may quote the input, cut where masking would not find it (JSON.parse does).
      if (err instanceof SecretUseError) throw err;
      throw new Error(`${label} failed on a value holding a secret (its message is not shown: it could quote the secret)`);
    }
    return derive(made, label, args.some(isSecret), plain);
  };
}

/** Every filter of `env`, those added later too, made to derive what they make from a secret. */
export function guardFilters(env: nunjucks.Environment): void {
  const filters = (env as unknown as { filters: Record<string, (...args: unknown[]) => unknown> }).filters;
  for (const [name, filter] of Object.entries(filters)) filters[name] = guarded(`| ${name}`, filter);
  const addFilter = env.addFilter.bind(env);
  env.addFilter = (name, filter, async) => addFilter(name, guarded(`| ${name}`, filter as (...args: unknown[]) => unknown) as never, async);
  // Tests (`is defined`, `is string`) answer yes or no, about the real value.
  const tests = (env as unknown as { tests: Record<string, (...args: unknown[]) => unknown> }).tests;
  for (const [name, test] of Object.entries(tests))
    tests[name] = function guarded(this: unknown, ...args: unknown[]) {
      return test.apply(this, args.map((a) => revealDeep(a)));
    };
}

/** `a ~ b`: text; with a secret in it, a Secret. */
function concat(a: unknown, b: unknown): unknown {
  if (isSecret(a) || isSecret(b)) return derive(`${reveal(a)}${reveal(b)}`, '~');
  return `${a}${b}`;
}

const kind = (v: unknown) => (Array.isArray(v) ? 'list' : isSecret(v) ? 'string' : v === null ? 'none' : typeof v === 'object' ? 'mapping' : typeof v);

/**
 * `a + b` as Jinja2 has it: numbers add, lists join, strings join (a Secret in one makes a
 * Secret); anything else is an error — nunjucks made `list + list` the text "1,23", which a loop
 * then walked one character at a time.
 */
function add(a: unknown, b: unknown): unknown {
  const [ka, kb] = [kind(a), kind(b)];
  if (ka === 'list' && kb === 'list') return [...(a as unknown[]), ...(b as unknown[])];
  if (ka === 'number' && kb === 'number') return (a as number) + (b as number);
  if (ka === 'string' && kb === 'string') return isSecret(a) || isSecret(b) ? derive(`${reveal(a)}${reveal(b)}`, '+') : `${a}${b}`;
  throw new Error(`cannot add a ${ka} and a ${kb} with +: it joins two lists, two strings or two numbers (~ makes text of anything)`);
}

/** `==`, `<`, `in`: yes or no, about the real values. */
const plain = (v: unknown) => (isSecret(v) ? v.reveal() : v);

// As nunjucks' compiler maps them.
const COMPARE_OPS: Record<string, string> = { '==': '==', '===': '===', '!=': '!=', '!==': '!==', '<': '<', '>': '>', '<=': '<=', '>=': '>=' };

let installed = false;

/** Installs the guards in nunjucks' runtime and compiler (once). */
export function installSecretGuards(): void {
  if (installed) return;
  installed = true;
  runtime.brineConcat = concat;
  runtime.brineAdd = add;
  runtime.brinePlain = plain;
  const inOperator = runtime.inOperator as (k: unknown, v: unknown) => boolean;
  runtime.inOperator = (key: unknown, val: unknown) => inOperator(plain(key), plain(val));
  const memberLookup = runtime.memberLookup;
  runtime.memberLookup = function (obj: unknown, val: unknown) {
    if (isSecret(obj)) throw new SecretUseError(`a secret cannot be taken apart in a template (${typeof val === 'number' ? `[${val}]` : `.${String(val)}`}): print it whole, or pass it through a filter`);
    return memberLookup.call(this, obj, val);
  };
  // `{% for c in secret %}` would silently loop over nothing (a Secret has no keys).
  const fromIterator = runtime.fromIterator as (arr: unknown) => unknown;
  runtime.fromIterator = (arr: unknown) => {
    if (isSecret(arr)) throw new SecretUseError('a secret cannot be looped over in a template: print it whole, or pass it through a filter');
    return fromIterator(arr);
  };
  const suppressValue = runtime.suppressValue;
  runtime.suppressValue = function (value: unknown, autoescape: boolean) {
    return suppressValue.call(this, isSecret(value) ? value.reveal() : value, autoescape);
  };
  // `~` and `+` compile to JS `+`, which would print a Secret as ********: brine's own instead.
  const Compiler = (nunjucks as unknown as { compiler: { Compiler: { prototype: Record<string, unknown> } } }).compiler.Compiler;
  const binary = (helper: string) =>
    function (this: { _emit(s: string): void; compile(n: unknown, f: unknown): void }, node: { left: unknown; right: unknown }, frame: unknown) {
      this._emit(`runtime.${helper}(`);
      this.compile(node.left, frame);
      this._emit(', ');
      this.compile(node.right, frame);
      this._emit(')');
    };
  Compiler.prototype.compileConcat = binary('brineConcat');
  Compiler.prototype.compileAdd = binary('brineAdd');
  Compiler.prototype.compileCompare = function (this: { _emit(s: string): void; compile(n: unknown, f: unknown): void }, node: { expr: unknown; ops: { type: string; expr: unknown }[] }, frame: unknown) {
    const operand = (n: unknown) => {
      this._emit('runtime.brinePlain(');
      this.compile(n, frame);
      this._emit(')');
    };
    operand(node.expr);
    for (const op of node.ops) {
      this._emit(` ${COMPARE_OPS[op.type] ?? op.type} `);
      operand(op.expr);
    }
  };
}
