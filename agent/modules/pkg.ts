// pkg.installed / pkg.latest / pkg.removed — apt packages
//
//   nginx:
//     pkg.installed: []
//   web-packages:
//     pkg.installed:
//       - pkgs: [python3-flask, gunicorn, python3-psycopg2]
//   postgresql:
//     pkg.installed:
//       - version: 15.8-0+deb12u1
//   tools:
//     pkg.installed:
//       - pkgs: [vim, {curl: 7.88.1-10+deb12u8}]   # Salt's form of a pinned package
//       - install_recommends: true                # apt's Recommends too (default: without)
//   git-core:
//     pkg.installed: []                           # a virtual package: installs its provider, git
//   openssl:
//     pkg.latest:
//       - refresh: true
//   apache2:
//     pkg.removed:
//       - purge: true
//
// The installed packages are read once per run with one dpkg-query, and every pkg.installed (and
// pkg.latest) state that is ready at the same time is installed by one `apt-get install`: apt is
// slow to start and holds a lock, so one call per run is what keeps a converge fast.
// `refresh`: true forces `apt-get update`, false never runs it; unset, it runs when the package
// lists are older than an hour — at most once per run either way.
import { readdir } from 'node:fs/promises';
import { Type } from '@sinclair/typebox';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { displayCommand, type RunResult } from '../exec.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

/** Where apt keeps its package lists, and when they count as stale; tests point them elsewhere. */
export const aptCache = { listsDir: '/var/lib/apt/lists', maxAgeMs: 60 * 60 * 1000 };

const PACKAGES_FACT = 'pkg:dpkg';
const UPDATED_FACT = 'pkg:apt-updated';

const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };
// Keep the admin's edited conffiles, never ask; wait for a dpkg lock held by unattended-upgrades
// instead of failing the run.
const APT_OPTIONS = ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-o', 'DPkg::Lock::Timeout=300'];

// No `:arch` qualifier: the dpkg fact is keyed by plain package name.
const PACKAGE_NAME = '^[a-z0-9][a-z0-9+.-]*$';
const PackageName = Type.String({ pattern: PACKAGE_NAME, description: 'a Debian package name' });
const Version = Type.String({ pattern: '^[A-Za-z0-9.+~:-]+$', description: 'an exact Debian version' });

/** Packages a state is about: `pkgs`, or else `name` (which defaults to the state ID, as in Salt). */
function packagesOf(args: { name: string; pkgs?: string[] }): string[] {
  return [...new Set(args.pkgs ?? [args.name])];
}

function validatePackages(args: { name: string; pkgs?: string[] }): ArgProblem[] {
  if (args.pkgs !== undefined) return args.pkgs.length ? [] : [{ key: 'pkgs', message: 'pkgs is empty' }];
  return new RegExp(PACKAGE_NAME).test(args.name)
    ? []
    : [{ key: 'name', message: `"${args.name}" is not a Debian package name (give name: or pkgs:)` }];
}

// ---------------------------------------------------------------------------------------------
// Facts

/** One package as dpkg knows it. `state` is dpkg's: installed, config-files, half-configured… */
export interface DpkgPackage {
  state: string;
  version: string;
}

// dpkg counts these as installed and configured (triggers run at the end of the apt call).
const INSTALLED_STATES = new Set(['installed', 'triggers-pending', 'triggers-awaiting']);

export function parseDpkgQuery(stdout: string): Map<string, DpkgPackage> {
  const packages = new Map<string, DpkgPackage>();
  for (const line of stdout.split('\n')) {
    const [name, status, version = ''] = line.split('\t');
    if (!name || !status) continue;
    const state = status.trim().split(/\s+/).pop() ?? '';
    // A package of several architectures is listed once per architecture: the installed one wins.
    const seen = packages.get(name);
    if (seen && INSTALLED_STATES.has(seen.state)) continue;
    packages.set(name, { state, version });
  }
  return packages;
}

function dpkgPackages(ctx: Context): Promise<Map<string, DpkgPackage>> {
  return ctx.facts.get(PACKAGES_FACT, async () => {
    const result = await ctx.runner.run(['dpkg-query', '-W', '-f', '${Package}\\t${Status}\\t${Version}\\n']);
    return parseDpkgQuery(result.stdout);
  });
}

