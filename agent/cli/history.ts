// `agent history`, and the last run `agent status` tells of: runs as the journal has them. A run
// writes its start as it starts and the rest when it ends; a start with no end is a run that was
// killed (interrupted), or one that is still going (its process holds the run lock).
import { UsageError, ExitCode } from '../errors.js';
import type { Journal } from '../journal.js';
import { systemJournal } from '../journal.js';
import { liveHolder } from '../lock.js';
import type { Io, Parsed } from './context.js';

export interface RunRecord {
  /** When it started (when it ended, for runs of agents that wrote no start). */
  when: string;
  runId: string;
  env: string;
  startedBy: string;
  test: boolean;
  total: number;
  changed: number;
  failed: number;
  skipped: number;
  durationMs: number;
  result: 'ok' | 'failed' | 'interrupted' | 'running';
}

const at = (e: Record<string, string>) => new Date(Number(e.__REALTIME_TIMESTAMP) / 1000).toISOString();

/** The last `last` runs, oldest first, each from its start and end entries. */
export async function runRecords(journal: Journal, last: number, lockPath: string): Promise<RunRecord[]> {
  const entries = await journal.read(['BRINE_EVENT=run-start', 'BRINE_EVENT=run-end'], { last: last * 2 + 2 });
  const runs = new Map<string, { start?: Record<string, string>; end?: Record<string, string> }>();
  for (const e of entries) {
    const id = e.BRINE_RUN_ID ?? '';
    const run = runs.get(id) ?? {};
    if (e.BRINE_EVENT === 'run-start') run.start = e;
    else run.end = e;
    runs.set(id, run);
  }
  const holder = liveHolder(lockPath);
  const records = [...runs.entries()].map(([runId, { start, end }]): RunRecord => {
    const e = end ?? start!;
    const failed = Number(end?.BRINE_FAILED_COUNT ?? 0);
    const skipped = Number(end?.BRINE_SKIPPED_COUNT ?? 0);
    const running = !end && holder !== undefined && String(holder.pid) === start?.BRINE_PID;
    return {
      when: at(start ?? e),
      runId,
      env: e.BRINE_ENV ?? '',
      startedBy: e.BRINE_STARTED_BY ?? '',
      test: e.BRINE_TEST === '1',
      total: Number(end?.BRINE_TOTAL ?? start?.BRINE_STATES ?? 0),
      changed: Number(end?.BRINE_CHANGED_COUNT ?? 0),
      failed,
      skipped,
      durationMs: end ? Number(end.BRINE_DURATION_MS ?? 0) : Date.parse(at(e)) ? Math.max(0, Date.now() - Date.parse(at(e))) : 0,
      result: !end ? (running ? 'running' : 'interrupted') : failed + skipped ? 'failed' : 'ok',
    };
  });
  return records.sort((a, b) => (a.when < b.when ? -1 : a.when > b.when ? 1 : 0)).slice(-last);
}

const RESULT: Record<RunRecord['result'], string> = { ok: 'ok', failed: 'FAILED', interrupted: 'INTERRUPTED', running: 'running' };

function when(r: RunRecord): string {
  return r.when.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function formatRun(r: RunRecord): string {
  const mode = r.test ? 'test' : 'apply';
  const time = r.result === 'interrupted' ? '-' : `${(r.durationMs / 1000).toFixed(2)}s`;
  return `${when(r)}  ${r.startedBy.padEnd(9)} ${mode.padEnd(5)} ${r.env.padEnd(11)} ${String(r.total).padStart(6)} ${String(r.changed).padStart(7)} ${String(r.failed + r.skipped).padStart(6)} ${time.padStart(8)}  ${RESULT[r.result]}`;
}

const RUN_HEADER = `${'WHEN'.padEnd(20)}  ${'HOW'.padEnd(9)} ${'MODE'.padEnd(5)} ${'ENV'.padEnd(11)} ${'STATES'.padStart(6)} ${'CHANGED'.padStart(7)} ${'FAILED'.padStart(6)} ${'TIME'.padStart(8)}  RESULT`;

export async function history(p: Parsed, io: Io, lockPath: string): Promise<number> {
  const journal = systemJournal();
  if (!journal.available) throw new UsageError('no systemd journal here: history is kept on the server');
  const runs = await runRecords(journal, p.last, lockPath);
  if (p.json) io.stdout(`${JSON.stringify(runs, null, 2)}\n`);
  else if (runs.length === 0) io.stdout('no runs in the journal yet\n');
  else io.stdout(`${[RUN_HEADER, ...runs.map(formatRun)].join('\n')}\n`);
  return ExitCode.ok;
}

/** The status line about the last run. */
export function describeLastRun(last: RunRecord | undefined): string {
  if (!last) return 'last run: none in the journal';
  if (last.result === 'interrupted') return `last run: ${when(last)} (${last.startedBy}): interrupted — it never finished (killed, or the server went down); the next run picks up where it stopped`;
  if (last.result === 'running') return `last run: ${when(last)} (${last.startedBy}): still running`;
  return `last run: ${when(last)} (${last.startedBy}): ${last.total} states, ${last.changed} changed, ${last.failed + last.skipped} failed, ${(last.durationMs / 1000).toFixed(2)}s`;
}
