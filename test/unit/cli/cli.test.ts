import t, { type Test } from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { VERSION, main, type Io } from '../../../agent/cli/cli.js';
import { Lock } from '../../../agent/lock.js';
import { MASK } from '../../../agent/secret.js';

const SECRET = 'tok-Secret-5521';

interface Captured {
  io: Io;
  out: () => string;
  err: () => string;
}

function capture(env: Record<string, string>): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), isTTY: false, env },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

/**
 * A ROOT with states/ and pillar/ whose one state manages a file inside the testdir, with a
 * secret in its content. `states` replaces main.yaml; `$DIR` in it is the testdir.
 */
function project(t: Test, states?: string, extra: Record<string, string> = {}) {
  const dir = t.testdir({
    states: { 'top.yaml': "'*':\n  - main\n" },
    pillar: {
      'common.yaml': 'project: demo\n',
      staging: { 'secrets.yaml': `secrets:\n  TOKEN: ${SECRET}\n` },
      production: {},
    },
    run: {},
  });
  const mainYaml = states ?? ['$DIR/out/app.conf:', '  file.managed:', '    - contents: "token={{ pillar.secrets.TOKEN }}\\n"', '    - makedirs: true', "    - mode: '0600'", ''].join('\n');
  writeFileSync(`${dir}/states/main.yaml`, mainYaml.replaceAll('$DIR', dir));
  for (const [path, text] of Object.entries(extra)) writeFileSync(`${dir}/${path}`, text.replaceAll('$DIR', dir));
  const lockPath = `${dir}/run/agent.lock`;
  const agent = async (...argv: string[]) => {
    // The lock in the testdir, not /run; no journal entries from unit tests.
    const c = capture({ BRINE_LOCK: lockPath, BRINE_JOURNAL: '0', BRINE_REACTIONS: `${lockPath}.reactions` });
    const code = await main(argv, c.io);
    return { code, out: c.out(), err: c.err() };
  };
  return { dir, lockPath, conf: `${dir}/out/app.conf`, agent };
}

t.test('version and help exit 0', async (t) => {
  const { agent } = project(t);
  t.same(await agent('version'), { code: 0, out: `brine ${VERSION} (node ${process.version})\n`, err: '' });
  for (const argv of [[], ['help'], ['--help'], ['-h']]) {
    const r = await agent(...argv);
    t.equal(r.code, 0, argv.join(' ') || '(no arguments)');
    t.match(r.out, /^usage: agent COMMAND/);
  }
});

t.test('usage errors exit 1', async (t) => {
  const { dir, agent } = project(t);
  const unknown = await agent('aply', '--root', dir, '--env', 'staging');
  t.same(unknown, { code: 1, out: '', err: 'agent: unknown command "aply" (did you mean apply?)\n' });
  t.match(await agent('deploy'), { code: 1, err: 'agent: unknown command "deploy"\n' });
  const option = await agent('apply', '--tset');
  t.equal(option.code, 1);
  t.match(option.err, /^agent: Unknown option '--tset'/);
  t.match(option.err, /usage: agent COMMAND/, 'with the usage');
  t.match(await agent('validate', 'extra', '--root', dir), { code: 1, err: 'agent: unexpected argument "extra"\n' });
  t.match(await agent('apply', '--wait', 'soon', '--root', dir), { code: 1, err: /^agent: --wait expects seconds, got "soon"/ });
});

t.test('without --env, the environment comes from ROOT/environment', async (t) => {
  const { dir, agent } = project(t);
  const none = await agent('validate', '--root', dir);
  t.equal(none.code, 1);
  t.equal(none.err, `agent: no environment: pass --env ENV, or bootstrap this server (${dir}/environment is missing)\n`);
  writeFileSync(`${dir}/environment`, 'staging\n');
  t.match(await agent('validate', '--root', dir), { code: 0, out: /^valid: staging · / });
});

