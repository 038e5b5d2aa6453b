import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker } from '../../../agent/secret.js';
import { parseShow, serviceModule, unitName } from '../../../agent/modules/service.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { fakeRunner, type Answer } from '../fake-runner.js';


function context(runner: Runner): Context {
  return { runner, facts: new Facts(), masker: new Masker(), statesDir: '/srv/states', pillar: {},
    env: 'test',
    renderTemplate: () => { throw new Error('no templates'); } };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { running, dead, enabled } = serviceModule.functions as Record<string, StateFunction>;

const SHOW = ['systemctl', 'show', '--property=Id,ActiveState,UnitFileState,LoadState'];
const NEED_RELOAD = ['systemctl', 'show', '--property=NeedDaemonReload', '--value'];

const UNITS = `nginx.service loaded active running A high performance web server and a reverse proxy server
ssh.service loaded active running OpenBSD Secure Shell server
cron.service loaded inactive dead Regular background program processing daemon
getty@tty1.service loaded active running Getty on tty1
apache2.service not-found inactive dead apache2.service
fstrim.timer loaded inactive dead Discard unused blocks once a week
● postgresql@15-main.service loaded failed failed PostgreSQL Cluster 15-main
`;
const UNIT_FILES = `nginx.service enabled enabled
ssh.service enabled enabled
sshd.service alias -
cron.service disabled enabled
getty@.service enabled enabled
fstrim.timer disabled enabled
redis-server.service enabled enabled
systemd-journald.service static -
supervisor.service masked enabled
`;

function show(props: Record<string, string>): Partial<RunResult> {
  return { stdout: Object.entries(props).map(([k, v]) => `${k}=${v}\n`).join('') };
}

/** What `systemctl show` says of a unit on this fake system (the tables above, as systemd has them). */
function showFromTables(argv: string[]): Partial<RunResult> {
  const unit = argv.at(-1)!;
  const loaded = UNITS.split('\n').map((l) => l.replace(/^[●*]\s*/, '').trim().split(/\s+/)).find(([name]) => name === unit);
  const file = UNIT_FILES.split('\n').map((l) => l.trim().split(/\s+/)).find(([name]) => name === unit);
  if (!loaded && !file) return show({ Id: unit, ActiveState: 'inactive', UnitFileState: '', LoadState: 'not-found' });
  return show({ Id: unit, ActiveState: loaded?.[2] ?? 'inactive', UnitFileState: file?.[1] ?? '', LoadState: loaded?.[1] ?? 'loaded' });
}

/** `systemctl show` of a unit by the tables, unless `extra` answers first. */
function systemd(extra: [string[], Answer][] = []) {
  return fakeRunner([
    ...extra,
    [SHOW, showFromTables],
    [NEED_RELOAD, { stdout: 'no\n' }],
    [['journalctl'], { stdout: '' }],
  ]);
}

t.test('unit names without a suffix mean .service', async (t) => {
  t.equal(unitName('nginx'), 'nginx.service');
  t.equal(unitName('php8.2-fpm'), 'php8.2-fpm.service');
  t.equal(unitName('fstrim.timer'), 'fstrim.timer');
  t.equal(unitName('nginx.service'), 'nginx.service');
});

t.test('systemctl show output is parsed into properties', async (t) => {
  t.same(parseShow('Id=nginx.service\nActiveState=active\nUnitFileState=enabled\nDescription=a=b\n'), {
    Id: 'nginx.service',
    ActiveState: 'active',
    UnitFileState: 'enabled',
    Description: 'a=b',
  });
});

t.test('an active, enabled service plans nothing; each unit is read with one systemctl show', async (t) => {
  const fake = systemd();
  const ctx = context(fake.runner);
  const nginx = args(running, { name: 'nginx', enable: true });
  const ssh = args(running, { name: 'ssh.service' });
  t.same(running.plan(await running.check(nginx, ctx), nginx, ctx), { changes: [], reason: 'nginx.service is active, enabled' });
  t.same(running.plan(await running.check(ssh, ctx), ssh, ctx), { changes: [], reason: 'ssh.service is active, enabled' });
  t.same(fake.argvs(), [[...SHOW, 'nginx.service'], [...SHOW, 'ssh.service']]);
});

t.test('a stopped, disabled service is started, checked and enabled', async (t) => {
  let started = false;
  const fake = systemd([
    [['systemctl', 'start'], () => ((started = true), {})],
    [SHOW, () => show({ Id: 'cron.service', ActiveState: started ? 'active' : 'inactive', UnitFileState: 'disabled', LoadState: 'loaded' })],
    [['systemctl', 'enable'], {}],
  ]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'cron', enable: true });
  const current = await running.check(a, ctx);
  const plan = running.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'active', old: 'inactive', new: 'active' },
      { what: 'enabled', old: 'disabled', new: 'enabled' },
    ],
  });
  fake.calls.length = 0;
  await running.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [
    [...NEED_RELOAD, 'cron.service'],
    ['systemctl', 'start', 'cron.service'],
    [...SHOW, 'cron.service'],
    ['systemctl', 'enable', 'cron.service'],
  ]);

  // The check after apply reads the unit again, right then.
  fake.calls.length = 0;
  await running.check(a, ctx);
  t.same(fake.argvs(), [[...SHOW, 'cron.service']]);
});

