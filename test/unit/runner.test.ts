import t from 'tap';
import { Type } from '@sinclair/typebox';
import type { CompiledState } from '../../agent/compile.js';
import type { RunOptions as ProcessOptions, Runner as ProcessRunner } from '../../agent/exec.js';
import { Facts } from '../../agent/facts.js';
import { stateFunction, type Context, type StateFunction } from '../../agent/modules/types.js';
import type { RunEvent, StateResult } from '../../agent/report/events.js';
import { Runner } from '../../agent/runner.js';
import { Reactions, reactionPaths } from '../../agent/reactions.js';
import type { RequisiteKind } from '../../agent/sls.js';
import { MASK, Masker } from '../../agent/secret.js';

// The "system" is a map of name → value. A `thing.set` state wants `value` at `name`; every call
// the runner makes to a state function is logged, so tests can assert the exact sequence.
class FakeSystem {
  readonly values = new Map<string, string>();
  readonly log: string[] = [];
}

const SetArgs = Type.Object({ name: Type.String(), value: Type.String() });

type Overrides = Partial<Omit<StateFunction, 'schema'>>;

function setter(sys: FakeSystem, overrides: Overrides = {}): StateFunction {
  return stateFunction(SetArgs, {
    async check(args) {
      sys.log.push(`check ${args.name}`);
      return sys.values.get(args.name) ?? null;
    },
    plan(current, args) {
      sys.log.push(`plan ${args.name}`);
      return current === args.value
        ? { changes: [], reason: `${args.name} is ${args.value}` }
        : { changes: [{ what: 'value', old: current, new: args.value }] };
    },
    async apply(args) {
      sys.log.push(`apply ${args.name}`);
      sys.values.set(args.name, args.value);
    },
    ...overrides,
  });
}

/** A batchable function, as pkg.installed: applyBatch gets every ready state at once. */
function batchSetter(sys: FakeSystem, applyBatch?: StateFunction['applyBatch']): StateFunction {
  return setter(sys, {
    async apply() {
      throw new Error('apply must not be called for a batchable function');
    },
    applyBatch:
      applyBatch ??
      (async (items) => {
        sys.log.push(`batch ${items.map((i) => i.args.name).join(',')}`);
        for (const i of items) sys.values.set(i.args.name, i.args.value);
      }),
  });
}

/** States in definition order; `key` as compile builds it. */
class States {
  readonly list: CompiledState[] = [];
  add(id: string, fn: StateFunction, extra: { args?: Record<string, unknown>; conditions?: CompiledState['conditions']; module?: string; fn?: string } = {}): CompiledState {
    const module = extra.module ?? 'thing';
    const fnName = extra.fn ?? 'set';
    const s: CompiledState = {
      key: `${module}.${fnName}:${id}`,
      id,
      module,
      fn: fnName,
      args: { name: id, value: 'new', ...extra.args },
      argLines: {},
      requisites: [],
      conditions: extra.conditions ?? {},
      place: { file: 'states/main.yaml', line: this.list.length * 3 + 1 },
      index: this.list.length,
      function: fn,
      deps: [],
    };
    this.list.push(s);
    return s;
  }
}

function needs(state: CompiledState, kind: RequisiteKind, ...on: CompiledState[]): void {
  for (const d of on) state.deps.push({ kind, state: d });
}

/** Processes for unless/onlyif: the exit code of each command line, and every call recorded. */
function fakeProcesses(codes: Record<string, number> = {}) {
  const calls: { argv: string[]; options: ProcessOptions | undefined }[] = [];
  const runner: ProcessRunner = {
    async run(argv, options) {
      calls.push({ argv: [...argv], options });
      const line = argv.join(' ');
      if (!(line in codes)) throw new Error(`unexpected command: ${line}`);
      return { code: codes[line]!, stdout: '', stderr: '' };
    },
  };
  return { runner, calls };
}

