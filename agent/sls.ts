// Loading the state tree: `states/top.yaml` picks the state files for an environment; each file is
// rendered with Jinja syntax, parsed as YAML and turned into declarations — one per (ID, function)
// — that remember the file and line they came from, for error messages.
//
//   # states/top.yaml            # states/web.yaml
//   '*':                         include:
//     - users                      - users
//     - web                      nginx:
//   staging:                       pkg.installed: []
//     - debug                      service.running:
//                                    - enable: true
//                                    - watch:
//                                      - file: nginx-site
import { join } from 'node:path';
import type { Node, Pair, YAMLMap } from 'yaml';
import { splitCommand } from './argv.js';
import { suggest } from './compile.js';
import { InputError, throwCollected } from './errors.js';
import type { Renderer } from './render/render.js';
import { hasSaltTop, saltTop } from './top.js';
import type { TargetFacts } from './target.js';
import { Tree } from './treefile.js';
import { isMap, isScalar, isSeq, parseYaml, type YamlFile } from './yamlfile.js';

export const REQUISITE_KINDS = ['require', 'watch', 'onchanges', 'onfail'] as const;
export type RequisiteKind = (typeof REQUISITE_KINDS)[number];

/**
 * Salt's spellings of requisites, as brine runs them (each also with `_in`, but the _any/_all
 * forms). Where brine's meaning differs from Salt's, a warning says how.
 */
const REQUISITE_SPELLINGS: Record<string, { kind: RequisiteKind; differs?: string }> = {
  require: { kind: 'require' },
  watch: { kind: 'watch' },
  onchanges: { kind: 'onchanges' },
  onfail: { kind: 'onfail' },
  // Salt defers a listen's reaction to the end of the run; brine reacts when the listener's turn comes.
  listen: { kind: 'watch' },
  onchanges_any: { kind: 'onchanges' },
  onfail_any: { kind: 'onfail' },
  require_any: { kind: 'require', differs: 'brine waits for every one of them to succeed (Salt: any one)' },
  watch_any: { kind: 'watch', differs: 'brine waits for every one of them to succeed (Salt: any one)' },
  onfail_all: { kind: 'onfail', differs: 'brine runs this when any one of them fails (Salt: when all do)' },
};

/** A requisite key (`watch_in`, `require_any`…) as brine reads it, or undefined. */
function requisiteSpelling(key: string): { kind: RequisiteKind; reverse: boolean; differs?: string } | undefined {
  const reverse = key.endsWith('_in') && !/_(any|all)_in$/.test(key);
  const base = reverse ? key.slice(0, -'_in'.length) : key;
  const s = REQUISITE_SPELLINGS[base];
  return s && { ...s, reverse };
}

/** Keys that are requisites in Salt, of any spelling (for the ID-level check). */
const isRequisiteKey = (key: string) => requisiteSpelling(key) !== undefined || /^(use|prereq)(_in)?$/.test(key);

export interface Place {
  file: string;
  line?: number;
}

/** `- file: nginx-site` (module + ID or name) or `- nginx-site` (any state with that ID). */
export interface Requisite {
  kind: RequisiteKind;
  module?: string;
  target: string;
  /** `watch_in` and friends: the requisite belongs to the target, pointing back here. */
  reverse: boolean;
  place: Place;
}

export interface Conditions {
  /** Run only if every command succeeds. */
  onlyif?: (string | string[])[];
  /** Skip if every command succeeds. */
  unless?: (string | string[])[];
  /** Skip if every path exists. */
  creates?: string[];
}

