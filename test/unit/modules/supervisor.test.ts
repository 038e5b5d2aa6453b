import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { lstat, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, type RunOptions, type RunResult, type Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker } from '../../../agent/secret.js';
import { commandLine, programConf, supervisorPaths } from '../../../agent/supervisor/conf.js';
import { parseStatus, supervisorTiming } from '../../../agent/supervisor/ctl.js';
import { supervisorModule } from '../../../agent/modules/supervisor.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { fakeRunner, type Answer } from '../fake-runner.js';
import { markPending, pendingPaths } from '../../../agent/atomic.js';


function context(runner: Runner, masker = new Masker()): Context {
  return { runner, facts: new Facts(), masker, statesDir: '/srv/states', pillar: {}, env: 'test',
    renderTemplate: () => { throw new Error('no templates'); } };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { program } = supervisorModule.functions as Record<string, StateFunction>;

const STATUS = ['supervisorctl', 'status', 'app:*'];
const REREAD = ['supervisorctl', 'reread'];
const UPDATE = ['supervisorctl', 'update', 'app'];
const START = ['supervisorctl', 'start', 'app:*'];
const RESTART = ['supervisorctl', 'restart', 'app:*'];
const TAIL = ['supervisorctl', 'tail', '-2000', 'app:app', 'stdout'];
const NO_GROUP = { code: 4, stdout: 'app: ERROR (no such group)\n' };
const line = (state: string, description = '') => ({ code: state === 'RUNNING' ? 0 : 3, stdout: `app                              ${state.padEnd(9)} ${description}\n` });
const RUNNING = line('RUNNING', 'pid 4242, uptime 0:01:00');

/** Answers `status` from a list, one per call (the last one repeats). */
function statuses(...answers: Partial<RunResult>[]) {
  let i = 0;
  return () => answers[Math.min(i++, answers.length - 1)]!;
}

let confDir = '';

t.beforeEach((t) => {
  const dir = t.testdir({ 'conf.d': {}, log: {} });
  confDir = supervisorPaths.confDir = join(dir, 'conf.d');
  supervisorPaths.logDir = '/var/log/supervisor';
  supervisorTiming.pollMs = 0;
  supervisorTiming.graceMs = 0;
  supervisorTiming.socketWaitMs = 0;
  pendingPaths.dir = join(dir, 'pending');
});

const APP = { name: 'app', command: ['/usr/bin/python3', '-m', 'http.server', '8000'], directory: '/srv/app', user: 'app', startsecs: 0 };
const APP_CONF = [
  '; managed by brine',
  '[program:app]',
  'command=/usr/bin/python3 -m http.server 8000',
  'directory=/srv/app',
  'user=app',
  'autostart=true',
  'autorestart=true',
  'startsecs=0',
  'stdout_logfile=/var/log/supervisor/app.log',
  'redirect_stderr=true',
  '',
].join('\n');

t.test('the conf: every argument, argv quoting, % escaped, the env file sourced by sh', async (t) => {
  const a = args(program, {
    name: 'web',
    command: ['/srv/web/bin/gunicorn', '--bind', '127.0.0.1:8000', '--access-logformat', "%(h)s 'quoted'", 'web.wsgi'],
    directory: '/srv/web/current',
    user: 'web',
    env_file: '/srv/web/shared/.env',
    environment: { PYTHONUNBUFFERED: '1', GREETING: 'say "hi", 100%' },
    autostart: false,
    autorestart: 'unexpected',
    startsecs: 5,
    stopsignal: 'QUIT',
    stopwaitsecs: 30,
    stdout_logfile: '/var/log/web/out.log',
    redirect_stderr: false,
    numprocs: 2,
    priority: 10,
  });
  t.equal(programConf(a), [
    '; managed by brine',
    '[program:web]',
    `command=/bin/sh -c 'set -a; . /srv/web/shared/.env; set +a; exec /srv/web/bin/gunicorn --bind 127.0.0.1:8000 --access-logformat '\\''%%(h)s '\\''\\'\\'''\\''quoted'\\''\\'\\'''\\'''\\'' web.wsgi'`,
    'process_name=%(program_name)s_%(process_num)02d',
    'numprocs=2',
    'directory=/srv/web/current',
    'user=web',
    `environment=PYTHONUNBUFFERED="1",GREETING='say "hi", 100%%'`,
    'autostart=false',
    'autorestart=unexpected',
    'startsecs=5',
    'stopsignal=QUIT',
    'stopwaitsecs=30',
    'priority=10',
    'stdout_logfile=/var/log/web/out.log',
    'redirect_stderr=false',
    '',
  ].join('\n'));
  t.equal(programConf(args(program, APP)), APP_CONF);
  t.equal(commandLine({ command: 'gunicorn --name %(program_name)s app' }), 'gunicorn --name %(program_name)s app', 'a string is written as given');
  t.equal(commandLine({ command: ['/bin/echo', "it's 5% off"] }), `/bin/echo 'it'\\''s 5%% off'`);
});

t.test('arguments that could break the conf are refused', async (t) => {
  const ok = args(program, APP);
  t.notOk(Value.Check(program.schema, { ...ok, command: 'run\n[program:evil]' }), 'no newline in a command');
  t.notOk(Value.Check(program.schema, { ...ok, environment: { A: 'x\ny' } }), 'no newline in a value');
  t.notOk(Value.Check(program.schema, { ...ok, name: 'a:b' }), 'no colon in a name');
  t.notOk(Value.Check(program.schema, { ...ok, stopsignal: 'STOP' }));
  t.same(program.validate!(args(program, { ...APP, environment: { A: `both ' and "` } })), [
    { key: 'environment', message: `A: supervisor cannot read a value with both ' and " in it; use env_file` },
  ]);
});

t.test('supervisorctl status is parsed: one process, several, none, no daemon', async (t) => {
  t.same(parseStatus('app                              RUNNING   pid 12, uptime 0:00:05\n'), {
    loaded: true,
    processes: [{ name: 'app', state: 'RUNNING', description: 'pid 12, uptime 0:00:05' }],
  });
  t.same(parseStatus('app:app_00   RUNNING   pid 12, uptime 0:00:05\napp:app_01   STARTING  \n').processes.map((p) => [p.name, p.state]), [
    ['app:app_00', 'RUNNING'],
    ['app:app_01', 'STARTING'],
  ]);
  t.same(parseStatus('app: ERROR (no such group)\n'), { loaded: false, processes: [] });
  t.same(parseStatus('unix:///var/run/supervisor.sock no such file\n'), {
    loaded: false,
    processes: [],
    problem: 'supervisord did not answer: unix:///var/run/supervisor.sock no such file',
  });
});

t.test('a new program: conf written, reread, update, and it runs', async (t) => {
  const fake = fakeRunner([
    [STATUS, statuses(NO_GROUP, line('STARTING'), RUNNING)],
    [REREAD, { stdout: 'app: available\n' }],
    [UPDATE, { stdout: 'app: added process group\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'conf', old: null, new: 'created', diff: [`--- ${confDir}/app.conf`, `+++ ${confDir}/app.conf`, '@@ -0,0 +1,10 @@', ...APP_CONF.trimEnd().split('\n').map((l) => `+${l}`)].join('\n') },
      { what: 'running', old: 'not loaded', new: 'RUNNING' },
    ],
  });
  await program.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [STATUS, REREAD, UPDATE, STATUS, STATUS]);
  t.equal(await readFile(join(confDir, 'app.conf'), 'utf8'), APP_CONF);
  t.equal((await lstat(join(confDir, 'app.conf'))).mode & 0o777, 0o644);
  t.same(await readdir(confDir), ['app.conf'], 'no temp file left');

  fake.calls.length = 0;
  t.same(program.plan(await program.check(a, ctx), a, ctx), { changes: [], reason: 'program app is running (pid 4242, uptime 0:01:00)' });
  t.same(fake.argvs(), [STATUS], 'a running program with its conf runs only status');
});

t.test('a changed conf: reread and update (which restarts it), then it must run again', async (t) => {
  await writeFile(join(confDir, 'app.conf'), APP_CONF.replace('8000', '8001'));
  const fake = fakeRunner([
    [STATUS, statuses(RUNNING, line('STARTING'), RUNNING)],
    [REREAD, { stdout: 'app: changed\n' }],
    [UPDATE, { stdout: 'app: stopped\napp: updated process group\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      {
        what: 'conf',
        diff: [
          `--- ${confDir}/app.conf`,
          `+++ ${confDir}/app.conf`,
          '@@ -1,6 +1,6 @@',
          ' ; managed by brine',
          ' [program:app]',
          '-command=/usr/bin/python3 -m http.server 8001',
          '+command=/usr/bin/python3 -m http.server 8000',
          ' directory=/srv/app',
          ' user=app',
          ' autostart=true',
        ].join('\n'),
      },
    ],
  });
  await program.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [STATUS, REREAD, UPDATE, STATUS, STATUS]);
  t.equal(await readFile(join(confDir, 'app.conf'), 'utf8'), APP_CONF);
});

