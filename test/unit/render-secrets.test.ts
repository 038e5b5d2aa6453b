// A secret stays masked in whatever form a template turns it into: every filter nunjucks has, `~`,
// `+`, slices and method calls, tried on a canary secret. Each either makes text the masker hides
// or is refused as an input error; no output, and no error message, holds a piece of it.
import t, { type Test } from 'tap';
import nunjucks from 'nunjucks';
import { InputError } from '../../agent/errors.js';
import { Renderer } from '../../agent/render/render.js';
import { MASK, Masker, Secret } from '../../agent/secret.js';
import { GRAINS } from './grains-fixture.js';
import { guardFilters, installSecretGuards, withMasker } from '../../agent/render/secrets.js';
import { STRING_METHODS } from '../../agent/render/python.js';
import { saltFilters } from '../../agent/render/salt.js';

const CANARY = 'Zq7xK9pW-3mVb/Tr+5';
const NUMERIC = '80417723';

function setup() {
  const pillar = { secrets: { S: new Secret(CANARY), N: new Secret(NUMERIC), list: [new Secret(CANARY), new Secret('other-secret-41')] }, app: { name: 'shop' } };
  const masker = new Masker();
  masker.addFrom(pillar);
  return { masker, renderer: new Renderer('/nonexistent', { pillar, env: 'test', grains: GRAINS, masker }) };
}

/** Every 4-character piece of a secret, as written and reversed, in any case. */
function pieces(secret: string): string[] {
  const out: string[] = [];
  for (const s of [secret, [...secret].reverse().join('')])
    for (let i = 0; i + 4 <= s.length; i++) out.push(s.slice(i, i + 4).toLowerCase());
  return out;
}

function leaked(text: string): string | undefined {
  const lower = text.toLowerCase();
  for (const secret of [CANARY, NUMERIC]) {
    const hit = pieces(secret).find((p) => lower.includes(p));
    if (hit) return hit;
  }
  return undefined;
}

type Outcome = { kind: 'out'; shown: string } | { kind: 'refused'; shown: string } | { kind: 'error'; shown: string };

function attempt(template: string): Outcome {
  const { renderer, masker } = setup();
  try {
    return { kind: 'out', shown: masker.mask(renderer.renderString(template, 'states/app.sls')) };
  } catch (err) {
    const message = err instanceof InputError ? `${err.message} ${err.place.key ?? ''}` : String(err);
    return { kind: /secret/.test(message) ? 'refused' : 'error', shown: masker.mask(message) };
  }
}

// Arguments that make each filter do something (most take none).
const ARGS: Record<string, string[]> = {
  batch: ['(3)'], center: ['(40)'], default: ['("x")', '(pillar.secrets.S)'], d: ['("x")'], indent: ['(2)', '(2, true)'],
  join: ['(",")'], replace: ['("7", "8")', '("Zq", "")', '("x", pillar.secrets.S)'], slice: ['(2)'], sort: ['', '(true)'],
  sum: [''], truncate: ['(6)', '(12)'], wordwrap: ['(3)'], groupby: ['("x")'], selectattr: ['("x")'], rejectattr: ['("x")'],
  select: ['("defined")'], reject: ['("defined")'], float: ['', '(0)'], int: ['', '(0)'], round: [''], abs: [''], random: [''],
  split: ['("-")'], regex_replace: ['("[0-9]", "#")', '("Zq", "")'], regex_search: ['("(K9)")'], regex_match: ['("(Zq7)")'], traverse: ['("a")'],
  union: ['(["x"])'], intersect: ['(["x"])'], difference: ['(["x"])'], symmetric_difference: ['(["x"])'], map: ['("upper")'], attr: ['("x")'], format: ['("x")'], urlize: [''], nl2br: [''], striptags: [''], title: [''], capitalize: [''], trim: [''], lower: [''], upper: [''],
};

t.test('every filter, on a secret and on a list of secrets: masked or refused', async (t) => {
  const env = new nunjucks.Environment();
  const names = [...Object.keys((env as unknown as { filters: object }).filters), ...Object.keys(saltFilters(env))].sort();
  t.ok(names.length >= 40, `${names.length} filters`);
  const subjects = ['pillar.secrets.S', 'pillar.secrets.N', 'pillar.secrets.list', '"plain " ~ pillar.secrets.S'];
  tryEach(t, names.flatMap((name) => (ARGS[name] ?? ['']).flatMap((args) => subjects.map((subject) => `{{ ${subject} | ${name}${args} }}`))));
});

