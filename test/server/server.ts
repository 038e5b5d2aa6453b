// Disposable Debian 12 test servers for integration tests (see DESIGN.md, "Testing against real
// servers"). Each server is a fresh copy of the cached image, booted with systemd-nspawn (systemd
// as PID 1, sshd on its own port on the host loopback); commands run inside via nsenter.
//
// A fresh copy is an overlay mount: the image tarball is extracted once into a read-only lower
// dir next to it, and each server writes only to its own upper dir. Extracting the tarball per
// server took 5-7 s of disk I/O (10 s with two test files in parallel); the overlay takes ~0 s.
// If overlayfs is unavailable, the tarball is extracted per server instead.
//
// On the host:  /var/tmp/brine-servers/NAME/{root,upper,work}   root = what the server sees.
//
//   const server = await bootServer();
//   t.teardown(() => server.stop());
//   await server.exec(['apt-get', 'install', '-y', 'nginx']);
//
// Servers share the host's network namespace: two servers running the same service on the same
// port will clash, so tests that run in parallel must not both listen on fixed ports.
import { execa, execaSync } from 'execa';
import { createServer } from 'node:net';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, readdir, rm, stat, readFile as readHostFile, appendFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/server/server.ts). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where server root directories live on the host; stale ones from crashed runs are swept here. */
export const SERVERS_DIR = '/var/tmp/brine-servers';

const BUILD_SCRIPT = join(REPO_ROOT, 'test/server/build-image.sh');
const BOOT_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
const DEFAULT_EXEC_TIMEOUT_MS = 600_000;
/** How many lines of nspawn's output to keep for error messages. */
const OUTPUT_TAIL_LINES = 40;

/** A clean environment for commands inside a server: the host's (PATH with node_modules/.bin,
 * TAP_* variables, ...) must not leak into what the agent sees. */
const SERVER_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  USER: 'root',
  LOGNAME: 'root',
  LANG: 'C.UTF-8',
  DEBIAN_FRONTEND: 'noninteractive',
};

export interface ExecOptions {
  /** Text (or bytes) fed to the command's stdin. */
  input?: string | Uint8Array;
  /** Extra environment variables on top of a clean root environment. */
  env?: Record<string, string>;
  /** Return a non-zero exit code instead of throwing. */
  allowFailure?: boolean;
  /** Kill the command (and everything it started) after this long; default 10 minutes. A timeout
   * always throws, allowFailure or not: a hung command is never a result a test can assert on. */
  timeoutMs?: number;
}

export interface ExecResult {
  code: number;
  /** Output exactly as printed (final newline kept). */
  stdout: string;
  stderr: string;
}

export interface BootOptions {
  /** Machine name and directory name; default `brine-<pid>-<n>`, unique per test process. */
  name?: string;
  /** Port sshd listens on (host loopback, shared network); default: a free port. */
  sshPort?: number;
}

/** Live servers of this process, so the exit/signal safety net can stop forgotten ones. */
const liveServers = new Set<TestServer>();
let serverCounter = 0;
let safetyNetInstalled = false;
let staleSwept = false;

/** Returns the image tarball, building it first (slow, about a minute) if it is not cached.
 * The build runs under flock so two test processes starting at once build it only once. */
export async function ensureImage(): Promise<string> {
  const image = process.env.BRINE_IMAGE || '/var/cache/brine/bookworm.tar';
  if (await isNonEmptyFile(image)) return image;
  await mkdir(dirname(image), { recursive: true });
  await execa('flock', [`${image}.lock`, 'bash', BUILD_SCRIPT, image], { stdio: 'inherit' });
  if (!(await isNonEmptyFile(image))) throw new Error(`build-image.sh did not produce ${image}`);
  return image;
}

/** Returns the image extracted once into a directory (the overlay's read-only lower layer).
 * Its name carries the tarball's mtime and size, so a rebuilt image gets a new lower dir while
 * servers still running on the old one keep theirs. Extracted under flock, to a temporary name
 * renamed at the end, so a half-extracted tree is never used. */
async function ensureLowerDir(image: string): Promise<string> {
  const s = await stat(image);
  const lower = `${image}.root-${Math.floor(s.mtimeMs)}-${s.size}`;
  if (existsSync(lower)) return lower;
  const script = `[ -d "$2" ] && exit 0; rm -rf "$2.tmp" && mkdir -p "$2.tmp" &&
    tar --numeric-owner -C "$2.tmp" -xf "$1" && mv "$2.tmp" "$2"`;
  await execa('flock', [`${image}.lock`, 'sh', '-c', script, 'sh', image, lower]);
  return lower;
}

