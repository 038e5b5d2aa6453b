// The commands a release runs — dependency installs, build steps, migrations — as the app user, in
// a directory of the release's (or of a dependency cache entry), with the app's environment file
// read by sh first when one is given (`set -a; . FILE; set +a; exec COMMAND`: the command is
// argv, passed to sh as positional arguments, never interpolated into the script). What each
// printed goes, masked, to the release's log file (releases/ID.log, root only), and the end of it
// into the error when it fails.
import * as fs from 'node:fs/promises';
import { displayCommand, type Runner } from '../exec.js';
import type { Account } from '../git/run.js';
import type { Masker } from '../secret.js';

export interface StepContext {
  runner: Runner;
  masker: Masker;
  as: Account;
  /** sourced before each command, if given */
  envFile?: string;
  /** added to the command's environment */
  env: Record<string, string>;
  /** where the output goes */
  logFile: string;
  timeoutMs: number;
}

const TAIL_LINES = 12;

/** Killed with brine: a step must not go on without the run (a migration without its lock). */
const DIES_WITH_PARENT = ['setpriv', '--pdeathsig', 'KILL', '--'];

/**
 * argv that runs `argv` as the user, with the env file's variables. Both runuser and the command
 * get the kernel's parent-death signal, so a brine killed alone (not with its process group) takes
 * its steps with it.
 */
export function stepArgv(argv: readonly string[], user: string, envFile?: string): string[] {
  const inner = [...DIES_WITH_PARENT, ...(envFile ? ['/bin/sh', '-c', 'set -a; . "$0"; set +a; exec "$@"', envFile, ...argv] : argv)];
  return user === 'root' ? inner : [...DIES_WITH_PARENT, 'runuser', '-u', user, '--', ...inner];
}

function tail(text: string): string {
  const lines = text.trimEnd().split('\n');
  return (lines.length > TAIL_LINES ? ['…', ...lines.slice(-TAIL_LINES)] : lines).join('\n');
}

/** Runs one command in `cwd`; throws with the end of its output when it fails. */
export async function runStep(argv: readonly string[], cwd: string, sc: StepContext): Promise<void> {
  const started = Date.now();
  const shown = sc.masker.mask(displayCommand(argv));
  await fs.appendFile(sc.logFile, `$ ${shown}    (in ${cwd})\n`, { mode: 0o600 });
  const env = { HOME: sc.as.home, USER: sc.as.name, LOGNAME: sc.as.name, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...sc.env };
  let result;
  try {
    result = await sc.runner.run(stepArgv(argv, sc.as.name, sc.envFile), { cwd, env, allowFailure: true, timeoutMs: sc.timeoutMs });
  } catch (err) {
    await fs.appendFile(sc.logFile, `${(err as Error).message}\n\n`);
    throw err;
  }
  const output = sc.masker.mask(`${result.stdout}${result.stderr ? `${result.stdout && !result.stdout.endsWith('\n') ? '\n' : ''}${result.stderr}` : ''}`);
  await fs.appendFile(sc.logFile, `${output}${output && !output.endsWith('\n') ? '\n' : ''}exit ${result.code} after ${((Date.now() - started) / 1000).toFixed(1)} s\n\n`);
  if (result.code !== 0) {
    const words = result.code === 127 ? ' (command not found)' : result.code === 126 ? ' (not executable)' : '';
    const end = tail(sc.masker.mask(result.stderr.trim() ? result.stderr : result.stdout));
    throw new Error(`\`${shown}\` exited ${result.code}${words}${end ? `:\n${end}` : ''}`);
  }
}
