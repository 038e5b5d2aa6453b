// A Salt user's tree, unchanged, on a real booted Debian 12 server: top.sls targeting by a custom
// grain, map.jinja with grains.filter_by, import_yaml, salt['pillar.get'], salt:// sources, bare
// modes, names:, the short form, order: last, Salt's requisite spellings and cmd.run's user.
// --test predicts the first apply exactly, the second apply changes nothing, and a secret the
// tree renders stays out of every output.
import t from 'tap';
import { agent, applyJson, bootWithAgent, byId, changesById, stage } from './brine.js';

const ROOT = '/srv/salt-tree';
const SECRET = 'S4lt-tree-secret-never-printed-9021';

const tree = {
  'states/top.sls': `base:
  '*':
    - common
  'roles:web':
    - match: grain
    - web
  'G@roles:db and not G@roles:web':
    - match: compound
    - db
`,
  'states/map.jinja': `{% set app = salt['grains.filter_by']({
    'Debian': {'user': 'www-data', 'conf_dir': '/etc/salt-demo'},
    'RedHat': {'user': 'apache', 'conf_dir': '/etc/httpd/salt-demo'},
}, merge=salt['pillar.get']('app:lookup', {})) %}
`,
  'states/defaults.yaml': 'port: 8080\nworkers: {{ grains.num_cpus * 2 }}\n',
  'states/common.sls': `{% from "map.jinja" import app with context %}
{{ app.conf_dir }}:
  file.directory:
    - mode: 755

demo-dirs:
  file.directory:
    - names:
      - {{ app.conf_dir }}/conf.d
      - {{ app.conf_dir }}/run:
        - mode: 0750
    - require:
      - file: {{ app.conf_dir }}

/etc/salt-demo/os:
  file.managed:
    - contents: "{{ grains['os'] }} {{ grains['oscodename'] }} {{ grains['osrelease'].split('.')[0] }}\\n"
    - mode: 0644
    - backup: minion
`,
  'states/web/init.sls': `include:
  - .site
`,
  'states/web/site.sls': `{% from "map.jinja" import app with context %}
{% import_yaml "defaults.yaml" as defaults %}
include:
  - common

/etc/salt-demo/site.conf:
  file.managed:
    - source: salt://web/files/site.conf.j2
    - template: jinja
    - mode: '0640'
    - group: {{ app.user }}
    - defaults:
        port: {{ defaults.port }}
        workers: {{ defaults.workers }}
    - context:
        token: {{ salt['pillar.get']('secrets:token') }}
    - require:
      - sls: common

/etc/salt-demo/empty: file.managed

nightly-report:
  cron.present:
    - name: /usr/bin/true
    - identifier: salt-demo-report
    - minute: random
    - hour: 3

reload-site:
  cmd.run:
    - name: touch /var/tmp/salt-demo-reloaded
    - user: root
    - order: last
    - onchanges_any:
      - file: /etc/salt-demo/site.conf
`,
  'states/web/files/site.conf.j2': `# {{ tplfile }} for {{ grains['id'] }}
listen {{ port }}
workers {{ workers }}
token {{ token }}
roles {{ grains['roles'] | join(',') }}
`,
  'states/db.sls': 'postgresql-demo:\n  file.managed:\n    - name: /etc/salt-demo/db\n    - contents: db\n',
  'pillar/common.yaml': 'app:\n  lookup:\n    conf_dir: /etc/salt-demo\n',
  'pillar/test/secrets.yaml': `secrets:\n  token: ${SECRET}\n`,
};

