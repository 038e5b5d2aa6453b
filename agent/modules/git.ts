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
// SSH is never interactive and never trusts a host key it was not given: with known_hosts, those
// lines (written to /etc/brine/known_hosts.d/, one file per target) are the only keys ssh accepts;
// without, the system's known_hosts files are used, with strict checking either way.
//
// A first clone goes into a temp directory next to the target, renamed into place once checked
// out, so a killed run leaves no half-cloned target.
import { Type } from '@sinclair/typebox';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { simpleGit } from 'simple-git';
import { findUser } from '../accounts.js';
import { syncDir, tempPathFor, writeFileAtomic } from '../atomic.js';
import type { Masker } from '../secret.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

/** Where pinned host keys are written; tests point it at a fixture directory. */
export const gitPaths = { knownHostsDir: '/etc/brine/known_hosts.d' };

const LatestArgs = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'the repository URL' }),
    target: Type.String({ pattern: '^/.', description: 'an absolute path' }),
    rev: Type.String({ minLength: 1, default: 'HEAD' }),
    user: Type.String({ minLength: 1, default: 'root' }),
    identity: Type.Optional(Type.String({ pattern: '^/', description: 'an absolute path' })),
    known_hosts: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
    force_reset: Type.Boolean({ default: false }),
    depth: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

/** Without output for this long, a git command is taken for hung and killed. */
const IDLE_TIMEOUT_MS = 10 * 60 * 1000;
const FULL_SHA = /^[0-9a-f]{40}$/;
const SHORT_SHA = /^[0-9a-f]{4,39}$/;

// ---------------------------------------------------------------------------------------------
// SSH: where the remote is, which host keys are pinned for it, and the command git uses.

/** The SSH host and port of a repository URL; null for https://, file://, local paths. */
export function sshHost(url: string): { host: string; port: number } | null {
  const full = /^(?:ssh|git\+ssh|ssh\+git):\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?(?:\/|$)/.exec(url);
  if (full) return { host: full[1]!.replace(/^\[|\]$/g, ''), port: full[2] ? Number(full[2]) : 22 };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return null;
  // scp-like: [user@]host:path, where no slash comes before the colon.
  const scp = /^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):/.exec(url);
  return scp ? { host: scp[1]!.replace(/^\[|\]$/g, ''), port: 22 } : null;
}

/** How ssh names a host in known_hosts: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function knownHostsLines(arg: string | string[] | undefined): string[] {
  if (arg === undefined) return [];
  return (Array.isArray(arg) ? arg : [arg])
    .flatMap((s) => s.split('\n'))
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

interface HostKey {
  marker?: string;
  hosts: string;
  type: string;
  key: string;
}

function parseHostKey(line: string): HostKey | undefined {
  const f = line.split(/\s+/);
  const marker = f[0]?.startsWith('@') ? f.shift() : undefined;
  const [hosts, type, key] = f;
  if (!hosts || !type || !key || !/^(ssh|ecdsa|sk)-[\w@.-]+$/.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(key)) return undefined;
  return { marker, hosts, type, key };
}

function hostPatternMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return true; // hashed: can't tell, let ssh decide
  const glob = (p: string) => new RegExp(`^${p.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  const list = patterns.split(',');
  if (list.some((p) => p.startsWith('!') && glob(p.slice(1)).test(name))) return false;
  return list.some((p) => !p.startsWith('!') && (p === name || glob(p).test(name)));
}

/** `[127.0.0.1]:2222 ssh-ed25519 SHA256:…`, as `ssh-keygen -lf` shows a key: public, short. */
function fingerprint(line: string): string {
  const k = parseHostKey(line);
  if (!k) return line;
  const digest = createHash('sha256').update(Buffer.from(k.key, 'base64')).digest('base64').replace(/=+$/, '');
  return `${k.marker ? `${k.marker} ` : ''}${k.hosts} ${k.type} SHA256:${digest}`;
}

/** The known_hosts file brine keeps for one target: readable name, unique per path. */
export function knownHostsPath(target: string): string {
  const slug = target.replace(/^\/+|\/+$/g, '').replace(/[^A-Za-z0-9._-]+/g, '-') || 'root';
  const hash = createHash('sha256').update(target).digest('hex').slice(0, 8);
  return join(gitPaths.knownHostsDir, `${slug}-${hash}`);
}

