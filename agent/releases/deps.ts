// The dependency cache: ROOT/deps/<path>-<key>/, one entry per checksum of a release's lock files
// (requirements.txt, package-lock.json…), the interpreter's version and the build commands. An
// entry is built once, where it stays (a virtualenv is not relocatable), then sealed — owned by
// root, not writable by the app — and marked complete; every release with the same key links to
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
  await fs.rm(entry.dir, { recursive: true, force: true });
  await fs.mkdir(entry.dir, { recursive: true, mode: 0o755 });
  await fs.chown(entry.dir, as.uid, as.gid);
  for (const file of entry.spec.files) {
    const target = join(entry.dir, file);
    await fs.mkdir(dirname(target), { recursive: true });
    await fs.writeFile(target, (await mirror.file(sha, file)) ?? '', { mode: 0o644 });
    await fs.chown(target, as.uid, as.gid);
  }
  for (const step of entry.spec.build) await runStep(step, entry.dir, { ...sc, env: { ...sc.env, BRINE_DEPS_DIR: entry.dir } });
  if (!existsSync(join(entry.dir, entry.spec.path))) throw new Error(`dependencies ${entry.spec.path}: the build steps made no ${entry.spec.path} in ${entry.dir}`);
  await seal(entry.dir);
  await fs.writeFile(join(entry.dir, COMPLETE_MARKER), `${new Date().toISOString()}\n`, { mode: 0o444 });
  return 'built';
}

/** Root owns every file, nobody else may write: later releases share it as it was built. */
async function seal(dir: string): Promise<void> {
  const entries = await fs.readdir(dir, { recursive: true });
  for (const rel of ['', ...entries]) {
    const path = join(dir, rel);
    const st = await fs.lstat(path);
    await fs.lchown(path, 0, 0);
    if (!st.isSymbolicLink() && st.mode & 0o022) await fs.chmod(path, st.mode & 0o7755);
  }
}

/** `release/PATH -> entry/PATH`, replacing whatever the export put there. */
export async function linkEntry(releaseDir: string, entry: DependencyEntry, as: Account): Promise<void> {
  const link = join(releaseDir, entry.spec.path);
  await fs.rm(link, { recursive: true, force: true });
  await fs.mkdir(dirname(link), { recursive: true });
  await fs.symlink(join(entry.dir, entry.spec.path), link);
  await fs.lchown(link, as.uid, as.gid);
}

/** Removes entries none of `used` names (renamed aside first, so a half-removed one is never used). */
export async function removeUnusedEntries(l: Layout, used: ReadonlySet<string>): Promise<{ removed: string[]; warnings: string[] }> {
  const removed: string[] = [];
  const warnings: string[] = [];
  const names = await fs.readdir(l.deps).catch(() => [] as string[]);
  for (const name of names) {
    if (used.has(name)) continue;
    const aside = join(l.deps, name.startsWith('.trash-') ? name : `.trash-${name}`);
    try {
      if (aside !== join(l.deps, name)) await fs.rename(join(l.deps, name), aside);
      await fs.rm(aside, { recursive: true, force: true });
      if (!name.startsWith('.trash-')) removed.push(name);
    } catch (err) {
      warnings.push(`could not remove deps/${name}: ${(err as Error).message}`);
    }
  }
  return { removed, warnings };
}
