// git.latest — a checkout of the app's repository at a branch, a tag or a commit
//
//   app-checkout:
//     git.latest:
//       - name: ssh://git@git.example.com/acme/app.git   # or git@git.example.com:acme/app.git
//       - target: /srv/app/checkout
//       - rev: main                  # branch, tag or commit sha; default HEAD (the remote's default branch)
//       - user: app                  # git runs as this user, and the checkout is theirs (default root)
//       - identity: /srv/app/.ssh/deploy_key
//       - known_hosts:               # the git host's key, pinned: no other key is accepted
//         - git.example.com ssh-ed25519 AAAAC3Nza…
//       - force_reset: false         # true: local changes to tracked files are discarded
//       - depth: 1                   # optional: fetch only this much history
//
// A branch is checked out as a local branch tracking origin/BRANCH, so a push to it is picked up
// by the next run; a tag or a commit is checked out detached. Untracked files are left alone
// (`git clean` is never run). Local changes to tracked files fail the state unless force_reset.
//
// SSH is never interactive and never trusts a host key it was not given (see agent/git/ssh.ts).
//
// A first clone goes into a temp directory next to the target, renamed into place once checked
// out, so a killed run leaves no half-cloned target.
import { Type } from '@sinclair/typebox';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { syncDir, tempPathFor } from '../atomic.js';
import { account, gitFor, type GitRunner } from '../git/run.js';
import { FULL_SHA, describeWanted, hasCommit, resolveRev, type Wanted } from '../git/revs.js';
import { fingerprint, knownHostsFile, knownHostsLines, sshArgProblems, withKnownHosts, writeKnownHosts, type KnownHostsFile } from '../git/ssh.js';
import { AccountName, pathClaim } from './common.js';
import { stateFunction, type Change, type StateModule } from './types.js';

const LatestArgs = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'the repository URL' }),
    target: Type.String({ pattern: '^/.', description: 'an absolute path' }),
    rev: Type.String({ minLength: 1, default: 'HEAD' }),
    user: Type.String({ ...AccountName, default: 'root' }),
    identity: Type.Optional(Type.String({ pattern: '^/', description: 'an absolute path' })),
    known_hosts: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
    force_reset: Type.Boolean({ default: false }),
    depth: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

/** Without output for this long, a git command is taken for hung and killed. */

interface LatestCurrent {
  /** absent, an empty directory (cloned into), or a checkout. */
  target: 'absent' | 'empty' | 'repo';
  head: string | null;
  /** The checked-out branch; null when detached. */
  branch: string | null;
  remote: string | null;
  /** `git status --porcelain` lines for changed tracked files. */
  dirty: string[];
  wanted: Wanted;
  knownHosts: KnownHostsFile | null;
}