async function run(states: States, options: { test?: boolean; processes?: ProcessRunner; masker?: Masker; reactions?: Reactions } = {}) {
  const events: RunEvent[] = [];
  const ctx: Context = {
    runner: options.processes ?? fakeProcesses().runner,
    facts: new Facts(),
    masker: options.masker ?? new Masker(),
    statesDir: '/srv/brine/states',
    pillar: {},
    env: 'staging',
    renderTemplate: () => {
      throw new Error('no templates here');
    },
  };
  const summary = await new Runner(states.list, ctx, { env: 'staging', test: options.test ?? false, startedBy: 'hand', reporters: [{ on: (e) => events.push(e) }], reactions: options.reactions, wholeTree: true }).run();
  const results: Record<string, StateResult> = {};
  for (const e of events) if (e.kind === 'state-result') results[e.result.id] = e.result;
  const status = (id: string) => results[id]?.status;
  return { summary, events, results, status };
}

t.test('a state that differs: check → plan → apply → check again → changed', async (t) => {
  const sys = new FakeSystem();
  const states = new States();
  states.add('a', setter(sys));
  const { summary, results } = await run(states);
  t.same(sys.log, ['check a', 'plan a', 'apply a', 'check a', 'plan a']);
  t.match(results.a, { key: 'thing.set:a', function: 'thing.set', name: 'a', status: 'changed', comment: 'changed', file: 'states/main.yaml', line: 1 });
  t.same(results.a!.changes, [{ what: 'value', old: null, new: 'new' }]);
  t.match(summary, { env: 'staging', test: false, startedBy: 'hand', total: 1, ok: 0, changed: 1, failed: 0, skipped: 0, notNeeded: 0 });
});

t.test('a state already correct is not applied; the plan says why', async (t) => {
  const sys = new FakeSystem();
  sys.values.set('a', 'new');
  const states = new States();
  states.add('a', setter(sys));
  const { results, summary } = await run(states);
  t.same(sys.log, ['check a', 'plan a']);
  t.match(results.a, { status: 'ok', comment: 'a is new', changes: [] });
  t.match(summary, { ok: 1, changed: 0 });
});

t.test('a plan that is still not empty after apply is a failure', async (t) => {
  const sys = new FakeSystem();
  const states = new States();
  states.add('a', setter(sys, { async apply() {} }));
  const { results, summary } = await run(states);
  t.match(results.a, { status: 'failed', comment: 'applied, but still differs: value' });
  t.same(results.a!.changes, [{ what: 'value', old: null, new: 'new' }], 'the attempted changes are reported');
  t.match(summary, { failed: 1, changed: 0 });
});

t.test('an apply or a check that throws fails that state only, with a masked message', async (t) => {
  const sys = new FakeSystem();
  const masker = new Masker();
  masker.add('hunter2');
  const states = new States();
  states.add('a', setter(sys, { async apply() { throw new Error('psql: password hunter2 refused'); } }));
  states.add('b', setter(sys, { async check() { throw new Error('cannot read b'); } }));
  states.add('c', setter(sys));
  const { results, summary } = await run(states, { masker });
  t.match(results.a, { status: 'failed', comment: `psql: password ${MASK} refused` });
  t.match(results.b, { status: 'failed', comment: 'cannot read b' });
  t.match(results.c, { status: 'changed' });
  t.match(summary, { failed: 2, changed: 1 });
});

t.test('test mode never applies and reports what would change', async (t) => {
  const sys = new FakeSystem();
  sys.values.set('b', 'new');
  const states = new States();
  states.add('a', setter(sys));
  states.add('b', setter(sys));
  const { results, summary } = await run(states, { test: true });
  t.same(sys.log, ['check a', 'plan a', 'check b', 'plan b']);
  t.match(results.a, { status: 'would-change', comment: 'would change' });
  t.same(results.a!.changes, [{ what: 'value', old: null, new: 'new' }]);
  t.match(results.b, { status: 'ok' });
  t.match(summary, { test: true, changed: 1, ok: 1 });
  t.equal(sys.values.has('a'), false);
});

