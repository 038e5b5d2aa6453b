// nginx.site and supervisor.program on a real booted Debian 12 server: a site serves its page, a
// broken site is refused by nginx -t and the old one keeps serving, a change is reloaded; a
// program runs and answers, a changed conf or a watched file restarts it (once), and a program
// that dies at start fails its state with its own log lines.
//
// Servers share the host's network: nginx must never listen on port 80 (Debian's default site),
// so the packages are installed with a policy-rc.d that keeps their services from starting, and
// the states disable the default site before service.running starts nginx. Every port is free
// on the host when the test picks it.
import t from 'tap';
import { createServer } from 'node:net';
import type { TestServer } from '../server/server.js';
import { applyJson, bootWithAgent, byId, changesById, stage, type JsonRun } from './brine.js';

const ROOT = '/srv/web-test';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function installPackages(server: TestServer): Promise<void> {
  await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
  const install = () => server.exec(['apt-get', 'install', '-y', '-q', 'nginx-light', 'supervisor', 'curl'], { timeoutMs: 600_000 });
  await install().catch(async () => {
    await server.exec(['apt-get', 'update', '-q'], { timeoutMs: 300_000 });
    await install();
  });
  await server.exec(['rm', '/usr/sbin/policy-rc.d']);
}

interface Options {
  site: string;
  greeting: string;
  stopwaitsecs?: number;
  crasher?: boolean;
}

function tree(ports: { web: number; app: number }, o: Options): Record<string, string> {
  const crasher = `
crasher:
  supervisor.program:
    - command: [/bin/sh, -c, 'echo crasher starting; echo "crasher: cannot open /etc/crasher.conf" >&2; exit 3']
    - startsecs: 1
    - require:
      - service: supervisor
`;
  return {
    'states/top.yaml': "'*':\n  - web\n",
    'states/templates/site.conf.j2': o.site,
    'states/web.yaml': `
/srv/www/index.html:
  file.managed:
    - contents: "hello from nginx\\n"
    - makedirs: true
/srv/www2/index.html:
  file.managed:
    - contents: "version 2\\n"
    - makedirs: true
nginx-default-site:
  nginx.site_disabled:
    - name: default
web:
  nginx.site:
    - source: templates/site.conf.j2
    - template: jinja
    - context:
        port: ${ports.web}
nginx:
  service.running:
    - enable: true
    - require:
      - nginx: web
      - nginx: nginx-default-site
supervisor:
  service.running:
    - enable: true
/srv/static/index.html:
  file.managed:
    - contents: "hello from python\\n"
    - makedirs: true
/srv/static/app.env:
  file.managed:
    - contents: "GREETING='${o.greeting}'\\n"
static:
  supervisor.program:
    - command: [/usr/bin/python3, -m, http.server, '${ports.app}', --bind, 127.0.0.1]
    - directory: /srv/static
    - env_file: /srv/static/app.env
${o.stopwaitsecs === undefined ? '' : `    - stopwaitsecs: ${o.stopwaitsecs}\n`}    - require:
      - service: supervisor
      - file: /srv/static/index.html
    - watch:
      - file: /srv/static/app.env
${o.crasher ? crasher : ''}`,
    'pillar/common.yaml': 'app: {}\n',
    'pillar/test/web.yaml': 'web: {}\n',
  };
}

const site = (root: string, extra = '') => `server {
    listen 127.0.0.1:{{ port }};
    root ${root};${extra}
}
`;

