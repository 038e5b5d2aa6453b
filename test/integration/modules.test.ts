// Every core module on a real booted Debian 12 server: --test predicts exactly the changes the
// first apply then makes; the apply converges what a person would check; a second apply changes
// nothing.
import t from 'tap';
import { agent, applyJson, bootWithAgent, byId, changesById, stage } from './brine.js';

const ROOT = '/srv/modules';
const SECRET = 'Tok3n-that-must-never-print-7731';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFVQ7Kx0Yr6y8b3m2s1kq7k8y2bQ3l2YqvB5nG8e2yW1 carol@test';
const KEY2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBk2x1m9W0c7nq4F5o8rP3d6Hk1Jv2YtQ9sL4e7uX0aZ dave@test';

const tree = {
  'states/top.yaml': "'*':\n  - all\n",
  'states/templates/app.conf.j2': 'name = {{ pillar.app.name }}\nenv = {{ env }}\nhost = {{ grains.host }}\nport = {{ port }}\n',
  'states/all.yaml': `
devs:
  group.present: []
carol:
  user.present:
    - shell: /bin/bash
    - groups: [devs]
    - require:
      - group: devs
dave:
  user.present: []
carol-key:
  ssh_auth.present:
    - user: carol
    - name: ${KEY}
    - require:
      - user: carol
dave-keys:
  ssh_auth.manage:
    - user: dave
    - ssh_keys:
      - ${KEY2}
    - require:
      - user: dave
/etc/brine-test:
  file.directory:
    - mode: '0750'
    - group: devs
/etc/brine-test/inline.conf:
  file.managed:
    - contents: "a = 1\\n"
    - mode: '0640'
    - group: devs
/etc/brine-test/app.conf:
  file.managed:
    - source: templates/app.conf.j2
    - template: jinja
    - context:
        port: 8000
/etc/brine-test/secret.env:
  file.managed:
    - contents: "TOKEN={{ pillar.secrets.TOKEN }}\\n"
/etc/brine-test/link:
  file.symlink:
    - target: /etc/brine-test/inline.conf
/etc/brine-test/gone:
  file.absent: []
hello:
  pkg.installed: []
cowsay-less:
  pkg.removed:
    - name: sl
/etc/systemd/system/brine-sleeper.service:
  file.managed:
    - contents: |
        [Unit]
        Description=brine test sleeper
        [Service]
        ExecStart=/bin/sleep infinity
        [Install]
        WantedBy=multi-user.target
daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: /etc/systemd/system/brine-sleeper.service
brine-sleeper:
  service.running:
    - enable: true
    - require:
      - cmd: daemon-reload
cron:
  service.enabled: []
stop-me:
  service.dead:
    - name: brine-stopme
backup-job:
  cron.present:
    - name: /usr/bin/true
    - identifier: brine-backup
    - minute: '*/5'
old-job:
  cron.absent:
    - name: /usr/bin/false
    - identifier: brine-old
stamp:
  cmd.run:
    - name: touch /var/tmp/brine-stamp
    - creates: /var/tmp/brine-stamp
`,
  'pillar/common.yaml': 'app:\n  name: modules-test\n',
  'pillar/test/secrets.yaml': `secrets:\n  TOKEN: ${SECRET}\n`,
};

