// Jinja2's Python on nunjucks: what Salt state trees write inside `{{ }}` and `{% %}` and expect
// to behave as Python does.
//
//   - methods of strings, lists and dicts: `.startswith`, `.split()`, `.strip`, `.replace` (all
//     occurrences), `.format`, `.join`, `.get`, `.items`, `.iteritems` (Python 2 trees), `.append`…
//   - slices: `name[:8]`, `list[1:]`, `s[::-1]`;
//   - `True`, `False`, `None`; `'%s-%d' % (a, b)` and `| format`;
//   - Python's truth: an empty list, mapping or string is false in `if`, `and`, `or`, `not`;
//   - a key that is not there (Undefined): false in `if`, handled by `is defined` and
//     `| default`, and an error naming the key when it is printed, looped over or looked into;
//   - `{% do list.append(x) %}` (Salt enables jinja2.ext.do).
// A Secret's string methods make Secrets the masker learns, as filters do (secrets.ts); those
// that take one apart (split, find, a slice) are refused.
import nunjucks from 'nunjucks';
import { isSecret } from '../secret.js';
import { SecretUseError, guarded } from './secrets.js';

/** A key a template read that is not there: an error when used, false when tested. */
export class Undefined {
  constructor(readonly path: string) {}
}

export class UndefinedKeyError extends Error {
  readonly key: string;
  constructor(key: string) {
    super(`${key} is not defined`);
    this.key = key;
  }
}

const fail = (v: Undefined): never => {
  throw new UndefinedKeyError(v.path);
};

/** Python's truth value. */
export function truthy(v: unknown): boolean {
  if (v instanceof Undefined || v === undefined || v === null) return false;
  if (isSecret(v)) return v.reveal().length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map || v instanceof Set) return v.size > 0;
  if (typeof v === 'object') return v instanceof (runtime.SafeString as never) ? String(v).length > 0 : Object.keys(v).length > 0;
  return Boolean(v);
}

type Fn = (this: unknown, ...args: unknown[]) => unknown;

interface Runtime {
  memberLookup: Fn;
  suppressValue: Fn;
  fromIterator: Fn;
  inOperator: Fn;
  SafeString: new (v: string) => object;
  [k: string]: unknown;
}
const runtime = (nunjucks as unknown as { runtime: Runtime }).runtime;

/** nunjucks passes `f(a, key=b)` as `f(a, {key: b, __keywords: true})`. */
function keywords(args: unknown[]): { positional: unknown[]; named: Record<string, unknown> } {
  const last = args[args.length - 1] as Record<string, unknown> | undefined;
  if (last && typeof last === 'object' && (last as { __keywords?: boolean }).__keywords) {
    const { __keywords: _, ...named } = last;
    return { positional: args.slice(0, -1), named };
  }
  return { positional: args, named: {} };
}

/** Lists that Python would have as tuples (what regex_search returns), printed `('a', 'b')`. */
const tuples = new WeakSet<unknown[]>();
export function tuple<T>(items: T[]): T[] {
  tuples.add(items);
  return items;
}

