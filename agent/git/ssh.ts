// SSH for git: where a repository URL's host is, the host keys pinned for it, and the ssh command
// git runs. SSH is never interactive and never trusts a host key it was not given: with pinned
// lines (written to /etc/brine/known_hosts.d/, one file per target), those are the only keys ssh
// accepts; without, the system's known_hosts files are used, with strict checking either way.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import type { ArgProblem } from '../modules/types.js';

/** Where pinned host keys are written; tests point it at a fixture directory. */
export const gitPaths = { knownHostsDir: '/etc/brine/known_hosts.d' };

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

export function parseHostKey(line: string): HostKey | undefined {
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
export function fingerprint(line: string): string {
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

/** Checks that need only the arguments: pinned keys are for SSH URLs, well-formed, and for its host. */
export function sshArgProblems(args: { name: string; identity?: string; known_hosts?: string | string[] }, keys = { url: 'name', identity: 'identity', knownHosts: 'known_hosts' }): ArgProblem[] {
  const problems: ArgProblem[] = [];
  const ssh = sshHost(args.name);
  const lines = knownHostsLines(args.known_hosts);
  if (!ssh && args.identity !== undefined) problems.push({ key: keys.identity, message: `identity is for SSH URLs; ${args.name} is not one` });
  if (!ssh && lines.length) problems.push({ key: keys.knownHosts, message: `known_hosts is for SSH URLs; ${args.name} is not one` });
  if (ssh && lines.length) {
    const parsed = lines.map(parseHostKey);
    const bad = parsed.findIndex((k) => !k);
    if (bad >= 0) problems.push({ key: keys.knownHosts, message: `line ${bad + 1} is not a known_hosts line (HOST KEYTYPE BASE64KEY): "${lines[bad]!.slice(0, 60)}"` });
    else {
      const name = knownHostsName(ssh.host, ssh.port);
      if (!parsed.some((k) => !k!.marker && hostPatternMatches(k!.hosts, name)))
        problems.push({ key: keys.knownHosts, message: `no line is for ${name}, the host ssh will look up for ${args.name}` });
    }
  }
  return problems;
}

/** brine's known_hosts file for one target: what it holds now, and what it should hold. */
export interface KnownHostsFile {
  path: string;
  old: string | null;
  new: string;
}

export function knownHostsWanted(args: { target: string; known_hosts?: string | string[] }): { path: string; content: string } | null {
  const lines = knownHostsLines(args.known_hosts);
  return lines.length ? { path: knownHostsPath(args.target), content: `${lines.join('\n')}\n` } : null;
}

export async function readOrNull(path: string): Promise<string | null> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** What `knownHostsWanted` says, next to what is on disk. */
export async function knownHostsFile(args: { target: string; known_hosts?: string | string[] }): Promise<KnownHostsFile | null> {
  const wanted = knownHostsWanted(args);
  return wanted && { path: wanted.path, old: await readOrNull(wanted.path), new: wanted.content };
}

/**
 * Runs `use` with a known_hosts file holding exactly the pinned lines: brine's own file when it is
 * already right, else a throwaway copy (check must not write brine's file, but may need to ask
 * the remote).
 */
export async function withKnownHosts<T>(kh: KnownHostsFile | null, use: (file: string | undefined) => Promise<T>): Promise<T> {
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

/** Puts the pinned lines in brine's own file for the target (public keys: world-readable). */
export async function writeKnownHosts(kh: KnownHostsFile): Promise<void> {
  if (kh.old === kh.new) return;
  await fs.mkdir(gitPaths.knownHostsDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(kh.path, kh.new, { uid: 0, gid: 0, mode: 0o644 });
}
