// The notifier: settings from pillar, each kind's message (masked), the no-storm rule over a
// sequence of runs, and delivery against a local HTTP server — one that answers 500, one that
// never answers — with the outbox sent by the next run.
import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { InputError } from '../../agent/errors.js';
import type { Journal, JournalFields } from '../../agent/journal.js';
import { decide, memoryPaths, readMemory, type Memory } from '../../agent/notify/memory.js';
import { deployedNotice, driftNotice, failedNotice, recoveredNotice, rollbackNotice, toSlack, toWebhookBody } from '../../agent/notify/messages.js';
import { NotifyReporter } from '../../agent/notify/reporter.js';
import { sendLimits } from '../../agent/notify/send.js';
import { notifySettings, type NotifySettings } from '../../agent/notify/settings.js';
import type { Pillar } from '../../agent/pillar.js';
import type { RunSummary, StateResult } from '../../agent/report/events.js';
import { Masker, Secret } from '../../agent/secret.js';
import { result } from './result-fixture.js';

const CANARY = 'Zq7xK9pW-canary-3mVb';


function pillarOf(data: Record<string, unknown>): Pillar {
  const masker = new Masker();
  masker.addFrom(data);
  return { env: 'staging', data, files: [], masker };
}

const settingsError = (data: Record<string, unknown>): string => {
  try {
    notifySettings(pillarOf(data), '/nonexistent');
  } catch (err) {
    if (err instanceof InputError) return err.format();
    throw err;
  }
  return '(no error)';
};

t.test('settings: none without a URL; the Slack URL must be a secret; typos are errors', async (t) => {
  t.equal(notifySettings(pillarOf({ notify: { repeat: '2h' } }), '/x'), null, 'no URL: no notifier, no error');
  const s = notifySettings(pillarOf({ slack: { webhook_url: new Secret('https://hooks.example.test/T1/B2/xyz') }, notify: { events: ['failed', 'recovered'], repeat: '30m', slack: { channel: '#ops' } } }), '/x')!;
  t.same([...s.events], ['failed', 'recovered']);
  t.equal(s.repeatMs, 30 * 60_000);
  t.same(s.slack!.defaults, { channel: '#ops' });
  t.equal(notifySettings(pillarOf({ slack: { webhook_url: new Secret('https://hooks.example.test/x') } }), '/x')!.repeatMs, 4 * 3_600_000, 'repeat: 4 h by default');
  t.match(settingsError({ slack: { webhook_url: 'https://hooks.example.test/plain' } }), /slack\.webhook_url: the Slack webhook URL lets anyone who has it post to your channel: put it in pillar\/staging\/secrets\.yaml/);
  t.match(settingsError({ slack: { webhook_url: new Secret('https://x') }, notify: { events: ['failed', 'deploy'] } }), /notify\.events\[1\]: "deploy" is not an event \(there are: failed, recovered, deployed, rollback, drift\)/);
  t.match(settingsError({ slack: { webhook_url: new Secret('https://x') }, notify: { repeat: 'often' } }), /notify\.repeat: "often" is not an interval/);
  t.match(settingsError({ slack: { webhook_url: new Secret('https://x') }, notify: { slak: {} } }), /notify\.slak: unknown setting/);
  t.match(settingsError({ notify: { webhook: { url: 'ftp://x' } } }), /notify\.webhook\.url: must be an http\(s\) URL/);
  t.match(settingsError({ notify: { webhook: { url: 'https://x.test/', secret: 'plain' } } }), /notify\.webhook\.secret: a signing secret belongs in pillar\/staging\/secrets\.yaml/);
});

const run = { host: 'web1', env: 'staging', runId: 'run-1', startedBy: 'cron', at: '2026-12-02T10:00:00.000Z' };