t.test('require', async (t) => {
  t.test('on a failed state: skipped, and so are its own dependents; the others still run', async (t) => {
    const sys = new FakeSystem();
    const states = new States();
    const a = states.add('a', setter(sys, { async apply() { throw new Error('boom'); } }));
    const b = states.add('b', setter(sys));
    const c = states.add('c', setter(sys));
    states.add('d', setter(sys));
    needs(b, 'require', a);
    needs(c, 'require', b);
    const { results, summary } = await run(states);
    t.match(results.b, { status: 'skipped', comment: 'requisite failed: thing.set a' });
    t.match(results.c, { status: 'skipped', comment: 'requisite failed: thing.set b' });
    t.match(results.d, { status: 'changed' });
    t.notOk(sys.log.some((l) => / [bc]$/.test(l)), 'skipped states are not even checked');
    t.match(summary, { failed: 1, skipped: 2, changed: 1, total: 4 });
  });

  t.test('on a state that passed: runs', async (t) => {
    const sys = new FakeSystem();
    const states = new States();
    const a = states.add('a', setter(sys));
    needs(states.add('b', setter(sys)), 'require', a);
    const { status } = await run(states);
    t.equal(status('b'), 'changed');
  });
});

t.test('onchanges', async (t) => {
  const setup = (aAlreadyRight: boolean) => {
    const sys = new FakeSystem();
    if (aAlreadyRight) sys.values.set('a', 'new');
    const states = new States();
    const a = states.add('a', setter(sys));
    const other = states.add('other', setter(sys));
    sys.values.set('other', 'new');
    needs(states.add('b', setter(sys)), 'onchanges', other, a);
    return { sys, states };
  };

  t.test('runs when one of its requisites changed', async (t) => {
    const { states, sys } = setup(false);
    const { status } = await run(states);
    t.equal(status('b'), 'changed');
    t.ok(sys.log.includes('apply b'));
  });

  t.test('does not run when none changed', async (t) => {
    const { states, sys } = setup(true);
    const { results } = await run(states);
    t.match(results.b, { status: 'not-needed', comment: 'onchanges: no requisite changed' });
    t.notOk(sys.log.includes('check b'));
  });

  t.test('in test mode, runs (as would-change) when a requisite would change', async (t) => {
    const { states, sys } = setup(false);
    const { status } = await run(states, { test: true });
    t.equal(status('a'), 'would-change');
    t.equal(status('b'), 'would-change');
    t.notOk(sys.log.some((l) => l.startsWith('apply')));
  });

  t.test('in test mode, does not run when nothing would change', async (t) => {
    const { states } = setup(true);
    const { status } = await run(states, { test: true });
    t.equal(status('b'), 'not-needed');
  });
});

t.test('onfail', async (t) => {
  const setup = (aFails: boolean) => {
    const sys = new FakeSystem();
    const states = new States();
    const a = states.add('a', setter(sys, aFails ? { async apply() { throw new Error('boom'); } } : {}));
    needs(states.add('alert', setter(sys)), 'onfail', a);
    return { sys, states };
  };

  t.test('runs when its requisite failed, and is not skipped because of it', async (t) => {
    const { states } = setup(true);
    const { status, summary } = await run(states);
    t.equal(status('a'), 'failed');
    t.equal(status('alert'), 'changed');
    t.match(summary, { failed: 1, skipped: 0 });
  });

  t.test('does not run when its requisite succeeded', async (t) => {
    const { states, sys } = setup(false);
    const { results } = await run(states);
    t.match(results.alert, { status: 'not-needed', comment: 'onfail: no requisite failed' });
    t.notOk(sys.log.includes('check alert'));
  });

  t.test('a skipped requisite counts as failed', async (t) => {
    const sys = new FakeSystem();
    const states = new States();
    const broken = states.add('broken', setter(sys, { async check() { throw new Error('boom'); } }));
    const a = states.add('a', setter(sys));
    needs(a, 'require', broken);
    needs(states.add('alert', setter(sys)), 'onfail', a);
    const { status } = await run(states);
    t.equal(status('a'), 'skipped');
    t.equal(status('alert'), 'changed');
  });
});

