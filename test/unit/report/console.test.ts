import t from 'tap';
import { ConsoleReporter, formatChange } from '../../../agent/report/console.js';
import type { StateResult } from '../../../agent/report/events.js';
import { Masker, Secret } from '../../../agent/secret.js';

const result = (over: Partial<StateResult>): StateResult => ({
  key: 'file.managed:/etc/motd',
  id: '/etc/motd',
  function: 'file.managed',
  name: '/etc/motd',
  status: 'ok',
  changes: [],
  comment: 'the file is in the correct state',
  durationMs: 12,
  file: 'states/base.yaml',
  line: 3,
  ...over,
});

function reporter(options: { progress?: boolean; quietWhenClean?: boolean; verbose?: boolean } = {}) {
  let out = '';
  const masker = new Masker();
  masker.addFrom({ s: new Secret('hunter2-secret') });
  const r = new ConsoleReporter({ write: (x) => (out += x), masker, color: false, progress: false, quietWhenClean: false, verbose: false, ...options });
  return { r, out: () => out };
}

const summary = { runId: 'r', env: 'staging', test: false, startedBy: 'hand' as const, total: 2, ok: 1, changed: 1, failed: 0, skipped: 0, notNeeded: 0, durationMs: 1234 };

t.test('one line per state, changes of changed states, a summary; secrets masked', async (t) => {
  const { r, out } = reporter();
  r.on({ kind: 'run-start', runId: 'r', env: 'staging', test: false, startedBy: 'hand', states: 2 });
  r.on({ kind: 'state-result', result: result({}) });
  r.on({ kind: 'state-result', result: result({ id: 'env', name: '/srv/app/.env', status: 'changed', changes: [{ what: 'content', diff: '-A=old\n+A=hunter2-secret' }, { what: 'mode', old: '0644', new: '0640' }] }) });
  r.on({ kind: 'run-end', summary, results: [] });
  t.equal(
    out(),
    [
      'brine apply · staging · 2 states',
      '  ✓ file.managed       /etc/motd  0.01s',
      '  ~ file.managed       /srv/app/.env  0.01s',
      '      content:',
      '        -A=old',
      '        +A=********',
      '      mode: 0644 → 0640',
      'Summary: 2 succeeded, 1 changed, 0 failed · 2 states in 1.23s',
      '',
    ].join('\n'),
  );
});

t.test('a failed state says why, under its line', async (t) => {
  const { r, out } = reporter();
  r.on({ kind: 'state-result', result: result({ status: 'failed', comment: '`nginx -t` exited 1:\nunknown directive "bogus"' }) });
  t.match(out(), /✗ file\.managed +\/etc\/motd  0\.01s\n {6}`nginx -t` exited 1:\n {6}unknown directive "bogus"\n/);
});

t.test('cron: nothing at all when nothing changed; everything when something did', async (t) => {
  const quiet = reporter({ quietWhenClean: true });
  quiet.r.on({ kind: 'run-start', runId: 'r', env: 'staging', test: false, startedBy: 'cron', states: 1 });
  quiet.r.on({ kind: 'state-result', result: result({}) });
  quiet.r.on({ kind: 'run-end', summary: { ...summary, changed: 0, ok: 2 }, results: [] });
  t.equal(quiet.out(), '');
  const loud = reporter({ quietWhenClean: true });
  loud.r.on({ kind: 'run-start', runId: 'r', env: 'staging', test: false, startedBy: 'cron', states: 1 });
  loud.r.on({ kind: 'state-result', result: result({ status: 'changed', changes: [{ what: 'mode', old: '0644', new: '0600' }] }) });
  loud.r.on({ kind: 'run-end', summary, results: [] });
  t.match(loud.out(), /^brine apply · staging · 1 states\n  ~ file\.managed .*\n      mode: 0644 → 0600\nSummary: /);
});

t.test('on a TTY a long state gets a progress line, cleared when it ends', async (t) => {
  const { r, out } = reporter({ progress: true });
  r.on({ kind: 'state-start', key: 'pkg.installed:nginx', id: 'nginx', function: 'pkg.installed', name: 'nginx' });
  await new Promise((resolve) => setTimeout(resolve, 400));
  const during = out();
  t.match(during, /\r\x1b\[2K {2}[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] pkg\.installed nginx 0\.\d\ds/, 'a spinner with the state and its time so far');
  r.on({ kind: 'state-result', result: result({ function: 'pkg.installed', name: 'nginx' }) });
  t.match(out().slice(during.length), /^\r\x1b\[2K {2}✓ pkg\.installed {6}nginx/, 'the progress line is cleared before the result');
  const after = out().length;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(out().length, after, 'and it stops');
});

t.test('no progress line when not on a TTY', async (t) => {
  const { r, out } = reporter({ progress: false });
  r.on({ kind: 'state-start', key: 'k', id: 'i', function: 'pkg.installed', name: 'nginx' });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(out(), '');
});

t.test('a list of lines (what a release did) is shown one a line', async (t) => {
  t.same(formatChange({ what: 'phases', old: null, new: ['fetch: abc1234 in 0.1 s', 'switch: blue → green in 0.7 s'] }), ['phases:', '  fetch: abc1234 in 0.1 s', '  switch: blue → green in 0.7 s']);
  t.same(formatChange({ what: 'groups', old: [], new: ['admin'] }), ['groups: [] → ["admin"]'], 'a value that was something before keeps old → new');
});
