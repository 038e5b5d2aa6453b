// Turns loaded declarations into a runnable, ordered list — or into input errors, before anything
// is applied: every state's module and function must exist, every argument must match the
// function's schema, every requisite must name a state, and requisites must not form a cycle.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import { InputError, throwCollected } from './errors.js';
import { saltArgs } from './saltargs.js';
import type { StateFunction } from './modules/types.js';
import { slsOfFile, type RequisiteKind, type StateDecl } from './sls.js';

export interface Dependency {
  kind: RequisiteKind;
  state: CompiledState;
}

export interface CompiledState extends StateDecl {
  function: StateFunction;
  /** What this state waits for, and how. */
  deps: Dependency[];
}

export type Registry = Record<string, Record<string, StateFunction>>;

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
const validators = new WeakMap<TSchema, ValidateFunction>();

function validatorFor(schema: TSchema): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(schema, v);
  }
  return v;
}

/** Edit distance, for "did you mean …?". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

export function suggest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = distance(word, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function describeArgError(errors: ErrorObject[], schema: TSchema): { arg: string; message: string } {
  // The most specific problem: deepest path, with anyOf/oneOf summaries last.
  const sorted = [...errors].sort((a, b) => b.instancePath.length - a.instancePath.length || Number(a.keyword === 'anyOf') - Number(b.keyword === 'anyOf'));
  const union = errors.find((e) => e.keyword === 'anyOf');
  const e = union && !sorted.some((s) => s.instancePath.length > union.instancePath.length) ? union : sorted[0]!;
  const path = e.instancePath.split('/').filter(Boolean);
  const properties = (schema as { properties?: Record<string, TSchema & { hint?: string; patternHint?: string }> }).properties ?? {};
  if (e.keyword === 'additionalProperties' && path.length > 0) {
    // Inside a mapping argument (env: {…}): that key is not allowed there.
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return { arg: path[0]!, message: `${[...path.slice(1), extra].join('.')} is not an allowed key` };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    const hint = suggest(extra, Object.keys(properties));
    return { arg: extra, message: `unknown argument${hint ? ` (did you mean ${hint}?)` : ` (known: ${Object.keys(properties).join(', ')})`}` };
  }
  if (e.keyword === 'required') {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    return { arg: missing, message: 'required argument is missing' };
  }
  const arg = path[0] ?? '(arguments)';
  const where = path.length > 1 ? `${path.slice(1).join('.')} ` : '';
  // A value of the right type that does not match (a quoted '0999') gets the pattern's own hint.
  const hints = properties[arg] as { hint?: string; patternHint?: string } | undefined;
  const hint = e.keyword === 'pattern' && hints?.patternHint ? hints.patternHint : hints?.hint;
  // A pattern says nothing to a user; its hint does.
  if (e.keyword === 'pattern' && hint) return { arg, message: `${where}is not valid: ${hint}` };
  const message = e.keyword === 'anyOf' ? 'has the wrong type' : (e.message ?? 'is invalid');
  return { arg, message: `${where}${message}${hint ? `: ${hint}` : ''}` };
}

function label(s: StateDecl): string {
  return `${s.module}.${s.fn} ${s.id}`;
}

/**
 * Validates and orders the tree; throws InputError(s) that name files, lines and keys. Salt's
 * arguments brine ignores are taken out, each with a warning in `warnings`.
 */