t.test('watch', async (t) => {
  const setup = (confRight: boolean) => {
    const sys = new FakeSystem();
    if (confRight) sys.values.set('conf', 'new');
    sys.values.set('svc', 'new'); // the service itself is as it should be
    sys.values.set('other', 'new');
    let refreshes = 0;
    const states = new States();
    const conf = states.add('conf', setter(sys));
    const other = states.add('other', setter(sys));
    const svc = states.add(
      'svc',
      setter(sys, {
        async refresh(args) {
          refreshes++;
          sys.log.push(`refresh ${args.name}`);
          return 'restarted';
        },
      }),
      { module: 'service', fn: 'running' },
    );
    needs(svc, 'watch', conf, other);
    return { sys, states, refreshes: () => refreshes };
  };

  t.test('a watched state changed: refresh is called exactly once', async (t) => {
    const { states, sys, refreshes } = setup(false);
    const { results } = await run(states);
    t.equal(refreshes(), 1);
    t.match(results.svc, { status: 'changed', comment: 'restarted (watch: thing.set conf changed)' });
    t.same(results.svc!.changes, [{ what: 'restarted', old: null, new: 'watch: thing.set conf changed' }]);
    t.notOk(sys.log.includes('apply svc'));
  });

  t.test('nothing watched changed: no refresh', async (t) => {
    const { states, refreshes } = setup(true);
    const { status } = await run(states);
    t.equal(refreshes(), 0);
    t.equal(status('svc'), 'ok');
  });

  t.test('test mode: would-change with a refresh change, and no refresh', async (t) => {
    const { states, refreshes } = setup(false);
    const { results } = await run(states, { test: true });
    t.equal(refreshes(), 0);
    t.match(results.svc, { status: 'would-change', comment: 'would refresh (watch: thing.set conf changed)' });
    t.same(results.svc!.changes, [{ what: 'refresh', old: null, new: 'watch: thing.set conf changed' }]);
  });

  t.test('the watcher changed too (enabled, say): its apply did not restart it, so refresh after', async (t) => {
    const { states, sys, refreshes } = setup(false);
    sys.values.set('svc', 'old');
    const { results } = await run(states);
    t.equal(refreshes(), 1, 'refreshed once, after its own apply');
    t.same(sys.log.filter((l) => l.endsWith(' svc')), ['check svc', 'plan svc', 'apply svc', 'refresh svc', 'check svc', 'plan svc']);
    t.same(results.svc!.changes, [
      { what: 'value', old: 'old', new: 'new' },
      { what: 'restarted', old: null, new: 'watch: thing.set conf changed' },
    ]);
  });

  t.test("the watcher's apply (re)started it: no refresh on top", async (t) => {
    const { states, sys, refreshes } = setup(false);
    sys.values.set('svc', 'old');
    const svc = states.list[2]!;
    const inner = svc.function;
    svc.function = { ...inner, apply: async (...a) => (await inner.apply(...a), 'restarted' as const) };
    await run(states);
    t.equal(refreshes(), 0);
  });

  t.test('a watched state failed: skipped, no refresh', async (t) => {
    const { states, refreshes } = setup(false);
    states.list[0]!.function = setter(new FakeSystem(), { async apply() { throw new Error('disk full'); } });
    const { results } = await run(states);
    t.equal(refreshes(), 0);
    t.match(results.svc, { status: 'skipped', comment: 'requisite failed: thing.set conf' });
  });
});

