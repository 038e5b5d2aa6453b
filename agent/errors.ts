// Errors a user can cause, and the exit codes the CLI turns results into.

/** Exit codes are part of the interface: scripts and cron depend on them. */
export const ExitCode = {
  /** Converged: nothing to change, or every change applied. */
  ok: 0,
  /** Bad command line. */
  usage: 1,
  /** At least one state failed; the others ran. */
  failed: 2,
  /** States or pillar are invalid; nothing was applied. */
  invalid: 3,
  /** Another run held the lock for longer than we were willing to wait; nothing was done. */
  busy: 4,
} as const;

export interface SourcePlace {
  file?: string;
  line?: number;
  /** The state ID, argument or pillar key the problem is about. */
  key?: string;
}

/**
 * A problem in the user's input (states, pillar, templates). It is shown as one line naming the
 * file, line and key — never with a stack trace — and it means nothing was applied.
 */
export class InputError extends Error {
  readonly place: SourcePlace;
  constructor(message: string, place: SourcePlace = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InputError';
    this.place = place;
  }

  /** `states/web.yaml:12: nginx: unknown function pkg.instaled (did you mean pkg.installed?)` */
  format(): string {
    const { file, line, key } = this.place;
    const where = file ? `${file}${line ? `:${line}` : ''}: ` : '';
    // One line whatever the key holds (an ID with a newline in it).
    return `${where}${key ? `${key.replace(/\r/g, '\\r').replace(/\n/g, '\\n')}: ` : ''}${this.message}`;
  }
}

/** Several input errors found in one pass, so the user can fix them all at once. */
export class AggregateInputError extends InputError {
  readonly errors: InputError[];
  constructor(errors: InputError[]) {
    super(errors[0]!.message, errors[0]!.place);
    this.errors = errors;
  }
  override format(): string {
    return this.errors.map((e) => e.format()).join('\n');
  }
}

/** Throws what was collected: nothing, one error, or all of them. */
export function throwCollected(errors: InputError[]): void {
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateInputError(errors);
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof InputError) return err.format();
  if (err instanceof Error) return err.message;
  return String(err);
}