t.test('each kind of message says host, environment, what happened and where to look; all masked', async (t) => {
  const masker = new Masker();
  masker.addFrom({ s: new Secret(CANARY) });
  const failed = failedNotice(run, [result('/etc/app.conf', 'failed', { comment: `check_cmd failed: password ${CANARY} rejected\nmore lines` }), result('app', 'skipped', { comment: 'requisite failed: file.managed /etc/app.conf' })]);
  const release = { app: '/srv/shop', id: '20261202100000-abc1234', sha: 'abc1234def', subject: `Fix checkout (${CANARY})`, previous: '20261201090000-0000aaa', durationMs: 8400 };
  const cases = [
    [failed, /run failed on web1 \(staging\)/, /1 state failed, 1 skipped in a run started by cron/],
    [recoveredNotice(run, '2026-12-02T08:00:00.000Z', 3), /back to normal on web1 \(staging\)/, /after 3 failed runs since 2026-12-02T08:00/],
    [driftNotice(run, [result('/etc/nginx/sites-available/shop', 'changed'), result('sshkeys', 'changed')]), /drift repaired on web1 \(staging\)/, /changed 2 states back/],
    [deployedNotice(run, release), /deployed abc1234 to web1 \(staging\)/, /release 20261202100000-abc1234 in 8\.4 s, was 20261201090000-0000aaa/],
    [rollbackNotice(run, { ...release, reason: 'GET /health answered 500' }, 'health'), /deploy of abc1234 rolled back on web1 \(staging\): health check failed/, /never took traffic; still serving 20261201090000-0000aaa\. GET \/health answered 500/],
    [rollbackNotice({ ...run, startedBy: 'hand' }, release, 'hand'), /rolled back on web1 \(staging\) to abc1234/, /by hand/],
  ] as const;
  for (const [notice, title, text] of cases) {
    const slack = JSON.stringify(masker.maskDeep(toSlack(notice)));
    const hook = JSON.stringify(masker.maskDeep(toWebhookBody(notice)));
    t.match(notice.title, title);
    t.match(notice.text, text);
    for (const body of [slack, hook]) {
      t.notOk(body.includes(CANARY), `${notice.kind}: no secret in the body`);
      t.ok(body.includes('web1') && body.includes('staging'), `${notice.kind}: host and environment`);
    }
    t.ok(notice.look, `${notice.kind}: a way to look closer`);
  }
  const slack = toSlack(failed);
  t.match(JSON.stringify(slack.blocks), /file\.managed \/etc\/app\.conf`: check_cmd failed/, 'each failed state with its first error line');
  t.notMatch(JSON.stringify(slack.blocks), /more lines/, 'only the first line');
  t.match(JSON.stringify(slack.blocks), /journalctl -t agent BRINE_RUN_ID=run-1/);
  t.match(slack.text, /^run failed on web1 \(staging\): /, 'a plain-text fallback (notifications on a phone)');
  t.equal(toWebhookBody(failed).event, 'failed');
  t.equal(toWebhookBody(failed).version, 1);
});

t.test('no storm: the same failure is said once, then once per interval; a change or a recovery at once', async (t) => {
  const hour = 3_600_000;
  const at = (h: number) => new Date(Date.parse('2026-12-02T00:00:00Z') + h * hour);
  const fail = (comment: string) => ({ run, failed: [result('/etc/x', 'failed', { comment })], drift: [] });
  let memory: Memory = { outbox: [] };
  const step = (outcome: Parameters<typeof decide>[1], h: number) => {
    const d = decide(memory, outcome, 4 * hour, at(h));
    memory = d.memory;
    return d.notices.map((n) => n.title.split(' on ')[0]);
  };
  t.same(step(fail('write failed after 12 ms'), 0), ['run failed'], 'the first failure');
  t.same(step(fail('write failed after 15 ms'), 0.25), [], 'the same (numbers aside): nothing');
  t.same(step(fail('write failed after 9 ms'), 0.5), []);
  t.same(step(fail('write failed after 11 ms'), 0.75), []);
  t.same(step(fail('write failed after 11 ms'), 4.1), ['still failing'], 'once the interval has passed');
  t.match(memory.failing, { runs: 5 });
  t.same(step(fail('disk full'), 4.3), ['run failed'], 'a different failure: at once');
  t.same(step({ run, failed: [], drift: [] }, 4.5), ['back to normal'], 'recovered');
  t.same(step({ run, failed: [], drift: [] }, 4.75), [], 'and then quiet');

  const drift = { run, failed: [], drift: [result('/etc/motd', 'changed')] };
  t.same(step(drift, 5), ['drift repaired']);
  t.same(step(drift, 5.25), [], 'the same drift every run (a state never quite idempotent): once per interval');
  t.same(step({ run, failed: [], drift: [] }, 5.5), [], 'a clean scheduled run');
  t.same(step(drift, 5.75), ['drift repaired'], 'after which drift is news again');
});

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function hookServer(t: Test, answer: (n: number) => number | 'hang'): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const hanging: IncomingMessage[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body });
      const a = answer(received.length);
      if (a === 'hang') return void hanging.push(req);
      res.writeHead(a, { 'content-type': 'text/plain' }).end(a === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())).then(() => undefined));
  t.teardown(() => void server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

function summary(over: Partial<RunSummary> = {}): RunSummary {
  return { runId: 'run-9', env: 'staging', test: false, startedBy: 'cron', total: 2, ok: 1, changed: 0, failed: 1, skipped: 0, notNeeded: 0, durationMs: 50, ...over };
}

async function runWith(settings: NotifySettings, masker: Masker, results: StateResult[], journal: Journal, over: Partial<RunSummary> = {}): Promise<number> {
  const r = new NotifyReporter({ settings, masker, journal, host: 'web1' });
  r.on({ kind: 'run-end', summary: summary(over), results });
  const t0 = Date.now();
  await r.close();
  return Date.now() - t0;
}

t.test('delivery: Slack as @slack/webhook sends it, a signed webhook; a failing one is retried by the next run', async (t) => {
  memoryPaths.file = `${t.testdir()}/notify.json`;
  sendLimits.attemptMs = 400;
  sendLimits.retryAfterMs = 50;
  const slack = await hookServer(t, (n) => (n <= 2 ? 500 : 200));
  const hook = await hookServer(t, () => 200);
  const masker = new Masker();
  const url = new Secret(`${slack.url}/services/T000/B000/${CANARY}`);
  masker.addFrom({ url, key: new Secret('sign-me-please'), app: new Secret(CANARY) });
  const settings = notifySettings(pillarOf({ slack: { webhook_url: url }, notify: { slack: { username: 'brine' }, webhook: { url: `${hook.url}/brine`, secret: new Secret('sign-me-please') } } }), '/x')!;
  const written: JournalFields[] = [];
  const journal: Journal = { available: true, write: async (e) => void written.push(...e), read: async () => [] };
  // Long enough that the message cuts it short right through the secret.
  const failing = [result('/etc/x', 'failed', { comment: `${'x'.repeat(290)} ${CANARY}` })];

  await runWith(settings, masker, failing, journal);
  t.equal(slack.received.length, 2, 'Slack answered 500: tried twice');
  t.equal(hook.received.length, 1, 'the webhook got it');
  t.match(written.at(-1)?.MESSAGE, /notification not delivered to slack: HTTP 500; 1 waiting, sent with the next run/);
  t.equal((await readMemory()).outbox.length, 1, 'kept for the next run');

  await runWith(settings, masker, failing, journal);
  t.equal(slack.received.length, 3, 'the next run (same failure: nothing new to say) delivers what waited');
  t.equal(hook.received.length, 1);
  t.equal((await readMemory()).outbox.length, 0);

  const got = JSON.parse(slack.received[2]!.body) as { text: string; blocks: unknown[]; username: string };
  t.match(got.text, /^run failed on web1 \(staging\)/);
  t.equal(got.username, 'brine', "Slack's defaults");
  t.ok(Array.isArray(got.blocks));
  t.match(slack.received[2]!.headers['user-agent'], /@slack:webhook/, 'sent by @slack/webhook');
  t.match(slack.received[2]!.headers['content-type'], /application\/json/);
  t.equal(slack.received[2]!.path, `/services/T000/B000/${CANARY}`);

  const h = hook.received[0]!;
  const signed = createHmac('sha256', 'sign-me-please').update(`${h.headers['x-brine-timestamp']}.${h.body}`).digest('hex');
  t.equal(h.headers['x-brine-signature'], `sha256=${signed}`, 'signed: HMAC of timestamp.body');
  t.equal(h.headers['x-brine-event'], 'failed');
  t.match(JSON.parse(h.body), { version: 1, event: 'failed', host: 'web1', env: 'staging', runId: 'run-9', states: [{ id: '/etc/x', status: 'failed' }] });
  for (const r of [...slack.received, ...hook.received]) t.notOk(r.body.includes(CANARY.slice(0, 6)), 'no secret, nor a piece of one, in any body');
  t.notOk(JSON.stringify(written).includes(CANARY), 'nor in the journal');

  await runWith(settings, masker, [result('/etc/x', 'ok')], journal, { failed: 0, ok: 2 });
  t.match(JSON.parse(slack.received.at(-1)!.body).text, /^back to normal on web1/);
});

t.test('a webhook that never answers costs a bounded time, and the message waits for the next run', async (t) => {
  memoryPaths.file = `${t.testdir()}/notify.json`;
  sendLimits.attemptMs = 300;
  sendLimits.retryAfterMs = 50;
  let hang = true;
  const slack = await hookServer(t, () => (hang ? 'hang' : 200));
  const masker = new Masker();
  const settings = notifySettings(pillarOf({ slack: { webhook_url: new Secret(`${slack.url}/hook`) } }), '/x')!;
  const journal: Journal = { available: false, write: async () => undefined, read: async () => [] };
  const ms = await runWith(settings, masker, [result('/etc/x', 'failed', { comment: 'no' })], journal);
  t.ok(ms < 2 * 300 + 50 + 400, `two bounded attempts: ${ms} ms`);
  t.equal((await readMemory()).outbox.length, 1);
  hang = false;
  await runWith(settings, masker, [result('/etc/x', 'failed', { comment: 'no' })], journal);
  t.equal((await readMemory()).outbox.length, 0, 'delivered with the next run');
  t.equal(slack.received.filter((r) => r.path === '/hook').length, 3);
});

t.test('a --test run and a run with nothing to say send nothing', async (t) => {
  memoryPaths.file = `${t.testdir()}/notify.json`;
  const slack = await hookServer(t, () => 200);
  const settings = notifySettings(pillarOf({ slack: { webhook_url: new Secret(`${slack.url}/hook`) } }), '/x')!;
  const journal: Journal = { available: false, write: async () => undefined, read: async () => [] };
  await runWith(settings, new Masker(), [result('/etc/x', 'failed', { comment: 'no' })], journal, { test: true });
  await runWith(settings, new Masker(), [result('/etc/x', 'ok')], journal, { failed: 0 });
  await runWith(settings, new Masker(), [result('/etc/x', 'changed')], journal, { failed: 0, startedBy: 'hand' });
  t.equal(slack.received.length, 0, 'changes made by hand are not drift');
  t.notOk(existsSync(memoryPaths.file), 'and nothing is written: a no-op run costs no disk write');
});

t.test("an error's line: the first, and a failed command's first line of output", async (t) => {
  const { firstLine } = await import('../../agent/notify/messages.js');
  t.equal(firstLine('\n  disk full\nmore'), 'disk full');
  t.equal(firstLine('`make` exited 2\nstderr:\n  make: *** No rule to make target\n'), '`make` exited 2: make: *** No rule to make target');
  t.equal(firstLine('x'.repeat(400)).length, 300);
});
