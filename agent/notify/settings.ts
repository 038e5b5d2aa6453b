// Where notifications go and which are sent, from pillar:
//
//   # pillar/common.yaml (or pillar/ENV/env.yaml)
//   notify:
//     events: [failed, recovered, deployed, rollback, drift]   # the default: all of them
//     repeat: 4h            # a failure that stays the same is said again at most this often
//     slack: {channel: '#ops', username: brine, icon_emoji: ':salt:'}
//     webhook: {url: https://alerts.example.com/brine}          # a generic JSON POST (optional)
//
//   # pillar/ENV/secrets.yaml
//   slack:
//     webhook_url: https://hooks.slack.com/services/T…/B…/…
//   notify:
//     webhook: {secret: a-long-random-string}                  # signs the JSON POST (optional)
//
// No URL configured: no notifier, and no error. A Slack URL that is not a secret is an error: it
// lets anyone post to the channel, so it belongs in secrets.yaml like every other credential.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { isPlainObject, type Pillar } from '../pillar.js';
import { Secret, isSecret } from '../secret.js';

export const EVENTS = ['failed', 'recovered', 'deployed', 'rollback', 'drift'] as const;
export type NotifyEvent = (typeof EVENTS)[number];

export interface SlackTarget {
  url: Secret;
  /** Slack's own fields for an incoming webhook (the channel only where the webhook allows it). */
  defaults: { channel?: string; username?: string; icon_emoji?: string; icon_url?: string };
}

export interface WebhookTarget {
  url: string | Secret;
  /** Signs each body (X-Brine-Signature: sha256=HMAC(secret, timestamp.body)). */
  secret?: Secret | string;
}

export interface NotifySettings {
  events: Set<NotifyEvent>;
  repeatMs: number;
  slack?: SlackTarget;
  webhook?: WebhookTarget;
}

const HOUR = 3_600_000;
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR };

/** `4h`, `30m`, `1d`, `90s`, or a number of hours. */
function parseInterval(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value * HOUR;
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(value) : null;
  return m ? Number(m[1]) * UNITS[m[2]!]! : undefined;
}

/** The pillar file (and line) where a top-level key is set last: the one a user must edit. */
function placeOf(root: string, pillar: Pillar, top: string, key: string): { file?: string; line?: number; key: string } {
  for (const file of [...pillar.files].reverse()) {
    let text: string;
    try {
      text = readFileSync(join(root, file), 'utf8');
    } catch {
      continue;
    }
    const i = text.split('\n').findIndex((l) => l.startsWith(`${top}:`));
    if (i >= 0) return { file, line: i + 1, key };
  }
  return { key };
}

/** The settings, or null when no URL is configured. Bad settings are input errors. */
export function notifySettings(pillar: Pillar, root: string): NotifySettings | null {
  const data = pillar.data;
  const notify = data.notify;
  const slack = data.slack;
  const fail = (top: string, key: string, message: string) => new InputError(message, placeOf(root, pillar, top, key));
  if (notify !== undefined && notify !== null && !isPlainObject(notify)) throw fail('notify', 'notify', 'must be a mapping (events, repeat, slack, webhook)');
  if (slack !== undefined && slack !== null && !isPlainObject(slack)) throw fail('slack', 'slack', 'must be a mapping with webhook_url');
  const n = (notify ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(n))
    if (!['events', 'repeat', 'slack', 'webhook'].includes(k)) throw fail('notify', `notify.${k}`, 'unknown setting (there are: events, repeat, slack, webhook)');

  let events = new Set<NotifyEvent>(EVENTS);
  if (n.events !== undefined) {
    if (!Array.isArray(n.events)) throw fail('notify', 'notify.events', `must be a list of: ${EVENTS.join(', ')}`);
    n.events.forEach((e, i) => {
      if (!EVENTS.includes(e as NotifyEvent)) throw fail('notify', `notify.events[${i}]`, `"${String(e)}" is not an event (there are: ${EVENTS.join(', ')})`);
    });
    events = new Set(n.events as NotifyEvent[]);
  }
  const repeatMs = n.repeat === undefined ? 4 * HOUR : parseInterval(n.repeat);
  if (repeatMs === undefined) throw fail('notify', 'notify.repeat', `"${String(n.repeat)}" is not an interval: write 4h, 30m, 1d`);

  const slackSettings = n.slack ?? {};
  if (!isPlainObject(slackSettings)) throw fail('notify', 'notify.slack', 'must be a mapping (channel, username, icon_emoji, icon_url)');
  const defaults: SlackTarget['defaults'] = {};
  for (const [k, v] of Object.entries(slackSettings)) {
    if (k === 'webhook_url') continue;
    if (!['channel', 'username', 'icon_emoji', 'icon_url'].includes(k)) throw fail('notify', `notify.slack.${k}`, 'unknown setting (there are: channel, username, icon_emoji, icon_url; the URL is slack.webhook_url in secrets.yaml)');
    if (typeof v !== 'string' || v === '') throw fail('notify', `notify.slack.${k}`, 'must be text');
    defaults[k as keyof SlackTarget['defaults']] = v;
  }
  const url = (slack as Record<string, unknown> | undefined)?.webhook_url ?? slackSettings.webhook_url;
  let slackTarget: SlackTarget | undefined;
  if (url !== undefined && url !== null) {
    const where = slack && (slack as Record<string, unknown>).webhook_url !== undefined ? ['slack', 'slack.webhook_url'] : ['notify', 'notify.slack.webhook_url'];
    if (!isSecret(url)) throw fail(where[0]!, where[1]!, `the Slack webhook URL lets anyone who has it post to your channel: put it in pillar/${pillar.env}/secrets.yaml`);
    if (!/^https?:\/\/\S+$/.test(url.reveal())) throw fail(where[0]!, where[1]!, 'is not an http(s) URL');
    slackTarget = { url, defaults };
  }

  let webhook: WebhookTarget | undefined;
  if (n.webhook !== undefined && n.webhook !== null) {
    if (!isPlainObject(n.webhook)) throw fail('notify', 'notify.webhook', 'must be a mapping (url, secret)');
    for (const k of Object.keys(n.webhook)) if (!['url', 'secret'].includes(k)) throw fail('notify', `notify.webhook.${k}`, 'unknown setting (there are: url, secret)');
    const { url: hookUrl, secret } = n.webhook;
    const text = isSecret(hookUrl) ? hookUrl.reveal() : hookUrl;
    if (typeof text !== 'string' || !/^https?:\/\/\S+$/.test(text)) throw fail('notify', 'notify.webhook.url', 'must be an http(s) URL');
    if (secret !== undefined && !isSecret(secret)) throw fail('notify', 'notify.webhook.secret', `a signing secret belongs in pillar/${pillar.env}/secrets.yaml`);
    webhook = { url: hookUrl as string | Secret, ...(secret !== undefined ? { secret: secret as Secret } : {}) };
  }
  if (!slackTarget && !webhook) return null;
  return { events, repeatMs, ...(slackTarget ? { slack: slackTarget } : {}), ...(webhook ? { webhook } : {}) };
}
