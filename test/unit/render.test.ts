import t, { type Test } from 'tap';
import { InputError } from '../../agent/errors.js';
import { GRAINS } from './grains-fixture.js';
import { Renderer, strict } from '../../agent/render/render.js';
import { Undefined } from '../../agent/render/python.js';
import { Secret } from '../../agent/secret.js';


const PILLAR = {
  app: { domain: 'example.com', port: 0, debug: false, workers: [{ name: 'web' }, { name: 'jobs' }] },
  users: { alice: { uid: 1001 }, bob: { uid: 1002 } },
  secrets: { DB_PASSWORD: new Secret('pw-real-3381') },
};

function renderer(baseDir = '/nonexistent', env = 'staging'): Renderer {
  return new Renderer(baseDir, { pillar: PILLAR, env, grains: GRAINS });
}

/** What rendering throws, as the InputError it must be. */
function renderError(t: Test, render: () => unknown): InputError {
  try {
    render();
  } catch (err) {
    t.type(err, InputError);
    return err as InputError;
  }
  t.fail('expected an InputError');
  return new InputError('(none)');
}

t.test('strict: a missing key reads as an Undefined naming its whole path', async (t) => {
  const tree = strict({ a: { b: 1 }, list: [1] }, 'pillar');
  t.equal(tree.a.b, 1);
  const missing = (tree.a as Record<string, unknown>).c;
  t.type(missing, Undefined);
  t.equal((missing as Undefined).path, 'pillar.a.c');
  t.equal((tree as unknown as { then: unknown }).then, undefined, 'properties nunjucks probes do not throw');
  t.equal(tree.list.length, 1);
});

t.test('a missing pillar key is an error with the key and the line', async (t) => {
  const text = ['server {', '  listen 80;', '  server_name {{ pillar.app.domain }};', '  root {{ pillar.app.root }};', '}', ''].join('\n');
  const err = renderError(t, () => renderer().renderString(text, 'states/templates/site.conf.j2'));
  t.same(err.place, { file: 'states/templates/site.conf.j2', line: 4, key: 'pillar.app.root' });
  t.equal(err.format(), 'states/templates/site.conf.j2:4: pillar.app.root: undefined in the template (use pillar.get(key, default) for optional keys)');
});

t.test('a missing key under a missing key names the first missing part', async (t) => {
  const err = renderError(t, () => renderer().renderString('a\n{{ pillar.nope.deeper }}\n', 'states/main.yaml'));
  t.same(err.place, { file: 'states/main.yaml', line: 2, key: 'pillar.nope' });
});

t.test("pillar.get('a:b', default), as in Salt", async (t) => {
  const r = renderer();
  t.equal(r.renderString("{{ pillar.get('app:domain', 'fallback.org') }}", 'f'), 'example.com');
  t.equal(r.renderString("{{ pillar.get('app:cdn', 'cdn.fallback.org') }}", 'f'), 'cdn.fallback.org');
  t.equal(r.renderString("{{ pillar.get('nope:deeper:still', 7) }}", 'f'), '7');
  t.equal(r.renderString("{{ pillar.get('app:port', 8080) }} {{ pillar.get('app:debug', true) }}", 'f'), '0 False', 'a falsy value is a value, not a miss (printed as Python prints it)');
  t.equal(r.renderString("{{ pillar.app.get('domain', 'x') }}", 'f'), 'example.com', 'on any mapping');
  t.match(renderError(t, () => r.renderString("{{ pillar.get('app:cdn') }}", 'f')).message, 'a template prints an undefined value', 'no default, no value: still an error');
});

t.test('.items(), .keys() and .values() loop over mappings; lists loop as they are', async (t) => {
  const r = renderer();
  t.equal(r.renderString('{% for name, u in pillar.users.items() %}{{ name }}={{ u.uid }};{% endfor %}', 'f'), 'alice=1001;bob=1002;');
  t.equal(r.renderString('{% for name in pillar.users.keys() %}{{ name }};{% endfor %}', 'f'), 'alice;bob;');
  t.equal(r.renderString('{% for u in pillar.users.values() %}{{ u.uid }};{% endfor %}', 'f'), '1001;1002;');
  t.equal(r.renderString('{% for w in pillar.app.workers %}{{ w.name }};{% endfor %}', 'f'), 'web;jobs;');
});

