// ROOT/repo: a bare mirror of the app's repository, owned by the app user and fetched as that user
// with the deploy key and the pinned host key (agent/git/). Releases are exported from it with
// `git archive` (never a working clone: no .git in a release, .gitattributes' export-ignore
// honoured), and what a release needs to know before it is exported — its lock files, the
// checksum of its migrations — is read from it by sha.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import type { Account, GitRunner } from '../git/run.js';
import { FULL_SHA, describeWanted, type Wanted } from '../git/revs.js';

export class Mirror {
  readonly dir: string;
  readonly #git: GitRunner;

  constructor(dir: string, git: GitRunner) {
    this.dir = dir;
    this.#git = git;
  }

  get exists(): boolean {
    return existsSync(join(this.dir, 'HEAD'));
  }

  /** Makes the bare repository (owned by `as`) if there is none, pointing origin at `url`. */
  async ensure(url: string, as: Account): Promise<void> {
    if (!this.exists) {
      await fs.rm(this.dir, { recursive: true, force: true }); // a directory a killed init left
      await fs.mkdir(this.dir, { recursive: true, mode: 0o750 });
      await fs.chown(this.dir, as.uid, as.gid);
      await this.#git.run(['init', '--quiet', '--bare', '.'], this.dir);
    }
    const now = await this.#git.tryRun(['config', '--get', 'remote.origin.url'], this.dir);
    if (now?.trim() !== url) await this.#git.run(['config', 'remote.origin.url', url], this.dir);
  }

  /** Every branch and tag of origin, as they are there now (deleted ones pruned). */
  async fetch(): Promise<void> {
    await this.#git.run(['fetch', '--quiet', '--prune', '--no-tags', 'origin', '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'], this.dir);
  }

  /** The commit `rev` names in the mirror, or null. */
  async commit(rev: string): Promise<string | null> {
    const out = await this.#git.tryRun(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], this.dir);
    return out?.trim() || null;
  }

  /** The commit the wanted revision is, in the mirror as fetched. */
  async resolve(wanted: Wanted): Promise<string> {
    const rev =
      wanted.kind === 'branch' ? `refs/heads/${wanted.name}` : wanted.kind === 'tag' ? `refs/tags/${wanted.name}` : wanted.kind === 'commit' ? (wanted.sha ?? wanted.rev) : wanted.rev;
    const sha = await this.commit(rev);
    if (!sha || !FULL_SHA.test(sha)) throw new Error(`${describeWanted(wanted)} is not in the repository`);
    return sha;
  }

  async subject(sha: string): Promise<string> {
    return (await this.#git.run(['log', '-1', '--format=%s', sha], this.dir)).trim();
  }

  /** A file's content at `sha`, or null when it has none. */
  async file(sha: string, path: string): Promise<string | null> {
    const exists = await this.#git.tryRun(['rev-parse', '--verify', '--quiet', `${sha}:${path}`], this.dir);
    if (!exists) return null;
    return this.#git.run(['cat-file', 'blob', `${sha}:${path}`], this.dir);
  }

  /**
   * A checksum of the files matching the globs at `sha` (their paths and blob ids), or undefined
   * when none matches: a glob that matches nothing must not make every migration look unchanged.
   */
  async checksum(sha: string, globs: string[]): Promise<string | undefined> {
    const matchers = globs.map(globMatcher);
    const entries = (await this.#git.run(['ls-tree', '-r', '-z', '--full-tree', sha], this.dir))
      .split('\0')
      .filter((entry) => {
        const tab = entry.indexOf('\t');
        return tab > 0 && matchers.some((m) => m(entry.slice(tab + 1)));
      });
    return entries.length ? createHash('sha256').update(entries.join('\0')).digest('hex') : undefined;
  }

  /** Writes the tree of `sha` into `dir` (which must exist, owned by the user git runs as). */
  async export(sha: string, dir: string, untar: (tarball: string, dir: string) => Promise<void>): Promise<void> {
    const tarball = join(this.dir, `export-${sha.slice(0, 12)}-${process.pid}.tar`);
    try {
      await this.#git.run(['archive', '--format=tar', '-o', tarball, sha], this.dir);
      await untar(tarball, dir);
    } finally {
      await fs.rm(tarball, { force: true });
    }
  }
}

/**
 * A path glob as git's `:(glob)` reads one: `*`, `?` and `[…]` within a path part, `**` across
 * parts; a pattern with no wildcard also matches everything under it (a directory).
 */
export function globMatcher(glob: string): (path: string) => boolean {
  const pattern = glob.replace(/^\/+|\/+$/g, '');
  if (!/[*?[]/.test(pattern)) return (path) => path === pattern || path.startsWith(`${pattern}/`);
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[' && pattern.indexOf(']', i + 2) > 0) {
      // A character class, [0-9] or [!_]: copied, its ! read as ^.
      const end = pattern.indexOf(']', i + 2);
      const body = pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
      re += `[${body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  const compiled = new RegExp(`^${re}$`);
  return (path) => compiled.test(path);
}
