import t from 'tap';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReleaseLog, holdOn, isGood, previousGood, type ReleaseRecord } from '../../../agent/releases/log.js';

function rec(id: string, status: ReleaseRecord['status'], extra: Partial<ReleaseRecord> = {}): ReleaseRecord {
  return { id, sha: `${id.slice(15)}${'0'.repeat(40)}`.slice(0, 40), subject: id, status, startedBy: 'hand', createdAt: '2026-12-02T10:00:00Z', updatedAt: '', phases: {}, ...extra };
}

t.test('the last line of a release wins; records come oldest first; a torn last line is skipped', async (t) => {
  const log = new ReleaseLog(join(t.testdir(), 'releases.jsonl'));
  t.same(await log.read(), [], 'no file: no releases');
  await log.put(rec('20261202100000-aaaaaaa', 'building'));
  await log.put(rec('20261202090000-bbbbbbb', 'active', { activatedAt: 'x' }));
  await log.put(rec('20261202100000-aaaaaaa', 'ready', { phases: { export: 12 } }));
  appendFileSync(log.path, '{"id":"20261202110000-ccccccc","sta'); // a run killed mid-write
  const records = await log.read();
  t.same(records.map((r) => [r.id, r.status]), [['20261202090000-bbbbbbb', 'active'], ['20261202100000-aaaaaaa', 'ready']]);
  t.equal(records[1]!.phases.export, 12);
  t.ok(records[1]!.updatedAt, 'put stamps updatedAt');
});

t.test('compact keeps one line per release, and only the latest of the removed ones', async (t) => {
  const log = new ReleaseLog(join(t.testdir(), 'releases.jsonl'));
  for (let i = 0; i < 3; i++) await log.put(rec('20261202100000-aaaaaaa', 'ready'));
  const removed = Array.from({ length: 60 }, (_, i) => rec(`2026120209${String(i).padStart(4, '0')}-ddddddd`, 'ready', { removed: true }));
  await log.compact([...removed, ...(await log.read())]);
  const lines = readFileSync(log.path, 'utf8').trim().split('\n');
  t.equal(lines.length, 51, '50 removed ones and the kept one');
  t.notOk(lines.some((l) => l.includes('20261202090000-')), 'the oldest removed ones are gone');
  t.same((await log.read()).at(-1)!.id, '20261202100000-aaaaaaa');
});

t.test('good releases, the rollback target, and holds', async (t) => {
  const records = [
    rec('20261202080000-1111111', 'ready', { activatedAt: 'x' }),
    rec('20261202083000-2222222', 'ready'), // built, never switched to: not good
    rec('20261202090000-3333333', 'failed'),
    rec('20261202093000-4444444', 'ready', { activatedAt: 'x', removed: true }),
    rec('20261202100000-5555555', 'active', { activatedAt: 'x' }),
    rec('20261202110000-6666666', 'rolled-back', { held: true, activatedAt: 'x' }),
  ];
  t.same(records.filter(isGood).map((r) => r.id.slice(15)), ['1111111', '5555555']);
  t.equal(previousGood(records, '20261202100000-5555555')?.id, '20261202080000-1111111', 'the last good one before the live one, skipping failed, unproven and removed ones');
  t.equal(previousGood(records, '20261202080000-1111111'), undefined, 'nothing before the oldest');
  t.equal(holdOn(records, records[5]!.sha)?.id, '20261202110000-6666666', 'a rolled-back release holds its sha');
  t.equal(holdOn(records, records[2]!.sha), undefined, 'a failed build does not hold (the next run tries again)');
  const retried = [...records, rec('20261202120000-6666666', 'failed', { sha: records[5]!.sha })];
  t.equal(holdOn(retried, records[5]!.sha), undefined, 'only the latest release of a sha decides');
});