t.test('enable: false disables an enabled, running service without stopping it', async (t) => {
  const fake = systemd([[['systemctl', 'disable'], {}]]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'nginx', enable: false });
  const current = await running.check(a, ctx);
  const plan = running.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'enabled', old: 'enabled', new: 'disabled' }] });
  fake.calls.length = 0;
  await running.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [['systemctl', 'disable', 'nginx.service']]);
});

t.test('a unit with a unit file that is not loaded is inactive', async (t) => {
  const fake = systemd();
  const ctx = context(fake.runner);
  const a = args(running, { name: 'redis-server' });
  const current = await running.check(a, ctx);
  t.same(current, { unit: 'redis-server.service', exists: true, active: 'inactive', enabled: 'enabled' });
  t.same(running.plan(current, a, ctx), { changes: [{ what: 'active', old: 'inactive', new: 'active' }] });
});

t.test('a unit just installed is read with systemctl show like any other', async (t) => {
  const fake = systemd([[SHOW, show({ Id: 'postgresql.service', ActiveState: 'active', UnitFileState: 'enabled', LoadState: 'loaded' })]]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'postgresql', enable: true });
  t.same(running.plan(await running.check(a, ctx), a, ctx), { changes: [], reason: 'postgresql.service is active, enabled' });
  t.same(fake.argvs(), [[...SHOW, 'postgresql.service']]);
});

t.test('an alias is read with systemctl show, which answers for its target', async (t) => {
  const fake = systemd([[SHOW, show({ Id: 'ssh.service', ActiveState: 'active', UnitFileState: 'enabled', LoadState: 'loaded' })]]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'sshd' });
  t.same(running.plan(await running.check(a, ctx), a, ctx), { changes: [], reason: 'sshd.service is active, enabled' });
  t.same(fake.argvs().at(-1), [...SHOW, 'sshd.service']);
});

t.test('a unit that does not exist plans a start, and apply fails with a clear message', async (t) => {
  const fake = systemd([[SHOW, show({ Id: 'nope.service', ActiveState: 'inactive', UnitFileState: '', LoadState: 'not-found' })]]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'nope', enable: true });
  const current = await running.check(a, ctx);
  const plan = running.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'active', old: 'inactive', new: 'active' },
      { what: 'enabled', old: 'disabled', new: 'enabled' },
    ],
  });
  await t.rejects(running.apply(a, plan, current, ctx), { message: 'unit nope.service does not exist (is its package installed?)' });
  t.notOk(fake.argvs().some((argv) => argv[1] === 'start'), 'nothing was started');
});

