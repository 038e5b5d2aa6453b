// The contract every state function implements (see STYLE.md): `check` reads the system and never
// writes; `plan` is pure and says what would change (empty, with a reason, when nothing would);
// `apply` makes the change. The runner owns test mode and the check-again after apply.
import type { Static, TSchema } from '@sinclair/typebox';
import type { Runner } from '../exec.js';
import type { Masker } from '../secret.js';
import type { Facts } from '../facts.js';
import type { PillarTree } from '../pillar.js';

export interface Change {
  /** What changes: `content`, `mode`, `package nginx`, `key alice@laptop`… */
  what: string;
  old?: unknown;
  new?: unknown;
  /** A unified diff, for file contents (masked before it is shown). */
  diff?: string;
}

export interface Plan {
  changes: Change[];
  /** Why nothing needs doing, shown to the user when `changes` is empty. */
  reason?: string;
}

/** What an apply did, when it says more than its plan did. */
export interface ApplyOutcome {
  restarted?: boolean;
  /** Reported instead of the plan's changes. */
  changes?: Change[];
}

export interface Context {
  runner: Runner;
  facts: Facts;
  masker: Masker;
  /** The states tree, which `source:` paths are relative to. */
  statesDir: string;
  /** Renders a Jinja template file (relative to statesDir) with the run's pillar, env and grains. */
  renderTemplate(path: string, context?: Record<string, unknown>): string;
  /**
   * The merged pillar, secrets still wrapped in `Secret`: for modules that write pillar data
   * themselves (env.file), so a secret is revealed only as it is written.
   */
  pillar: PillarTree;
  /** The environment this run converges (staging, production…). */
  env: string;
  /** Who started the run (the release log records it); 'hand' when not said. */
  startedBy?: 'hand' | 'cron' | 'bootstrap';
}

/** What `prepare` may use: the run's data, nothing that touches the system. */
export type PrepareContext = Pick<Context, 'renderTemplate' | 'pillar' | 'env' | 'masker' | 'statesDir'>;

export interface ArgProblem {
  /** The argument the problem is about. */
  key: string;
  message: string;
}

export interface StateFunction<A = any, C = any> {
  /** JSON schema of the arguments (TypeBox): one source for the TypeScript type and ajv. */
  schema: TSchema;
  /** Checks beyond the schema that need nothing from the system (e.g. two exclusive arguments). */
  validate?(args: A): ArgProblem[];
  /**
   * What the state manages, for the check that no two states manage the same thing: paths as
   * `path:/etc/x` (a file, a directory, a link), or `kind:name` for other things. Pure.
   */
  claims?(args: A): string[];
  /**
   * The arguments that become a process's command line, which any user of the server can read
   * (ps, /proc/PID/cmdline): the engine refuses a secret in them at load time. Pure.
   */
  commandLines?(args: A): { key: string; command: unknown }[];
  /**
   * Checks at load time that need the pillar or the states tree (a template renders, a source
   * file exists), so that such input errors stop the run before anything is applied. Throws
   * InputError.
   */
  prepare?(args: A, ctx: PrepareContext): void;
  /**
   * Starts, without waiting, something slow that `check` will need (the Postgres client process),
   * so it is ready by the time the state's turn comes. Called for every state as the run starts;
   * a failure here is ignored (check will try again and report it).
   */
  warm?(args: A, ctx: Context): Promise<unknown>;
  check(args: A, ctx: Context): Promise<C>;
  plan(current: C, args: A, ctx: Context): Plan;
  /**
   * Makes the change. Returns 'restarted' when the change (re)started or reloaded what `refresh`
   * would (a service started, a program updated), so a `watch` needs no refresh on top; or an
   * ApplyOutcome when what was done is worth more than the plan (a release: which phases ran,
   * how long each took).
   */
  apply(args: A, plan: Plan, current: C, ctx: Context): Promise<void | 'restarted' | ApplyOutcome>;
  /**
   * Applies several states of this function with one action (one `apt-get install` per run).
   * The runner calls it instead of `apply` for states that are ready at the same time.
   */
  applyBatch?(items: { args: A; plan: Plan; current: C }[], ctx: Context): Promise<void>;
  /**
   * An action (cmd.run) plans a change every time it is allowed to run, so the runner must not
   * check again after apply; its success is the command's own.
   */
  action?: boolean;
  /** What `watch` does when a watched state changed (restart, reload). Returns what it did. */
  refresh?(args: A, ctx: Context): Promise<string>;
}

export interface StateModule {
  name: string;
  functions: Record<string, StateFunction>;
}

/** Types a state function by its schema, so `args` is checked against the same schema ajv uses. */
export function stateFunction<S extends TSchema, C>(
  schema: S,
  def: Omit<StateFunction<Static<S>, C>, 'schema'>,
): StateFunction<Static<S>, C> {
  return { schema, ...def };
}
