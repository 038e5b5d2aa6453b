import t, { type Test } from 'tap';
import { AggregateInputError, InputError } from '../../agent/errors.js';
import { GRAINS } from './grains-fixture.js';
import { Renderer } from '../../agent/render/render.js';
import { TreeLoader, loadTree, slsPath, topFor, type StateDecl } from '../../agent/sls.js';


type Tree = { [name: string]: string | Tree };

/** A throwaway states/ folder; `top.yaml` selects `main` for every environment unless given. */
function statesDir(t: Test, files: Tree): string {
  return `${t.testdir({ states: { 'top.yaml': "'*':\n  - main\n", ...files } })}/states`;
}

function renderer(dir: string, pillar: Record<string, unknown> = {}, env = 'staging'): Renderer {
  return new Renderer(dir, { pillar, env, grains: GRAINS });
}

function load(t: Test, files: Tree, pillar: Record<string, unknown> = {}, env = 'staging') {
  const dir = statesDir(t, files);
  return loadTree(dir, env, renderer(dir, pillar, env));
}

/** The one-line messages of what `loadTree` throws. */
function loadErrors(t: Test, files: Tree, env = 'staging'): string[] {
  try {
    load(t, files, {}, env);
  } catch (err) {
    if (err instanceof AggregateInputError) return err.errors.map((e) => e.format());
    if (err instanceof InputError) return [err.format()];
    throw err;
  }
  t.fail('expected an InputError');
  return [];
}

const summary = (s: StateDecl) => ({ key: s.key, args: s.args });

t.test('top.yaml', async (t) => {
  const top = [
    "'*':", //             1
    '  - base', //         2
    '  - users', //        3
    'staging:', //         4
    '  - debug', //        5
    '  - base', //         6
    'production:', //      7
    '  - monitoring', //   8
    "'stag*':", //         9
    '  - web.extra', //   10
    '',
  ].join('\n');

  t.test('selects "*" and the environment, in order, each file once', async (t) => {
    const dir = statesDir(t, { 'top.yaml': top });
    t.same(topFor(dir, 'staging'), [
      { sls: 'base', place: { file: 'states/top.yaml', line: 2 } },
      { sls: 'users', place: { file: 'states/top.yaml', line: 3 } },
      { sls: 'debug', place: { file: 'states/top.yaml', line: 5 } },
      { sls: 'web.extra', place: { file: 'states/top.yaml', line: 10 } },
    ]);
    t.same(topFor(dir, 'production').map((s) => s.sls), ['base', 'users', 'monitoring']);
    t.same(topFor(dir, 'dev').map((s) => s.sls), ['base', 'users']);
  });

  t.test('a missing top file is an InputError naming it', async (t) => {
    const dir = `${t.testdir({ states: {} })}/states`;
    t.throws(() => topFor(dir, 'staging'), { constructor: InputError, place: { file: 'states/top.yaml' }, message: /^missing: / });
  });

  t.test('an environment that maps to something other than a list names the line', async (t) => {
    const dir = statesDir(t, { 'top.yaml': "'*':\n  - base\nstaging: debug\n" });
    t.throws(() => topFor(dir, 'staging'), { message: 'expected a list of state files', place: { file: 'states/top.yaml', line: 3, key: 'staging' } });
    t.same(topFor(dir, 'production').map((s) => s.sls), ['base'], 'only entries that match are read');
  });

  t.test('a state file name with a path or an extension is refused', async (t) => {
    const dir = statesDir(t, { 'top.yaml': "'*':\n  - base\n  - web/nginx.yaml\n" });
    t.throws(() => topFor(dir, 'staging'), { message: '"web/nginx.yaml" is not a state file name (like web or web.nginx)', place: { line: 3, key: '*' } });
  });

  t.test('a top file that is not a mapping', async (t) => {
    const dir = statesDir(t, { 'top.yaml': '- base\n' });
    t.throws(() => topFor(dir, 'staging'), { message: /must map environments/, place: { file: 'states/top.yaml', line: 1 } });
  });
});

t.test('slsPath resolves dotted names as Salt does', async (t) => {
  const dir = statesDir(t, {
    'users.yaml': '',
    'legacy.sls': '',
    web: { 'nginx.yaml': '', app: { 'init.yaml': '' } },
  });
  t.equal(slsPath(dir, 'users'), `${dir}/users.yaml`);
  t.equal(slsPath(dir, 'legacy'), `${dir}/legacy.sls`);
  t.equal(slsPath(dir, 'web.nginx'), `${dir}/web/nginx.yaml`);
  t.equal(slsPath(dir, 'web.app'), `${dir}/web/app/init.yaml`);
  t.equal(slsPath(dir, 'web.nope'), undefined);
});

