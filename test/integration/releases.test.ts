// Releases on a real booted server, with the reference stack as bootstrap.sh sets it up (the test
// app from test/fixtures/app, its venv from a wheelhouse, its migration, gunicorn in two slots
// under supervisor, nginx in front). Under continuous requests on loopback through nginx, counting
// every non-2xx and connection error: a pushed commit is deployed by the next run, reusing the
// venv; a commit that fails its health check never takes a request, is marked failed and is not
// retried by the next cron run; `agent rollback` goes back in under 2 s; a rolled-back commit is
// not redeployed until `agent release --retry`; changed requirements build a new venv; migrations
// run when their files change and are skipped otherwise; runs killed with SIGKILL while building,
// migrating and just before the switch leave current serving and the next run finishes the job;
// cleanup keeps what it must. Figures are printed as test comments.
import t from 'tap';
import { appendFileSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootServer, type TestServer } from '../server/server.js';
import { describeLoad, startLoad, type LoadReport } from './load.js';
import { authorize, bootstrap, page as get, serveTestApp, workspace } from './stack.js';
import { fakeSlack, text } from './fake-slack.js';

interface Release {
  id: string;
  sha: string;
  status: string;
  live: boolean;
  held: boolean;
  buildMs: number;
  switchMs: number | null;
  phases: Record<string, number>;
  deps: string[];
  migrations: { outcome: string } | null;
  failure: { phase: string; message: string } | null;
}

