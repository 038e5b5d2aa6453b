import t from 'tap';
import { mkdirSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { layout, linkedRelease, newReleaseId, pointAt } from '../../../agent/releases/layout.js';

t.test('release ids: UTC time and short sha, sorted by age, unique', async (t) => {
  const now = new Date('2026-12-02T10:30:05.123Z');
  const sha = 'abc1234def5678abc1234def5678abc1234def56';
  t.equal(newReleaseId(sha, now, new Set()), '20261202103005-abc1234');
  t.equal(newReleaseId(sha, now, new Set(['20261202103005-abc1234'])), '20261202103005-abc1234-2');
  t.equal(newReleaseId(sha, now, new Set(['20261202103005-abc1234', '20261202103005-abc1234-2'])), '20261202103005-abc1234-3');
  t.ok(newReleaseId(sha, new Date('2026-12-02T09:00:00Z'), new Set()) < newReleaseId(sha, now, new Set()));
});

t.test('current and slots are relative links switched by rename, and a real directory is refused', async (t) => {
  const l = layout(t.testdir({ releases: { '20261202100000-aaaaaaa': {}, '20261202110000-bbbbbbb': {} }, slots: {} }));
  t.equal(await linkedRelease(l, l.current), null, 'no link yet');
  await pointAt(l, l.current, '20261202100000-aaaaaaa');
  t.equal(readlinkSync(l.current), 'releases/20261202100000-aaaaaaa');
  await pointAt(l, l.current, '20261202110000-bbbbbbb');
  t.equal(await linkedRelease(l, l.current), '20261202110000-bbbbbbb');
  await pointAt(l, join(l.slots, 'blue'), '20261202100000-aaaaaaa');
  t.equal(readlinkSync(join(l.slots, 'blue')), '../releases/20261202100000-aaaaaaa');
  t.equal(await linkedRelease(l, join(l.slots, 'blue')), '20261202100000-aaaaaaa');

  const other = layout(t.testdir({ current: { 'app.py': '' } }));
  await t.rejects(linkedRelease(other, other.current), /current is a directory, not a link: move it away/);
  const elsewhere = layout(t.testdir());
  mkdirSync(join(elsewhere.root, 'somewhere'));
  symlinkSync('somewhere', elsewhere.current);
  t.equal(await linkedRelease(elsewhere, elsewhere.current), null, 'a link to something that is not a release');
});
