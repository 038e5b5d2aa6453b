import t from 'tap';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Runner } from '../../../agent/exec.js';
import { COMPLETE_MARKER, dependencyEntry, ensureEntry, linkEntry, type DependencySpec } from '../../../agent/releases/deps.js';
import { layout } from '../../../agent/releases/layout.js';
import type { Mirror } from '../../../agent/releases/mirror.js';
import { stepArgv, type StepContext } from '../../../agent/releases/steps.js';
import { Masker } from '../../../agent/secret.js';

const root = { name: 'root', uid: 0, gid: 0, home: '/root' };
const spec: DependencySpec = { path: '.venv', files: ['requirements.txt'], build: [['python3', '-m', 'venv', '.venv'], ['.venv/bin/pip', 'install', '-r', 'requirements.txt']] };

function mirror(files: Record<string, Record<string, string>>): Mirror {
  return { file: async (sha: string, path: string) => files[sha]?.[path] ?? null } as unknown as Mirror;
}

function builder() {
  const calls: { argv: readonly string[]; cwd?: string }[] = [];
  const runner: Runner = {
    async run(argv, options = {}) {
      calls.push({ argv, cwd: options.cwd });
      if (argv.includes('venv') && !argv.includes('env')) mkdirSync(join(options.cwd!, '.venv', 'bin'), { recursive: true });
      if (argv.includes('install')) writeFileSync(join(options.cwd!, '.venv', 'bin', 'flask'), '#!/srv/app/deps/...\n', { mode: 0o775 });
      return { code: 0, stdout: 'done\n', stderr: '' };
    },
  };
  return { runner, calls };
}

t.test('the key: the lock files, the interpreter version and the build commands, nothing else', async (t) => {
  const l = layout(t.testdir({ deps: {} }));
  const m = mirror({ a: { 'requirements.txt': 'flask==3\n' }, b: { 'requirements.txt': 'flask==3\n' }, c: { 'requirements.txt': 'flask==3.1\n' } });
  const a = await dependencyEntry(spec, l, m, 'a', 'Python 3.11.2');
  t.match(a.name, /^venv-[0-9a-f]{16}$/);
  t.equal((await dependencyEntry(spec, l, m, 'b', 'Python 3.11.2')).name, a.name, 'another commit with the same requirements.txt: the same entry');
  t.not((await dependencyEntry(spec, l, m, 'c', 'Python 3.11.2')).name, a.name, 'changed requirements');
  t.not((await dependencyEntry(spec, l, m, 'a', 'Python 3.12.1')).name, a.name, 'another interpreter');
  t.not((await dependencyEntry({ ...spec, build: [['python3', '-m', 'venv', '--system-site-packages', '.venv']] }, l, m, 'a', 'Python 3.11.2')).name, a.name, 'other build commands');
  await t.rejects(dependencyEntry(spec, l, mirror({ a: {} }), 'a', ''), /dependencies \.venv: requirements\.txt is not in commit a/);
});

t.test('built once where it stays, sealed and marked; then reused without running anything; a killed build is redone', async (t) => {
  const l = layout(t.testdir({ deps: {}, releases: { r1: {}, r2: { '.venv': { stale: '' } } } }));
  const m = mirror({ a: { 'requirements.txt': 'brine-greeting==1.0\n' } });
  const { runner, calls } = builder();
  const sc: StepContext = { runner, masker: new Masker(), as: root, env: { BRINE_RELEASE: 'r1' }, logFile: join(l.releases, 'r1.log'), timeoutMs: 60_000 };
  const entry = await dependencyEntry(spec, l, m, 'a', 'Python 3.11.2');
  t.equal(await ensureEntry(entry, m, 'a', root, sc), 'built');
  t.same(calls.map((c) => c.argv.slice(4)), spec.build, 'as root, no runuser; in the entry');
  t.ok(calls.every((c) => c.cwd === entry.dir));
  t.equal(readFileSync(join(entry.dir, 'requirements.txt'), 'utf8'), 'brine-greeting==1.0\n', 'the lock file is copied in');
  t.ok(existsSync(join(entry.dir, COMPLETE_MARKER)));
  t.equal(statSync(join(entry.dir, '.venv', 'bin', 'flask')).mode & 0o777, 0o755, 'sealed: nobody but root may write');
  t.equal(statSync(join(entry.dir, '.venv', 'bin', 'flask')).uid, 0);
  t.match(readFileSync(sc.logFile, 'utf8'), /\$ python3 -m venv \.venv {4}\(in .*\)\ndone\nexit 0 after/);

  const again = await dependencyEntry(spec, l, m, 'a', 'Python 3.11.2');
  t.ok(again.complete);
  t.equal(await ensureEntry(again, m, 'a', root, sc), 'reused');
  t.equal(calls.length, 2, 'nothing ran');

  await linkEntry(join(l.releases, 'r1'), again, root);
  await linkEntry(join(l.releases, 'r2'), again, root);
  t.equal(readlinkSync(join(l.releases, 'r2', '.venv')), join(entry.dir, '.venv'), "replaces what the export had there");
  t.ok(lstatSync(join(l.releases, 'r1', '.venv')).isSymbolicLink());

  // A build killed half-way leaves no marker: the entry is made again from scratch.
  const other = await dependencyEntry({ ...spec, path: 'env' , build: [['python3', '-m', 'venv', 'env']] }, l, m, 'a', 'x');
  mkdirSync(join(other.dir, 'env', 'half'), { recursive: true });
  await t.rejects(ensureEntry(other, m, 'a', root, sc), /the build steps made no env/, 'the fake builds .venv, not env: the leftover was removed first');
  t.notOk(existsSync(join(other.dir, 'env', 'half')));
});

t.test('steps run as the app user, the env file read by sh with the command as arguments', async (t) => {
  const dies = ['setpriv', '--pdeathsig', 'KILL', '--'];
  t.same(stepArgv(['npm', 'ci'], 'app'), [...dies, 'runuser', '-u', 'app', '--', ...dies, 'npm', 'ci'], 'runuser and the command both die with brine');
  t.same(stepArgv(['npm', 'ci'], 'root'), [...dies, 'npm', 'ci']);
  t.same(stepArgv(['flask', 'db', 'upgrade; rm -rf /'], 'app', '/srv/app/shared/.env'), [...dies, 'runuser', '-u', 'app', '--', ...dies, '/bin/sh', '-c', 'set -a; . "$0"; set +a; exec "$@"', '/srv/app/shared/.env', 'flask', 'db', 'upgrade; rm -rf /']);
});
