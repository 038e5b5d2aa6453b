// git.latest and env.file on a real booted Debian 12 server, the way the reference stack uses
// them: the deploy key made by `agent deploy-key` lives in the secrets pillar and is written by a
// file.managed state; the checkout is pulled over SSH from a git account that accepts that key
// only, with the server's host key pinned from pillar; the app's environment file is built from
// pillar env + secrets.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT, type TestServer } from '../server/server.js';
import { agent, applyJson, bootWithAgent, byId, stage, type AgentRun } from './brine.js';

const ROOT = '/srv/brine-git';
const DB_PASSWORD = "Db-pw'7781/never@printed";
const SECRET_KEY = 'sk-5c1e-never-printed-either';

interface Repo {
  /** Commits a change to README on main and pushes it to the bare repository. */
  push(text: string): Promise<string>;
  head(): Promise<string>;
}

/** The git host: a `git` account (git-shell) with a bare repository, reachable with one key. */
async function gitHost(server: TestServer, deployPublicKey: string): Promise<Repo> {
  await server.exec(['useradd', '--system', '--create-home', '--home-dir', '/srv/git', '--shell', '/usr/bin/git-shell', 'git']);
  await server.writeFile('/srv/git/.ssh/authorized_keys', `${deployPublicKey}\n`, 0o600);
  const asGit = (...argv: string[]) =>
    server.exec(['runuser', '-u', 'git', '--', 'git', '-c', 'user.name=Dev', '-c', 'user.email=dev@example.invalid', ...argv]);
  await server.exec(['chown', '-R', 'git:git', '/srv/git']);
  await server.exec(['chmod', '700', '/srv/git/.ssh']);
  await asGit('init', '-q', '--bare', '-b', 'main', '/srv/git/app.git');
  await asGit('init', '-q', '-b', 'main', '/srv/git/work');
  const push = async (text: string) => {
    await server.exec(['runuser', '-u', 'git', '--', 'sh', '-c', 'printf "%s\\n" "$1" > /srv/git/work/README', 'sh', text]);
    await asGit('-C', '/srv/git/work', 'add', 'README');
    await asGit('-C', '/srv/git/work', 'commit', '-q', '-m', text);
    await asGit('-C', '/srv/git/work', 'push', '-q', '/srv/git/app.git', 'main');
    return (await asGit('-C', '/srv/git/work', 'rev-parse', 'HEAD')).stdout.trim();
  };
  return { push, head: async () => (await asGit('-C', '/srv/git/app.git', 'rev-parse', 'main')).stdout.trim() };
}

/** The states and pillar, with the given git.latest target, pinned keys and identity. */
function tree(o: { secretsYaml: string; url: string; hostKeys: string[]; target: string; identity: boolean }) {
  return {
    'states/top.yaml': "'*':\n  - app\n",
    'states/app.yaml': `
app:
  group.present: []
  user.present:
    - gid: app
    - home: /srv/app
    - createhome: false
    - shell: /usr/sbin/nologin
    - require:
      - group: app
{% for dir, mode in [['/srv/app', '0750'], ['/srv/app/.ssh', '0700'], ['/srv/app/shared', '0750']] %}
{{ dir }}:
  file.directory:
    - user: app
    - group: app
    - mode: '{{ mode }}'
    - require:
      - user: app
{% endfor %}
deploy-key:
  file.managed:
    - name: /srv/app/.ssh/deploy_key
    - contents: {{ pillar.deploy_key | dump }}
    - user: app
    - group: app
    - mode: '0600'
    - require:
      - file: /srv/app/.ssh
checkout:
  git.latest:
    - name: {{ pillar.repo.url }}
    - target: ${o.target}
    - rev: main
    - user: app
${o.identity ? '    - identity: /srv/app/.ssh/deploy_key\n' : ''}    - known_hosts: {{ pillar.repo.host_keys | dump }}
    - require:
      - file: deploy-key
      - file: /srv/app
app-env:
  env.file:
    - name: /srv/app/shared/.env
    - group: app
    - extra:
        DATABASE_URL: "postgresql://app:{{ pillar.secrets.DB_PASSWORD | urlencode }}@127.0.0.1/app"
    - require:
      - file: /srv/app/shared
`,
    'pillar/common.yaml': "env:\n  APP_NAME: git-test\n  DEBUG: false\n  GREETING: \"it's a test\"\n",
    'pillar/test/repo.yaml': `repo:\n  url: ${o.url}\n  host_keys: ${JSON.stringify(o.hostKeys)}\n`,
    'pillar/test/secrets.yaml': o.secretsYaml,
  };
}

