import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { lstat, readFile, readlink, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker } from '../../../agent/secret.js';
import { nginxModule, nginxPaths } from '../../../agent/modules/nginx.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { fakeRunner, type Answer } from '../fake-runner.js';
import { markPending, pendingPaths } from '../../../agent/atomic.js';


function context(runner: Runner, masker = new Masker()): Context {
  return {
    runner,
    facts: new Facts(),
    masker,
    statesDir: '/srv/states',
    pillar: {},
    env: 'test',
    renderTemplate: (path, ctx) => `# ${path}\nserver { listen ${String(ctx?.port)}; }\n`,
  };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { site, site_disabled: siteDisabled } = nginxModule.functions as Record<string, StateFunction>;

const NGINX_T = ['nginx', '-t'];
const IS_ACTIVE = ['systemctl', 'is-active', 'nginx.service'];
const RELOAD = ['systemctl', 'reload', 'nginx.service'];
const OK = 'nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\nnginx: configuration file /etc/nginx/nginx.conf test is successful\n';
const REFUSED = [
  '2026/01/01 10:00:00 [emerg] 42#42: unknown directive "bogus_directive" in /etc/nginx/sites-enabled/app:3',
  'nginx: configuration file /etc/nginx/nginx.conf test failed',
].join('\n');

let available = '';
let enabled = '';

t.beforeEach((t) => {
  const dir = t.testdir({ 'sites-available': { default: 'server { listen 80 default_server; }\n' }, 'sites-enabled': {} });
  available = nginxPaths.available = join(dir, 'sites-available');
  enabled = nginxPaths.enabled = join(dir, 'sites-enabled');
  pendingPaths.dir = join(dir, 'pending');
});

/** nginx with a given answer to `nginx -t`, that records which content of `app` each test saw. */
function nginx(test: { code: number; stderr: string }, active = 'active') {
  const seen: (string | null)[] = [];
  const fake = fakeRunner([
    [NGINX_T, async () => {
      seen.push(await readFile(join(enabled, 'app'), 'utf8').catch(() => null));
      return test;
    }],
    [IS_ACTIVE, { stdout: `${active}\n`, code: active === 'active' ? 0 : 3 }],
    [RELOAD, {}],
  ]);
  return { ...fake, seen };
}

async function converge(fn: StateFunction, a: unknown, ctx: Context) {
  const current = await fn.check(a, ctx);
  const plan = fn.plan(current, a, ctx);
  if (plan.changes.length) await fn.apply(a, plan, current, ctx);
  return plan;
}

const exists = (path: string) => lstat(path).then(() => true, () => false);

t.test('a new site is written, linked, tested with the whole config, and nginx reloaded', async (t) => {
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'server {\n  listen 127.0.0.1:8080;\n}\n' });
  const current = await site.check(a, ctx);
  const plan = site.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      {
        what: 'file',
        old: null,
        new: 'created',
        diff: [`--- ${available}/app`, `+++ ${available}/app`, '@@ -0,0 +1,3 @@', '+server {', '+  listen 127.0.0.1:8080;', '+}'].join('\n'),
      },
      { what: 'enabled', old: false, new: true },
    ],
  });
  t.same(fake.argvs(), [], 'check runs no command');
  await site.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [NGINX_T, IS_ACTIVE, RELOAD]);
  t.same(fake.seen, ['server {\n  listen 127.0.0.1:8080;\n}\n'], 'nginx -t read the new site through its link');
  t.equal(await readlink(join(enabled, 'app')), join(available, 'app'));
  t.equal((await lstat(join(available, 'app'))).mode & 0o777, 0o644);
  t.same((await readdir(available)).sort(), ['app', 'default'], 'no temp file is left');

  fake.calls.length = 0;
  t.same(site.plan(await site.check(a, ctx), a, ctx), { changes: [], reason: 'site app is in place and enabled' });
  t.same(fake.argvs(), [], 'an unchanged site runs nothing: no test, no reload');
});

t.test('a template is rendered with its context', async (t) => {
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', source: 'templates/app.conf.j2', template: 'jinja', context: { port: 8081 } });
  await converge(site, a, ctx);
  t.equal(await readFile(join(available, 'app'), 'utf8'), '# templates/app.conf.j2\nserver { listen 8081; }\n');
});

