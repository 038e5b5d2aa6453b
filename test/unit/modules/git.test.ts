// git.latest against real git and local bare repositories (file:// URLs: no SSH needed here; the
// SSH side, deploy key and pinned host key, is tested on a booted server in test/integration).
import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { accountFiles } from '../../../agent/accounts.js';
import type { Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { explain } from '../../../agent/git/run.js';
import { gitPaths, gitSshCommand, knownHostsName, knownHostsPath, sshHost } from '../../../agent/git/ssh.js';
import { gitModule } from '../../../agent/modules/git.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { Masker } from '../../../agent/secret.js';

const { latest } = gitModule.functions as Record<string, StateFunction>;

const noCommands: Runner = {
  async run(argv) {
    throw new Error(`git.latest went around simple-git: ${argv.join(' ')}`);
  },
};
const ctx: Context = { runner: noCommands, facts: new Facts(), masker: new Masker(), statesDir: '/srv/states', pillar: {}, env: 'test',
  renderTemplate: () => { throw new Error('no templates'); } };

function args(given: Record<string, unknown>): any {
  const value = Value.Default(latest.schema, structuredClone(given));
  if (!Value.Check(latest.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

const AUTHOR = ['-c', 'user.name=Test', '-c', 'user.email=test@example.com', '-c', 'init.defaultBranch=main', '-c', 'advice.detachedHead=false'];
function git(cwd: string, ...argv: string[]): string {
  return execFileSync('git', [...AUTHOR, ...argv], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: cwd, LC_ALL: 'C' } }).trim();
}

/** A bare repo with a history, and a work clone to push more to it. */
function makeRepo(dir: string) {
  git(dir, 'init', '--quiet', '--bare', 'remote.git');
  git(dir, 'init', '--quiet', 'work');
  const work = `${dir}/work`;
  git(work, 'remote', 'add', 'origin', `${dir}/remote.git`);
  const commit = (file: string, text: string, message: string) => {
    writeFileSync(`${work}/${file}`, text);
    git(work, 'add', file);
    git(work, 'commit', '--quiet', '-m', message);
    return git(work, 'rev-parse', 'HEAD');
  };
  const first = commit('README', 'one\n', 'first');
  git(work, 'tag', '-a', 'v1', '-m', 'release 1');
  const second = commit('README', 'two\n', 'second');
  git(work, 'push', '--quiet', 'origin', 'main', 'v1');
  return { url: `file://${dir}/remote.git`, work, first, second, commit, push: () => git(work, 'push', '--quiet', '--force', 'origin', 'HEAD:main') };
}

async function converge(a: any) {
  const current = await latest.check(a, ctx);
  const plan = latest.plan(current, a, ctx);
  if (plan.changes.length) await latest.apply(a, plan, current, ctx);
  const again = latest.plan(await latest.check(a, ctx), a, ctx);
  return { plan, again };
}

let dir = '';
t.beforeEach((t) => {
  dir = t.testdir({
    passwd: 'root:x:0:0:root:/root:/bin/bash\n',
    group: 'root:x:0:\n',
    known_hosts: {},
    srv: {},
  });
  accountFiles.passwd = `${dir}/passwd`;
  accountFiles.group = `${dir}/group`;
  gitPaths.knownHostsDir = `${dir}/known_hosts`;
});

t.test('clones a branch, tracking origin; a second run changes nothing', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/app/checkout`;
  const a = args({ name: repo.url, target, rev: 'main' });
  const { plan, again } = await converge(a);
  t.same(plan.changes, [
    { what: 'cloned', old: null, new: target },
    { what: 'revision', old: null, new: repo.second },
  ]);
  t.same(again.changes, []);
  t.equal(again.reason, `at ${repo.second.slice(0, 12)} (branch main)`);
  t.equal(readFileSync(`${target}/README`, 'utf8'), 'two\n');
  t.equal(git(target, 'symbolic-ref', '--short', 'HEAD'), 'main');
  t.equal(git(target, 'rev-parse', '--abbrev-ref', 'main@{upstream}'), 'origin/main');
  t.same(readdirSync(`${dir}/srv/app`), ['checkout'], 'no clone temp dir left behind');
});

t.test('rev defaults to HEAD: the remote default branch', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  const { plan, again } = await converge(args({ name: repo.url, target }));
  t.equal(plan.changes[1]!.new, repo.second);
  t.equal(again.reason, `at ${repo.second.slice(0, 12)} (branch main)`);
  t.equal(git(target, 'symbolic-ref', '--short', 'HEAD'), 'main');
});

t.test('a push to the branch is checked out by the next run', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  const a = args({ name: repo.url, target, rev: 'main' });
  await converge(a);
  const third = repo.commit('NEW', 'new file\n', 'third');
  repo.push();
  const { plan, again } = await converge(a);
  t.same(plan.changes, [{ what: 'revision', old: repo.second, new: third }]);
  t.same(again.changes, []);
  t.equal(readFileSync(`${target}/NEW`, 'utf8'), 'new file\n');

  // A force-push that moves the branch back is followed too.
  git(repo.work, 'reset', '--quiet', '--hard', repo.second);
  repo.push();
  const back = await converge(a);
  t.same(back.plan.changes, [{ what: 'revision', old: third, new: repo.second }]);
  t.notOk(existsSync(`${target}/NEW`));
});

t.test('a tag is checked out detached, at the commit an annotated tag points to', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  await converge(args({ name: repo.url, target, rev: 'main' }));
  const { plan, again } = await converge(args({ name: repo.url, target, rev: 'v1' }));
  t.same(plan.changes, [{ what: 'revision', old: repo.second, new: repo.first }]);
  t.equal(again.reason, `at ${repo.first.slice(0, 12)} (tag v1)`);
  t.equal(readFileSync(`${target}/README`, 'utf8'), 'one\n');
  t.equal(git(target, 'rev-parse', '--abbrev-ref', 'HEAD'), 'HEAD', 'detached');

  // Back to the branch: the local branch is checked out again.
  const toBranch = await converge(args({ name: repo.url, target, rev: 'main' }));
  t.same(toBranch.plan.changes, [
    { what: 'revision', old: repo.first, new: repo.second },
    { what: 'branch', old: '(detached)', new: 'main' },
  ]);
  t.equal(git(target, 'symbolic-ref', '--short', 'HEAD'), 'main');
});

t.test('a full or short sha is checked out detached; a fresh clone of a sha works too', async (t) => {
  const repo = makeRepo(dir);
  const full = await converge(args({ name: repo.url, target: `${dir}/srv/a`, rev: repo.first }));
  t.same(full.plan.changes, [
    { what: 'cloned', old: null, new: `${dir}/srv/a` },
    { what: 'revision', old: null, new: repo.first },
  ]);
  t.equal(full.again.reason, `at ${repo.first.slice(0, 12)} (commit ${repo.first})`);
  t.equal(readFileSync(`${dir}/srv/a/README`, 'utf8'), 'one\n');

  const short = repo.first.slice(0, 8);
  const s = await converge(args({ name: repo.url, target: `${dir}/srv/b`, rev: short }));
  t.same(s.plan.changes[1], { what: 'revision', old: null, new: short }, 'unknown until fetched');
  t.same(s.again.changes, []);
  t.equal(git(`${dir}/srv/b`, 'rev-parse', 'HEAD'), repo.first);

  // A commit pushed after the clone is fetched when asked for by sha.
  const third = repo.commit('X', 'x\n', 'third');
  repo.push();
  const later = await converge(args({ name: repo.url, target: `${dir}/srv/a`, rev: third }));
  t.same(later.plan.changes, [{ what: 'revision', old: repo.first, new: third }]);
  t.same(later.again.changes, []);
});

t.test('a rev that is neither branch, tag nor sha fails the check, naming it', async (t) => {
  const repo = makeRepo(dir);
  await t.rejects(latest.check(args({ name: repo.url, target: `${dir}/srv/x`, rev: 'no-such-branch' }), ctx), {
    message: `${repo.url} has no branch or tag "no-such-branch"`,
  });
  await t.rejects(latest.check(args({ name: `file://${dir}/nope.git`, target: `${dir}/srv/x` }), ctx), {
    message: /^git ls-remote failed: '.*\/nope\.git' does not appear to be a git repository$/,
  });
});

