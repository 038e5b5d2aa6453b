import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, symlinkSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { assertNoLinks, removeTree, takeOver } from '../../../agent/releases/own.js';

const APP = 4242; // the app user's uid, as far as these files say
const OTHER = 4343;

t.test("takeOver makes the app's tree root's without following a link or opening a FIFO", async (t) => {
  // tap keeps one fixture directory per test: what is outside the tree lives elsewhere.
  const outside = mkdtempSync(join(tmpdir(), 'brine-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'precious.txt'), 'do not touch\n');
  chmodSync(join(outside, 'precious.txt'), 0o666);
  chownSync(join(outside, 'precious.txt'), APP, APP);
  const dir = t.testdir({ venv: { bin: { python: '#!', 'suid-tool': 'x' }, lib: { 'mod.py': '' } }, 'theirs.txt': '' });
  for (const p of ['', 'venv', 'venv/bin', 'venv/bin/python', 'venv/bin/suid-tool', 'venv/lib', 'venv/lib/mod.py']) chownSync(join(dir, p), APP, APP);
  chmodSync(join(dir, 'venv/bin/suid-tool'), 0o4777);
  chmodSync(join(dir, 'venv/lib'), 0o777);
  chownSync(join(dir, 'theirs.txt'), OTHER, OTHER); // a hard link to someone else's file, say
  symlinkSync(outside, join(dir, 'venv', 'escape'));
  symlinkSync(join(outside, 'precious.txt'), join(dir, 'venv', 'bin', 'link'));
  execFileSync('mkfifo', [join(dir, 'venv', 'fifo')]);

  await takeOver(dir, APP, { readable: true });
  const st = (p: string) => statSync(join(dir, p));
  t.same([st('venv/bin/suid-tool').uid, st('venv/bin/suid-tool').mode & 0o7777], [0, 0o755], 'root-owned, set-id gone, not writable by others');
  t.equal(st('venv/lib').mode & 0o777, 0o755);
  t.equal(st('venv/lib/mod.py').mode & 0o777, 0o644, 'readable');
  t.equal(lstatSync(join(dir, 'venv', 'escape')).uid, 0, 'links themselves are root-owned');
  t.same([statSync(join(outside, 'precious.txt')).uid, statSync(join(outside, 'precious.txt')).mode & 0o777], [APP, 0o666], 'what links point at is untouched');
  t.equal(st('theirs.txt').uid, OTHER, "another user's file is left as it is");
});

t.test('removeTree removes what the app wrote, not what its links point at', async (t) => {
  const outside = mkdtempSync(join(tmpdir(), 'brine-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'precious.txt'), 'x');
  const dir = join(t.testdir(), 'release');
  mkdirSync(join(dir, 'a'), { recursive: true });
  writeFileSync(join(dir, 'a', 'f'), '');
  symlinkSync(outside, join(dir, 'a', 'escape'));
  await removeTree(dir, APP);
  t.notOk(existsSync(dir));
  t.ok(existsSync(join(outside, 'precious.txt')));
});

t.test('paths into a release must go through directories, not links the repository holds', async (t) => {
  const dir = t.testdir({ public: {}, etc: {} });
  symlinkSync('/etc', join(dir, 'conf'));
  await t.resolves(assertNoLinks(dir, 'public/uploads', 'shared'));
  await t.resolves(assertNoLinks(dir, 'not/made/yet', 'shared'));
  await t.resolves(assertNoLinks(dir, 'conf', 'shared'), 'the last part may be a link: it is replaced');
  await t.rejects(assertNoLinks(dir, 'conf/uploads', 'shared'), /shared conf\/uploads: conf is a link in the release; the path must go through directories only/);
});
