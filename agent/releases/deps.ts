// The dependency cache: ROOT/deps/<path>-<key>/, one entry per checksum of a release's lock files
// (requirements.txt, package-lock.json…), the interpreter's version and the build commands. An
// entry is built once, where it stays (a virtualenv is not relocatable), then sealed — taken over
// by root (own.ts), not writable by the app — and marked complete; every release with the same key links to
// it (`release/.venv -> ROOT/deps/.venv-3f2a…/.venv`) without installing anything. An entry without
// its marker is what a killed build left: it is removed and built again. Entries no kept release
// links to are removed by cleanup.
//
// The build runs in the entry's directory, holding copies of the lock files, as the app user:
//   python: [python3, -m, venv, .venv], [.venv/bin/pip, install, -r, requirements.txt]
//   node:   [npm, ci, --omit=dev]                  (path: node_modules)
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Account } from '../git/run.js';
import type { Layout } from './layout.js';
import type { Mirror } from './mirror.js';
import { assertNoLinks, removeTree, takeOver } from './own.js';
import { runStep, type StepContext } from './steps.js';

export interface DependencySpec {
  /** Where the release sees it (`.venv`, `node_modules`), and where the build makes it in the entry. */
  path: string;
  /** Lock files, relative to the repository root. */
  files: string[];
  /** A command whose output is part of the key (the interpreter's version). */
  version?: string[];
  build: string[][];
}

export interface DependencyEntry {
  spec: DependencySpec;
  /** deps/NAME */
  name: string;
  dir: string;
  /** Built and sealed already: a release links to it as it is. */
  complete: boolean;
}

export const COMPLETE_MARKER = '.brine-complete';

/** `.venv` → `venv`: entries are not hidden files, and never a `.trash-` name. */
function slug(path: string): string {
  return path.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '') || 'deps';
}

/** The entry a release of `sha` would use: named by what goes into its build. */
export async function dependencyEntry(spec: DependencySpec, l: Layout, mirror: Mirror, sha: string, version: string): Promise<DependencyEntry> {
  const files: [string, string][] = [];
  for (const file of spec.files) {
    const content = await mirror.file(sha, file);
    if (content === null) throw new Error(`dependencies ${spec.path}: ${file} is not in commit ${sha.slice(0, 7)}`);
    files.push([file, createHash('sha256').update(content).digest('hex')]);
  }
  const key = createHash('sha256').update(JSON.stringify({ path: spec.path, files, version, build: spec.build })).digest('hex');
  const name = `${slug(spec.path)}-${key.slice(0, 16)}`;
  const dir = join(l.deps, name);
  return { spec, name, dir, complete: existsSync(join(dir, COMPLETE_MARKER)) };
}

/** Builds the entry if it is not complete; says which. */
export async function ensureEntry(entry: DependencyEntry, mirror: Mirror, sha: string, as: Account, sc: StepContext): Promise<'reused' | 'built'> {
  if (entry.complete && existsSync(join(entry.dir, COMPLETE_MARKER))) return 'reused';
  // What a killed build left (the app user's): taken over before it is removed.
  if (existsSync(entry.dir)) await removeTree(entry.dir, as.uid);
  // The lock files go in while the entry is still root's alone; then it is handed to the app user,
  // innermost first, so nothing is the app's before everything around it is in place.
  await fs.mkdir(entry.dir, { mode: 0o755 });
  const made: string[] = [];
  for (const file of entry.spec.files) {
    const target = join(entry.dir, file);
    for (let d = dirname(target); d !== entry.dir && !made.includes(d); d = dirname(d)) made.push(d);
    await fs.mkdir(dirname(target), { recursive: true, mode: 0o755 });
    await fs.writeFile(target, (await mirror.file(sha, file)) ?? '', { mode: 0o644, flag: 'wx' });
    await fs.chown(target, as.uid, as.gid);
  }
  for (const d of made.sort((a, b) => b.length - a.length)) await fs.chown(d, as.uid, as.gid);
  await fs.chown(entry.dir, as.uid, as.gid);
  for (const step of entry.spec.build) await runStep(step, entry.dir, { ...sc, env: { ...sc.env, BRINE_DEPS_DIR: entry.dir } });
  // Sealed: root's, nobody may write, no set-id bit; links inside are never followed.
  await takeOver(entry.dir, as.uid, { readable: true });
  const result = await fs.lstat(join(entry.dir, entry.spec.path)).catch(() => null);
  if (!result || result.isSymbolicLink()) throw new Error(`dependencies ${entry.spec.path}: the build steps made no ${entry.spec.path} in ${entry.dir}${result ? ' (only a link)' : ''}`);
  await fs.writeFile(join(entry.dir, COMPLETE_MARKER), `${new Date().toISOString()}\n`, { mode: 0o444, flag: 'wx' });
  return 'built';
}

/** `release/PATH -> entry/PATH`, replacing whatever the export put there. */
export async function linkEntry(releaseDir: string, entry: DependencyEntry, as: Account): Promise<void> {
  await assertNoLinks(releaseDir, entry.spec.path, 'dependencies');
  const link = join(releaseDir, entry.spec.path);
  await fs.rm(link, { recursive: true, force: true });
  await fs.mkdir(dirname(link), { recursive: true });
  await fs.symlink(join(entry.dir, entry.spec.path), link);
  await fs.lchown(link, as.uid, as.gid);
}

/** Removes entries none of `used` names (renamed aside first, so a half-removed one is never used). */
export async function removeUnusedEntries(l: Layout, used: ReadonlySet<string>, uid: number): Promise<{ removed: string[]; warnings: string[] }> {
  const removed: string[] = [];
  const warnings: string[] = [];
  const names = await fs.readdir(l.deps).catch(() => [] as string[]);
  for (const name of names) {
    if (used.has(name)) continue;
    const aside = join(l.deps, name.startsWith('.trash-') ? name : `.trash-${name}`);
    try {
      if (aside !== join(l.deps, name)) await fs.rename(join(l.deps, name), aside);
      await removeTree(aside, uid);
      if (!name.startsWith('.trash-')) removed.push(name);
    } catch (err) {
      warnings.push(`could not remove deps/${name}: ${(err as Error).message}`);
    }
  }
  return { removed, warnings };
}

/** The entries the dependency links of a release point at (what it really uses, whatever the log says). */
export async function linkedEntries(l: Layout, releaseDir: string, paths: string[]): Promise<string[]> {
  const names: string[] = [];
  for (const path of paths) {
    const target = await fs.readlink(join(releaseDir, path)).catch(() => null);
    if (target?.startsWith(`${l.deps}/`)) names.push(target.slice(l.deps.length + 1).split('/')[0]!);
  }
  return names;
}