t.test('the root comes from --root, else BRINE_ROOT', async (t) => {
  const { dir, lockPath } = project(t);
  const c = capture({ BRINE_LOCK: lockPath, BRINE_JOURNAL: '0', BRINE_REACTIONS: `${lockPath}.reactions`, BRINE_ROOT: dir });
  t.equal(await main(['validate', '--env', 'staging'], c.io), 0);
  t.match(c.out(), /^valid: staging/);
});

t.test('validate', async (t) => {
  t.test('a valid tree: exit 0 and what was checked', async (t) => {
    const { dir, agent } = project(t);
    t.same(await agent('validate', '--root', dir, '--env', 'staging'), {
      code: 0,
      out: 'valid: staging · 1 state files · 1 states · pillar from 2 files\n',
      err: '',
    });
  });

  t.test('invalid states: exit 3, one line per error with file, line and key, nothing applied', async (t) => {
    const { dir, agent } = project(t, 'nginx:\n  pkg.instaled: []\n/etc/x:\n  file.managed:\n    - mode: 0980\n');
    t.same(await agent('validate', '--root', dir, '--env', 'staging'), {
      code: 3,
      out: '',
      err: [
        'error: states/main.yaml:2: nginx: unknown function pkg.instaled (did you mean pkg.installed?)',
        'error: states/main.yaml:5: /etc/x: mode: is not valid: a mode is 3 or 4 octal digits (0-7), such as 0640',
        'nothing was applied',
        '',
      ].join('\n'),
    });
  });

  t.test('an unknown environment: exit 3, naming the known ones', async (t) => {
    const { dir, agent } = project(t);
    const r = await agent('validate', '--root', dir, '--env', 'prod');
    t.equal(r.code, 3);
    t.equal(r.err, 'error: unknown environment "prod": there is no pillar/prod/ (known: production, staging)\nnothing was applied\n');
  });

  t.test('a pillar key the states need is missing: exit 3 naming the key', async (t) => {
    const { dir, agent } = project(t);
    const r = await agent('validate', '--root', dir, '--env', 'production');
    t.equal(r.code, 3);
    t.equal(r.err, 'error: states/main.yaml:3: pillar.secrets: undefined in the template (use pillar.get(key, default) for optional keys)\nnothing was applied\n');
  });
});

t.test('show prints the rendered states with secrets masked', async (t) => {
  const { dir, agent, conf } = project(t);
  const yaml = await agent('show', '--root', dir, '--env', 'staging');
  t.equal(yaml.code, 0);
  t.notMatch(yaml.out, SECRET);
  t.match(yaml.out, `token=${MASK}`);
  t.match(yaml.out, `id: ${conf}`);
  t.match(yaml.out, 'function: file.managed');
  const json = await agent('show', '--json', '--root', dir, '--env', 'staging');
  t.equal(json.code, 0);
  t.notMatch(json.out, SECRET);
  t.match(JSON.parse(json.out), [{ id: conf, function: 'file.managed', file: 'states/main.yaml:2', args: { contents: `token=${MASK}\n`, mode: '0600' } }]);
});

t.test("pillar on the command line (--pillar JSON, or Salt's pillar=JSON) is merged over the tree's, for this run only", async (t) => {
  const { dir, agent, conf } = project(t, '$DIR/out/app.conf:\n  file.managed:\n    - contents: "{{ pillar.project }} {{ pillar.get(\'rev\', \'none\') }}\\n"\n    - makedirs: true\n');
  t.equal((await agent('apply', '--root', dir, '--env', 'staging', '--pillar', '{"project": "other", "rev": "v2"}')).code, 0);
  t.equal(readFileSync(conf, 'utf8'), 'other v2\n');
  t.equal((await agent('apply', '--root', dir, '--env', 'staging', 'pillar={rev: v3}')).code, 0);
  t.equal(readFileSync(conf, 'utf8'), 'demo v3\n', 'YAML flow form; the tree\'s own values stay');
  t.equal((await agent('apply', '--root', dir, '--env', 'staging')).code, 0);
  t.equal(readFileSync(conf, 'utf8'), 'demo none\n', 'the next run is the tree\'s again');
  const bad = await agent('apply', '--root', dir, '--env', 'staging', '--pillar', '[1, 2]');
  t.equal(bad.code, 1);
  t.match(bad.err, /--pillar expects a mapping/);
});

