// Installs what brine's own commands need on a fresh machine: npm dependencies, and Debian's
// debootstrap, systemd-container, openssh-client, rsync and git for the throwaway test servers.
// Node builtins only, since it runs before `npm ci`. Idempotent: quick when all is there.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})`);
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

export function ensureNpmDeps() {
  const marker = 'node_modules/.package-lock.json';
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync('package-lock.json').mtimeMs) return;
  console.log('setup: npm ci');
  sh('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error']);
}

export function ensureSystemPackages() {
  const wanted = { debootstrap: 'debootstrap', 'systemd-nspawn': 'systemd-container', ssh: 'openssh-client', 'ssh-keygen': 'openssh-client', rsync: 'rsync', git: 'git' };
  const missing = [...new Set(Object.entries(wanted).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`setup: needs root to install ${missing.join(', ')} (apt-get)`);
  console.log(`setup: apt-get install ${missing.join(' ')}`);
  sh('apt-get', ['update', '-qq']);
  sh('apt-get', ['install', '-y', '-qq', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

export function ensureImage() {
  sh('bash', ['test/server/build-image.sh']);
}

export function build() {
  sh('node', ['scripts/build.mjs']);
}

export function nodeVersion() {
  return execFileSync('node', ['--version']).toString().trim();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  ensureNpmDeps();
  // --npm: only what building the bundle needs (npm run deploy-key, on a laptop without root).
  if (!process.argv.includes('--npm')) {
    ensureSystemPackages();
    ensureImage();
    build();
  }
}
