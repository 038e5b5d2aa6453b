// Salt's Jinja environment: the `salt` functions a template may call, Salt's filters (and the
// Jinja2 ones nunjucks lacks), the import_yaml / load_yaml tags, and the variables Salt gives each
// state file (sls, slspath, tpldir, tplfile, saltenv).
//
// Only functions that read what brine already knows are callable: `salt['pillar.get']`,
// `salt['grains.get']`, `salt['config.get']`, `salt['grains.filter_by']`. An execution-module call
// (`salt['cmd.run']`, `salt['file.file_exists']`) would make rendering depend on, or change, the
// live system: it is an input error naming the function.
import { createHash } from 'node:crypto';
import { dirname, join, normalize } from 'node:path';
import nunjucks from 'nunjucks';
import { parse as parseYamlText, stringify as yamlStringify } from 'yaml';
import { isSecret } from '../secret.js';
import { Undefined, percent, truthy, tuple } from './python.js';

type Fn = (this: unknown, ...args: unknown[]) => unknown;

/** nunjucks passes `f(a, key=b)` as `f(a, {key: b, __keywords: true})`. */
function keywords(args: unknown[], names: string[]): Record<string, unknown> {
  const last = args[args.length - 1] as Record<string, unknown> | undefined;
  const named = last && typeof last === 'object' && last.__keywords ? { ...last } : undefined;
  const positional = named ? args.slice(0, -1) : args;
  const out: Record<string, unknown> = {};
  names.forEach((n, i) => {
    if (i < positional.length) out[n] = positional[i];
  });
  if (named) for (const [k, v] of Object.entries(named)) if (k !== '__keywords') out[k] = v;
  return out;
}

/** `a:b:0` through mappings and lists, as Salt's traverse_dict_and_list. */
export function traverse(data: unknown, key: string, fallback: unknown = null, delimiter = ':'): unknown {
  let node: unknown = data;
  for (const part of String(key).split(delimiter)) {
    if (Array.isArray(node)) {
      const i = Number(part);
      if (!Number.isInteger(i) || i < 0 || i >= node.length) return fallback;
      node = node[i];
    } else if (node !== null && typeof node === 'object' && !isSecret(node) && Object.prototype.hasOwnProperty.call(node, part)) {
      node = (node as Record<string, unknown>)[part];
    } else return fallback;
    if (node instanceof Undefined) return fallback;
  }
  return node;
}

function deepMerge(base: unknown, over: unknown): unknown {
  const isMap = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v) && !isSecret(v);
  if (!isMap(base) || !isMap(over)) return over;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = k in out ? deepMerge(out[k], v) : v;
  return out;
}

export const SALT_FUNCTIONS = ['pillar.get', 'grains.get', 'config.get', 'grains.filter_by'];