export interface StateDecl {
  /** `pkg.installed:nginx` (`pkg.installed:tools:vim` for a name of `names:`, compile.ts) — unique in the tree. */
  key: string;
  id: string;
  module: string;
  fn: string;
  /** The module's arguments (requisites and conditions removed); `name` defaults to the ID. */
  args: Record<string, unknown>;
  argLines: Record<string, number | undefined>;
  requisites: Requisite[];
  conditions: Conditions;
  place: Place;
  /** Position in definition order across the whole tree. */
  index: number;
  /** Salt's `order:` — a number (lower first), `first` or `last`; without it, definition order. */
  order?: number | 'first' | 'last';
  /** `use:` — states whose arguments this one takes where it gives none (resolved by loadTree). */
  uses?: { module?: string; target: string; place: Place; reverse: boolean }[];
}

export interface StateTree {
  /** State files in the order they were loaded (includes first). */
  files: string[];
  states: StateDecl[];
  /** The top file's parts brine does not read (another saltenv…). */
  warnings: InputError[];
}

const CONDITION_KEYS = ['onlyif', 'unless', 'creates'] as const;

/** Arguments that are file modes, read as Salt reads them. */
const MODE_KEYS = new Set(['mode', 'dir_mode', 'file_mode']);

/** Modes in the per-name arguments of `names:` (`- /srv/run: [{mode: 0750}]`), read as modeValue reads them. */
function modesInside(node: Node | null, depth = 0): void {
  if (depth > 6 || node === null) return;
  if (isSeq(node)) for (const item of node.items as Node[]) modesInside(item, depth + 1);
  else if (isMap(node))
    for (const pair of node.items as Pair<Node, Node>[]) {
      const mode = isScalar(pair.key) && MODE_KEYS.has(String(pair.key.value)) ? modeValue(pair.value) : undefined;
      if (mode !== undefined) (pair.value as { value: unknown }).value = mode;
      else modesInside(pair.value, depth + 1);
    }
}

/**
 * `mode: 644`, `mode: 0644`, `mode: 0o644` and `mode: '0644'` all mean rw-r--r--, as in Salt. YAML
 * 1.2 reads 0644 as the number 644 and 0o644 as 420, so a bare number is read from its source text.
 * Anything else is left to the schema (which says what a mode is).
 */
function modeValue(node: Node | null): string | undefined {
  if (!isScalar(node) || typeof node.value !== 'number') return undefined;
  const text = (node as { source?: string }).source ?? String(node.value);
  const m = /^(?:0o)?(0?[0-7]{3,4})$/.exec(text);
  return m ? m[1] : text;
}
const SLS_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/**
 * `web.nginx` → states/web/nginx.yaml, or states/web/nginx/init.yaml (as Salt resolves SLS names).
 * A candidate that resolves outside the states tree is an InputError (treefile.ts).
 */
export function slsPath(statesDir: string, sls: string, place?: Place): string | undefined {
  const tree = new Tree(statesDir, 'states');
  const base = join(...sls.split('.'));
  for (const candidate of [`${base}.yaml`, `${base}.sls`, join(base, 'init.yaml'), join(base, 'init.sls')])
    if (tree.resolve(candidate, place) !== null) return join(statesDir, candidate);
  return undefined;
}

function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(text);
}

/**
 * top.yaml's keys that match none of the environments there are (a typo: `stagng:`), with their
 * lines and the environment they were likely meant as.
 */
export function strayTopKeys(statesDir: string, environments: string[]): { key: string; line?: number; meant?: string }[] {
  if (environments.length === 0) return [];
  const tree = new Tree(statesDir, 'states');
  if (tree.resolve('top.yaml') === null) return [];
  const y = parseYaml(tree.text('top.yaml'), 'states/top.yaml');
  const root = y.doc.contents;
  if (!isMap(root)) return [];
  return (root.items as Pair<Node, Node>[])
    .map((pair) => ({ key: String(isScalar(pair.key) ? pair.key.value : ''), line: y.lineOf(pair.key) }))
    .filter(({ key }) => !environments.some((e) => globMatch(key, e)))
    .map((k) => ({ ...k, meant: suggest(k.key, environments) }));
}

