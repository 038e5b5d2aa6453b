import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chooseRemovals, removeReleases } from '../../../agent/releases/cleanup.js';
import { layout } from '../../../agent/releases/layout.js';
import type { ReleaseRecord } from '../../../agent/releases/log.js';

const id = (n: number) => `202612020${String(n).padStart(5, '0')}-aaaaaaa`;
function rec(n: number, status: ReleaseRecord['status'], extra: Partial<ReleaseRecord> = {}): ReleaseRecord {
  return { id: id(n), sha: 'a'.repeat(40), subject: '', status, startedBy: 'hand', createdAt: '', updatedAt: '', phases: {}, ...(status === 'active' || status === 'ready' ? { activatedAt: 'x' } : {}), ...extra };
}

t.test('keep N good releases, newest first; failed ones under their own limit never push a good one out', async (t) => {
  const records = [rec(1, 'ready'), rec(2, 'ready'), rec(3, 'failed'), rec(4, 'ready'), rec(5, 'failed'), rec(6, 'failed'), rec(7, 'active'), rec(8, 'failed')];
  const removals = chooseRemovals(records, { keep: 3, keepFailed: 2, protect: new Set([id(7)]) });
  t.same(removals.sort(), [id(1), id(3), id(5)].sort(), 'the 3 newest good (7, 4, 2) and the 2 newest failed (8, 6) stay');
});

t.test('the live release and the rollback target stay, whatever keep says', async (t) => {
  // An old release is live again after a rollback; newer good ones exist.
  const records = [rec(1, 'ready'), rec(2, 'active'), rec(3, 'ready'), rec(4, 'ready'), rec(5, 'rolled-back', { held: true })];
  const removals = chooseRemovals(records, { keep: 2, keepFailed: 0, protect: new Set([id(2), id(1)]) });
  t.same(removals.sort(), [id(3), id(4), id(5)].sort(), 'keep 2 is the live one (2) and its rollback target (1): they count first');
  t.same(chooseRemovals(records, { keep: 3, keepFailed: 0, protect: new Set([id(2), id(1)]) }).sort(), [id(3), id(5)].sort(), 'a third place goes to the newest other good one');
});

t.test('unfinished releases: one still marked building is left alone; a never-switched ready one counts as not good', async (t) => {
  const records = [rec(1, 'active'), rec(2, 'ready', { activatedAt: undefined }), rec(3, 'building'), rec(4, 'failed')];
  t.same(chooseRemovals(records, { keep: 5, keepFailed: 1, protect: new Set() }), [id(2)]);
});

t.test('removal renames aside then deletes, takes unused dependency entries along, and only warns when it cannot', async (t) => {
  const l = layout(t.testdir({
    releases: { [id(1)]: { 'app.py': '' }, [`${id(1)}.log`]: 'log', [id(2)]: { 'app.py': '' }, [id(3)]: {}, '.trash-old': { x: '' }, [`.${id(9)}.tmp`]: { half: '' } },
    deps: { 'venv-1111': { '.brine-complete': '' }, 'venv-2222': { '.brine-complete': '' }, 'venv-3333': {} },
  }));
  // rename onto a non-empty directory fails: the way a stuck release shows up
  mkdirSync(join(l.releases, `.trash-${id(3)}`));
  writeFileSync(join(l.releases, `.trash-${id(3)}`, 'busy'), '');
  // As the caller hands them over: the log already says the two are removed.
  const records = [rec(1, 'ready', { deps: ['venv-1111'], removed: true }), rec(2, 'active', { deps: ['venv-2222'] }), rec(3, 'ready', { deps: ['venv-3333'], removed: true })];
  const report = await removeReleases(l, [id(1), id(3)], records, 0, ['.venv']);
  t.same(report.removed, [id(1)]);
  t.equal(report.warnings.length, 1);
  t.match(report.warnings[0], new RegExp(`could not remove releases/${id(3)}`));
  t.notOk(existsSync(join(l.releases, id(1))), 'removed');
  t.notOk(existsSync(join(l.releases, `${id(1)}.log`)), 'its log too');
  t.ok(existsSync(join(l.releases, id(2))), 'the live one stays');
  t.notOk(existsSync(join(l.releases, '.trash-old')), 'trash an earlier run left is swept');
  t.notOk(existsSync(join(l.releases, `.${id(9)}.tmp`)), 'so is an export a killed run left');
  t.same(report.removedDeps, ['venv-1111'], 'the entry only the removed release used');
  t.ok(existsSync(join(l.deps, 'venv-3333')), 'the entry of the release that could not be removed stays');
});

t.test("a venv a release still links to stays, whatever the log says; a release the log calls removed is swept", async (t) => {
  const l = layout(t.testdir({ releases: { [id(1)]: {}, [id(2)]: {} }, deps: { 'venv-1111': {}, 'venv-9999': {} } }));
  // The live record was made up after the log was lost: no deps in it.
  const { symlinkSync } = await import('node:fs');
  symlinkSync(join(l.deps, 'venv-1111', '.venv'), join(l.releases, id(1), '.venv'));
  const records = [rec(1, 'active'), rec(2, 'ready', { removed: true })];
  const report = await removeReleases(l, [], records, 0, ['.venv']);
  t.same(report.removedDeps, ['venv-9999'], 'only the entry nothing links to');
  t.ok(existsSync(join(l.deps, 'venv-1111')));
  t.notOk(existsSync(join(l.releases, id(2))), 'a run killed after the log said removed: the next cleanup finishes');
});
