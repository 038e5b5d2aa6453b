// Jinja2's Python on nunjucks, as Salt state trees use it: each template is rendered by brine and
// compared with what Jinja2 (Python 3) prints for it.
import t, { type Test } from 'tap';
import { InputError } from '../../agent/errors.js';
import { Renderer } from '../../agent/render/render.js';
import { percent } from '../../agent/render/python.js';
import { GRAINS } from './grains-fixture.js';

const pillar = {
  app: { name: 'shop', domain: 'shop.example.com', users: ['alice', 'bob'], empty: [], nothing: null, opts: {} },
  line: '  a b\tc  ',
};
const r = () => new Renderer('/nonexistent', { pillar, env: 'staging', grains: GRAINS });
const render = (text: string) => r().renderString(text, 'states/app.sls');

t.test('string, list and dict methods as Python has them', async (t) => {
  const cases: [string, string][] = [
    ["{{ pillar.app.domain.startswith('shop') }} {{ pillar.app.domain.endswith(('.org', '.com')) }}", 'True True'],
    ['{{ pillar.line.split() }}', "['a', 'b', 'c']"],
    ["{{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ 'a.b.c'.rsplit('.', 1) }}", "['a', 'b', '', 'c'] ['a', 'b c'] ['a.b', 'c']"],
    ["[{{ pillar.line.strip() }}] [{{ 'xxhixx'.strip('x') }}] [{{ '  hi'.lstrip() }}] [{{ 'hi  '.rstrip() }}]", '[a b\tc] [hi] [hi] [hi]'],
    ["{{ 'a-b-c'.replace('-', '_') }} {{ 'a-b-c'.replace('-', '_', 1) }}", 'a_b_c a_b-c'],
    ["{{ 'Web'.upper() }} {{ 'Web'.lower() }} {{ 'hello world'.title() }} {{ 'hello World'.capitalize() }}", 'WEB web Hello World Hello world'],
    ["{{ '{}:{}'.format('db', 5432) }} {{ '{0}-{0}'.format('x') }} {{ '{name}.conf'.format(name='site') }} {{ '{:>5}|{:03d}'.format('a', 7) }}", 'db:5432 x-x site.conf     a|007'],
    ["{{ ', '.join(pillar.app.users) }} {{ '-'.join(['a', 'b']) }}", 'alice, bob a-b'],
    ["{{ 'abc'.find('c') }} {{ 'a.b.c'.count('.') }} {{ '42'.isdigit() }} {{ '7'.zfill(3) }}", '2 2 True 007'],
    ["{{ 'k=v=w'.partition('=') }}", "['k', '=', 'v=w']"],
    ["{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", 'a=1;b=2;'],
    ["{% for k, v in {'a': 1}.iteritems() %}{{ k }}={{ v }}{% endfor %} {% for v in {'a': 1}.itervalues() %}{{ v }}{% endfor %}", 'a=1 1'],
    ["{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'dflt') }} {{ {'a': 1}.keys() }} {{ {'a': 1}.values() }} {{ {'a': 1}.has_key('a') }}", "1 dflt ['a'] [1] True"],
    ["{% set l = [] %}{% do l.append(1) %}{% do l.extend([2, 3]) %}{{ l }} {{ l.index(2) }} {{ l.count(3) }}", '[1, 2, 3] 1 1'],
    ["{% set d = {} %}{% do d.update({'a': 1}) %}{% do d.setdefault('b', 2) %}{{ d }}", "{'a': 1, 'b': 2}"],
    ["{% for name, v in pillar.app.opts.items() %}x{% endfor %}{{ pillar.app.items() | length }}", '6'],
  ];
  for (const [text, want] of cases) t.equal(render(text), want, text);
});