t.test('values reached through a loop are strict too', async (t) => {
  const err = renderError(t, () => renderer().renderString('users:\n{% for name, u in pillar.users.items() %}\n  {{ name }}: {{ u.shell }}\n{% endfor %}\n', 'states/users.yaml'));
  t.match(err.place, { file: 'states/users.yaml', key: 'pillar.users.alice.shell' });
  t.equal(err.place.line, 3, 'the line of the key');
});

t.test('grains and env are in scope; a missing grain is named', async (t) => {
  const r = renderer('/nonexistent', 'production');
  t.equal(r.renderString('{{ env }} {{ grains.os_family }} {{ grains.oscodename }} {{ grains.cpus }}', 'f'), 'production Debian bookworm 2');
  t.same(renderError(t, () => r.renderString('{{ grains.region }}', 'states/main.yaml')).place, { file: 'states/main.yaml', line: 1, key: 'grains.region' });
});

t.test('an undefined variable is an error, never an empty string', async (t) => {
  const err = renderError(t, () => renderer().renderString('a: 1\nb: {{ domain }}\n', 'states/main.yaml'));
  t.same(err.place, { file: 'states/main.yaml', line: 2 });
  t.equal(err.message, 'a template prints an undefined value');
});

t.test('secrets render as their real value (printers mask them later)', async (t) => {
  t.equal(renderer().renderString('password={{ pillar.secrets.DB_PASSWORD }}', 'f'), 'password=pw-real-3381');
});

t.test('extra context is in scope next to pillar', async (t) => {
  t.equal(renderer().renderString('{{ port }} {{ pillar.app.domain }}', 'f', { port: 8000 }), '8000 example.com');
});

t.test('a syntax error names the file and the line', async (t) => {
  const err = renderError(t, () => renderer().renderString('a: 1\n{% if pillar.app.debug %}\nb: 2\n{% endfi %}\n', 'states/main.yaml'));
  t.match(err.format(), /^states\/main\.yaml:4: template error: /);
});

t.test('every template error names the line it is on', async (t) => {
  const cases: [string, number, RegExp][] = [
    ['a\nb\n{{ pillar.app.domain | nosuch }}\n', 3, /filter not found: nosuch/],
    ['a\n{% if env %}\n{{ env | nosuch }}\n{% endif %}\n', 3, /filter not found: nosuch/],
    ['a\nb\n{% if env %}\n{% for x in [1] %}{% endfor %}\nc\n', 3, /expected elif, else, or endif, got end of file/],
    ['a\n\n{{ nothing() }}\n', 3, /Unable to call `nothing`/],
    ['a\n{{ grains.os.nosuch() }}\n', 2, /Unable to call/],
    ['{% macro m() %}\n\n{{ 1 | nosuch2 }}\n{% endmacro %}\n{{ m() }}\n', 3, /filter not found: nosuch2/],
    ['a\n{% include "t/missing.j2" %}\n', 2, /template not found: t\/missing\.j2/],
    ['a\n\n{% frob %}\n', 3, /unknown block tag: frob/],
    ['a\nb ~ c\n{{ [1] + "x" }}\n', 3, /cannot add a list and a string with \+/],
  ];
  for (const [text, line, message] of cases) {
    const err = renderError(t, () => renderer().renderString(text, 'states/a.yaml'));
    t.equal(err.place.line, line, JSON.stringify(text));
    t.match(err.message, message);
  }
});

