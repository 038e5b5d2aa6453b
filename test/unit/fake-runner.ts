// A Runner that records every argv and answers from a script: the first entry whose argv prefix
// matches. A command nobody scripted fails the test. Shared by the module tests.
import type { RunOptions, RunResult, Runner } from '../../agent/exec.js';

export type Answer = Partial<RunResult> | ((argv: string[]) => Partial<RunResult> | Promise<Partial<RunResult>>);

export function fakeRunner(script: [string[], Answer][]) {
  const calls: { argv: string[]; options: RunOptions }[] = [];
  const runner: Runner = {
    async run(argv, options = {}) {
      calls.push({ argv: [...argv], options });
      const hit = script.find(([prefix]) => prefix.every((p, i) => argv[i] === p));
      if (!hit) throw new Error(`unexpected command: ${argv.join(' ')}`);
      const answer = typeof hit[1] === 'function' ? await hit[1]([...argv]) : hit[1];
      const result = { code: 0, stdout: '', stderr: '', ...answer };
      if (result.code !== 0 && !options.allowFailure) throw new Error(`\`${argv.join(' ')}\` exited ${result.code}`);
      return result;
    },
  };
  return { runner, script, calls, argvs: () => calls.map((c) => c.argv) };
}
