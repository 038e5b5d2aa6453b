// What a notification says, one formatter per kind, and how it is put for Slack (Block Kit, with
// a plain-text fallback for phones' lock screens) and for a generic JSON webhook.
//
// The webhook body (version 1), POSTed as application/json:
//   { version: 1, event, host, env, at, title, text, runId?, startedBy?, look?,
//     states?: [{ id, function, name, status, error? }],
//     release?: { app, id, sha, subject, previous?, durationMs?, reason? } }
// with X-Brine-Event: EVENT, and when notify.webhook.secret is set X-Brine-Timestamp: UNIX
// SECONDS and X-Brine-Signature: sha256=HEX(HMAC-SHA256(secret, "TIMESTAMP.BODY")).
import type { StateResult } from '../report/events.js';
import type { NotifyEvent } from './settings.js';

export type NoticeKind = NotifyEvent | 'test';

export interface NoticeState {
  id: string;
  function: string;
  name: string;
  status: string;
  error?: string;
}

export interface NoticeRelease {
  app: string;
  id: string;
  sha: string;
  subject: string;
  previous?: string | null;
  durationMs?: number;
  /** Why it is not live: the failed health check. */
  reason?: string;
}

export interface Notice {
  kind: NoticeKind;
  host: string;
  env: string;
  at: string;
  title: string;
  /** A line or two: what happened. */
  text: string;
  runId?: string;
  startedBy?: string;
  states?: NoticeState[];
  release?: NoticeRelease;
  /** The command that shows more, on the server. */
  look?: string;
}

/** Most states one message lists (the rest are counted). */
const LISTED = 10;

/**
 * The line that says what went wrong: the first, and when it only says that a command failed
 * (`… exited 1`, `…:`) the first line of what the command printed as well.
 */
