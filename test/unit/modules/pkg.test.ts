import t, { type Test } from 'tap';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import type { RunOptions, RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { Masker, Secret } from '../../../agent/secret.js';
import { aptCache, dpkgPaths, parseAptPolicy, parseDpkgQuery, pkgModule } from '../../../agent/modules/pkg.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { fakeRunner, type Answer } from '../fake-runner.js';


function context(runner: Runner, dir: string, masker = new Masker()): Context {
  return { runner, facts: new Facts(), masker, statesDir: dir, pillar: {},
    env: 'test',
    renderTemplate: () => { throw new Error('no templates'); } };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const { installed, latest, removed } = pkgModule.functions as Record<string, StateFunction>;

const DPKG_QUERY = ['dpkg-query', '-W', '-f', '${Package}\\t${Status}\\t${Version}\\n'];
const DPKG = [
  'nginx\tinstall ok installed\t1.22.1-9',
  'curl\tinstall ok installed\t7.88.1-10+deb12u5',
  'openssl\tinstall ok installed\t3.0.11-1~deb12u2',
  'apache2\tdeinstall ok config-files\t2.4.62-1~deb12u1',
  'libc6\tinstall ok installed\t2.36-9+deb12u7',
  '',
].join('\n');

function policy(candidates: Record<string, string>): string {
  return Object.entries(candidates)
    .map(([name, c]) => `${name}:\n  Installed: (none)\n  Candidate: ${c}\n  Version table:\n     ${c} 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n`)
    .join('');
}

const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };
const APT_OPTS = ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-o', 'DPkg::Lock::Timeout=300'];
const INSTALL = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...APT_OPTS];

/** A lists dir with one Packages index, fresh or an `ageMs` old. */
function lists(t: Test, ageMs = 0): string {
  const dir = t.testdir({ 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4': 'x', lock: '' });
  const when = (Date.now() - ageMs) / 1000;
  utimesSync(join(dir, 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4'), when, when);
  return dir;
}

// dpkg's journal: empty, as on a server no run was killed on (lists() takes the test's testdir).
const journal = mkdtempSync(join(tmpdir(), 'brine-dpkg-'));
t.teardown(() => rmSync(journal, { recursive: true, force: true }));
t.beforeEach((t) => {
  aptCache.listsDir = lists(t);
  aptCache.maxAgeMs = 60 * 60 * 1000;
  rmSync(journal, { recursive: true, force: true });
  mkdirSync(journal);
  dpkgPaths.updates = journal;
});

t.test('parsers: dpkg-query lines and apt-cache policy candidates', async (t) => {
  const dpkg = parseDpkgQuery(DPKG + 'libc6\tnot-installed ok not-installed\t\n');
  t.same(dpkg.get('nginx'), { state: 'installed', version: '1.22.1-9' });
  t.same(dpkg.get('apache2'), { state: 'config-files', version: '2.4.62-1~deb12u1' });
  t.same(dpkg.get('libc6'), { state: 'installed', version: '2.36-9+deb12u7' }, 'the installed architecture wins');
  const p = parseAptPolicy(policy({ git: '1:2.39.5-0+deb12u2' }) + 'gone:\n  Installed: (none)\n  Candidate: (none)\n');
  t.same([...p], [['git', '1:2.39.5-0+deb12u2'], ['gone', null]]);
});

t.test('several pkg states sharing one Facts read the packages with one dpkg-query', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2' }) }],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'nginx' });
  const b = args(installed, { name: 'tools', pkgs: ['curl', 'git'] });
  const c = args(removed, { name: 'apache2' });
  t.same(installed.plan(await installed.check(a, ctx), a, ctx), { changes: [], reason: 'nginx is installed' });
  t.same(installed.plan(await installed.check(b, ctx), b, ctx), {
    changes: [{ what: 'package git', old: null, new: '1:2.39.5-0+deb12u2' }],
  });
  t.same(removed.plan(await removed.check(c, ctx), c, ctx), { changes: [], reason: 'apache2 is not installed' });
  t.same(fake.argvs(), [DPKG_QUERY, ['apt-cache', 'policy', 'git']], 'one dpkg-query; apt-cache only for the missing package');
});

t.test('a package apt has no candidate for fails the check (in --test too), after refreshing stale lists', async (t) => {
  aptCache.listsDir = lists(t, 2 * 60 * 60 * 1000);
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: '' }],
    [['apt-get', 'update'], {}],
    [['apt-cache', 'showpkg'], { stdout: 'Package: newpkg\nVersions: \n\nReverse Depends: \nDependencies: \nProvides: \nReverse Provides: \n' }],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'newpkg' });
  await t.rejects(installed.check(a, ctx), { message: 'apt has no package newpkg (a typo, or its apt repository is not configured?)' });
  t.same(fake.argvs(), [DPKG_QUERY, ['apt-cache', 'policy', 'newpkg'], ['apt-get', 'update', '-q'], ['apt-cache', 'policy', 'newpkg'], ['apt-cache', 'showpkg', 'newpkg']]);
});

