import t, { type Test } from 'tap';
import { Type } from '@sinclair/typebox';
import { compile, suggest, type CompiledState, type Registry } from '../../agent/compile.js';
import { AggregateInputError, InputError } from '../../agent/errors.js';
import type { Grains } from '../../agent/grains.js';
import { Mode } from '../../agent/modules/common.js';
import { stateFunction, type StateFunction } from '../../agent/modules/types.js';
import { Renderer } from '../../agent/render/render.js';
import { loadTree } from '../../agent/sls.js';

// A registry of functions that never touch anything: compile only reads their schemas and validate().
function fake<S extends Parameters<typeof stateFunction>[0]>(schema: S, validate?: StateFunction['validate']): StateFunction {
  return stateFunction(schema, {
    validate,
    async check() {
      return null;
    },
    plan() {
      return { changes: [] };
    },
    async apply() {},
  });
}

const ThingArgs = Type.Object(
  {
    name: Type.String(),
    mode: Type.Optional(Mode),
    size: Type.Optional(Type.Integer()),
    enabled: Type.Boolean({ default: false }),
    env: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Z_]+$' }), Type.String(), { additionalProperties: false })),
    owner: Type.Optional(Type.Object({ user: Type.String() })),
  },
  { additionalProperties: false },
);
const thingPresent = fake(ThingArgs, (args) => (args.size === 13 ? [{ key: 'size', message: 'size 13 is unlucky' }] : []));
const registry: Registry = {
  thing: { present: thingPresent, absent: fake(Type.Object({ name: Type.String() }, { additionalProperties: false })) },
  pkg: { installed: fake(Type.Object({ name: Type.String(), version: Type.Optional(Type.String()) }, { additionalProperties: false })) },
  link: { present: fake(Type.Object({ name: Type.String(), target: Type.String() }, { additionalProperties: false })) },
};

const GRAINS = { os_family: 'Debian' } as Grains;

/** Declarations from states/main.yaml (and any other files the top file selects). */
function declared(t: Test, main: string, more: Record<string, string> = {}) {
  const dir = `${t.testdir({ states: { 'top.yaml': `'*':\n  - main\n${Object.keys(more).map((f) => `  - ${f.replace(/\.yaml$/, '')}\n`).join('')}`, 'main.yaml': main, ...more } })}/states`;
  return loadTree(dir, 'staging', new Renderer(dir, { pillar: {}, env: 'staging', grains: GRAINS })).states;
}

function compiled(t: Test, main: string, more: Record<string, string> = {}): CompiledState[] {
  return compile(declared(t, main, more), registry);
}

/** The one-line messages compile throws. */
function errors(t: Test, main: string, more: Record<string, string> = {}): string[] {
  const decls = declared(t, main, more);
  try {
    compile(decls, registry);
  } catch (err) {
    if (err instanceof AggregateInputError) return err.errors.map((e) => e.format());
    if (err instanceof InputError) return [err.format()];
    throw err;
  }
  t.fail('expected compile to throw an InputError');
  return [];
}

const deps = (s: CompiledState) => s.deps.map((d) => `${d.kind} ${d.state.key}`);

t.test('a valid state gets its function, and schema defaults are filled in', async (t) => {
  const [s] = compiled(t, "a:\n  thing.present:\n    - mode: '0640'\n");
  t.equal(s!.function, thingPresent);
  t.same(s!.args, { mode: '0640', name: 'a', enabled: false });
  t.same(s!.deps, []);
});

t.test('an unknown function or module, with a suggestion when one is close', async (t) => {
  t.same(errors(t, 'nginx:\n  pkg.instaled: []\nweb:\n  thng.present: []\nsite:\n  nginx.site: []\n'), [
    'states/main.yaml:2: nginx: unknown function pkg.instaled (did you mean pkg.installed?)',
    'states/main.yaml:4: web: unknown module thng.present (did you mean thing.present?)',
    'states/main.yaml:6: site: unknown module nginx.site',
  ]);
});

t.test('suggest only offers a close candidate', async (t) => {
  t.equal(suggest('pkg.instaled', ['pkg.installed', 'pkg.removed']), 'pkg.installed');
  t.equal(suggest('aply', ['apply', 'validate', 'show']), 'apply');
  t.equal(suggest('deploy', ['apply', 'validate', 'show']), undefined);
  t.equal(suggest('x', []), undefined);
});

t.test('argument errors name the file, the line of the argument and the key', async (t) => {
  t.same(errors(t, 'a:\n  thing.present:\n    - enabled: true\n    - size: big\n'), ['states/main.yaml:4: a: size: must be integer']);
  t.same(errors(t, 'a:\n  thing.present:\n    - owner:\n        user: 5\n'), ['states/main.yaml:3: a: owner: user must be string']);
});

