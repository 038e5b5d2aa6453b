// The repository's own states and example pillar — what a new project starts from — are valid for
// every environment, and `--only` runs a state with what it requires on a real server. (The whole
// stack converging is the end-to-end test, stack.test.ts.)
import t from 'tap';
import { execa } from 'execa';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootServer, REPO_ROOT } from '../server/server.js';
import { installAgent, runAgent } from '../server/agent.js';

/** The pillar a server of ENV gets: common files and its own folder, secrets from the example. */
function pillarFor(env: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'brine-pillar-'));
  const src = join(REPO_ROOT, 'pillar');
  for (const e of readdirSync(src, { withFileTypes: true })) if (e.isFile() && e.name.endsWith('.yaml')) cpSync(join(src, e.name), join(dir, e.name));
  cpSync(join(src, env), join(dir, env), { recursive: true });
  cpSync(join(dir, env, 'secrets.example.yaml'), join(dir, env, 'secrets.yaml'));
  rmSync(join(dir, env, 'secrets.example.yaml'));
  return dir;
}

for (const env of ['staging', 'production']) {
  t.test(`the reference states and pillar are valid for ${env}`, async (t) => {
    const pillar = pillarFor(env);
    t.teardown(() => rmSync(pillar, { recursive: true, force: true }));
    const root = mkdtempSync(join(tmpdir(), 'brine-root-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    cpSync(join(REPO_ROOT, 'states'), join(root, 'states'), { recursive: true });
    cpSync(pillar, join(root, 'pillar'), { recursive: true });
    const r = await execa('node', [join(REPO_ROOT, 'dist', 'agent.mjs'), 'validate', '--root', root, '--env', env], { reject: false });
    t.equal(r.exitCode, 0, String(r.stderr));
    t.match(String(r.stdout), new RegExp(`^valid: ${env} · 6 state files · \\d+ states`));
    const shown = await execa('node', [join(REPO_ROOT, 'dist', 'agent.mjs'), 'show', '--root', root, '--env', env], { reject: false });
    t.notMatch(String(shown.stdout), 'change-me-please', 'show masks the secrets');
  });
}

t.test('--only runs a state and what it requires', async (t) => {
  const server = await bootServer();
  t.teardown(() => server.stop());
  const pillar = pillarFor('staging');
  t.teardown(() => rmSync(pillar, { recursive: true, force: true }));
  await installAgent(server, { statesDir: join(REPO_ROOT, 'states'), pillarDir: pillar, env: 'staging' });
  const only = await runAgent(server, ['apply', '--only', 'keys-alice', '--json']);
  t.equal(only.code, 0, only.stderr);
  const onlyIds = (JSON.parse(only.stdout).states as { id: string }[]).map((s) => s.id).sort();
  t.same(onlyIds, ['admin', 'keys-alice', 'login', 'user-alice'], '--only runs the state and what it requires');
  t.match(await server.readFile('/home/alice/.ssh/authorized_keys'), /alice@laptop/);
  const unknown = await runAgent(server, ['apply', '--only', 'keys-alize']);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /--only: no state "keys-alize" \(did you mean keys-alice\?\)/);
});
