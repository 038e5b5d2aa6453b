import t, { type Test } from 'tap';
import { InputError } from '../../agent/errors.js';
import { load } from '../../agent/load.js';

function tree(t: Test, top: string, extra: Record<string, unknown> = {}): string {
  return t.testdir({
    states: { 'top.yaml': top, 'a.yaml': '/tmp/brine-load-test:\n  file.absent: []\n' },
    pillar: { 'common.yaml': 'x: 1\n', staging: { 'env.yaml': 'y: 1\n' }, production: { 'env.yaml': 'y: 2\n' } },
    ...extra,
  });
}

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof InputError) return err.format();
    throw err;
  }
  return '(no error)';
}

t.test("a top.yaml key that matches no environment is a warning; one that leaves nothing to apply, an error", async (t) => {
  const root = tree(t, "'*':\n  - a\nstagng:\n  - a\n");
  const loaded = load(root, 'staging');
  t.same(loaded.warnings.map((w) => w.format()), ['states/top.yaml:3: stagng: "stagng" matches no environment (there are production, staging): did you mean staging?']);
  t.equal(loaded.states.length, 1);
  t.equal(refusal(() => load(tree(t, 'stagng:\n  - a\n'), 'staging')), 'states/top.yaml: nothing applies to staging: top.yaml selects no state file for it ("stagng" matches no environment (there are production, staging): did you mean staging?)');
  t.same(load(tree(t, "'*':\n  - a\n'prod*':\n  - a\n"), 'staging').warnings, [], 'a glob that matches an environment is fine');
});

t.test('__proto__ is refused as a key, in pillar and in state files', async (t) => {
  const root = tree(t, "'*':\n  - a\n", { pillar: { 'common.yaml': 'app:\n  __proto__:\n    admin: true\n', staging: { 'env.yaml': 'y: 1\n' } } });
  t.equal(refusal(() => load(root, 'staging')), 'pillar/common.yaml:2: __proto__: __proto__ cannot be a key (it is how JavaScript reaches the prototype of every object)');
  const states = tree(t, "'*':\n  - a\n", { states: { 'top.yaml': "'*':\n  - a\n", 'a.yaml': '/tmp/x:\n  file.managed:\n    - context:\n        __proto__: {}\n' } });
  t.match(refusal(() => load(states, 'staging')), /^states\/a\.yaml:4: __proto__: __proto__ cannot be a key/);
});
