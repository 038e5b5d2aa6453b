// Which commit a branch, a tag or a sha names, asked of the remote with one `ls-remote`.
import { existsSync } from 'node:fs';
import type { GitRunner } from './run.js';

export const FULL_SHA = /^[0-9a-f]{40}$/;
export const SHORT_SHA = /^[0-9a-f]{4,39}$/;

export type Wanted =
  | { kind: 'branch'; name: string; sha: string }
  | { kind: 'tag'; name: string; sha: string }
  /** A commit named by sha; `sha` is the full sha once known (it may not be fetched yet). */
  | { kind: 'commit'; rev: string; sha: string | null }
  /** Not known yet: the deploy key that would let brine ask is not in place (test mode). */
  | { kind: 'unresolved'; rev: string; why: string };

export function parseLsRemote(out: string): { headBranch?: string; refs: Map<string, string> } {
  const refs = new Map<string, string>();
  let headBranch: string | undefined;
  for (const line of out.split('\n')) {
    const sym = /^ref: refs\/heads\/(\S+)\tHEAD$/.exec(line);
    if (sym) headBranch = sym[1];
    const m = /^([0-9a-f]{40})\t(\S+)$/.exec(line);
    if (m) refs.set(m[2]!, m[1]!);
  }
  return { headBranch, refs };
}

export async function hasCommit(git: GitRunner, dir: string, rev: string): Promise<string | null> {
  const out = await git.tryRun(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], dir);
  return out?.trim() || null;
}

export async function resolveRev(args: { name: string; rev: string; identity?: string }, git: GitRunner, repoDir: string | null): Promise<Wanted> {
  const { rev } = args;
  if (FULL_SHA.test(rev)) return { kind: 'commit', rev, sha: rev };
  if (args.identity && !existsSync(args.identity))
    return { kind: 'unresolved', rev, why: `not asked yet: the identity ${args.identity} does not exist yet` };
  const patterns = rev === 'HEAD' ? ['HEAD'] : [`refs/heads/${rev}`, `refs/tags/${rev}`, `refs/tags/${rev}^{}`];
  const { headBranch, refs } = parseLsRemote(await git.run(['ls-remote', '--symref', '--', args.name, ...patterns], repoDir ?? '/'));
  if (rev === 'HEAD') {
    const sha = refs.get('HEAD');
    if (!sha) throw new Error(`${args.name} has no HEAD (is the repository empty?)`);
    return headBranch ? { kind: 'branch', name: headBranch, sha } : { kind: 'commit', rev: sha, sha };
  }
  const branch = refs.get(`refs/heads/${rev}`);
  if (branch) return { kind: 'branch', name: rev, sha: branch };
  const tag = refs.get(`refs/tags/${rev}^{}`) ?? refs.get(`refs/tags/${rev}`);
  if (tag) return { kind: 'tag', name: rev, sha: tag };
  if (SHORT_SHA.test(rev)) return { kind: 'commit', rev, sha: repoDir ? await hasCommit(git, repoDir, rev) : null };
  throw new Error(`${args.name} has no branch or tag "${rev}"`);
}

export function describeWanted(w: Wanted): string {
  switch (w.kind) {
    case 'branch':
      return `branch ${w.name}`;
    case 'tag':
      return `tag ${w.name}`;
    case 'commit':
      return `commit ${w.rev}`;
    case 'unresolved':
      return w.rev;
  }
}