t.test('local changes fail the state unless force_reset; untracked files are kept', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  await converge(args({ name: repo.url, target, rev: 'main' }));
  writeFileSync(`${target}/README`, 'edited on the server\n');
  writeFileSync(`${target}/local.cfg`, 'untracked\n');
  const third = repo.commit('README', 'three\n', 'third');
  repo.push();

  const keep = args({ name: repo.url, target, rev: 'main' });
  const current = await latest.check(keep, ctx);
  t.throws(() => latest.plan(current, keep, ctx), {
    message: `${target} has local changes (M README); commit or discard them, or set force_reset: true to let brine discard them`,
  });
  t.equal(readFileSync(`${target}/README`, 'utf8'), 'edited on the server\n', 'nothing was touched');

  const { plan, again } = await converge(args({ name: repo.url, target, rev: 'main', force_reset: true }));
  t.same(plan.changes, [
    { what: 'local changes', old: ['M README'], new: 'discarded' },
    { what: 'revision', old: repo.second, new: third },
  ]);
  t.same(again.changes, []);
  t.equal(readFileSync(`${target}/README`, 'utf8'), 'three\n');
  t.equal(readFileSync(`${target}/local.cfg`, 'utf8'), 'untracked\n', 'untracked files are left alone');

  // Drift at the right revision: force_reset repairs it on the next run.
  writeFileSync(`${target}/README`, 'hot fix\n');
  const drift = await converge(args({ name: repo.url, target, rev: 'main', force_reset: true }));
  t.same(drift.plan.changes, [{ what: 'local changes', old: ['M README'], new: 'discarded' }]);
  t.equal(readFileSync(`${target}/README`, 'utf8'), 'three\n');
});

