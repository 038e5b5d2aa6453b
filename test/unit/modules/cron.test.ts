import t from 'tap';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { accountFiles } from '../../../agent/accounts.js';
import type { Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker, Secret } from '../../../agent/secret.js';
import { cronModule, cronPaths, slug, stableRandom } from '../../../agent/modules/cron.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';

// cron states run no commands: a runner that records and refuses proves it.
function fakeRunner() {
  const calls: string[][] = [];
  const runner: Runner = {
    async run(argv) {
      calls.push([...argv]);
      throw new Error(`unexpected command: ${argv.join(' ')}`);
    },
  };
  return { runner, calls };
}

function context(masker = new Masker()): Context {
  return { runner: fakeRunner().runner, facts: new Facts(), masker, statesDir: '/srv/states', pillar: {},
    env: 'test',
    renderTemplate: () => { throw new Error('no templates'); } };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { present, absent } = cronModule.functions as Record<string, StateFunction>;

async function converge(fn: StateFunction, a: unknown, ctx: Context) {
  const current = await fn.check(a, ctx);
  const plan = fn.plan(current, a, ctx);
  if (plan.changes.length) await fn.apply(a, plan, current, ctx);
  return plan;
}

let dir: string;
t.beforeEach((t) => {
  const root = t.testdir({
    passwd: 'root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/srv/app:/bin/bash\n',
    group: 'root:x:0:\napp:x:1000:\n',
    'cron.d': { e2scrub_all: '30 3 * * 0 root test -e /run/systemd/system || /sbin/e2scrub_all\n' },
  });
  accountFiles.passwd = join(root, 'passwd');
  accountFiles.group = join(root, 'group');
  dir = cronPaths.dir = join(root, 'cron.d');
});

const CLEAR = '/srv/app/venv/bin/python /srv/app/current/manage.py clearsessions';

t.test('cron.present writes one file: header, environment, entry; mode 0644, owner root', async (t) => {
  const ctx = context();
  const a = args(present, { name: CLEAR, identifier: 'app-clearsessions', user: 'app', minute: 15, hour: 3, env: { MAILTO: 'ops@example.com' } });
  const plan = await converge(present, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'entry', old: null, new: `15 3 * * * app ${CLEAR}` },
      { what: 'env', old: null, new: 'MAILTO=ops@example.com' },
    ],
  });
  const path = join(dir, 'app-clearsessions');
  t.equal(readFileSync(path, 'utf8'), `# managed by brine; edits here are overwritten\nMAILTO=ops@example.com\n15 3 * * * app ${CLEAR}\n`);
  const st = statSync(path);
  t.equal(st.mode & 0o7777, 0o644);
  t.equal(st.uid, 0);
  t.same(readdirSync(dir).sort(), ['app-clearsessions', 'e2scrub_all'], 'no temp file left behind');

  t.same(present.plan(await present.check(a, ctx), a, ctx), { changes: [], reason: `${path} is as declared` }, 'a second run changes nothing');
});

