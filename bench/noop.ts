// Benchmark: a no-op converge of the whole reference stack (37 states) on a converged test server.
// Boots a throwaway server, bootstraps the stack over SSH (as the e2e test does), then runs
// `agent apply --json` RUNS times and prints the median wall time of the command, the median
// engine time (the report's durationMs: states only, without Node's start-up), and the states that
// take longest. Run: npx tsx bench/noop.ts [RUNS]   (needs root, like the tests)
import { bootServer } from '../test/server/server.js';
import { authorize, bootstrap, serveTestApp, workspace } from '../test/integration/stack.js';

const runs = Number(process.argv[2] ?? 9);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const ws = await workspace();
const server = await bootServer({ name: `brine-bench-${process.pid}` });
try {
  await authorize(server, ws);
  await serveTestApp(server, ws);
  const first = await bootstrap(ws, [`root@127.0.0.1:${server.sshPort}`, 'staging']);
  if (first.code !== 0) throw new Error(`bootstrap failed:\n${first.output}`);
  const walls: number[] = [];
  const engines: number[] = [];
  const perState = new Map<string, number[]>();
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = await server.exec(['agent', 'apply', '--json']);
    walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const report = JSON.parse(r.stdout) as { summary: { durationMs: number; changed: number }; states: { key: string; durationMs: number }[] };
    if (report.summary.changed !== 0) throw new Error('not a no-op run');
    engines.push(report.summary.durationMs);
    for (const s of report.states) perState.set(s.key, [...(perState.get(s.key) ?? []), s.durationMs]);
  }
  // Where the rest of the command's time goes: loading (parse, render, validate) and the journal.
  const timeOf = async (argv: string[], env: Record<string, string> = {}) => {
    const xs: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      await server.exec(argv, { env });
      xs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return median(xs);
  };
  const validate = await timeOf(['agent', 'validate']);
  const noJournal = await timeOf(['agent', 'apply', '--json'], { BRINE_JOURNAL: '0' });
  const node = [] as number[];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await server.exec(['node', '-e', '0']);
    node.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  console.log(`no-op agent apply of the reference stack, ${runs} runs (median):`);
  console.log(`  whole command (nsenter + Node start-up + run): ${median(walls).toFixed(0)} ms`);
  console.log(`  engine (all ${perState.size} states):            ${median(engines).toFixed(0)} ms`);
  console.log(`  the same without journal entries:              ${noJournal.toFixed(0)} ms`);
  console.log(`  agent validate (load, render, check the tree):  ${validate.toFixed(0)} ms`);
  console.log(`  for scale, \`node -e 0\` through nsenter:       ${median(node).toFixed(0)} ms`);
  console.log('  slowest states:');
  const slow = [...perState].map(([k, v]) => [k, median(v)] as const).sort((a, b) => b[1] - a[1]).slice(0, 6);
  for (const [k, ms] of slow) console.log(`    ${String(ms).padStart(5)} ms  ${k}`);
} finally {
  await server.stop();
  ws.remove();
}
