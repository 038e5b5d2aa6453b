// `npm test`: installs what the tests need, type-checks, builds the bundle, then runs every tap
// test — unit tests and the integration tests that boot real Debian servers — and ends with a
// plain "N passed, N failed" line. Extra arguments select test files: `npm test -- test/unit`.
import { spawn, spawnSync } from 'node:child_process';
import { build, ensureImage, ensureNpmDeps, ensureSystemPackages } from './setup.mjs';

const started = Date.now();
ensureNpmDeps();
ensureSystemPackages();
const tsc = spawnSync('npx', ['tsc', '--noEmit'], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.log('typecheck failed');
  process.exit(1);
}
build();
ensureImage();

const files = process.argv.slice(2);
const tap = spawn('npx', ['tap', '-R', 'tap', ...files], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let tail = '';
tap.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4000);
});
tap.on('close', (code) => {
  const m = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(tail);
  const [pass, fail, skip] = m ? [Number(m[2] ?? 0), Number(m[3] ?? 0), Number(m[4] ?? 0)] : [0, 1, 0];
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  console.log(`\ntests: ${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`);
  console.log(`(${minutes} min in all)`);
  process.exit(code === 0 && fail === 0 && m ? 0 : 1);
});