export function compile(states: StateDecl[], registry: Registry, warnings: InputError[] = []): CompiledState[] {
  const errors: InputError[] = [];
  const compiled: CompiledState[] = [];
  const functionNames = Object.entries(registry).flatMap(([m, fns]) => Object.keys(fns).map((f) => `${m}.${f}`));

  for (const decl of expandNames(states, registry, errors)) {
    const fn = registry[decl.module]?.[decl.fn];
    if (!fn) {
      const wanted = `${decl.module}.${decl.fn}`;
      const hint = suggest(wanted, functionNames);
      const what = registry[decl.module] ? 'function' : 'module';
      errors.push(new InputError(`unknown ${what} ${wanted}${hint ? ` (did you mean ${hint}?)` : ''}`, { ...decl.place, key: decl.id }));
      continue;
    }
    const known = Object.keys((fn.schema as { properties?: object }).properties ?? {});
    const salt = saltArgs(`${decl.module}.${decl.fn}`, decl.args, known);
    const at = (key: string) => ({ file: decl.place.file, line: decl.argLines[key] ?? decl.place.line, key: `${decl.id}: ${key}` });
    for (const { key, why } of salt.unsupported) errors.push(new InputError(`Salt's ${key} is not supported by brine's ${decl.module}.${decl.fn}: ${why}`, at(key)));
    if (salt.unsupported.length) continue;
    for (const key of salt.ignored) {
      warnings.push(new InputError(`Salt's ${key} is ignored: brine's ${decl.module}.${decl.fn} does not read it`, at(key)));
      delete decl.args[key];
    }
    const validate = validatorFor(fn.schema);
    if (!validate(decl.args)) {
      const { arg, message } = describeArgError(validate.errors ?? [], fn.schema);
      errors.push(new InputError(message, { file: decl.place.file, line: decl.argLines[arg] ?? decl.place.line, key: `${decl.id}: ${arg}` }));
      continue;
    }
    for (const p of fn.validate?.(decl.args) ?? [])
      errors.push(new InputError(p.message, { file: decl.place.file, line: decl.argLines[p.key] ?? decl.place.line, key: `${decl.id}: ${p.key}` }));
    compiled.push({ ...decl, function: fn, deps: [] });
  }
  throwCollected(errors);
  errors.push(...conflicts(compiled));

  // Requisites: `module: ID-or-name` or a bare ID.
  const byId = new Map<string, CompiledState[]>();
  for (const s of compiled) byId.set(s.id, [...(byId.get(s.id) ?? []), s]);
  // `- sls: web.nginx` is every state of that file, as in Salt.
  const resolve = (module: string | undefined, target: string): CompiledState[] =>
    module === 'sls'
      ? compiled.filter((s) => slsOfFile(s.place.file) === target)
      : module
        ? compiled.filter((s) => s.module === module && (s.id === target || s.args.name === target))
        : (byId.get(target) ?? compiled.filter((s) => s.args.name === target));
  for (const s of compiled) {
    for (const r of s.requisites) {
      const key = `${s.id}: ${r.kind}${r.reverse ? '_in' : ''}`;
      const targets = resolve(r.module, r.target);
      if (targets.length === 0) {
        const ref = r.module ? `${r.module}: ${r.target}` : r.target;
        const hint = suggest(r.target, [...byId.keys()]);
        errors.push(new InputError(`no state matches "${ref}"${hint ? ` (did you mean ${hint}?)` : ''}`, { ...r.place, key }));
        continue;
      }
      for (const t of targets) {
        if (t === s) {
          errors.push(new InputError('a state cannot require itself', { ...r.place, key }));
          continue;
        }
        if (r.reverse) t.deps.push({ kind: r.kind, state: s });
        else s.deps.push({ kind: r.kind, state: t });
      }
    }
  }
  throwCollected(errors);
  return order(compiled);
}

/**
 * Salt's `names:` on any state: the same state once per name, an item perhaps with arguments of
 * its own (`- vim: [{version: 2}]`). A function that reads `names` itself (ssh_auth) keeps it.
 */