t.test("minute: random (Salt's) is a value of the server's own: in range, the same every run, another for another server or entry", async (t) => {
  const root = dirname(dir);
  writeFileSync(join(root, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  writeFileSync(join(root, 'other'), 'fedcba9876543210fedcba9876543210\n');
  cronPaths.machineId = join(root, 'machine-id');
  t.teardown(() => void (cronPaths.machineId = '/etc/machine-id'));
  const ctx = context();
  const a = args(present, { name: '/usr/local/bin/backup', identifier: 'backup', minute: 'random', hour: 2, dayweek: 'random' });
  t.same(present.validate!(a), [], 'random is a valid time field');
  await converge(present, a, ctx);
  const line = readFileSync(join(dir, 'backup'), 'utf8').split('\n')[1]!;
  const [minute, hour, , , dayweek] = line.split(' ').map(Number);
  t.ok(minute! >= 0 && minute! <= 59, `minute ${minute}`);
  t.equal(hour, 2);
  t.ok(dayweek! >= 0 && dayweek! <= 6, `dayweek ${dayweek}`);
  t.same(present.plan(await present.check(a, ctx), a, ctx).changes, [], 'the next run has the same value: nothing to change');
  const minutes = new Set<number>();
  for (const id of ['backup', 'reports', 'cleanup', 'sync', 'mail', 'stats']) minutes.add(stableRandom('minute', id));
  cronPaths.machineId = join(root, 'other');
  for (const id of ['backup', 'reports', 'cleanup']) minutes.add(stableRandom('minute', id));
  t.ok(minutes.size >= 5, `entries and servers spread over the hour (${[...minutes].join(', ')})`);
});

t.test('special schedules replace the five time fields', async (t) => {
  const a = args(present, { name: 'rm -rf /srv/app/tmp/cache', identifier: 'cache-on-boot', special: '@reboot' });
  await converge(present, a, context());
  t.equal(readFileSync(join(dir, 'cache-on-boot'), 'utf8'), '# managed by brine; edits here are overwritten\n@reboot root rm -rf /srv/app/tmp/cache\n');
});

t.test('a changed schedule or environment plans the difference and rewrites the file', async (t) => {
  const ctx = context();
  await converge(present, args(present, { name: CLEAR, identifier: 'clear', minute: 15, env: { MAILTO: 'a@example.com' } }), ctx);
  const changed = args(present, { name: CLEAR, identifier: 'clear', minute: 45, env: { MAILTO: 'b@example.com', PATH: '/usr/bin:/bin' } });
  const plan = await converge(present, changed, ctx);
  t.same(plan, {
    changes: [
      { what: 'entry', old: `15 * * * * root ${CLEAR}`, new: `45 * * * * root ${CLEAR}` },
      { what: 'env', old: 'MAILTO=a@example.com', new: 'MAILTO=b@example.com PATH=/usr/bin:/bin' },
    ],
  });
  t.equal(
    readFileSync(join(dir, 'clear'), 'utf8'),
    `# managed by brine; edits here are overwritten\nMAILTO=b@example.com\nPATH=/usr/bin:/bin\n45 * * * * root ${CLEAR}\n`,
  );
});

t.test('a file edited by hand or with a loose mode is put back', async (t) => {
  const ctx = context();
  const a = args(present, { name: CLEAR, identifier: 'clear' });
  await converge(present, a, ctx);
  const path = join(dir, 'clear');
  writeFileSync(path, readFileSync(path, 'utf8') + '# local note\n');
  chmodSync(path, 0o666);
  t.same(present.plan(await present.check(a, ctx), a, ctx), {
    changes: [
      { what: 'content', old: 'edited', new: 'as declared' },
      { what: 'mode', old: '0666', new: '0644' },
    ],
  });
  await converge(present, a, ctx);
  t.equal(statSync(path).mode & 0o7777, 0o644);
  t.same(present.plan(await present.check(a, ctx), a, ctx).changes, []);
});

t.test('the identifier defaults to a slug of the command', async (t) => {
  t.equal(slug('php artisan schedule:run'), 'php-artisan-schedule-run');
  t.equal(slug(CLEAR), 'srv-app-venv-bin-python-srv-app-current-manage-py-clearsessions');
  await converge(present, args(present, { name: 'php artisan schedule:run' }), context());
  t.ok(existsSync(join(dir, 'php-artisan-schedule-run')));
});

t.test('an environment value holding a secret makes the file readable by root only', async (t) => {
  const masker = new Masker();
  masker.addFrom(new Secret('tok3n'));
  const a = args(present, { name: 'curl -fsS https://hc.example.com/ping', identifier: 'ping', env: { TOKEN: 'tok3n' } });
  await converge(present, a, context(masker));
  t.equal(statSync(join(dir, 'ping')).mode & 0o7777, 0o600);
});

t.test('a file in cron.d that brine did not write is neither replaced nor removed', async (t) => {
  const a = args(present, { name: CLEAR, identifier: 'e2scrub_all' });
  await t.rejects(present.check(a, context()), {
    message: `${join(dir, 'e2scrub_all')} exists and was not written by brine; choose another identifier, or remove the file by hand`,
  });
  await t.rejects(absent.check(args(absent, { name: CLEAR, identifier: 'e2scrub_all' }), context()));
  t.match(readFileSync(join(dir, 'e2scrub_all'), 'utf8'), /e2scrub_all/);
});

t.test('an entry for a user that does not exist fails the state', async (t) => {
  await t.rejects(converge(present, args(present, { name: CLEAR, identifier: 'clear', user: 'ghost' }), context()), {
    message: 'user ghost does not exist',
  });
  t.notOk(existsSync(join(dir, 'clear')));
});

t.test('cron.absent removes the file brine wrote; an absent file plans nothing', async (t) => {
  const ctx = context();
  await converge(present, args(present, { name: CLEAR, identifier: 'clear', minute: 5 }), ctx);
  const a = args(absent, { name: CLEAR, identifier: 'clear', minute: 5 });
  t.same(await converge(absent, a, ctx), { changes: [{ what: 'entry', old: `5 * * * * root ${CLEAR}`, new: null }] });
  t.notOk(existsSync(join(dir, 'clear')));
  t.same(absent.plan(await absent.check(a, ctx), a, ctx), { changes: [], reason: `${join(dir, 'clear')} does not exist` });
});

t.test('validate: identifiers cron would ignore, conflicting schedules, % and newlines are input errors', async (t) => {
  const problems = (given: Record<string, unknown>) => present.validate!(args(present, given));
  t.same(problems({ name: CLEAR, identifier: 'app.clear' }), [
    { key: 'identifier', message: `"app.clear" can't name a file in cron.d: use only letters, digits, _ and - (cron ignores names with a dot)` },
  ]);
  t.same(problems({ name: CLEAR, identifier: 'x', special: '@daily', hour: 3 }), [{ key: 'hour', message: 'give either special or hour, not both' }]);
  t.same(problems({ name: 'date +%F > /tmp/d', identifier: 'x' }), [
    { key: 'name', message: 'cron reads % as a newline: write \\% for a literal percent sign (date +\\%F)' },
  ]);
  t.same(problems({ name: 'date +\\%F > /tmp/d', identifier: 'x' }), []);
  t.same(problems({ name: 'a\nb', identifier: 'x' }), [{ key: 'name', message: 'the command must be one line' }]);
  t.same(problems({ name: CLEAR, identifier: 'x', minute: '5 root' }), [{ key: 'minute', message: '"5 root" is not a cron minute field: use digits, names, *, -, / and , only' }]);
  t.same(problems({ name: CLEAR, identifier: 'x', env: { 'BAD-NAME': 'x', MAILTO: 'a\nb' } }), [
    { key: 'env.BAD-NAME', message: 'not a variable name' },
    { key: 'env.MAILTO', message: 'the value must be one line' },
  ]);
  t.same(problems({ name: '!!!' }), [{ key: 'identifier', message: 'set identifier: the command gives no usable file name' }]);
  t.same(problems({ name: CLEAR, identifier: 'app_clear-1', minute: '*/5', dayweek: 'mon-fri' }), []);
});

t.test('time fields cron would refuse (and then skip the whole file) are input errors', async (t) => {
  const { timeFieldProblem } = await import('../../../agent/modules/cron.js');
  for (const [key, value] of [['minute', '0'], ['minute', '59'], ['minute', '*/15'], ['minute', '0,30'], ['hour', '1-5'], ['hour', '9-17/2'], ['daymonth', '1'], ['month', 'jan'], ['month', 'Jan-Mar'], ['dayweek', 'mon-fri'], ['dayweek', '7'], ['dayweek', '*']] as const)
    t.equal(timeFieldProblem(key, value), undefined, `${key}: ${value}`);
  t.equal(timeFieldProblem('minute', '61'), '"61" is not a cron minute field: 61 is out of range (0-59)');
  t.equal(timeFieldProblem('hour', '25'), '"25" is not a cron hour field: 25 is out of range (0-23)');
  t.equal(timeFieldProblem('dayweek', 'funday'), '"funday" is not a cron dayweek field: "funday" is not a number or a name (0-7 or sun-sat)');
  t.equal(timeFieldProblem('daymonth', '0'), '"0" is not a cron daymonth field: 0 is out of range (1-31)');
  t.equal(timeFieldProblem('hour', '17-9'), '"17-9" is not a cron hour field: the range "17-9" goes backwards');
  t.equal(timeFieldProblem('minute', '*/0'), '"*/0" is not a cron minute field: the step in "*/0" must be a number from 1');
  t.equal(timeFieldProblem('minute', '5/10'), undefined, 'cron reads 5/10 as 5: odd, not refused');
  t.equal(timeFieldProblem('minute', '1,,2'), '"1,,2" is not a cron minute field: "" is not a value, a range or a step');
  t.equal(timeFieldProblem('minute', 'random'), undefined, "Salt's random: cron.ts writes a number of the server's own");
});
