// Delivering a message: to Slack through @slack/webhook's IncomingWebhook, to a generic webhook
// with a plain JSON POST. Each attempt is bounded (5 s), with one retry; a slow or failing
// endpoint costs a run at most about 11 s, and never its exit code.
import { createHmac } from 'node:crypto';
import type { Masker } from '../secret.js';
import { isSecret } from '../secret.js';
import type { SlackTarget, WebhookTarget } from './settings.js';

/** Each attempt's bound, and the pause before the one retry (tests shorten them). */
export const sendLimits = { attemptMs: 5_000, retryAfterMs: 500 };

export interface Delivery {
  ok: boolean;
  /** Why not (masked): `HTTP 500`, `timed out after 5 s`. */
  error?: string;
}

/** Resolves, or rejects after `ms` — whatever the library underneath does. */
function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

function describe(err: unknown): string {
  const e = err as { code?: string; original?: { response?: { status?: number } }; message?: string };
  const status = e.original?.response?.status;
  if (status) return `HTTP ${status}`;
  return (e.message ?? String(err)).split('\n')[0]!;
}

async function withRetry(attempt: () => Promise<void>, masker: Masker): Promise<Delivery> {
  let last: unknown;
  for (let i = 0; i < 2; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, sendLimits.retryAfterMs));
    try {
      await bounded(attempt(), sendLimits.attemptMs);
      return { ok: true };
    } catch (err) {
      last = err;
    }
  }
  return { ok: false, error: masker.mask(describe(last)) };
}

export async function sendSlack(target: SlackTarget, body: Record<string, unknown>, masker: Masker): Promise<Delivery> {
  // Loaded only when there is something to send: a run with nothing to say never evaluates it.
  const { IncomingWebhook } = await import('@slack/webhook');
  const hook = new IncomingWebhook(target.url.reveal(), { ...target.defaults, timeout: sendLimits.attemptMs });
  return withRetry(async () => {
    await hook.send(body);
  }, masker);
}

export async function sendWebhook(target: WebhookTarget, body: Record<string, unknown>, masker: Masker): Promise<Delivery> {
  const url = isSecret(target.url) ? target.url.reveal() : target.url;
  const text = JSON.stringify(body);
  return withRetry(async () => {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'brine-notify/1', 'x-brine-event': String(body.event) };
    if (target.secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const key = isSecret(target.secret) ? target.secret.reveal() : target.secret;
      headers['x-brine-timestamp'] = timestamp;
      headers['x-brine-signature'] = `sha256=${createHmac('sha256', key).update(`${timestamp}.${text}`).digest('hex')}`;
    }
    const res = await fetch(url, { method: 'POST', headers, body: text, redirect: 'manual', signal: AbortSignal.timeout(sendLimits.attemptMs) });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status < 200 || res.status >= 300) throw new Error(`HTTP ${res.status}`);
  }, masker);
}