function expandNames(states: StateDecl[], registry: Registry, errors: InputError[]): StateDecl[] {
  const out: StateDecl[] = [];
  for (const decl of states) {
    const own = (registry[decl.module]?.[decl.fn]?.schema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
    const names = decl.args.names;
    if (names === undefined || 'names' in own) {
      out.push(decl);
      continue;
    }
    const place = { file: decl.place.file, line: decl.argLines.names ?? decl.place.line, key: `${decl.id}: names` };
    if (decl.argLines.name !== undefined) {
      errors.push(new InputError('give name: or names:, not both', place));
      continue;
    }
    if (!Array.isArray(names) || names.length === 0) {
      errors.push(new InputError('names: expects a list of names', place));
      continue;
    }
    const { names: _, ...args } = decl.args;
    for (const item of names) {
      let name: string;
      const extra: Record<string, unknown> = {};
      if (typeof item === 'string' || typeof item === 'number') name = String(item);
      else if (item && typeof item === 'object' && !Array.isArray(item) && Object.keys(item).length === 1) {
        const [n, over] = Object.entries(item as Record<string, unknown>)[0]!;
        name = n;
        for (const entry of over === null ? [] : Array.isArray(over) ? over : [over]) {
          if (entry && typeof entry === 'object' && !Array.isArray(entry)) Object.assign(extra, entry);
          else errors.push(new InputError(`names: ${n}: expects a list of - key: value`, place));
        }
      } else {
        errors.push(new InputError('names: each item is a name, or a name with its own arguments (- vim: [{version: 2}])', place));
        continue;
      }
      out.push({ ...decl, key: `${decl.module}.${decl.fn}:${decl.id}:${name}`, args: { ...args, ...extra, name }, argLines: { ...decl.argLines, name: decl.argLines.names } });
    }
  }
  return out;
}

/**
 * Two states that manage the same thing (a path, a cron entry, a program) would undo each other on
 * every run: an input error naming both, at the second.
 */
function conflicts(states: CompiledState[]): InputError[] {
  const errors: InputError[] = [];
  const owner = new Map<string, CompiledState>();
  for (const s of states) {
    for (const claim of new Set(s.function.claims?.(s.args) ?? [])) {
      const first = owner.get(claim);
      if (!first) {
        owner.set(claim, s);
        continue;
      }
      errors.push(
        new InputError(`${claim.startsWith('path:') ? claim.slice('path:'.length) : claim.replace(':', ' ')} is managed by ${label(first)} too (${first.place.file}${first.place.line ? `:${first.place.line}` : ''}): two states would undo each other on every run; keep one`, {
          file: s.place.file,
          line: s.place.line,
          key: s.id,
        }),
      );
    }
  }
  return errors;
}

/** Salt's `order:`: first, then numbered states (lower first), then the rest, then last. */
const rank = (s: StateDecl): number => (s.order === 'first' ? 0 : typeof s.order === 'number' ? 1 : s.order === 'last' ? 3 : 2);

/**
 * Definition order (or `order:`), except that a state's requisites run first — pulled forward when it is reached,
 * as Salt does (so `a` requiring a later `d` runs d, a, b, c). A cycle is an input error.
 */
function order(states: CompiledState[]): CompiledState[] {
  const out: CompiledState[] = [];
  const done = new Set<CompiledState>();
  // Depth-first with a stack of its own: a chain of thousands of requisites must not overflow
  // the call stack (8,000 did).
  const onPath = new Set<CompiledState>();
  for (const root of [...states].sort((a, b) => rank(a) - rank(b) || (typeof a.order === 'number' && typeof b.order === 'number' ? a.order - b.order : 0) || a.index - b.index)) {
    if (done.has(root)) continue;
    const stack: { state: CompiledState; deps: CompiledState[]; next: number }[] = [];
    const enter = (st: CompiledState) => {
      onPath.add(st);
      stack.push({ state: st, deps: [...st.deps].sort((a, b) => a.state.index - b.state.index).map((d) => d.state), next: 0 });
    };
    enter(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.deps.length) {
        const dep = top.deps[top.next++]!;
        if (done.has(dep)) continue;
        if (onPath.has(dep)) {
          const path = stack.map((f) => f.state);
          throw cycleError([...path.slice(path.indexOf(dep)), dep]);
        }
        enter(dep);
        continue;
      }
      stack.pop();
      onPath.delete(top.state);
      done.add(top.state);
      out.push(top.state);
    }
  }
  return out;
}

function cycleError(loop: CompiledState[]): InputError {
  const shown = loop.map((x) => `${label(x)} (${x.place.file}:${x.place.line})`).join(' → ');
  return new InputError(`requisite cycle: ${shown}`, { file: loop[0]!.place.file, line: loop[0]!.place.line, key: loop[0]!.id });
}