/** The SLS names top.yaml selects for an environment, in order, without repeats. */
export function topFor(statesDir: string, env: string): { sls: string; place: Place }[] {
  const file = 'top.yaml';
  const tree = new Tree(statesDir, 'states');
  if (tree.resolve(file) === null) throw new InputError('missing: the top file says which state files apply to which environment', { file: `states/${file}` });
  const y = parseYaml(tree.text(file, { place: { file: `states/${file}` } }), `states/${file}`);
  const root = y.doc.contents;
  if (!isMap(root)) throw new InputError('the top file must map environments (or "*") to lists of state files', { file: y.file, line: 1 });
  const out: { sls: string; place: Place }[] = [];
  for (const pair of root.items as Pair<Node, Node>[]) {
    const pattern = String(isScalar(pair.key) ? pair.key.value : '');
    if (!globMatch(pattern, env)) continue;
    if (!isSeq(pair.value)) throw new InputError('expected a list of state files', { file: y.file, line: y.lineOf(pair.key), key: pattern });
    for (const item of pair.value.items as Node[]) {
      const sls = isScalar(item) ? String(item.value) : '';
      if (!SLS_NAME.test(sls)) throw new InputError(`"${sls}" is not a state file name (like web or web.nginx)`, { file: y.file, line: y.lineOf(item), key: pattern });
      if (!out.some((o) => o.sls === sls)) out.push({ sls, place: { file: y.file, line: y.lineOf(item) } });
    }
  }
  return out;
}

/**
 * Salt's relative includes: `.sub` is a sibling of the including file's SLS (in its package for an
 * init file), `..sub` one level up.
 */
