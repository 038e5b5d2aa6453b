// The notifier: one more reporter of a run's events. When the run ends it works out what the team
// should hear (memory.ts decides, against what it said before), queues the masked messages behind
// any the last run could not deliver, and sends them, bounded in time. Nothing here fails a run.
import { hostname } from 'node:os';
import type { Journal } from '../journal.js';
import type { Reporter, RunEvent, RunSummary, StateResult } from '../report/events.js';
import type { Masker } from '../secret.js';
import { OUTBOX_MAX, decide, readMemory, writeMemory, type Memory, type Outgoing } from './memory.js';
import { deployedNotice, rollbackNotice, toSlack, toWebhookBody, type Notice, type NoticeRelease } from './messages.js';
import { sendSlack, sendWebhook, type Delivery } from './send.js';
import type { NotifySettings } from './settings.js';

/** What the release states of a run did, read from their release logs. */
export interface ReleaseOutcome {
  key: string;
  deployed?: NoticeRelease;
  /** A new release that failed its health check: never switched to, the old one still live. */
  healthFailed?: NoticeRelease;
}

export interface NotifierDeps {
  settings: NotifySettings;
  masker: Masker;
  journal?: Journal;
  /** Reads the release logs of the run's release.deployed states that changed or failed. */
  releases?: (results: StateResult[]) => Promise<ReleaseOutcome[]>;
  host?: string;
}

export class NotifyReporter implements Reporter {
  readonly #deps: NotifierDeps;
  #summary: RunSummary | undefined;
  #results: StateResult[] = [];

  constructor(deps: NotifierDeps) {
    this.#deps = deps;
  }

  on(event: RunEvent): void {
    if (event.kind === 'run-end') {
      this.#summary = event.summary;
      this.#results = event.results;
    }
  }

  async close(): Promise<void> {
    const summary = this.#summary;
    if (!summary || summary.test) return;
    try {
      await this.#notify(summary, this.#results);
    } catch (err) {
      // The run's own result stands; the journal says why nobody heard of it.
      await journalNote(this.#deps, `notifications not sent: ${(err as Error).message}`);
    }
  }

  async #notify(summary: RunSummary, all: StateResult[]): Promise<void> {
    const { settings, masker } = this.#deps;
    // Masked first: a message shows the first line of an error, and a cut must not split a secret.
    const results = all.map((r) => ({ ...r, comment: masker.mask(r.comment) }));
    const releaseStates = results.filter((r) => r.function === 'release.deployed' && (r.status === 'changed' || r.status === 'failed'));
    const releases = releaseStates.length && this.#deps.releases ? await this.#deps.releases(releaseStates) : [];
    const healthFailed = new Set(releases.filter((r) => r.healthFailed).map((r) => r.key));
    const deployed = new Set(releases.filter((r) => r.deployed).map((r) => r.key));
    const run = { host: this.#deps.host ?? hostname(), env: summary.env, runId: summary.runId, startedBy: summary.startedBy };
    const memory = await readMemory();
    const decided = decide(
      memory,
      {
        run,
        failed: results.filter((r) => (r.status === 'failed' || r.status === 'skipped') && !healthFailed.has(r.key)),
        drift: summary.startedBy === 'cron' ? results.filter((r) => r.status === 'changed' && !deployed.has(r.key)) : [],
      },
      settings.repeatMs,
    );
    const notices: Notice[] = [
      ...releases.flatMap((r) => [...(r.deployed ? [deployedNotice(run, r.deployed)] : []), ...(r.healthFailed ? [rollbackNotice(run, r.healthFailed, 'health')] : [])]),
      ...decided.notices,
    ];
    await deliver(this.#deps, memory, decided.memory, notices);
  }
}

/** The masked bodies of a notice, one per configured target. */
export function outgoing(settings: NotifySettings, masker: Masker, n: Notice): Outgoing[] {
  const createdAt = new Date().toISOString();
  const out: Outgoing[] = [];
  // Masked before it is formatted (which may cut long text short, through a secret) and again
  // after, the whole payload, before it is written to the outbox or sent.
  const masked = masker.maskDeep(n);
  if (settings.slack) out.push({ target: 'slack', kind: n.kind, createdAt, attempts: 0, body: masker.maskDeep(toSlack(masked) as unknown as Record<string, unknown>) });
  if (settings.webhook) out.push({ target: 'webhook', kind: n.kind, createdAt, attempts: 0, body: masker.maskDeep(toWebhookBody(masked)) });
  return out;
}

/**
 * Queues the notices (those whose kind is enabled) behind what is waiting in `memory` (the memory
 * after this run; `was` the one read), sends the queue in order — a target that fails stops
 * there, keeping the rest for the next run — and writes the memory back if it changed.
 */
export async function deliver(deps: NotifierDeps, was: Memory, memory: Memory, notices: Notice[]): Promise<void> {
  const { settings, masker } = deps;
  const queue = [...memory.outbox, ...notices.filter((n) => n.kind === 'test' || settings.events.has(n.kind)).flatMap((n) => outgoing(settings, masker, n))];
  const kept: Outgoing[] = [];
  const down = new Map<string, string>();
  for (const m of queue) {
    if (!settings[m.target]) continue; // a target no longer configured: its messages go
    if (down.has(m.target)) {
      kept.push(m);
      continue;
    }
    const d: Delivery = m.target === 'slack' ? await sendSlack(settings.slack!, m.body, masker) : await sendWebhook(settings.webhook!, m.body, masker);
    if (!d.ok) {
      down.set(m.target, d.error ?? 'failed');
      kept.push({ ...m, attempts: m.attempts + 1 });
    }
  }
  const dropped = Math.max(0, kept.length - OUTBOX_MAX);
  const outbox = kept.slice(dropped);
  const after = { ...memory, outbox };
  // A run with nothing to say (a cron no-op, most runs) writes nothing.
  if (JSON.stringify(after) !== JSON.stringify(was)) await writeMemory(after);
  for (const [target, error] of down)
    await journalNote(deps, `notification not delivered to ${target}: ${error}; ${outbox.filter((m) => m.target === target).length} waiting, sent with the next run${dropped ? ` (${dropped} older dropped)` : ''}`);
}

async function journalNote(deps: NotifierDeps, message: string): Promise<void> {
  if (!deps.journal?.available) return;
  await deps.journal.write([{ BRINE_EVENT: 'notify', PRIORITY: 4, MESSAGE: deps.masker.mask(message) }]).catch(() => undefined);
}

/** A rollback by hand (`agent rollback`), told at once, behind anything still waiting. */
export async function notifyRollback(deps: NotifierDeps, run: { env: string; startedBy: string }, release: NoticeRelease): Promise<void> {
  const memory = await readMemory();
  await deliver(deps, memory, memory, [rollbackNotice({ host: deps.host ?? hostname(), env: run.env, runId: '', startedBy: run.startedBy }, release, 'hand')]);
}