async function releases(server: TestServer): Promise<Release[]> {
  return JSON.parse((await server.exec(['agent', 'releases', '--json'])).stdout)[0].releases;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('releases: deploy on push, build once, switch with no failed request, check health, roll back', async (t) => {
  const ws = await workspace();
  t.teardown(() => ws.remove());
  const server = await bootServer();
  t.teardown(() => server.stop());
  await authorize(server, ws);
  const site = await serveTestApp(server, ws);
  // Three good releases are kept here, so that cleanup has work to do within the test; a release
  // that is not healthy is given up after 10 s.
  const local = join(ws.dir, 'pillar', 'staging', 'local.yaml');
  writeFileSync(local, readFileSync(local, 'utf8').replace(/^app:\n/m, 'app:\n  keep: 3\n  health: {timeout: 10}\n'));
  const health = `${site.url}health`;
  const figures: string[] = [];
  const apply = (args: string[] = []) => server.exec(['agent', 'apply', ...args], { allowFailure: true, timeoutMs: 600_000 });
  const underLoad = async <T>(what: string, action: () => Promise<T>): Promise<{ result: T; load: LoadReport }> => {
    const load = startLoad(health);
    await sleep(1000); // requests flowing before the action, and after it
    const result = await action();
    await sleep(1000);
    const report = await load.stop();
    figures.push(`${what}: ${describeLoad(report)}`);
    t.comment(`${what}: ${describeLoad(report)}`);
    return { result, load: report };
  };

  // Slack hears of every deploy and rollback (a stand-in on loopback).
  const slack = await fakeSlack(t);
  appendFileSync(join(ws.dir, 'pillar', 'staging', 'secrets.yaml'), `\nslack:\n  webhook_url: http://127.0.0.1:${slack.port}/services/T0/B0/releases-hook\n`);
  const said = (kind: RegExp) => slack.received.map(text).filter((m) => kind.test(m));

  const first = await bootstrap(ws, [`root@127.0.0.1:${server.sshPort}`, 'staging']);
  t.equal(first.code, 0, first.output);
  t.match(first.stdout, /dependencies \.venv: built deps\/venv-[0-9a-f]{16} in/, 'the first release builds the venv');
  t.match(first.stdout, /migrate: ran in/);
  t.match((await get(site.url)).body, /^hello from hello-brine \(staging\): visit 1\n$/, 'the app answers, its migration made the table');
  const [r1] = await releases(server);
  t.match(r1, { status: 'active', live: true, migrations: { outcome: 'ran' } });

  await t.test('a pushed commit is deployed by the next run, the venv reused, with no failed request', async (t) => {
    const sha = await site.pushCommit('v2: bonjour', (dir) => {
      const app = join(dir, 'app.py');
      writeFileSync(app, readFileSync(app, 'utf8').replace("greet('hello from')", "greet('bonjour from')"));
    });
    const { result: run, load } = await underLoad('deploy of v2', () => apply());
    t.equal(run.code, 0, run.stdout);
    t.match(run.stdout, /dependencies \.venv: reused deps\/venv-/);
    t.match(run.stdout, /migrate: skipped \(migrations unchanged since /, 'no migration changed: skipped');
    t.equal(load.failed, 0, 'no request failed during the deploy');
    t.ok([...load.bodies.keys()].some((b) => b.includes(r1!.sha)) && [...load.bodies.keys()].some((b) => b.includes(sha)), 'both versions answered during the load: the switch happened under it');
    t.match((await get(site.url)).body, /^bonjour from hello-brine/, 'the page shows the new version');
    const list = await releases(server);
    t.same(list.map((r) => [r.sha, r.status, r.live]), [[r1!.sha, 'ready', false], [sha, 'active', true]], 'agent releases lists both');
    const [, r2] = list;
    figures.push(`release times: first (venv built) ${(r1!.buildMs / 1000).toFixed(1)} s, second (venv reused) ${(r2!.buildMs / 1000).toFixed(1)} s; switch ${((r2!.switchMs ?? 0) / 1000).toFixed(1)} s`);
    t.comment(figures.at(-1)!);
    t.ok(r2!.buildMs < r1!.buildMs, 'the second release built faster than the first');
    t.same(r2!.deps, r1!.deps, 'both link the same cache entry');
    const again = await apply();
    t.match(again.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/, 'then nothing to do');
    t.match(said(/^deployed /).at(-1), new RegExp(`^deployed ${sha.slice(0, 7)} to \\S+ \\(staging\\)[\\s\\S]*v2: bonjour — release ${r2!.id} in [\\d.]+ s, was ${r1!.id}`), 'Slack: the deploy, its sha, subject, time and the release before it');
  });

  await t.test('agent rollback: back to the last good release in under 2 s, with no failed request; not redeployed until --retry', async (t) => {
    const before = await releases(server);
    const { result: rb, load } = await underLoad('agent rollback', () =>
      server.exec(['sh', '-c', 's=$(date +%s%N); agent rollback; c=$?; e=$(date +%s%N); echo "ELAPSED $(( (e - s) / 1000000 ))"; exit $c'], { allowFailure: true }),
    );
    t.equal(rb.code, 0, rb.stdout + rb.stderr);
    const ms = Number(/ELAPSED (\d+)/.exec(rb.stdout)?.[1]);
    figures.push(`agent rollback end to end: ${ms} ms`);
    t.comment(figures.at(-1)!);
    t.ok(ms < 2000, `agent rollback took ${ms} ms`);
    t.equal(load.failed, 0, 'no request failed during the rollback');
    t.match((await get(site.url)).body, /^hello from hello-brine/, 'the old version answers');
    const after = await releases(server);
    t.same(after.map((r) => [r.sha, r.status, r.held]), [[before[0]!.sha, 'active', false], [before[1]!.sha, 'rolled-back', true]], 'agent releases shows it');
    const cron = await apply(['--cron']);
    t.equal(cron.code, 0);
    t.equal(cron.stdout, '', 'the next cron run changes nothing: the rolled-back commit is held back');
    t.equal((await releases(server)).length, 2, 'and builds nothing');
    const retry = await server.exec(['agent', 'release', '--retry'], { allowFailure: true });
    t.equal(retry.code, 0, retry.stdout);
    t.match(retry.stdout, /is no longer held back/);
    t.match(retry.stdout, /reused \d{14}-[0-9a-f]{7}, built before/, '--retry switches to the release already built');
    t.match(said(/^rolled back /).at(-1), new RegExp(`^rolled back on \\S+ \\(staging\\) to ${before[0]!.sha.slice(0, 7)}[\\s\\S]*${before[1]!.id} → ${before[0]!.id}.*by hand`), 'Slack: the rollback by hand');
    t.match((await get(site.url)).body, /^bonjour from/);
  });

  await t.test('a commit whose health check fails never takes a request, is marked failed, and the next cron run does not retry it', async (t) => {
    const live = (await releases(server)).find((r) => r.live)!;
    const sha = await site.pushCommit('broken: /health answers 500', (dir) => {
      const app = join(dir, 'app.py');
      writeFileSync(app, readFileSync(app, 'utf8').replace('return f"ok {REVISION}\\n"', 'return "broken\\n", 500'));
    });
    // The same run changes the app's env file: its restart (the watch) cannot happen while the
    // release fails; the next run must still do it.
    await server.exec(['sh', '-c', "printf '  FEATURE_FLAG: \"on\"\\n' >> /srv/brine/pillar/staging/env.yaml"]);
    const { result: run, load } = await underLoad('deploy of a commit failing its health check', () => apply());
    t.equal(run.code, 2, 'the run fails');
    t.match(run.stdout, /~ env\.file +\/srv\/hello-brine\/shared\/\.env/, 'the env file changed in that run');
    t.match(run.stdout, /✗ release\.deployed +\/srv\/hello-brine/);
    t.match(run.stdout, /health check failed: GET \/health on 127\.0\.0\.1:\d+: 500 "broken" after 10 s/);
    t.match(run.stdout, /the end of hello-brine-(blue|green)'s log:[\s\S]*Booting worker/, "with the app's own last log lines");
    t.equal(load.failed, 0, 'no request failed');
    t.ok([...load.bodies.keys()].every((b) => b.includes(live.sha)), 'every answer came from the old release');
    const list = await releases(server);
    t.match(list.at(-1), { sha, status: 'failed', held: true, live: false, failure: { phase: 'health' } });
    t.equal(list.find((r) => r.live)!.id, live.id, 'the old release is still live');
    t.match(said(/health check failed/).at(-1), new RegExp(`^deploy of ${sha.slice(0, 7)} rolled back on \\S+ \\(staging\\): health check failed[\\s\\S]*still serving ${live.id}\\. .*GET /health`), 'Slack: the automatic rollback, with the reason');
    t.notOk(said(/^run failed/).some((m) => /`release\.deployed app-release`/.test(m)), 'said as a rollback, not also as a failed run');
    const { result: cron, load: restartLoad } = await underLoad('restart for the env file (the next cron run)', () => apply(['--cron']));
    t.equal(cron.code, 0, cron.stdout);
    t.match(cron.stdout, /restart: the env file changed since the app started → \S+ restarted in the other slot/, 'the next run restarts the app for the env file it did not get');
    t.notMatch(cron.stdout, /release: /, 'but does not retry the held-back commit');
    t.equal(restartLoad.failed, 0, 'no request failed during the restart');
    const pid = /^hello-brine-(?:blue|green)\s+RUNNING\s+pid (\d+)/m.exec((await server.exec(['supervisorctl', 'status'], { allowFailure: true })).stdout)?.[1];
    t.match((await server.exec(['sh', '-c', `tr '\\0' '\\n' < /proc/${pid}/environ`], { allowFailure: true })).stdout, /^FEATURE_FLAG=on$/m, 'the app runs with the new env file');
    t.equal((await apply(['--cron'])).stdout, '', 'then the cron runs are quiet');
    t.equal((await releases(server)).length, list.length, 'and build nothing');
    const status = await server.exec(['agent', 'apply', '--verbose', '--only', 'app-release'], { allowFailure: true });
    t.match(status.stdout, /held back: branch main is [0-9a-f]{7}, whose release \S+ failed its health check/);
  });

  await t.test('a switch nginx refuses puts current back, keeps serving, and is tried again by the next run', async (t) => {
    const live = (await releases(server)).find((r) => r.live)!;
    await server.writeFile('/etc/nginx/conf.d/zz-left-by-hand.conf', 'this is not nginx configuration;\n');
    const sha = await site.pushCommit('fix health', (dir) => {
      const app = join(dir, 'app.py');
      writeFileSync(app, readFileSync(app, 'utf8').replace('return "broken\\n", 500', 'return f"ok {REVISION}\\n"'));
    });
    const { result: run, load } = await underLoad('deploy whose switch nginx refuses', () => apply());
    t.equal(run.code, 2);
    t.match(run.stdout, /nginx -t failed; nginx still sends requests to (blue|green):/);
    t.equal(load.failed, 0, 'no request failed');
    t.equal((await server.exec(['readlink', '/srv/hello-brine/current'])).stdout.trim(), `releases/${live.id}`, 'current is back where it was');
    const failed = (await releases(server)).at(-1)!;
    t.match(failed, { sha, status: 'failed', held: false, failure: { phase: 'switch' } }, 'failed, not held back: it was not the release\'s fault');
    await server.exec(['rm', '/etc/nginx/conf.d/zz-left-by-hand.conf']);
    const again = await apply();
    t.equal(again.code, 0, again.stdout);
    t.match((await get(health)).body, new RegExp(`^ok ${sha}`), 'the next run deploys it');
  });

  await t.test("links in the repository never make root write outside the release", async (t) => {
    const shadow = (await server.exec(['sh', '-c', 'sha256sum /etc/shadow; stat -c "%U:%G %a" /etc/shadow'])).stdout;
    const sha = await site.pushCommit('a REVISION link to /etc/shadow', (dir) => {
      symlinkSync('/etc/shadow', join(dir, 'REVISION'));
    });
    const run = await apply();
    t.equal(run.code, 0, run.stdout);
    t.equal((await server.exec(['sh', '-c', 'sha256sum /etc/shadow; stat -c "%U:%G %a" /etc/shadow'])).stdout, shadow, '/etc/shadow is untouched');
    t.equal((await server.exec(['sh', '-c', 'test -L /srv/hello-brine/current/REVISION && echo link || cat /srv/hello-brine/current/REVISION'])).stdout.trim(), sha, "the release's REVISION is brine's");
    await site.pushCommit('no REVISION link', (dir) => rmSync(join(dir, 'REVISION')));
    t.equal((await apply()).code, 0);
  });

  await t.test('changed requirements build a new venv; a new migration runs, once', async (t) => {
    const sha = await site.pushCommit('add a requirement comment and a migration', (dir) => {
      appendFileSync(join(dir, 'requirements.txt'), '# pinned\n');
      writeFileSync(join(dir, 'migrations', '002_notes.sql'), 'CREATE TABLE notes (id serial PRIMARY KEY, body text);\n');
    });
    const { result: run, load } = await underLoad('deploy with a new venv and a migration', () => apply());
    t.equal(run.code, 0, run.stdout);
    t.equal(load.failed, 0);
    t.match(run.stdout, /dependencies \.venv: built deps\/venv-/, 'a new entry for the new requirements');
    t.match(run.stdout, /migrate: ran in/);
    const list = await releases(server);
    const live = list.find((r) => r.live)!;
    t.equal(live.sha, sha);
    t.not(live.deps[0], list[0]!.deps[0], 'another cache entry than the first release');
    const runs = await server.exec(['runuser', '-u', 'postgres', '--', 'psql', '-p', String(site.pgPort), '-d', 'hello', '-tAc', 'SELECT name, count(*) FROM migration_runs GROUP BY name ORDER BY name']);
    t.equal(runs.stdout.trim(), '001_visits.sql|1\n002_notes.sql|1', 'each migration applied once');
    const venvs = (await server.exec(['ls', '-A', '/srv/hello-brine/deps'])).stdout.trim().split('\n').filter(Boolean);
    t.equal(venvs.length, 2, 'both venvs are there: kept releases use the old one');
  });

  await t.test('SIGKILL during a build, during migrations and just before the switch: current serves, the next run finishes, nothing stays locked', async (t) => {
    /** Starts `agent apply` in a session of its own; kills the whole group once `ready` says so. */
    const killWhen = async (what: string, ready: string): Promise<void> => {
      const pgid = Number((await server.exec(['sh', '-c', 'setsid agent apply > /tmp/killed-run.log 2>&1 & echo $!'])).stdout.trim());
      const deadline = Date.now() + 120_000;
      while ((await server.exec(['sh', '-c', ready], { allowFailure: true })).code !== 0) {
        if (Date.now() > deadline) throw new Error(`${what}: never saw it (${ready})\n${await server.readFile('/tmp/killed-run.log')}`);
        await sleep(50);
      }
      await server.exec(['kill', '-KILL', '--', `-${pgid}`]);
      await sleep(300);
    };
    const served = async () => (await get(health)).status;
    const liveId = async () => (await server.exec(['readlink', '/srv/hello-brine/current'])).stdout.trim();

    // During a build: pip installing a changed requirements file.
    const before = await liveId();
    await site.pushCommit('another requirement comment', (dir) => appendFileSync(join(dir, 'requirements.txt'), '# again\n'));
    await killWhen('build', 'pgrep -f "[p]ip install" >/dev/null');
    t.equal(await liveId(), before, 'killed while building: current is where it was');
    t.equal(await served(), 200, 'and serving');
    const afterBuild = await apply();
    t.equal(afterBuild.code, 0, afterBuild.stdout);
    t.match(afterBuild.stdout, /dependencies \.venv: built deps\/venv-/, 'the next run builds the entry again from scratch');
    t.match((await releases(server)).find((r) => r.failure?.phase === 'interrupted'), { status: 'failed' }, 'the killed release is marked interrupted');

    // During migrations: one that takes a while.
    await site.pushCommit('a slow migration', (dir) => writeFileSync(join(dir, 'migrations', '003_slow.sql'), 'SELECT pg_sleep(3);\nCREATE TABLE slow (id int);\n'));
    const beforeMigrate = await liveId();
    await killWhen('migrate', 'pgrep -f "[m]igrate.py" >/dev/null');
    t.equal(await liveId(), beforeMigrate, 'killed while migrating: current is where it was');
    t.equal(await served(), 200);
    const afterMigrate = await apply();
    t.equal(afterMigrate.code, 0, `the migration lock and the run lock were released with the killed run:\n${afterMigrate.stdout}`);
    t.match(afterMigrate.stdout, /migrate: ran in/);
    const slow = await server.exec(['runuser', '-u', 'postgres', '--', 'psql', '-p', String(site.pgPort), '-d', 'hello', '-tAc', "SELECT count(*) FROM migration_runs WHERE name = '003_slow.sql'"]);
    t.equal(slow.stdout.trim(), '1', 'the killed migration was rolled back with its connection and applied once by the next run');

    // Just before the switch: the new slot started and being health-checked (a slow first answer).
    const slowSha = await site.pushCommit('a slow first health check', (dir) => {
      const app = join(dir, 'app.py');
      writeFileSync(app, readFileSync(app, 'utf8').replace('def health():\n', 'def health():\n    import time; time.sleep(0.5)\n'));
    });
    const beforeSwitch = await liveId();
    await killWhen('switch', `grep -q '"sha":"${slowSha}","subject":"[^"]*","status":"ready"' /srv/hello-brine/releases.jsonl`);
    t.equal(await liveId(), beforeSwitch, 'killed before the switch: current is where it was');
    t.equal(await served(), 200);
    const afterSwitch = await apply();
    t.equal(afterSwitch.code, 0, afterSwitch.stdout);
    t.match(afterSwitch.stdout, /reused \S+, built before/, 'the next run switches to the release that was ready, without building it again');
    t.match((await get(health)).body, new RegExp(slowSha));
    t.match((await apply()).stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/, 'and then all is converged');
  });

  await t.test('cleanup keeps 3 good releases, the live one and the rollback target among them; failed ones apart', async (t) => {
    const list = await releases(server);
    const dirs = (await server.exec(['ls', '/srv/hello-brine/releases'])).stdout.trim().split('\n').filter((d) => /^\d{14}-[0-9a-f]{7}/.test(d) && !d.endsWith('.log'));
    t.same(dirs.sort(), list.map((r) => r.id).sort(), 'the log lists exactly the releases on disk');
    const good = list.filter((r) => r.status === 'active' || (r.status === 'ready' && r.switchMs !== null));
    const bad = list.filter((r) => !good.includes(r));
    t.ok(good.length <= 3, `at most 3 good releases (${good.map((r) => r.id).join(', ')})`);
    t.ok(bad.length <= 2, `at most 2 others (${bad.map((r) => `${r.id} ${r.status}`).join(', ')})`);
    t.ok(list.some((r) => r.live), 'the live one is there');
    const rollback = await server.exec(['agent', 'rollback'], { allowFailure: true });
    t.equal(rollback.code, 0, `the previous good release is still there to roll back to: ${rollback.stderr}`);
    const venvs = (await server.exec(['ls', '-A', '/srv/hello-brine/deps'])).stdout.trim().split('\n').filter(Boolean);
    const used = new Set((await releases(server)).flatMap((r) => r.deps));
    t.same(venvs.filter((v) => !used.has(v)), [], 'no cache entry is left that no kept release uses');
  });

  t.comment(`figures:\n${figures.join('\n')}`);
});
