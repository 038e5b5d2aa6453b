// Old releases go, so the disk does not fill: `keep` good releases and `keep_failed` others
// (failed, rolled back, never switched to) stay. The live release, the one `agent rollback` would
// go to, and any release a slot or `current` points at always stay, and count towards `keep`
// first; the newest other good ones fill it up. A release is renamed aside first (a hidden .trash- name, which nothing
// reads), then deleted, so a half-deleted release is never mistaken for one; a failure to delete
// is a warning, never a failed run. Dependency entries no remaining release links to go with them.
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { linkedEntries, removeUnusedEntries } from './deps.js';
import { RELEASE_ID, type Layout } from './layout.js';
import { removeTree } from './own.js';
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

/**
 * Removes the releases (and their log files), what earlier runs left half-removed, then the
 * dependency entries no remaining release links to. `records` already say the releases are
 * removed (the caller writes that first). Release trees are the app user's (`uid`): each is taken
 * over by root before it is deleted (own.ts).
 */
export async function removeReleases(l: Layout, ids: string[], records: ReleaseRecord[], uid: number, depPaths: string[]): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], removedDeps: [], warnings: [] };
  const remove = async (name: string) => {
    const aside = name.startsWith('.trash-') ? join(l.releases, name) : join(l.releases, `.trash-${name}`);
    if (!name.startsWith('.trash-'))
      await fs.rename(join(l.releases, name), aside).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    await removeTree(aside, uid).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  };
  for (const id of ids) {
    try {
      await remove(id);
      await fs.rm(join(l.releases, `${id}.log`), { force: true });
      report.removed.push(id);
    } catch (err) {
      report.warnings.push(`could not remove releases/${id}: ${(err as Error).message}`);
    }
  }
  // What earlier runs left: trash not fully deleted, exports a killed run did not finish, releases
  // the log says are removed (a run killed while it removed them).
  const removed = new Set(records.filter((r) => r.removed).map((r) => r.id));
  for (const name of await fs.readdir(l.releases).catch(() => [] as string[])) {
    if (/^\.(.+)\.tmp$/.test(name)) await removeTree(join(l.releases, name), uid).catch((err: Error) => report.warnings.push(`could not remove releases/${name}: ${err.message}`));
    else if (name.startsWith('.trash-') || (RELEASE_ID.test(name) && removed.has(name) && !ids.includes(name)))
      await remove(name).catch((err: Error) => report.warnings.push(`could not remove releases/${name}: ${err.message}`));
  }
  // In use: what the log says (a release that could not be removed is still there), and what the
  // links of every release still there say.
  const stays = (r: ReleaseRecord) => !r.removed || (ids.includes(r.id) && !report.removed.includes(r.id));
  const used = new Set(records.filter(stays).flatMap((r) => r.deps ?? []));
  for (const name of await fs.readdir(l.releases).catch(() => [] as string[]))
    if (RELEASE_ID.test(name)) for (const entry of await linkedEntries(l, join(l.releases, name), depPaths)) used.add(entry);
  const deps = await removeUnusedEntries(l, used, uid);
  report.removedDeps = deps.removed;
  report.warnings.push(...deps.warnings);
  return report;
}
