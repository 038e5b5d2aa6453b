import t, { type Test } from 'tap';
import { Value } from '@sinclair/typebox/value';
import { join } from 'node:path';
import { accountFiles } from '../../../agent/accounts.js';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { userModule } from '../../../agent/modules/user.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { MASK, Masker } from '../../../agent/secret.js';

const PASSWD = `root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
`;

// alice is also listed in her own primary group: membership of it is implied, never a change.
const GROUP = `root:x:0:
sudo:x:27:alice
docker:x:999:
alice:x:1000:alice
bob:x:1001:
developers:x:2000:alice,bob
`;

const HASH = '$y$j9T$abcdefghijklmnop$0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef';
const OTHER_HASH = '$y$j9T$zyxwvutsrqponmlk$fedcbaZYXWVUTSRQPONMLKJIHGFEDCBA9876543210';

interface Call {
  argv: string[];
  input?: string;
}

/** A Runner that records every command and answers from a script (default: success, no output). */
function fakeRunner(script: (argv: readonly string[]) => Partial<RunResult> | undefined = () => undefined) {
  const calls: Call[] = [];
  const runner: Runner = {
    async run(argv: readonly string[], options: RunOptions = {}) {
      calls.push(options.input === undefined ? { argv: [...argv] } : { argv: [...argv], input: options.input });
      const result = { code: 0, stdout: '', stderr: '', ...script(argv) };
      if (result.code !== 0 && !options.allowFailure) throw new Error(`${argv.join(' ')} exited ${result.code}`);
      return result;
    },
  };
  return { runner, calls };
}

/** Shadow lookups answer with this hash for alice. */
function shadowOf(hash: string) {
  return (argv: readonly string[]) =>
    argv[0] === 'getent' ? { stdout: `${argv[2]}:${hash}:19700:0:99999:7:::\n` } : undefined;
}

function setup(t: Test, script?: (argv: readonly string[]) => Partial<RunResult> | undefined, files = { passwd: PASSWD, group: GROUP }) {
  const dir = t.testdir(files);
  const saved = { ...accountFiles };
  accountFiles.passwd = join(dir, 'passwd');
  accountFiles.group = join(dir, 'group');
  t.teardown(() => Object.assign(accountFiles, saved));
  const fake = fakeRunner(script);
  const ctx: Context = {
    runner: fake.runner,
    facts: new Facts(),
    masker: new Masker(),
    statesDir: dir,
    pillar: {},
    env: 'test',
    renderTemplate: () => {
      throw new Error('no templates');
    },
  };
  return { ctx, calls: fake.calls };
}

/** Arguments as the engine hands them over: schema defaults filled in, and valid. */
function argsFor(fn: StateFunction, raw: Record<string, unknown>): any {
  const args = Value.Default(fn.schema, structuredClone(raw));
  if (!Value.Check(fn.schema, args)) throw new Error(`invalid test args: ${JSON.stringify([...Value.Errors(fn.schema, args)][0])}`);
  return args;
}

/** check → plan → apply (when there is something to do), as the runner does; returns the plan. */
async function converge(fn: StateFunction, raw: Record<string, unknown>, ctx: Context) {
  const args = argsFor(fn, raw);
  const problems = fn.validate?.(args) ?? [];
  if (problems.length) throw new Error(`invalid test args: ${JSON.stringify(problems)}`);
  const current = await fn.check(args, ctx);
  const plan = fn.plan(current, args, ctx);
  if (plan.changes.length) await fn.apply(args, plan, current, ctx);
  return plan;
}

const present = userModule.functions.present!;
const absent = userModule.functions.absent!;