t.test('renderFile', async (t) => {
  const base = t.testdir({
    templates: {
      'site.conf.j2': 'server {\n  server_name {{ pillar.app.domain }};\n  root {{ pillar.app.root }};\n}\n',
      'ok.j2': 'listen {{ port }}; # {{ env }}\n',
      'outer.j2': 'one\n{% include "templates/inner.j2" %}\nthree\n',
      'inner.j2': 'inner one\ninner {{ pillar.app.missing }}\n',
    },
  });
  const r = renderer(base);

  t.test('renders a file relative to the base dir, with extra context', async (t) => {
    t.equal(r.renderFile('templates/ok.j2', { port: 8000 }), 'listen 8000; # staging\n');
  });

  t.test('an error names the template file and the line', async (t) => {
    const err = renderError(t, () => r.renderFile('templates/site.conf.j2'));
    t.match(err.place, { file: /templates\/site\.conf\.j2$/, line: 3, key: 'pillar.app.root' });
  });

  t.test('a template that does not exist', async (t) => {
    // No file of its own: load.ts gives it the place of the state that names the template.
    t.equal(renderError(t, () => r.renderFile('templates/none.j2')).format(), 'source: states/templates/none.j2 does not exist (templates are relative to states/)');
  });

  t.test('an error in an included template names that template and its line', async (t) => {
    const err = renderError(t, () => r.renderFile('templates/outer.j2'));
    t.equal(err.place.key, 'pillar.app.missing');
    t.match(err.place, { file: /templates\/inner\.j2$/, line: 2 }, 'the included file and its line');
  });
});

t.test('a template that would cost minutes or all memory fails in seconds, naming its file', async (t) => {
  const { renderLimits } = await import('../../agent/render/render.js');
  const r = renderer();
  const costly = (text: string) => {
    const started = Date.now();
    const err = renderError(t, () => r.renderString(text, 'states/big.yaml'));
    t.ok(Date.now() - started < 5000, 'within seconds');
    return err.format();
  };
  t.equal(costly('{% for i in range(100000000) %}x{% endfor %}'), 'states/big.yaml: template too costly: range of 100,000,000 items: at most 1,000,000');
  t.equal(costly('{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}'), 'states/big.yaml: template too costly: more than 1,000,000 loop steps (a loop too big?)');
  t.equal(costly('{% set s = "x" %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s }}'), 'states/big.yaml: template too costly: a value is over 16 MB');
  const was = renderLimits.outputChars;
  t.teardown(() => void (renderLimits.outputChars = was));
  renderLimits.outputChars = 1024 * 1024;
  t.equal(costly('{% for i in range(40000) %}{{ "0123456789abcdefghijklmnopqrstuv" }}{% endfor %}'), 'states/big.yaml: template too costly: the output is over 1 MB (a loop too big?)', 'output of values, while it grows');
  t.equal(costly('{% for i in range(100000) %}0123456789abcdef{% endfor %}'), 'states/big.yaml: template too costly: the output is over 1 MB (a loop too big?)', 'literal text, once it is done');
  renderLimits.outputChars = was;
  t.equal(r.renderString('{% for i in range(3) %}{{ i }}{% endfor %}', 'states/ok.yaml'), '012', 'a normal loop is fine');
  t.same(r.renderString('{{ range(2, 10, 3) | join(",") }}', 'states/ok.yaml'), '2,5,8', "range() as Jinja's");
});

t.test('a key with a newline is shown on one line', async (t) => {
  const { InputError } = await import('../../agent/errors.js');
  t.equal(new InputError('unknown module', { file: 'states/a.yaml', line: 3, key: 'evil\nline' }).format(), 'states/a.yaml:3: evil\\nline: unknown module');
});

t.test('+ as Jinja2 has it: two lists join into a list, two strings or numbers add; others are errors', async (t) => {
  const r = renderer();
  t.equal(r.renderString('{% for x in [1, 2] + [3] %}<{{ x }}>{% endfor %}', 'f'), '<1><2><3>', 'a list, not the text "1,23" walked one character at a time');
  t.equal(r.renderString('{{ "a" + "b" }} {{ 1 + 2 }} {{ "n" ~ 1 }}', 'f'), 'ab 3 n1');
  for (const text of ['{{ "a" + 1 }}', '{{ [1] + "a" }}', '{{ {} + [] }}'])
    t.match(renderError(t, () => r.renderString(text, 'states/a.yaml')).message, /^template error: cannot add a \w+ and a \w+ with \+/, text);
});
