// brine runs as root, but a release and a dependency entry are trees the app user wrote (the
// repository's files, pip's and npm's output, build steps). Root must never be tricked by them into
// following a link out of the tree (a `REVISION -> /etc/shadow` in the repository, a `.venv/x -> /`
// made by a setup.py) or racing the app user while it works on them.
//
// takeOver makes such a tree root's, top-down: each directory is taken (root-owned, writable by
// root only) through a handle opened without following links before what is in it is listed, so
// nothing below it can be swapped for a link any more while root works there; set-id bits go; a
// file the app user does not own (a hard link to someone else's) is left as it is. After it, root
// may read, seal or delete the tree safely.
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

/**
 * Takes the tree at `dir` over for root (see above). Only what `uid` (or root) owns is changed.
 * `readable`: everyone may read it after (a dependency entry the app runs from).
 */
export async function takeOver(dir: string, uid: number, options: { readable?: boolean } = {}): Promise<void> {
  const take = async (path: string, directory: boolean): Promise<boolean> => {
    let handle;
    try {
      handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (directory ? constants.O_DIRECTORY : 0));
    } catch (err) {
      // A link (ELOOP), or gone: not ours to follow.
      if (['ELOOP', 'ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
      throw err;
    }
    try {
      const st = await handle.stat();
      if (st.uid !== uid && st.uid !== 0) return false;
      if (directory !== st.isDirectory()) return false;
      await handle.chown(0, 0);
      await handle.chmod((st.mode & 0o755) | (options.readable ? (directory ? 0o555 : 0o444) : 0));
      return true;
    } finally {
      await handle.close();
    }
  };
  const walk = async (d: string): Promise<void> => {
    if (!(await take(d, true))) return;
    for (const entry of await fs.readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isSymbolicLink()) await fs.lchown(path, 0, 0);
      else if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) await take(path, false);
      // Sockets, FIFOs and devices are left as they are: nothing here opens them.
    }
  };
  await walk(dir);
}

/** Removes a tree the app user may have written: taken over first, so the removal follows nothing. */
export async function removeTree(dir: string, uid: number): Promise<void> {
  await takeOver(dir, uid);
  await fs.rm(dir, { recursive: true, force: true });
}

/**
 * Throws unless `rel` inside `dir` is reached through real directories only: a shared file or a
 * dependency path that goes through a link the repository holds would make root write elsewhere.
 */
export async function assertNoLinks(dir: string, rel: string, what: string): Promise<void> {
  const parts = rel.split('/').filter(Boolean);
  let path = dir;
  for (const part of parts.slice(0, -1)) {
    path = join(path, part);
    const st = await fs.lstat(path).catch(() => null);
    if (!st) return; // made by brine from here on
    if (st.isSymbolicLink() || !st.isDirectory())
      throw new Error(`${what} ${rel}: ${relative(dir, path).split(sep).join('/')} is ${st.isSymbolicLink() ? 'a link' : 'not a directory'} in the release; the path must go through directories only`);
  }
}
