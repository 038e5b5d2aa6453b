// `agent notify-test`: a test message to every target the pillar configures, so a user can check
// the webhook right after bootstrap. It says, per target, whether it was delivered.
import { hostname } from 'node:os';
import { ExitCode, UsageError } from '../errors.js';
import { outgoing } from '../notify/reporter.js';
import { testNotice } from '../notify/messages.js';
import { sendSlack, sendWebhook } from '../notify/send.js';
import { loadFor, type Io, type Parsed } from './context.js';

export async function notifyTest(p: Parsed, io: Io): Promise<number> {
  const loaded = loadFor(p);
  const settings = loaded.notify;
  if (!settings)
    throw new UsageError(`nothing to test: no notifier is configured (slack: webhook_url: in pillar/${loaded.env}/secrets.yaml, or notify: webhook: url:)`);
  const masker = loaded.pillar.masker;
  let failed = 0;
  for (const m of outgoing(settings, masker, testNotice(hostname(), loaded.env))) {
    const d = m.target === 'slack' ? await sendSlack(settings.slack!, m.body, masker) : await sendWebhook(settings.webhook!, m.body, masker);
    if (!d.ok) failed++;
    io.stdout(`${m.target}: ${d.ok ? 'delivered' : `not delivered: ${d.error}`}\n`);
  }
  return failed ? ExitCode.failed : ExitCode.ok;
}