t.test('a service that fails at start fails the state with the end of its journal', async (t) => {
  const fake = systemd([
    [['systemctl', 'start'], { code: 1, stderr: 'Job for cron.service failed because the control process exited with error code.\n' }],
    [SHOW, show({ Id: 'cron.service', ActiveState: 'failed', UnitFileState: 'disabled', LoadState: 'loaded' })],
    [['journalctl'], { stdout: 'Jan 01 cron[42]: bad crontab line\nJan 01 systemd[1]: cron.service: Failed with result exit-code.\n' }],
  ]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'cron', enable: true });
  const current = await running.check(a, ctx);
  await t.rejects(running.apply(a, running.plan(current, a, ctx), current, ctx), {
    message: [
      'cron.service did not start: `systemctl start cron.service` exited 1',
      'Job for cron.service failed because the control process exited with error code.',
      'Jan 01 cron[42]: bad crontab line',
      'Jan 01 systemd[1]: cron.service: Failed with result exit-code.',
    ].join('\n'),
  });
  t.same(fake.argvs().at(-1), ['journalctl', '-u', 'cron.service', '-n', '10', '--no-pager']);
  t.notOk(fake.argvs().some((argv) => argv[1] === 'enable'), 'a unit that cannot start is not enabled');
});

t.test('a service that dies right after a successful start fails the state', async (t) => {
  const fake = systemd([
    [['systemctl', 'start'], {}],
    [SHOW, show({ Id: 'cron.service', ActiveState: 'activating', UnitFileState: 'disabled', LoadState: 'loaded' })],
  ]);
  const ctx = context(fake.runner);
  const a = args(running, { name: 'cron' });
  const current = await running.check(a, ctx);
  await t.rejects(running.apply(a, running.plan(current, a, ctx), current, ctx), {
    message: 'cron.service did not start: it is activating after `systemctl start cron.service`',
  });
});

t.test('a masked unit is not started: the error says to unmask it', async (t) => {
  const fake = systemd();
  const ctx = context(fake.runner);
  const a = args(running, { name: 'supervisor' });
  const current = await running.check(a, ctx);
  t.same(running.plan(current, a, ctx), { changes: [{ what: 'active', old: 'inactive', new: 'active' }] });
  await t.rejects(running.apply(a, running.plan(current, a, ctx), current, ctx), {
    message: 'supervisor.service is masked; unmask it first (systemctl unmask supervisor.service)',
  });
});

t.test('refresh restarts the service and checks it is active', async (t) => {
  const fake = systemd([
    [['systemctl', 'restart'], {}],
    [SHOW, show({ Id: 'nginx.service', ActiveState: 'active', UnitFileState: 'enabled', LoadState: 'loaded' })],
  ]);
  const ctx = context(fake.runner);
  t.equal(await running.refresh!(args(running, { name: 'nginx' }), ctx), 'restarted');
  t.same(fake.argvs(), [[...NEED_RELOAD, 'nginx.service'], ['systemctl', 'restart', 'nginx.service'], [...SHOW, 'nginx.service']]);
});

t.test('refresh reloads instead when reload: true', async (t) => {
  const fake = systemd([
    [['systemctl', 'reload'], {}],
    [SHOW, show({ Id: 'nginx.service', ActiveState: 'active', UnitFileState: 'enabled', LoadState: 'loaded' })],
  ]);
  const ctx = context(fake.runner);
  t.equal(await running.refresh!(args(running, { name: 'nginx', reload: true }), ctx), 'reloaded');
  t.same(fake.argvs(), [[...NEED_RELOAD, 'nginx.service'], ['systemctl', 'reload', 'nginx.service'], [...SHOW, 'nginx.service']]);
});

t.test('a unit file changed on disk is daemon-reloaded before the restart', async (t) => {
  const fake = systemd([
    [NEED_RELOAD, { stdout: 'yes\n' }],
    [['systemctl', 'daemon-reload'], {}],
    [['systemctl', 'restart'], {}],
    [SHOW, show({ Id: 'app.service', ActiveState: 'active', UnitFileState: 'enabled', LoadState: 'loaded' })],
  ]);
  const ctx = context(fake.runner);
  t.equal(await running.refresh!(args(running, { name: 'app' }), ctx), 'restarted');
  t.same(fake.argvs(), [
    [...NEED_RELOAD, 'app.service'],
    ['systemctl', 'daemon-reload'],
    ['systemctl', 'restart', 'app.service'],
    [...SHOW, 'app.service'],
  ]);
});