t.test('a virtual package is its provider: git-core installs git, and converges once git is there', async (t) => {
  const showpkg = 'Package: git-core\nVersions: \n\nReverse Depends: \nDependencies: \nProvides: \nReverse Provides: \ngit 1:2.39.5-0+deb12u2 (= )\n';
  const script: [string[], Answer][] = [
    [['apt-cache', 'policy', 'git-core'], { stdout: 'git-core:\n  Installed: (none)\n  Candidate: (none)\n' }],
    [['apt-cache', 'policy', 'git'], { stdout: policy({ git: '1:2.39.5-0+deb12u2' }) }],
    [['apt-cache', 'showpkg'], { stdout: showpkg }],
    [['apt-get', 'install'], {}],
  ];
  const fake = fakeRunner([[DPKG_QUERY, { stdout: DPKG }], ...script]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'git-core' });
  const current = await installed.check(a, ctx);
  const plan = installed.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'package git (for git-core)', old: null, new: '1:2.39.5-0+deb12u2' }] });
  await installed.apply(a, plan, current, ctx);
  t.same(fake.argvs().at(-1), [...INSTALL, 'git']);

  const after = fakeRunner([[DPKG_QUERY, { stdout: `${DPKG}git\tinstall ok installed\t1:2.39.5-0+deb12u2\n` }], ...script]);
  const ctx2 = context(after.runner, '/srv/states');
  t.same(installed.plan(await installed.check(a, ctx2), a, ctx2), { changes: [], reason: 'git is installed' }, 'the second run has nothing to do');

  const several = fakeRunner([[DPKG_QUERY, { stdout: DPKG }], [['apt-cache', 'policy'], { stdout: '' }], [['apt-cache', 'showpkg'], { stdout: 'Reverse Provides: \nexim4-daemon-light 4.96\npostfix 3.7\n' }]]);
  await t.rejects(installed.check(args(installed, { name: 'mail-transport-agent', refresh: false }), context(several.runner, '/srv/states')), {
    message: 'mail-transport-agent is a virtual package provided by exim4-daemon-light, postfix: name the one to install',
  });
});

t.test("pkgs with versions (Salt's - NAME: VERSION), and install_recommends", async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2' }) }],
    [['apt-get', 'install'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'tools', pkgs: ['git', { curl: '7.88.1-10+deb12u8' }, { nginx: '1.22.1-9' }], install_recommends: true });
  t.same(installed.validate!(a), []);
  const current = await installed.check(a, ctx);
  const plan = installed.plan(current, a, ctx);
  t.same(plan.changes, [
    { what: 'package git', old: null, new: '1:2.39.5-0+deb12u2' },
    { what: 'package curl', old: '7.88.1-10+deb12u5', new: '7.88.1-10+deb12u8' },
  ], 'nginx is at its pinned version already');
  await installed.apply(a, plan, current, ctx);
  t.same(fake.argvs().at(-1), ['apt-get', 'install', '-y', '-q', '--install-recommends', '--allow-downgrades', ...APT_OPTS, 'git', 'curl=7.88.1-10+deb12u8']);
  t.notOk(Value.Check(installed.schema, { name: 'x', pkgs: [{ a: '1', b: '2' }] }), 'one package per item');
});