t.test('includes', async (t) => {
  const files: Tree = {
    'top.yaml': "'*':\n  - web\n  - db\n",
    'web.yaml': 'include:\n  - users\n  - common\nnginx:\n  pkg.installed: []\n',
    'db.yaml': 'include:\n  - common\npostgresql:\n  pkg.installed: []\n',
    'users.yaml': 'include:\n  - common\nalice:\n  user.present: []\n',
    'common.yaml': 'curl:\n  pkg.installed: []\n',
  };

  t.test("an included file's states come before the includer's, and every file loads once", async (t) => {
    const tree = load(t, files);
    t.same(
      tree.states.map((s) => [s.key, s.index, s.place.file]),
      [
        ['pkg.installed:curl', 0, 'states/common.yaml'],
        ['user.present:alice', 1, 'states/users.yaml'],
        ['pkg.installed:nginx', 2, 'states/web.yaml'],
        ['pkg.installed:postgresql', 3, 'states/db.yaml'],
      ],
    );
    t.same([...tree.files].sort(), ['states/common.yaml', 'states/db.yaml', 'states/users.yaml', 'states/web.yaml']);
  });

  t.test('StateTree.files lists included files first, as its doc comment says', async (t) => {
    t.same(load(t, files).files, ['states/common.yaml', 'states/users.yaml', 'states/web.yaml', 'states/db.yaml'], 'files in load order');
  });

  t.test('files that include each other load once each', async (t) => {
    const tree = load(t, {
      'main.yaml': 'include:\n  - other\na:\n  pkg.installed: []\n',
      'other.yaml': 'include:\n  - main\nb:\n  pkg.installed: []\n',
    });
    t.same(tree.states.map((s) => s.id), ['b', 'a']);
  });

  t.test('an include that names no file points at the include line', async (t) => {
    t.same(loadErrors(t, { 'main.yaml': 'a:\n  pkg.installed: []\ninclude:\n  - web.nginx\n' }), [
      'states/main.yaml:4: no state file for "web.nginx" (looked for states/web/nginx.yaml)',
    ]);
  });

  t.test('include: must be a list', async (t) => {
    t.same(loadErrors(t, { 'main.yaml': 'include: web\n' }), ['states/main.yaml:1: include: include: expects a list of state files']);
  });
});

t.test('the three ways to write a state', async (t) => {
  t.test('list form and mapping form give the same arguments', async (t) => {
    const tree = load(t, {
      'main.yaml': [
        'nginx:',
        '  pkg.installed:',
        "    - version: '1.22'",
        '    - hold: true',
        'redis:',
        '  pkg.installed:',
        "    version: '1.22'",
        '    hold: true',
        '',
      ].join('\n'),
    });
    t.same(tree.states.map(summary), [
      { key: 'pkg.installed:nginx', args: { version: '1.22', hold: true, name: 'nginx' } },
      { key: 'pkg.installed:redis', args: { version: '1.22', hold: true, name: 'redis' } },
    ]);
    t.same(tree.states[0]!.argLines, { version: 3, hold: 4 });
    t.same(tree.states[1]!.argLines, { version: 7, hold: 8 });
  });

  t.test('nothing, or an empty list, after module.function means all defaults', async (t) => {
    const tree = load(t, { 'main.yaml': 'curl:\n  pkg.installed:\nless:\n  pkg.installed: []\n' });
    t.same(tree.states.map(summary), [
      { key: 'pkg.installed:curl', args: { name: 'curl' } },
      { key: 'pkg.installed:less', args: { name: 'less' } },
    ]);
  });

  t.test("Salt's old form `pkg: [installed]` names the function with a bare string", async (t) => {
    // sls.ts:197 rebuilds the argument list with an object spread, which drops the YAML node's
    // non-enumerable type symbol: #decl no longer sees a list, and every old-form state fails
    // with "expected a list of arguments (or a mapping)".
    let states: StateDecl[] = [];
    t.doesNotThrow(() => {
      states = load(t, { 'main.yaml': 'nginx:\n  pkg: [installed]\n  service:\n    - running\n    - enable: true\n' }).states;
    });
    t.same(states.map(summary), [
      { key: 'pkg.installed:nginx', args: { name: 'nginx' } },
      { key: 'service.running:nginx', args: { enable: true, name: 'nginx' } },
    ], 'two states');
  });

  t.test('the old form with no function, or two, is refused', async (t) => {
    t.same(loadErrors(t, { 'main.yaml': 'nginx:\n  pkg: []\nredis:\n  pkg: [installed, latest]\n' }), [
      'states/main.yaml:2: nginx: "pkg" needs a function, as in pkg.installed or pkg: [installed]',
      'states/main.yaml:4: redis: "pkg" needs a function, as in pkg.installed or pkg: [installed]',
    ]);
  });

  t.test('module.function.extra is refused, not read as module.function', async (t) => {
    t.throws(() => load(t, { 'main.yaml': 'nginx:\n  pkg.installed.typo: []\n' }), { name: 'InputError', place: { line: 2, key: 'nginx' } }, 'an InputError');
  });

  t.test('one ID may declare several functions', async (t) => {
    const tree = load(t, { 'main.yaml': 'nginx:\n  pkg.installed: []\n  service.running:\n    - enable: true\n' });
    t.same(tree.states.map((s) => [s.key, s.place.line]), [
      ['pkg.installed:nginx', 2],
      ['service.running:nginx', 3],
    ]);
  });
});

