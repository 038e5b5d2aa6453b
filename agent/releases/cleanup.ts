// Old releases go, so the disk does not fill: `keep` good releases and `keep_failed` others
// (failed, rolled back, never switched to) stay. The live release, the one `agent rollback` would
// go to, and any release a slot or `current` points at always stay, and count towards `keep`
// first; the newest other good ones fill it up. A release is renamed aside first (a hidden .trash- name, which nothing
// reads), then deleted, so a half-deleted release is never mistaken for one; a failure to delete
// is a warning, never a failed run. Dependency entries no remaining release links to go with them.
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { removeUnusedEntries } from './deps.js';
import type { Layout } from './layout.js';
import { isGood, type ReleaseRecord } from './log.js';

export interface Retention {
  keep: number;
  keepFailed: number;
  /** Releases that stay whatever their age. */
  protect: ReadonlySet<string>;
}

/** The ids of the releases to remove (pure: the records, what to keep). */
export function chooseRemovals(records: ReleaseRecord[], r: Retention): string[] {
  const present = records.filter((rec) => !rec.removed);
  const newestFirst = [...present].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const good = newestFirst.filter(isGood);
  // The protected ones count towards `keep` first (more stay if they alone are more), then the newest.
  const keptGood = new Set(good.filter((rec) => r.protect.has(rec.id)).map((rec) => rec.id));
  for (const rec of good) if (keptGood.size < r.keep) keptGood.add(rec.id);
  const others = newestFirst.filter((rec) => !isGood(rec) && rec.status !== 'building');
  const remove = [...good.filter((rec) => !keptGood.has(rec.id)), ...others.slice(r.keepFailed)];
  return remove.filter((rec) => !r.protect.has(rec.id)).map((rec) => rec.id);
}

export interface CleanupReport {
  removed: string[];
  removedDeps: string[];
  warnings: string[];
}

/** Removes the releases (and their log files), then the dependency entries nothing uses. */
export async function removeReleases(l: Layout, ids: string[], records: ReleaseRecord[]): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], removedDeps: [], warnings: [] };
  for (const id of ids) {
    const aside = join(l.releases, `.trash-${id}`);
    try {
      await fs.rename(join(l.releases, id), aside).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await fs.rm(aside, { recursive: true, force: true });
      await fs.rm(join(l.releases, `${id}.log`), { force: true });
      report.removed.push(id);
    } catch (err) {
      report.warnings.push(`could not remove releases/${id}: ${(err as Error).message}`);
    }
  }
  // What earlier runs left: trash not fully deleted, exports a killed run did not finish.
  for (const name of await fs.readdir(l.releases).catch(() => [] as string[])) {
    if (!/^\.(trash-.+|.+\.tmp)$/.test(name)) continue;
    await fs.rm(join(l.releases, name), { recursive: true, force: true }).catch((err: Error) => report.warnings.push(`could not remove releases/${name}: ${err.message}`));
  }
  const gone = new Set(report.removed);
  const used = new Set(records.filter((rec) => !rec.removed && !gone.has(rec.id)).flatMap((rec) => rec.deps ?? []));
  const deps = await removeUnusedEntries(l, used);
  report.removedDeps = deps.removed;
  report.warnings.push(...deps.warnings);
  return report;
}