t.test('applyBatch installs several pkg.installed states with one apt-get install, no update when lists are fresh', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', htop: '3.2.2-2', 'python3-flask': '2.2.2-3' }) }],
    [['apt-get', 'install'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const states = [
    args(installed, { name: 'git' }),
    args(installed, { name: 'web', pkgs: ['python3-flask', 'nginx'] }),
    args(installed, { name: 'htop' }),
  ];
  const items = [];
  for (const a of states) {
    const current = await installed.check(a, ctx);
    items.push({ args: a, current, plan: installed.plan(current, a, ctx) });
  }
  fake.calls.length = 0;
  await installed.applyBatch!(items, ctx);
  t.same(fake.argvs(), [[...INSTALL, 'git', 'python3-flask', 'htop']]);
  t.same(fake.calls[0]!.options.env, APT_ENV);
  t.equal(fake.calls[0]!.options.allowFailure, true);

  // The packages are read again after the change (the runner checks again after apply).
  fake.script.unshift([DPKG_QUERY, { stdout: DPKG + 'git\tinstall ok installed\t1:2.39.5-0+deb12u2\n' }]);
  const again = await installed.check(states[0], ctx);
  t.same(installed.plan(again, states[0], ctx), { changes: [], reason: 'git is installed' });
  t.same(fake.argvs()[1], DPKG_QUERY);
});

t.test('a stale apt cache causes exactly one apt-get update for several installs', async (t) => {
  aptCache.listsDir = lists(t, 2 * 60 * 60 * 1000);
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', htop: '3.2.2-2' }) }],
    [['apt-get', 'update'], {}],
    [['apt-get', 'install'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  for (const name of ['git', 'htop']) {
    const a = args(installed, { name });
    const current = await installed.check(a, ctx);
    await installed.apply(a, installed.plan(current, a, ctx), current, ctx);
  }
  t.same(
    fake.argvs().filter((a) => a[0] === 'apt-get'),
    [['apt-get', 'update', '-q'], [...INSTALL, 'git'], [...INSTALL, 'htop']],
  );
  t.same(fake.calls.find((c) => c.argv[1] === 'update')!.options.env, APT_ENV);
});

t.test('lists without any Packages index count as stale', async (t) => {
  aptCache.listsDir = t.testdir({ lock: '', partial: {} });
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', htop: '3.2.2-2' }) }],
    [['apt-get'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'git' });
  const current = await installed.check(a, ctx);
  await installed.apply(a, installed.plan(current, a, ctx), current, ctx);
  t.same(fake.argvs().filter((a) => a[0] === 'apt-get'), [['apt-get', 'update', '-q'], [...INSTALL, 'git']]);
});

t.test('refresh: true updates fresh lists once per run; refresh: false never updates', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', htop: '3.2.2-2' }) }],
    [['apt-get'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  for (const given of [{ name: 'git', refresh: true }, { name: 'htop', refresh: true }]) {
    const a = args(installed, given);
    const current = await installed.check(a, ctx);
    await installed.apply(a, installed.plan(current, a, ctx), current, ctx);
  }
  t.same(fake.argvs().filter((a) => a[0] === 'apt-get'), [['apt-get', 'update', '-q'], [...INSTALL, 'git'], [...INSTALL, 'htop']]);

  aptCache.listsDir = lists(t, 2 * 60 * 60 * 1000);
  const fake2 = fakeRunner(fake.script);
  const ctx2 = context(fake2.runner, '/srv/states');
  const a = args(installed, { name: 'git', refresh: false });
  const current = await installed.check(a, ctx2);
  await installed.apply(a, installed.plan(current, a, ctx2), current, ctx2);
  t.same(fake2.argvs().filter((a) => a[0] === 'apt-get'), [[...INSTALL, 'git']], 'stale, but refresh: false');
});

t.test('an install that fails because a package is unknown names it, and installs the others', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', ngnix: '1' }) }],
    [
      ['apt-get', 'install'],
      (argv) => (argv.includes('ngnix') ? { code: 100, stderr: 'Reading package lists...\nE: Unable to locate package ngnix\n' } : {}),
    ],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const items = [];
  for (const a of [args(installed, { name: 'ngnix' }), args(installed, { name: 'git' })]) {
    const current = await installed.check(a, ctx);
    items.push({ args: a, current, plan: installed.plan(current, a, ctx) });
  }
  fake.calls.length = 0;
  await t.rejects(installed.applyBatch!(items, ctx), {
    message:
      'apt-get install failed: package ngnix is unknown to apt (check the name, or add the repository that provides it) (the other packages were installed: git)',
  });
  t.same(fake.argvs(), [[...INSTALL, 'ngnix', 'git'], [...INSTALL, 'git']]);
});

t.test('an install that fails for another reason shows apt-get and its last lines, masked', async (t) => {
  const masker = new Masker();
  masker.addFrom(new Secret('s3cret'));
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ git: '1:2.39.5-0+deb12u2', htop: '3.2.2-2' }) }],
    [['apt-get', 'install'], { code: 100, stderr: 'E: Sub-process /usr/bin/dpkg returned an error code (1) s3cret\n' }],
  ]);
  const ctx = context(fake.runner, '/srv/states', masker);
  const a = args(installed, { name: 'git' });
  const current = await installed.check(a, ctx);
  await t.rejects(installed.apply(a, installed.plan(current, a, ctx), current, ctx), {
    message: `\`${[...INSTALL, 'git'].join(' ')}\` exited 100:\nE: Sub-process /usr/bin/dpkg returned an error code (1) ********`,
  });
});

