// What a run reports, as a union of event kinds. Every reporter (console, JSON, journal) handles
// each kind in an exhaustive switch, so the compiler catches a reporter that forgot one.
import type { Change } from '../modules/types.js';

export type StateStatus =
  /** Already correct. */
  | 'ok'
  /** Changed by this run. */
  | 'changed'
  /** Test mode: would change. */
  | 'would-change'
  | 'failed'
  /** Not run: a requisite failed. Counts as a failure for the exit code. */
  | 'skipped'
  /** Not run, by design: unless/onlyif/creates, or onchanges/onfail with nothing to react to. */
  | 'not-needed';

export interface StateResult {
  key: string;
  id: string;
  /** `file.managed` */
  function: string;
  name: string;
  status: StateStatus;
  changes: Change[];
  /** Why: the no-op reason, the error, the requisite that failed. */
  comment: string;
  durationMs: number;
  file: string;
  line?: number;
  /**
   * --test only: what the prediction waits on — `nginx` when the state depends on packages the
   * run would install, so what it says now may change once they are (their install scripts start
   * services, add files).
   */
  afterInstall?: string[];
}

export interface RunSummary {
  runId: string;
  env: string;
  test: boolean;
  startedBy: 'hand' | 'cron' | 'bootstrap';
  total: number;
  ok: number;
  changed: number;
  failed: number;
  skipped: number;
  notNeeded: number;
  durationMs: number;
  /** --test: of the predictions, how many depend on packages the run would install first. */
  afterInstall?: number;
}

export type RunEvent =
  | { kind: 'run-start'; runId: string; env: string; test: boolean; startedBy: RunSummary['startedBy']; states: number }
  | { kind: 'state-start'; key: string; id: string; function: string; name: string }
  | { kind: 'state-result'; result: StateResult }
  | { kind: 'run-end'; summary: RunSummary; results: StateResult[] };

export interface Reporter {
  on(event: RunEvent): void;
  /** Flushes whatever the reporter buffers (JSON prints here). */
  close?(): Promise<void> | void;
}
