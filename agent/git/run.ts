// Running git, through simple-git: as a given user, with brine's ssh command, never prompting,
// and with git's stderr turned into one readable message.
import { simpleGit } from 'simple-git';
import { findUser } from '../accounts.js';
import type { Context } from '../modules/types.js';
import type { Masker } from '../secret.js';
import { gitSshCommand, knownHostsName, sshHost } from './ssh.js';

/** Without output for this long, a git command is taken for hung and killed. */
const IDLE_TIMEOUT_MS = 10 * 60 * 1000;

export interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export async function account(name: string): Promise<Account | undefined> {
  const u = await findUser(name);
  return u && { name: u.name, uid: u.uid, gid: u.gid, home: u.home || '/' };
}

export interface GitRunner {
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

export interface RunnerOptions {
  as: Account;
  sshCommand: string;
  masker: Masker;
  /** What the hints in error messages talk about. */
  describe: { url: string; target: string; identity?: string; pinned: boolean };
}

export function gitRunner(o: RunnerOptions): GitRunner {
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


/** git for one repository and target, as `as`, with the deploy key and pinned host keys given. */
export function gitFor(args: { name: string; target: string; identity?: string }, as: Account, knownHostsFile: string | undefined, ctx: Pick<Context, 'masker'>): GitRunner {
  return gitRunner({
    as,
    sshCommand: gitSshCommand({ identity: args.identity, knownHostsFile }),
    masker: ctx.masker,
    describe: { url: args.name, target: args.target, identity: args.identity, pinned: knownHostsFile !== undefined },
  });
}