t.test('pkg.installed with a version pins it, and may downgrade', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-get', 'install'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'nginx', version: '1.22.1-8' });
  const current = await installed.check(a, ctx);
  const plan = installed.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'package nginx', old: '1.22.1-9', new: '1.22.1-8' }] });
  await installed.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [DPKG_QUERY, ['apt-get', 'install', '-y', '-q', '--no-install-recommends', '--allow-downgrades', ...APT_OPTS, 'nginx=1.22.1-8']]);

  const same = args(installed, { name: 'nginx', version: '1.22.1-9' });
  t.same(installed.plan(await installed.check(same, ctx), same, ctx), { changes: [], reason: 'nginx is installed at 1.22.1-9' });
});

t.test('a version that apt does not have is named in the error', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-get', 'install'], { code: 100, stderr: "E: Version '9.9' for 'nginx' was not found\n" }],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(installed, { name: 'nginx', version: '9.9' });
  const current = await installed.check(a, ctx);
  await t.rejects(installed.apply(a, installed.plan(current, a, ctx), current, ctx), {
    message: 'apt-get install failed: version 9.9 of package nginx is not available (see apt-cache policy nginx)',
  });
});

t.test('pkg.latest reads candidates with one apt-cache policy and upgrades what is behind', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ openssl: '3.0.15-1~deb12u1', curl: '7.88.1-10+deb12u5', git: '1:2.39.5-0+deb12u2' }) }],
    [['apt-get', 'install'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(latest, { name: 'base', pkgs: ['openssl', 'curl', 'git'] });
  const current = await latest.check(a, ctx);
  const plan = latest.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'package openssl', old: '3.0.11-1~deb12u2', new: '3.0.15-1~deb12u1' },
      { what: 'package git', old: null, new: '1:2.39.5-0+deb12u2' },
    ],
  });
  await latest.apply(a, plan, current, ctx);
  t.same(fake.argvs(), [DPKG_QUERY, ['apt-cache', 'policy', 'openssl', 'curl', 'git'], [...INSTALL, 'openssl', 'git']]);
});

t.test('pkg.latest of up-to-date packages plans nothing', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ curl: '7.88.1-10+deb12u5' }) }],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(latest, { name: 'curl' });
  t.same(latest.plan(await latest.check(a, ctx), a, ctx), { changes: [], reason: 'curl is at the latest version' });
});