t.test('every module: --test predicts the first apply, which converges; the second changes nothing', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  // Things for the absent/removed/dead states to remove or stop.
  await server.writeFile('/etc/brine-test/gone', 'old\n');
  await server.writeFile('/etc/cron.d/brine-old', '# managed by brine\n* * * * * root /usr/bin/false\n');
  await server.writeFile('/etc/systemd/system/brine-stopme.service', '[Service]\nExecStart=/bin/sleep infinity\n');
  await server.exec(['systemctl', 'daemon-reload']);
  await server.exec(['systemctl', 'start', 'brine-stopme']);
  await server.exec(['systemctl', 'disable', 'cron']);
  await server.exec(['apt-get', 'install', '-y', '-q', 'sl'], { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 300_000 }).catch(async () => {
    await server.exec(['apt-get', 'update', '-q'], { timeoutMs: 300_000 });
    await server.exec(['apt-get', 'install', '-y', '-q', 'sl'], { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 300_000 });
  });
  await stage(server, ROOT, tree);

  const predicted = await applyJson(server, ROOT, ['--test']);
  t.equal(predicted.code, 0, 'test mode exits 0');
  t.equal(predicted.summary.failed, 0, `nothing fails in test mode: ${predicted.output}`);
  t.equal(await server.exec(['id', 'carol'], { allowFailure: true }).then((r) => r.code), 1, 'test mode created no user');
  t.equal((await server.exec(['test', '-e', '/etc/brine-test/inline.conf'], { allowFailure: true })).code, 1, 'test mode wrote no file');

  const first = await applyJson(server, ROOT);
  t.equal(first.code, 0, `first apply converges: ${first.output}`);
  t.equal(first.summary.failed, 0);
  const states = Object.fromEntries(first.states.map((s) => [s.id, s.status]));
  for (const id of ['devs', 'carol', 'dave', 'carol-key', 'dave-keys', '/etc/brine-test', '/etc/brine-test/inline.conf', '/etc/brine-test/app.conf', '/etc/brine-test/secret.env', '/etc/brine-test/link', '/etc/brine-test/gone', 'hello', 'cowsay-less', 'brine-sleeper', 'cron', 'stop-me', 'backup-job', 'old-job', 'stamp', 'daemon-reload'])
    t.equal(states[id], 'changed', `${id} changed on the first apply`);
  t.same(changesById(first.states), changesById(predicted.states), '--test predicted exactly the changes apply made');

  // What a person would check.
  const sh = async (cmd: string) => (await server.exec(['sh', '-c', cmd])).stdout.trim();
  t.match(await sh('id -nG carol'), /\bdevs\b/, 'carol is in devs');
  t.equal(await sh('getent passwd carol | cut -d: -f7'), '/bin/bash');
  t.match(await server.readFile('/home/carol/.ssh/authorized_keys'), KEY, 'carol can log in with her key');
  t.equal(await sh('stat -c %a:%U /home/carol/.ssh /home/carol/.ssh/authorized_keys'), '700:carol\n600:carol'.replace('\n', '\n'));
  t.equal(await server.readFile('/home/dave/.ssh/authorized_keys'), `${KEY2}\n`);
  t.equal(await sh('stat -c %a:%G /etc/brine-test /etc/brine-test/inline.conf'), '750:devs\n640:devs');
  t.equal(await server.readFile('/etc/brine-test/app.conf'), 'name = modules-test\nenv = test\nhost = brine-test\nport = 8000\n'.replace('brine-test', await sh('hostname -s')));
  t.equal(await server.readFile('/etc/brine-test/secret.env'), `TOKEN=${SECRET}\n`, 'the file gets the real secret');
  t.equal(await sh('stat -c %a /etc/brine-test/secret.env'), '600', 'a file holding a secret is not world-readable');
  t.equal(await sh('readlink /etc/brine-test/link'), '/etc/brine-test/inline.conf');
  t.equal(await sh('test -e /etc/brine-test/gone || echo absent'), 'absent');
  t.match(await sh("dpkg-query -W -f '${Status}' hello"), /install ok installed/);
  t.equal((await server.exec(['dpkg-query', '-W', '-f', '${Status}', 'sl'], { allowFailure: true })).stdout.includes(' installed'), false, 'sl was removed');
  t.equal(await sh('systemctl is-active brine-sleeper; systemctl is-enabled brine-sleeper'), 'active\nenabled');
  t.equal(await sh('systemctl is-enabled cron'), 'enabled');
  t.equal(await sh('systemctl is-active brine-stopme || true'), 'inactive');
  t.match(await server.readFile('/etc/cron.d/brine-backup'), /^\*\/5 \* \* \* \* root \/usr\/bin\/true$/m);
  t.equal(await sh('test -e /etc/cron.d/brine-old || echo absent'), 'absent');
  t.equal(await sh('test -e /var/tmp/brine-stamp && echo yes'), 'yes');

  const second = await applyJson(server, ROOT);
  t.equal(second.code, 0);
  t.equal(second.summary.changed, 0, `second apply changes nothing: ${JSON.stringify(changesById(second.states))}`);
  t.equal(byId(second.states, 'stamp').status, 'not-needed', 'creates: skips the command');
  t.equal(byId(second.states, 'daemon-reload').status, 'not-needed', 'onchanges: nothing changed');

  const human = await agent(server, ROOT, ['apply']);
  t.match(human.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/, 'the console summary');

  for (const run of [predicted, first, second, human]) t.notMatch(run.output, SECRET, 'no output shows the secret');
  const shown = await agent(server, ROOT, ['show']);
  t.equal(shown.code, 0);
  t.notMatch(shown.output, SECRET, 'show masks the secret');
  t.match(shown.output, /TOKEN=\*{8}/);
});
