import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Journal } from '../../../agent/journal.js';
import { describeLastRun, runRecords } from '../../../agent/cli/history.js';

const us = (iso: string) => String(Date.parse(iso) * 1000);
const start = (id: string, iso: string, extra: Record<string, string> = {}) => ({ BRINE_EVENT: 'run-start', BRINE_RUN_ID: id, BRINE_ENV: 'staging', BRINE_STARTED_BY: 'cron', BRINE_TEST: '0', BRINE_STATES: '36', BRINE_PID: '999999', __REALTIME_TIMESTAMP: us(iso), ...extra });
const end = (id: string, iso: string, extra: Record<string, string> = {}) => ({ BRINE_EVENT: 'run-end', BRINE_RUN_ID: id, BRINE_ENV: 'staging', BRINE_STARTED_BY: 'cron', BRINE_TEST: '0', BRINE_TOTAL: '36', BRINE_CHANGED_COUNT: '1', BRINE_FAILED_COUNT: '0', BRINE_SKIPPED_COUNT: '0', BRINE_DURATION_MS: '800', __REALTIME_TIMESTAMP: us(iso), ...extra });
const journalOf = (entries: Record<string, string>[]): Journal => ({ available: true, write: async () => undefined, read: async () => entries });

t.test('a run is its start and its end; a start alone was interrupted, or is running if its process holds the lock', async (t) => {
  const lock = join(t.testdir(), 'agent.lock');
  const entries = [
    end('old', '2026-12-01T09:00:01Z'), // an agent that wrote no start
    start('a', '2026-12-02T10:00:00Z'), end('a', '2026-12-02T10:00:01Z'),
    start('b', '2026-12-02T10:15:00Z'),
    start('c', '2026-12-02T10:30:00Z'), end('c', '2026-12-02T10:30:02Z', { BRINE_FAILED_COUNT: '2' }),
    start('d', '2026-12-02T10:45:00Z', { BRINE_PID: String(process.pid) }),
  ];
  const none = await runRecords(journalOf(entries), 20, lock);
  t.same(none.map((r) => [r.runId, r.result]), [['old', 'ok'], ['a', 'ok'], ['b', 'interrupted'], ['c', 'failed'], ['d', 'interrupted']]);
  t.equal(none[1]!.when, '2026-12-02T10:00:00.000Z', 'when it started');
  t.equal(none[2]!.total, 36, 'an interrupted run still says how many states it had');
  const stat = (await import('node:fs')).readFileSync(`/proc/${process.pid}/stat`, 'utf8');
  const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  writeFileSync(lock, JSON.stringify({ pid: process.pid, start: startTime, since: '', command: 'agent apply' }));
  const held = await runRecords(journalOf(entries), 20, lock);
  t.equal(held.at(-1)!.result, 'running', 'its process holds the run lock');
  t.equal((await runRecords(journalOf(entries), 2, lock)).length, 2, '--last');
  t.match(describeLastRun(none[2]), /^last run: 2026-12-02 10:15:00Z \(cron\): interrupted — it never finished/);
  t.match(describeLastRun(none[3]), /36 states, 1 changed, 2 failed, 0\.80s$/);
});