t.test('conditions', async (t) => {
  const one = (conditions: CompiledState['conditions']) => {
    const sys = new FakeSystem();
    const states = new States();
    states.add('a', setter(sys), { conditions });
    return { sys, states };
  };

  t.test('unless: a command that succeeds means not needed; nothing is checked', async (t) => {
    const { states, sys } = one({ unless: ['test -f /srv/app/done'] });
    const processes = fakeProcesses({ 'test -f /srv/app/done': 0 });
    const { results } = await run(states, { processes: processes.runner });
    t.match(results.a, { status: 'not-needed', comment: 'unless: condition met' });
    t.same(sys.log, []);
    t.same(processes.calls, [{ argv: ['test', '-f', '/srv/app/done'], options: { allowFailure: true, timeoutMs: 120_000 } }], 'a string is split into words, no shell');
  });

  t.test('unless: runs when a command fails, even if another succeeds', async (t) => {
    const { states } = one({ unless: [['test', '-f', '/a'], 'test -f /b'] });
    const processes = fakeProcesses({ 'test -f /a': 0, 'test -f /b': 1 });
    const { status } = await run(states, { processes: processes.runner });
    t.equal(status('a'), 'changed');
    t.same(processes.calls.map((c) => c.argv), [['test', '-f', '/a'], ['test', '-f', '/b']], 'an argv list runs as it is; a string is split');
  });

  t.test('onlyif: a command that fails means not needed; when all succeed it runs', async (t) => {
    const failing = one({ onlyif: ['id app', ['test', '-d', '/srv/app']] });
    const r1 = await run(failing.states, { processes: fakeProcesses({ 'id app': 0, 'test -d /srv/app': 1 }).runner });
    t.match(r1.results.a, { status: 'not-needed', comment: 'onlyif: `test -d /srv/app` failed' });
    t.same(failing.sys.log, []);
    const passing = one({ onlyif: ['id app', ['test', '-d', '/srv/app']] });
    const r2 = await run(passing.states, { processes: fakeProcesses({ 'id app': 0, 'test -d /srv/app': 0 }).runner });
    t.equal(r2.status('a'), 'changed');
  });

  t.test('creates: not needed when every path exists, without running anything', async (t) => {
    const dir = t.testdir({ one: '', two: '' });
    const all = one({ creates: [`${dir}/one`, `${dir}/two`] });
    const processes = fakeProcesses();
    const r1 = await run(all.states, { processes: processes.runner });
    t.match(r1.results.a, { status: 'not-needed', comment: `creates: ${dir}/one, ${dir}/two exists` });
    t.same(processes.calls, []);
    const some = one({ creates: [`${dir}/one`, `${dir}/three`] });
    t.equal((await run(some.states)).status('a'), 'changed');
  });

  t.test('conditions are reads: they run in test mode too', async (t) => {
    const { states } = one({ unless: ['test -f /done'] });
    const processes = fakeProcesses({ 'test -f /done': 0 });
    const { status } = await run(states, { test: true, processes: processes.runner });
    t.equal(status('a'), 'not-needed');
    t.equal(processes.calls.length, 1);
  });

  t.test('a condition command that cannot run fails the state', async (t) => {
    const { states } = one({ unless: [['no-such-command']] });
    const { results } = await run(states, { processes: fakeProcesses().runner });
    t.match(results.a, { status: 'failed', comment: 'unexpected command: no-such-command' });
  });
});

t.test('an action (cmd.run) is not checked again after apply; its success is its own', async (t) => {
  const sys = new FakeSystem();
  const states = new States();
  states.add(
    'migrate',
    setter(sys, {
      action: true,
      plan(_current, args) {
        sys.log.push(`plan ${args.name}`);
        return { changes: [{ what: 'command', old: null, new: 'manage.py migrate' }] };
      },
    }),
  );
  const { results } = await run(states);
  t.same(sys.log, ['check migrate', 'plan migrate', 'apply migrate']);
  t.match(results.migrate, { status: 'changed', comment: 'ran' });
});