t.test('the target: an empty directory is cloned into; other content or another remote is refused', async (t) => {
  const repo = makeRepo(dir);
  mkdirSync(`${dir}/srv/empty`);
  const e = await converge(args({ name: repo.url, target: `${dir}/srv/empty` }));
  t.equal(e.plan.changes[0]!.what, 'cloned');
  t.equal(readFileSync(`${dir}/srv/empty/README`, 'utf8'), 'two\n');

  mkdirSync(`${dir}/srv/full`);
  writeFileSync(`${dir}/srv/full/index.html`, 'hi\n');
  await t.rejects(latest.check(args({ name: repo.url, target: `${dir}/srv/full` }), ctx), {
    message: `${dir}/srv/full exists and is not a git checkout (it has files but no .git); move it away or choose another target`,
  });

  const other = `file://${dir}/remote.git/`;
  const a = args({ name: other, target: `${dir}/srv/empty` });
  t.throws(() => latest.plan({ ...e, target: 'repo', head: null, branch: null, remote: repo.url, dirty: [], knownHosts: null, wanted: { kind: 'branch', name: 'main', sha: repo.second } }, a, ctx), {
    message: `${dir}/srv/empty is a checkout of ${repo.url}, not ${other}; move it away, or set force_reset: true to re-point it`,
  });
  const repointed = await converge(args({ name: other, target: `${dir}/srv/empty`, force_reset: true }));
  t.same(repointed.plan.changes, [{ what: 'remote', old: repo.url, new: other }]);
  t.equal(git(`${dir}/srv/empty`, 'config', 'remote.origin.url'), other);
});

t.test('a killed clone leaves nothing the next run trips on', async (t) => {
  const repo = makeRepo(dir);
  mkdirSync(`${dir}/srv/.checkout.brine-deadbeef/.git`, { recursive: true });
  await converge(args({ name: repo.url, target: `${dir}/srv/checkout` }));
  t.same(readdirSync(`${dir}/srv`), ['checkout']);
});

t.test('depth: a shallow clone', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  const { again } = await converge(args({ name: repo.url, target, depth: 1 }));
  t.same(again.changes, []);
  t.equal(git(target, 'rev-parse', '--is-shallow-repository'), 'true');
  t.equal(git(target, 'rev-list', '--count', 'HEAD'), '1');
});

t.test('known_hosts is written to a file of its own per target; the identity must exist', async (t) => {
  const repo = makeRepo(dir);
  const target = `${dir}/srv/checkout`;
  const line = '[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
  // (Fingerprint as `ssh-keygen -lf` prints it. validate refuses known_hosts for a non-SSH URL; check/apply just manage the file.)
  const a = args({ name: repo.url, target, known_hosts: [line] });
  const { plan, again } = await converge(a);
  t.same(plan.changes[0], {
    what: 'known_hosts',
    old: null,
    new: ['[git.example.com]:2222 ssh-ed25519 SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU'],
  });
  t.same(again.changes, []);
  const file = knownHostsPath(target);
  t.match(file, /-srv-checkout-[0-9a-f]{8}$/, 'named after the target, readable');
  t.equal(readFileSync(file, 'utf8'), `${line}\n`);
  t.equal(statSync(file).mode & 0o777, 0o644);

  const missing = args({ name: repo.url, target: `${dir}/srv/other`, identity: `${dir}/no-key` });
  const current = await latest.check(missing, ctx);
  const p = latest.plan(current, missing, ctx);
  t.same(p.changes[1], { what: 'revision', old: null, new: `HEAD (not asked yet: the identity ${dir}/no-key does not exist yet)` });
  await t.rejects(latest.apply(missing, p, current, ctx), {
    message: `the identity ${dir}/no-key does not exist (manage it with a file.managed state that this one requires)`,
  });
});

