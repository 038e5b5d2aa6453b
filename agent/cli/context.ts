// What the CLI's commands share: their parsed options, their I/O, loading the tree for the
// server's environment, and running under the run lock with a run context.
import { createRunner } from '../exec.js';
import { UsageError } from '../errors.js';
import { Facts } from '../facts.js';
import { load, resolveEnv, type Loaded } from '../load.js';
import { Lock } from '../lock.js';
import type { Context } from '../modules/types.js';
import type { RunSummary } from '../report/events.js';

export const DEFAULT_ROOT = '/srv/brine';
export const DEFAULT_LOCK = '/run/brine/agent.lock';

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

export interface Parsed {
  command: string;
  /** Positional arguments after the command (for commands that take them). */
  args: string[];
  root: string;
  env?: string;
  test: boolean;
  json: boolean;
  cron: boolean;
  verbose: boolean;
  only: string[];
  waitMs: number;
  splayMs: number;
  last: number;
  startedBy: RunSummary['startedBy'];
  /** release commands: which app (its state id or root), when there are several */
  app?: string;
  retry: boolean;
  force: boolean;
  /** `--pillar JSON`: merged over the tree's pillar, last, for this run only. */
  pillar?: Record<string, unknown>;
}

export function loadFor(p: Parsed): Loaded {
  const env = resolveEnv(p.root, p.env);
  if (!env) throw new UsageError(`no environment: pass --env ENV, or bootstrap this server (${p.root}/environment is missing)`);
  return load(p.root, env, { pillar: p.pillar });
}

/**
 * Takes the run lock, then reads the tree (states and pillar) for the server's environment and
 * runs `use` with it and a run context (the process runner, facts, masker, pillar): what apply,
 * --test, status and rollback do to the system, they do in here. The tree is read only once the
 * lock is held, so a tree bootstrap.sh swapped in (under the same lock) while this run waited is
 * the one it applies — never one read before.
 */
export async function withRunContext<T>(p: Parsed, io: Io, command: string, use: (loaded: Loaded, ctx: Context) => Promise<T>): Promise<T> {
  const lock = new Lock(io.env.BRINE_LOCK ?? DEFAULT_LOCK);
  await lock.acquire(command, p.waitMs);
  try {
    const loaded = loadFor(p);
    // Said once by hand and by bootstrap (which validates first); a cron run would mail it every time.
    if (!p.cron) for (const w of loaded.warnings) io.stderr(`warning: ${w.format()}\n`);
    const masker = loaded.pillar.masker;
    const ctx: Context = {
      runner: createRunner(masker),
      facts: new Facts(),
      masker,
      statesDir: loaded.statesDir,
      renderTemplate: (path, extra) => loaded.renderer.renderFile(path, extra),
      pillar: loaded.pillar.data,
      env: loaded.env,
      startedBy: p.startedBy,
    };
    try {
      return await use(loaded, ctx);
    } finally {
      await ctx.facts.dispose();
    }
  } finally {
    await lock.release();
  }
}