t.test('applyBatch', async (t) => {
  const pkg = { module: 'pkg', fn: 'installed' } as const;

  t.test('gets every ready state of the same function in one call; correct ones are left out', async (t) => {
    const sys = new FakeSystem();
    sys.values.set('p2', 'new');
    const fn = batchSetter(sys);
    const states = new States();
    states.add('p1', fn, pkg);
    states.add('other', setter(sys));
    states.add('p2', fn, pkg);
    states.add('p3', fn, pkg);
    const { results, events, summary } = await run(states);
    t.same(sys.log.filter((l) => l.startsWith('batch')), ['batch p1,p3']);
    t.same(
      sys.log.slice(0, 7),
      ['check p1', 'plan p1', 'check p2', 'plan p2', 'check p3', 'plan p3', 'batch p1,p3'],
      'the others are checked first, then applied together',
    );
    t.same(Object.fromEntries(Object.values(results).map((r) => [r.id, r.status])), { p1: 'changed', p2: 'ok', p3: 'changed', other: 'changed' });
    t.same(
      events.filter((e) => e.kind === 'state-start').map((e) => (e as { id: string }).id),
      ['p1', 'p2', 'p3', 'other'],
      'every batched state is announced',
    );
    t.match(summary, { total: 4, changed: 3, ok: 1 });
  });

  t.test('a state whose requisites are not done yet is not batched', async (t) => {
    const sys = new FakeSystem();
    const fn = batchSetter(sys);
    const states = new States();
    states.add('p1', fn, pkg);
    const repo = states.add('repo', setter(sys));
    needs(states.add('p2', fn, pkg), 'require', repo);
    states.add('p3', fn, pkg);
    await run(states);
    t.same(
      sys.log.filter((l) => /^(batch|apply)/.test(l)),
      ['batch p1,p3', 'apply repo', 'batch p2'],
    );
  });

  t.test('a requisite that is done and passed allows batching; a failed one does not', async (t) => {
    const sys = new FakeSystem();
    const fn = batchSetter(sys);
    const states = new States();
    const good = states.add('good', setter(sys));
    const bad = states.add('bad', setter(sys, { async apply() { throw new Error('boom'); } }));
    states.add('p1', fn, pkg);
    needs(states.add('p2', fn, pkg), 'require', good);
    needs(states.add('p3', fn, pkg), 'require', bad);
    const { status } = await run(states);
    t.same(sys.log.filter((l) => l.startsWith('batch')), ['batch p1,p2']);
    t.equal(status('p3'), 'skipped');
  });

  t.test('states with conditions, or with requisites other than require, are not batched', async (t) => {
    const sys = new FakeSystem();
    const fn = batchSetter(sys);
    const states = new States();
    const conf = states.add('conf', setter(sys));
    states.add('p1', fn, pkg);
    states.add('p2', fn, { ...pkg, conditions: { unless: [['false']] } });
    needs(states.add('p3', fn, pkg), 'watch', conf);
    await run(states, { processes: fakeProcesses({ false: 1 }).runner });
    t.same(sys.log.filter((l) => l.startsWith('batch')), ['batch p1', 'batch p2', 'batch p3']);
  });

  t.test('after a batch that throws, only the states that still differ fail, with its error', async (t) => {
    const sys = new FakeSystem();
    const masker = new Masker();
    const fn = batchSetter(sys, async (items) => {
      // apt installs what it can find and fails for the rest
      for (const i of items) if (i.args.name !== 'p2') sys.values.set(i.args.name, i.args.value);
      throw new Error('E: Unable to locate package p2');
    });
    const states = new States();
    states.add('p1', fn, pkg);
    states.add('p2', fn, pkg);
    states.add('p3', fn, pkg);
    const { results } = await run(states, { masker });
    t.match(results.p1, { status: 'changed' });
    t.match(results.p2, { status: 'failed', comment: 'E: Unable to locate package p2' });
    t.match(results.p3, { status: 'changed' });
  });

  t.test('an action that is batched and throws has failed', async (t) => {
    const sys = new FakeSystem();
    const fn = batchSetter(sys, async () => {
      throw new Error('could not run');
    });
    fn.action = true;
    const states = new States();
    states.add('r1', fn);
    const { results } = await run(states);
    t.equal(results.r1!.status, 'failed', 'failed');
  });
});