t.test("modes as Salt reads them: 644, 0644, 0o644 and '0644' are one mode; what cannot be a mode is an error", async (t) => {
  for (const written of ['644', '0644', '0o644', "'0644'", "'644'"]) {
    const states = compiled(t, `a:\n  thing.present:\n    - mode: ${written}\n`);
    t.equal(parseInt(String(states[0]!.args.mode), 8), 0o644, `mode: ${written}`);
  }
  t.same(errors(t, "a:\n  thing.present:\n    - mode: '0980'\n"), ['states/main.yaml:3: a: mode: is not valid: a mode is 3 or 4 octal digits (0-7), such as 0640']);
  t.same(errors(t, 'a:\n  thing.present:\n    - mode: 999\n'), ['states/main.yaml:3: a: mode: is not valid: a mode is 3 or 4 octal digits (0-7), such as 0640']);
  t.same(errors(t, 'a:\n  thing.present:\n    - mode: 12\n'), ['states/main.yaml:3: a: mode: is not valid: a mode is 3 or 4 octal digits (0-7), such as 0640']);
});

t.test('an unknown argument, with a suggestion or the list of known ones', async (t) => {
  t.same(errors(t, 'a:\n  thing.present:\n    - enabled: true\n    - siz: 3\nb:\n  thing.present:\n    - colour: red\n'), [
    'states/main.yaml:4: a: siz: unknown argument (did you mean size?)',
    'states/main.yaml:7: b: colour: unknown argument (known: name, mode, size, enabled, env, owner)',
  ]);
});

t.test('a missing required argument is named, at the state line', async (t) => {
  t.same(errors(t, 'current:\n  link.present: []\n'), ['states/main.yaml:2: current: target: required argument is missing']);
});

t.test("an unknown key inside an argument's mapping names that argument", async (t) => {
  // cmd.run's `env:` is such a mapping: a variable name the pattern refuses is not an unknown
  // *argument*, and the line is env's, not the state's.
  const [message] = errors(t, 'a:\n  thing.present:\n    - env:\n        bad-name: x\n');
  t.equal(message, 'states/main.yaml:3: a: env: bad-name is not an allowed key', 'names env and its line');
});

t.test("the function's own validate() problems name the argument and its line", async (t) => {
  t.same(errors(t, 'a:\n  thing.present:\n    - enabled: true\n    - size: 13\n'), ['states/main.yaml:4: a: size: size 13 is unlucky']);
});

t.test('every invalid state is reported at once', async (t) => {
  t.same(errors(t, 'a:\n  thing.present:\n    - size: x\nb:\n  pkg.instaled: []\nc:\n  thing.present: []\n', { 'other.yaml': 'd:\n  thing.present:\n    - colour: 1\n' }), [
    'states/main.yaml:3: a: size: must be integer',
    'states/main.yaml:5: b: unknown function pkg.instaled (did you mean pkg.installed?)',
    'states/other.yaml:3: d: colour: unknown argument (known: name, mode, size, enabled, env, owner)',
  ]);
});