/** Mount points (host namespace) at or under a directory. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)));
}

/** Unmounts a server's root overlay, lazily if busy. Synchronous: also used on exit. */
function unmountSync(root: string): void {
  for (const m of mountsUnder(root).reverse()) {
    const r = execaSync('umount', [m], { reject: false });
    if (r.exitCode !== 0) execaSync('umount', ['-l', m], { reject: false });
  }
}

/** Removes a server directory: unmount first, so rm never walks through the overlay. */
async function removeServerDir(dir: string): Promise<void> {
  unmountSync(join(dir, 'root'));
  if (mountsUnder(dir).length) throw new Error(`${dir} is still mounted; not removing it`);
  await rm(dir, { recursive: true, force: true });
}

/** Prepares DIR/root as a fresh copy of the image: an overlay on the shared lower dir, or, if
 * overlayfs cannot be mounted here, a full extraction of the tarball. */
async function prepareRoot(image: string, dir: string): Promise<string> {
  const root = join(dir, 'root');
  await Promise.all(['root', 'upper', 'work'].map((d) => mkdir(join(dir, d), { recursive: true })));
  const lower = await ensureLowerDir(image).catch(() => undefined);
  if (lower) {
    const opts = `lowerdir=${lower},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`;
    const r = await execa('mount', ['-t', 'overlay', 'overlay', '-o', opts, root], { reject: false });
    if (r.exitCode === 0) return root;
  }
  // --numeric-owner: the image's uids must not be remapped through the host's /etc/passwd.
  await execa('tar', ['--numeric-owner', '-C', root, '-xf', image]);
  return root;
}

async function isNonEmptyFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0;
  } catch {
    return false;
  }
}

/** Asks the kernel for a free port on the loopback. Another process could take it before sshd
 * binds it; bootServer checks that sshd came up and retries with another port if not. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Command lines of all processes, to tell whether some nspawn still uses a directory. */
function processCommandLines(): string[] {
  const lines: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      lines.push(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' '));
    } catch {
      // the process exited while we looked
    }
  }
  return lines;
}

function isUsedByAProcess(dir: string): boolean {
  return processCommandLines().some((cmd) => cmd.includes('systemd-nspawn') && cmd.includes(` ${dir}/root `));
}

/** Removes server dirs left by test processes that were SIGKILLed (their nspawn got SIGTERM via
 * pdeathsig and shut down, but nobody unmounted and removed the directory). Only default-named
 * dirs whose owning test process is gone and that no nspawn still uses are touched. */
async function sweepStaleServers(): Promise<void> {
  if (staleSwept) return;
  staleSwept = true;
  let entries: string[];
  try {
    entries = await readdir(SERVERS_DIR);
  } catch {
    return;
  }
  for (const entry of entries) {
    const m = /^brine-(\d+)-\d+$/.exec(entry);
    if (!m || Number(m[1]) === process.pid || existsSync(`/proc/${m[1]}`)) continue;
    const dir = join(SERVERS_DIR, entry);
    if (isUsedByAProcess(dir)) continue;
    await removeServerDir(dir).catch(() => {});
  }
}

/** Finds the container's PID 1 (systemd) in the host PID namespace: the child of nspawn whose
 * NSpid ends in 1, once it has exec'd systemd (before that its namespaces may not be ready). */
function findContainerInit(nspawnPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const ppid = /^PPid:\s+(\d+)/m.exec(status)?.[1];
      const nspid = /^NSpid:\s+([\d\s]+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
      const name = /^Name:\s+(.*)$/m.exec(status)?.[1];
      if (Number(ppid) === nspawnPid && nspid?.length === 2 && nspid[1] === '1' && name === 'systemd') {
        return Number(entry);
      }
    } catch {
      // the process exited while we looked
    }
  }
  return undefined;
}

/** True while the process exists and is not a zombie (an exited, unreaped child). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Blocks the thread; only for the exit handler, where nothing asynchronous runs any more. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function tail(text: string, lines = 20): string {
  const all = text.trimEnd().split('\n');
  return (all.length > lines ? ['...', ...all.slice(-lines)] : all).join('\n');
}

/** Single-quotes a word for sh. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Stops every server this process still runs, synchronously: used from the 'exit' event and
 * signal handlers, where promises never settle. Kills the container's PID 1 (which takes the
 * whole container down at once), waits briefly for nspawn to notice, then removes the root dir. */
