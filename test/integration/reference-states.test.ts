// The repository's own states and example pillar — what a new project starts from — converge a
// fresh server, validate for every environment, and --only runs a state with what it requires.
import t from 'tap';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootServer, REPO_ROOT } from '../server/server.js';
import { installAgent, runAgent } from '../server/agent.js';

/** The pillar a server of ENV gets: common files and its own folder, secrets from the example. */
function pillarFor(env: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'brine-pillar-'));
  const src = join(REPO_ROOT, 'pillar');
  for (const e of readdirSync(src, { withFileTypes: true })) if (e.isFile()) cpSync(join(src, e.name), join(dir, e.name));
  cpSync(join(src, env), join(dir, env), { recursive: true });
  cpSync(join(dir, env, 'secrets.example.yaml'), join(dir, env, 'secrets.yaml'));
  return dir;
}

t.test('the reference states converge a fresh server, idempotently', async (t) => {
  const server = await bootServer();
  t.teardown(() => server.stop());
  const pillar = pillarFor('staging');
  t.teardown(() => rmSync(pillar, { recursive: true, force: true }));
  await installAgent(server, { statesDir: join(REPO_ROOT, 'states'), pillarDir: pillar, env: 'staging' });

  const validate = await runAgent(server, ['validate']);
  t.equal(validate.code, 0, validate.stderr);
  t.match(validate.stdout, /^valid: staging · \d+ state files · \d+ states/);

  const only = await runAgent(server, ['apply', '--only', 'keys-alice', '--json']);
  t.equal(only.code, 0, only.stderr);
  const onlyIds = (JSON.parse(only.stdout).states as { id: string }[]).map((s) => s.id).sort();
  t.same(onlyIds, ['admin', 'keys-alice', 'login', 'user-alice'], '--only runs the state and what it requires');
  const unknown = await runAgent(server, ['apply', '--only', 'keys-alize']);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /--only: no state "keys-alize" \(did you mean keys-alice\?\)/);

  const first = await runAgent(server, ['apply']);
  t.equal(first.code, 0, first.stdout + first.stderr);
  t.match(first.stdout, /Summary: \d+ succeeded, \d+ changed, 0 failed/);
  const second = await runAgent(server, ['apply']);
  t.equal(second.code, 0);
  t.match(second.stdout, /Summary: \d+ succeeded, 0 changed, 0 failed/);

  t.match(await server.readFile('/etc/motd'), /^hello-brine · staging · converged by brine\n.*\nAdmins: alice, bob\n$/);
  const sudo = await server.exec(['sudo', '-l', '-U', 'alice']);
  t.match(sudo.stdout, /NOPASSWD: ALL/, 'alice (admin) may sudo');
  const keys = await server.readFile('/home/bob/.ssh/authorized_keys');
  t.match(keys, /bob@desk/);
});
