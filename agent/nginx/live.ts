// Changing what a running nginx reads, safely: a change reaches nginx only once the whole
// configuration passed `nginx -t` with it. The change is put in place (atomically, the old content
// kept in memory), `nginx -t` reads the whole tree, and if it fails every step is put back and the
// caller fails with nginx's own error lines. nginx reads its configuration only when it (re)loads,
// so the running nginx never saw a refused file. On success a running nginx is reloaded; one that
// is not running is left for a service.running state to start.
import * as fs from 'node:fs/promises';
import { lstatPath, removeDurably, symlinkAtomic, writeFileAtomic } from '../atomic.js';
import type { Context } from '../modules/types.js';

const UNIT = 'nginx.service';
const TEST_TIMEOUT_MS = 60_000;
const ERROR_LINES = 10;

/** What puts `path` back the way it is now: its link, its bytes and owner, or its absence. */
export async function snapshot(path: string): Promise<() => Promise<void>> {
  const entry = await lstatPath(path);
  if (!entry) return () => removeDurably(path);
  if (entry.kind === 'symlink') return () => symlinkAtomic(entry.linkTarget!, path);
  if (entry.kind === 'file') {
    const content = await fs.readFile(path, 'utf8');
    return () => writeFileAtomic(path, content, entry);
  }
  throw new Error(`${path} is a ${entry.kind}; remove it first`);
}

// ---------------------------------------------------------------------------------------------
// nginx itself

/** `nginx -t` over the whole configuration as it is on disk now; its error lines, or null. */
export async function testConfig(ctx: Context): Promise<string | null> {
  const result = await ctx.runner.run(['nginx', '-t'], { allowFailure: true, timeoutMs: TEST_TIMEOUT_MS });
  if (result.code === 0) return null;
  const lines = `${result.stderr}\n${result.stdout}`.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  return lines.slice(-ERROR_LINES).join('\n') || `nginx -t exited ${result.code}`;
}

/** Reloads nginx if it runs; one that does not run reads the configuration when it starts. */
export async function reloadIfRunning(ctx: Context): Promise<boolean> {
  const state = await ctx.runner.run(['systemctl', 'is-active', UNIT], { allowFailure: true });
  if (!['active', 'reloading'].includes(state.stdout.trim())) return false;
  await ctx.runner.run(['systemctl', 'reload', UNIT]);
  return true;
}

/**
 * Makes a change to the files nginx reads, then `nginx -t`: if the whole configuration does not
 * pass, every step is undone (last first) and the state fails with nginx's lines. A running nginx
 * is reloaded only after the test passed; if the reload fails, the steps are undone too. Returns
 * whether nginx was reloaded (false: it does not run).
 */
export async function changeLive(ctx: Context, steps: (() => Promise<() => Promise<void>>)[], refused: string): Promise<boolean> {
  const undo: (() => Promise<void>)[] = [];
  let problem: string | null;
  try {
    for (const step of steps) undo.unshift(await step());
    problem = await testConfig(ctx);
  } catch (err) {
    await runUndo(undo);
    throw err;
  }
  if (problem !== null) {
    const undoError = await runUndo(undo);
    const after = undoError ? `; putting the old files back failed too: ${undoError}` : `; ${refused}`;
    throw new Error(ctx.masker.mask(`nginx -t failed${after}:\n${problem}`));
  }
  try {
    return await reloadIfRunning(ctx);
  } catch (err) {
    // nginx did not take the new files: what is on disk must stay what it runs.
    const undoError = await runUndo(undo);
    const after = undoError ? `; putting the old files back failed too: ${undoError}` : `; ${refused}`;
    throw new Error(ctx.masker.mask(`reloading nginx failed${after}: ${(err as Error).message}`), { cause: err });
  }
}

async function runUndo(undo: (() => Promise<void>)[]): Promise<string | undefined> {
  for (const step of undo) {
    try {
      await step();
    } catch (err) {
      return (err as Error).message;
    }
  }
  return undefined;
}