function stopAllSync(): void {
  for (const server of liveServers) server.stopSync();
}

/** Installs the safety net once: forgotten servers are stopped when the test process exits or
 * is interrupted. After cleaning up, a signal is re-raised so the process still dies of it (and
 * tap's own signal-exit handler gets its turn). */
function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', stopAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      stopAllSync();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Starts systemd-nspawn for a server root. setpriv's pdeathsig makes nspawn shut the container
 * down even if this test process is SIGKILLed (tap does that on timeouts). The subprocess is
 * unref'd so a test that forgets stop() still exits, and the 'exit' safety net then cleans up. */
function spawnNspawn(root: string, name: string) {
  const proc = execa(
    'setpriv',
    ['--pdeathsig', 'SIGTERM', '--', 'systemd-nspawn', '-D', root, '--boot', '--register=no', '--keep-unit',
      '--console=read-only', '-M', name],
    // forceKillAfterDelay off: a SIGKILLed nspawn would orphan the container; stop() escalates.
    { stdin: 'ignore', buffer: false, reject: false, forceKillAfterDelay: false },
  );
  proc.unref();
  for (const stream of [proc.stdout, proc.stderr]) {
    (stream as unknown as { unref?: () => void }).unref?.();
  }
  return proc;
}

type NspawnProcess = ReturnType<typeof spawnNspawn>;

/** One booted server. Create with bootServer(); always stop() it (t.teardown). */
export class TestServer {
  readonly name: string;
  /** The server's root directory on the host (DIR/root). Prefer writeFile/readFile/copyIn: they
   * go through the server's own view of its files (symlinks, tmpfs mounts such as /tmp, /run). */
  readonly root: string;
  /** The server's directory on the host: root plus the overlay's upper and work dirs. */
  readonly dir: string;
  sshPort: number;
  /** PID (host namespace) of the container's systemd. */
  pid = 0;
  readonly #proc: NspawnProcess;
  readonly #nspawnPid: number;
  readonly #output: string[] = [];
  #exited = false;
  #stopping: Promise<void> | undefined;
  readonly #exitedPromise: Promise<unknown>;

