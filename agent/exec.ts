// The one place brine starts processes. Commands are argv arrays (never a shell string built from
// data); every call has a timeout; what is logged or thrown is masked; a failure becomes a
// readable error that keeps the original as `cause`.
import { execa } from 'execa';
import type { Masker } from './secret.js';

export interface RunOptions {
  cwd?: string;
  /** Added to the environment brine itself runs with. */
  env?: Record<string, string>;
  input?: string;
  /** Milliseconds; default 10 minutes (apt, builds). */
  timeoutMs?: number;
  /** Resolve on a non-zero exit instead of throwing (for commands whose exit code is an answer). */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What modules may do to the system through processes. Tests replace it with a recording fake. */
export interface Runner {
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly code: number | undefined;
  readonly stderr: string;
  constructor(message: string, argv: readonly string[], code: number | undefined, stderr: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'CommandError';
    this.argv = argv;
    this.code = code;
    this.stderr = stderr;
  }
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** `apt-get install -y nginx` — for messages only; never executed. */
export function displayCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

export function createRunner(masker: Masker): Runner {
  return {
    async run(argv, options = {}) {
      const [file, ...args] = argv;
      if (!file) throw new Error('run: empty argv');
      const shown = masker.mask(displayCommand(argv));
      const result = await execa(file, args, {
        cwd: options.cwd,
        env: { LC_ALL: 'C', ...options.env },
        input: options.input,
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        reject: false,
        stripFinalNewline: false,
        stdin: options.input === undefined ? 'ignore' : 'pipe',
      });
      const stdout = String(result.stdout ?? '');
      const stderr = String(result.stderr ?? '');
      if (result.failed && result.exitCode === undefined) {
        // Never ran or was killed: not found, timed out, signal.
        const why = result.timedOut
          ? `timed out after ${Math.round((options.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)}s`
          : (result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
            ? 'command not found'
            : result.signal
              ? `killed by ${result.signal}`
              : masker.mask(result.shortMessage ?? 'failed to start');
        throw new CommandError(`\`${shown}\` ${why}`, argv, undefined, masker.mask(stderr), result.cause);
      }
      const code = result.exitCode ?? 0;
      if (code !== 0 && !options.allowFailure) {
        const detail = lastLines(stderr || stdout, 5);
        throw new CommandError(
          `\`${shown}\` exited ${code}${detail ? `: ${masker.mask(detail)}` : ''}`,
          argv,
          code,
          masker.mask(stderr),
        );
      }
      return { code, stdout, stderr };
    },
  };
}