t.test('slices, constants and % formatting', async (t) => {
  const cases: [string, string][] = [
    ["{{ pillar.app.domain[:4] }} {{ pillar.app.domain[-3:] }} {{ 'abcdef'[1:5:2] }} {{ 'abc'[::-1] }}", 'shop com bd cba'],
    ['{{ pillar.app.users[1:] }} {{ [1, 2, 3][::-1] }} {{ [1, 2, 3][-2:] }}', "['bob'] [3, 2, 1] [2, 3]"],
    ['{{ True }} {{ False }} {{ None is none }} {{ [True, None] }}', 'True False True [True, None]'],
    ["{{ '%s-%d' % ('web', 3) }} {{ '%05.1f' % 3.14159 }} {{ '%(a)s/%(b)s' % {'a': 1, 'b': 2} }} {{ '100%%' % [] }} {{ 7 % 3 }}", 'web-3 003.1 1/2 100% 1'],
    ["{{ '%-4s|' % 'ab' }}{{ '%4s|' % 'ab' }}{{ '%x' % 255 }}", 'ab  |  ab|ff'],
  ];
  for (const [text, want] of cases) t.equal(render(text), want, text);
  t.throws(() => percent('%s %s', ['one']), /not enough arguments/);
  t.throws(() => percent('%s', ['one', 'two']), /not all arguments converted/);
});

t.test("Python's truth: empty containers and strings are false, `or` and `and` return an operand", async (t) => {
  const cases: [string, string][] = [
    ['{% if pillar.app.empty %}yes{% else %}no{% endif %}', 'no'],
    ['{% if pillar.app.opts %}yes{% else %}no{% endif %}', 'no'],
    ['{% if not pillar.app.empty %}empty{% endif %}', 'empty'],
    ["{% if '' %}yes{% elif pillar.app.users %}users{% endif %}", 'users'],
    ["{{ pillar.app.empty or ['default'] }} {{ pillar.app.users and 'has' }} {{ [] and 'x' }}", "['default'] has []"],
    ["{{ 'a' if pillar.app.empty else 'b' }} {{ pillar.app.nothing or 'fallback' }}", 'b fallback'],
  ];
  for (const [text, want] of cases) t.equal(render(text), want, text);
});

function inputError(t: Test, text: string): InputError {
  try {
    render(text);
  } catch (err) {
    t.type(err, InputError);
    return err as InputError;
  }
  t.fail(`expected an error from ${text}`);
  return new InputError('none');
}

t.test('a key that is not there: false when tested, an error naming it when used', async (t) => {
  const cases: [string, string][] = [
    ["{{ 'x' if pillar.missing is defined else 'absent' }}", 'absent'],
    ["{{ 'x' if pillar.app.name is defined else 'absent' }} {{ pillar.missing is undefined }}", 'x True'],
    ["{{ pillar.missing | default('d') }} {{ pillar.app.nothing | default('n', true) }} {{ pillar.app.empty | default('e', true) }}", 'd n e'],
    ['{% if pillar.missing %}yes{% else %}no{% endif %}', 'no'],
    ["{% if pillar.app.nope and pillar.app.nope.deeper %}yes{% endif %}ok", 'ok'],
    ["{{ pillar.app.get('nope', 'd') }} {{ pillar.get('app:nope:deeper', 'd2') }}", 'd d2'],
  ];
  for (const [text, want] of cases) t.equal(render(text), want, text);
  const errors: [string, string, number][] = [
    ['a\n{{ pillar.app.nope }}', 'pillar.app.nope', 2],
    ['{% for u in pillar.app.userz %}{{ u }}{% endfor %}', 'pillar.app.userz', 1],
    ['a\nb\n{{ pillar.nope.deeper }}', 'pillar.nope', 3],
    ['{{ pillar.nope | upper }}', 'pillar.nope', 1],
    ["{% if 'a' in pillar.nope %}{% endif %}", 'pillar.nope', 1],
  ];
  for (const [text, key, line] of errors) {
    const err = inputError(t, text);
    t.equal(err.place.key, key, text);
    t.equal(err.place.line, line, `${text}: line`);
    t.match(err.message, /undefined in the template/);
  }
});
