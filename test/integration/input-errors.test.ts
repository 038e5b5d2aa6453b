// Bad input changes nothing and exits 3 with one line naming the file, line and key — on a real
// server, where the first state of each tree would create a marker file if anything were applied.
import t from 'tap';
import { agent, bootWithAgent, stage } from './brine.js';

const SECRET = 'never-Print-this-5ecret-0042';
const marker = (n: number) => `/etc/marker-${n}:\n  file.managed:\n    - contents: "applied\\n"\n`;
const pillar = {
  'pillar/common.yaml': 'app:\n  name: demo\n',
  'pillar/test/secrets.yaml': `secrets:\n  DB_PASSWORD: ${SECRET}\n  TAGGY: '!${SECRET}'\n`,
};

interface Case {
  name: string;
  states: Record<string, string>;
  /** The one-line message: file:line: key: … */
  message: RegExp;
}

const cases: Case[] = [
  {
    name: 'invalid YAML',
    states: { 'states/main.yaml': `${marker(1)}broken:\n  file.managed:\n    - contents: [unclosed\n` },
    message: /^error: states\/main\.yaml:\d+: invalid YAML: /,
  },
  {
    name: 'unknown function, with a suggestion',
    states: { 'states/main.yaml': `${marker(2)}nginx:\n  pkg.instaled: []\n` },
    message: /^error: states\/main\.yaml:5: nginx: unknown function pkg\.instaled \(did you mean pkg\.installed\?\)$/,
  },
  {
    name: 'unknown module, with a suggestion',
    states: { 'states/main.yaml': `${marker(3)}nginx:\n  servce.running: []\n` },
    message: /^error: states\/main\.yaml:5: nginx: unknown module servce\.running \(did you mean service\.running\?\)$/,
  },
  {
    name: 'an argument of the wrong type',
    states: { 'states/main.yaml': `${marker(4)}/etc/app.conf:\n  file.managed:\n    - contents: hi\n    - makedirs: sometimes\n` },
    message: /^error: states\/main\.yaml:7: \/etc\/app\.conf: makedirs: must be boolean$/,
  },
  {
    name: 'a mode that cannot be a mode',
    states: { 'states/main.yaml': `${marker(5)}/etc/app.conf:\n  file.managed:\n    - contents: hi\n    - mode: 0980\n` },
    message: /^error: states\/main\.yaml:7: \/etc\/app\.conf: mode: is not valid: a mode is 3 or 4 octal digits \(0-7\), such as 0640/,
  },
  {
    name: 'an unknown argument, with a suggestion',
    states: { 'states/main.yaml': `${marker(6)}/etc/app.conf:\n  file.managed:\n    - content: hi\n` },
    message: /^error: states\/main\.yaml:6: \/etc\/app\.conf: content: unknown argument \(did you mean contents\?\)$/,
  },
  {
    name: 'a missing requisite target',
    states: { 'states/main.yaml': `${marker(7)}nginx:\n  service.running:\n    - require:\n      - pkg: ngin\n` },
    message: /^error: states\/main\.yaml:7: nginx: require: no state matches "pkg: ngin"/,
  },
  {
    name: 'a requisite cycle, printed',
    states: {
      'states/main.yaml': `${marker(8)}a:\n  cmd.run:\n    - name: 'true'\n    - require:\n      - cmd: b\nb:\n  cmd.run:\n    - name: 'true'\n    - watch:\n      - cmd: a\n`,
    },
    message: /^error: states\/main\.yaml:5: a: requisite cycle: cmd\.run a \(states\/main\.yaml:5\) → cmd\.run b \(states\/main\.yaml:10\) → cmd\.run a/,
  },
  {
    name: 'an undefined pillar key in a template',
    states: { 'states/main.yaml': `${marker(9)}/etc/app.conf:\n  file.managed:\n    - contents: "{{ pillar.app.domain }}"\n` },
    message: /^error: states\/main\.yaml:6: pillar\.app\.domain: undefined in the template/,
  },
  {
    name: 'a secret that breaks the YAML it is rendered into is not quoted in the error',
    states: { 'states/main.yaml': `${marker(10)}/etc/app.conf:\n  file.managed:\n    - contents: {{ pillar.secrets.TAGGY }}\n` },
    // A YAML error in text a secret was rendered into may quote it, cut short past masking: the line only.
    message: /^error: states\/main\.yaml:6: invalid YAML: check the quoting of this line \(details hidden: the file holds secrets\)$/,
  },
  {
    name: 'an undefined pillar key in a file template',
    states: {
      'states/main.yaml': `${marker(11)}/etc/app.conf:\n  file.managed:\n    - source: t.j2\n    - template: jinja\n`,
      'states/t.j2': 'name = {{ pillar.app.name }}\npassword = {{ pillar.secrets.DB_PASSWORD }}\nport = {{ pillar.app.port }}\n',
    },
    // A template file is rendered at load too: an input error before anything is applied.
    message: /^error: states\/t\.j2:3: pillar\.app\.port: undefined in the template/,
  },
];

t.test('bad input: exit 3, one clear line, nothing applied', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  for (const [i, c] of cases.entries()) {
    const root = `/srv/bad-${i}`;
    await stage(server, root, { 'states/top.yaml': "'*':\n  - main\n", ...pillar, ...c.states });
    for (const args of [['apply'], ['apply', '--test'], ['validate']]) {
      const r = await agent(server, root, args);
      t.equal(r.code, 3, `${c.name}: agent ${args.join(' ')} exit code`);
      t.notMatch(r.output, SECRET, `${c.name}: the secret is not shown`);
      t.notMatch(r.output, /\n\s+at /, `${c.name}: no stack trace`);
      t.match(r.stderr.split('\n')[0], c.message, `${c.name}: ${args.join(' ')} says where`);
      t.equal(r.stdout, '', `${c.name}: prints no report`);
    }
    const n = i + 1;
    const applied = await server.exec(['test', '-e', `/etc/marker-${n}`], { allowFailure: true });
    t.equal(applied.code, 1, `${c.name}: nothing was applied`);
  }
});

t.test('a missing pillar key required by pillar/schema.yaml stops the run before anything', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  await stage(server, '/srv/schema', {
    'states/top.yaml': "'*':\n  - main\n",
    'states/main.yaml': marker(1),
    'pillar/common.yaml': 'app:\n  name: demo\n',
    'pillar/test/secrets.yaml': `secrets:\n  OTHER: ${SECRET}\n`,
    'pillar/schema.yaml': 'type: object\nproperties:\n  secrets:\n    type: object\n    required: [DB_PASSWORD]\n',
  });
  const r = await agent(server, '/srv/schema', ['apply']);
  t.equal(r.code, 3);
  t.match(r.stderr, /^error: pillar\/schema\.yaml: pillar\.secrets\.DB_PASSWORD: missing in the test pillar/);
  t.notMatch(r.output, SECRET);
  t.equal((await server.exec(['test', '-e', '/etc/marker-1'], { allowFailure: true })).code, 1, 'nothing was applied');
  const unknownEnv = await agent(server, '/srv/schema', ['apply', '--env', 'prod']);
  t.equal(unknownEnv.code, 3);
  t.match(unknownEnv.stderr, /unknown environment "prod": there is no pillar\/prod\/ \(known: test\)/);
});
