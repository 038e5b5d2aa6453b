// Notifications on a booted server. A local HTTP server on the host's loopback stands in for
// Slack (the test servers share the host's network): it records every request, and checks each
// is what @slack/webhook sends. Shown: a failing state → one message, the same failure on the
// next three cron runs → no more, fixed → "back to normal"; drift repaired by cron → a message
// naming the state; a webhook that answers 500 or never answers → the run keeps its own exit code
// within the bound, and the message arrives with the next run. No secret in any body.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { agent, bootWithAgent, stage } from './brine.js';
import { fakeSlack, text } from './fake-slack.js';

const CANARY = 'tok-Qx71-never-in-slack';
const HOOK_SECRET = 'T0000/B0000/hook-Zk29-secret';
const SIGNING_SECRET = 'sign-Wq40-secret';

t.test('Slack hears of failures once, of recovery and of drift, and a down webhook costs a bounded time', async (t) => {
  const slack = await fakeSlack(t);
  const hook = await fakeSlack(t); // a generic webhook beside Slack, always up
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  const root = '/root/tree';
  await stage(server, root, {
    'states/top.yaml': "'*':\n  - main\n",
    'states/main.yaml': [
      '/etc/brine-drift:',
      '  file.managed:',
      '    - contents: "as the tree says\\n"',
      'flaky:',
      '  cmd.run:',
      "    - name: [/bin/sh, -c, 'echo \"cannot reach the API with $TOKEN\" >&2; exit 1']",
      '    - env:',
      '        TOKEN: "{{ pillar.secrets.API_TOKEN }}"',
      '    - unless: /usr/bin/test -e /etc/brine-ok',
      '',
    ].join('\n'),
    'pillar/common.yaml': `notify:\n  slack: {username: brine, icon_emoji: ":salt:"}\n  webhook: {url: "http://127.0.0.1:${hook.port}/brine"}\n`,
    'pillar/test/env.yaml': 'x: 1\n',
    'pillar/test/secrets.yaml': `secrets:\n  API_TOKEN: ${CANARY}\nslack:\n  webhook_url: http://127.0.0.1:${slack.port}/services/${HOOK_SECRET}\nnotify:\n  webhook: {secret: ${SIGNING_SECRET}}\n`,
  });
  const apply = (cron = true) => agent(server, root, ['apply', ...(cron ? ['--cron'] : [])]);

  await t.test('a failing state: one message; the same failure three more times: none', async (t) => {
    const first = await apply(false);
    t.equal(first.code, 2, first.output);
    t.equal(slack.received.length, 1, 'one message');
    const m = slack.received[0]!;
    t.match(text(m), /run failed on \S+ \(test\)/);
    t.match(text(m), /cmd\.run flaky`: .* exited 1: cannot reach the API with \*{8}$/m, 'the state with its first error line, masked');
    t.match(text(m), /started by hand/);
    t.match(text(m), /journalctl -t agent BRINE_RUN_ID=/);
    t.equal(m.path, `/services/${HOOK_SECRET}`);
    t.match(m.userAgent, /@slack:webhook\/7\.\d+\.\d+ .*node\/18\./, "@slack/webhook's own user agent, on the server's Node 18");
    t.match(m.contentType, /application\/json/);
    t.equal(m.body.username, 'brine');
    // The generic webhook, sent by the server's Node 18 (fetch), signed.
    t.equal(hook.received.length, 1);
    const h = hook.received[0]!;
    t.match(h.body, { version: 1, event: 'failed', env: 'test', startedBy: 'hand', states: [{ id: 'flaky', function: 'cmd.run', status: 'failed' }] });
    t.equal(h.headers['x-brine-event'], 'failed');
    const signature = createHmac('sha256', SIGNING_SECRET).update(`${h.headers['x-brine-timestamp']}.${h.raw}`).digest('hex');
    t.equal(h.headers['x-brine-signature'], `sha256=${signature}`, 'signed: HMAC-SHA256 of timestamp.body');
    for (let i = 0; i < 3; i++) t.equal((await apply()).code, 2);
    t.equal(slack.received.length, 1, 'no storm: the same failure is not said again');
    t.equal(hook.received.length, 1, 'on either target');
  });

  await t.test('fixed: back to normal', async (t) => {
    await server.exec(['touch', '/etc/brine-ok']);
    t.equal((await apply()).code, 0);
    t.equal(slack.received.length, 2);
    t.match(text(slack.received[1]!), /back to normal on \S+ \(test\)[\s\S]*after 4 failed runs/);
    t.equal((await apply()).code, 0);
    t.equal(slack.received.length, 2, 'and then quiet');
  });

  await t.test('drift repaired by cron names the state', async (t) => {
    const quiet = Date.now();
    t.equal((await apply()).code, 0);
    const quietMs = Date.now() - quiet;
    await server.exec(['sh', '-c', 'echo edited by hand > /etc/brine-drift']);
    const sending = Date.now();
    t.equal((await apply()).code, 0);
    t.comment(`a cron run that repairs one file and sends to both targets: ${Date.now() - sending} ms; a quiet one: ${quietMs} ms`);
    t.equal(slack.received.length, 3);
    t.match(text(slack.received[2]!), /drift repaired on \S+ \(test\)[\s\S]*file\.managed \/etc\/brine-drift/);
  });

  await t.test('a webhook answering 500: the run keeps its code; the message comes with the next run', async (t) => {
    slack.mode = 'error';
    await server.exec(['rm', '/etc/brine-ok']);
    const failed = await apply();
    t.equal(failed.code, 2, 'its own exit code');
    t.equal(slack.received.length, 3, 'nothing delivered');
    const journal = await server.exec(['journalctl', '-t', 'agent', 'BRINE_EVENT=notify', '-o', 'cat', '--no-pager']);
    t.match(journal.stdout, /notification not delivered to slack: HTTP 500; 1 waiting, sent with the next run/);
    t.match((await agent(server, root, ['status'])).stdout, /^notifications: 1 not delivered yet, sent with the next run/m, 'agent status says it is pending');
    slack.mode = 'ok';
    t.equal((await apply()).code, 2);
    t.equal(slack.received.length, 4, 'delivered by the next run (the failure itself is not new)');
    t.match(text(slack.received[3]!), /run failed/);
  });

  await t.test('a webhook that never answers: bounded, and delivered later', async (t) => {
    await server.exec(['touch', '/etc/brine-ok']);
    await server.exec(['sh', '-c', 'echo edited again > /etc/brine-drift']);
    const quick = Date.now();
    await agent(server, root, ['validate']);
    const floor = Date.now() - quick;
    slack.mode = 'hang';
    const t0 = Date.now();
    const r = await apply();
    const ms = Date.now() - t0;
    t.equal(r.code, 0, 'converged: its own exit code');
    t.ok(ms < floor + 15_000, `the run took ${ms} ms with a webhook that never answers (two 5 s attempts at most)`);
    t.comment(`run with a hanging webhook: ${ms} ms (validate alone: ${floor} ms)`);
    slack.mode = 'ok';
    t.equal((await apply()).code, 0);
    const last = slack.received.slice(4).map(text);
    t.match(last[0], /back to normal/, 'the waiting messages, in order');
    t.match(last[1], /drift repaired[\s\S]*\/etc\/brine-drift/);
  });

  await t.test('agent notify-test', async (t) => {
    const r = await agent(server, root, ['notify-test']);
    t.equal(r.code, 0, r.output);
    t.match(r.stdout, /^slack: delivered\nwebhook: delivered$/m);
    t.match(text(slack.received.at(-1)!), /test message from \S+ \(test\)/);
  });

  t.equal(hook.received.length, slack.received.length, 'the webhook, never down, got each message once, as Slack did in the end');
  for (const m of [...slack.received, ...hook.received]) t.notOk(m.raw.includes(CANARY) || m.raw.includes('hook-Zk29'), 'no secret of the pillar in any body');
  const all = await server.exec(['sh', '-c', 'journalctl -t agent -o verbose --no-pager; cat /var/lib/brine/notify.json']);
  t.notOk(all.stdout.includes(CANARY) || all.stdout.includes('hook-Zk29') || all.stdout.includes('sign-Wq40'), 'nor in the journal or the notifier memory');
});