/** Renders each template: none may let a piece of a secret out; both outcomes must occur. */
function tryEach(t: Test, templates: string[]): void {
  const tally = { out: 0, refused: 0, error: 0 };
  for (const template of templates) {
    const r = attempt(template);
    tally[r.kind]++;
    const hit = leaked(r.shown);
    if (hit) t.fail(`${template} lets out "${hit}": ${r.shown}`);
  }
  t.pass(`made masked text ${tally.out} times, refused ${tally.refused}, other errors ${tally.error}`);
  t.ok(tally.refused > 10 && tally.out > 50, 'both outcomes are exercised');
}

// Arguments that make each Python string method do something.
const METHOD_ARGS: Record<string, string[]> = {
  startswith: ['("Zq")'], endswith: ['("+5")'], split: ['()', '("-")'], rsplit: ['("/")'], strip: ['()', '("Z5")'], lstrip: ['("Z")'], rstrip: ['("5")'],
  replace: ['("7", "8")', '("Zq", "")'], format: ['()', '(1)'], join: ['(["a", "b"])', '(pillar.secrets.list)'], find: ['("x")'], rfind: ['("x")'], index: ['("x")'],
  count: ['("x")'], partition: ['("-")'], rpartition: ['("/")'], zfill: ['(30)'], center: ['(30)'], ljust: ['(30)'], rjust: ['(30)'],
};

t.test('every Python string method, on a secret and with one as its argument: masked or refused', async (t) => {
  tryEach(
    t,
    STRING_METHODS.flatMap((name) =>
      (METHOD_ARGS[name] ?? ['()']).flatMap((args) => [
        `{{ pillar.secrets.S.${name}${args} }}`,
        `{{ pillar.secrets.N.${name}${args} }}`,
        `{{ "{}-{}".${name}${args.replace(/^\(\)$/, '(pillar.secrets.S)')} }}`,
        `{{ "x: %s" % pillar.secrets.S }}`,
        `{{ ("x: {}".format(pillar.secrets.S)).upper() }}`,
      ]),
    ),
  );
  for (const template of ['{{ pillar.secrets.S[2:9] }}', '{{ pillar.secrets.S.split("-") }}', '{{ pillar.secrets.S.find("x") }}'])
    t.equal(attempt(template).kind, 'refused', template);
  for (const template of ['{{ pillar.secrets.S.upper() }}', '{{ "db:{}".format(pillar.secrets.S) }}', '{{ "%s@db" % pillar.secrets.S }}', '{{ ":".join(pillar.secrets.list) }}']) {
    const r = attempt(template);
    t.equal(r.kind, 'out', template);
    t.ok(r.shown.includes(MASK), `${template} shows the mask`);
  }
  t.equal(attempt('{{ pillar.secrets.S.startswith("Zq7") }}').shown, 'True', 'a test about a secret answers about its real value');
});

