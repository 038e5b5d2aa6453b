// Whole-file replacement that a killed run can't leave half-done: a temp file in the same
// directory, fsynced, given its final owner and mode, renamed over the old one, and the directory
// fsynced so the rename itself is durable. Links are switched the same way.
import { createTwoFilesPatch } from 'diff';
import { MASK } from './secret.js';
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface FileOwner {
  /** Left as the writing process's when undefined. */
  uid?: number;
  gid?: number;
  mode: number;
}

/** `.NAME.brine-XXXXXXXX` next to `path`: hidden, and recognisable as ours when left behind. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.brine-${randomBytes(4).toString('hex')}`);
}

/** A run killed while writing leaves its temp file behind (never the target half-written). */
export async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `.${basename(path)}.brine-`;
  const entries = await fs.readdir(dirname(path)).catch(() => [] as string[]);
  await Promise.all(entries.filter((e) => e.startsWith(prefix)).map((e) => fs.rm(join(dirname(path), e), { force: true })));
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  await handle.sync().finally(() => handle.close());
}

/**
 * Replaces `path` with `content`; owner and mode are set on the temp file before the rename.
 * `verify` sees the finished temp file first (file.managed's check_cmd): if it throws, the old
 * file stays as it was.
 */
export async function writeFileAtomic(
  path: string,
  content: string | Uint8Array,
  owner: FileOwner,
  verify?: (tempPath: string) => Promise<void>,
): Promise<void> {
  await removeStaleTemps(path);
  const temp = tempPathFor(path);
  try {
    // Private until it carries its final owner and mode.
    const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (owner.uid !== undefined || owner.gid !== undefined) await fs.chown(temp, owner.uid ?? -1, owner.gid ?? -1);
    await fs.chmod(temp, owner.mode);
    await verify?.(temp);
    await fs.rename(temp, path);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/** Points `path` at `target`: a link under a temp name, renamed over the old one. */
export async function symlinkAtomic(target: string, path: string): Promise<void> {
  await removeStaleTemps(path);
  const temp = tempPathFor(path);
  await fs.symlink(target, temp);
  try {
    await fs.rename(temp, path);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

export async function removeDurably(path: string): Promise<void> {
  await fs.rm(path, { force: true });
  await syncDir(dirname(path));
}

/**
 * The mode a file should have: a file holding a secret is never world-readable (0600 plus the
 * group bits it had); otherwise the mode it has, or 0644 for a new file.
 */
export function wantedMode(holdsSecret: boolean, now: number | null): number {
  if (holdsSecret && (now === null || now & 0o007)) return 0o600 | ((now ?? 0) & 0o070);
  return now ?? 0o644;
}

const MAX_DIFF_LINES = 400;

/**
 * A unified diff for a change's report. `hideOld`: the file on disk is not world-readable, so its
 * removed lines may hold secrets brine no longer knows (a rotated password): they are shown as
 * the mask. (Lines of the new content are masked by the reporters' masker.)
 */
export function unifiedDiff(path: string, before: string, after: string, options: { hideOld?: boolean } = {}): string {
  const patch = createTwoFilesPatch(path, path, before, after, '', '', { context: 3 });
  // Drop the "Index:"/"=====" lines; the ---/+++ headers carry no dates.
  const lines = patch
    .split('\n')
    .slice(2)
    .map((l, i) => (i < 2 ? l.replace(/\t$/, '') : options.hideOld && l.startsWith('-') ? `-${MASK}` : l));
  if (lines.length > MAX_DIFF_LINES) return [...lines.slice(0, MAX_DIFF_LINES), `… ${lines.length - MAX_DIFF_LINES} more lines`].join('\n');
  return lines.join('\n').trimEnd();
}

/** What is at a path now, without following a final symlink. */
export interface PathFacts {
  kind: 'file' | 'directory' | 'symlink' | 'other';
  uid: number;
  gid: number;
  mode: number;
  linkTarget?: string;
}

/** `fs.lstat`, or null when nothing is there. */
export async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await fs.lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export async function lstatPath(path: string): Promise<PathFacts | null> {
  const st = await lstatOrNull(path);
  if (!st) return null;
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
  return {
    kind,
    uid: st.uid,
    gid: st.gid,
    mode: st.mode & 0o7777,
    linkTarget: kind === 'symlink' ? await fs.readlink(path) : undefined,
  };
}

/**
 * A change in two steps — a file written, then a service told (nginx reloaded, supervisor
 * updated) — leaves a marker for its duration. A run killed between the steps leaves the file as
 * wanted but the service not told; the next run's check sees the marker and finishes the job.
 */
export const pendingPaths = { dir: '/var/lib/brine/pending' };

export async function markPending(key: string): Promise<void> {
  await fs.mkdir(pendingPaths.dir, { recursive: true });
  await writeFileAtomic(join(pendingPaths.dir, key), `${new Date().toISOString()}\n`, { mode: 0o600 });
}

export async function clearPending(key: string): Promise<void> {
  await fs.rm(join(pendingPaths.dir, key), { force: true });
}

export async function isPending(key: string): Promise<boolean> {
  return (await lstatPath(join(pendingPaths.dir, key))) !== null;
}