t.test('apply --test: exit 0, says what would change, writes nothing', async (t) => {
  const { dir, agent, conf, lockPath } = project(t);
  const r = await agent('apply', '--test', '--root', dir, '--env', 'staging');
  t.equal(r.code, 0, r.err);
  t.notOk(existsSync(conf), 'the file is not written');
  t.notOk(existsSync(`${dir}/out`), 'nor its directory');
  t.match(r.out, /^brine apply --test · staging · 1 states\n/);
  t.match(r.out, `? file.managed       ${conf}`);
  t.match(r.out, `+token=${MASK}`, 'the diff is shown, masked');
  t.notMatch(r.out, SECRET);
  t.match(r.out, /Summary: 1 succeeded, 1 would change, 0 failed · 1 states in /);
  t.notOk(existsSync(lockPath), 'the lock is released');
});

t.test('apply: exit 0, writes the file; a second apply changes nothing', async (t) => {
  const { dir, agent, conf, lockPath } = project(t);
  const first = await agent('apply', '--root', dir, '--env', 'staging');
  t.equal(first.code, 0, first.err);
  t.equal(readFileSync(conf, 'utf8'), `token=${SECRET}\n`, 'the real value is written');
  t.equal(statSync(conf).mode & 0o777, 0o600);
  t.match(first.out, /Summary: 1 succeeded, 1 changed, 0 failed/);
  t.notMatch(first.out, SECRET);
  t.notOk(existsSync(lockPath), 'the lock is released');
  const second = await agent('apply', '--root', dir, '--env', 'staging');
  t.equal(second.code, 0);
  t.match(second.out, /Summary: 1 succeeded, 0 changed, 0 failed/);
});

t.test('apply --json prints one masked JSON document', async (t) => {
  const { dir, agent, conf } = project(t);
  const r = await agent('apply', '--json', '--root', dir, '--env', 'staging');
  t.equal(r.code, 0);
  t.notMatch(r.out, SECRET);
  const doc = JSON.parse(r.out) as { summary: unknown; states: unknown[] };
  t.match(doc, { summary: { env: 'staging', test: false, startedBy: 'hand', total: 1, changed: 1, failed: 0 }, states: [{ id: conf, status: 'changed' }] });
});

t.test('apply with a state that fails: exit 2, the other states still run', async (t) => {
  const { dir, agent } = project(t, '$DIR/missing/x.conf:\n  file.managed:\n    - contents: x\n$DIR/ok.conf:\n  file.managed:\n    - contents: ok\n');
  const r = await agent('apply', '--root', dir, '--env', 'staging');
  t.equal(r.code, 2);
  t.match(r.out, `directory ${dir}/missing does not exist (set makedirs: true to create it)`);
  t.equal(readFileSync(`${dir}/ok.conf`, 'utf8'), 'ok');
});

t.test('apply on an invalid tree: exit 3, nothing written, the lock never taken', async (t) => {
  const { dir, agent, lockPath } = project(t, '$DIR/a.conf:\n  file.managed:\n    - contents: a\n$DIR/b.conf:\n  file.managed:\n    - content: b\n');
  const r = await agent('apply', '--root', dir, '--env', 'staging');
  t.equal(r.code, 3);
  t.equal(r.err, `error: states/main.yaml:6: ${dir}/b.conf: content: unknown argument (did you mean contents?)\nnothing was applied\n`);
  t.notOk(existsSync(`${dir}/a.conf`));
  t.notOk(existsSync(lockPath));
});