/** The `salt` mapping of a render: pillar and grains as strict trees (render.ts). */
export function saltFunctions(pillar: unknown, grains: unknown): object {
  const fns: Record<string, Fn> = {
    'pillar.get': (...a) => {
      const { key, default: d = null, delimiter = ':' } = keywords(a, ['key', 'default', 'merge', 'delimiter']);
      return traverse(pillar, String(key), d, String(delimiter));
    },
    'grains.get': (...a) => {
      const { key, default: d = null, delimiter = ':' } = keywords(a, ['key', 'default', 'delimiter']);
      return traverse(grains, String(key), d, String(delimiter));
    },
    // Salt looks in the minion's config, then grains, then pillar; brine has no minion config.
    'config.get': (...a) => {
      const { key, default: d = null, delimiter = ':' } = keywords(a, ['key', 'default', 'delimiter']);
      const miss = {};
      const fromGrains = traverse(grains, String(key), miss, String(delimiter));
      return fromGrains !== miss ? fromGrains : traverse(pillar, String(key), d, String(delimiter));
    },
    'grains.filter_by': (...a) => {
      const { lookup_dict, grain = 'os_family', merge, default: dflt = 'default', base } = keywords(a, ['lookup_dict', 'grain', 'merge', 'default', 'base']);
      const table = (lookup_dict ?? {}) as Record<string, unknown>;
      const value = traverse(grains, String(grain), null);
      const keys = Array.isArray(value) ? value.map(String) : value === null ? [] : [String(value)];
      const hit = keys.find((k) => Object.prototype.hasOwnProperty.call(table, k));
      let result = hit !== undefined ? table[hit] : Object.prototype.hasOwnProperty.call(table, String(dflt)) ? table[String(dflt)] : null;
      if (base !== undefined && base !== null && Object.prototype.hasOwnProperty.call(table, String(base))) result = deepMerge(table[String(base)], result ?? {});
      if (merge !== undefined && merge !== null) result = deepMerge(result ?? {}, merge);
      return result;
    },
  };
  return new Proxy(fns, {
    get(target, prop) {
      if (typeof prop === 'symbol') return Reflect.get(target, prop);
      if (Object.prototype.hasOwnProperty.call(target, prop)) return target[prop];
      if (['then', 'toJSON', 'length', '__keywords', 'constructor', 'toString', 'valueOf', 'inspect', 'nodeType'].includes(prop)) return undefined;
      throw new SaltCallError(prop);
    },
  });
}

export class SaltCallError extends Error {
  override name = 'SaltCallError';
  constructor(readonly fn: string) {
    super(
      `salt['${fn}'] is ${/^\w+\.\w+$/.test(fn) ? 'an execution-module call' : 'not a Salt function'}: brine calls none while rendering, so that a template never depends on or changes the live system; these work: ${SALT_FUNCTIONS.map((f) => `salt['${f}']`).join(', ')} — facts come from grains, values from pillar`,
    );
  }
}

// ---- filters ------------------------------------------------------------------------------

/** Python's json.dumps(sort_keys=True): ", " and ": " between items. */
function pyJson(v: unknown, indent?: number, sortKeys = true): string {
  const sorted = (x: unknown): unknown =>
    Array.isArray(x) ? x.map(sorted) : x !== null && typeof x === 'object' ? Object.fromEntries(Object.keys(x).sort(sortKeys ? undefined : () => 0).map((k) => [k, sorted((x as Record<string, unknown>)[k])])) : x;
  const value = sorted(v);
  if (indent) return JSON.stringify(value, null, indent);
  return JSON.stringify(value)
    .replace(/("(?:[^"\\]|\\.)*")|([,:])/g, (m, s: string | undefined, p: string | undefined) => s ?? `${p} `)
    .replace(/\u2028|\u2029/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

const yamlScalar = (v: unknown): string => yamlStringify(v, { lineWidth: 0 }).replace(/\n$/, '').replace(/\n\.\.\.$/, '');

/** Python's re syntax, as far as JavaScript's differs: named groups and backreferences in a replacement. */
const pyRegex = (re: string) => String(re).replace(/\(\?P<(\w+)>/g, '(?<$1>').replace(/\(\?P=(\w+)\)/g, '\\k<$1>');
const pyReplacement = (repl: string) => String(repl).replace(/\$/g, '$$$$').replace(/\\g<(\w+)>/g, (_m, g: string) => (/^\d+$/.test(g) ? `$${g}` : `$<${g}>`)).replace(/\\(\d+)/g, '$$$1');

function toBool(v: unknown): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v > 0;
  if (typeof v === 'string') return ['yes', '1', 'true', 'on'].includes(v.toLowerCase());
  return truthy(v);
}

const unique = (l: unknown) => {
  const out: unknown[] = [];
  for (const x of asList(l)) if (!out.some((y) => JSON.stringify(y) === JSON.stringify(x))) out.push(x);
  return out;
};
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : typeof v === 'string' ? [...v] : v !== null && typeof v === 'object' ? Object.keys(v) : [v]);
const hash = (algo: string) => (v: unknown) => createHash(algo).update(String(v)).digest('hex');
const shellQuote = (v: unknown) => {
  const s = String(v);
  return s !== '' && /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'"'"'`)}'`;
};

function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${pyRepr(k)}: ${pyRepr((v as Record<string, unknown>)[k])}`).join(', ')}}`;
  return String(v);
}

