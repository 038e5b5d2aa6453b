// Reactions that are owed. When a state changes, every state that watches it (a restart, a
// reload) or runs on its changes (onchanges: a migration) owes a reaction. It is written down at
// once, before the reacting state's turn, and crossed out when the reaction is done. A reaction
// that did not happen — the reacting state failed or was skipped, the run was killed — stays
// written down, and the next run does it even though nothing changed again; `agent status`
// reports it. Without this, the second run said "0 changed, converged" with the new code on disk
// and the old code in memory.
import * as fs from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from './atomic.js';

/** Where the owed reactions are kept; tests point it elsewhere. */
export const reactionPaths = { file: '/var/lib/brine/pending/reactions.json' };

export interface Owed {
  /** What changed that it reacts to. */
  reason: string;
  since: string;
}

export class Reactions {
  readonly #owed: Map<string, Owed>;
  /** A --test run reads what is owed but never writes. */
  readonly #readOnly: boolean;

  private constructor(owed: Map<string, Owed>, readOnly: boolean) {
    this.#owed = owed;
    this.#readOnly = readOnly;
  }

  static async load(readOnly: boolean): Promise<Reactions> {
    let owed = new Map<string, Owed>();
    try {
      owed = new Map(Object.entries(JSON.parse(await fs.readFile(reactionPaths.file, 'utf8')) as Record<string, Owed>));
    } catch {
      // none yet, or unreadable (a torn write is impossible: it is written atomically)
    }
    return new Reactions(owed, readOnly);
  }

  /** An empty set that writes nothing (unit tests, and where there is no disk to keep it on). */
  static none(): Reactions {
    return new Reactions(new Map(), true);
  }

  owed(key: string): Owed | undefined {
    return this.#owed.get(key);
  }

  get all(): [string, Owed][] {
    return [...this.#owed.entries()];
  }

  async owe(keys: string[], reason: string): Promise<void> {
    let changed = false;
    for (const key of keys)
      if (!this.#owed.has(key)) {
        this.#owed.set(key, { reason, since: new Date().toISOString() });
        changed = true;
      }
    if (changed) await this.#save();
  }

  async done(key: string): Promise<void> {
    if (this.#owed.delete(key)) await this.#save();
  }

  /** Forgets what is owed by states that are no longer in the tree. */
  async keepOnly(keys: ReadonlySet<string>): Promise<void> {
    let changed = false;
    for (const key of [...this.#owed.keys()])
      if (!keys.has(key)) {
        this.#owed.delete(key);
        changed = true;
      }
    if (changed) await this.#save();
  }

  async #save(): Promise<void> {
    if (this.#readOnly) return;
    await fs.mkdir(dirname(reactionPaths.file), { recursive: true });
    await writeFileAtomic(reactionPaths.file, `${JSON.stringify(Object.fromEntries(this.#owed), null, 2)}\n`, { mode: 0o600 });
  }
}
