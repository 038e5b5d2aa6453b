// The reference web-app stack on a throwaway server, as a user would set it up: a checkout of this
// repository with real secrets files, a deploy key made by `agent deploy-key`, and a git host
// that serves the test Flask app (test/fixtures/app) over SSH to that key only. Used by the
// end-to-end test and by `npm run demo`.
import { execa } from 'execa';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO_ROOT, type TestServer } from '../server/server.js';

export interface Workspace {
  /** The copy of the repository bootstrap.sh runs from. */
  dir: string;
  /** The SSH key bootstrap logs in with. */
  key: string;
  knownHosts: string;
  secrets: Record<'staging' | 'production', string>;
  remove(): void;
}

/** A user's checkout: bootstrap.sh, the bundle, states and pillar, with secrets files filled in. */
export async function workspace(options: { cronInterval?: number } = {}): Promise<Workspace> {
  const dir = mkdtempSync(join(tmpdir(), 'brine-workspace-'));
  for (const part of ['bootstrap.sh', 'dist', 'states', 'pillar']) cpSync(join(REPO_ROOT, part), join(dir, part), { recursive: true });
  const secrets = { staging: `stg-Db-${Math.random().toString(36).slice(2, 12)}`, production: `prd-Db-${Math.random().toString(36).slice(2, 12)}` };
  for (const env of ['staging', 'production'] as const) {
    const example = readFileSync(join(dir, 'pillar', env, 'secrets.example.yaml'), 'utf8');
    // As a user does: copy the example and fill it in; `agent deploy-key` then replaces the
    // example's stand-in deploy key (see serveTestApp).
    const filled = example.replace(/DB_PASSWORD: .*/, `DB_PASSWORD: ${secrets[env]}`);
    writeFileSync(join(dir, 'pillar', env, 'secrets.yaml'), filled, { mode: 0o600 });
  }
  if (options.cronInterval !== undefined) {
    const common = join(dir, 'pillar', 'common.yaml');
    writeFileSync(common, readFileSync(common, 'utf8').replace('interval: 15', `interval: ${options.cronInterval}`).replace('splay: 120', 'splay: 0'));
  }
  const key = join(dir, 'id_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'brine-test', '-f', key]);
  return { dir, key, knownHosts: join(dir, 'pillar', 'known_hosts'), secrets, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Lets the workspace's key log in as USER on the server. */
export async function authorize(server: TestServer, ws: Workspace, user = 'root'): Promise<void> {
  const home = user === 'root' ? '/root' : `/home/${user}`;
  await server.writeFile(`${home}/.ssh/authorized_keys`, readFileSync(`${ws.key}.pub`, 'utf8'), 0o600);
  await server.exec(['chown', '-R', `${user}:${user}`, `${home}/.ssh`]);
  await server.exec(['chmod', '700', `${home}/.ssh`]);
}

export interface BootstrapResult {
  code: number;
  stdout: string;
  stderr: string;
  output: string;
}

/** Runs the workspace's bootstrap.sh; `stream` shows its output as it goes (the demo). */
export async function bootstrap(ws: Workspace, args: string[], options: { stream?: boolean; env?: Record<string, string> } = {}): Promise<BootstrapResult> {
  const r = await execa('bash', [join(ws.dir, 'bootstrap.sh'), ...args, '-i', ws.key], {
    cwd: ws.dir,
    reject: false,
    timeout: 900_000,
    ...(options.stream ? { stdout: ['pipe', 'inherit'], stderr: ['pipe', 'inherit'] } : {}),
    // A HOME of its own: the tester's ~/.ssh must not take part.
    env: { HOME: join(ws.dir, 'home'), PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', ...options.env },
    extendEnv: false,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), output: `${r.stdout}\n${r.stderr}` };
}

export interface AppSite {
  /** Where nginx serves the app, on the host's loopback (the server shares its network). */
  url: string;
  listenPort: number;
  /** The two slots' ports. */
  slotPorts: [number, number];
  pgPort: number;
  /** Pushes a new commit of the app (a changed greeting) to the branch brine follows. */
  pushChange(greeting: string): Promise<void>;
  /** Pushes a commit made by `edit` (given the work tree) to the branch; returns its sha. */
  pushCommit(message: string, edit: (dir: string) => void): Promise<string>;
}

/**
 * The wheelhouse the test app's requirements come from (PyPI is not reachable here): the local
 * packages of test/fixtures/wheels, built into /srv/wheels on the server with Debian's pip.
 */
export async function buildWheelhouse(server: TestServer): Promise<void> {
  await server.exec(['apt-get', 'install', '-y', '-q', 'python3-pip', 'python3-setuptools', 'python3-wheel', 'python3-venv'], { timeoutMs: 600_000 });
  for (const name of readdirSync(join(REPO_ROOT, 'test', 'fixtures', 'wheels'))) {
    await server.copyIn(join(REPO_ROOT, 'test', 'fixtures', 'wheels', name), `/tmp/wheels-src/${name}`);
    await server.exec(['python3', '-m', 'pip', 'wheel', '--quiet', '--no-index', '--no-build-isolation', '--no-deps', '--wheel-dir', '/srv/wheels', `/tmp/wheels-src/${name}`]);
  }
  await server.exec(['chmod', '-R', 'a+rX', '/srv/wheels']);
}

/**
 * Serves the test app from a git account on the server (reachable over SSH only with the deploy
 * key that `agent deploy-key` writes into the workspace's staging secrets), and points the
 * workspace's staging pillar at it, with ports of its own.
 */
export async function serveTestApp(server: TestServer, ws: Workspace, env = 'staging'): Promise<AppSite> {
  // Several test servers share the host's network: packages must not start services (nginx on
  // :80, PostgreSQL on :5432) before brine has configured their ports.
  await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
  await server.exec(['apt-get', 'install', '-y', '-q', 'git'], { timeoutMs: 600_000 });
  await buildWheelhouse(server);
  await server.exec(['useradd', '--system', '--create-home', '--home-dir', '/srv/git', '--shell', '/usr/bin/git-shell', 'git']);

  const made = await execa('node', [join(ws.dir, 'dist', 'agent.mjs'), 'deploy-key', env, '--root', ws.dir], { reject: false });
  if (made.exitCode !== 0) throw new Error(`agent deploy-key failed: ${made.stderr}`);
  const pub = /^(ssh-ed25519 \S+.*)$/m.exec(String(made.stdout))?.[1];
  if (!pub) throw new Error(`agent deploy-key printed no public key:\n${made.stdout}`);
  await server.writeFile('/srv/git/.ssh/authorized_keys', `${pub}\n`, 0o600);

  // The app's repository, made on the host and copied in as a bare repository.
  const src = mkdtempSync(join(tmpdir(), 'brine-app-'));
  const git = (...args: string[]) => execa('git', ['-C', src, '-c', 'user.name=Test', '-c', 'user.email=test@example.invalid', ...args]);
  cpSync(join(REPO_ROOT, 'test', 'fixtures', 'app'), src, { recursive: true });
  await git('init', '-q', '-b', 'main');
  await git('add', '.');
  await git('commit', '-q', '-m', 'the test app');
  await execa('git', ['clone', '-q', '--bare', src, `${src}.git`]);
  await server.copyIn(`${src}.git`, '/srv/git/app.git');
  await server.exec(['chown', '-R', 'git:git', '/srv/git']);
  await server.exec(['chmod', '700', '/srv/git/.ssh']);

  const { listenPort, bluePort, greenPort, pgPort } = await writeLocalPillar(ws, env, server, {
    comment: 'This test server: the git host is the server itself, ports of its own.',
    // The git host is this same server: its git account must be let in over SSH.
    extra: ['ssh:', '  allow_groups: [root, login, git]'],
  });
  const push = async (message: string, edit: (dir: string) => void): Promise<string> => {
    edit(src);
    await git('add', '-A');
    await git('commit', '-q', '-m', message);
    await git('push', '-q', `${src}.git`, 'main');
    await server.copyIn(`${src}.git`, '/srv/git/app.git');
    await server.exec(['chown', '-R', 'git:git', '/srv/git/app.git']);
    return String((await git('rev-parse', 'HEAD')).stdout).trim();
  };
  return {
    url: `http://127.0.0.1:${listenPort}/`,
    listenPort,
    slotPorts: [bluePort, greenPort],
    pgPort,
    pushCommit: push,
    async pushChange(greeting: string) {
      await push(`greeting: ${greeting}`, (dir) => {
        const app = join(dir, 'app.py');
        writeFileSync(app, readFileSync(app, 'utf8').replace(/hello from/, greeting));
      });
    },
  };
}

/**
 * Makes `server` a second server of the app `site` serves from `first`: its workspace gets the
 * same secrets (deploy key, DB password), and a pillar of its own whose repository is the first
 * server's git host and whose database is the first server's PostgreSQL; ports of its own.
 */
export async function secondServer(server: TestServer, ws: Workspace, first: { server: TestServer; ws: Workspace; site: AppSite }, env = 'staging'): Promise<AppSite> {
  await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
  await buildWheelhouse(server);
  cpSync(join(first.ws.dir, 'pillar', env, 'secrets.yaml'), join(ws.dir, 'pillar', env, 'secrets.yaml'));
  const { listenPort, bluePort, greenPort, pgPort } = await writeLocalPillar(ws, env, first.server, {
    comment: "A second server of the app: the first server's git host and database, ports of its own.",
    db: { host: '127.0.0.1', port: first.site.pgPort },
  });
  return { ...first.site, url: `http://127.0.0.1:${listenPort}/`, listenPort, slotPorts: [bluePort, greenPort], pgPort };
}

/**
 * The test server's own pillar (pillar/ENV/local.yaml): the git host `gitHost` serves the app's
 * repository over SSH (its host key pinned), and ports of its own for nginx, the two app slots and
 * PostgreSQL; optionally another server's database.
 */
async function writeLocalPillar(
  ws: Workspace,
  env: string,
  gitHost: TestServer,
  o: { comment: string; db?: { host: string; port: number }; extra?: string[] },
): Promise<{ listenPort: number; bluePort: number; greenPort: number; pgPort: number }> {
  const hostKey = (await gitHost.readFile('/etc/ssh/ssh_host_ed25519_key.pub')).split(' ').slice(0, 2).join(' ');
  const [listenPort, bluePort, greenPort, pgPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const lines = [
    `# ${o.comment}`,
    'app:',
    '  repo:',
    `    url: ssh://git@127.0.0.1:${gitHost.sshPort}/srv/git/app.git`,
    `    host_keys: ['[127.0.0.1]:${gitHost.sshPort} ${hostKey}']`,
    `  listen: 127.0.0.1:${listenPort}`,
    `  binds: [127.0.0.1:${bluePort}, 127.0.0.1:${greenPort}]`,
    '  python:',
    '    pip_args: [--no-index, --find-links, /srv/wheels]',
    ...(o.db ? ['  db:', `    host: ${o.db.host}`, `    port: ${o.db.port}`] : []),
    'postgres:',
    `  port: ${pgPort}`,
    ...(o.extra ?? []),
    '',
  ];
  writeFileSync(join(ws.dir, 'pillar', env, 'local.yaml'), lines.join('\n'));
  return { listenPort, bluePort, greenPort, pgPort };
}

/** GET url: its status and body, or status 0 and the error (a test asserts, never throws on it). */
export async function page(url: string): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    return { status: r.status, body: await r.text() };
  } catch (err) {
    return { status: 0, body: String(err) };
  }
}
