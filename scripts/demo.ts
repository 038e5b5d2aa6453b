// `npm run demo`: the main job on an embedded default. Boots a throwaway Debian 12 server with
// systemd-nspawn, puts the agent, the example states and the staging pillar on it (secrets from
// secrets.example.yaml), converges it, converges it again to show nothing is left to do, and stops
// it.
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installAgent, runAgent } from '../test/server/agent.js';
import { bootServer, REPO_ROOT } from '../test/server/server.js';

const env = 'staging';

/** What bootstrap sends: the common pillar files and this environment's folder, nothing else. */
function pillarFor(environment: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'brine-demo-pillar-'));
  const src = join(REPO_ROOT, 'pillar');
  for (const entry of readdirSync(src, { withFileTypes: true }))
    if (entry.isFile() && entry.name.endsWith('.yaml')) cpSync(join(src, entry.name), join(dir, entry.name));
  cpSync(join(src, environment), join(dir, environment), { recursive: true });
  const secrets = join(dir, environment, 'secrets.yaml');
  if (!existsSync(secrets)) cpSync(join(dir, environment, 'secrets.example.yaml'), secrets);
  return dir;
}

const t0 = Date.now();
console.log('demo: booting a throwaway Debian 12 server…');
const server = await bootServer({ name: `brine-demo-${process.pid}` });
console.log(`demo: ${server.name} is up (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
const pillar = pillarFor(env);
try {
  await installAgent(server, { statesDir: join(REPO_ROOT, 'states'), pillarDir: pillar, env });
  for (const round of ['first converge', 'second converge: nothing should change']) {
    console.log(`demo: agent apply (${round})`);
    const r = await runAgent(server, ['apply']);
    process.stdout.write(r.stdout + r.stderr);
    console.log(`demo: exit ${r.code}\n`);
    if (r.code !== 0) process.exitCode = r.code;
  }
} finally {
  rmSync(pillar, { recursive: true, force: true });
  await server.stop();
  console.log('demo: server stopped');
}
