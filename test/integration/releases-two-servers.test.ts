// Two servers of one app sharing one database (the second reaches the first's PostgreSQL), as a
// small web app grows to: both converge the same release at the same time, and its migration runs
// exactly once — the advisory lock makes the second wait, and its run of the migration tool then
// finds nothing to do.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootServer } from '../server/server.js';
import { authorize, bootstrap, page, secondServer, serveTestApp, workspace } from './stack.js';

const get = async (url: string) => (await page(url)).body;

t.test('two servers sharing one database migrate a release exactly once', async (t) => {
  const [wsA, wsB] = [await workspace(), await workspace()];
  t.teardown(() => (wsA.remove(), wsB.remove()));
  const [a, b] = await Promise.all([bootServer(), bootServer()]);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await Promise.all([authorize(a, wsA), authorize(b, wsB)]);
  const siteA = await serveTestApp(a, wsA);
  const siteB = await secondServer(b, wsB, { server: a, ws: wsA, site: siteA });

  const first = await bootstrap(wsA, [`root@127.0.0.1:${a.sshPort}`, 'staging']);
  t.equal(first.code, 0, first.output);
  const second = await bootstrap(wsB, [`root@127.0.0.1:${b.sshPort}`, 'staging']);
  t.equal(second.code, 0, second.output);
  t.match(await get(siteB.url), /^hello from hello-brine \(staging\): visit \d+\n$/, 'the second server serves the app from the first one\'s database');

  const sha = await siteA.pushCommit('a slow migration', (dir) => writeFileSync(join(dir, 'migrations', '002_slow.sql'), 'SELECT pg_sleep(5);\nCREATE TABLE reports (id serial PRIMARY KEY);\n'));
  const [runA, runB] = await Promise.all([a, b].map((s) => s.exec(['agent', 'apply'], { allowFailure: true, timeoutMs: 600_000 })));
  t.equal(runA!.code, 0, runA!.stdout);
  t.equal(runB!.code, 0, runB!.stdout);
  const outputs = `${runA!.stdout}\n${runB!.stdout}`;
  t.equal(outputs.match(/migrate: ran in/g)?.length, 2, 'both ran the migration step, one after the other');
  t.match(outputs, /migrate: waited for another server/, 'one of them waited for the lock');
  const psql = (sql: string) => a.exec(['runuser', '-u', 'postgres', '--', 'psql', '-p', String(siteA.pgPort), '-d', 'hello', '-tAc', sql]);
  t.equal((await psql("SELECT count(*) FROM migration_runs WHERE name = '002_slow.sql'")).stdout.trim(), '1', 'the migration was applied exactly once');
  t.equal((await psql("SELECT count(*) FROM schema_migrations WHERE name = '002_slow.sql'")).stdout.trim(), '1');
  for (const site of [siteA, siteB]) t.match(await get(`${site.url}health`), new RegExp(`^ok ${sha}`), `${site.url} serves the new release`);
});
