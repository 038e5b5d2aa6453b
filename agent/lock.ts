// One run at a time. The lock is a file created exclusively, holding the owner's PID, its process
// start time and what it is doing. A lock whose process is gone (or whose PID now belongs to a
// different process) is stale and taken over, so a killed run never blocks the next one.
import { link, open, readFile, rm, mkdir, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface LockOwner {
  pid: number;
  /** Process start time (clock ticks since boot, /proc/PID/stat field 22): tells PID reuse apart. */
  start: string;
  since: string;
  command: string;
}

export class LockBusyError extends Error {
  readonly owner: LockOwner;
  constructor(owner: LockOwner, waitedMs: number) {
    super(`another run holds the lock (pid ${owner.pid}, \`${owner.command}\`, since ${owner.since}); waited ${Math.round(waitedMs / 1000)}s`);
    this.owner = owner;
  }
}

function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function alive(owner: LockOwner): boolean {
  const start = processStart(owner.pid);
  return start !== undefined && start === owner.start;
}

export class Lock {
  readonly #path: string;
  #held = false;

  constructor(path: string) {
    this.#path = path;
  }

  async #tryTake(command: string): Promise<LockOwner | undefined> {
    await mkdir(dirname(this.#path), { recursive: true });
    const me: LockOwner = { pid: process.pid, start: processStart(process.pid) ?? '', since: new Date().toISOString(), command };
    // Written whole under a temp name, then linked into place: the lock file is never empty, so
    // nobody can mistake a lock being taken for one left behind.
    const temp = `${this.#path}.${process.pid}.${Date.now()}`;
    await writeFile(temp, JSON.stringify(me), { mode: 0o644 });
    try {
      await link(temp, this.#path);
      this.#held = true;
      return undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await rm(temp, { force: true });
    }
    let owner: LockOwner;
    try {
      owner = JSON.parse(await readFile(this.#path, 'utf8')) as LockOwner;
    } catch {
      // Unreadable (a torn write from an older agent): stale, unless it is brand new.
      const age = Date.now() - (await stat(this.#path).catch(() => ({ mtimeMs: 0 }))).mtimeMs;
      owner = { pid: 0, start: '', since: 'unknown', command: 'unknown' };
      if (age < 5_000) return owner;
    }
    if (!alive(owner)) {
      // Broken: try again at once. Someone else breaking it: wait like for a live owner.
      if (await this.#breakStale(owner)) return this.#tryTake(command);
    }
    return owner;
  }

  /**
   * Removes a stale lock. Two runs may find the same stale lock at once; the `.break` file makes
   * sure only one removes it, so neither can remove the fresh lock the other just took.
   */
  async #breakStale(stale: LockOwner): Promise<boolean> {
    const breaker = `${this.#path}.break`;
    try {
      await (await open(breaker, 'wx')).close();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Someone else is breaking it; a breaker left by a killed run expires after 10 s.
      const age = Date.now() - (await stat(breaker).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > 10_000) await rm(breaker, { force: true });
      return false;
    }
    try {
      const now = await readFile(this.#path, 'utf8').catch(() => '');
      let same = now === '';
      try {
        const o = JSON.parse(now) as LockOwner;
        same = o.pid === stale.pid && o.start === stale.start;
      } catch {
        same = true;
      }
      if (same) await rm(this.#path, { force: true });
      return true;
    } finally {
      await rm(breaker, { force: true });
    }
  }

  /** Waits up to `waitMs` for the lock; throws LockBusyError naming the holder. */
  async acquire(command: string, waitMs: number): Promise<void> {
    const started = Date.now();
    for (;;) {
      const owner = await this.#tryTake(command);
      if (!owner) return;
      if (Date.now() - started >= waitMs) throw new LockBusyError(owner, Date.now() - started);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    await rm(this.#path, { force: true });
  }
}

/** Who holds the lock at `path` now, if a live process does (for "running" in agent history). */
export function liveHolder(path: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
    return alive(owner) ? owner : undefined;
  } catch {
    return undefined;
  }
}