t.test('a changed site that fails nginx -t is put back, nginx is not reloaded, and the state fails', async (t) => {
  await writeFile(join(available, 'app'), 'server { listen 127.0.0.1:8080; }\n', { mode: 0o640 });
  await symlink(join(available, 'app'), join(enabled, 'app'));
  const fake = nginx({ code: 1, stderr: `${REFUSED}\n` });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'server { listen 127.0.0.1:8080; bogus_directive on; }\n' });
  const current = await site.check(a, ctx);
  const plan = site.plan(current, a, ctx);
  t.same(plan.changes.map((c) => c.what), ['content']);
  await t.rejects(site.apply(a, plan, current, ctx), {
    message: `nginx -t failed; the old site app is back in place and nginx still runs it:\n${REFUSED}`,
  });
  t.same(fake.seen, ['server { listen 127.0.0.1:8080; bogus_directive on; }\n'], 'the new content was what nginx -t tested');
  t.same(fake.argvs(), [NGINX_T], 'no reload');
  t.equal(await readFile(join(available, 'app'), 'utf8'), 'server { listen 127.0.0.1:8080; }\n', 'the old content is back');
  t.equal((await lstat(join(available, 'app'))).mode & 0o777, 0o640, 'with its mode');
  t.equal(await readlink(join(enabled, 'app')), join(available, 'app'), 'still enabled');
  t.same((await readdir(available)).sort(), ['app', 'default']);
});

t.test('a new site that fails nginx -t leaves no file and no link', async (t) => {
  const fake = nginx({ code: 1, stderr: `${REFUSED}\n` });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'bogus_directive on;\n' });
  const current = await site.check(a, ctx);
  await t.rejects(site.apply(a, site.plan(current, a, ctx), current, ctx), {
    message: `nginx -t failed; site app was not installed:\n${REFUSED}`,
  });
  t.same(fake.seen, ['bogus_directive on;\n']);
  t.same(fake.argvs(), [NGINX_T]);
  t.notOk(await exists(join(available, 'app')), 'no file');
  t.notOk(await exists(join(enabled, 'app')), 'no link');
  t.same(await readdir(enabled), [], 'no temp link either');
});

t.test('nginx that is not running is not reloaded (service.running starts it)', async (t) => {
  const fake = nginx({ code: 0, stderr: OK }, 'inactive');
  const ctx = context(fake.runner);
  await converge(site, args(site, { name: 'app', contents: 'server {}\n' }), ctx);
  t.same(fake.argvs(), [NGINX_T, IS_ACTIVE]);
});

t.test('a link written relative to sites-enabled counts as enabled', async (t) => {
  await writeFile(join(available, 'app'), 'server {}\n');
  await symlink('../sites-available/app', join(enabled, 'app'));
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'server {}\n' });
  t.same(site.plan(await site.check(a, ctx), a, ctx), { changes: [], reason: 'site app is in place and enabled' });
});

t.test('enabled: false removes the link, keeps the file, tests and reloads', async (t) => {
  await writeFile(join(available, 'app'), 'server {}\n');
  await symlink(join(available, 'app'), join(enabled, 'app'));
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'server {}\n', enabled: false });
  const plan = await converge(site, a, ctx);
  t.same(plan, { changes: [{ what: 'enabled', old: true, new: false }] });
  t.same(fake.argvs(), [NGINX_T, IS_ACTIVE, RELOAD]);
  t.notOk(await exists(join(enabled, 'app')));
  t.equal(await readFile(join(available, 'app'), 'utf8'), 'server {}\n');
  t.same(site.plan(await site.check(a, ctx), a, ctx), { changes: [], reason: 'site app is in place and disabled' });
});

t.test('a disabled site whose file changes is written without a test or reload', async (t) => {
  await writeFile(join(available, 'app'), 'old\n');
  const fake = nginx({ code: 1, stderr: REFUSED });
  const ctx = context(fake.runner);
  const plan = await converge(site, args(site, { name: 'app', contents: 'new\n', enabled: false }), ctx);
  t.same(plan.changes.map((c) => c.what), ['content']);
  t.same(fake.argvs(), []);
  t.equal(await readFile(join(available, 'app'), 'utf8'), 'new\n');
});

t.test('a site holding a secret is not world-readable', async (t) => {
  const masker = new Masker();
  masker.add('s3cret-htpasswd-token');
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner, masker);
  await converge(site, args(site, { name: 'app', contents: 'proxy_set_header X-Token s3cret-htpasswd-token;\n' }), ctx);
  t.equal((await lstat(join(available, 'app'))).mode & 0o777, 0o600);
});