t.test('pkg.latest refreshes stale lists before it judges what is latest', async (t) => {
  aptCache.listsDir = lists(t, 2 * 60 * 60 * 1000);
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-cache', 'policy'], { stdout: policy({ curl: '7.88.1-10+deb12u5' }) }],
    [['apt-get', 'update'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(latest, { name: 'curl' });
  await latest.check(a, ctx);
  t.same(fake.argvs(), [['apt-get', 'update', '-q'], DPKG_QUERY, ['apt-cache', 'policy', 'curl']]);
});

t.test('pkg.removed removes installed packages with one apt-get remove', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-get', 'remove'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(removed, { name: 'old', pkgs: ['nginx', 'curl', 'apache2', 'nothere'] });
  const current = await removed.check(a, ctx);
  const plan = removed.plan(current, a, ctx);
  t.same(plan, {
    changes: [
      { what: 'package nginx', old: '1.22.1-9', new: null },
      { what: 'package curl', old: '7.88.1-10+deb12u5', new: null },
    ],
  });
  await removed.apply(a, plan, current, ctx);
  t.same(fake.argvs()[1], ['apt-get', 'remove', '-y', '-q', ...APT_OPTS, 'nginx', 'curl']);
  t.same(fake.calls[1]!.options.env, APT_ENV);
});

t.test('pkg.removed with purge: true purges what is left, config files included', async (t) => {
  const fake = fakeRunner([
    [DPKG_QUERY, { stdout: DPKG }],
    [['apt-get', 'purge'], {}],
  ]);
  const ctx = context(fake.runner, '/srv/states');
  const a = args(removed, { name: 'apache2', purge: true });
  const current = await removed.check(a, ctx);
  const plan = removed.plan(current, a, ctx);
  t.same(plan, { changes: [{ what: 'package apache2', old: 'config files', new: null }] });
  await removed.apply(a, plan, current, ctx);
  t.same(fake.argvs()[1], ['apt-get', 'purge', '-y', '-q', ...APT_OPTS, 'apache2']);
});

t.test('validate: version needs a single package, and name must be a package without pkgs', async (t) => {
  t.same(installed.validate!(args(installed, { name: 'web', pkgs: ['nginx'], version: '1' })), [
    { key: 'version', message: 'version applies to name:; pin packages of pkgs: as - NAME: VERSION' },
  ]);
  t.same(installed.validate!(args(installed, { name: 'web packages' })), [
    { key: 'name', message: '"web packages" is not a Debian package name (give name: or pkgs:)' },
  ]);
  t.same(installed.validate!(args(installed, { name: 'web packages', pkgs: ['nginx'] })), []);
  t.notOk(Value.Check(installed.schema, { name: 'x', pkgs: ['-o=evil'] }), 'a package name cannot look like an option');
});

t.test('a dpkg a killed run interrupted is repaired before apt runs, and the first package state says so', async (t) => {
  writeFileSync(join(journal, '0001'), ''); // what dpkg leaves when it is killed mid-unpack
  const half = DPKG.replace('nginx\tinstall ok installed\t1.22.1-9', 'nginx\tinstall ok half-configured\t1.22.1-9');
  const calls: string[][] = [];
  const runner: Runner = {
    async run(argv) {
      calls.push([...argv]);
      if (argv[0] === 'dpkg-query') return { code: 0, stdout: calls.some((c) => c[0] === 'dpkg') ? DPKG : half, stderr: '' };
      if (argv[0] === 'dpkg') rmSync(join(journal, '0001'), { force: true });
      if (argv[0] === 'apt-cache') return { code: 0, stdout: policy({ nginx: '1.22.1-9' }), stderr: '' };
      return { code: 0, stdout: '', stderr: '' };
    },
  };
  const ctx = context(runner, t.testdir());
  const a = args(installed, { name: 'nginx' });
  const b = args(installed, { name: 'curl' });
  const currentA = await installed.check(a, ctx);
  const planA = installed.plan(currentA, a, ctx);
  t.same(planA.changes[0], { what: 'dpkg', old: 'dpkg was interrupted (nginx not fully installed)', new: 'repaired (dpkg --configure -a, apt-get -f install)' });
  t.same(installed.plan(await installed.check(b, ctx), b, ctx).changes, [], 'said once per run: curl is fine');
  await installed.apply(a, planA, currentA, ctx);
  const run = calls.filter((c) => c[0] !== 'dpkg-query' && c[0] !== 'apt-cache');
  t.same(run.slice(0, 2), [
    ['dpkg', '--configure', '-a', '--force-confdef', '--force-confold'],
    ['apt-get', '-f', 'install', '-y', '-q', ...APT_OPTS],
  ], 'dpkg --configure -a, then apt-get -f install');
  t.same(installed.plan(await installed.check(a, context(runner, t.testdir())), a, ctx).changes, [], 'and then nginx is installed and nothing is interrupted');
});

t.test('the repair waits for a dpkg the killed run left running (it holds the lock)', async (t) => {
  writeFileSync(join(journal, '0001'), '');
  let attempts = 0;
  const runner: Runner = {
    async run(argv) {
      if (argv[0] === 'dpkg-query') return { code: 0, stdout: DPKG, stderr: '' };
      if (argv[0] === 'dpkg' && ++attempts < 3) return { code: 2, stdout: '', stderr: 'dpkg: error: dpkg database lock was locked by another process with pid 1502\n' };
      if (argv[0] === 'dpkg') rmSync(join(journal, '0001'), { force: true });
      if (argv[0] === 'apt-cache') return { code: 0, stdout: policy({ nginx: '1.22.1-9' }), stderr: '' };
      return { code: 0, stdout: '', stderr: '' };
    },
  };
  const ctx = context(runner, t.testdir());
  const a = args(installed, { name: 'curl' });
  const current = await installed.check(a, ctx);
  const plan = installed.plan(current, a, ctx);
  t.same(plan.changes.map((c) => c.what), ['dpkg'], 'curl is fine; dpkg is not');
  await installed.apply(a, plan, current, ctx);
  t.equal(attempts, 3, 'tried until the other dpkg let go of the lock');
});