t.test('run events: run-start, then a start and a result per state, then run-end with every result', async (t) => {
  const sys = new FakeSystem();
  const states = new States();
  states.add('a', setter(sys));
  states.add('b', setter(sys), { conditions: { creates: ['/'] } });
  const { events, summary } = await run(states);
  t.same(
    events.map((e) => (e.kind === 'state-start' ? `start ${e.id}` : e.kind === 'state-result' ? `result ${e.result.id}` : e.kind)),
    ['run-start', 'start a', 'result a', 'start b', 'result b', 'run-end'],
  );
  t.match(events[0], { kind: 'run-start', env: 'staging', test: false, startedBy: 'hand', states: 2 });
  const end = events.at(-1)!;
  t.match(end, { kind: 'run-end', summary });
  if (end.kind === 'run-end') t.same(end.results.map((r) => r.status), ['changed', 'not-needed']);
  t.match(summary, { total: 2, changed: 1, ok: 1, notNeeded: 1, failed: 0, skipped: 0 });
});


t.test('a reaction that did not happen is owed: the next run does it, though nothing changed again', async (t) => {
  reactionPaths.file = `${t.testdir()}/reactions.json`;
  const sys = new FakeSystem();
  let failRefresh = true;
  const refreshes: string[] = [];
  const build = () => {
    const states = new States();
    const code = states.add('code', setter(sys));
    const app = states.add('app', setter(sys, {
      async refresh(args) {
        refreshes.push(args.name);
        if (failRefresh) throw new Error('the app did not come back');
        return 'restarted';
      },
    }));
    needs(app, 'watch', code);
    return states;
  };
  sys.values.set('app', 'new');
  const first = await run(build(), { reactions: await Reactions.load(false) });
  t.same([first.status('code'), first.status('app')], ['changed', 'failed'], 'the code changed, the restart failed');
  t.match((await Reactions.load(true)).owed('thing.set:app'), { reason: 'thing.set code changed' }, 'written down');

  failRefresh = false;
  const test = await run(build(), { test: true, reactions: await Reactions.load(true) });
  t.equal(test.status('app'), 'would-change', '--test says the restart is still owed');
  t.match(test.results.app!.comment, /would refresh \(pending since .*: thing\.set code changed\)/);

  const second = await run(build(), { reactions: await Reactions.load(false) });
  t.same([second.status('code'), second.status('app')], ['ok', 'changed'], 'nothing changed, and the app is restarted anyway');
  t.same(refreshes, ['app', 'app']);
  t.equal((await Reactions.load(true)).owed('thing.set:app'), undefined, 'and no longer owed');
  const third = await run(build(), { reactions: await Reactions.load(false) });
  t.equal(third.status('app'), 'ok', 'then all is quiet');
});

t.test('an onchanges state that failed runs the next time, though its requisite did not change again', async (t) => {
  reactionPaths.file = `${t.testdir()}/reactions.json`;
  const sys = new FakeSystem();
  let migrateFails = true;
  const build = () => {
    const states = new States();
    const code = states.add('code', setter(sys));
    const migrate = states.add('migrate', setter(sys, {
      async check() {
        return null;
      },
      plan() {
        return { changes: [{ what: 'command', old: null, new: 'migrate' }] };
      },
      async apply() {
        if (migrateFails) throw new Error('the database is down');
      },
      action: true,
    }));
    needs(migrate, 'onchanges', code);
    return states;
  };
  const first = await run(build(), { reactions: await Reactions.load(false) });
  t.same([first.status('code'), first.status('migrate')], ['changed', 'failed']);
  migrateFails = false;
  const second = await run(build(), { reactions: await Reactions.load(false) });
  t.same([second.status('code'), second.status('migrate')], ['ok', 'changed'], 'the migration that failed runs, though the code did not change again');
  const third = await run(build(), { reactions: await Reactions.load(false) });
  t.equal(third.status('migrate'), 'not-needed');
});