async function targetKind(target: string): Promise<LatestCurrent['target']> {
  let st;
  try {
    st = await fs.lstat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  if (!st.isDirectory()) throw new Error(`${target} exists and is not a directory`);
  if (existsSync(join(target, '.git'))) return 'repo';
  if ((await fs.readdir(target)).length === 0) return 'empty';
  throw new Error(`${target} exists and is not a git checkout (it has files but no .git); move it away or choose another target`);
}

/** Clone directories a killed run left next to the target. */
async function removeStaleClones(target: string): Promise<void> {
  const prefix = `.${basename(target)}.brine-`;
  const entries = await fs.readdir(dirname(target)).catch(() => [] as string[]);
  await Promise.all(entries.filter((e) => e.startsWith(prefix)).map((e) => fs.rm(join(dirname(target), e), { recursive: true, force: true })));
}

const latest = stateFunction(LatestArgs, {
  // git is given the URL on its command line: a token in it would be there for all to read.
  commandLines: (args) => [{ key: 'name', command: args.name }],
  claims: (args) => [pathClaim(args.target)],
  validate(args) {
    return sshArgProblems(args);
  },
  async check(args, ctx): Promise<LatestCurrent> {
    const target = await targetKind(args.target);
    const as = await account(args.user);
    if (!as && target !== 'absent') throw new Error(`user ${args.user} does not exist`);
    const knownHosts = await knownHostsFile(args);
    // A user that an earlier state will create (not yet, in test mode) can't run anything: ask as root.
    const runAs = as ?? (await account('root'))!;
    return withKnownHosts(knownHosts, async (khFile) => {
      const git = gitFor(args, runAs, khFile, ctx);
      const current: LatestCurrent = { target, head: null, branch: null, remote: null, dirty: [], knownHosts, wanted: { kind: 'unresolved', rev: args.rev, why: '' } };
      if (target === 'repo') {
        current.head = (await git.tryRun(['rev-parse', '--verify', '--quiet', 'HEAD'], args.target))?.trim() || null;
        current.branch = (await git.tryRun(['symbolic-ref', '--quiet', '--short', 'HEAD'], args.target))?.trim() || null;
        current.remote = (await git.tryRun(['config', '--get', 'remote.origin.url'], args.target))?.trim() || null;
        const status = await git.run(['status', '--porcelain', '--untracked-files=no'], args.target);
        current.dirty = status.split('\n').filter((l) => l.trim() !== '');
      }
      current.wanted = await resolveRev(args, git, target === 'repo' ? args.target : null);
      return current;
    });
  },
  plan(current, args) {
    const changes: Change[] = [];
    const kh = current.knownHosts;
    if (kh && kh.old !== kh.new)
      changes.push({ what: 'known_hosts', old: kh.old === null ? null : knownHostsLines(kh.old).map(fingerprint), new: knownHostsLines(kh.new).map(fingerprint) });
    const w = current.wanted;
    const wantedShown = w.kind === 'unresolved' ? `${w.rev} (${w.why})` : w.kind === 'commit' ? (w.sha ?? w.rev) : w.sha;
    if (current.target !== 'repo') {
      changes.push({ what: 'cloned', old: null, new: args.target }, { what: 'revision', old: null, new: wantedShown });
      return { changes };
    }
    if (current.remote !== args.name) {
      if (!args.force_reset)
        throw new Error(
          `${args.target} is a checkout of ${current.remote ?? '(no origin remote)'}, not ${args.name}; move it away, or set force_reset: true to re-point it`,
        );
      changes.push({ what: 'remote', old: current.remote, new: args.name });
    }
    if (current.dirty.length) {
      const shown = current.dirty.slice(0, 10).map((l) => l.trim());
      if (!args.force_reset)
        throw new Error(
          `${args.target} has local changes (${shown.join(', ')}${current.dirty.length > 10 ? ', …' : ''}); commit or discard them, or set force_reset: true to let brine discard them`,
        );
      changes.push({ what: 'local changes', old: shown, new: 'discarded' });
    }
    const sha = w.kind === 'unresolved' ? null : w.sha;
    if (sha === null || current.head !== sha) changes.push({ what: 'revision', old: current.head, new: wantedShown });
    if (w.kind === 'branch' && current.branch !== w.name) changes.push({ what: 'branch', old: current.branch ?? '(detached)', new: w.name });
    return { changes, reason: changes.length ? undefined : `at ${current.head?.slice(0, 12)} (${describeWanted(w)})` };
  },
  async apply(args, _plan, current, ctx) {
    const as = await account(args.user);
    if (!as) throw new Error(`user ${args.user} does not exist`);
    if (args.identity && !existsSync(args.identity))
      throw new Error(`the identity ${args.identity} does not exist (manage it with a file.managed state that this one requires)`);
    const kh = current.knownHosts;
    if (kh) await writeKnownHosts(kh);
    const git = gitFor(args, as, kh?.path, ctx);

    if (current.target === 'repo') {
      if (current.remote !== args.name)
        await git.run(current.remote === null ? ['remote', 'add', 'origin', args.name] : ['remote', 'set-url', 'origin', args.name], args.target);
      await checkout(args, git, args.target, current.wanted, false);
      return;
    }
    await fs.mkdir(dirname(args.target), { recursive: true });
    await removeStaleClones(args.target);
    const temp = tempPathFor(args.target);
    await fs.mkdir(temp, { mode: 0o755 });
    try {
      await fs.chown(temp, as.uid, as.gid);
      const depth = args.depth ? ['--depth', String(args.depth)] : [];
      await git.run(['clone', '--quiet', '--no-checkout', '--origin', 'origin', ...depth, '--', args.name, '.'], temp);
      await checkout(args, git, temp, current.wanted, true);
      // Over an empty directory, rename replaces it; the checkout is never seen half-done.
      await fs.rename(temp, args.target);
    } catch (err) {
      await fs.rm(temp, { recursive: true, force: true });
      throw err;
    }
    await syncDir(dirname(args.target));
  },
});

/** Fetches what is needed and checks the wanted revision out in `dir`. */
async function checkout(
  args: { name: string; rev: string; identity?: string; force_reset: boolean; depth?: number },
  git: GitRunner,
  dir: string,
  planned: Wanted,
  justCloned: boolean,
): Promise<void> {
  const wanted = planned.kind === 'unresolved' ? await resolveRev(args, git, dir) : planned;
  const depth = args.depth ? ['--depth', String(args.depth)] : [];
  const fetch = (...refspecs: string[]) => git.run(['fetch', '--quiet', '--prune', ...depth, 'origin', ...refspecs], dir);
  let sha: string | null;
  switch (wanted.kind) {
    case 'branch': {
      const ref = `refs/remotes/origin/${wanted.name}`;
      if (!justCloned || !(await hasCommit(git, dir, ref))) await fetch(`+refs/heads/${wanted.name}:${ref}`);
      sha = await hasCommit(git, dir, ref);
      break;
    }
    case 'tag': {
      const ref = `refs/tags/${wanted.name}`;
      if (!justCloned || !(await hasCommit(git, dir, ref))) await fetch(`+${ref}:${ref}`);
      sha = await hasCommit(git, dir, ref);
      break;
    }
    default: {
      sha = await hasCommit(git, dir, wanted.rev);
      if (!sha) {
        await fetch('+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*');
        sha = await hasCommit(git, dir, wanted.rev);
      }
      // A commit no branch or tag reaches: servers that allow it hand it out by sha.
      if (!sha && FULL_SHA.test(wanted.rev)) {
        await git.tryRun(['fetch', '--quiet', ...depth, 'origin', wanted.rev], dir);
        sha = await hasCommit(git, dir, wanted.rev);
      }
    }
  }
  if (!sha) throw new Error(`${describeWanted(wanted)} is not in ${args.name}`);
  // A fresh clone has no working tree yet; --force fills it. Otherwise --force only with force_reset.
  const force = justCloned || args.force_reset ? ['--force'] : [];
  if (wanted.kind === 'branch') {
    await git.run(['checkout', '--quiet', ...force, '-B', wanted.name, sha], dir);
    await git.run(['branch', '--quiet', `--set-upstream-to=origin/${wanted.name}`, wanted.name], dir);
  } else {
    await git.run(['checkout', '--quiet', ...force, '--detach', sha], dir);
  }
  if (args.force_reset && !justCloned) await git.run(['reset', '--quiet', '--hard', sha], dir);
}

export const gitModule: StateModule = {
  name: 'git',
  functions: { latest },
};