/** `| map('upper')`, `| map(attribute='name')`, `| map('replace', 'a', 'b')`. */
function makeMap(env: nunjucks.Environment): Fn {
  return function (this: unknown, seq: unknown, ...a: unknown[]) {
    const items = asList(seq);
    const { attribute, default: dflt } = keywords(a, []);
    if (attribute !== undefined) return items.map((x) => traverse(x, String(attribute).replace(/\./g, ':'), dflt ?? null));
    const [name, ...args] = a.filter((x) => !(x && typeof x === 'object' && (x as { __keywords?: boolean }).__keywords));
    const filter = env.getFilter(String(name)) as Fn;
    return items.map((x) => filter.call(this, x, ...args));
  };
}

/** Jinja2's `selectattr('attr', 'test', arg)` (nunjucks takes only the attribute). */
function makeAttrSelect(env: nunjucks.Environment, keep: boolean): Fn {
  return function (this: unknown, seq: unknown, attr: unknown, testName?: unknown, ...args: unknown[]) {
    return asList(seq).filter((x) => {
      const v = traverse(x, String(attr).replace(/\./g, ':'), undefined);
      const ok = testName === undefined ? truthy(v) : ((env as unknown as { getTest(n: string): Fn }).getTest(String(testName))).call(this, v, ...args) === true;
      return ok === keep;
    });
  };
}

