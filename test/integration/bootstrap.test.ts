// bootstrap.sh over real SSH against freshly booted servers: a minimal Debian 12 without Node.js
// or rsync is provisioned and converged; a second run changes nothing; only the environment's own
// pillar reaches the server; a changed host key stops everything; bad local input never touches the
// server; a sudo user works; cron then keeps the server converged on its own, one run at a time.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootServer, REPO_ROOT, type TestServer } from '../server/server.js';

const STAGING_SECRET = 'staging-Only-s3cret-4411';
const PRODUCTION_SECRET = 'production-Only-s3cret-9922';

interface Workspace {
  dir: string;
  key: string;
  knownHosts: string;
}

/** A user's checkout: bootstrap.sh, the bundle, states and pillar (with real secrets files). */
function workspace(t: Test): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'brine-bootstrap-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(REPO_ROOT, 'bootstrap.sh'), join(dir, 'bootstrap.sh'));
  cpSync(join(REPO_ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(REPO_ROOT, 'states'), join(dir, 'states'), { recursive: true });
  cpSync(join(REPO_ROOT, 'pillar'), join(dir, 'pillar'), { recursive: true });
  for (const [env, secret] of [['staging', STAGING_SECRET], ['production', PRODUCTION_SECRET]] as const) {
    const example = readFileSync(join(dir, 'pillar', env, 'secrets.example.yaml'), 'utf8');
    writeFileSync(join(dir, 'pillar', env, 'secrets.yaml'), example.replace(/DB_PASSWORD: .*/, `DB_PASSWORD: ${secret}`));
  }
  // The bootstrap mechanics need no app: the base of the reference states (the whole stack is
  // stack.test.ts). The deploy user's group may log in over SSH.
  writeFileSync(join(dir, 'states', 'top.yaml'), "'*':\n  - agent\n  - base\n  - users\n");
  writeFileSync(join(dir, 'pillar', 'staging', 'local.yaml'), 'ssh:\n  allow_groups: [root, login, deploy]\n');
  // Self-converge every minute, without splay, so the test sees cron at work.
  const common = join(dir, 'pillar', 'common.yaml');
  writeFileSync(common, readFileSync(common, 'utf8').replace('interval: 15', 'interval: 1').replace('splay: 120', 'splay: 0'));
  return { dir, key: join(dir, 'id_ed25519'), knownHosts: join(dir, 'pillar', 'known_hosts') };
}

async function makeKey(ws: Workspace): Promise<string> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'brine-test', '-f', ws.key]);
  return readFileSync(`${ws.key}.pub`, 'utf8');
}

