// Bundles the agent into one file, dist/agent.mjs, that runs on the distro's Node 18 with no
// node_modules beside it.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const started = Date.now();
await build({
  entryPoints: ['agent/main.ts'],
  outfile: 'dist/agent.mjs',
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  format: 'esm',
  minifyWhitespace: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { BRINE_VERSION: JSON.stringify(pkg.version) },
  // CommonJS dependencies (nunjucks, ajv) call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __brineCreateRequire } from 'node:module';\nconst require = __brineCreateRequire(import.meta.url);",
  },
  // nunjucks' optional watcher and precompile tooling are never used on a server.
  external: ['chokidar', 'fsevents'],
});
console.log(`built dist/agent.mjs in ${Date.now() - started} ms`);