/** What Salt and Jinja2 give templates that nunjucks does not (guarded for secrets by secrets.ts when added). */
export function saltFilters(env: nunjucks.Environment): Record<string, Fn> {
  return {
    json: (v, ...a) => pyJson(v, keywords(a, ['sort_keys', 'indent']).indent as number | undefined, keywords(a, ['sort_keys']).sort_keys !== false),
    tojson: (v, indent) => pyJson(v, indent as number | undefined).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026').replace(/'/g, '\\u0027'),
    yaml: (v, flow = true) => yamlStringify(v, { collectionStyle: flow === false ? 'block' : 'flow', flowCollectionPadding: false, sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, '').replace(/\n\.\.\.$/, ''),
    python: (v) => pyRepr(v),
    load_yaml: (v) => parseYamlText(String(v)) as unknown,
    load_json: (v) => JSON.parse(String(v)) as unknown,
    yaml_encode: (v) => {
      if (v !== null && typeof v === 'object') throw new Error('yaml_encode takes one scalar (a string, number, boolean or none): use | yaml for a list or mapping');
      return yamlScalar(v);
    },
    yaml_dquote: (v) => JSON.stringify(String(v)),
    yaml_squote: (v) => `'${String(v).replace(/'/g, "''")}'`,
    regex_replace: (v, re, repl, ...a) => {
      const { ignorecase, multiline } = keywords(a, ['ignorecase', 'multiline']);
      return String(v).replace(new RegExp(pyRegex(String(re)), `g${ignorecase ? 'i' : ''}${multiline ? 'm' : ''}`), pyReplacement(String(repl)));
    },
    regex_search: (v, re, ...a) => {
      const { ignorecase, multiline } = keywords(a, ['ignorecase', 'multiline']);
      const m = new RegExp(pyRegex(String(re)), `${ignorecase ? 'i' : ''}${multiline ? 'm' : ''}`).exec(String(v));
      return m ? tuple(m.slice(1).map((g) => g ?? null)) : null;
    },
    regex_match: (v, re, ...a) => {
      const { ignorecase, multiline } = keywords(a, ['ignorecase', 'multiline']);
      const m = new RegExp(`^(?:${pyRegex(String(re))})`, `${ignorecase ? 'i' : ''}${multiline ? 'm' : ''}`).exec(String(v));
      return m ? tuple(m.slice(1).map((g) => g ?? null)) : null;
    },
    regex_escape: (v) => String(v).replace(/[^\w]/g, '\\$&'),
    traverse: (v, key, dflt = null, delimiter = ':') => traverse(v, String(key), dflt, String(delimiter)),
    unique,
    sequence: (v) => (Array.isArray(v) ? v : [v]),
    to_bool: toBool,
    quote: shellQuote,
    union: (a, b) => unique([...asList(a), ...asList(b)]),
    intersect: (a, b) => unique(asList(a).filter((x) => asList(b).includes(x))),
    difference: (a, b) => unique(asList(a).filter((x) => !asList(b).includes(x))),
    symmetric_difference: (a, b) => unique([...asList(a).filter((x) => !asList(b).includes(x)), ...asList(b).filter((x) => !asList(a).includes(x))]),
    flatten: (v, levels) => (Array.isArray(v) ? v.flat(levels === undefined || levels === null ? Infinity : Number(levels)) : v),
    is_list: (v) => Array.isArray(v),
    avg: (v) => {
      const l = asList(v).map(Number);
      return l.length ? l.reduce((s, x) => s + x, 0) / l.length : 0;
    },
    min: (v) => asList(v).reduce((m, x) => (m === undefined || (x as number) < (m as number) ? x : m), undefined),
    max: (v) => asList(v).reduce((m, x) => (m === undefined || (x as number) > (m as number) ? x : m), undefined),
    str_to_num: (v) => (Number.isFinite(Number(v)) ? Number(v) : v),
    to_num: (v) => (Number.isFinite(Number(v)) ? Number(v) : v),
    md5: hash('md5'),
    sha1: hash('sha1'),
    sha256: hash('sha256'),
    sha512: hash('sha512'),
    base64_encode: (v) => Buffer.from(String(v)).toString('base64'),
    base64_decode: (v) => Buffer.from(String(v), 'base64').toString('utf8'),
    // Jinja2's own that nunjucks lacks.
    map: makeMap(env),
    selectattr: makeAttrSelect(env, true),
    rejectattr: makeAttrSelect(env, false),
    items: (v) => (v && typeof v === 'object' ? Object.keys(v).map((k) => [k, (v as Record<string, unknown>)[k]]) : []),
    attr: (v, name) => traverse(v, String(name), null),
    format: (fmt, ...args) => {
      const named = keywords(args, []);
      const positional = args.filter((x) => !(x && typeof x === 'object' && (x as { __keywords?: boolean }).__keywords));
      return percent(String(fmt), Object.keys(named).length ? named : positional);
    },
  };
}

// ---- tags: import_yaml, load_yaml ---------------------------------------------------------

interface Parser {
  nextToken(): { value: string; lineno: number; colno: number };
  parseExpression(): unknown;
  parsePrimary(): unknown;
  skipSymbol(s: string): boolean;
  fail(msg: string, lineno?: number, colno?: number): never;
  advanceAfterBlockEnd(v?: string): void;
  parseUntilBlocks(...names: string[]): unknown;
}
interface Nodes {
  Set: new (l: number, c: number, targets: unknown[], value?: unknown) => { body?: unknown };
  FunCall: new (l: number, c: number, name: unknown, args: unknown) => unknown;
  Symbol: new (l: number, c: number, v: string) => unknown;
  Literal: new (l: number, c: number, v: unknown) => unknown;
  NodeList: new (l: number, c: number, children: unknown[]) => unknown;
  Capture: new (l: number, c: number, body: unknown) => unknown;
}

const IMPORT_TAGS = { import_yaml: 'yaml', import_json: 'json', import_text: 'text' } as const;
const LOAD_TAGS = { load_yaml: 'yaml', load_json: 'json', load_text: 'text' } as const;