t.test('what a template makes from a secret is masked, and what it cannot hide is refused', async (t) => {
  const made = [
    '{{ pillar.secrets.S | upper }}',
    '{{ pillar.secrets.S | urlencode }}',
    '{{ pillar.secrets.S | reverse }}',
    '{{ pillar.secrets.S | replace("-", "_") }}',
    '{{ pillar.secrets | dump }}',
    '{{ "postgres://app:" ~ pillar.secrets.S ~ "@db/shop" }}',
    '{{ "u:" + pillar.secrets.S }}',
    '{% set x = pillar.secrets.S | lower %}{{ x }}',
    '{% for s in pillar.secrets.list %}{{ s | upper }};{% endfor %}',
    '{% macro pw(p) %}{{ p | title }}{% endmacro %}{{ pw(pillar.secrets.S) }}',
    '{{ pillar.get("secrets:S") | trim }}',
    '{{ salt["pillar.get"]("secrets:S") | yaml_encode }}',
    '{{ pillar.secrets | json }}',
    '{{ pillar.secrets.S | regex_replace("Zq", "Y") }}',
    '{{ pillar.secrets.S | md5 }}',
    '{{ pillar.secrets.list | map("upper") | join(",") }}',
  ];
  for (const template of made) {
    const r = attempt(template);
    t.equal(r.kind, 'out', template);
    t.notOk(leaked(r.shown), `${template} → ${r.shown}`);
    t.ok(r.shown.includes(MASK), `${template} shows the mask`);
  }
  const refused: [string, RegExp][] = [
    ['{{ pillar.secrets.S[0] }}', /taken apart/],
    ['{{ pillar.secrets.S.reveal() }}', /taken apart/],
    ['{{ pillar.secrets.S.split("-") }}', /taken apart/],
    ['{% for c in pillar.secrets.S %}{{ c }}{% endfor %}', /looped over/],
    ['{{ pillar.secrets.S | length }}', /number/],
    ['{{ pillar.secrets.N | int }}', /number/],
    ['{{ pillar.secrets.S | first }}', /too short/],
    ['{{ pillar.secrets.S | truncate(3, true, "") }}', /too short/],
    ['{{ pillar.secrets.S | list | join(",") }}', /too short/],
  ];
  for (const [template, why] of refused) {
    const r = attempt(template);
    t.equal(r.kind, 'refused', template);
    t.match(r.shown, why, template);
    t.notOk(leaked(r.shown), `${template}: ${r.shown}`);
  }
});

t.test('a refusal names the file and the line, and renders nothing', async (t) => {
  const { renderer } = setup();
  try {
    renderer.renderString('a: 1\nb: {{ pillar.app.name }}\nc: {{ pillar.secrets.S | length }}\n', 'states/app.sls');
    t.fail('rendered');
  } catch (err) {
    t.type(err, InputError);
    t.match((err as InputError).place, { file: 'states/app.sls', line: 3 });
    t.match((err as Error).message, /a secret would leave unmasked: \| length turns a secret into a number/);
  }
});

t.test('comparisons and tests see the real value; printing whole is the real value', async (t) => {
  const { renderer } = setup();
  t.equal(renderer.renderString(`{% if pillar.secrets.S == "${CANARY}" %}same{% endif %}`, 'f'), 'same');
  t.equal(renderer.renderString('{% if "Zq7" in pillar.secrets.S %}in{% endif %}', 'f'), 'in');
  t.equal(renderer.renderString('{% if pillar.secrets.S is string %}text{% endif %}', 'f'), 'text');
  t.equal(renderer.renderString('{{ pillar.secrets.S }}', 'f'), CANARY);
  t.equal(renderer.renderString('{{ pillar.secrets.list | length }} {{ [1] + [2] }} {{ 1 + 2 }} {{ "a" ~ 1 }}', 'f'), '2 [1, 2] 3 a1', 'plain values are untouched');
});

t.test('a filter added later is guarded too', async (t) => {
  // Filters a later module adds (Salt's base64_encode, say) go through Environment.addFilter.
  installSecretGuards();
  const env = new nunjucks.Environment(null, { autoescape: false });
  guardFilters(env);
  env.addFilter('base64_encode', (v: unknown) => Buffer.from(String(v)).toString('base64'));
  const masker = new Masker();
  const secret = new Secret(CANARY);
  masker.addFrom(secret);
  const out = withMasker(masker, () => env.renderString('x={{ s | base64_encode }}', { s: secret }));
  t.equal(out, `x=${Buffer.from(CANARY).toString('base64')}`, 'the file gets the real encoding');
  t.equal(masker.mask(out), `x=${MASK}`, 'and the masker learned it');
});

t.test('the keys of a mapping of secrets stay plain through a filter; their values do not', async (t) => {
  const { renderer, masker } = setup();
  const out = renderer.renderString('{% for k, v in pillar.secrets | dictsort %}{% if k != "list" %}{{ k }}={{ v }};{% endif %}{% endfor %}', 'f');
  t.equal(out, `N=${NUMERIC};S=${CANARY};`, 'a one-letter key is not "too short": it is not a secret');
  t.equal(masker.mask(out), `N=${MASK};S=${MASK};`, 'the names show, the values are masked');
  t.equal(masker.mask('S N list'), 'S N list', 'the masker did not learn the key names');
});