t.test('user.present creates a missing user with its groups', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(
    present,
    { name: 'carol', uid: 1002, shell: '/bin/bash', fullname: 'Carol Danvers', groups: ['sudo', 'developers'], password: HASH },
    ctx,
  );
  t.strictSame(plan, {
    changes: [
      { what: 'user', old: null, new: 'carol' },
      { what: 'uid', old: null, new: 1002 },
      { what: 'home', old: null, new: '/home/carol' },
      { what: 'shell', old: null, new: '/bin/bash' },
      { what: 'fullname', old: null, new: 'Carol Danvers' },
      { what: 'groups', old: [], new: ['developers', 'sudo'] },
      { what: 'password', old: null, new: MASK },
    ],
    reason: undefined,
  });
  t.strictSame(calls, [
    { argv: ['useradd', '-u', '1002', '-d', '/home/carol', '-m', '-s', '/bin/bash', '-c', 'Carol Danvers', '-G', 'developers,sudo', 'carol'] },
    { argv: ['chpasswd', '-e'], input: `carol:${HASH}\n` },
  ]);
});

t.test('user.present on a matching user plans nothing', async (t) => {
  const { ctx, calls } = setup(t, shadowOf(HASH));
  const plan = await converge(
    present,
    {
      name: 'alice',
      uid: 1000,
      gid: 'alice',
      home: '/home/alice',
      shell: '/bin/bash',
      fullname: 'Alice',
      groups: ['developers', 'sudo', 'alice'],
      password: HASH,
    },
    ctx,
  );
  t.strictSame(plan, { changes: [], reason: 'the user is in the correct state' });
  t.strictSame(calls, [{ argv: ['getent', 'shadow', 'alice'] }], 'only the password is read');
});

t.test('user.present converges shell, home, uid, groups and full name of an existing user', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(
    present,
    { name: 'alice', uid: 1005, home: '/srv/alice', shell: '/bin/zsh', fullname: 'Alice Liddell', groups: ['developers', 'docker'] },
    ctx,
  );
  t.strictSame(plan.changes, [
    { what: 'uid', old: 1000, new: 1005 },
    { what: 'home', old: '/home/alice', new: '/srv/alice' },
    { what: 'shell', old: '/bin/bash', new: '/bin/zsh' },
    { what: 'fullname', old: 'Alice', new: 'Alice Liddell' },
    { what: 'groups', old: ['developers', 'sudo'], new: ['developers', 'docker'] },
  ]);
  t.strictSame(calls, [
    {
      argv: ['usermod', '-u', '1005', '-d', '/srv/alice', '-m', '-s', '/bin/zsh', '-c', 'Alice Liddell,,,', '-G', 'developers,docker', 'alice'],
    },
  ]);
});

t.test('user.present with an empty groups list removes every supplementary group', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'alice', groups: [] }, ctx);
  t.strictSame(plan.changes, [{ what: 'groups', old: ['developers', 'sudo'], new: [] }]);
  t.strictSame(calls, [{ argv: ['usermod', '-G', '', 'alice'] }]);
});

t.test('user.present with remove_groups false only adds the missing groups', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'alice', groups: ['docker', 'sudo'], remove_groups: false }, ctx);
  t.strictSame(plan.changes, [{ what: 'groups', old: ['developers', 'sudo'], new: ['developers', 'docker', 'sudo'] }]);
  t.strictSame(calls, [{ argv: ['usermod', '-a', '-G', 'docker', 'alice'] }]);
});

t.test('user.present leaves attributes the state does not mention', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'bob' }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the user is in the correct state' });
  t.strictSame(calls, []);
});

t.test('user.present sets the primary group by name or by number', async (t) => {
  const byName = setup(t);
  t.strictSame((await converge(present, { name: 'alice', gid: 'developers' }, byName.ctx)).changes, [{ what: 'gid', old: 'alice', new: 'developers' }]);
  t.strictSame(byName.calls, [{ argv: ['usermod', '-g', 'developers', 'alice'] }]);

  const byNumber = setup(t);
  t.strictSame((await converge(present, { name: 'alice', gid: 2000 }, byNumber.ctx)).changes, [{ what: 'gid', old: 1000, new: 2000 }]);
  t.strictSame(byNumber.calls, [{ argv: ['usermod', '-g', '2000', 'alice'] }]);

  const same = setup(t);
  t.strictSame((await converge(present, { name: 'alice', gid: 1000 }, same.ctx)).changes, []);
  t.strictSame(same.calls, []);
});