t.test('nginx.site_disabled removes the default site link, tests and reloads', async (t) => {
  await symlink(join(available, 'default'), join(enabled, 'default'));
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(siteDisabled, { name: 'default' });
  const plan = await converge(siteDisabled, a, ctx);
  t.same(plan, { changes: [{ what: 'enabled', old: true, new: false }] });
  t.same(fake.argvs(), [NGINX_T, IS_ACTIVE, RELOAD]);
  t.notOk(await exists(join(enabled, 'default')));
  t.ok(await exists(join(available, 'default')), "the package's file stays");
  t.same(siteDisabled.plan(await siteDisabled.check(a, ctx), a, ctx), { changes: [], reason: 'site default is not enabled' });
});

t.test('nginx.site_disabled puts the link back when nginx -t fails without it', async (t) => {
  await symlink(join(available, 'default'), join(enabled, 'default'));
  const fake = nginx({ code: 1, stderr: 'nginx: [emerg] no "events" section in configuration\n' });
  const ctx = context(fake.runner);
  const a = args(siteDisabled, { name: 'default' });
  await t.rejects(converge(siteDisabled, a, ctx), {
    message: 'nginx -t failed; site default is enabled again:\nnginx: [emerg] no "events" section in configuration',
  });
  t.equal(await readlink(join(enabled, 'default')), join(available, 'default'));
  t.same(fake.argvs(), [NGINX_T]);
});

t.test('refresh tests the config and reloads; a failing test reloads nothing', async (t) => {
  const good = nginx({ code: 0, stderr: OK });
  t.equal(await site.refresh!(args(site, { name: 'app', contents: '' }), context(good.runner)), 'reloaded');
  t.same(good.argvs(), [NGINX_T, IS_ACTIVE, RELOAD]);

  const bad = nginx({ code: 1, stderr: REFUSED });
  await t.rejects(site.refresh!(args(site, { name: 'app', contents: '' }), context(bad.runner)), {
    message: `nginx -t failed; nginx was not reloaded:\n${REFUSED}`,
  });
  t.same(bad.argvs(), [NGINX_T]);
});

t.test('arguments: one of contents and source, a plain site name', async (t) => {
  t.same(site.validate!(args(site, { name: 'app' })), [
    { key: 'source', message: 'a site needs its configuration: give source (a file or template) or contents' },
  ]);
  t.same(site.validate!(args(site, { name: 'app', contents: 'x', source: 'y' })), [{ key: 'contents', message: 'give either contents or source, not both' }]);
  t.same(site.validate!(args(site, { name: 'app', contents: 'x', template: 'jinja' })), [{ key: 'template', message: 'template needs a source file' }]);
  t.notOk(Value.Check(site.schema, { name: '../../passwd', contents: '', enabled: true }), 'no path in a site name');
  t.notOk(Value.Check(site.schema, { name: '.hidden', contents: '', enabled: true }));
  t.ok(Value.Check(site.schema, { name: 'example.com', contents: '', enabled: true }));
});

t.test('a run killed between writing the site and reloading nginx: the next run tests and reloads', async (t) => {
  const fake = nginx({ code: 0, stderr: OK });
  const ctx = context(fake.runner);
  const a = args(site, { name: 'app', contents: 'server { listen 8080; }\n' });
  await converge(site, a, ctx);
  t.same(site.plan(await site.check(a, ctx), a, ctx).changes, [], 'converged');
  // Killed in between: the file is as wanted, the marker is still there.
  await markPending('nginx-site-app');
  const current = await site.check(a, ctx);
  const plan = site.plan(current, a, ctx);
  t.same(plan.changes, [{ what: 'reload', old: 'interrupted', new: 'tested and reloaded' }]);
  fake.calls.length = 0;
  t.match(await site.apply(a, plan, current, ctx), { restarted: true, changes: [{ what: 'reload' }, { what: 'nginx', new: 'nginx -t passed, nginx reloaded' }] }, 'and says it tested and reloaded');
  t.same(fake.argvs(), [NGINX_T, IS_ACTIVE, RELOAD]);
  t.same(site.plan(await site.check(a, ctx), a, ctx).changes, [], 'and the marker is gone');
});