export function relativeSls(sls: string, includingFile: string): string {
  const m = /^(\.+)(.*)$/.exec(sls);
  if (!m) return sls;
  const rel = includingFile.replace(/^states\//, '').replace(/\.(sls|yaml)$/, '');
  const pkg = rel.endsWith('/init') || rel === 'init' ? rel.replace(/\/?init$/, '') : rel.split('/').slice(0, -1).join('/');
  const parts = pkg.split('/').filter(Boolean);
  const up = m[1]!.length - 1;
  const base = parts.slice(0, Math.max(0, parts.length - up));
  return [...base, m[2]!].filter(Boolean).join('.');
}

export class TreeLoader {
  readonly #statesDir: string;
  readonly #renderer: Renderer;
  readonly #loaded = new Set<string>();
  readonly #ids = new Map<string, Place>();
  readonly files: string[] = [];
  readonly states: StateDecl[] = [];
  readonly errors: InputError[] = [];
  /** What the tree says that Salt would read and brine reads differently, or not at all. */
  readonly warnings: InputError[] = [];

  constructor(statesDir: string, renderer: Renderer) {
    this.#statesDir = statesDir;
    this.#renderer = renderer;
  }

  /** Loads an SLS and (first) everything it includes. Errors are collected, so one run reports them all. */
  load(sls: string, from: Place): void {
    if (this.#loaded.has(sls)) return;
    this.#loaded.add(sls);
    let path: string | undefined;
    try {
      path = slsPath(this.#statesDir, sls, from);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      this.errors.push(err);
      return;
    }
    if (!path) {
      this.errors.push(new InputError(`no state file for "${sls}" (looked for states/${sls.split('.').join('/')}.yaml)`, from));
      return;
    }
    const rel = path.slice(this.#statesDir.length + 1);
    const file = `states/${rel}`;
    let y: YamlFile;
    try {
      const text = this.#renderer.renderString(new Tree(this.#statesDir, 'states').text(rel, { place: { file } }), file);
      // A YAML error quotes the line, perhaps cut short where masking would not find a secret.
      y = parseYaml(text, file, { secret: this.#renderer.masker.contains(text) });
    } catch (err) {
      if (err instanceof InputError) this.errors.push(err);
      else throw err;
      return;
    }
    const root = y.doc.contents;
    if (root === null || (isScalar(root) && root.value === null)) {
      this.files.push(file);
      return;
    }
    if (!isMap(root)) {
      this.errors.push(new InputError('a state file must map IDs to states', { file, line: 1 }));
      return;
    }
    // As in Salt, included files come first, wherever `include:` stands in the file.
    const pairs = root.items as Pair<Node, Node>[];
    const isInclude = (p: Pair<Node, Node>) => isScalar(p.key) && p.key.value === 'include';
    for (const pair of pairs.filter(isInclude)) this.#includes(y, pair);
    this.files.push(file);
    for (const pair of pairs.filter((p) => !isInclude(p))) {
      const id = isScalar(pair.key) ? String(pair.key.value) : '';
      const line = y.lineOf(pair.key);
      try {
        this.#declare(y, id, line, pair.value);
      } catch (err) {
        if (err instanceof InputError) this.errors.push(err);
        else throw err;
      }
    }
  }

  #includes(y: YamlFile, pair: Pair<Node, Node>): void {
    if (!isSeq(pair.value)) {
      this.errors.push(new InputError('include: expects a list of state files', { file: y.file, line: y.lineOf(pair.key), key: 'include' }));
      return;
    }
    for (const item of pair.value.items as Node[]) {
      const sls = isScalar(item) ? String(item.value) : '';
      this.load(relativeSls(sls, y.file), { file: y.file, line: y.lineOf(item) });
    }
  }

  #declare(y: YamlFile, id: string, line: number | undefined, body: Node | null): void {
    const place = { file: y.file, line };
    const seen = this.#ids.get(id);
    if (seen) throw new InputError(`ID declared twice (first at ${seen.file}:${seen.line})`, { ...place, key: id });
    this.#ids.set(id, place);
    // Salt's short form, `vim: pkg.installed`: the function with no arguments.
    if (isScalar(body) && typeof body.value === 'string' && /^\w+\.\w+$/.test(body.value)) {
      const [module, fn] = body.value.split('.') as [string, string];
      this.states.push(this.#decl(y, id, module, fn, null, y.lineOf(body) ?? line));
      return;
    }
    if (!isMap(body)) throw new InputError('expected a mapping of module.function to arguments', { ...place, key: id });
    for (const entry of (body as YAMLMap<Node, Node>).items) {
      const head = isScalar(entry.key) ? String(entry.key.value) : '';
      const entryLine = y.lineOf(entry.key) ?? line;
      if (isRequisiteKey(head)) {
        // Salt reads requisites only among a function's arguments, and ignores them here.
        this.warnings.push(new InputError(`${head}: at the ID's level is ignored, as Salt ignores it: put it under the function (- ${head}: …)`, { file: y.file, line: entryLine, key: id }));
        continue;
      }
      let module: string;
      let fn: string;
      let argsNode: Node | null = entry.value;
      let oldFormItems: Node[] | undefined;
      if (head.includes('.')) {
        const parts = head.split('.');
        if (parts.length !== 2 || !parts[0] || !parts[1])
          throw new InputError(`"${head}" is not module.function (like pkg.installed)`, { file: y.file, line: entryLine, key: id });
        [module, fn] = parts as [string, string];
      } else {
        // Salt's older form: `pkg: [installed, {name: x}]` — the bare string is the function.
        module = head;
        const items = isSeq(argsNode) ? (argsNode.items as Node[]) : [];
        const bare = items.filter((i) => isScalar(i));
        if (bare.length !== 1)
          throw new InputError(`"${head}" needs a function, as in ${head}.installed or ${head}: [installed]`, { file: y.file, line: entryLine, key: id });
        fn = String((bare[0] as { value: unknown }).value);
        oldFormItems = items.filter((i) => !isScalar(i));
        argsNode = null;
      }
      this.states.push(this.#decl(y, id, module, fn, argsNode, entryLine, oldFormItems));
    }
  }

  #decl(y: YamlFile, id: string, module: string, fn: string, node: Node | null, line: number | undefined, listItems?: Node[]): StateDecl {
    const place = { file: y.file, line };
    const args: Record<string, unknown> = {};
    const argLines: Record<string, number | undefined> = {};
    const pairs: Pair<Node, Node>[] = [];
    const items = listItems ?? (isSeq(node) ? (node.items as Node[]) : undefined);
    if (items) {
      for (const item of items) {
        if (!isMap(item) || item.items.length !== 1)
          throw new InputError('each list item must be one `key: value`', { file: y.file, line: y.lineOf(item) ?? line, key: `${id}: ${module}.${fn}` });
        pairs.push(item.items[0] as Pair<Node, Node>);
      }
    } else if (node === null || (isScalar(node) && node.value === null)) {
      // `pkg.installed:` with nothing: all defaults.
    } else if (isMap(node)) {
      pairs.push(...(node.items as Pair<Node, Node>[]));
    } else {
      throw new InputError('expected a list of arguments (or a mapping)', { ...place, key: `${id}: ${module}.${fn}` });
    }
    const requisites: Requisite[] = [];
    const conditions: Conditions = {};
    const seen = new Set<string>();
    let order: StateDecl['order'];
    let uses: StateDecl['uses'];
    for (const pair of pairs) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      const keyLine = y.lineOf(pair.key) ?? line;
      const where = { file: y.file, line: keyLine, key: `${id}: ${key}` };
      if (seen.has(key)) throw new InputError('argument given twice', where);
      seen.add(key);
      if (key === 'names') modesInside(pair.value);
      const value = MODE_KEYS.has(key) ? modeValue(pair.value) ?? y.valueOf(pair.value as Node) : pair.value === null ? null : y.valueOf(pair.value as Node);
      const spelling = requisiteSpelling(key);
      if (spelling) {
        if (spelling.differs) this.warnings.push(new InputError(`${key}: ${spelling.differs}`, where));
        requisites.push(...this.#requisites(y, id, key, pair.value, keyLine).map((r) => ({ ...r, kind: spelling.kind, reverse: spelling.reverse })));
      } else if (key === 'prereq' || key === 'prereq_in') {
        throw new InputError(`${key} is not supported by brine (it needs a dry run of the other state in the middle of the run): order the two with require and guard this one with onlyif/unless`, where);
      } else if (key === 'use' || key === 'use_in') {
        uses = [...(uses ?? []), ...this.#requisites(y, id, key, pair.value, keyLine).map((r) => ({ module: r.module, target: r.target, place: r.place, reverse: key === 'use_in' }))];
      } else if (key === 'order') {
        if (!(value === 'first' || value === 'last' || (typeof value === 'number' && Number.isFinite(value))))
          throw new InputError('order: expects a number (lower runs first), first or last', where);
        order = value;
      } else if ((CONDITION_KEYS as readonly string[]).includes(key)) {
        if (key === 'creates') {
          const paths = typeof value === 'string' ? [value] : value;
          if (!Array.isArray(paths) || !paths.every((v) => typeof v === 'string' && v.startsWith('/')))
            throw new InputError('creates: expects an absolute path or a list of them', { file: y.file, line: keyLine, key: `${id}: ${key}` });
          conditions.creates = paths as string[];
        } else {
          // As in Salt, a list is several commands; each is a string or an argv list.
          const cmds = typeof value === 'string' ? [value] : value;
          const isCommand = (c: unknown) => (typeof c === 'string' && c.length > 0) || (Array.isArray(c) && c.length > 0 && c.every((w) => typeof w === 'string'));
          if (!Array.isArray(cmds) || cmds.length === 0 || !cmds.every(isCommand))
            throw new InputError(`${key}: expects a command (a string or an argv list) or a list of them`, { file: y.file, line: keyLine, key: `${id}: ${key}` });
          for (const c of cmds as (string | string[])[]) {
            if (typeof c !== 'string') continue;
            try {
              splitCommand(c);
            } catch (err) {
              throw new InputError(`${(err as Error).message.replace('or set shell: true', "or [sh, -c, '…'] for a shell")}`, { file: y.file, line: keyLine, key: `${id}: ${key}` });
            }
          }
          conditions[key as 'onlyif' | 'unless'] = cmds as (string | string[])[];
        }
      } else {
        args[key] = value;
        argLines[key] = keyLine;
      }
    }
    return {
      key: `${module}.${fn}:${id}`,
      id,
      module,
      fn,
      args: { ...args, name: 'name' in args ? args.name : id },
      argLines,
      requisites,
      conditions,
      place,
      index: this.states.length,
      ...(order !== undefined ? { order } : {}),
      ...(uses ? { uses } : {}),
    };
  }

  #requisites(y: YamlFile, id: string, key: string, node: Node | null, line: number | undefined): Requisite[] {
    const kind = key.replace(/_in$/, '') as RequisiteKind;
    const reverse = key.endsWith('_in');
    const items = isSeq(node) ? (node.items as Node[]) : node ? [node] : [];
    if (items.length === 0) throw new InputError(`${key}: expects a list such as - file: ID`, { file: y.file, line, key: `${id}: ${key}` });
    return items.map((item) => {
      const place = { file: y.file, line: y.lineOf(item) ?? line };
      if (isScalar(item)) return { kind, target: String(item.value), reverse, place };
      if (isMap(item) && item.items.length === 1) {
        const p = item.items[0] as Pair<Node, Node>;
        const module = isScalar(p.key) ? String(p.key.value) : '';
        const target = isScalar(p.value) ? String(p.value.value) : '';
        if (module && target) return { kind, module, target, reverse, place };
      }
      throw new InputError(`${key}: each entry is "module: ID" or an ID`, { ...place, key: `${id}: ${key}` });
    });
  }
}

/**
 * Loads every state file the top file selects: states/top.sls by Salt's targeting of this server
 * (`facts`: its id, grains and pillar), else states/top.yaml by environment.
 */
export function loadTree(statesDir: string, env: string, renderer: Renderer, facts?: TargetFacts): StateTree {
  const loader = new TreeLoader(statesDir, renderer);
  const top = hasSaltTop(statesDir) ? saltTop(statesDir, env, renderer, facts ?? { id: '', grains: {}, pillar: {} }) : { items: topFor(statesDir, env), warnings: [] };
  for (const { sls, place } of top.items) loader.load(sls, place);
  throwCollected(loader.errors);
  applyUses(loader.states);
  return { files: loader.files, states: loader.states, warnings: [...top.warnings, ...loader.warnings] };
}

/** The SLS name a state file is (states/web/nginx.sls → web.nginx, states/web/init.sls → web). */
export function slsOfFile(file: string): string {
  return file.replace(/^states\//, '').replace(/\.(sls|yaml)$/, '').replace(/\/init$/, '').split('/').join('.');
}

/**
 * Salt's `use:`: a state takes the arguments of the states it names wherever it gives none of its
 * own (not their name, nor their requisites). `use_in` gives this state's arguments to them.
 */
function applyUses(states: StateDecl[]): void {
  const find = (module: string | undefined, target: string) => states.filter((s) => (!module || s.module === module) && (s.id === target || s.args.name === target));
  const pairs: [StateDecl, StateDecl][] = [];
  for (const s of states)
    for (const u of s.uses ?? []) {
      const others = find(u.module, u.target);
      if (others.length === 0) throw new InputError(`use: no state matches "${u.module ? `${u.module}: ` : ''}${u.target}"`, { ...u.place, key: `${s.id}: use${u.reverse ? '_in' : ''}` });
      for (const o of others) pairs.push(u.reverse ? [o, s] : [s, o]);
    }
  for (const [taker, giver] of pairs)
    for (const [k, v] of Object.entries(giver.args)) if (k !== 'name' && !(k in taker.args)) taker.args[k] = v;
}
