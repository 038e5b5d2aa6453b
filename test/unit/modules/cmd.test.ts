import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { accountFiles } from '../../../agent/accounts.js';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker, Secret } from '../../../agent/secret.js';
import { cmdModule } from '../../../agent/modules/cmd.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { fakeRunner, type Answer } from '../fake-runner.js';


function context(runner: Runner, masker = new Masker()): Context {
  return { runner, facts: new Facts(), masker, statesDir: '/srv/states', pillar: {},
    env: 'test',
    renderTemplate: () => { throw new Error('no templates'); } };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { run } = cmdModule.functions as Record<string, StateFunction>;

async function converge(given: Record<string, unknown>, ctx: Context) {
  const a = args(run, given);
  const current = await run.check(a, ctx);
  const plan = run.plan(current, a, ctx);
  await run.apply(a, plan, current, ctx);
  return plan;
}

t.beforeEach((t) => {
  const dir = t.testdir({
    passwd: 'root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/srv/app:/bin/bash\n',
    group: 'root:x:0:\napp:x:1000:\n',
    work: {},
  });
  accountFiles.passwd = `${dir}/passwd`;
  accountFiles.group = `${dir}/group`;
});

t.test('cmd.run always plans one change: the command as written', async (t) => {
  const ctx = context(fakeRunner([]).runner);
  const str = args(run, { name: 'manage.py migrate --noinput' });
  t.same(run.plan(await run.check(str, ctx), str, ctx), { changes: [{ what: 'command', old: null, new: 'manage.py migrate --noinput' }] });
  const argv = args(run, { name: ['/usr/bin/printf', '%s\n', 'hello world'] });
  t.same(run.plan(await run.check(argv, ctx), argv, ctx), {
    changes: [{ what: 'command', old: null, new: "/usr/bin/printf '%s\n' 'hello world'" }],
  });
});

t.test('a string command is split into words and run without a shell', async (t) => {
  const fake = fakeRunner([[['manage.py'], {}]]);
  await converge({ name: `manage.py createsuperuser --email "a b@example.com"` }, context(fake.runner));
  t.same(fake.argvs(), [['manage.py', 'createsuperuser', '--email', 'a b@example.com']]);
  t.same(fake.calls[0]!.options, { allowFailure: true });
});

t.test('an argv list runs as it is', async (t) => {
  const fake = fakeRunner([[['/bin/echo'], {}]]);
  await converge({ name: ['/bin/echo', '$HOME; rm -rf /'] }, context(fake.runner));
  t.same(fake.argvs(), [['/bin/echo', '$HOME; rm -rf /']]);
});

t.test('shell: true runs the string with /bin/sh -c', async (t) => {
  const fake = fakeRunner([[['/bin/sh'], {}]]);
  await converge({ name: 'pg_dump app | gzip > /var/backups/app.sql.gz', shell: true }, context(fake.runner));
  t.same(fake.argvs(), [['/bin/sh', '-c', 'pg_dump app | gzip > /var/backups/app.sql.gz']]);
});

t.test('validate: shell features without shell: true are an input error', async (t) => {
  t.same(run.validate!(args(run, { name: 'pg_dump app | gzip' })), [
    { key: 'name', message: '"pg_dump app | gzip" uses the shell feature |; write an argv list, or set shell: true' },
  ]);
  t.same(run.validate!(args(run, { name: 'echo "$HOME"' })), [
    { key: 'name', message: '"echo "$HOME"" uses $ inside double quotes; write an argv list, or set shell: true' },
  ]);
  t.same(run.validate!(args(run, { name: 'pg_dump app | gzip', shell: true })), []);
  t.same(run.validate!(args(run, { name: ['ls', '-l'], shell: true })), [
    { key: 'shell', message: 'shell: true needs the command as one string, not an argv list' },
  ]);
  t.same(run.validate!(args(run, { name: ['ls', '|'] })), [], 'an argv list is never interpreted');
});

t.test('runas runs the command as that user with runuser; cwd, env and timeout are passed on', async (t) => {
  const fake = fakeRunner([[['runuser'], {}]]);
  const cwd = t.testdirName + '/work';
  await converge({ name: 'npm ci', runas: 'app', cwd, env: { NODE_ENV: 'production' }, timeout: 90 }, context(fake.runner));
  t.same(fake.argvs(), [['runuser', '-u', 'app', '--', 'npm', 'ci']]);
  t.same(fake.calls[0]!.options, { allowFailure: true, cwd, env: { NODE_ENV: 'production' }, timeoutMs: 90_000 });
});

t.test("Salt's older user: is runas, and group: runs the command as that group", async (t) => {
  const fake = fakeRunner([[['runuser'], {}], [['runuser'], {}]]);
  await converge({ name: 'npm ci', user: 'app', group: 'www-data', cwd: t.testdirName + '/work' }, context(fake.runner));
  await converge({ name: 'id', group: 'adm' }, context(fake.runner));
  t.same(fake.argvs(), [
    ['runuser', '-u', 'app', '-g', 'www-data', '--', 'npm', 'ci'],
    ['runuser', '-u', 'root', '-g', 'adm', '--', 'id'],
  ]);
  t.same(run.validate!(args(run, { name: 'id', user: 'app', runas: 'app' })), [{ key: 'user', message: 'user is the older name of runas: give one of them' }]);
});

t.test('runas a user that does not exist fails before anything runs', async (t) => {
  const fake = fakeRunner([]);
  await t.rejects(converge({ name: 'npm ci', runas: 'ghost' }, context(fake.runner)), { message: 'user ghost does not exist' });
  t.same(fake.argvs(), []);
});

t.test('a cwd that does not exist fails with that, not "command not found"', async (t) => {
  const fake = fakeRunner([]);
  await t.rejects(converge({ name: 'make', cwd: '/nonexistent/brine-test' }, context(fake.runner)), {
    message: 'cwd /nonexistent/brine-test is not a directory',
  });
  t.same(fake.argvs(), []);
});

t.test('a non-zero exit fails the state with the exit code and the last lines of output, masked', async (t) => {
  const masker = new Masker();
  masker.addFrom(new Secret('hunter22'));
  const stderr = Array.from({ length: 15 }, (_, i) => `err ${i + 1}`).join('\n') + '\npassword hunter22 rejected\n';
  const fake = fakeRunner([[['migrate'], { code: 3, stdout: 'applying 0001\n', stderr }]]);
  await t.rejects(converge({ name: 'migrate' }, context(fake.runner, masker)), {
    message: [
      '`migrate` exited 3',
      'stderr:',
      '…',
      ...Array.from({ length: 9 }, (_, i) => `err ${i + 7}`),
      'password ******** rejected',
      'stdout:',
      'applying 0001',
    ].join('\n'),
  });
});

t.test('exit 127 from a shell reads as "command not found"', async (t) => {
  const fake = fakeRunner([[['/bin/sh'], { code: 127, stderr: '/bin/sh: 1: gunicron: not found\n' }]]);
  await t.rejects(converge({ name: 'gunicron --check-config', shell: true }, context(fake.runner)), {
    message: '`gunicron --check-config` exited 127 (command not found)\nstderr:\n/bin/sh: 1: gunicron: not found',
  });
});

t.test('env names must be variable names', async (t) => {
  t.notOk(Value.Check(run.schema, { name: 'ls', shell: false, env: { 'BAD-NAME': 'x' } }));
  t.ok(Value.Check(run.schema, { name: 'ls', shell: false, env: { GOOD_NAME: 'x' } }));
});