t.test('user.present changes a password that differs, without showing it', async (t) => {
  const { ctx, calls } = setup(t, shadowOf(OTHER_HASH));
  const plan = await converge(present, { name: 'alice', password: HASH }, ctx);
  t.strictSame(plan.changes, [{ what: 'password', old: MASK, new: MASK }]);
  t.strictSame(calls, [{ argv: ['getent', 'shadow', 'alice'] }, { argv: ['chpasswd', '-e'], input: `alice:${HASH}\n` }]);
  t.notOk(JSON.stringify(plan).includes('$y$'), 'no hash in the plan');
  t.notOk(calls.some((c) => c.argv.some((a) => a.includes('$y$'))), 'no hash on a command line');
});

t.test('user.present makes an existing group of the same name the new user\'s primary group', async (t) => {
  const { ctx, calls } = setup(t, undefined, { passwd: PASSWD, group: `${GROUP}dave:x:1003:\n` });
  await converge(present, { name: 'dave' }, ctx);
  t.strictSame(calls, [{ argv: ['useradd', '-g', 'dave', '-d', '/home/dave', '-m', 'dave'] }]);
});

t.test('user.present creates a system user without a home directory', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'app', system: true, createhome: false, home: '/srv/app', shell: '/usr/sbin/nologin' }, ctx);
  t.strictSame(plan.changes, [
    { what: 'user', old: null, new: 'app' },
    { what: 'home', old: null, new: '/srv/app' },
    { what: 'shell', old: null, new: '/usr/sbin/nologin' },
  ]);
  t.strictSame(calls, [{ argv: ['useradd', '-r', '-d', '/srv/app', '-M', '-s', '/usr/sbin/nologin', 'app'] }]);
});

t.test('user.present names the groups that do not exist and runs nothing', async (t) => {
  const { ctx, calls } = setup(t);
  const args = argsFor(present, { name: 'alice', gid: 'staff', groups: ['sudo', 'nosuch'] });
  const current = await present.check(args, ctx);
  const plan = present.plan(current, args, ctx);
  t.strictSame(plan.changes, [
    { what: 'gid', old: 'alice', new: 'staff' },
    { what: 'groups', old: ['developers', 'sudo'], new: ['nosuch', 'sudo'] },
  ]);
  await t.rejects(present.apply(args, plan, current, ctx), {
    message: 'groups nosuch, staff not found; create them first (group.present, and require it from this state)',
  });
  t.strictSame(calls, []);
});

t.test('user.present validate refuses a clear-text password and a bad full name, without echoing them', async (t) => {
  const problems = present.validate!(argsFor(present, { name: 'alice', password: 'hunter22', fullname: 'Alice: admin' }));
  t.strictSame(
    problems.map((p) => p.key),
    ['fullname', 'password'],
  );
  t.notOk(JSON.stringify(problems).includes('hunter22'));
  t.strictSame(present.validate!(argsFor(present, { name: 'alice', password: '!' })), [], 'a locked password is a valid hash');
});

t.test('user schemas refuse names that could be read as options', async (t) => {
  t.notOk(Value.Check(present.schema, { name: '-o', createhome: true, remove_groups: true, system: false }));
  t.notOk(Value.Check(absent.schema, { name: '--help', purge: false }));
  t.notOk(Value.Check(present.schema, { name: 'alice', createhome: true, remove_groups: true, system: false, colour: 'red' }), 'unknown args are refused');
});

t.test('user.absent removes an existing user and keeps the home', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(absent, { name: 'bob' }, ctx);
  t.strictSame(plan, { changes: [{ what: 'user', old: 'bob', new: null }] });
  t.strictSame(calls, [{ argv: ['userdel', 'bob'] }]);
});

t.test('user.absent with purge removes the home as well', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(absent, { name: 'bob', purge: true }, ctx);
  t.strictSame(plan, {
    changes: [
      { what: 'user', old: 'bob', new: null },
      { what: 'home', old: '/home/bob', new: null },
    ],
  });
  t.strictSame(calls, [{ argv: ['userdel', '-r', 'bob'] }]);
});

t.test('user.absent on a missing user plans nothing', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(absent, { name: 'zed' }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the user does not exist' });
  t.strictSame(calls, []);
});
