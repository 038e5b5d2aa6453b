// Salt's top file, states/top.sls: which state files apply to this server, by targeting.
//
//   base:
//     '*':
//       - common
//     'web*':                # glob on the server's id
//       - nginx
//     'roles:db':            # a grain (custom grains: /etc/brine/grains)
//       - match: grain
//       - postgres
//     'G@roles:web and I@app:enabled:true':
//       - match: compound
//       - app
//
// Rendered with Jinja first, as Salt does. `base` applies to every server; a saltenv named like
// brine's environment (`staging:`) applies to that environment's servers; any other saltenv is
// ignored with a warning (brine has one state tree). brine's own states/top.yaml (environment →
// files) is read when there is no top.sls.
import type { Node, Pair } from 'yaml';
import { InputError } from './errors.js';
import type { Renderer } from './render/render.js';
import type { Place } from './sls.js';
import { matcherOf, matches, type TargetFacts } from './target.js';
import { Tree } from './treefile.js';
import { isMap, isScalar, isSeq, parseYaml } from './yamlfile.js';

const SLS_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export interface TopChoice {
  items: { sls: string; place: Place }[];
  warnings: InputError[];
}

export function hasSaltTop(statesDir: string): boolean {
  return new Tree(statesDir, 'states').resolve('top.sls') !== null;
}

export function saltTop(statesDir: string, env: string, renderer: Renderer, facts: TargetFacts): TopChoice {
  const tree = new Tree(statesDir, 'states');
  const file = 'states/top.sls';
  if (tree.resolve('top.yaml') !== null) throw new InputError('there is a top.sls and a top.yaml: keep one (top.sls targets servers as Salt does; top.yaml maps environments to state files)', { file });
  const y = parseYaml(renderer.renderString(tree.text('top.sls', { place: { file } }), file), file);
  const root = y.doc.contents;
  const warnings: InputError[] = [];
  const items: TopChoice['items'] = [];
  if (root === null) return { items, warnings };
  if (!isMap(root)) throw new InputError('a top file maps saltenvs (base:) to targets and their state files', { file, line: 1 });
  for (const envPair of root.items as Pair<Node, Node>[]) {
    const saltenv = String(isScalar(envPair.key) ? envPair.key.value : '');
    const envLine = y.lineOf(envPair.key);
    if (saltenv !== 'base' && saltenv !== env) {
      warnings.push(new InputError(`saltenv "${saltenv}" is not read: brine reads base, and a saltenv named like this server's environment (${env})`, { file, line: envLine, key: saltenv }));
      continue;
    }
    if (!isMap(envPair.value)) throw new InputError('expected targets, as in \'*\': [common]', { file, line: envLine, key: saltenv });
    for (const targetPair of envPair.value.items as Pair<Node, Node>[]) {
      const target = String(isScalar(targetPair.key) ? targetPair.key.value : '');
      const line = y.lineOf(targetPair.key);
      const key = `${saltenv}: ${target}`;
      if (!isSeq(targetPair.value)) throw new InputError('expected a list of state files', { file, line, key });
      const names: { sls: string; place: Place }[] = [];
      let match: unknown;
      for (const item of targetPair.value.items as Node[]) {
        const itemLine = y.lineOf(item) ?? line;
        if (isMap(item)) {
          const settings = y.valueOf(item) as Record<string, unknown>;
          for (const k of Object.keys(settings)) {
            if (k === 'match') match = settings.match;
            else warnings.push(new InputError(`"${k}" in a top file is not read by brine (only match: is)`, { file, line: itemLine, key }));
          }
          continue;
        }
        const sls = isScalar(item) ? String(item.value) : '';
        if (!SLS_NAME.test(sls)) throw new InputError(`"${sls}" is not a state file name (like web or web.nginx)`, { file, line: itemLine, key });
        names.push({ sls, place: { file, line: itemLine } });
      }
      const matcher = matcherOf(match, { file, line, key });
      let hit: boolean;
      try {
        hit = matches(matcher, target, facts);
      } catch (err) {
        throw new InputError(`target "${target}" (match: ${matcher}): ${(err as Error).message}`, { file, line, key });
      }
      if (!hit) continue;
      for (const n of names) if (!items.some((o) => o.sls === n.sls)) items.push(n);
    }
  }
  return { items, warnings };
}
