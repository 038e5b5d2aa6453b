import t, { type Test } from 'tap';
import { Value } from '@sinclair/typebox/value';
import { join } from 'node:path';
import { accountFiles } from '../../../agent/accounts.js';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { groupModule } from '../../../agent/modules/group.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { Masker } from '../../../agent/secret.js';

const PASSWD = `root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
`;

const GROUP = `root:x:0:
docker:x:999:
alice:x:1000:
bob:x:1001:
developers:x:2000:alice,bob
`;

/** A Runner that records every command; every command succeeds. */
function fakeRunner() {
  const calls: string[][] = [];
  const runner: Runner = {
    async run(argv: readonly string[], _options: RunOptions = {}): Promise<RunResult> {
      calls.push([...argv]);
      return { code: 0, stdout: '', stderr: '' };
    },
  };
  return { runner, calls };
}

function setup(t: Test) {
  const dir = t.testdir({ passwd: PASSWD, group: GROUP });
  const saved = { ...accountFiles };
  accountFiles.passwd = join(dir, 'passwd');
  accountFiles.group = join(dir, 'group');
  t.teardown(() => Object.assign(accountFiles, saved));
  const fake = fakeRunner();
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
  const current = await fn.check(args, ctx);
  const plan = fn.plan(current, args, ctx);
  if (plan.changes.length) await fn.apply(args, plan, current, ctx);
  return plan;
}

const present = groupModule.functions.present!;
const absent = groupModule.functions.absent!;

t.test('group.present creates a missing group with its gid and members', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'ops', gid: 3000, members: ['bob', 'alice'] }, ctx);
  t.strictSame(plan, {
    changes: [
      { what: 'group', old: null, new: 'ops' },
      { what: 'gid', old: null, new: 3000 },
      { what: 'members', old: [], new: ['alice', 'bob'] },
    ],
    reason: undefined,
  });
  t.strictSame(calls, [
    ['groupadd', '-g', '3000', 'ops'],
    ['gpasswd', '-M', 'alice,bob', 'ops'],
  ]);
});

t.test('group.present creates a system group', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'app', system: true }, ctx);
  t.strictSame(plan.changes, [{ what: 'group', old: null, new: 'app' }]);
  t.strictSame(calls, [['groupadd', '-r', 'app']]);
});

t.test('group.present on a matching group plans nothing', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'developers', gid: 2000, members: ['bob', 'alice'] }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the group is in the correct state' });
  t.strictSame(calls, []);
});

t.test('group.present converges the gid and members of an existing group', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'developers', gid: 2001, members: ['bob'] }, ctx);
  t.strictSame(plan.changes, [
    { what: 'gid', old: 2000, new: 2001 },
    { what: 'members', old: ['alice', 'bob'], new: ['bob'] },
  ]);
  t.strictSame(calls, [
    ['groupmod', '-g', '2001', 'developers'],
    ['gpasswd', '-M', 'bob', 'developers'],
  ]);
});

t.test('group.present with an empty member list removes every member', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'developers', members: [] }, ctx);
  t.strictSame(plan.changes, [{ what: 'members', old: ['alice', 'bob'], new: [] }]);
  t.strictSame(calls, [['gpasswd', '-M', '', 'developers']]);
});

t.test('group.present without members leaves the membership alone', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(present, { name: 'developers' }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the group is in the correct state' });
  t.strictSame(calls, []);
});

t.test('group.present names the members that are not users and runs nothing', async (t) => {
  const { ctx, calls } = setup(t);
  const args = argsFor(present, { name: 'ops', members: ['alice', 'zed'] });
  const current = await present.check(args, ctx);
  const plan = present.plan(current, args, ctx);
  t.strictSame(plan.changes, [
    { what: 'group', old: null, new: 'ops' },
    { what: 'members', old: [], new: ['alice', 'zed'] },
  ]);
  await t.rejects(present.apply(args, plan, current, ctx), {
    message: 'user zed not found; create them first (user.present, and require it from this state)',
  });
  t.strictSame(calls, []);
});

t.test('group schemas refuse names that could be read as options, and unknown args', async (t) => {
  t.notOk(Value.Check(present.schema, { name: '-r', system: false }));
  t.notOk(Value.Check(present.schema, { name: 'ops', system: false, members: ['--help'] }));
  t.notOk(Value.Check(present.schema, { name: 'ops', system: false, addusers: ['alice'] }));
  t.ok(Value.Check(present.schema, { name: 'www-data', system: false, members: [] }));
});

t.test('group.absent removes an existing group', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(absent, { name: 'docker' }, ctx);
  t.strictSame(plan, { changes: [{ what: 'group', old: 'docker', new: null }] });
  t.strictSame(calls, [['groupdel', 'docker']]);
});

t.test('group.absent on a missing group plans nothing', async (t) => {
  const { ctx, calls } = setup(t);
  const plan = await converge(absent, { name: 'nosuch' }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the group does not exist' });
  t.strictSame(calls, []);
});