t.test('requisites', async (t) => {
  t.test('by module and ID, by module and name, by bare ID, by bare name', async (t) => {
    const states = compiled(
      t,
      [
        'nginx:', //                        1
        '  pkg.installed: []', //           2
        '  thing.present: []', //           3
        'site:', //                         4
        '  thing.present:', //              5
        '    - name: /etc/nginx/site', //   6
        'by-module-id:', //                 7
        '  thing.absent:', //               8
        '    - require:', //                9
        '      - pkg: nginx', //           10
        'by-module-name:', //              11
        '  thing.absent:', //              12
        '    - require:', //               13
        '      - thing: /etc/nginx/site', // 14
        'by-id:', //                       15
        '  thing.absent:', //              16
        '    - watch:', //                 17
        '      - nginx', //                18
        'by-name:', //                     19
        '  thing.absent:', //              20
        '    - onchanges:', //             21
        '      - /etc/nginx/site', //      22
        '',
      ].join('\n'),
    );
    const byId = Object.fromEntries(states.map((s) => [s.id, s]));
    t.same(deps(byId['by-module-id']!), ['require pkg.installed:nginx']);
    t.same(deps(byId['by-module-name']!), ['require thing.present:site']);
    t.same(deps(byId['by-id']!), ['watch pkg.installed:nginx', 'watch thing.present:nginx'], 'a bare ID means every function of that ID');
    t.same(deps(byId['by-name']!), ['onchanges thing.present:site']);
  });

  t.test('a requisite that matches no state names the reference, with a suggestion', async (t) => {
    t.same(
      errors(t, 'nginx:\n  pkg.installed: []\nsite:\n  thing.present:\n    - require:\n      - pkg: ngnix\n      - thing: nginx\n    - watch_in:\n      - elsewhere\n'),
      [
        'states/main.yaml:6: site: require: no state matches "pkg: ngnix" (did you mean nginx?)',
        'states/main.yaml:7: site: require: no state matches "thing: nginx" (did you mean nginx?)',
        'states/main.yaml:9: site: watch_in: no state matches "elsewhere"',
      ],
    );
  });

  t.test('a state that requires itself', async (t) => {
    t.same(errors(t, 'site:\n  thing.present:\n    - require:\n      - thing: site\n'), ['states/main.yaml:4: site: require: a state cannot require itself']);
  });

  t.test('`_in` puts the requisite on the target, pointing back', async (t) => {
    const states = compiled(t, 'app:\n  thing.absent:\n    - name: app\nconf:\n  thing.present:\n    - watch_in:\n      - thing: app\n    - require_in:\n      - app\n');
    t.same(
      states.map((s) => [s.id, deps(s)]),
      [
        ['conf', []],
        ['app', ['watch thing.present:conf', 'require thing.present:conf']],
      ],
      'conf runs first although app is defined first',
    );
  });

  t.test('a cycle is an error that lists the loop, with files and lines', async (t) => {
    const main = [
      'waiter:', //               1  waits on the loop, is not part of it
      '  thing.present:',
      '    - require:',
      '      - a',
      'a:', //                    5
      '  thing.present:',
      '    - require:',
      '      - b',
      '    - require_in:',
      '      - c',
      'free:', //                11  unrelated: does not hold the others up
      '  thing.present: []',
    ].join('\n');
    const other = ['b:', '  thing.present:', '    - watch:', '      - c', 'c:', '  thing.absent: []', ''].join('\n');
    t.same(errors(t, `${main}\n`, { 'other.yaml': other }), [
      'states/main.yaml:6: a: requisite cycle: thing.present a (states/main.yaml:6) → thing.present b (states/other.yaml:2) → thing.absent c (states/other.yaml:6) → thing.present a (states/main.yaml:6)',
    ]);
  });
});

t.test('order', async (t) => {
  t.test('states without requisites keep definition order across files', async (t) => {
    const states = compiled(t, 'a:\n  thing.present: []\nb:\n  pkg.installed: []\n', { 'other.yaml': 'c:\n  thing.absent: []\nd:\n  thing.present: []\n' });
    t.same(states.map((s) => s.key), ['thing.present:a', 'pkg.installed:b', 'thing.absent:c', 'thing.present:d']);
  });

  t.test("a state's requisites are pulled forward when it is reached (Salt's order); the result is the same every time", async (t) => {
    const main = 'a:\n  thing.present:\n    - require:\n      - d\nb:\n  thing.present: []\nc:\n  thing.present:\n    - require:\n      - a\nd:\n  thing.present: []\ne:\n  thing.present: []\n';
    const once = compiled(t, main).map((s) => s.id);
    t.same(once, ['d', 'a', 'b', 'c', 'e']);
    t.same(compiled(t, main).map((s) => s.id), once);
  });
});

t.test('two states that manage the same path are refused, naming both', async (t) => {
  const { registry: real } = await import('../../agent/modules/index.js');
  const tree = (text: string) => {
    const dir = t.testdir({ 'top.yaml': "'*':\n  - main\n", 'main.yaml': text });
    return loadTree(dir, 'test', new Renderer(dir, { pillar: {}, env: 'test', grains: {} as Grains }));
  };
  const refused = (text: string) => {
    try {
      compile(tree(text).states, real);
    } catch (err) {
      return (err instanceof AggregateInputError ? err.errors : [err as InputError]).map((e) => e.format());
    }
    return [];
  };
  t.same(refused('/etc/motd:\n  file.managed:\n    - contents: a\nother:\n  file.absent:\n    - name: /etc/motd/\n'), [
    'states/main.yaml:5: other: /etc/motd is managed by file.managed /etc/motd too (states/main.yaml:2): two states would undo each other on every run; keep one',
  ]);
  t.same(refused("job:\n  cron.present:\n    - name: /bin/true\n    - identifier: app\nagain:\n  cron.absent:\n    - name: /bin/false\n    - identifier: app\n"), [
    'states/main.yaml:6: again: /etc/cron.d/app is managed by cron.present job too (states/main.yaml:2): two states would undo each other on every run; keep one',
  ]);
  t.same(refused('/srv/app:\n  file.directory: []\n/srv/app/x:\n  file.managed:\n    - contents: a\n'), [], 'a directory and a file in it are two paths');
});