function installedVersion(pkg: DpkgPackage | undefined): string | null {
  return pkg && INSTALLED_STATES.has(pkg.state) ? pkg.version : null;
}

/** Candidate versions from `apt-cache policy`; a package apt does not know is left out. */
export function parseAptPolicy(stdout: string): Map<string, string | null> {
  const candidates = new Map<string, string | null>();
  let current: string | null = null;
  for (const line of stdout.split('\n')) {
    if (/^\S.*:$/.test(line)) current = line.slice(0, -1);
    else {
      const m = /^\s+Candidate:\s*(\S+)/.exec(line);
      if (m && current !== null) candidates.set(current, m[1] === '(none)' ? null : m[1]!);
    }
  }
  return candidates;
}

async function candidateVersions(packages: string[], ctx: Context): Promise<Map<string, string | null>> {
  if (packages.length === 0) return new Map();
  const result = await ctx.runner.run(['apt-cache', 'policy', ...packages]);
  return parseAptPolicy(result.stdout);
}

async function listsAreStale(): Promise<boolean> {
  let names: string[];
  try {
    names = await fs.readdir(aptCache.listsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  // Indexes may be stored compressed (bookworm: …_Packages.lz4).
  const lists = names.filter((n) => /_Packages(\.\w+)?$/.test(n));
  if (lists.length === 0) return true;
  const mtimes = await Promise.all(lists.map(async (n) => (await fs.stat(join(aptCache.listsDir, n))).mtimeMs));
  return Date.now() - Math.max(...mtimes) > aptCache.maxAgeMs;
}

/** `apt-get update` when asked or when the lists are stale; never twice in a run. */
async function refreshCache(refresh: (boolean | undefined)[], ctx: Context): Promise<void> {
  if (refresh.length > 0 && refresh.every((r) => r === false)) return;
  const force = refresh.some((r) => r === true);
  if (!force && !(await listsAreStale())) return;
  // The fact is the update itself: a second state gets the same promise, and a failed update is
  // not cached, so the next state tries again.
  await ctx.facts.get(UPDATED_FACT, async () => {
    await ctx.runner.run(['apt-get', 'update', '-q'], { env: APT_ENV, timeoutMs: 5 * 60 * 1000 });
    return true;
  });
}

function forgetPackages(ctx: Context): void {
  ctx.facts.forget(PACKAGES_FACT);
}

function tail(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/** What apt could not find, by package name, from apt-get's error lines. */
export function unknownPackages(stderr: string): Map<string, string> {
  const unknown = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^E: Unable to locate package (\S+)/.exec(line)))
      unknown.set(m[1]!, `package ${m[1]} is unknown to apt (check the name, or add the repository that provides it)`);
    else if ((m = /^E: Couldn't find any package by (?:glob|regex) '([^']+)'/.exec(line)))
      unknown.set(m[1]!, `package ${m[1]} is unknown to apt (check the name, or add the repository that provides it)`);
    else if ((m = /^E: Package '([^']+)' has no installation candidate/.exec(line)))
      unknown.set(m[1]!, `package ${m[1]} has no installation candidate (a virtual or obsolete package?)`);
    else if ((m = /^E: Version '([^']+)' for '([^']+)' was not found/.exec(line)))
      unknown.set(m[2]!, `version ${m[1]} of package ${m[2]} is not available (see apt-cache policy ${m[2]})`);
  }
  return unknown;
}

class AptError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// A run killed while dpkg unpacked or configured a package (a reboot, an OOM kill, systemd
// stopping a cron job) leaves dpkg's journal behind, and every later apt call refuses to run
// ("dpkg was interrupted, you must manually run 'dpkg --configure -a'"). brine repairs it instead:
// `dpkg --configure -a`, then `apt-get -f install`, before its next apt call; the first package
// state of the run says so in its changes (and in --test, that it would).

/** Where dpkg keeps its journal of a change in progress; tests point it elsewhere. */
export const dpkgPaths = { updates: '/var/lib/dpkg/updates' };

const HALF_DONE = new Set(['half-installed', 'unpacked', 'half-configured']);

/** dpkg's journal holds a change in progress (what makes apt refuse to run). */
async function dpkgJournal(): Promise<boolean> {
  return (await readdir(dpkgPaths.updates).catch(() => [] as string[])).some((f) => /^\d+$/.test(f));
}

/** What an interrupted dpkg left — its journal, packages it did not finish — or undefined. */
async function dpkgInterrupted(ctx: Context): Promise<string | undefined> {
  const journal = await dpkgJournal();
  const half = [...(await dpkgPackages(ctx)).entries()].filter(([, p]) => HALF_DONE.has(p.state)).map(([name]) => name);
  if (!journal && half.length === 0) return undefined;
  return `dpkg was interrupted${half.length ? ` (${half.slice(0, 5).join(', ')}${half.length > 5 ? ', …' : ''} not fully installed)` : ''}`;
}

/** The runs (their facts) whose repair a state has reported already. */
const reported = new WeakSet<object>();

/** The repair as a change, for the first package state of the run that asks. */
async function repairChange(ctx: Context): Promise<Change | undefined> {
  const why = await dpkgInterrupted(ctx);
  if (!why || reported.has(ctx.facts)) return undefined;
  reported.add(ctx.facts);
  return { what: 'dpkg', old: why, new: 'repaired (dpkg --configure -a, apt-get -f install)' };
}

/**
 * Finishes what an interrupted dpkg left, so that apt runs again. `quick`: only when its journal
 * says so (before each apt call: no process to ask); otherwise also for packages left half done.
 */
async function repairDpkg(ctx: Context, quick = false): Promise<void> {
  if (quick ? !(await dpkgJournal()) : !(await dpkgInterrupted(ctx))) return;
  try {
    // A dpkg the killed run started may live on (apt runs it in a session of its own) and hold the
    // lock until it is done: wait for it as apt does (DPkg::Lock::Timeout), dpkg itself would not.
    const deadline = Date.now() + DPKG_LOCK_WAIT_MS;
    for (;;) {
      const r = await ctx.runner.run(['dpkg', '--configure', '-a', '--force-confdef', '--force-confold'], { env: APT_ENV, timeoutMs: 30 * 60 * 1000, allowFailure: true });
      if (r.code === 0) break;
      if (!/lock was locked by another process|could not get lock/i.test(r.stderr) || Date.now() > deadline)
        throw new Error(ctx.masker.mask(`\`dpkg --configure -a\` exited ${r.code}: ${tail(r.stderr || r.stdout, 5)}`));
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    await ctx.runner.run(['apt-get', '-f', 'install', '-y', '-q', ...APT_OPTIONS], { env: APT_ENV, timeoutMs: 30 * 60 * 1000 });
  } finally {
    forgetPackages(ctx);
  }
}

/** How long the repair waits for a dpkg that holds the lock (as apt's DPkg::Lock::Timeout=300). */
const DPKG_LOCK_WAIT_MS = 300_000;

/** Runs apt-get with the options every change uses; a failure throws with apt's last lines. */
async function aptGet(command: 'install' | 'remove' | 'purge', options: string[], targets: string[], ctx: Context): Promise<void> {
  await repairDpkg(ctx, true);
  const argv = ['apt-get', command, '-y', '-q', ...options, ...APT_OPTIONS, ...targets];
  let result: RunResult;
  try {
    result = await ctx.runner.run(argv, { env: APT_ENV, allowFailure: true, timeoutMs: 30 * 60 * 1000 });
  } finally {
    forgetPackages(ctx);
  }
  if (result.code !== 0) {
    const detail = tail(result.stderr || result.stdout, 5);
    throw new AptError(ctx.masker.mask(`\`${displayCommand(argv)}\` exited ${result.code}${detail ? `:\n${detail}` : ''}`), result.stderr);
  }
}

/** One package to install: `nginx` or `nginx=1.22.1-9`, with its Recommends or not. */
interface InstallTarget {
  name: string;
  version?: string;
  recommends?: boolean;
}

const installArgs = (target: InstallTarget) => (target.version ? `${target.name}=${target.version}` : target.name);

/**
 * Installs the targets of several states with one `apt-get install`. When apt refuses the whole
 * call because some names are unknown, the others are installed with a second call, so one typo
 * does not hold back the rest of the server; the error then names the unknown packages.
 */
async function install(targets: InstallTarget[], refresh: (boolean | undefined)[], ctx: Context): Promise<void> {
  if (targets.length === 0) return;
  await refreshCache(refresh, ctx);
  // With Recommends and without are two calls (most runs have only the one).
  for (const recommends of [false, true]) {
    const group = targets.filter((t) => Boolean(t.recommends) === recommends);
    if (group.length) await installGroup(group, recommends, ctx);
  }
}

async function installGroup(targets: InstallTarget[], recommends: boolean, ctx: Context): Promise<void> {
  const unique = new Map(targets.map((t) => [installArgs(t), t]));
  const pinned = [...unique.values()].some((t) => t.version !== undefined);
  // A pinned version is what the state asks for, even when it is older than the installed one.
  const options = [recommends ? '--install-recommends' : '--no-install-recommends', ...(pinned ? ['--allow-downgrades'] : [])];
  try {
    await aptGet('install', options, [...unique.keys()], ctx);
  } catch (err) {
    const unknown = err instanceof AptError ? unknownPackages(err.stderr) : new Map<string, string>();
    if (unknown.size === 0) throw err;
    const rest = [...unique.entries()].filter(([, t]) => !unknown.has(t.name)).map(([arg]) => arg);
    if (rest.length > 0) await aptGet('install', options, rest, ctx);
    const note = rest.length > 0 ? ` (the other packages were installed: ${rest.join(' ')})` : '';
    throw new Error(`apt-get install failed: ${[...unknown.values()].join('; ')}${note}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// pkg.installed / pkg.latest

const InstalledArgs = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    /** Names, or (as in Salt) `{name: version}` for a package pinned to a version. */
    pkgs: Type.Optional(Type.Array(Type.Union([PackageName, Type.Record(Type.String({ pattern: PACKAGE_NAME }), Version, { minProperties: 1, maxProperties: 1 })]))),
    version: Type.Optional(Version),
    refresh: Type.Optional(Type.Boolean()),
    /** apt's Recommends too (brine's default, and Salt's on servers: without). */
    install_recommends: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

type PkgItem = string | Record<string, string>;

/** `pkgs` as names and the versions some of them are pinned to. */
function pinnedPackages(args: { name: string; pkgs?: PkgItem[]; version?: string }): { names: string[]; versions: Map<string, string> } {
  const versions = new Map<string, string>();
  const names = (args.pkgs ?? [args.name]).map((item) => {
    if (typeof item === 'string') return item;
    const [name, version] = Object.entries(item)[0]!;
    versions.set(name, version);
    return name;
  });
  if (args.version !== undefined) versions.set(args.name, args.version);
  return { names: [...new Set(names)], versions };
}

const LatestArgs = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    pkgs: Type.Optional(Type.Array(PackageName)),
    refresh: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

interface PackageNow {
  name: string;
  /** The virtual package the state named, that this one provides (git-core → git). */
  virtualOf?: string;
  /** The installed version, or null. */
  installed: string | null;
  /** apt's candidate version: null when apt has none, undefined when it was not asked. */
  candidate?: string | null;
}

interface PackagesCurrent {
  packages: PackageNow[];
  /** dpkg was interrupted: this state's run repairs it (the first package state of the run says so). */
  repair?: Change;
}

interface InstallWork {
  changes: Change[];
  targets: InstallTarget[];
}

// Plan and apply both derive what to install from current + args, so apply never depends on
// anything but the plan's contract.
function installedWork(current: PackagesCurrent, args: { name: string; pkgs?: PkgItem[]; version?: string; install_recommends?: boolean }): InstallWork {
  const work: InstallWork = { changes: [], targets: [] };
  const { versions } = pinnedPackages(args);
  const recommends = args.install_recommends === true;
  for (const p of current.packages) {
    const version = versions.get(p.virtualOf ?? p.name);
    const what = `package ${p.name}${p.virtualOf ? ` (for ${p.virtualOf})` : ''}`;
    if (version !== undefined) {
      if (p.installed === version) continue;
      work.changes.push({ what, old: p.installed, new: version });
      work.targets.push({ name: p.name, version, recommends });
    } else if (p.installed === null) {
      work.changes.push({ what, old: null, new: p.candidate ?? 'installed' });
      work.targets.push({ name: p.name, recommends });
    }
  }
  return work;
}

/** The packages that provide a virtual one (`apt-cache showpkg`'s Reverse Provides). */
export function parseReverseProvides(stdout: string): string[] {
  const at = stdout.indexOf('Reverse Provides:');
  if (at < 0) return [];
  return [...new Set(stdout.slice(at + 'Reverse Provides:'.length).split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((n) => n && new RegExp(PACKAGE_NAME).test(n)))];
}

/**
 * A package apt has no candidate for: a virtual one (git-core, provided by git) is its provider;
 * one that nothing provides, or several packages do, fails the state — in --test too, as apply
 * would. Stale package lists are refreshed first (a fresh server has none).
 */
async function resolveMissing(p: PackageNow, dpkg: Map<string, DpkgPackage>, refresh: boolean | undefined, ctx: Context): Promise<PackageNow> {
  const shown = await ctx.runner.run(['apt-cache', 'showpkg', p.name], { allowFailure: true });
  const providers = parseReverseProvides(shown.stdout);
  if (providers.length === 1) {
    const provider = providers[0]!;
    const candidate = (await candidateVersions([provider], ctx)).get(provider) ?? null;
    return { name: provider, virtualOf: p.name, installed: installedVersion(dpkg.get(provider)), candidate };
  }
  if (providers.length > 1) {
    const installedOne = providers.find((name) => installedVersion(dpkg.get(name)) !== null);
    if (installedOne) return { name: installedOne, virtualOf: p.name, installed: installedVersion(dpkg.get(installedOne)) };
    throw new Error(`${p.name} is a virtual package provided by ${providers.join(', ')}: name the one to install`);
  }
  throw new Error(`apt has no package ${p.name}${refresh === false ? ' (refresh: false: the package lists were not updated)' : ' (a typo, or its apt repository is not configured?)'}`);
}

function latestWork(current: PackagesCurrent): InstallWork {
  const work: InstallWork = { changes: [], targets: [] };
  for (const p of current.packages) {
    if (p.installed === null) work.changes.push({ what: `package ${p.name}`, old: null, new: p.candidate ?? 'installed' });
    else if (p.candidate && p.candidate !== p.installed)
      work.changes.push({ what: `package ${p.name}`, old: p.installed, new: p.candidate });
    else continue;
    work.targets.push({ name: p.name });
  }
  return work;
}

function names(current: { packages: { name: string }[] }): string {
  const list = current.packages.map((p) => p.name);
  return `${list.join(', ')} ${list.length > 1 ? 'are' : 'is'}`;
}

const installed = stateFunction(InstalledArgs, {
  validate(args) {
    const { names } = pinnedPackages({ ...args, version: undefined });
    const problems = validatePackages({ name: args.name, pkgs: args.pkgs === undefined ? undefined : names });
    if (args.version !== undefined && args.pkgs !== undefined)
      problems.push({ key: 'version', message: 'version applies to name:; pin packages of pkgs: as - NAME: VERSION' });
    return problems;
  },
  async check(args, ctx): Promise<PackagesCurrent> {
    const dpkg = await dpkgPackages(ctx);
    const { names, versions } = pinnedPackages(args);
    let packages: PackageNow[] = names.map((name) => ({ name, installed: installedVersion(dpkg.get(name)) }));
    // Candidates only for what is missing and not pinned: a converged run does not start apt-cache at all.
    const missing = packages.filter((p) => p.installed === null && !versions.has(p.name));
    let candidates = await candidateVersions(missing.map((p) => p.name), ctx);
    if (missing.some((p) => !candidates.get(p.name))) {
      await refreshCache([args.refresh], ctx);
      candidates = await candidateVersions(missing.map((p) => p.name), ctx);
    }
    for (const p of missing) p.candidate = candidates.get(p.name) ?? null;
    packages = await Promise.all(packages.map((p) => (missing.includes(p) && p.candidate === null ? resolveMissing(p, dpkg, args.refresh, ctx) : p)));
    return { packages, repair: await repairChange(ctx) };
  },
  plan(current, args) {
    const changes = [...(current.repair ? [current.repair] : []), ...installedWork(current, args).changes];
    return changes.length ? { changes } : { changes, reason: `${names(current)} installed${args.version ? ` at ${args.version}` : ''}` };
  },
  async apply(args, _plan, current, ctx) {
    await repairDpkg(ctx);
    await install(installedWork(current, args).targets, [args.refresh], ctx);
  },
  async applyBatch(items, ctx) {
    await repairDpkg(ctx);
    const targets = items.flatMap((i) => installedWork(i.current, i.args).targets);
    await install(targets, items.map((i) => i.args.refresh), ctx);
  },
});

const latest = stateFunction(LatestArgs, {
  validate: validatePackages,
  async check(args, ctx): Promise<PackagesCurrent> {
    // Unlike the other checks this one may run `apt-get update`: with stale lists, "latest" would
    // be judged against old versions and never move.
    await refreshCache([args.refresh], ctx);
    const dpkg = await dpkgPackages(ctx);
    const list = packagesOf(args);
    const candidates = await candidateVersions(list, ctx);
    const packages = list.map((name) => ({ name, installed: installedVersion(dpkg.get(name)), candidate: candidates.get(name) ?? null }));
    return { packages, repair: await repairChange(ctx) };
  },
  plan(current) {
    const changes = [...(current.repair ? [current.repair] : []), ...latestWork(current).changes];
    return changes.length ? { changes } : { changes, reason: `${names(current)} at the latest version` };
  },
  async apply(args, _plan, current, ctx) {
    await repairDpkg(ctx);
    await install(latestWork(current).targets, [args.refresh], ctx);
  },
  async applyBatch(items, ctx) {
    await repairDpkg(ctx);
    await install(items.flatMap((i) => latestWork(i.current).targets), items.map((i) => i.args.refresh), ctx);
  },
});

// ---------------------------------------------------------------------------------------------
// pkg.removed

const RemovedArgs = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    pkgs: Type.Optional(Type.Array(PackageName)),
    /** Also delete the packages' configuration files (`apt-get purge`). */
    purge: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

interface RemovedCurrent {
  packages: { name: string; dpkg: DpkgPackage | null }[];
  repair?: Change;
}

function removedWork(current: RemovedCurrent, args: { purge: boolean }): { changes: Change[]; targets: string[] } {
  const changes: Change[] = [];
  const targets: string[] = [];
  for (const { name, dpkg } of current.packages) {
    if (!dpkg || dpkg.state === 'not-installed') continue;
    if (dpkg.state === 'config-files') {
      // Removed already; only a purge has something left to do.
      if (!args.purge) continue;
      changes.push({ what: `package ${name}`, old: 'config files', new: null });
    } else changes.push({ what: `package ${name}`, old: dpkg.version, new: null });
    targets.push(name);
  }
  return { changes, targets };
}

const removed = stateFunction(RemovedArgs, {
  validate: validatePackages,
  async check(args, ctx): Promise<RemovedCurrent> {
    const dpkg = await dpkgPackages(ctx);
    return { packages: packagesOf(args).map((name) => ({ name, dpkg: dpkg.get(name) ?? null })), repair: await repairChange(ctx) };
  },
  plan(current, args) {
    const changes = [...(current.repair ? [current.repair] : []), ...removedWork(current, args).changes];
    return changes.length ? { changes } : { changes, reason: `${names(current)} ${args.purge ? 'purged' : 'not installed'}` };
  },
  async apply(args, _plan, current, ctx) {
    await repairDpkg(ctx);
    await remove([{ args, current }], ctx);
  },
  async applyBatch(items, ctx) {
    await repairDpkg(ctx);
    await remove(items, ctx);
  },
});

/** One `apt-get remove` for the packages to remove and one `apt-get purge` for those to purge. */
async function remove(items: { args: { purge: boolean }; current: RemovedCurrent }[], ctx: Context): Promise<void> {
  for (const purge of [false, true]) {
    const targets = [...new Set(items.filter((i) => i.args.purge === purge).flatMap((i) => removedWork(i.current, i.args).targets))];
    if (targets.length === 0) continue;
    await aptGet(purge ? 'purge' : 'remove', [], targets, ctx);
  }
}

export const pkgModule: StateModule = {
  name: 'pkg',
  functions: { installed, latest, removed },
};
