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

t.test('a secret on a command line is refused, naming the state and the key; in the environment it is fine', async (t) => {
  const withStates = (a: string) =>
    tree(t, "'*':\n  - a\n", {
      states: { 'top.yaml': "'*':\n  - a\n", 'a.yaml': a },
      pillar: { 'common.yaml': 'x: 1\n', staging: { 'env.yaml': 'y: 1\n', 'secrets.yaml': 'secrets:\n  TOKEN: tok-83jd9a-live\n' } },
    });
  const refused: [string, RegExp][] = [
    ['dump:\n  cmd.run:\n    - name: \'curl -H "Authorization: {{ pillar.secrets.TOKEN }}" https://x\'\n', /^states\/a\.yaml:2: dump: name: a secret on a command line/],
    ['dump:\n  cmd.run:\n    - name: [curl, "-u", "me:{{ pillar.secrets.TOKEN }}", "https://x"]\n', /dump: name: a secret on a command line/],
    ['dump:\n  cmd.run:\n    - name: "true"\n    - unless: test "{{ pillar.secrets.TOKEN | upper }}" = x\n', /dump: unless\[0\]: a secret on a command line/],
    ['/srv/app:\n  release.deployed:\n    - repo: "https://u:{{ pillar.secrets.TOKEN }}@git.example.com/app.git"\n    - user: app\n', /\/srv\/app: repo: a secret on a command line/],
    ['/srv/app:\n  release.deployed:\n    - repo: /srv/git/app.git\n    - user: app\n    - build:\n      - [make]\n      - [./seed, "{{ pillar.secrets.TOKEN }}"]\n', /\/srv\/app: build\[1\]: a secret/],
    ['web:\n  supervisor.program:\n    - command: "gunicorn --key {{ pillar.secrets.TOKEN }}"\n', /web: command: a secret/],
    ['backup:\n  cron.present:\n    - name: "backup --token {{ pillar.secrets.TOKEN }}"\n', /backup: name: a secret/],
  ];
  for (const [states, expected] of refused) {
    const shown = refusal(() => load(withStates(states), 'staging'));
    t.match(shown, expected, states.split('\n')[1]);
    t.notMatch(shown, /tok-83jd9a-live|TOK-83JD9A-LIVE/, 'and the message does not hold it');
  }
  const fine = 'dump:\n  cmd.run:\n    - name: \'curl -H "Authorization: $TOKEN" https://x\'\n    - shell: true\n    - env:\n        TOKEN: "{{ pillar.secrets.TOKEN }}"\n';
  t.equal(load(withStates(fine), 'staging').states.length, 1, 'passed in env:');
});
