// Salt's targeting, for top.sls: which servers a list of state files is for.
//
//   'web*'                       glob on the server's id (the default)
//   'roles:web' + match: grain   a grain's value (a glob; any item of a list grain)
//   'app:tier:front' + match: pillar
//   'web1,web2' + match: list    ·  '^web\d+$' + match: pcre  ·  '10.0.0.0/24' + match: ipcidr
//   'G@roles:web and not I@maintenance:true' + match: compound
//     (G@ grain, I@ pillar, L@ list, E@ pcre on the id, P@ grain pcre, J@ pillar pcre, S@ ipcidr,
//      a bare word is a glob on the id; and, or, not, parentheses)
// Nodegroups (N@) need a master's configuration: an error saying so.
import { InputError } from './errors.js';

export interface TargetFacts {
  id: string;
  grains: Record<string, unknown>;
  pillar: Record<string, unknown>;
}

export const MATCHERS = ['glob', 'grain', 'pillar', 'list', 'pcre', 'grain_pcre', 'pillar_pcre', 'ipcidr', 'compound'] as const;
export type Matcher = (typeof MATCHERS)[number];

/** fnmatch as Salt uses it: `*`, `?`, `[abc]`, `[!abc]`. */
export function glob(pattern: string, text: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        const body = pattern.slice(i + 1, end);
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`.replace(/\\/g, '\\\\');
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's').test(text);
}

/** `key:sub:value` → the value at key:sub in `data`, tested by `test` (any item of a list; booleans as Python prints them). */
function byPath(data: Record<string, unknown>, expr: string, test: (pattern: string, value: string) => boolean, delimiter = ':'): boolean {
  const parts = expr.split(delimiter);
  if (parts.length < 2) return false;
  // Try the longest key path first: `a:b:c` is key a:b value c, or key a value b:c.
  for (let cut = parts.length - 1; cut >= 1; cut--) {
    let node: unknown = data;
    for (const k of parts.slice(0, cut)) node = node !== null && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>)[k] : undefined;
    if (node === undefined) continue;
    const pattern = parts.slice(cut).join(delimiter);
    const values = Array.isArray(node) ? node : [node];
    if (values.some((v) => v !== null && typeof v !== 'object' && test(pattern, typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v)))) return true;
    if (node !== null && typeof node === 'object' && !Array.isArray(node) && Object.keys(node).some((k) => test(pattern, k))) return true;
  }
  return false;
}

const pcre = (pattern: string, text: string) => new RegExp(pattern).test(text);

function ipv4ToInt(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + p, 0);
}

function inCidr(cidr: string, addresses: string[]): boolean {
  const [net, bits = '32'] = cidr.split('/');
  const base = ipv4ToInt(net ?? '');
  const len = Number(bits);
  if (base === undefined || !Number.isInteger(len) || len < 0 || len > 32) throw new Error(`"${cidr}" is not an IPv4 address or network (like 10.0.0.0/24)`);
  const size = 2 ** (32 - len);
  const start = Math.floor(base / size) * size;
  return addresses.some((a) => {
    const n = ipv4ToInt(a);
    return n !== undefined && n >= start && n < start + size;
  });
}

/** Whether the server matches `expr` by `matcher`. A malformed expression throws an Error saying why. */
export function matches(matcher: Matcher, expr: string, facts: TargetFacts): boolean {
  switch (matcher) {
    case 'glob':
      return glob(expr, facts.id);
    case 'grain':
      return byPath(facts.grains, expr, glob);
    case 'pillar':
      return byPath(facts.pillar, expr, glob);
    case 'grain_pcre':
      return byPath(facts.grains, expr, pcre);
    case 'pillar_pcre':
      return byPath(facts.pillar, expr, pcre);
    case 'list':
      return expr.split(',').map((s) => s.trim()).includes(facts.id);
    case 'pcre':
      return pcre(expr, facts.id);
    case 'ipcidr':
      return inCidr(expr, (facts.grains.ipv4 as string[] | undefined) ?? []);
    case 'compound':
      return compound(expr, facts);
  }
}

const PREFIXES: Record<string, Matcher> = { G: 'grain', I: 'pillar', L: 'list', E: 'pcre', P: 'grain_pcre', J: 'pillar_pcre', S: 'ipcidr' };

/** A compound expression: words joined by and / or / not, with parentheses. */
function compound(expr: string, facts: TargetFacts): boolean {
  const tokens = expr.replace(/\(/g, ' ( ').replace(/\)/g, ' ) ').split(/\s+/).filter(Boolean);
  let i = 0;
  const word = (w: string): boolean => {
    const m = /^([A-Z])@(.*)$/.exec(w);
    if (!m) return glob(w, facts.id);
    if (m[1] === 'N') throw new Error('nodegroups (N@) are defined in a Salt master\'s configuration, which brine does not have: use grains (G@roles:web) instead');
    const matcher = PREFIXES[m[1]!];
    if (!matcher) throw new Error(`unknown matcher ${m[1]}@ (brine knows ${Object.keys(PREFIXES).map((p) => `${p}@`).join(', ')})`);
    return matches(matcher, m[2]!, facts);
  };
  const primary = (): boolean => {
    const t = tokens[i++];
    if (t === undefined) throw new Error('the expression ends too soon');
    if (t === 'not') return !primary();
    if (t === '(') {
      const v = or();
      if (tokens[i++] !== ')') throw new Error('a ( is not closed');
      return v;
    }
    if (t === 'and' || t === 'or' || t === ')') throw new Error(`"${t}" where a target was expected`);
    return word(t);
  };
  const and = (): boolean => {
    let v = primary();
    while (tokens[i] === 'and') {
      i++;
      const r = primary();
      v = v && r;
    }
    return v;
  };
  const or = (): boolean => {
    let v = and();
    while (tokens[i] === 'or') {
      i++;
      const r = and();
      v = v || r;
    }
    return v;
  };
  const v = or();
  if (i < tokens.length) throw new Error(`unexpected "${tokens[i]}" (targets are joined by and / or)`);
  return v;
}

/** The `- match: grain` item of a top file's list, if there is one, checked. */
export function matcherOf(value: unknown, place: { file: string; line?: number; key: string }): Matcher {
  if (value === undefined) return 'glob';
  if (typeof value === 'string' && (MATCHERS as readonly string[]).includes(value)) return value as Matcher;
  if (value === 'nodegroup') throw new InputError("match: nodegroup needs a Salt master's configuration, which brine does not have: use match: grain (roles) or compound", place);
  throw new InputError(`match: "${String(value)}" is not a matcher brine knows (${MATCHERS.join(', ')})`, place);
}