async function bootstrap(ws: Workspace, args: string[]) {
  const r = await execa('bash', [join(ws.dir, 'bootstrap.sh'), ...args, '-i', ws.key], {
    cwd: ws.dir,
    reject: false,
    timeout: 600_000,
    // A HOME of its own: the tester's ~/.ssh must not take part.
    env: { HOME: join(ws.dir, 'home'), PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
    extendEnv: false,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), output: `${r.stdout}\n${r.stderr}` };
}

async function authorize(server: TestServer, user: string, pub: string): Promise<void> {
  const home = user === 'root' ? '/root' : `/home/${user}`;
  await server.writeFile(`${home}/.ssh/authorized_keys`, pub, 0o600);
  await server.exec(['chown', '-R', `${user}:${user}`, `${home}/.ssh`]);
  await server.exec(['chmod', '700', `${home}/.ssh`]);
}

t.test('bootstrap a fresh minimal server, then again; cron keeps it converged', async (t) => {
  const ws = workspace(t);
  const pub = await makeKey(ws);
  const server = await bootServer();
  t.teardown(() => server.stop());
  await authorize(server, 'root', pub);
  // A minimal Debian 12 as a provider hands it out: no Node.js, no rsync.
  await server.exec(['apt-get', 'purge', '-y', '-q', 'nodejs', 'rsync'], { timeoutMs: 300_000 });
  await server.exec(['apt-get', 'autoremove', '-y', '-q'], { timeoutMs: 300_000 });
  t.equal((await server.exec(['sh', '-c', 'command -v node rsync || true'])).stdout.trim(), '', 'no node, no rsync on the server');
  const target = `root@127.0.0.1:${server.sshPort}`;

  const first = await bootstrap(ws, [target, 'staging']);
  t.equal(first.code, 0, `first bootstrap converges:\n${first.output}`);
  t.match(first.stdout, /trusted its host key on first use and pinned it in pillar\/known_hosts/);
  t.match(first.stdout, /installing: rsync nodejs/);
  t.match(first.stdout, /Summary: \d+ succeeded, [1-9]\d* changed, 0 failed/);
  t.match(readFileSync(ws.knownHosts, 'utf8'), new RegExp(`^\\[127\\.0\\.0\\.1\\]:${server.sshPort} ssh-ed25519 `, 'm'), 'the host key is pinned');

  const second = await bootstrap(ws, [target, 'staging']);
  t.equal(second.code, 0, second.output);
  t.match(second.stdout, /\(0 files changed\)/, 'nothing new to sync');
  t.match(second.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/, 'the second run changes nothing');
  t.notMatch(second.stdout, /first use/);

  // Only staging's pillar is on the server; production's secret is nowhere.
  const listing = (await server.exec(['sh', '-c', 'cd /srv/brine && find . | sort'])).stdout;
  t.match(listing, /\.\/pillar\/staging\/secrets\.yaml/);
  t.notMatch(listing, /production/, 'no production pillar on a staging server');
  t.notMatch(listing, /example/, 'examples are not sent');
  const grep = await server.exec(['grep', '-r', PRODUCTION_SECRET, '/srv', '/opt', '/etc'], { allowFailure: true });
  t.equal(grep.code, 1, 'the production secret is not on the server');
  t.equal((await server.exec(['stat', '-c', '%a %U', '/srv/brine/pillar', '/srv/brine/pillar/staging/secrets.yaml'])).stdout, '700 root\n600 root\n', 'pillar is root-only');
  t.equal((await server.readFile('/srv/brine/environment')).trim(), 'staging');
  for (const out of [first, second]) {
    t.notMatch(out.output, STAGING_SECRET, 'bootstrap shows no secret');
    t.notMatch(out.output, PRODUCTION_SECRET);
  }

  const history = await server.exec(['agent', 'history', '--json']);
  // cron runs every minute here and may have run between the two bootstraps: only theirs count.
  const runs = (JSON.parse(history.stdout) as { startedBy: string; changed: number; failed: number; total: number; test: boolean }[]).filter((r) => r.startedBy !== 'cron');
  t.equal(runs.length, 2, 'history lists the two runs');
  t.same(runs.map((r) => [r.startedBy, r.failed, r.changed > 0]), [['bootstrap', 0, true], ['bootstrap', 0, false]], 'with the right counts');
  t.match((await server.exec(['agent', 'history'])).stdout, /^WHEN .*\n.* bootstrap +apply +staging +\d+ +\d+ +0 /);

  await t.test('cron repairs drift on its own, one run at a time', async (t) => {
    t.match(await server.readFile('/etc/cron.d/agent'), /^\*\/1 \* \* \* \* root \/usr\/local\/bin\/agent apply --cron --splay 0$/m);
    await server.writeFile('/etc/motd', 'changed by hand\n');
    // A run by hand at the same time as cron's: the lock must keep them apart. It converges
    // another state only, so the repair of /etc/motd is cron's alone.
    const byHand = server.exec(['sh', '-c', 'sleep 55; agent apply --only /etc/brine-environment >/dev/null 2>&1; true'], { timeoutMs: 200_000 });
    let repaired = false;
    for (let i = 0; i < 80 && !repaired; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      repaired = (await server.readFile('/etc/motd')).includes('converged by brine');
    }
    await byHand;
    t.ok(repaired, 'the scheduled run repaired /etc/motd without anyone running a command');
    const entries = (await server.exec(['journalctl', '-t', 'agent', '-o', 'json', '--no-pager', 'BRINE_EVENT=run-end', 'BRINE_STARTED_BY=cron'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string>);
    t.ok(entries.some((e) => e.BRINE_CHANGED_COUNT === '1'), 'a cron run changed one state');
    // Runs never overlap: each run's start..end interval is disjoint from every other's.
    const events = (await server.exec(['journalctl', '-t', 'agent', '-o', 'json', '--no-pager', 'BRINE_TEST=0'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string>)
      .filter((e) => e.BRINE_EVENT === 'run-start' || e.BRINE_EVENT === 'run-end');
    const spans = new Map<string, number[]>();
    for (const e of events) spans.set(e.BRINE_RUN_ID!, [...(spans.get(e.BRINE_RUN_ID!) ?? []), Number(e.__REALTIME_TIMESTAMP)]);
    const intervals = [...spans.values()].filter((s) => s.length === 2).map(([a, b]) => [a!, b!] as const).sort((x, y) => x[0] - y[0]);
    t.ok(intervals.length >= 4, `several runs were logged (${intervals.length})`);
    for (let i = 1; i < intervals.length; i++) t.ok(intervals[i]![0] >= intervals[i - 1]![1], `run ${i + 1} started after run ${i} ended`);
  });

  await t.test('a user with sudo instead of root', async (t) => {
    await server.exec(['useradd', '-m', '-s', '/bin/bash', 'deploy']);
    await server.writeFile('/etc/sudoers.d/deploy', 'deploy ALL=(ALL) NOPASSWD:ALL\n', 0o440);
    await authorize(server, 'deploy', pub);
    const r = await bootstrap(ws, [`deploy@127.0.0.1:${server.sshPort}`, 'staging']);
    t.equal(r.code, 0, r.output);
    t.match(r.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/);
  });

  await t.test('a changed host key stops everything before anything is sent', async (t) => {
    await server.exec(['sh', '-c', 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q >/dev/null 2>&1 || ssh-keygen -A >/dev/null && systemctl restart ssh']);
    writeFileSync(join(ws.dir, 'states', 'new-marker.yaml'), 'x: {}\n');
    const r = await bootstrap(ws, [target, 'staging']);
    t.equal(r.code, 5, r.output);
    t.match(r.stderr, /the host key of \[127\.0\.0\.1\]:\d+ is not the one pinned in pillar\/known_hosts/);
    t.equal((await server.exec(['test', '-e', '/srv/brine/states/new-marker.yaml'], { allowFailure: true })).code, 1, 'nothing was sent');
  });
});

t.test('bad local input: a clear message, and the server is never touched', async (t) => {
  const ws = workspace(t);
  const pub = await makeKey(ws);
  const server = await bootServer();
  t.teardown(() => server.stop());
  await authorize(server, 'root', pub);
  const target = `root@127.0.0.1:${server.sshPort}`;

  const unknown = await bootstrap(ws, [target, 'prod']);
  t.equal(unknown.code, 3);
  t.match(unknown.stderr, /unknown environment "prod": there is no pillar\/prod\/ \(known: .*production.*staging|unknown environment "prod": there is no pillar\/prod\/ \(known: .*staging.*production/);

  rmSync(join(ws.dir, 'pillar', 'production', 'secrets.yaml'));
  const noSecrets = await bootstrap(ws, [target, 'production']);
  t.equal(noSecrets.code, 3);
  t.match(noSecrets.stderr, /pillar\/production\/secrets\.yaml is missing: copy pillar\/production\/secrets\.example\.yaml/);

  writeFileSync(join(ws.dir, 'states', 'base.yaml'), `${readFileSync(join(ws.dir, 'states', 'base.yaml'), 'utf8')}\nbroken:\n  pkg.instaled: []\n`);
  const invalid = await bootstrap(ws, [target, 'staging']);
  t.equal(invalid.code, 3);
  t.match(invalid.stderr, /states\/base\.yaml:\d+: broken: unknown function pkg\.instaled \(did you mean pkg\.installed\?\)/);
  t.match(invalid.stderr, /nothing was sent/);

  const usage = await bootstrap(ws, ['127.0.0.1', 'staging']);
  t.equal(usage.code, 1);
  t.match(usage.stderr, /USER@HOST\[:PORT\]/);
  t.same(readdirSync(join(ws.dir, 'pillar')).filter((f) => f === 'known_hosts'), [], 'no connection was even made');

  t.equal((await server.exec(['test', '-e', '/srv/brine'], { allowFailure: true })).code, 1, 'the server was not touched');

  // A distro whose Node.js is too old: a clear message naming what to do, nothing synced.
  await server.writeFile('/usr/local/bin/node', '#!/bin/sh\n[ "$1" = --version ] && { echo v16.20.2; exit 0; }\nexit 1\n', 0o755);
  rmSync(join(ws.dir, 'states', 'base.yaml'));
  cpSync(join(REPO_ROOT, 'states', 'base.yaml'), join(ws.dir, 'states', 'base.yaml'));
  const old = await bootstrap(ws, [target, 'staging']);
  t.equal(old.code, 6, old.output);
  t.match(old.stderr, /ships Node\.js v16\.20\.2; brine needs >= 18\.19 \(Debian 12, Ubuntu 24\.04\)\. Install a newer nodejs package/);
  t.equal((await server.exec(['test', '-e', '/srv/brine/states'], { allowFailure: true })).code, 1, 'nothing was synced');
});