t.test('nginx.site and supervisor.program converge, refuse what is broken, restart on change', async (t) => {
  const started = Date.now();
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  await installPackages(server);
  const ports = { web: await freePort(), app: await freePort() };
  t.comment(`server booted and packages installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const sh = async (cmd: string) => (await server.exec(['sh', '-c', cmd], { allowFailure: true })).stdout.trim();
  const curl = (port: number) => sh(`curl -s --max-time 5 http://127.0.0.1:${port}/`);
  /** What the page says once it says `want` (a reload is asynchronous), or what it said last. */
  const page = async (port: number, want: string) => {
    let got = '';
    for (let i = 0; i < 40 && got !== want; i++) {
      got = await curl(port);
      if (got !== want) await sleep(100);
    }
    return got;
  };
  const pid = async () => /pid (\d+)/.exec(await sh('supervisorctl status static'))?.[1];
  const spawns = async () => Number(await sh("grep -c \"spawned: 'static'\" /var/log/supervisor/supervisord.log"));
  const apply = async (o: Options): Promise<JsonRun> => {
    await stage(server, ROOT, tree(ports, o));
    const t0 = Date.now();
    const run = await applyJson(server, ROOT);
    const slow = run.states.filter((s) => s.durationMs >= 500).map((s) => `${s.id} ${(s.durationMs / 1000).toFixed(1)} s`);
    t.comment(`apply took ${((Date.now() - t0) / 1000).toFixed(1)} s${slow.length ? ` (${slow.join(', ')})` : ''}`);
    return run;
  };
  const base: Options = { site: site('/srv/www'), greeting: 'hi there' };

  await t.test('--test predicts, changes nothing', async (t) => {
    await stage(server, ROOT, tree(ports, base));
    const predicted = await applyJson(server, ROOT, ['--test']);
    t.equal(predicted.code, 0, predicted.output);
    t.equal(predicted.summary.failed, 0);
    t.same(byId(predicted.states, 'web').changes.map((c) => c.what), ['file', 'enabled']);
    t.equal(await sh('test -e /etc/nginx/sites-available/web || echo absent'), 'absent');
    t.equal(await sh('readlink /etc/nginx/sites-enabled/default'), '/etc/nginx/sites-available/default');
  });

  await t.test('the first apply serves the site and runs the program; the second changes nothing', async (t) => {
    const first = await apply(base);
    t.equal(first.code, 0, first.output);
    for (const id of ['nginx-default-site', 'web', 'nginx', 'supervisor', 'static']) t.equal(byId(first.states, id).status, 'changed', `${id} changed`);
    t.equal(await page(ports.web, 'hello from nginx'), 'hello from nginx', 'nginx serves the site');
    t.equal(await sh('test -e /etc/nginx/sites-enabled/default || echo gone'), 'gone', 'the default site is disabled');
    t.equal(await sh('ss -Htlnp "sport = :80" | grep -c nginx'), '0', 'nginx does not listen on port 80');
    t.equal(await page(ports.app, 'hello from python'), 'hello from python', 'the program answers');
    t.match(await server.readFile('/etc/supervisor/conf.d/static.conf'), /^; managed by brine\n\[program:static\]\n/);
    t.equal(await sh(`tr '\\0' '\\n' < /proc/${await pid()}/environ | grep ^GREETING=`), 'GREETING=hi there', 'the program has the env file');

    const second = await apply(base);
    t.equal(second.code, 0);
    t.equal(second.summary.changed, 0, `nothing changes: ${JSON.stringify(changesById(second.states))}`);
  });

  await t.test('a broken site fails nginx -t: the old file stays and nginx keeps serving', async (t) => {
    const before = await server.readFile('/etc/nginx/sites-available/web');
    const run = await apply({ ...base, site: site('/srv/www', '\n    bogus_directive on;') });
    t.equal(run.code, 2, 'a failed state exits 2');
    const web = byId(run.states, 'web');
    t.equal(web.status, 'failed');
    t.match(web.comment, /^nginx -t failed; the old site web is back in place and nginx still runs it:\n/);
    t.match(web.comment, /unknown directive "bogus_directive" in \/etc\/nginx\/sites-enabled\/web:4/);
    t.equal(await server.readFile('/etc/nginx/sites-available/web'), before, 'the old file is back');
    t.equal(await sh('ls -A /etc/nginx/sites-available /etc/nginx/sites-enabled | grep -c brine'), '0', 'no temp file left');
    t.equal(await sh('nginx -t 2>&1 | tail -1'), 'nginx: configuration file /etc/nginx/nginx.conf test is successful');
    t.equal(await curl(ports.web), 'hello from nginx', 'nginx still serves the old page');
  });

  await t.test('a changed site is reloaded', async (t) => {
    const run = await apply({ ...base, site: site('/srv/www2') });
    t.equal(run.code, 0, run.output);
    t.same(byId(run.states, 'web').changes.map((c) => c.what), ['content', 'nginx']);
    t.equal(byId(run.states, 'web').changes[1]!.new, 'nginx -t passed, nginx reloaded', 'the report says it tested and reloaded');
    t.equal(byId(run.states, 'nginx').status, 'ok', 'the site reloaded nginx itself');
    t.equal(await page(ports.web, 'version 2'), 'version 2', 'nginx serves the new site');
  });

  const v2: Options = { ...base, site: site('/srv/www2') };

  await t.test("a changed conf restarts the program", async (t) => {
    const pidBefore = await pid();
    const run = await apply({ ...v2, stopwaitsecs: 5 });
    t.equal(run.code, 0, run.output);
    t.same(byId(run.states, 'static').changes.map((c) => c.what), ['conf']);
    t.not(await pid(), pidBefore, 'a new process');
    t.equal(await page(ports.app, 'hello from python'), 'hello from python', 'it answers again');
  });

  await t.test('a watched file restarts the program once', async (t) => {
    const pidBefore = await pid();
    const spawnsBefore = await spawns();
    const run = await apply({ ...v2, stopwaitsecs: 5, greeting: 'hello again' });
    t.equal(run.code, 0, run.output);
    const state = byId(run.states, 'static');
    t.equal(state.status, 'changed');
    t.same(state.changes.map((c) => c.what), ['restarted']);
    t.not(await pid(), pidBefore, 'a new process');
    t.equal(await spawns(), spawnsBefore + 1, 'started exactly once');
    t.equal(await sh(`tr '\\0' '\\n' < /proc/${await pid()}/environ | grep ^GREETING=`), 'GREETING=hello again', 'with the new environment');
  });

  await t.test('a program that exits at start fails its state with its log lines', async (t) => {
    const run = await apply({ ...v2, stopwaitsecs: 5, greeting: 'hello again', crasher: true });
    t.equal(run.code, 2);
    const crasher = byId(run.states, 'crasher');
    t.equal(crasher.status, 'failed');
    t.match(crasher.comment, /^program crasher is (BACKOFF|FATAL) \(Exited too quickly \(process log may have details\)\)/);
    t.match(crasher.comment, /crasher: cannot open \/etc\/crasher\.conf/, 'with its own words');
    t.equal(byId(run.states, 'static').status, 'ok', 'the other program is untouched');
  });
  t.comment(`whole test ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