t.test('apply while another run holds the lock: exit 4, nothing written', async (t) => {
  const { dir, agent, conf, lockPath } = project(t);
  const other = new Lock(lockPath);
  await other.acquire('agent apply --cron', 0);
  t.teardown(() => other.release());
  const r = await agent('apply', '--wait', '0', '--root', dir, '--env', 'staging');
  t.equal(r.code, 4);
  t.match(r.err, `agent: another run holds the lock (pid ${process.pid}, \`agent apply --cron\``);
  t.notOk(existsSync(conf));
});

t.test('apply --only', async (t) => {
  const states = 'a:\n  file.managed:\n    - name: $DIR/a.conf\n    - contents: a\nb:\n  file.managed:\n    - name: $DIR/b.conf\n    - contents: b\n    - require:\n      - a\nc:\n  file.managed:\n    - name: $DIR/c.conf\n    - contents: c\n';

  t.test('runs the named states and what they depend on', async (t) => {
    const { dir, agent } = project(t, states);
    const r = await agent('apply', '--only', 'b', '--root', dir, '--env', 'staging');
    t.equal(r.code, 0, r.err);
    t.same(['a', 'b', 'c'].map((n) => existsSync(`${dir}/${n}.conf`)), [true, true, false]);
  });

  t.test('an unknown state is a usage error with a suggestion', async (t) => {
    const { dir, agent } = project(t, states.replace(/^c:/m, 'cache:'));
    t.match(await agent('apply', '--only', 'cahce', '--root', dir, '--env', 'staging'), { code: 1, err: 'agent: --only: no state "cahce" (did you mean cache?)\n' });
  });
});

t.test('a pillar secret that YAML reads as an alias is not printed', async (t) => {
  const { dir, agent } = project(t);
  writeFileSync(`${dir}/pillar/staging/secrets.yaml`, 'secrets:\n  TOKEN: *Xk9star4471\n');
  const r = await agent('validate', '--root', dir, '--env', 'staging');
  t.equal(r.code, 3, 'exit 3');
  t.notMatch(r.err, 'Xk9star4471', 'the secret is not printed');
});

t.test('__swap-tree puts the synced tree in place under the run lock', async (t) => {
  const dir = t.testdir({
    live: { states: { 'top.yaml': 'old\n' }, pillar: {}, environment: 'staging\n' },
    next: { states: { 'top.yaml': 'new\n' }, pillar: {}, environment: 'staging\n' },
    run: {},
  });
  const lockPath = `${dir}/run/agent.lock`;
  const swap = async () => {
    const c = capture({ BRINE_LOCK: lockPath, BRINE_JOURNAL: '0', BRINE_REACTIONS: `${lockPath}.reactions` });
    return { code: await main(['__swap-tree', `${dir}/next`, '--root', `${dir}/live`], c.io), err: c.err() };
  };
  // A run holds the lock: the swap waits for it.
  const holder = new Lock(lockPath);
  await holder.acquire('agent apply', 0);
  let done = false;
  const swapping = swap().then((r) => ((done = true), r));
  await new Promise((r) => setTimeout(r, 400));
  t.notOk(done, 'waits while a run holds the lock');
  t.equal(readFileSync(`${dir}/live/states/top.yaml`, 'utf8'), 'old\n', 'the live tree is untouched meanwhile');
  await holder.release();
  t.same(await swapping, { code: 0, err: '' });
  t.equal(readFileSync(`${dir}/live/states/top.yaml`, 'utf8'), 'new\n', 'then the new tree is live');
  t.notOk(existsSync(`${dir}/next`), 'the synced tree was moved, not copied');
  t.notOk(existsSync(`${dir}/live.old`), 'and the old one removed');
  t.notOk(existsSync(lockPath), 'the lock is released');

  const bad = capture({ BRINE_LOCK: lockPath });
  t.equal(await main(['__swap-tree', `${dir}/nothing`, '--root', `${dir}/live`], bad.io), 1, 'not a synced tree: usage error');
});