t.test('name defaults to the ID; an explicit name wins', async (t) => {
  const tree = load(t, { 'main.yaml': '/etc/motd:\n  file.managed: []\nsite:\n  file.managed:\n    - name: /etc/nginx/site\n' });
  t.same(tree.states.map((s) => s.args.name), ['/etc/motd', '/etc/nginx/site']);
  t.same(tree.states.map((s) => s.id), ['/etc/motd', 'site']);
});

t.test('requisites are taken out of the arguments, with their kind, target, direction and line', async (t) => {
  const tree = load(t, {
    'main.yaml': [
      'app:', //                    1
      '  service.running:', //      2
      '    - enable: true', //      3
      '    - require:', //          4
      '      - pkg: nginx', //      5
      '      - users', //           6
      '    - watch_in:', //         7
      '      - service: other', //  8
      '    - onchanges: conf', //   9
      '    - onfail:', //          10
      '        cmd: alert', //     11
      '',
    ].join('\n'),
  });
  const [app] = tree.states;
  t.same(app!.args, { enable: true, name: 'app' });
  const file = 'states/main.yaml';
  t.same(app!.requisites, [
    { kind: 'require', module: 'pkg', target: 'nginx', reverse: false, place: { file, line: 5 } },
    { kind: 'require', target: 'users', reverse: false, place: { file, line: 6 } },
    { kind: 'watch', module: 'service', target: 'other', reverse: true, place: { file, line: 8 } },
    { kind: 'onchanges', target: 'conf', reverse: false, place: { file, line: 9 } },
    { kind: 'onfail', module: 'cmd', target: 'alert', reverse: false, place: { file, line: 11 } },
  ]);
});

t.test('a malformed requisite names the state, the key and the line', async (t) => {
  t.same(
    loadErrors(t, {
      'main.yaml': 'a:\n  pkg.installed:\n    - require: []\nb:\n  pkg.installed:\n    - watch:\n      - {file: x, pkg: y}\n',
    }),
    [
      'states/main.yaml:3: a: require: require: expects a list such as - file: ID',
      'states/main.yaml:7: b: watch: watch: each entry is "module: ID" or an ID',
    ],
  );
});

t.test('conditions', async (t) => {
  t.test('unless/onlyif take a command or a list of commands; creates a path or a list', async (t) => {
    const tree = load(t, {
      'main.yaml': [
        'migrate:',
        '  cmd.run:',
        '    - name: manage.py migrate',
        '    - unless: test -f /srv/app/migrated',
        '    - onlyif:',
        '      - [test, -d, /srv/app]',
        '      - id app',
        '    - creates: /srv/app/.done',
        'build:',
        '  cmd.run:',
        '    - creates: [/srv/a, /srv/b]',
        '',
      ].join('\n'),
    });
    t.same(
      tree.states.map((s) => [s.args, s.conditions]),
      [
        [{ name: 'manage.py migrate' }, { unless: ['test -f /srv/app/migrated'], onlyif: [['test', '-d', '/srv/app'], 'id app'], creates: ['/srv/app/.done'] }],
        [{ name: 'build' }, { creates: ['/srv/a', '/srv/b'] }],
      ],
    );
  });

  t.test('a bad condition names the state, the key and the line', async (t) => {
    t.same(
      loadErrors(t, {
        'main.yaml': [
          'a:',
          '  cmd.run:',
          '    - creates: relative/path',
          'b:',
          '  cmd.run:',
          '    - unless: []',
          'c:',
          '  cmd.run:',
          '    - onlyif: 5',
          '',
        ].join('\n'),
      }),
      [
        'states/main.yaml:3: a: creates: creates: expects an absolute path or a list of them',
        'states/main.yaml:6: b: unless: unless: expects a command (a string or an argv list) or a list of them',
        'states/main.yaml:9: c: onlyif: onlyif: expects a command (a string or an argv list) or a list of them',
      ],
    );
  });
});

