// What the notifier remembers between runs, on disk: the failure it last told the team about,
// the drift it last reported, and the messages not delivered yet (the outbox, sent before any new
// one by the next run). Only masked payloads are ever written here.
//
// The no-storm rule (decide): a run that fails the way the last one did says nothing, unless the
// repeat interval has passed since it was last said ("still failing"); a failure that changes is
// said at once; the first run without failures after failing ones says "back to normal". Drift
// that the scheduled run keeps repairing the same way (a state that is never quite idempotent) is
// said once per interval too. Deploys and rollbacks are events, not conditions: always said.
import * as fs from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import type { StateResult } from '../report/events.js';
import { driftNotice, failedNotice, firstLine, recoveredNotice, type Notice, type RunFacts } from './messages.js';

/** Where it is kept; tests point it elsewhere. */
export const memoryPaths = { file: '/var/lib/brine/notify.json' };

export interface Outgoing {
  target: 'slack' | 'webhook';
  kind: string;
  createdAt: string;
  /** The masked body, as it will be sent. */
  body: Record<string, unknown>;
  attempts: number;
}

export interface Memory {
  failing?: { signature: string; since: string; lastSentAt: string; runs: number };
  drift?: { signature: string; lastSentAt: string };
  outbox: Outgoing[];
}

/** Messages kept for a webhook that stays down; older ones are dropped (and said so in the journal). */
export const OUTBOX_MAX = 20;

export async function readMemory(): Promise<Memory> {
  try {
    const m = JSON.parse(await fs.readFile(memoryPaths.file, 'utf8')) as Partial<Memory>;
    return { ...m, outbox: Array.isArray(m.outbox) ? m.outbox : [] };
  } catch {
    return { outbox: [] };
  }
}

export async function writeMemory(m: Memory): Promise<void> {
  await fs.mkdir(dirname(memoryPaths.file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(memoryPaths.file, `${JSON.stringify(m, null, 1)}\n`, { mode: 0o600 });
}

/**
 * What makes two failures "the same": which states failed, each with its first error line, with
 * numbers taken out (a duration, a PID, a port in an error are not a different failure).
 */
export function signature(results: StateResult[]): string {
  return results
    .map((r) => `${r.key} ${r.status} ${firstLine(r.comment).replace(/\d+(\.\d+)?/g, 'N')}`)
    .sort()
    .join('\n');
}

export interface RunOutcome {
  run: RunFacts;
  /** Failed and skipped states (release health-check failures, said as rollbacks, left out). */
  failed: StateResult[];
  /** A scheduled run's repairs: the states it changed (deploys left out). */
  drift: StateResult[];
}

/** The notices this run's outcome calls for, and the memory after it. Pure. */
export function decide(memory: Memory, outcome: RunOutcome, repeatMs: number, now = new Date()): { notices: Notice[]; memory: Memory } {
  const notices: Notice[] = [];
  const next: Memory = { ...memory };
  const at = now.toISOString();
  const run = { ...outcome.run, at };
  const due = (lastSentAt: string) => now.getTime() - Date.parse(lastSentAt) >= repeatMs;

  if (outcome.failed.length) {
    const sig = signature(outcome.failed);
    const was = memory.failing;
    if (!was || was.signature !== sig) {
      notices.push(failedNotice(run, outcome.failed));
      next.failing = { signature: sig, since: at, lastSentAt: at, runs: 1 };
    } else if (due(was.lastSentAt)) {
      notices.push(failedNotice(run, outcome.failed, { since: was.since, runs: was.runs + 1 }));
      next.failing = { ...was, lastSentAt: at, runs: was.runs + 1 };
    } else {
      next.failing = { ...was, runs: was.runs + 1 };
    }
  } else if (memory.failing) {
    notices.push(recoveredNotice(run, memory.failing.since, memory.failing.runs));
    delete next.failing;
  }

  if (outcome.drift.length) {
    const sig = outcome.drift.map((r) => r.key).sort().join('\n');
    if (!memory.drift || memory.drift.signature !== sig || due(memory.drift.lastSentAt)) {
      notices.push(driftNotice(run, outcome.drift));
      next.drift = { signature: sig, lastSentAt: at };
    }
  } else if (outcome.run.startedBy === 'cron') {
    // A scheduled run with nothing to repair: the next drift is news again.
    delete next.drift;
  }
  return { notices, memory: next };
}