t.test('a Salt-style tree converges on a booted server as Salt would converge it', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  await server.writeFile('/etc/brine/grains', 'roles: [web]\n');
  await stage(server, ROOT, tree);
  const sh = async (cmd: string) => (await server.exec(['sh', '-c', cmd])).stdout.trim();

  t.equal(await sh(`agent grains roles --root ${ROOT}`), 'roles:\n  - web', 'the custom grain is read');
  const validate = await agent(server, ROOT, ['validate']);
  t.equal(validate.code, 0, validate.output);
  t.match(validate.output, /Salt's backup is ignored/, 'an argument only Salt reads is a warning');

  const predicted = await applyJson(server, ROOT, ['--test']);
  t.equal(predicted.code, 0, predicted.output);
  t.equal(predicted.summary.failed, 0, predicted.output);
  t.equal(await sh('test -e /etc/salt-demo || echo absent'), 'absent', 'test mode changed nothing');

  const first = await applyJson(server, ROOT);
  t.equal(first.code, 0, `first apply converges: ${first.output}`);
  t.same(changesById(first.states), changesById(predicted.states), '--test predicted exactly the changes apply made');
  const ids = first.states.map((s) => `${s.function} ${s.name}`);
  t.notOk(ids.some((i) => i.includes('/etc/salt-demo/db')), 'db.sls is not for a web server (compound target)');
  t.equal(ids.at(-1), 'cmd.run touch /var/tmp/salt-demo-reloaded', 'order: last runs last');
  t.equal(byId(first.states, 'reload-site').status, 'changed', 'onchanges_any: the site changed');

  t.equal(await sh('stat -c %a /etc/salt-demo /etc/salt-demo/conf.d /etc/salt-demo/run /etc/salt-demo/os'), '755\n755\n750\n644', 'mode: 755 and 0750 (bare YAML numbers) as Salt reads them');
  t.equal(await sh('stat -c %a:%G /etc/salt-demo/site.conf'), '640:www-data');
  t.equal(await server.readFile('/etc/salt-demo/os'), 'Debian bookworm 12\n');
  const cpus = Number(await sh('nproc'));
  t.equal(
    await server.readFile('/etc/salt-demo/site.conf'),
    `# web/files/site.conf.j2 for ${await sh('hostname')}\nlisten 8080\nworkers ${cpus * 2}\ntoken ${SECRET}\nroles web\n`,
    'the template got defaults, import_yaml values, a pillar.get secret and the custom grain',
  );
  t.equal(await sh('test -e /etc/salt-demo/empty && echo yes'), 'yes', 'the short form made the file');
  const cronLine = (await server.readFile('/etc/cron.d/salt-demo-report')).split('\n')[1]!;
  t.match(cronLine, /^([0-9]|[1-5][0-9]) 3 \* \* \* root \/usr\/bin\/true$/, `minute: random is a minute cron accepts (${cronLine})`);

  const second = await applyJson(server, ROOT);
  t.equal(second.code, 0);
  t.equal(second.summary.changed, 0, `second apply changes nothing: ${JSON.stringify(changesById(second.states))}`);
  t.equal(byId(second.states, 'reload-site').status, 'not-needed');

  for (const run of [validate, predicted, first, second]) t.notOk(run.output.includes(SECRET), 'the secret is in no output');

  // Another server's role: the same tree targets it differently.
  await server.writeFile('/etc/brine/grains', 'roles: [db]\n');
  const db = await applyJson(server, ROOT);
  t.equal(db.code, 0, db.output);
  t.equal(await server.readFile('/etc/salt-demo/db'), 'db', 'with roles: [db], db.sls applies');
  t.notOk(db.states.some((s) => s.id === 'reload-site'), 'and web.sls does not');
});

t.test("packages as Salt trees name them: a virtual package, pkgs with a version, and --test failing a package apt lacks as apply does", async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  const policy = async (name: string) => (await server.exec(['sh', '-c', `apt-get update -q >/dev/null 2>&1; apt-cache policy ${name} | sed -n 's/^  Candidate: //p'`], { timeoutMs: 300_000 })).stdout.trim();
  const hello = await policy('hello');
  t.match(hello, /^\d/, `the mirror has hello (${hello})`);
  const root = '/srv/salt-pkgs';
  const good = {
    'states/top.sls': "base:\n  '*': [pkgs]\n",
    'states/pkgs.sls': `awk:\n  pkg.installed: []\ntools:\n  pkg.installed:\n    - pkgs:\n      - hello: '${hello}'\n`,
    'pillar/test/env.yaml': 'x: 1\n',
  };
  await stage(server, root, good);
  const predicted = await applyJson(server, root, ['--test']);
  t.equal(predicted.code, 0, predicted.output);
  t.same(byId(predicted.states, 'awk').changes, [], 'awk is virtual and mawk provides it: nothing to do');
  const first = await applyJson(server, root);
  t.equal(first.code, 0, first.output);
  t.same(changesById(first.states), changesById(predicted.states), '--test predicted the apply');
  t.match(await server.exec(['dpkg-query', '-W', '-f', '${Version}', 'hello']).then((r) => r.stdout), hello);
  const second = await applyJson(server, root);
  t.equal(second.summary.changed, 0, `converged: ${JSON.stringify(changesById(second.states))}`);

  await stage(server, root, { ...good, 'states/pkgs.sls': 'no-such-package-brine:\n  pkg.installed: []\n' });
  const dry = await applyJson(server, root, ['--test']);
  const real = await applyJson(server, root);
  t.equal(byId(dry.states, 'no-such-package-brine').status, 'failed', '--test reports the failure ahead of time');
  t.equal(byId(real.states, 'no-such-package-brine').status, 'failed');
  t.match(byId(dry.states, 'no-such-package-brine').comment, /apt has no package no-such-package-brine/);
  t.equal(byId(dry.states, 'no-such-package-brine').comment, byId(real.states, 'no-such-package-brine').comment, 'the dry run says what the real run says');
});
