// Every run and every state result, as structured journal entries (masked). The run's start is
// written as it starts, so a run that is killed still shows (as interrupted, in `agent history`);
// the rest when the run ends, so logging never slows a state down. A state that changed, failed or was skipped gets an
// entry of its own (`journalctl -t agent BRINE_RESULT=failed`); those already correct are listed
// in the run's entry.
import type { Journal, JournalFields } from '../journal.js';
import type { Masker } from '../secret.js';
import type { Reporter, RunEvent, StateStatus } from './events.js';

const PRIORITY: Record<StateStatus, number> = {
  ok: 6,
  'not-needed': 6,
  changed: 5,
  'would-change': 6,
  failed: 3,
  skipped: 4,
};

export class JournalReporter implements Reporter {
  readonly #journal: Journal;
  readonly #masker: Masker;
  #entries: JournalFields[] = [];
  #run: JournalFields = {};
  /** The run-start entry, on its way while the run goes on. */
  #started: Promise<void> | undefined;
  #unchanged: string[] = [];

  constructor(journal: Journal, masker: Masker) {
    this.#journal = journal;
    this.#masker = masker;
  }

  #add(fields: JournalFields): void {
    const masked: JournalFields = {};
    for (const [k, v] of Object.entries(fields)) masked[k] = typeof v === 'string' ? this.#masker.mask(v) : v;
    this.#entries.push({ ...this.#run, ...masked });
  }

  on(event: RunEvent): void {
    switch (event.kind) {
      case 'run-start':
        this.#unchanged = [];
        this.#run = { BRINE_RUN_ID: event.runId, BRINE_ENV: event.env, BRINE_TEST: event.test, BRINE_STARTED_BY: event.startedBy };
        this.#add({ BRINE_EVENT: 'run-start', PRIORITY: 6, BRINE_STATES: event.states, BRINE_PID: process.pid, MESSAGE: `run started: ${event.test ? 'apply --test' : 'apply'} (${event.startedBy}), ${event.states} states` });
        this.#started = this.#journal.write(this.#entries.splice(0)).catch(() => undefined);
        return;
      case 'state-start':
        return;
      case 'state-result': {
        const r = event.result;
        // A state that was already correct is a line in the run's own entry (BRINE_UNCHANGED):
        // one logger process per state made a no-op run of the reference stack 220 ms slower.
        if (r.status === 'ok' || r.status === 'not-needed') {
          this.#unchanged.push(`${r.function} ${r.id} ${r.status} ${r.durationMs}ms`);
          return;
        }
        const changes = r.changes.map((c) => (c.diff !== undefined ? { what: c.what, diff: `${c.diff.split('\n').length} lines` } : c));
        this.#add({
          BRINE_EVENT: 'state',
          PRIORITY: PRIORITY[r.status],
          BRINE_STATE_ID: r.id,
          BRINE_FUNCTION: r.function,
          BRINE_NAME: r.name,
          BRINE_RESULT: r.status,
          BRINE_CHANGED: r.status === 'changed',
          BRINE_DURATION_MS: r.durationMs,
          BRINE_CHANGES: changes.length ? JSON.stringify(changes) : undefined,
          BRINE_FILE: `${r.file}:${r.line ?? ''}`,
          MESSAGE: `${r.function} ${r.name}: ${r.status}${r.changes.length ? ` (${r.changes.map((c) => c.what).join(', ')})` : ''}${r.status === 'failed' || r.status === 'skipped' ? `: ${r.comment}` : ''}`,
        });
        return;
      }
      case 'run-end': {
        const s = event.summary;
        this.#add({
          BRINE_EVENT: 'run-end',
          BRINE_UNCHANGED: this.#unchanged.length ? JSON.stringify(this.#unchanged) : undefined,
          PRIORITY: s.failed + s.skipped ? 3 : s.changed ? 5 : 6,
          BRINE_TOTAL: s.total,
          BRINE_CHANGED_COUNT: s.changed,
          BRINE_FAILED_COUNT: s.failed,
          BRINE_SKIPPED_COUNT: s.skipped,
          BRINE_DURATION_MS: s.durationMs,
          MESSAGE: `run ${s.failed + s.skipped ? 'failed' : 'converged'}: ${s.total} states, ${s.changed} ${s.test ? 'would change' : 'changed'}, ${s.failed} failed${s.skipped ? `, ${s.skipped} skipped` : ''} in ${(s.durationMs / 1000).toFixed(2)}s`,
        });
        return;
      }
      default: {
        const never: never = event;
        throw new Error(`unhandled event ${JSON.stringify(never)}`);
      }
    }
  }

  async close(): Promise<void> {
    await this.#started;
    const entries = this.#entries;
    this.#entries = [];
    await this.#journal.write(entries);
  }
}