const str = (v: unknown): string => (v === null ? 'None' : v === true ? 'True' : v === false ? 'False' : Array.isArray(v) ? (tuples.has(v) ? `(${v.map(repr).join(', ')}${v.length === 1 ? ',' : ''})` : `[${v.map(repr).join(', ')}]`) : v !== null && typeof v === 'object' && !isSecret(v) ? `{${Object.entries(v).map(([k, x]) => `${repr(k)}: ${repr(x)}`).join(', ')}}` : String(isSecret(v) ? v.reveal() : v));
const repr = (v: unknown): string => (typeof v === 'string' ? `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : str(v));

function whitespaceSplit(s: string, max: number): string[] {
  const out: string[] = [];
  let rest = s.replace(/^\s+/, '');
  while (rest.length > 0) {
    if (max >= 0 && out.length === max) {
      out.push(rest);
      break;
    }
    const m = /\s+/.exec(rest);
    if (!m) {
      out.push(rest);
      break;
    }
    out.push(rest.slice(0, m.index));
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

function split(s: string, sep?: unknown, maxsplit: unknown = -1): string[] {
  const max = Number(maxsplit);
  if (sep === undefined || sep === null) return whitespaceSplit(s, max);
  const parts = s.split(String(sep));
  return max >= 0 && parts.length > max + 1 ? [...parts.slice(0, max), parts.slice(max).join(String(sep))] : parts;
}

function rsplit(s: string, sep?: unknown, maxsplit: unknown = -1): string[] {
  const max = Number(maxsplit);
  if (max < 0) return split(s, sep);
  const reversed = (sep === undefined || sep === null ? whitespaceSplit([...s].reverse().join(''), max) : split([...s].reverse().join(''), [...String(sep)].reverse().join(''), max));
  return reversed.map((p) => [...p].reverse().join('')).reverse();
}

const charsRe = (chars: unknown, where: 'start' | 'end') => {
  const set = chars === undefined || chars === null ? '\\s' : String(chars).replace(/[\\\]^-]/g, '\\$&');
  return new RegExp(where === 'start' ? `^[${set}]+` : `[${set}]+$`, 'u');
};

/** `'{} and {name}'.format(a, name=b)`, with `{0}` and `{{`/`}}`. Format specs beyond `:` are kept simple. */
function format(fmt: string, ...args: unknown[]): string {
  const { positional, named } = keywords(args);
  let auto = 0;
  return fmt.replace(/\{\{|\}\}|\{([^{}:!]*)(?:![rs])?(?::([^{}]*))?\}/g, (m, field: string | undefined, spec: string | undefined) => {
    if (m === '{{') return '{';
    if (m === '}}') return '}';
    const [head, ...path] = (field ?? '').split('.');
    let v: unknown = head === '' ? positional[auto++] : /^\d+$/.test(head!) ? positional[Number(head)] : named[head!];
    for (const p of path) v = (v as Record<string, unknown> | undefined)?.[p];
    if (v === undefined) throw new Error(`format: no value for {${field ?? ''}}`);
    return applySpec(str(v), v, spec);
  });
}

function applySpec(text: string, v: unknown, spec: string | undefined): string {
  if (!spec) return text;
  const m = /^(?:(.)?([<>^]))?(0)?(\d+)?(?:\.(\d+))?([sdf])?$/.exec(spec);
  if (!m) return text;
  const [, fill = ' ', align, zero, width, precision, type] = m;
  let out = type === 'f' ? Number(v).toFixed(Number(precision ?? 6)) : type === 'd' ? String(Math.trunc(Number(v))) : precision && typeof v === 'string' ? text.slice(0, Number(precision)) : text;
  const w = Number(width ?? 0);
  if (out.length >= w) return out;
  const pad = (n: number, c: string) => c.repeat(n);
  if (zero && !align) return out.startsWith('-') ? `-${pad(w - out.length, '0')}${out.slice(1)}` : pad(w - out.length, '0') + out;
  const a = align ?? (typeof v === 'number' ? '>' : '<');
  if (a === '>') out = pad(w - out.length, fill) + out;
  else if (a === '^') {
    const left = Math.floor((w - out.length) / 2);
    out = pad(left, fill) + out + pad(w - out.length - left, fill);
  } else out += pad(w - out.length, fill);
  return out;
}

/** Python's `'%s: %05d' % (a, b)` and `'%(name)s' % {name: …}`. */
export function percent(fmt: string, values: unknown): string {
  const list = Array.isArray(values) ? values : [values];
  let i = 0;
  const out = fmt.replace(/%(?:\(([^)]*)\))?([-+ 0#]*)(\d+|\*)?(?:\.(\d+))?([sdirfeExXoc%])/g, (_m, name: string | undefined, flags: string, width: string | undefined, precision: string | undefined, type: string) => {
    if (type === '%') return '%';
    const v = name !== undefined ? (values as Record<string, unknown>)[name] : list[i++];
    if (v === undefined) throw new Error('not enough arguments for format string');
    let text: string;
    switch (type) {
      case 'd':
      case 'i':
        text = String(Math.trunc(Number(v)));
        break;
      case 'f':
        text = Number(v).toFixed(Number(precision ?? 6));
        break;
      case 'x':
      case 'X':
        text = Math.trunc(Number(v)).toString(16);
        if (type === 'X') text = text.toUpperCase();
        break;
      case 'o':
        text = Math.trunc(Number(v)).toString(8);
        break;
      case 'r':
        text = repr(v);
        break;
      default:
        text = str(v);
        if (precision !== undefined) text = text.slice(0, Number(precision));
    }
    const w = Number(width ?? 0);
    if (text.length < w) text = flags.includes('-') ? text.padEnd(w) : flags.includes('0') && type !== 's' ? text.padStart(w, '0') : text.padStart(w);
    return text;
  });
  if (name(values) === 'list' && i < list.length) throw new Error('not all arguments converted during string formatting');
  return out;
}
const name = (v: unknown) => (Array.isArray(v) ? 'list' : typeof v);

/** String methods as Python has them; `this` is the string. */
const STRING: Record<string, (s: string, ...a: unknown[]) => unknown> = {
  startswith: (s, p) => (Array.isArray(p) ? p.some((x) => s.startsWith(String(x))) : s.startsWith(String(p))),
  endswith: (s, p) => (Array.isArray(p) ? p.some((x) => s.endsWith(String(x))) : s.endsWith(String(p))),
  split,
  rsplit,
  splitlines: (s) => s.split(/\r\n|\r|\n/).filter((l, i, a) => i < a.length - 1 || l !== ''),
  strip: (s, c) => s.replace(charsRe(c, 'start'), '').replace(charsRe(c, 'end'), ''),
  lstrip: (s, c) => s.replace(charsRe(c, 'start'), ''),
  rstrip: (s, c) => s.replace(charsRe(c, 'end'), ''),
  replace: (s, a, b, count) => {
    if (count === undefined || Number(count) < 0) return s.split(String(a)).join(String(b));
    let out = s;
    let from = 0;
    for (let n = 0; n < Number(count); n++) {
      const at = out.indexOf(String(a), from);
      if (at < 0) break;
      out = out.slice(0, at) + String(b) + out.slice(at + String(a).length);
      from = at + String(b).length;
    }
    return out;
  },
  upper: (s) => s.toUpperCase(),
  lower: (s) => s.toLowerCase(),
  title: (s) => s.replace(/[A-Za-z]+/g, (w) => w[0]!.toUpperCase() + w.slice(1).toLowerCase()),
  capitalize: (s) => (s ? s[0]!.toUpperCase() + s.slice(1).toLowerCase() : s),
  swapcase: (s) => [...s].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join(''),
  format,
  join: (s, items) => [...(items as Iterable<unknown>)].map((x) => str(x)).join(s),
  find: (s, sub) => s.indexOf(String(sub)),
  rfind: (s, sub) => s.lastIndexOf(String(sub)),
  index: (s, sub) => {
    const at = s.indexOf(String(sub));
    if (at < 0) throw new Error('substring not found');
    return at;
  },
  count: (s, sub) => (String(sub) === '' ? s.length + 1 : s.split(String(sub)).length - 1),
  partition: (s, sep) => {
    const at = s.indexOf(String(sep));
    return at < 0 ? [s, '', ''] : [s.slice(0, at), String(sep), s.slice(at + String(sep).length)];
  },
  rpartition: (s, sep) => {
    const at = s.lastIndexOf(String(sep));
    return at < 0 ? ['', '', s] : [s.slice(0, at), String(sep), s.slice(at + String(sep).length)];
  },
  isdigit: (s) => /^\d+$/.test(s),
  isnumeric: (s) => /^\d+$/.test(s),
  isalpha: (s) => /^[A-Za-z]+$/.test(s),
  isalnum: (s) => /^[A-Za-z0-9]+$/.test(s),
  isspace: (s) => /^\s+$/.test(s),
  isupper: (s) => /[A-Z]/.test(s) && s === s.toUpperCase(),
  islower: (s) => /[a-z]/.test(s) && s === s.toLowerCase(),
  zfill: (s, w) => (s.startsWith('-') ? `-${s.slice(1).padStart(Number(w) - 1, '0')}` : s.padStart(Number(w), '0')),
  center: (s, w, c = ' ') => applySpec(s, s, `${String(c)}^${Number(w)}`),
  ljust: (s, w, c = ' ') => s.padEnd(Number(w), String(c)),
  rjust: (s, w, c = ' ') => s.padStart(Number(w), String(c)),
  encode: (s) => s,
  decode: (s) => s,
};

/** The string methods a template can call (for tests that try each on a secret). */
export const STRING_METHODS = Object.keys(STRING);

/** Methods that take a secret apart: no masking could follow the pieces. */
const TAKES_APART = new Set(['split', 'rsplit', 'splitlines', 'partition', 'rpartition', 'find', 'rfind', 'index', 'count']);

const LIST: Record<string, (l: unknown[], ...a: unknown[]) => unknown> = {
  append: (l, x) => void l.push(x),
  extend: (l, xs) => void l.push(...(xs as unknown[])),
  insert: (l, i, x) => void l.splice(Number(i), 0, x),
  pop: (l, i) => {
    if (l.length === 0) throw new Error('pop from empty list');
    return i === undefined ? l.pop() : l.splice(Number(i) < 0 ? l.length + Number(i) : Number(i), 1)[0];
  },
  remove: (l, x) => {
    const at = l.indexOf(x);
    if (at < 0) throw new Error('list.remove(x): x not in list');
    l.splice(at, 1);
  },
  index: (l, x) => {
    const at = l.indexOf(x);
    if (at < 0) throw new Error(`${repr(x)} is not in list`);
    return at;
  },
  count: (l, x) => l.filter((y) => y === x).length,
  sort: (l, ...a) => {
    const { named } = keywords(a);
    l.sort((x, y) => (String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0));
    if (named.reverse) l.reverse();
  },
  reverse: (l) => void l.reverse(),
  copy: (l) => [...l],
};

const isPlainMapping = (v: unknown): boolean => v !== null && typeof v === 'object' && !isSecret(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v));

const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

const DICT: Record<string, (d: Record<string, unknown>, ...a: unknown[]) => unknown> = {
  get: (d, k, fallback = null) => (own(d, String(k)) ? d[String(k)] : fallback),
  items: (d) => Object.keys(d).map((k) => [k, d[k]]),
  keys: (d) => Object.keys(d),
  values: (d) => Object.keys(d).map((k) => d[k]),
  has_key: (d, k) => own(d, String(k)),
  update: (d, other, ...rest) => {
    const { named } = keywords([other, ...rest]);
    if (other && typeof other === 'object' && !(other as { __keywords?: boolean }).__keywords) Object.assign(d, other);
    Object.assign(d, named);
  },
  setdefault: (d, k, v = null) => (own(d, String(k)) ? d[String(k)] : (d[String(k)] = v)),
  pop: (d, k, ...fallback) => {
    if (own(d, String(k))) {
      const v = d[String(k)];
      delete d[String(k)];
      return v;
    }
    if (fallback.length) return fallback[0];
    throw new Error(`KeyError: ${repr(k)}`);
  },
  copy: (d) => ({ ...d }),
};
DICT.iteritems = DICT.items!;
DICT.itervalues = DICT.values!;
DICT.iterkeys = DICT.keys!;

/** Python's slice of a string or list: `s[a:b:c]`. */
function slice(obj: unknown, start: number | null, stop: number | null, step: number | null): unknown {
  if (isSecret(obj)) throw new SecretUseError('a secret cannot be taken apart in a template (a slice): print it whole, or pass it through a filter');
  if (obj instanceof Undefined) fail(obj);
  const items = typeof obj === 'string' ? [...obj] : Array.isArray(obj) ? obj : null;
  if (!items) throw new Error(`a ${name(obj)} cannot be sliced`);
  const n = items.length;
  const st = step ?? 1;
  if (st === 0) throw new Error('slice step cannot be zero');
  const norm = (i: number | null, dflt: number) => (i === null || i === undefined ? dflt : i < 0 ? Math.max(i + n, st < 0 ? -1 : 0) : Math.min(i, st < 0 ? n - 1 : n));
  const from = norm(start, st < 0 ? n - 1 : 0);
  const to = norm(stop, st < 0 ? -1 : n);
  const out: unknown[] = [];
  for (let i = from; st > 0 ? i < to : i > to; i += st) out.push(items[i]);
  return typeof obj === 'string' ? out.join('') : out;
}

/** Whether a value is one of render.ts's strict pillar/grains trees (its own `get` follows colon paths). */
export const STRICT = Symbol('brine.strict');

function method(obj: unknown, key: string): Fn | undefined {
  if (typeof obj === 'string' || isSecret(obj)) {
    const m = STRING[key];
    if (!m) return undefined;
    if (isSecret(obj) && TAKES_APART.has(key)) return undefined;
    // A Secret in the string or the arguments: what comes out is a Secret the masker learns.
    const call = guarded(`.${key}()`, (s, ...a) => m(String(s), ...a));
    return (...a: unknown[]) => call(obj, ...a);
  }
  if (Array.isArray(obj)) {
    const m = LIST[key];
    return m && ((...a: unknown[]) => m(obj, ...a));
  }
  if (obj !== null && typeof obj === 'object' && !(obj instanceof Undefined) && !own(obj, key)) {
    // A strict tree's get/items/keys/values are its own (colon paths, strict values inside).
    if ((obj as { [STRICT]?: boolean })[STRICT] && ['get', 'items', 'keys', 'values'].includes(key)) return undefined;
    const m = DICT[key];
    return m && ((...a: unknown[]) => m(obj as Record<string, unknown>, ...a));
  }
  return undefined;
}

const COMPAT_PARSER = { installed: false };

/** Installs Python's ways into nunjucks' runtime and compiler (once), and `do` into `env`. */
export function installPython(env: nunjucks.Environment): void {
  env.addExtension('do', new DoExtension());
  if (COMPAT_PARSER.installed) return;
  COMPAT_PARSER.installed = true;
  // nunjucks' own Jinja compatibility brings slices' syntax and True/False/None; its member
  // lookup is replaced by the one here.
  const before = runtime.memberLookup;
  (nunjucks as unknown as { installJinjaCompat: () => void }).installJinjaCompat();
  runtime.memberLookup = before;

  balancedBraces();

  const memberLookup = runtime.memberLookup;
  runtime.memberLookup = function (this: unknown, obj: unknown, val: unknown, ...rest: unknown[]) {
    if (rest.length === 2) return slice(obj, val as number | null, rest[0] as number | null, rest[1] as number | null);
    if (obj instanceof Undefined) fail(obj);
    if (typeof val === 'string') {
      const m = method(obj, val);
      if (m) return m;
    }
    return memberLookup.call(this, obj, val);
  };
  const suppressValue = runtime.suppressValue;
  runtime.suppressValue = function (this: unknown, value: unknown, autoescape: unknown) {
    if (value instanceof Undefined) fail(value);
    // Python prints its own constants and containers.
    if (value === true || value === false || Array.isArray(value) || isPlainMapping(value)) return suppressValue.call(this, str(value), autoescape);
    return suppressValue.call(this, value, autoescape);
  };
  const fromIterator = runtime.fromIterator;
  runtime.fromIterator = function (this: unknown, arr: unknown) {
    if (arr instanceof Undefined) fail(arr);
    return fromIterator.call(this, arr);
  };
  const inOperator = runtime.inOperator;
  runtime.inOperator = function (this: unknown, key: unknown, val: unknown) {
    if (val instanceof Undefined) fail(val);
    return inOperator.call(this, key, val);
  };
  runtime.brineTruthy = truthy;
  runtime.brineMod = (a: unknown, b: unknown) => (typeof a === 'string' || isSecret(a) ? guarded('%', (f, v) => percent(String(f), v))(a, b) : (a as number) % (b as number));

  // Conditions test Python's truth; `a or b` is a if a is true, else b.
  type C = { _emit(s: string): void; compile(n: unknown, f: unknown): void; _compileExpression(n: unknown, f: unknown): void };
  const Compiler = (nunjucks as unknown as { compiler: { Compiler: { prototype: Record<string, unknown> } } }).compiler.Compiler;
  const truth = (c: C, node: unknown, frame: unknown) => {
    c._emit('runtime.brineTruthy(');
    c.compile(node, frame);
    c._emit(')');
  };
  const assertType = Compiler.prototype.assertType as (this: C, node: unknown, ...types: unknown[]) => void;
  Compiler.prototype.assertType = function (this: C, node: unknown, ...types: unknown[]) {
    if (node instanceof TruthNode) return;
    assertType.call(this, node, ...types);
  };
  const compileIf = Compiler.prototype.compileIf as (this: C, node: { cond: unknown }, frame: unknown, async: boolean) => void;
  Compiler.prototype.compileIf = function (this: C, node: { cond: unknown; lineno: number; colno: number }, frame: unknown, async: boolean) {
    return compileIf.call(this, { ...node, cond: new TruthNode(node.cond) } as never, frame, async);
  };
  Compiler.prototype.compileBrineTruth = function (this: C, node: { target: unknown }, frame: unknown) {
    truth(this, node.target, frame);
  };
  Compiler.prototype.compileInlineIf = function (this: C, node: { cond: unknown; body: unknown; else_: unknown }, frame: unknown) {
    this._emit('(');
    truth(this, node.cond, frame);
    this._emit('?');
    this.compile(node.body, frame);
    this._emit(':');
    if (node.else_ !== null) this.compile(node.else_, frame);
    else this._emit('""');
    this._emit(')');
  };
  Compiler.prototype.compileNot = function (this: C, node: { target: unknown }, frame: unknown) {
    this._emit('!');
    truth(this, node.target, frame);
  };
  // `(a, b)` is a tuple (nunjucks made it JavaScript's comma operator: the last value).
  const compileGroup = Compiler.prototype.compileGroup as (this: C, node: { children: unknown[] }, frame: unknown) => void;
  Compiler.prototype.compileGroup = function (this: C & { _compileAggregate(n: unknown, f: unknown, a: string, b: string): void }, node: { children: unknown[] }, frame: unknown) {
    if (node.children.length > 1) this._compileAggregate(node, frame, '[', ']');
    else compileGroup.call(this, node, frame);
  };
  const logical = (picksLeft: string) =>
    function (this: C, node: { left: unknown; right: unknown }, frame: unknown) {
      this._emit('((l) => (');
      this._emit(picksLeft === 'or' ? 'runtime.brineTruthy(l)' : '!runtime.brineTruthy(l)');
      this._emit(' ? l : (');
      this.compile(node.right, frame);
      this._emit(')))(');
      this.compile(node.left, frame);
      this._emit(')');
    };
  Compiler.prototype.compileOr = logical('or');
  Compiler.prototype.compileAnd = logical('and');
  Compiler.prototype.compileMod = function (this: C, node: { left: unknown; right: unknown }, frame: unknown) {
    this._emit('runtime.brineMod(');
    this.compile(node.left, frame);
    this._emit(', ');
    this.compile(node.right, frame);
    this._emit(')');
  };
}

/**
 * Jinja2's lexer counts braces: `{{ f({'a': {'b': 1}}) }}` closes the dict, then the tag. nunjucks
 * took the first `}}` for the end of the tag. Inside an expression with a `{` open, `}` is a brace.
 * And a comma may end a list, a mapping or the arguments of a call.
 */
function balancedBraces(): void {
  const lexer = (nunjucks as unknown as { lexer: { lex(s: string): object; TOKEN_COMMA: string; TOKEN_LEFT_CURLY: string; TOKEN_RIGHT_CURLY: string; TOKEN_VARIABLE_START: string; TOKEN_BLOCK_START: string } }).lexer;
  type Tokenizer = { in_code: boolean; str: string; index: number; lineno: number; colno: number; forward(): void; brineDepth?: number };
  const proto = Object.getPrototypeOf(lexer.lex('')) as { nextToken: (this: Tokenizer) => { type: string } | null };
  const nextToken = proto.nextToken;
  proto.nextToken = function (this: Tokenizer) {
    if (this.in_code && (this.brineDepth ?? 0) > 0 && this.str[this.index] === '}') {
      const [lineno, colno] = [this.lineno, this.colno];
      this.forward();
      this.brineDepth! -= 1;
      return { type: lexer.TOKEN_RIGHT_CURLY, value: '}', lineno, colno };
    }
    let tok = nextToken.call(this);
    // A trailing comma before a closing bracket, as Python and Jinja2 allow: `{'a': 1,\n}`.
    if (tok?.type === lexer.TOKEN_COMMA && this.in_code && /^\s*[)\]}]/.test(this.str.slice(this.index, this.index + 200))) tok = proto.nextToken.call(this);
    if (tok?.type === lexer.TOKEN_LEFT_CURLY) this.brineDepth = (this.brineDepth ?? 0) + 1;
    else if (tok?.type === lexer.TOKEN_RIGHT_CURLY) this.brineDepth = Math.max(0, (this.brineDepth ?? 0) - 1);
    else if (tok?.type === lexer.TOKEN_VARIABLE_START || tok?.type === lexer.TOKEN_BLOCK_START) this.brineDepth = 0;
    return tok;
  };
}

/** A condition as Python's truth (compiled by compileBrineTruth). */
class TruthNode {
  readonly typename = 'BrineTruth';
  constructor(readonly target: unknown) {}
  get lineno(): number {
    return (this.target as { lineno?: number }).lineno ?? 0;
  }
  get colno(): number {
    return (this.target as { colno?: number }).colno ?? 0;
  }
  findAll(): unknown[] {
    return [];
  }
}

/** `{% do expr %}`: evaluates, prints nothing. */
class DoExtension {
  readonly tags = ['do'];
  parse(parser: { nextToken(): { value: string }; parseExpression(): unknown; advanceAfterBlockEnd(v: string): void }, nodes: { CallExtension: new (...a: unknown[]) => unknown; NodeList: new (...a: unknown[]) => unknown }): unknown {
    const tok = parser.nextToken();
    const expr = parser.parseExpression();
    parser.advanceAfterBlockEnd(tok.value);
    return new nodes.CallExtension(this, 'run', new nodes.NodeList(0, 0, [expr]));
  }
  run(): string {
    return '';
  }
}

/** Tests and filters that must know an Undefined: `is defined`, `| default`. */
export function undefinedAware(env: nunjucks.Environment): void {
  const tests = (env as unknown as { tests: Record<string, Fn> }).tests;
  tests.defined = (v: unknown) => v !== undefined && !(v instanceof Undefined);
  tests.undefined = (v: unknown) => v === undefined || v instanceof Undefined;
  const filters = (env as unknown as { filters: Record<string, Fn> }).filters;
  const dflt = (v: unknown, fallback: unknown = '', boolean: unknown = false) => (v === undefined || v instanceof Undefined || (boolean && !truthy(v)) ? fallback : v);
  filters.default = dflt;
  filters.d = dflt;
}

/** A filter given an Undefined (other than `default`) fails naming the key, not with a JS error. */
function refusingUndefined(filter: Fn): Fn {
  return function (this: unknown, ...args: unknown[]) {
    for (const a of args) if (a instanceof Undefined) fail(a);
    return filter.apply(this, args);
  };
}

/** Every filter but `default`, those added later too, refuses an Undefined. */
export function refuseUndefinedFilters(env: nunjucks.Environment): void {
  const filters = (env as unknown as { filters: Record<string, Fn> }).filters;
  for (const [name, filter] of Object.entries(filters)) if (name !== 'default' && name !== 'd') filters[name] = refusingUndefined(filter);
  const addFilter = env.addFilter.bind(env);
  env.addFilter = (name, filter, async) => addFilter(name, refusingUndefined(filter as Fn) as never, async);
}