  /** @internal use bootServer() */
  constructor(name: string, dir: string, sshPort: number, proc: NspawnProcess) {
    this.name = name;
    this.dir = dir;
    this.root = join(dir, 'root');
    this.sshPort = sshPort;
    this.#proc = proc;
    if (proc.pid === undefined) throw new Error(`could not start systemd-nspawn for ${name}`);
    this.#nspawnPid = proc.pid;
    for (const stream of [proc.stdout, proc.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.#record(chunk));
    }
    this.#exitedPromise = proc.then((result) => {
      this.#exited = true;
      return result;
    });
  }

  /** Keeps the last lines of nspawn's output (console and its own messages) for errors. */
  #record(chunk: string): void {
    this.#output.push(...chunk.replace(/\r/g, '').split('\n').filter((l) => l.trim() !== ''));
    if (this.#output.length > OUTPUT_TAIL_LINES) this.#output.splice(0, this.#output.length - OUTPUT_TAIL_LINES);
  }

  /** The last lines nspawn printed, for error messages. */
  outputTail(): string {
    return this.#output.join('\n');
  }

  get running(): boolean {
    return !this.#exited && this.#stopping === undefined;
  }

  /** @internal Waits for systemd inside to come up and finish booting (running or degraded). */
  async waitBooted(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const fail = (why: string) =>
      new Error(`server ${this.name} did not boot: ${why}\nlast nspawn output:\n${this.outputTail() || '(none)'}`);
    while (!this.pid) {
      if (this.#exited) throw fail('systemd-nspawn exited');
      if (Date.now() > deadline) throw fail(`no container systemd after ${timeoutMs / 1000} s`);
      this.pid = findContainerInit(this.#nspawnPid) ?? 0;
      if (!this.pid) await sleep(50);
    }
    let state = '(no answer)';
    for (;;) {
      if (this.#exited) throw fail('systemd-nspawn exited');
      const left = deadline - Date.now();
      if (left <= 0) throw fail(`not booted after ${timeoutMs / 1000} s (system state: ${state})`);
      // Fails fast ("Failed to connect to bus") until systemd's manager socket exists, then blocks
      // until boot is done.
      const secs = String(Math.max(1, Math.ceil(left / 1000)));
      const r = await this.#nsenter(['timeout', secs, 'systemctl', 'is-system-running', '--wait'], { timeoutMs: left })
        .catch(() => undefined);
      state = r?.stdout.trim() || r?.stderr.trim() || state;
      if (state === 'running' || state === 'degraded') return;
      await sleep(100);
    }
  }

  /** Runs a command inside the server as root with a clean environment (argv, no shell: use
   * ['sh', '-c', script] for one). Throws on a non-zero exit, with the tail of its output,
   * unless allowFailure. stdout/stderr are returned untrimmed. */
  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!this.running) throw new Error(`server ${this.name} is not running (exec ${argv.join(' ')})`);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const started = Date.now();
    // `timeout` inside kills the command's whole process group; killing nsenter from outside
    // would leave the command running in the container.
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    const r = await this.#nsenter(['timeout', '-k', '5', String(secs), ...argv], opts);
    if (r.code === 124 && Date.now() - started >= secs * 1000 - 100) {
      throw new Error(`${this.#describe(argv)} timed out after ${secs} s\n${this.#outputOf(r)}`);
    }
    if (r.code !== 0 && !opts.allowFailure) {
      throw new Error(`${this.#describe(argv)} exited with code ${r.code}\n${this.#outputOf(r)}`);
    }
    return r;
  }

  #describe(argv: string[]): string {
    return `[${this.name}] ${argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : shq(a))).join(' ')}`;
  }

  #outputOf(r: ExecResult): string {
    return `--- stdout (tail) ---\n${tail(r.stdout) || '(empty)'}\n--- stderr (tail) ---\n${tail(r.stderr) || '(empty)'}`;
  }

  /** nsenter into all of the container's namespaces (and its root); never rejects on exit code.
   * The outer execa timeout is only a backstop for a stuck nsenter. */
  async #nsenter(argv: string[], opts: ExecOptions): Promise<ExecResult> {
    // `env -i` inside the server: tap's process tracking injects NODE_OPTIONS into every child
    // process, whatever env we pass, and it must not reach the server's own Node.
    const clean = Object.entries({ ...SERVER_ENV, ...opts.env }).map(([k, v]) => `${k}=${v}`);
    const r = await execa('nsenter', ['-t', String(this.pid), '-a', '/usr/bin/env', '-i', ...clean, ...argv], {
      env: { ...SERVER_ENV, ...opts.env },
      extendEnv: false,
      reject: false,
      stripFinalNewline: false,
      timeout: (opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS) + 15_000,
      ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
    });
    if (r.timedOut) throw new Error(`${this.#describe(argv)}: nsenter stuck, killed`);
    return { code: r.exitCode ?? 128 + 9, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  }

  /** Writes a file inside the server (creating parent dirs), through the server's own view of
   * the filesystem so symlinks and tmpfs mounts behave as they do for the agent. */
  async writeFile(path: string, content: string | Uint8Array, mode?: number): Promise<void> {
    const chmod = mode === undefined ? '' : ` && chmod ${mode.toString(8)} "$1"`;
    await this.exec(['sh', '-c', `mkdir -p "$(dirname "$1")" && cat > "$1"${chmod}`, 'sh', path], { input: content });
  }

  /** Reads a text file inside the server. */
  async readFile(path: string): Promise<string> {
    return (await this.exec(['cat', '--', path])).stdout;
  }

  /** Copies a host file or directory to serverPath (the destination itself, not its parent):
   * a directory's contents are merged into serverPath, a file becomes serverPath. Files end up
   * owned by root, modes kept. Streams a tar into the server so the server's view applies. */
  async copyIn(hostPath: string, serverPath: string): Promise<void> {
    const s = await stat(hostPath);
    if (!s.isDirectory()) {
      await this.writeFile(serverPath, await readHostFile(hostPath), s.mode & 0o7777);
      return;
    }
    await this.exec(['mkdir', '-p', serverPath]);
    const pack = execa('tar', ['-C', hostPath, '-cf', '-', '.'], { buffer: { stdout: false } });
    const unpack = pack.pipe(
      'nsenter',
      ['-t', String(this.pid), '-a', 'tar', '--no-same-owner', '-C', serverPath, '-xf', '-'],
      { env: SERVER_ENV, extendEnv: false, reject: false },
    );
    const r = await unpack;
    if (r.exitCode !== 0) {
      throw new Error(`[${this.name}] copyIn ${hostPath} -> ${serverPath} failed (code ${r.exitCode})\n${tail(String(r.stderr))}`);
    }
  }

  /** Stops the server and removes its directory. Idempotent; safe to call from several places. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#proc.ref(); // keep the process alive while we wait for the container to go down
    try {
      if (!this.#exited) {
        // SIGTERM makes nspawn ask systemd for an orderly shutdown (well under a second here).
        this.#proc.kill('SIGTERM');
        if (!(await this.#waitExit(STOP_TIMEOUT_MS))) {
          this.#killInit();
          this.#proc.kill('SIGKILL');
          await this.#waitExit(5_000);
        }
      }
      await removeServerDir(this.dir);
    } finally {
      this.#proc.unref();
      liveServers.delete(this);
    }
  }

  async #waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const done = await Promise.race([this.#exitedPromise.then(() => true), timedOut]);
    clearTimeout(timer);
    return done;
  }

  /** SIGKILL to the container's PID 1 from the host takes the whole container down. */
  #killInit(): void {
    if (this.pid && isAlive(this.pid)) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** @internal Synchronous emergency stop for the exit/signal safety net. */
  stopSync(): void {
    if (!this.#exited && isAlive(this.#nspawnPid)) {
      this.#killInit();
      if (!this.pid) this.#proc.kill('SIGTERM'); // still booting: no init known yet
      for (let i = 0; i < 100 && isAlive(this.#nspawnPid); i++) sleepSync(50);
      if (isAlive(this.#nspawnPid)) this.#proc.kill('SIGKILL');
    }
    try {
      unmountSync(this.root);
      if (!mountsUnder(this.dir).length) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort: the stale-dir sweep of a later run removes it
    }
    liveServers.delete(this);
  }
}

/** Points the server's sshd at a port by appending a Port line (the image has none active). */
async function setSshPort(root: string, port: number): Promise<void> {
  await appendFile(join(root, 'etc/ssh/sshd_config'), `\nPort ${port}\n`);
}

/** True if the server's own sshd accepts connections on 127.0.0.1:port. The network is shared
 * with the host, so ss inside sees every socket, but names processes only for the server's own
 * (its PID namespace): a port someone else holds does not count. */
async function sshdListens(server: TestServer): Promise<boolean> {
  const r = await server.exec(['ss', '-Htlnp', `sport = :${server.sshPort}`], { allowFailure: true });
  return r.stdout.split('\n').some((line) =>
    /\b(0\.0\.0\.0|127\.0\.0\.1):\d+\s/.test(line) && line.includes('"sshd"'));
}

/** Makes sure sshd is up on its port. With an automatically chosen port, another process may
 * have bound it between our check and sshd's bind (sshd then runs on IPv6 only, or not at all);
 * then pick another port and restart sshd. */
async function ensureSshd(server: TestServer, portFixed: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    if (await sshdListens(server)) return;
    if (portFixed || attempt >= 3) {
      const log = await server.exec(['journalctl', '-u', 'ssh', '-n', '20', '--no-pager'], { allowFailure: true });
      throw new Error(`server ${server.name}: sshd is not listening on 127.0.0.1:${server.sshPort}\n${tail(log.stdout)}`);
    }
    const port = await freePort();
    const config = (await server.readFile('/etc/ssh/sshd_config')).replace(/^Port \d+$/m, `Port ${port}`);
    await server.writeFile('/etc/ssh/sshd_config', config);
    server.sshPort = port;
    await server.exec(['systemctl', 'restart', 'ssh'], { allowFailure: true });
  }
}

/** Boots a fresh server from the image and waits until systemd has finished booting. */
export async function bootServer(options: BootOptions = {}): Promise<TestServer> {
  const image = await ensureImage();
  await sweepStaleServers();
  const name = options.name ?? `brine-${process.pid}-${++serverCounter}`;
  if (!/^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$/.test(name)) throw new Error(`bad server name: ${name}`);
  const dir = join(SERVERS_DIR, name);
  if (existsSync(dir)) {
    if (isUsedByAProcess(dir)) throw new Error(`server ${name} is already running (${dir})`);
    await removeServerDir(dir); // left over from a crashed run
  }
  try {
    const root = await prepareRoot(image, dir);
    const sshPort = options.sshPort ?? (await freePort());
    await setSshPort(root, sshPort);
    installSafetyNet();
    const server = new TestServer(name, dir, sshPort, spawnNspawn(root, name));
    liveServers.add(server);
    try {
      await server.waitBooted(BOOT_TIMEOUT_MS);
      await ensureSshd(server, options.sshPort !== undefined);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  } catch (err) {
    await removeServerDir(dir).catch(() => {});
    throw err;
  }
}