t.test('a restart that leaves the service failed fails the refresh', async (t) => {
  const fake = systemd([
    [['systemctl', 'restart'], { code: 1, stderr: 'Job for nginx.service failed.\n' }],
    [SHOW, show({ Id: 'nginx.service', ActiveState: 'failed', UnitFileState: 'enabled', LoadState: 'loaded' })],
    [['journalctl'], { stdout: 'nginx: [emerg] unknown directive "lisen"\n' }],
  ]);
  const ctx = context(fake.runner);
  await t.rejects(running.refresh!(args(running, { name: 'nginx' }), ctx), {
    message: 'nginx.service did not start: `systemctl restart nginx.service` exited 1\nJob for nginx.service failed.\nnginx: [emerg] unknown directive "lisen"',
  });
});

t.test('service.dead stops and disables a running, enabled service', async (t) => {
  const fake = systemd([[['systemctl', 'stop'], {}], [['systemctl', 'disable'], {}]]);
  const ctx = context(fake.runner);
  const a = args(dead, { name: 'nginx', enable: false });
  const current = await dead.check(a, ctx);
  const plan = dead.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'active', old: 'active', new: 'inactive' },
      { what: 'enabled', old: 'enabled', new: 'disabled' },
    ],
  });
  fake.calls.length = 0;
  await dead.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [['systemctl', 'stop', 'nginx.service'], ['systemctl', 'disable', 'nginx.service']]);
});

t.test('service.dead of a failed or missing unit plans nothing', async (t) => {
  const fake = systemd([[SHOW, show({ Id: 'apache2.service', ActiveState: 'inactive', UnitFileState: '', LoadState: 'not-found' })]]);
  const ctx = context(fake.runner);
  const failed = args(dead, { name: 'postgresql@15-main' });
  const missing = args(dead, { name: 'apache2' });
  // postgresql@15-main is an instance: no line of its own in list-unit-files, so it is shown.
  fake.script.unshift([
    [...SHOW, 'postgresql@15-main.service'],
    show({ Id: 'postgresql@15-main.service', ActiveState: 'failed', UnitFileState: 'enabled-runtime', LoadState: 'loaded' }),
  ]);
  t.same(dead.plan(await dead.check(failed, ctx), failed, ctx), { changes: [], reason: 'postgresql@15-main.service is failed, enabled-runtime' });
  t.same(dead.plan(await dead.check(missing, ctx), missing, ctx), { changes: [], reason: 'apache2.service does not exist' });
});

t.test('service.enabled enables a disabled unit; static and enabled units need nothing', async (t) => {
  const fake = systemd([[['systemctl', 'enable'], {}]]);
  const ctx = context(fake.runner);
  const timer = args(enabled, { name: 'fstrim.timer' });
  const current = await enabled.check(timer, ctx);
  const plan = enabled.plan(current, timer, ctx);
  t.same(plan, { changes: [{ what: 'enabled', old: 'disabled', new: 'enabled' }] });
  await enabled.apply(timer, plan, current, ctx);
  t.same(fake.argvs().at(-1), ['systemctl', 'enable', 'fstrim.timer']);

  const journald = args(enabled, { name: 'systemd-journald' });
  t.same(enabled.plan(await enabled.check(journald, ctx), journald, ctx), { changes: [], reason: 'systemd-journald.service is inactive, static' });
});

t.test('a unit name that looks like an option is refused by the schema', async (t) => {
  t.notOk(Value.Check(running.schema, { name: '--now', reload: false }));
  t.ok(Value.Check(running.schema, { name: 'getty@tty1.service', reload: false }));
});