/** Single-quotes a word for the shell git runs GIT_SSH_COMMAND with. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ssh command git uses: the deploy key only, the pinned host keys only, never a prompt. */
export function gitSshCommand(opts: { identity?: string; knownHostsFile?: string }): string {
  const argv = ['ssh'];
  if (opts.identity) argv.push('-i', opts.identity, '-o', 'IdentitiesOnly=yes');
  if (opts.knownHostsFile) argv.push('-o', `UserKnownHostsFile=${opts.knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null');
  argv.push(
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'UpdateHostKeys=no',
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=30',
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=4',
  );
  return argv.map(shellQuote).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Running git (through simple-git, the one place this module starts processes).

interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

async function account(name: string): Promise<Account | undefined> {
  const u = await findUser(name);
  return u && { name: u.name, uid: u.uid, gid: u.gid, home: u.home || '/' };
}

interface GitRunner {
  run(args: string[], cwd: string): Promise<string>;
  /** Like run, but a non-zero exit is an answer (undefined), not an error. */
  tryRun(args: string[], cwd: string): Promise<string | undefined>;
}

export class GitCommandError extends Error {
  readonly exitCode: number | undefined;
  constructor(message: string, exitCode: number | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'GitCommandError';
    this.exitCode = exitCode;
  }
}

interface RunnerOptions {
  as: Account;
  sshCommand: string;
  masker: Masker;
  /** What the hints in error messages talk about. */
  describe: { url: string; target: string; identity?: string; pinned: boolean };
}

function gitRunner(o: RunnerOptions): GitRunner {
  const env: Record<string, string> = {
    PATH: process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: o.as.home,
    USER: o.as.name,
    LOGNAME: o.as.name,
    LC_ALL: 'C',
    GIT_SSH_COMMAND: o.sshCommand,
    GIT_TERMINAL_PROMPT: '0',
    // `git status` must not refresh the index while brine only looks.
    GIT_OPTIONAL_LOCKS: '0',
  };
  const asUser = o.as.uid !== process.getuid?.() ? { spawnOptions: { uid: o.as.uid, gid: o.as.gid } } : {};
  async function attempt(args: string[], cwd: string): Promise<{ ok: true; out: string } | { ok: false; error: GitCommandError }> {
    let failure: { exitCode: number; stderr: string } | undefined;
    const git = simpleGit({
      baseDir: cwd,
      binary: 'git',
      maxConcurrentProcesses: 1,
      trimmed: false,
      timeout: { block: IDLE_TIMEOUT_MS },
      // GIT_SSH_COMMAND is ours, built above from quoted paths: not user text run by a shell.
      unsafe: { allowUnsafeSshCommand: true },
      errors(error, result) {
        if (result.exitCode) failure = { exitCode: result.exitCode, stderr: Buffer.concat([...result.stdErr, ...result.stdOut]).toString('utf8') };
        return error ?? (result.exitCode ? Buffer.from(failure!.stderr || `exit ${result.exitCode}`) : undefined);
      },
      ...asUser,
    }).env(env);
    try {
      return { ok: true, out: await git.raw(args) };
    } catch (err) {
      const text = failure?.stderr ?? (err as Error).message;
      return { ok: false, error: new GitCommandError(o.masker.mask(explain(args, text, o.describe)), failure?.exitCode, err) };
    }
  }
  return {
    async run(args, cwd) {
      const r = await attempt(args, cwd);
      if (!r.ok) throw r.error;
      return r.out;
    },
    async tryRun(args, cwd) {
      const r = await attempt(args, cwd);
      if (r.ok) return r.out;
      if (r.error.exitCode !== undefined && r.error.exitCode > 0 && r.error.exitCode < 128) return undefined;
      throw r.error;
    },
  };
}

const NOISE = [
  /^Cloning into /,
  /^Please make sure you have the correct access rights$/,
  /^and the repository exists\.$/,
  /^fatal: Could not read from remote repository\.$/,
  /^@+$/,
  /^Warning: Permanently added /,
];

/** Turns git's stderr into one readable message, with what to do for the usual failures. */
export function explain(args: string[], stderr: string, d: RunnerOptions['describe']): string {
  const op = `git ${args[0]}`;
  if (/spawn git ENOENT/.test(stderr)) return `${op}: git is not installed (add pkg.installed: git, required by this state)`;
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !NOISE.some((n) => n.test(l)));
  const ssh = sshHost(d.url);
  const where = ssh ? knownHostsName(ssh.host, ssh.port) : d.url;
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key .* is known|No \S+ host key is known/i.test(stderr)) {
    const offered = (/key fingerprint is (\S+)/.exec(stderr)?.[1] ?? /(SHA256:\S+)/.exec(stderr)?.[1])?.replace(/\.$/, '');
    return (
      `${op}: host key verification failed for ${where}: ` +
      (d.pinned
        ? `the key the server offered${offered ? ` (${offered})` : ''} is not the one pinned in known_hosts. ` +
          `If the server's key really changed, pin the new one (ssh-keyscan -p PORT HOST, checked out of band).`
        : `its key is not in the system's known_hosts files; pin it with known_hosts: (ssh-keyscan, checked out of band)`)
    );
  }
  if (/Permission denied \(publickey/.test(stderr))
    return `${op}: ${where} refused the key${d.identity ? ` ${d.identity}` : ''} (Permission denied (publickey)): add its public half to the repository's deploy keys`;
  if (/detected dubious ownership/.test(stderr))
    return `${op}: ${d.target} belongs to another user than the one git runs as; git refuses to work in it (chown it, or set user:)`;
  if (/would be overwritten by checkout|Your local changes to the following files/.test(stderr))
    return `${op}: ${lines.slice(0, 6).join('; ')} (set force_reset: true to let brine discard them)`;
  const detail = lines.slice(-4).join('; ').replace(/^(fatal|error): /, '');
  return `${op} failed: ${detail || 'no output'}`;
}