export function firstLine(text: string): string {
  const [first = '', ...rest] = text.split('\n').map((l) => l.trim()).filter(Boolean);
  // Past a label of its own (`stderr:`).
  const next = rest.find((l) => !/^[\w ]+:$/.test(l));
  const line = next !== undefined && (/exited \d+$/.test(first) || first.endsWith(':')) ? `${first}: ${next}` : first;
  return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const look = (runId: string | undefined) => (runId ? `agent history · journalctl -t agent BRINE_RUN_ID=${runId}` : 'agent history');

export interface RunFacts {
  host: string;
  env: string;
  runId: string;
  startedBy: string;
  at?: string;
}

const stateOf = (r: StateResult): NoticeState => ({
  id: r.id,
  function: r.function,
  name: r.name,
  status: r.status,
  ...(r.status === 'failed' || r.status === 'skipped' ? { error: firstLine(r.comment) } : {}),
});

export function failedNotice(run: RunFacts, failed: StateResult[], repeat?: { since: string; runs: number }): Notice {
  const n = failed.filter((r) => r.status === 'failed').length;
  const skipped = failed.length - n;
  return {
    kind: 'failed',
    host: run.host,
    env: run.env,
    at: run.at ?? new Date().toISOString(),
    title: repeat ? `still failing on ${run.host} (${run.env})` : `run failed on ${run.host} (${run.env})`,
    text: `${plural(n, 'state')} failed${skipped ? `, ${skipped} skipped` : ''} in a run started by ${run.startedBy}${repeat ? ` — failing the same way since ${repeat.since} (${plural(repeat.runs, 'run')})` : ''}`,
    runId: run.runId,
    startedBy: run.startedBy,
    states: failed.map(stateOf),
    look: look(run.runId),
  };
}

export function recoveredNotice(run: RunFacts, since: string, runs: number): Notice {
  return {
    kind: 'recovered',
    host: run.host,
    env: run.env,
    at: run.at ?? new Date().toISOString(),
    title: `back to normal on ${run.host} (${run.env})`,
    text: `converged again in a run started by ${run.startedBy}, after ${plural(runs, 'failed run')} since ${since}`,
    runId: run.runId,
    startedBy: run.startedBy,
    look: look(run.runId),
  };
}

export function driftNotice(run: RunFacts, changed: StateResult[]): Notice {
  return {
    kind: 'drift',
    host: run.host,
    env: run.env,
    at: run.at ?? new Date().toISOString(),
    title: `drift repaired on ${run.host} (${run.env})`,
    text: `the scheduled run changed ${plural(changed.length, 'state')} back to what the tree says`,
    runId: run.runId,
    startedBy: run.startedBy,
    states: changed.map(stateOf),
    look: look(run.runId),
  };
}

export function deployedNotice(run: RunFacts, release: NoticeRelease): Notice {
  return {
    kind: 'deployed',
    host: run.host,
    env: run.env,
    at: run.at ?? new Date().toISOString(),
    title: `deployed ${release.sha.slice(0, 7)} to ${run.host} (${run.env})`,
    text: `${release.app}: ${release.subject} — release ${release.id}${release.durationMs !== undefined ? ` in ${secs(release.durationMs)}` : ''}, was ${release.previous ?? 'nothing'}`,
    runId: run.runId,
    startedBy: run.startedBy,
    release,
    look: 'agent releases',
  };
}

/** A rollback: by hand (`agent rollback`), or automatic — a release that failed its health check. */
export function rollbackNotice(run: RunFacts, release: NoticeRelease, how: 'hand' | 'health'): Notice {
  const title =
    how === 'health'
      ? `deploy of ${release.sha.slice(0, 7)} rolled back on ${run.host} (${run.env}): health check failed`
      : `rolled back on ${run.host} (${run.env}) to ${release.sha.slice(0, 7)}`;
  const text =
    how === 'health'
      ? `${release.app}: ${release.subject} — release ${release.id} never took traffic; still serving ${release.previous ?? 'nothing'}. ${release.reason ?? ''}`.trim()
      : `${release.app}: ${release.previous ?? 'nothing'} → ${release.id} (${release.subject})${release.durationMs !== undefined ? ` in ${secs(release.durationMs)}` : ''}, by ${run.startedBy}`;
  return {
    kind: 'rollback',
    host: run.host,
    env: run.env,
    at: run.at ?? new Date().toISOString(),
    title,
    text,
    ...(run.runId ? { runId: run.runId } : {}),
    startedBy: run.startedBy,
    release,
    look: 'agent releases',
  };
}

export function testNotice(host: string, env: string): Notice {
  return { kind: 'test', host, env, at: new Date().toISOString(), title: `test message from ${host} (${env})`, text: 'brine can reach this channel: failed runs, deploys, rollbacks and repaired drift will be posted here' };
}

// ---------------------------------------------------------------------------------------------

const ICON: Record<NoticeKind, string> = { failed: ':x:', recovered: ':white_check_mark:', drift: ':wrench:', deployed: ':rocket:', rollback: ':rewind:', test: ':wave:' };

/** Slack's mrkdwn treats &, < and > as markup. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface SlackMessage {
  text: string;
  blocks: Record<string, unknown>[];
}

export function toSlack(n: Notice): SlackMessage {
  const blocks: Record<string, unknown>[] = [{ type: 'section', text: { type: 'mrkdwn', text: `${ICON[n.kind]} *${esc(n.title)}*\n${esc(n.text)}` } }];
  if (n.states?.length) {
    const lines = n.states.slice(0, LISTED).map((s) => `• \`${esc(s.function)} ${esc(s.id)}\`${s.error ? `: ${esc(s.error)}` : ''}`);
    if (n.states.length > LISTED) lines.push(`…and ${n.states.length - LISTED} more`);
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: lines.join('\n').slice(0, 2900) } });
  }
  const context = [n.startedBy && `started by ${n.startedBy}`, n.look && `look closer: \`${esc(n.look)}\``].filter(Boolean).join(' · ');
  if (context) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: context }] });
  return { text: `${n.title}: ${n.text}`, blocks };
}

export function toWebhookBody(n: Notice): Record<string, unknown> {
  const { kind, ...rest } = n;
  return { version: 1, event: kind, ...rest };
}