t.test('a program that goes FATAL fails the state with the last lines of its log', async (t) => {
  const log = Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join('\n');
  const fatal = line('FATAL', 'Exited too quickly (process log may have details)');
  const fake = fakeRunner([
    [STATUS, statuses(NO_GROUP, fatal)],
    [REREAD, { stdout: 'app: available\n' }],
    [UPDATE, { stdout: 'app: added process group\n' }],
    [START, { code: 7, stdout: 'app: ERROR (spawn error)\n' }],
    [TAIL, { stdout: `${log}\n` }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, { ...APP, command: '/bin/false' });
  const current = await program.check(a, ctx);
  await t.rejects(program.apply(a, program.plan(current, a, ctx), current, ctx), {
    message: `program app is FATAL (Exited too quickly (process log may have details)); the end of its log:\n${log.split('\n').slice(5).join('\n')}`,
  });
  t.same(fake.argvs(), [STATUS, REREAD, UPDATE, STATUS, START, STATUS, TAIL]);
});

t.test('a program still in BACKOFF when its time is up fails, with its stderr log too', async (t) => {
  const backoff = line('BACKOFF', 'Exited too quickly (process log may have details)');
  const fake = fakeRunner([
    [STATUS, statuses(NO_GROUP, line('STARTING'), backoff)],
    [REREAD, {}],
    [UPDATE, {}],
    [TAIL, { stdout: 'starting\n' }],
    [['supervisorctl', 'tail', '-2000', 'app:app', 'stderr'], { stdout: 'Error: port 8000 in use\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, { ...APP, redirect_stderr: false });
  const current = await program.check(a, ctx);
  await t.rejects(program.apply(a, program.plan(current, a, ctx), current, ctx), {
    message: 'program app is BACKOFF (Exited too quickly (process log may have details)) after 0 s; the end of its log:\nstarting\nError: port 8000 in use',
  });
});

t.test('a stopped program (autostart false) is started', async (t) => {
  await writeFile(join(confDir, 'app.conf'), programConf(args(program, { ...APP, autostart: false })));
  const fake = fakeRunner([
    [STATUS, statuses(line('STOPPED', 'Not started'), line('STOPPED', 'Not started'), RUNNING)],
    [START, { stdout: 'app: started\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, { ...APP, autostart: false });
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'running', old: 'STOPPED', new: 'RUNNING' }] });
  await program.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [STATUS, STATUS, START, STATUS]);
});

t.test('a conf in place that supervisord never loaded (a run killed before update) is loaded', async (t) => {
  await writeFile(join(confDir, 'app.conf'), APP_CONF);
  const fake = fakeRunner([
    [STATUS, statuses(NO_GROUP, line('STARTING'), RUNNING)],
    [REREAD, { stdout: 'app: available\n' }],
    [UPDATE, { stdout: 'app: added process group\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'running', old: 'not loaded', new: 'RUNNING' }] });
  await program.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [STATUS, REREAD, UPDATE, STATUS, STATUS]);
});

t.test('a conf supervisord refuses is taken back and nothing is updated', async (t) => {
  await writeFile(join(confDir, 'app.conf'), APP_CONF);
  const fake = fakeRunner([
    [STATUS, RUNNING],
    [REREAD, { code: 1, stdout: "ERROR: CANT_REREAD: invalid literal for int() with base 10: 'x'\n" }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, { ...APP, priority: 5 });
  const current = await program.check(a, ctx);
  await t.rejects(program.apply(a, program.plan(current, a, ctx), current, ctx), {
    message: "`supervisorctl reread` failed:\nERROR: CANT_REREAD: invalid literal for int() with base 10: 'x'",
  });
  t.equal(await readFile(join(confDir, 'app.conf'), 'utf8'), APP_CONF, 'the old conf is back');
  t.same(fake.argvs(), [STATUS, REREAD]);
});

t.test('a conf whose environment holds a secret is private, and errors are masked', async (t) => {
  const masker = new Masker();
  masker.add('hunter2-db-password');
  const fake = fakeRunner([
    [STATUS, statuses(NO_GROUP, line('FATAL', 'Exited too quickly (process log may have details)'))],
    [REREAD, {}],
    [UPDATE, {}],
    [START, { code: 7 }],
    [TAIL, { stdout: 'connecting with hunter2-db-password failed\n' }],
  ]);
  const ctx = context(fake.runner, masker);
  const a = args(program, { ...APP, environment: { DB_PASSWORD: 'hunter2-db-password' } });
  const current = await program.check(a, ctx);
  const err = await program.apply(a, program.plan(current, a, ctx), current, ctx).catch((e: Error) => e);
  t.match(String(err), 'connecting with ******** failed');
  t.notMatch(String(err), 'hunter2');
  t.equal((await lstat(join(confDir, 'app.conf'))).mode & 0o777, 0o600);
});

t.test('without supervisor the program is planned as not loaded, and apply changes nothing', async (t) => {
  const fake = fakeRunner([
    [STATUS, () => { throw new CommandError('`supervisorctl status app:*` command not found', STATUS, undefined, ''); }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan.changes.map((c) => [c.what, c.old]), [['conf', null], ['running', 'not loaded']]);
  await t.rejects(program.apply(a, plan, current, ctx), {
    message: '`supervisorctl status app:*` command not found (is supervisor installed and running? require service: supervisor)',
  });
  t.same(await readdir(confDir), [], 'no conf written');
});

t.test('refresh restarts the program and waits for it to run', async (t) => {
  const fake = fakeRunner([
    [RESTART, { stdout: 'app: stopped\napp: started\n' }],
    [STATUS, RUNNING],
  ]);
  t.equal(await program.refresh!(args(program, APP), context(fake.runner)), 'restarted');
  t.same(fake.argvs(), [RESTART, STATUS]);
});

t.test('a run killed after writing a changed conf and before update: the next run updates', async (t) => {
  await writeFile(join(confDir, 'app.conf'), APP_CONF);
  await markPending('supervisor-app');
  const fake = fakeRunner([
    [STATUS, statuses(RUNNING, RUNNING, RUNNING)],
    [REREAD, { stdout: 'app: changed\n' }],
    [UPDATE, { stdout: 'app: stopped\napp: updated process group\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  t.same(plan.changes, [{ what: 'update', old: 'interrupted', new: 'reread and updated' }], 'the conf is as wanted, but supervisord never took it');
  t.equal(await program.apply(a, plan, current, ctx), 'restarted');
  t.ok(fake.argvs().some((argv) => argv.join(' ') === REREAD.join(' ')), 'reread');
  t.ok(fake.argvs().some((argv) => argv.join(' ') === UPDATE.join(' ')), 'update');
  t.same(program.plan(await program.check(a, ctx), a, ctx).changes, [], 'and the marker is gone');
});

t.test('supervisord started a moment ago, its socket not there yet: apply waits for it', async (t) => {
  supervisorTiming.socketWaitMs = 1000;
  supervisorTiming.pollMs = 10;
  let asked = 0;
  const fake = fakeRunner([
    [STATUS, () => (++asked <= 2 ? { code: 4, stdout: 'unix:///var/run/supervisor.sock no such file\n' } : RUNNING)],
    [REREAD, { stdout: 'app: available\n' }],
    [UPDATE, { stdout: 'app: added process group\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(program, APP);
  const current = await program.check(a, ctx);
  const plan = program.plan(current, a, ctx);
  await program.apply(a, plan, current, ctx);
  t.ok(asked >= 3, 'asked again until supervisord answered');
  t.ok(fake.argvs().some((argv) => argv.join(' ') === UPDATE.join(' ')), 'then the program was added');
});
