// The release log: ROOT/releases.jsonl, one JSON object a line, each the whole record of one
// release after a change to it. The last line for an id wins, so an append is the only write a
// run makes while it deploys (a run killed mid-write leaves at most one torn last line, which is
// skipped); cleanup rewrites the file atomically, keeping the records of the releases still there
// and the most recent of those removed.
//
// Status: building → ready → active; a newer release's switch makes the active one `ready` again
// (it stays a rollback target); `failed` (build, dependencies, migration or health check), and
// `rolled-back` (it was active and `agent rollback` went away from it). A failed health check or
// a rollback holds the sha back: a run does not deploy it again while the branch still points at
// it, until a new commit arrives or `agent release --retry`.
import { appendFile, open, readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../atomic.js';
import { RELEASE_ID } from './layout.js';

export type ReleaseStatus = 'building' | 'ready' | 'active' | 'failed' | 'rolled-back';

export type Phase = 'fetch' | 'export' | 'dependencies' | 'build' | 'migrate' | 'switch';
export const PHASES: Phase[] = ['fetch', 'export', 'dependencies', 'build', 'migrate', 'switch'];

export interface ReleaseRecord {
  id: string;
  sha: string;
  /** The commit's subject line. */
  subject: string;
  status: ReleaseStatus;
  /** What made it: a run from cron, by hand, bootstrap. */
  startedBy: string;
  createdAt: string;
  updatedAt: string;
  /** Milliseconds per phase, as they finish. */
  phases: Partial<Record<Phase, number>>;
  /** The dependency cache entries (deps/NAME) it links to. */
  deps?: string[];
  migrations?: { outcome: 'ran' | 'skipped' | 'none'; checksum?: string; detail?: string };
  /** When it last became active; set once it served requests (a good release). */
  activatedAt?: string;
  failure?: { phase: Phase | 'health' | 'interrupted'; message: string; at: string };
  /** Not deployed again while the branch points at its sha (a failed health check, a rollback). */
  held?: boolean;
  rolledBack?: { at: string; to: string; startedBy: string };
  /** Its directory was removed by cleanup. */
  removed?: boolean;
}

/** Records kept in the file for releases whose directories are gone. */
const REMOVED_KEPT = 50;

export class ReleaseLog {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** Every release's latest record, oldest first. */
  async read(): Promise<ReleaseRecord[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const byId = new Map<string, ReleaseRecord>();
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let record: ReleaseRecord;
      try {
        record = JSON.parse(line) as ReleaseRecord;
      } catch {
        continue; // a line torn by a killed run
      }
      // Only what brine writes: an id it would not make (a forged `../../etc`) is not a release.
      if (typeof record?.id !== 'string' || !RELEASE_ID.test(record.id) || typeof record.sha !== 'string') continue;
      byId.set(record.id, record);
    }
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Appends a record (the whole record, with updatedAt set), durably. */
  async put(record: ReleaseRecord): Promise<ReleaseRecord> {
    const saved = { ...record, updatedAt: new Date().toISOString() };
    await appendFile(this.path, `${JSON.stringify(saved)}\n`, { mode: 0o640 });
    const handle = await open(this.path, 'r');
    await handle.sync().finally(() => handle.close());
    return saved;
  }

  /** Rewrites the file with one line per release (the removed ones only the most recent). */
  async compact(records: ReleaseRecord[]): Promise<void> {
    const removed = records.filter((r) => r.removed);
    const keep = new Set([...records.filter((r) => !r.removed), ...removed.slice(-REMOVED_KEPT)]);
    const lines = records.filter((r) => keep.has(r)).map((r) => JSON.stringify(r));
    await writeFileAtomic(this.path, lines.length ? `${lines.join('\n')}\n` : '', { mode: 0o640 });
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the records

/** A release that served requests and passed its health check: one `agent rollback` may go to. */
export function isGood(r: ReleaseRecord): boolean {
  return !r.removed && (r.status === 'active' || (r.status === 'ready' && r.activatedAt !== undefined));
}

/** The newest good release older than `active`: where `agent rollback` goes by default. */
export function previousGood(records: ReleaseRecord[], activeId: string | null): ReleaseRecord | undefined {
  return records.filter((r) => r.id !== activeId && isGood(r) && (activeId === null || r.id < activeId)).at(-1);
}

/** Why `sha` is held back (its latest release failed its health check or was rolled back from), or undefined. */
export function holdOn(records: ReleaseRecord[], sha: string): ReleaseRecord | undefined {
  const latest = records.filter((r) => r.sha === sha).at(-1);
  return latest?.held ? latest : undefined;
}

export function byId(records: ReleaseRecord[], id: string | null): ReleaseRecord | undefined {
  return id === null ? undefined : records.find((r) => r.id === id);
}