/** Every line of a secret that could show on its own (a key's base64 lines), and the whole. */
function secretPieces(secretsYaml: string): string[] {
  const data = parse(secretsYaml);
  const key: string = data.deploy_key;
  return [DB_PASSWORD, encodeURIComponent(DB_PASSWORD), SECRET_KEY, ...key.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'))];
}

t.test('git.latest over SSH with the deploy key and a pinned host key; env.file from pillar', async (t) => {
  const timings: string[] = [];
  const timed = async <T>(what: string, f: () => Promise<T>) => {
    const t0 = Date.now();
    try {
      return await f();
    } finally {
      timings.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    }
  };
  t.teardown(() => console.error(`# timings: ${timings.join(', ')}`));

  const server = await timed('boot', () => bootWithAgent());
  t.teardown(() => server.stop());
  const install = () => server.exec(['apt-get', 'install', '-y', '-q', 'git', 'python3-dotenv'], { timeoutMs: 600_000 });
  await timed('apt-get install git python3-dotenv', () =>
    install().catch(async () => {
      await server.exec(['apt-get', 'update', '-q'], { timeoutMs: 300_000 });
      await install();
    }),
  );

  // The developer's side: `agent deploy-key test` in the project repository.
  const project = mkdtempSync(join(tmpdir(), 'brine-git-project-'));
  t.teardown(() => rmSync(project, { recursive: true, force: true }));
  const secretsFile = join(project, 'pillar/test/secrets.yaml');
  await execa('mkdir', ['-p', join(project, 'pillar/test')]);
  await execa('sh', ['-c', `printf '%s\\n' "# test secrets" "secrets:" "  DB_PASSWORD: \\"$1\\"" "  SECRET_KEY: $2" > "$3"`, 'sh', DB_PASSWORD, SECRET_KEY, secretsFile]);
  const made = await execa('node', [join(REPO_ROOT, 'dist/agent.mjs'), 'deploy-key', 'test', '--root', project], { reject: false });
  t.equal(made.exitCode, 0, made.stderr);
  const publicKey = /^(ssh-ed25519 \S+ brine deploy key \(test\))$/m.exec(made.stdout)?.[1];
  t.ok(publicKey, 'deploy-key printed the public half');
  const secretsYaml = readFileSync(secretsFile, 'utf8');
  const secrets = secretPieces(secretsYaml);
  for (const s of secrets) t.notMatch(made.stdout + made.stderr, s, 'deploy-key prints no secret');

  const repo = await gitHost(server, publicKey!);
  const first = await repo.push('first version');
  const url = `ssh://git@127.0.0.1:${server.sshPort}/srv/git/app.git`;
  const hostKey = (await server.readFile('/etc/ssh/ssh_host_ed25519_key.pub')).split(' ').slice(0, 2).join(' ');
  const pinned = `[127.0.0.1]:${server.sshPort} ${hostKey}`;
  const good = tree({ secretsYaml, url, hostKeys: [pinned], target: '/srv/app/checkout', identity: true });

  const outputs: AgentRun[] = [];
  const run = async (what: string, root: string, args: string[] = []) => {
    const r = await timed(what, () => applyJson(server, root, args));
    outputs.push(r);
    return r;
  };
  await stage(server, ROOT, good);

  // --test on a fresh server: no user, no key yet; it says what it would do and changes nothing.
  const dry = await run('apply --test (fresh)', ROOT, ['--test']);
  t.equal(dry.code, 0, dry.output);
  t.equal(byId(dry.states, 'checkout').status, 'would-change');
  t.match(byId(dry.states, 'checkout').changes, [{ what: 'known_hosts' }, { what: 'cloned', new: '/srv/app/checkout' }, { what: 'revision', old: null }]);
  t.equal((await server.exec(['test', '-e', '/srv/app'], { allowFailure: true })).code, 1, 'test mode changed nothing');

  const apply1 = await run('apply 1 (clone)', ROOT);
  t.equal(apply1.code, 0, apply1.output);
  const checkout = byId(apply1.states, 'checkout');
  t.equal(checkout.status, 'changed', checkout.comment);
  t.match(checkout.changes, [
    { what: 'known_hosts', old: null, new: [new RegExp(`^\\[127\\.0\\.0\\.1\\]:${server.sshPort} ssh-ed25519 SHA256:`)] },
    { what: 'cloned', old: null, new: '/srv/app/checkout' },
    { what: 'revision', old: null, new: first },
  ]);
  t.equal(await server.readFile('/srv/app/checkout/README'), 'first version\n');
  t.equal((await server.exec(['stat', '-c', '%U:%G', '/srv/app/checkout', '/srv/app/checkout/README', '/srv/app/checkout/.git/HEAD'])).stdout, 'app:app\napp:app\napp:app\n');
  t.equal((await server.exec(['runuser', '-u', 'app', '--', 'git', '-C', '/srv/app/checkout', 'rev-parse', '--abbrev-ref', 'HEAD'])).stdout, 'main\n');
  t.equal((await server.exec(['sh', '-c', 'cat /etc/brine/known_hosts.d/*'])).stdout, `${pinned}\n`, 'the pinned key, and only it');

  // The environment file: 0640 root:app, readable by the app, the same for python-dotenv and sh.
  t.equal((await server.exec(['stat', '-c', '%a %U:%G', '/srv/app/shared/.env'])).stdout, '640 root:app\n');
  const dbUrl = `postgresql://app:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1/app`;
  const expected = { APP_NAME: 'git-test', DEBUG: 'false', GREETING: "it's a test", DB_PASSWORD, SECRET_KEY, DATABASE_URL: dbUrl };
  const py = await server.exec(['runuser', '-u', 'app', '--', 'python3', '-c',
    'import json\nfrom dotenv import dotenv_values\nprint(json.dumps(dotenv_values("/srv/app/shared/.env")))']);
  t.same(JSON.parse(py.stdout), expected, 'python-dotenv, as the app user');
  const sh = await server.exec(['runuser', '-u', 'app', '--', 'sh', '-c',
    'set -a; . /srv/app/shared/.env; set +a; printf "%s|%s|%s|%s" "$GREETING" "$DB_PASSWORD" "$SECRET_KEY" "$DATABASE_URL"']);
  t.equal(sh.stdout, `it's a test|${DB_PASSWORD}|${SECRET_KEY}|${dbUrl}`, 'sh, as the app user');
  t.equal((await server.exec(['runuser', '-u', 'nobody', '--', 'cat', '/srv/app/shared/.env'], { allowFailure: true })).code, 1, 'others can not read it');
  t.match(byId(apply1.states, 'app-env').changes[0]!.diff, "+DB_PASSWORD='********'");

  const apply2 = await run('apply 2 (no-op)', ROOT);
  t.equal(apply2.code, 0, apply2.output);
  t.equal(apply2.summary.changed, 0, 'a second apply changes nothing');
  t.match(byId(apply2.states, 'checkout').comment, `at ${first.slice(0, 12)} (branch main)`);

  // A push to the branch is deployed by the next run.
  const second = await repo.push('second version');
  const apply3 = await run('apply 3 (pull)', ROOT);
  t.equal(apply3.code, 0, apply3.output);
  t.same(byId(apply3.states, 'checkout').changes, [{ what: 'revision', old: first, new: second }]);
  t.equal(await server.readFile('/srv/app/checkout/README'), 'second version\n');
  t.equal(apply3.summary.changed, 1, 'only the checkout changed');

  // A wrong pinned host key: the state fails with a host-key message and nothing is cloned.
  const otherKey = join(project, 'other_host_key');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
  const wrongPin = `[127.0.0.1]:${server.sshPort} ${readFileSync(`${otherKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}`;
  await stage(server, `${ROOT}-wrong-key`, tree({ secretsYaml, url, hostKeys: [wrongPin], target: '/srv/app/checkout-wrong-key', identity: true }));
  const wrong = await run('apply (wrong host key)', `${ROOT}-wrong-key`);
  t.equal(wrong.code, 2, 'a failed state');
  const failed = byId(wrong.states, 'checkout');
  t.equal(failed.status, 'failed');
  t.match(failed.comment, `git ls-remote: host key verification failed for [127.0.0.1]:${server.sshPort}: the key the server offered (SHA256:`);
  t.match(failed.comment, 'is not the one pinned in known_hosts');
  t.equal((await server.exec(['ls', '-A', '/srv/app'])).stdout.split('\n').filter((e) => e.includes('wrong')).length, 0, 'nothing cloned, no temp dir');

  // Without the deploy key, the git host refuses: access is by that key only.
  await stage(server, `${ROOT}-no-key`, tree({ secretsYaml, url, hostKeys: [pinned], target: '/srv/app/checkout-no-key', identity: false }));
  const nokey = await run('apply (no deploy key)', `${ROOT}-no-key`);
  t.equal(nokey.code, 2);
  t.match(byId(nokey.states, 'checkout').comment, `git ls-remote: [127.0.0.1]:${server.sshPort} refused the key (Permission denied (publickey))`);
  t.equal((await server.exec(['test', '-e', '/srv/app/checkout-no-key'], { allowFailure: true })).code, 1, 'nothing cloned');

  // The checkout the good states manage was not disturbed, and no secret was ever printed.
  t.equal(await server.readFile('/srv/app/checkout/README'), 'second version\n');
  const text = await agent(server, ROOT, ['apply']); // the console reporter too
  t.equal(text.code, 0, text.output);
  outputs.push(text, await agent(server, ROOT, ['show']));
  for (const r of outputs) for (const s of secrets) t.notOk(r.output.includes(s), `no secret in the output (…${s.slice(-6)})`);
});