// ---------------------------------------------------------------------------------------------
// What revision is wanted.

type Wanted =
  | { kind: 'branch'; name: string; sha: string }
  | { kind: 'tag'; name: string; sha: string }
  /** A commit named by sha; `sha` is the full sha once known (it may not be fetched yet). */
  | { kind: 'commit'; rev: string; sha: string | null }
  /** Not known yet: the deploy key that would let brine ask is not in place (test mode). */
  | { kind: 'unresolved'; rev: string; why: string };

function parseLsRemote(out: string): { headBranch?: string; refs: Map<string, string> } {
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

async function hasCommit(git: GitRunner, dir: string, rev: string): Promise<string | null> {
  const out = await git.tryRun(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], dir);
  return out?.trim() || null;
}

async function resolveRev(args: { name: string; rev: string; identity?: string }, git: GitRunner, repoDir: string | null): Promise<Wanted> {
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

function describeWanted(w: Wanted): string {
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

// ---------------------------------------------------------------------------------------------
// git.latest

interface KnownHostsFile {
  path: string;
  old: string | null;
  new: string;
}

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

function knownHostsWanted(args: { target: string; known_hosts?: string | string[] }): { path: string; content: string } | null {
  const lines = knownHostsLines(args.known_hosts);
  return lines.length ? { path: knownHostsPath(args.target), content: `${lines.join('\n')}\n` } : null;
}

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function runnerFor(args: { name: string; target: string; identity?: string }, as: Account, knownHostsFile: string | undefined, ctx: Context): GitRunner {
  return gitRunner({
    as,
    sshCommand: gitSshCommand({ identity: args.identity, knownHostsFile }),
    masker: ctx.masker,
    describe: { url: args.name, target: args.target, identity: args.identity, pinned: knownHostsFile !== undefined },
  });
}

/**
 * Runs `use` with a known_hosts file holding exactly the pinned lines: brine's own file when it is
 * already right, else a throwaway copy (check must not write brine's file, but may need to ask
 * the remote).
 */
async function withKnownHosts<T>(kh: KnownHostsFile | null, use: (file: string | undefined) => Promise<T>): Promise<T> {
  if (!kh) return use(undefined);
  if (kh.old === kh.new) return use(kh.path);
  const dir = await fs.mkdtemp(join(tmpdir(), 'brine-known-hosts-'));
  try {
    // The file holds public keys only; git may run as another user, who must read it.
    await fs.chmod(dir, 0o755);
    await fs.writeFile(join(dir, 'known_hosts'), kh.new, { mode: 0o644 });
    return await use(join(dir, 'known_hosts'));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
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
  validate(args) {
    const problems: ArgProblem[] = [];
    const ssh = sshHost(args.name);
    const lines = knownHostsLines(args.known_hosts);
    if (!ssh && args.identity !== undefined) problems.push({ key: 'identity', message: `identity is for SSH URLs; ${args.name} is not one` });
    if (!ssh && lines.length) problems.push({ key: 'known_hosts', message: `known_hosts is for SSH URLs; ${args.name} is not one` });
    if (ssh && lines.length) {
      const keys = lines.map(parseHostKey);
      const bad = keys.findIndex((k) => !k);
      if (bad >= 0) problems.push({ key: 'known_hosts', message: `line ${bad + 1} is not a known_hosts line (HOST KEYTYPE BASE64KEY): "${lines[bad]!.slice(0, 60)}"` });
      else {
        const name = knownHostsName(ssh.host, ssh.port);
        if (!keys.some((k) => !k!.marker && hostPatternMatches(k!.hosts, name)))
          problems.push({ key: 'known_hosts', message: `no line is for ${name}, the host ssh will look up for ${args.name}` });
      }
    }
    return problems;
  },
  async check(args, ctx): Promise<LatestCurrent> {
    const target = await targetKind(args.target);
    const as = await account(args.user);
    if (!as && target !== 'absent') throw new Error(`user ${args.user} does not exist`);
    const khWanted = knownHostsWanted(args);
    const knownHosts = khWanted && { path: khWanted.path, old: await readOrNull(khWanted.path), new: khWanted.content };
    // A user that an earlier state will create (not yet, in test mode) can't run anything: ask as root.
    const runAs = as ?? (await account('root'))!;
    return withKnownHosts(knownHosts, async (khFile) => {
      const git = runnerFor(args, runAs, khFile, ctx);
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
    if (kh && kh.old !== kh.new) {
      await fs.mkdir(gitPaths.knownHostsDir, { recursive: true, mode: 0o755 });
      await writeFileAtomic(kh.path, kh.new, { uid: 0, gid: 0, mode: 0o644 });
    }
    const git = runnerFor(args, as, kh?.path, ctx);

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