t.test('validate: known_hosts must be for the URL host; identity and known_hosts only for SSH', async (t) => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
  const v = (given: Record<string, unknown>) => latest.validate!(args({ target: '/srv/x', ...given }));
  t.same(v({ name: 'ssh://git@127.0.0.1:2222/srv/git/app.git', known_hosts: `[127.0.0.1]:2222 ${key}` }), []);
  t.same(v({ name: 'git@github.com:acme/app.git', known_hosts: [`github.com,140.82.112.3 ${key}`] }), []);
  t.same(v({ name: 'git@github.com:acme/app.git', known_hosts: [`*.com ${key}`] }), []);
  t.same(v({ name: 'ssh://git@127.0.0.1:2222/srv/git/app.git', known_hosts: `127.0.0.1 ${key}` }), [
    { key: 'known_hosts', message: 'no line is for [127.0.0.1]:2222, the host ssh will look up for ssh://git@127.0.0.1:2222/srv/git/app.git' },
  ]);
  t.same(v({ name: 'git@github.com:acme/app.git', known_hosts: 'github.com ssh-ed25519' }), [
    { key: 'known_hosts', message: 'line 1 is not a known_hosts line (HOST KEYTYPE BASE64KEY): "github.com ssh-ed25519"' },
  ]);
  t.same(v({ name: 'https://github.com/acme/app.git', identity: '/root/key' }), [
    { key: 'identity', message: 'identity is for SSH URLs; https://github.com/acme/app.git is not one' },
  ]);
});

t.test('URLs, the ssh command and error messages', async (t) => {
  t.same(sshHost('ssh://git@127.0.0.1:2222/srv/git/app.git'), { host: '127.0.0.1', port: 2222 });
  t.same(sshHost('ssh://git.example.com/app.git'), { host: 'git.example.com', port: 22 });
  t.same(sshHost('git@github.com:acme/app.git'), { host: 'github.com', port: 22 });
  t.same(sshHost('ssh://git@[::1]:22/app.git'), { host: '::1', port: 22 });
  t.equal(sshHost('https://github.com/acme/app.git'), null);
  t.equal(sshHost('file:///srv/git/app.git'), null);
  t.equal(sshHost('/srv/git/app.git'), null);
  t.equal(knownHostsName('127.0.0.1', 2222), '[127.0.0.1]:2222');
  t.equal(knownHostsName('github.com', 22), 'github.com');

  t.equal(
    gitSshCommand({ identity: '/srv/app/.ssh/deploy key', knownHostsFile: '/etc/brine/known_hosts.d/srv-app-1' }),
    "ssh -i '/srv/app/.ssh/deploy key' -o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/brine/known_hosts.d/srv-app-1 " +
      '-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o BatchMode=yes ' +
      '-o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=4',
  );
  t.equal(gitSshCommand({}).startsWith('ssh -o StrictHostKeyChecking=yes'), true, 'strict even with nothing pinned');

  const d = { url: 'ssh://git@127.0.0.1:2222/srv/git/app.git', target: '/srv/app/checkout', identity: '/srv/app/.ssh/deploy_key', pinned: true };
  const changed = [
    '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
    '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
    '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
    'The fingerprint for the ED25519 key sent by the remote host is',
    'SHA256:abcDEF123.',
    'Host key verification failed.',
    'fatal: Could not read from remote repository.',
  ].join('\n');
  t.equal(
    explain(['clone'], changed, d),
    'git clone: host key verification failed for [127.0.0.1]:2222: the key the server offered (SHA256:abcDEF123) is not the one pinned in known_hosts. ' +
      "If the server's key really changed, pin the new one (ssh-keyscan -p PORT HOST, checked out of band).",
  );
  t.equal(
    explain(['ls-remote'], 'git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n', d),
    "git ls-remote: [127.0.0.1]:2222 refused the key /srv/app/.ssh/deploy_key (Permission denied (publickey)): add its public half to the repository's deploy keys",
  );
  t.equal(explain(['clone'], 'Error: spawn git ENOENT\n    at …', d), 'git clone: git is not installed (add pkg.installed: git, required by this state)');
});
