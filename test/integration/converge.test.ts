// Converging over time on a real server: drift is repaired (and only drift), `watch` restarts or
// reloads a service exactly once when its file changes, a failing check_cmd keeps the old file,
// a run killed with SIGKILL leaves no half-written file and the next run finishes the job, and
// one run at a time holds the lock. No output of any of it shows the secret.
import t from 'tap';
import type { TestServer } from '../server/server.js';
import { agent, applyJson, bootWithAgent, byId, stage, type AgentRun } from './brine.js';

const SECRET = 'Sup3r-secret-Pa55word-91x';
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFVQ7Kx0Yr6y8b3m2s1kq7k8y2bQ3l2YqvB5nG8e2yW1 erin@laptop';
const KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBk2x1m9W0c7nq4F5o8rP3d6Hk1Jv2YtQ9sL4e7uX0aZ erin@desk';

const unit = (name: string, extra = '') => `[Unit]
Description=${name}
[Service]
ExecStart=/bin/sh -c 'echo started >> /var/log/${name}.starts; exec sleep infinity'
${extra}
[Install]
WantedBy=multi-user.target
`;

function service(name: string, extra: string, reload = false): string {
  return `
/etc/systemd/system/${name}.service:
  file.managed:
    - contents: ${JSON.stringify(unit(name, extra))}
${name}:
  service.running:
    - enable: true
    - reload: ${reload}
    - require:
      - file: /etc/systemd/system/${name}.service
    - watch:
      - file: /etc/app/app.conf
`;
}

const states = `
/etc/app:
  file.directory: []
/etc/app/app.conf:
  file.managed:
    - contents: |
        greeting = {{ pillar.app.greeting }}
        password = {{ pillar.secrets.DB_PASSWORD }}
    - mode: '0640'
/etc/app/checked.conf:
  file.managed:
    - contents: "value = {{ pillar.app.checked }}\\n"
    - check_cmd: [sh, -c, '! grep -q bad "$0"']
${service('brine-web', '')}${service('brine-worker', "ExecReload=/bin/sh -c 'echo reloaded >> /var/log/brine-worker.reloads'", true)}erin:
  user.present: []
keys-erin:
  ssh_auth.manage:
    - user: erin
    - ssh_keys: {{ pillar.erin_keys | dump }}
    - require:
      - user: erin
`;

function tree(greeting: string, checked = 'good', keys = [KEY_A, KEY_B]) {
  return {
    'states/top.yaml': "'*':\n  - main\n",
    'states/main.yaml': states,
    'pillar/common.yaml': `app:\n  greeting: ${greeting}\n  checked: ${checked}\nerin_keys: ${JSON.stringify(keys)}\n`,
    'pillar/test/secrets.yaml': `secrets:\n  DB_PASSWORD: ${SECRET}\n`,
  };
}

const ROOT = '/srv/converge';
const outputs: AgentRun[] = [];

async function lines(server: TestServer, path: string): Promise<number> {
  const r = await server.exec(['sh', '-c', `cat ${path} 2>/dev/null | wc -l`]);
  return Number(r.stdout.trim());
}

const changed = (run: { states: { id: string; status: string }[] }) =>
  run.states.filter((s) => s.status === 'changed').map((s) => s.id).sort();

