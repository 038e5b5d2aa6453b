// Where a release-deployed app lives, under its root (/srv/APP):
//
//   repo/                       a bare mirror of the app's repository, fetched with the deploy key
//   releases/<id>/              one directory per release, exported from the mirror (git archive)
//   releases/<id>.log           what its build, dependency and migration steps printed (root only)
//   current -> releases/<id>    the release nginx sends requests to
//   shared/                     files and directories linked into every release (.env, uploads/)
//   deps/<path>-<key>/          dependency installs (a venv, node_modules), one per lock-file checksum
//   slots/blue, slots/green     -> releases/<id>: what each of the two app slots runs (see serve.ts)
//   releases.jsonl              the release log (log.ts)
//
// A release id is its UTC build time and short sha, `20261202103000-abc1234`, so ids sort by age.
import { lstat, readlink } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { symlinkAtomic } from '../atomic.js';

export interface Layout {
  root: string;
  repo: string;
  releases: string;
  current: string;
  shared: string;
  deps: string;
  slots: string;
  log: string;
}

export function layout(root: string): Layout {
  return {
    root,
    repo: join(root, 'repo'),
    releases: join(root, 'releases'),
    current: join(root, 'current'),
    shared: join(root, 'shared'),
    deps: join(root, 'deps'),
    slots: join(root, 'slots'),
    log: join(root, 'releases.jsonl'),
  };
}

export const RELEASE_ID = /^(\d{14})-([0-9a-f]{7,40})(?:-(\d+))?$/;

/** `20261202103000-abc1234`; `-2`, `-3`… when a release of that sha was already made that second. */
export function newReleaseId(sha: string, now: Date, taken: ReadonlySet<string>): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const base = `${stamp}-${sha.slice(0, 7)}`;
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

export function releaseDir(l: Layout, id: string): string {
  return join(l.releases, id);
}

/** The release a link (current, a slot) points at, or null; throws if the path is not a link. */
export async function linkedRelease(l: Layout, path: string): Promise<string | null> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (!st.isSymbolicLink())
    throw new Error(
      `${path} is a ${st.isDirectory() ? 'directory' : 'file'}, not a link: move it away (brine switches releases by replacing the link ${basename(path)} -> releases/ID)`,
    );
  const target = resolve(join(path, '..'), await readlink(path));
  const id = basename(target);
  return resolve(l.releases, id) === target && RELEASE_ID.test(id) ? id : null;
}

/**
 * Points `path` (current, a slot) at a release: a link under a temp name renamed over the old one,
 * so every reader sees the old release or the new one, never nothing. Checked with readlink after.
 */
export async function pointAt(l: Layout, path: string, id: string): Promise<void> {
  const target = join('releases', id);
  const relative = path.startsWith(`${l.slots}/`) ? join('..', target) : target;
  await symlinkAtomic(relative, path);
  const now = await linkedRelease(l, path);
  if (now !== id) throw new Error(`${path} should point at releases/${id} but points at ${now ?? 'nothing'}`);
}
