// The web-app stack end to end, as a user runs it: bootstrap.sh over SSH converges a fresh Debian 12
// server into PostgreSQL + the app (a release fetched with its deploy key, its venv, its migration,
// gunicorn under supervisor) + nginx, and the page answers by writing a row. Then: nothing to
// change; drift is repaired; a pushed commit is deployed; a broken nginx template never reaches
// nginx; a removed developer loses access; and no secret shows up anywhere, nor does production's
// reach a staging server.
import t from 'tap';
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootServer } from '../server/server.js';
import { authorize, bootstrap, page, serveTestApp, workspace } from './stack.js';

/** Polls until the page answers with a body matching `want` (a restarted app takes a moment). */
async function pageMatching(url: string, want: RegExp, seconds = 30): Promise<{ status: number; body: string }> {
  let last = await page(url);
  for (let i = 0; i < seconds * 2 && !(last.status === 200 && want.test(last.body)); i++) {
    await new Promise((r) => setTimeout(r, 500));
    last = await page(url);
  }
  return last;
}

t.test('the reference web-app stack, end to end over SSH', async (t) => {
  const ws = await workspace();
  t.teardown(() => ws.remove());
  // Developers with keys this test holds, so it can log in as them.
  const devKeys: Record<string, string> = {};
  for (const dev of ['alice', 'bob']) {
    const key = join(ws.dir, `${dev}_key`);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${dev}@test`, '-f', key]);
    devKeys[dev] = key;
  }
  const devs = (names: string[]) =>
    `devs:\n${names.map((n) => `  ${n}:\n    groups: [${n === 'alice' ? 'admin, login' : 'login'}]\n    public_keys:\n      - ${readFileSync(`${devKeys[n]}.pub`, 'utf8').trim()}\n`).join('')}`;
  writeFileSync(join(ws.dir, 'pillar', 'devs.yaml'), devs(['alice', 'bob']));

  const server = await bootServer();
  t.teardown(() => server.stop());
  await authorize(server, ws);
  const site = await serveTestApp(server, ws);
  const target = `root@127.0.0.1:${server.sshPort}`;
  const outputs: string[] = [];
  const sshAs = async (dev: string) =>
    (await execa('ssh', ['-p', String(server.sshPort), '-i', devKeys[dev]!, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', `${dev}@127.0.0.1`, 'true'], { reject: false, timeout: 30_000 })).exitCode;

  const first = await bootstrap(ws, [target, 'staging']);
  outputs.push(first.output);
  t.equal(first.code, 0, `bootstrap converges the stack:\n${first.output}`);

  const one = await pageMatching(site.url, /visit \d+/);
  t.equal(one.status, 200, `nginx serves the app: ${one.body}`);
  t.match(one.body, /^hello from hello-brine \(staging\): visit 1\n$/, 'the page wrote a row in PostgreSQL');
  t.match((await page(site.url)).body, /visit 2/, 'and the next request another one');
  t.equal(await sshAs('alice'), 0, 'alice can log in');
  t.equal(await sshAs('bob'), 0, 'bob can log in');

  const second = await bootstrap(ws, [target, 'staging']);
  outputs.push(second.output);
  t.equal(second.code, 0);
  t.match(second.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/, 'the second converge changes nothing');

  await t.test('drift is repaired by the next run', async (t) => {
    await server.exec(['sh', '-c', 'echo "# edited by hand" >> /etc/nginx/sites-available/hello-brine']);
    await server.exec(['runuser', '-u', 'postgres', '--', 'psql', '-qc', "ALTER ROLE hello PASSWORD 'changed-by-hand'"]);
    // The live slot's program (hello-brine-blue or -green) stopped by hand.
    const live = /^(hello-brine-(?:blue|green))\s+RUNNING/m.exec((await server.exec(['supervisorctl', 'status'], { allowFailure: true })).stdout)?.[1];
    t.ok(live, 'one slot runs the app');
    await server.exec(['supervisorctl', 'stop', live!]);
    await server.writeFile('/home/alice/.ssh/authorized_keys', '', 0o600);
    t.not((await page(site.url)).status, 200, 'the app is down');
    const repair = await server.exec(['agent', 'apply', '--json'], { allowFailure: true });
    outputs.push(repair.stdout + repair.stderr);
    t.equal(repair.code, 0, repair.stderr);
    const states = JSON.parse(repair.stdout).states as { id: string; status: string }[];
    const changed = states.filter((s) => s.status === 'changed').map((s) => s.id);
    for (const id of ['app-site', 'app-db-role', 'app-release', 'keys-alice']) t.ok(changed.includes(id), `${id} was repaired`);
    t.match((await pageMatching(site.url, /visit/)).body, /visit \d+/, 'the app answers again, with the right DB password');
    t.equal(await sshAs('alice'), 0, "alice's key is back");
    const again = await server.exec(['agent', 'apply']);
    t.match(again.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/);
  });

  await t.test('a pushed commit is deployed by the next converge', async (t) => {
    await site.pushChange('bonjour from');
    const run = await server.exec(['agent', 'apply'], { allowFailure: true });
    outputs.push(run.stdout + run.stderr);
    t.equal(run.code, 0, run.stdout);
    t.match(run.stdout, /~ release\.deployed +\/srv\/hello-brine/, 'a new release');
    t.match(run.stdout, /dependencies \.venv: reused deps\/venv-/, 'requirements.txt did not change: the venv is reused');
    t.match((await page(site.url)).body, /^bonjour from hello-brine/, 'the new code answers as soon as the run is over');
    const releases = JSON.parse((await server.exec(['agent', 'releases', '--json'])).stdout)[0].releases as { status: string; live: boolean }[];
    t.same(releases.map((r) => [r.status, r.live]), [['ready', false], ['active', true]], 'agent releases lists both, the new one live');
  });

  await t.test('a broken nginx template never reaches nginx', async (t) => {
    const template = join(ws.dir, 'states', 'templates', 'nginx-app.conf.j2');
    const good = readFileSync(template, 'utf8');
    const before = await server.readFile('/etc/nginx/sites-available/hello-brine');
    writeFileSync(template, good.replace('client_max_body_size 10m;', 'client_max_body_size 10m;\n    bogus_directive on;'));
    const run = await bootstrap(ws, [target, 'staging']);
    outputs.push(run.output);
    t.equal(run.code, 2, 'a failed state exits 2');
    t.match(run.stdout, /✗ nginx\.site +hello-brine/);
    t.match(run.stdout, /unknown directive "bogus_directive"/);
    t.equal(await server.readFile('/etc/nginx/sites-available/hello-brine'), before, 'the old site file stays');
    t.equal((await page(site.url)).status, 200, 'nginx keeps serving');
    writeFileSync(template, good);
  });

  await t.test('a developer removed from devs.yaml loses access', async (t) => {
    writeFileSync(join(ws.dir, 'pillar', 'devs.yaml'), devs(['alice']));
    const run = await bootstrap(ws, [target, 'staging']);
    outputs.push(run.output);
    t.equal(run.code, 0, run.output);
    t.not(await sshAs('bob'), 0, 'bob can no longer log in');
    t.equal(await sshAs('alice'), 0, 'alice still can');
    t.notMatch((await server.exec(['id', '-nG', 'bob'])).stdout, /\blogin\b/, 'bob left the login group');
  });

  await t.test('secrets: masked everywhere, and production never reaches staging', async (t) => {
    // Change a secret: the env file changes; neither value may show in the report.
    const secretsFile = join(ws.dir, 'pillar', 'staging', 'secrets.yaml');
    const newSecret = 'rotated-Secret-Key-5577';
    writeFileSync(secretsFile, readFileSync(secretsFile, 'utf8').replace(/SECRET_KEY: .*/, `SECRET_KEY: ${newSecret}`));
    const run = await bootstrap(ws, [target, 'staging']);
    outputs.push(run.output);
    t.equal(run.code, 0, run.output);
    t.match(run.stdout, /~ env\.file +\/srv\/hello-brine\/shared\/\.env/, 'the env file changed');
    t.match(run.stdout, /SECRET_KEY='?\*{8}/, 'its diff is masked');
    const env = await server.readFile('/srv/hello-brine/shared/.env');
    t.match(env, newSecret, 'the env file has the real value');
    t.match(run.stdout, /~ release\.deployed +\/srv\/hello-brine.*\n\s+restart: the env file changed since the app started → \d{14}-[0-9a-f]{7} restarted in the other slot/, 'the app was restarted, in the other slot');
    // supervisord says RUNNING (with the pid) once the new slot stayed up its startsecs.
    let live: RegExpExecArray | null = null;
    for (let i = 0; i < 40 && !live; i++, await new Promise((r) => setTimeout(r, 250)))
      live = /^(hello-brine-(?:blue|green))\s+RUNNING\s+pid (\d+)/m.exec((await server.exec(['supervisorctl', 'status'], { allowFailure: true })).stdout);
    const environ = (await server.exec(['sh', '-c', `tr '\\0' '\\n' < /proc/${live?.[2]}/environ`])).stdout;
    t.match(environ, `SECRET_KEY=${newSecret}`, 'and the running app has the new value');
    t.equal((await server.exec(['stat', '-c', '%a %U:%G', '/srv/hello-brine/shared/.env'])).stdout.trim(), '640 root:app');
    const journal = (await server.exec(['journalctl', '-t', 'agent', '-o', 'json', '--no-pager'])).stdout;
    const deployKey = readFileSync(secretsFile, 'utf8').match(/-----BEGIN OPENSSH PRIVATE KEY-----\n\s*(\S{40})/)?.[1] ?? 'no deploy key found';
    for (const secret of [ws.secrets.staging, newSecret, deployKey]) {
      t.notMatch(journal, secret, 'the journal holds no secret');
      for (const out of outputs) t.notMatch(out, secret, 'no output shows a secret');
    }
    const production = await server.exec(['grep', '-rl', ws.secrets.production, '/srv', '/etc', '/opt', '/home', '/root', '/var/lib/postgresql'], { allowFailure: true });
    t.equal(production.stdout, '', 'the production secret is nowhere on the staging server');
  });
});