t.test('drift, watch, check_cmd', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  await stage(server, ROOT, tree('hello'));

  const first = await applyJson(server, ROOT);
  outputs.push(first);
  t.equal(first.code, 0, `first apply converges: ${first.output}`);
  t.equal(await lines(server, '/var/log/brine-web.starts'), 1, 'brine-web started once');
  t.equal(await server.readFile('/etc/app/app.conf'), `greeting = hello\npassword = ${SECRET}\n`);

  const again = await applyJson(server, ROOT);
  outputs.push(again);
  t.equal(again.summary.changed, 0, 'a second apply changes nothing');
  t.equal(await lines(server, '/var/log/brine-web.starts'), 1, 'an unchanged watched file restarts nothing');
  t.equal(await lines(server, '/var/log/brine-worker.reloads'), 0, 'and reloads nothing');

  await t.test('drift is repaired, and only drift', async (t) => {
    await server.writeFile('/etc/app/app.conf', 'greeting = edited by hand\n', 0o644);
    await server.writeFile('/home/erin/.ssh/authorized_keys', `${KEY_A}\n`, 0o600);
    await server.exec(['chown', 'erin:erin', '/home/erin/.ssh/authorized_keys']);
    await server.exec(['systemctl', 'stop', 'brine-worker']);
    const repair = await applyJson(server, ROOT);
    outputs.push(repair);
    t.equal(repair.code, 0);
    // app.conf drifted, so brine-web (which watches it) is restarted too: that is the point of watch.
    t.same(changed(repair), ['/etc/app/app.conf', 'brine-web', 'brine-worker', 'keys-erin'].sort(), 'exactly the drifted states changed');
    t.match(byId(repair.states, '/etc/app/app.conf').changes, [{ what: 'content' }, { what: 'mode', old: '0644', new: '0640' }]);
    t.equal(await server.readFile('/etc/app/app.conf'), `greeting = hello\npassword = ${SECRET}\n`, 'the file is repaired');
    t.equal(await server.readFile('/home/erin/.ssh/authorized_keys'), `${KEY_A}\n${KEY_B}\n`, 'the deleted key is back');
    t.equal((await server.exec(['systemctl', 'is-active', 'brine-worker'], { allowFailure: true })).stdout.trim(), 'active', 'the stopped service runs');
    const diff = byId(repair.states, '/etc/app/app.conf').changes[0]!.diff ?? '';
    t.match(diff, /-greeting = edited by hand\n\+greeting = hello\n\+password = \*{8}/, 'the diff shows the change, masked');
    t.equal((await applyJson(server, ROOT)).summary.changed, 0, 'and then nothing changes');
  });

  await t.test('watch: a changed file restarts (or reloads) its service exactly once', async (t) => {
    const startsBefore = await lines(server, '/var/log/brine-web.starts');
    const reloadsBefore = await lines(server, '/var/log/brine-worker.reloads');
    await stage(server, ROOT, tree('bonjour'));
    const run = await applyJson(server, ROOT);
    outputs.push(run);
    t.equal(run.code, 0);
    t.same(changed(run), ['/etc/app/app.conf', 'brine-web', 'brine-worker'].sort());
    t.match(byId(run.states, 'brine-web').changes, [{ what: 'restarted' }]);
    t.match(byId(run.states, 'brine-worker').changes, [{ what: 'reloaded' }]);
    t.equal(await lines(server, '/var/log/brine-web.starts'), startsBefore + 1, 'restarted once');
    t.equal(await lines(server, '/var/log/brine-worker.reloads'), reloadsBefore + 1, 'reloaded once');
    const predicted = await applyJson(server, ROOT, ['--test']);
    t.equal(predicted.summary.changed, 0, 'nothing more to do');

    await stage(server, ROOT, tree('hallo'));
    const test = await applyJson(server, ROOT, ['--test']);
    outputs.push(test);
    t.equal(byId(test.states, 'brine-web').status, 'would-change', '--test says the watcher would restart');
    t.equal(await lines(server, '/var/log/brine-web.starts'), startsBefore + 1, '--test restarted nothing');
  });

  await t.test('a failing check_cmd keeps the old file and fails the state', async (t) => {
    await stage(server, ROOT, tree('hallo', 'bad'));
    const run = await applyJson(server, ROOT);
    outputs.push(run);
    t.equal(run.code, 2, 'a failed state exits 2');
    const state = byId(run.states, '/etc/app/checked.conf');
    t.equal(state.status, 'failed');
    t.match(state.comment, /check_cmd refused the new content \(exit 1\); the old file is kept/);
    t.equal(await server.readFile('/etc/app/checked.conf'), 'value = good\n', 'the old file is in place');
    t.equal((await server.exec(['sh', '-c', 'ls -A /etc/app | grep brine- || true'])).stdout, '', 'no temp file is left');
    t.equal(byId(run.states, '/etc/app/app.conf').status, 'changed', 'the other states still ran');
    const console = await agent(server, ROOT, ['apply']);
    outputs.push(console);
    t.match(console.stdout, /✗ file\.managed\s+\/etc\/app\/checked\.conf/);
    t.match(console.stdout, /Summary: .*1 failed/);
  });

  t.test('no output showed the secret', async (t) => {
    t.equal(outputs.length, 7, "every run was collected");
    for (const o of outputs) t.notMatch(o.output, SECRET);
  });
});