t.test('an argument given twice in the list form', async (t) => {
  t.same(loadErrors(t, { 'main.yaml': "a:\n  file.managed:\n    - mode: '0644'\n    - user: root\n    - mode: '0600'\n" }), [
    'states/main.yaml:5: a: mode: argument given twice',
  ]);
});

t.test('a one-line mapping with a requisite before another argument', async (t) => {
  // sls.ts:226 takes a key for "given twice" when it is on the line of an earlier requisite
  // entry, so `{require: [nginx], contents: hi}` is refused for `contents`.
  let states: StateDecl[] = [];
  t.doesNotThrow(() => {
    states = load(t, { 'main.yaml': 'x:\n  file.managed: {require: [nginx], contents: hi}\n' }).states;
  });
  t.same(states.map(summary), [{ key: 'file.managed:x', args: { contents: 'hi', name: 'x' } }], 'the state');
});

t.test('an ID declared in two files names both places', async (t) => {
  const errors = loadErrors(t, {
    'top.yaml': "'*':\n  - web\n  - db\n",
    'web.yaml': 'curl:\n  pkg.installed: []\nnginx:\n  pkg.installed: []\n',
    'db.yaml': 'postgresql:\n  pkg.installed: []\n\nnginx:\n  service.running: []\n',
  });
  t.same(errors, ['states/db.yaml:4: nginx: ID declared twice (first at states/web.yaml:3)']);
});

t.test('invalid YAML is reported with the file and the line of the problem', async (t) => {
  t.same(loadErrors(t, { 'main.yaml': 'a:\n  pkg.installed: []\nb:\n  file.managed:\n    - contents: a: b\nc:\n  pkg.installed: []\n' }), [
    'states/main.yaml:5: invalid YAML: Nested mappings are not allowed in compact mappings',
  ]);
  t.same(loadErrors(t, { 'main.yaml': 'a:\n  pkg.installed: []\nb: 1\na:\n  pkg.removed: []\n' }), [
    'states/main.yaml:4: invalid YAML: Map keys must be unique ("a" is given twice)',
  ]);
});

t.test('bodies that are not mappings', async (t) => {
  t.same(loadErrors(t, { 'main.yaml': '- a\n- b\n' }), ['states/main.yaml:1: a state file must map IDs to states']);
  t.same(loadErrors(t, { 'main.yaml': 'nginx: latest\n' }), ['states/main.yaml:1: nginx: expected a mapping of module.function to arguments']);
  t.same(load(t, { 'top.yaml': "'*': [main]\n", 'main.yaml': 'nginx: pkg.installed\n' }).states.map(summary), [{ key: 'pkg.installed:nginx', args: { name: 'nginx' } }], "Salt's short form");
  t.same(loadErrors(t, { 'main.yaml': 'nginx:\n  pkg.installed: latest\n' }), [
    'states/main.yaml:2: nginx: pkg.installed: expected a list of arguments (or a mapping)',
  ]);
  t.same(loadErrors(t, { 'main.yaml': 'nginx:\n  pkg.installed:\n    - version\n' }), [
    'states/main.yaml:3: nginx: pkg.installed: each list item must be one `key: value`',
  ]);
});

t.test('an empty state file or one with only comments declares nothing', async (t) => {
  const tree = load(t, { 'top.yaml': "'*':\n  - a\n  - b\n", 'a.yaml': '', 'b.yaml': '# nothing yet\n' });
  t.same(tree, { files: ['states/a.yaml', 'states/b.yaml'], states: [], warnings: [] });
});