/** `{% import_yaml "defaults.yaml" as d %}` and `{% load_yaml as d %}…{% endload %}`. */
class SaltTags {
  readonly tags = [...Object.keys(IMPORT_TAGS), ...Object.keys(LOAD_TAGS)];
  parse(parser: Parser, nodes: Nodes): unknown {
    const tok = parser.nextToken();
    const { lineno, colno } = tok;
    if (tok.value in IMPORT_TAGS) {
      const source = parser.parseExpression();
      if (!parser.skipSymbol('as')) parser.fail(`${tok.value}: expected "as NAME", as in {% ${tok.value} "defaults.yaml" as defaults %}`, lineno, colno);
      const target = parser.parsePrimary();
      parser.advanceAfterBlockEnd(tok.value);
      const call = new nodes.FunCall(lineno, colno, new nodes.Symbol(lineno, colno, '__brine_import'), new nodes.NodeList(lineno, colno, [new nodes.Literal(lineno, colno, IMPORT_TAGS[tok.value as keyof typeof IMPORT_TAGS]), source]));
      return new nodes.Set(lineno, colno, [target], call);
    }
    if (!parser.skipSymbol('as')) parser.fail(`${tok.value}: expected "as NAME", as in {% ${tok.value} as data %}…{% endload %}`, lineno, colno);
    const target = parser.parsePrimary();
    parser.advanceAfterBlockEnd(tok.value);
    const body = parser.parseUntilBlocks('endload');
    parser.advanceAfterBlockEnd();
    const call = new nodes.FunCall(lineno, colno, new nodes.Symbol(lineno, colno, '__brine_load'), new nodes.NodeList(lineno, colno, [new nodes.Literal(lineno, colno, LOAD_TAGS[tok.value as keyof typeof LOAD_TAGS]), new nodes.Capture(lineno, colno, body)]));
    return new nodes.Set(lineno, colno, [target], call);
  }
}

function parseAs(kind: string, text: string): unknown {
  if (kind === 'yaml') return parseYamlText(text) as unknown;
  if (kind === 'json') return JSON.parse(text) as unknown;
  return text;
}

/**
 * Installs Salt's filters, tags and the import functions in `env`. `importFile(path, kind)` renders
 * a file of the states tree (a path relative to its root; `salt://` and `./` forms are resolved
 * here against the importing template's directory).
 */
export function installSalt(env: nunjucks.Environment, importFile: (path: string, source: string, from: string) => string): void {
  for (const [name, filter] of Object.entries(saltFilters(env))) env.addFilter(name, filter as never);
  env.addExtension('salt', new SaltTags());
  env.addGlobal('__brine_load', (kind: string, text: unknown) => parseAs(kind, String(isSecret(text) ? text.reveal() : text)));
  env.addGlobal('__brine_import', function (this: { ctx?: Record<string, unknown> }, kind: string, source: unknown) {
    const path = resolveImport(String(source), String(this.ctx?.tpldir ?? ''));
    return parseAs(kind, importFile(path, String(source), String(this.ctx?.tplfile ?? '')));
  });
}

/** `salt://x/y.yaml`, `x/y.yaml` (from the tree's root) or `./y.yaml` (next to the template). */
export function resolveImport(source: string, tpldir: string): string {
  const s = source.replace(/^salt:\/\//, '');
  return normalize(s.startsWith('./') || s.startsWith('../') ? join(tpldir, s) : s);
}

/** The variables Salt gives a state file: its SLS name and where it is. */
export function slsVariables(relPath: string): Record<string, string> {
  const tplfile = relPath;
  const noExt = relPath.replace(/\.(sls|yaml|yml|jinja|j2)$/, '');
  const sls = noExt.replace(/\/init$/, '').split('/').join('.');
  const tpldir = dirname(relPath) === '.' ? '' : dirname(relPath);
  const slspath = tpldir;
  return { sls, slspath, slsdotpath: slspath.split('/').join('.'), slscolonpath: slspath.split('/').join(':'), tpldir, tplfile, saltenv: 'base' };
}