t.test('SIGKILL in the middle leaves no half-written file; the next run converges', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  const blob = 'x'.repeat(199_999);
  const root = '/srv/kill';
  const files = 40;
  await stage(server, root, {
    'states/top.yaml': "'*':\n  - many\n",
    'states/many.yaml': `{% for i in range(${files}) %}
/srv/data/file-{{ i }}:
  file.managed:
    - contents: "{{ pillar.blob }}{{ i }}\\n"
    - makedirs: true
{% endfor %}`,
    'pillar/common.yaml': `blob: ${blob}\n`,
    'pillar/test/env.yaml': 'x: 1\n',
  });
  const complete = (i: number) => `${blob}${i}\n`.length;
  let interrupted = 0;
  for (const delayMs of [400, 550, 700, 850, 1000, 1200]) {
    await server.exec(['rm', '-rf', '/srv/data']);
    const r = await server.exec([
      'sh',
      '-c',
      `agent apply --root ${root} >/dev/null 2>&1 & pid=$!; sleep ${delayMs / 1000}; kill -9 $pid 2>/dev/null && echo killed; wait $pid; true`,
    ]);
    if (r.stdout.includes('killed')) interrupted++;
    // Every target is absent or whole; never a prefix of its content.
    const sizes = await server.exec(['sh', '-c', 'cd /srv/data 2>/dev/null && for f in file-*; do [ -e "$f" ] && echo "$f $(stat -c %s "$f")"; done; true']);
    for (const line of sizes.stdout.trim().split('\n').filter(Boolean)) {
      const [name, size] = line.split(' ');
      const i = Number(name!.slice('file-'.length));
      t.equal(Number(size), complete(i), `after a kill at ${delayMs} ms, ${name} is whole`);
    }
  }
  t.ok(interrupted >= 3, `the kills interrupted runs (${interrupted} of 6)`);
  const started = Date.now();
  const next = await applyJson(server, root);
  t.equal(next.code, 0, 'the next run converges');
  t.ok(Date.now() - started < 30_000, 'the lock of the killed run did not block it');
  const temps = await server.exec(['sh', '-c', 'ls -A /srv/data | grep -c brine- || true']);
  t.equal(temps.stdout.trim(), '0', 'no temp files remain');
  const count = await server.exec(['sh', '-c', 'ls /srv/data | wc -l']);
  t.equal(count.stdout.trim(), String(files));
  t.equal((await applyJson(server, root)).summary.changed, 0);
});

t.test('one run at a time: a second apply waits, then names the holder', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  const root = '/srv/lock';
  await stage(server, root, {
    'states/top.yaml': "'*':\n  - slow\n",
    'states/slow.yaml': 'nap:\n  cmd.run:\n    - name: sleep 6\n',
    'pillar/common.yaml': 'x: 1\n',
    'pillar/test/env.yaml': 'y: 1\n',
  });
  await server.exec(['sh', '-c', `agent apply --root ${root} >/var/log/first.log 2>&1 &`]);
  await server.exec(['sh', '-c', 'for i in $(seq 50); do [ -e /run/brine/agent.lock ] && exit 0; sleep 0.1; done; exit 1']);
  const started = Date.now();
  const second = await agent(server, root, ['apply', '--wait', '2']);
  const waited = Date.now() - started;
  t.equal(second.code, 4, 'busy exits 4');
  t.match(second.stderr, /another run holds the lock \(pid \d+, `agent apply`, since .*\); waited 2s/);
  t.ok(waited >= 1900 && waited < 5000, `it waited about 2 s (${waited} ms)`);
  const third = await agent(server, root, ['apply', '--wait', '30']);
  t.equal(third.code, 0, 'a run that waits long enough goes ahead after the first');
  t.match(await server.readFile('/var/log/first.log'), /Summary: 1 succeeded, 1 changed/);
});