t.test('every error in the tree is reported at once', async (t) => {
  const errors = loadErrors(t, {
    'top.yaml': "'*':\n  - good\n  - broken\n  - missing\n  - odd\n",
    'good.yaml': 'curl:\n  pkg.installed: []\n',
    'broken.yaml': 'a: [\n',
    'odd.yaml': 'x:\n  pkg.installed: 3\ncurl:\n  pkg.removed: []\n',
  });
  t.equal(errors.length, 4);
  t.match(errors, [
    /^states\/broken\.yaml:\d+: invalid YAML: /,
    'states/top.yaml:4: no state file for "missing" (looked for states/missing.yaml)',
    'states/odd.yaml:2: x: pkg.installed: expected a list of arguments (or a mapping)',
    'states/odd.yaml:3: curl: ID declared twice (first at states/good.yaml:1)',
  ]);
});

t.test('TreeLoader keeps the good states of a tree while collecting the errors', async (t) => {
  const dir = statesDir(t, { 'good.yaml': 'curl:\n  pkg.installed: []\n', 'bad.yaml': 'x: [\n' });
  const loader = new TreeLoader(dir, renderer(dir));
  loader.load('bad', { file: 'states/top.yaml', line: 2 });
  loader.load('good', { file: 'states/top.yaml', line: 3 });
  t.same(loader.states.map((s) => s.key), ['pkg.installed:curl']);
  t.equal(loader.errors.length, 1);
  t.same(loader.files, ['states/good.yaml']);
});

t.test('state files are rendered with pillar, env and grains before they are parsed', async (t) => {
  const tree = load(
    t,
    {
      'main.yaml': [
        '{% for name, user in pillar.devs.items() %}',
        '{{ name }}:',
        '  user.present:',
        '    - shell: {{ user.shell }}',
        '{% endfor %}',
        '/etc/brine-environment:',
        '  file.managed:',
        '    - contents: "{{ env }} on {{ grains.os_family }}"',
        '',
      ].join('\n'),
    },
    { devs: { alice: { shell: '/bin/bash' }, bob: { shell: '/bin/zsh' } } },
    'production',
  );
  t.same(tree.states.map(summary), [
    { key: 'user.present:alice', args: { shell: '/bin/bash', name: 'alice' } },
    { key: 'user.present:bob', args: { shell: '/bin/zsh', name: 'bob' } },
    { key: 'file.managed:/etc/brine-environment', args: { contents: 'production on Debian', name: '/etc/brine-environment' } },
  ]);
});

t.test('a template error in a state file is collected with its file and line', async (t) => {
  const errors = loadErrors(t, {
    'top.yaml': "'*':\n  - main\n  - other\n",
    'main.yaml': 'a:\n  file.managed:\n    - contents: {{ pillar.app.domain }}\n',
    'other.yaml': 'b:\n  pkg.installed: []\n  pkg.removed: [\n',
  });
  t.equal(errors.length, 2);
  t.equal(errors[0], 'states/main.yaml:3: pillar.app: undefined in the template (use pillar.get(key, default) for optional keys)');
  t.match(errors[1], /^states\/other\.yaml:\d+: invalid YAML/);
});

t.test('anchors and aliases resolve in state files as in pillar; an alias bomb fails fast', async (t) => {
  const dir = t.testdir({
    'top.yaml': "'*':\n  - main\n",
    'main.yaml': "/etc/a:\n  file.managed:\n    - contents: x\n    - mode: &m '0600'\n    - context: &ctx {port: 8000}\n/etc/b:\n  file.managed:\n    - contents: y\n    - mode: *m\n    - context: *ctx\n",
  });
  const tree = loadTree(dir, 'test', new Renderer(dir, { pillar: {}, env: 'test', grains: {} as never }));
  t.same(tree.states.map((s) => [s.id, s.args.mode, s.args.context]), [['/etc/a', '0600', { port: 8000 }], ['/etc/b', '0600', { port: 8000 }]]);
  const bomb = ['x:', '  file.managed:', '    - context:', '        a: &a [x, x, x, x, x, x, x, x, x]'];
  for (const [i, name] of ['b', 'c', 'd', 'e', 'f', 'g'].entries()) bomb.push(`        ${name}: &${name} [${Array(9).fill(`*${'abcdefg'[i]}`).join(', ')}]`);
  const started = Date.now();
  t.same(loadErrors(t, { 'main.yaml': `${bomb.join('\n')}\n` }), ['states/main.yaml:4: invalid YAML: too many aliases (more than 100 expansions: an alias bomb?)']);
  t.ok(Date.now() - started < 2000, 'at once');
});
