import t from 'tap';
import type { Journal, JournalFields } from '../../../agent/journal.js';
import { JournalReporter } from '../../../agent/report/journal.js';
import { Masker, Secret } from '../../../agent/secret.js';
import { result } from '../result-fixture.js';

t.test('a run entry, an entry per state that changed, failed or was skipped; the rest listed in the run', async (t) => {
  const written: JournalFields[] = [];
  const journal: Journal = { available: true, write: async (e) => void written.push(...e), read: async () => [] };
  const masker = new Masker();
  masker.addFrom({ s: new Secret('hunter2-secret') });
  const r = new JournalReporter(journal, masker);
  r.on({ kind: 'run-start', runId: 'run-1', env: 'staging', test: false, startedBy: 'cron', states: 4 });
  r.on({ kind: 'state-result', result: result('/etc/motd', 'ok') });
  r.on({ kind: 'state-result', result: result('/srv/app/.env', 'changed', { changes: [{ what: 'content', diff: '-A=x\n+A=hunter2-secret' }] }) });
  r.on({ kind: 'state-result', result: result('migrate', 'not-needed') });
  r.on({ kind: 'state-result', result: result('/etc/nginx', 'failed', { comment: 'nginx -t failed; password hunter2-secret' }) });
  r.on({
    kind: 'run-end',
    summary: { runId: 'run-1', env: 'staging', test: false, startedBy: 'cron', total: 4, ok: 2, changed: 1, failed: 1, skipped: 0, notNeeded: 1, durationMs: 120 },
    results: [],
  });
  await new Promise((resolve) => setImmediate(resolve));
  t.same(written.map((e) => e.BRINE_EVENT), ['run-start'], "the run's start is written as it starts (a killed run still shows); the rest waits for the end");
  t.equal(written[0]!.BRINE_PID, process.pid);
  await r.close();
  t.same(written.map((e) => [e.BRINE_EVENT, e.BRINE_STATE_ID, e.BRINE_RESULT]), [
    ['run-start', undefined, undefined],
    ['state', '/srv/app/.env', 'changed'],
    ['state', '/etc/nginx', 'failed'],
    ['run-end', undefined, undefined],
  ]);
  for (const e of written) t.match(e, { BRINE_RUN_ID: 'run-1', BRINE_STARTED_BY: 'cron', BRINE_ENV: 'staging' }, 'every entry carries the run');
  t.same(JSON.parse(String(written[3]!.BRINE_UNCHANGED)), ['file.managed /etc/motd ok 3ms', 'file.managed migrate not-needed 3ms']);
  t.same(JSON.parse(String(written[1]!.BRINE_CHANGES)), [{ what: 'content', diff: '2 lines' }], 'a diff is summarized, never logged');
  t.match(written[2]!.MESSAGE, /failed: nginx -t failed; password \*{8}$/, 'messages are masked');
  t.notMatch(JSON.stringify(written), 'hunter2-secret');
});
