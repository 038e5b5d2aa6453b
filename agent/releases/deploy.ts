// The release engine behind release.deployed (modules/release.ts) and `agent rollback`: check
// what is live and what the branch wants, plan a release, make it (fetch → export → shared links
// → dependencies → build → migrate), switch to it (serve.ts), and clean up.
//
// A failing build or migration never touches `current`: the release is marked failed and the
// state fails with the step's last lines; the next run tries again. A release that fails its
// health check was never switched to either: it is marked failed and held back, so the next run
// does not try the same commit again (a new commit, or `agent release --retry`, does). A run
// killed while building leaves a `building` record, marked failed (interrupted) by the next run,
// which builds the release again; one killed after the release was ready switches to it.
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { clearPending, isPending, markPending } from '../atomic.js';
import { errorMessage } from '../errors.js';
import { CommandError } from '../exec.js';
import { account, gitFor, type Account, type GitRunner } from '../git/run.js';
import { describeWanted, resolveRev, type Wanted } from '../git/revs.js';
import { fingerprint, knownHostsFile, knownHostsLines, withKnownHosts, writeKnownHosts, type KnownHostsFile } from '../git/ssh.js';
import type { ApplyOutcome, Change, Context, Plan } from '../modules/types.js';
import { argv, serveArgv, type ReleaseArgs } from './args.js';
import { chooseRemovals, removeReleases } from './cleanup.js';
import { dependencyEntry, ensureEntry, linkEntry, type DependencyEntry } from './deps.js';
import type { HealthSpec } from './health.js';
import { layout, linkedRelease, newReleaseId, pointAt, releaseDir, type Layout } from './layout.js';
import { ReleaseLog, byId, holdOn, previousGood, type Phase, type ReleaseRecord } from './log.js';
import { withAdvisoryLock } from './migrate.js';
import { Mirror } from './mirror.js';
import { assertNoLinks } from './own.js';
import { HealthCheckError, SLOTS, readServing, servingProblems, slotPath, switchTo, type ServeSpec, type ServingState, type SwitchReport } from './serve.js';
import { runStep, stepArgv, type StepContext } from './steps.js';

// ---------------------------------------------------------------------------------------------
// The arguments, as the parts below want them

export function serveSpec(args: ReleaseArgs): ServeSpec | null {
  if (!args.serve) return null;
  const s = args.serve;
  return {
    program: s.program ?? args.name.split('/').pop()!,
    command: serveArgv(s.command),
    binds: [s.binds[0]!, s.binds[1]!],
    upstream: s.upstream,
    user: args.user,
    envFile: args.env_file,
    environment: s.environment,
    stopsignal: s.stopsignal,
    stopwaitsecs: s.stopwaitsecs,
  };
}

export function healthSpec(args: ReleaseArgs): HealthSpec {
  const h = args.health!;
  return { path: h.path, timeout: h.timeout, revision: h.revision, host: h.host };
}

const short = (sha: string) => sha.slice(0, 7);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function restartMarker(l: Layout): string {
  return `release-restart${l.root.replace(/[^A-Za-z0-9._-]+/g, '-')}`;
}

// ---------------------------------------------------------------------------------------------
// check

export interface ReleaseCurrent {
  layout: Layout;
  records: ReleaseRecord[];
  /** The release `current` points at. */
  currentId: string | null;
  /** Its commit (from the log, or its REVISION file when the log does not know it). */
  currentSha: string | null;
  knownHosts: KnownHostsFile | null;
  wanted: Wanted;
  serving: ServingState | null;
  /** A restart a watch asked for that did not happen (the marker is still there). */
  restartPending: boolean;
  /** The env file changed after the live app started. */
  envChanged?: boolean;
  /** What making the release would involve, when the mirror already has the commit. */
  preview?: { deps: (DependencyEntry | null)[]; migrate: 'run' | 'skip' | 'unknown' | 'none' };
}

async function versionOf(command: string | string[] | undefined, ctx: Context): Promise<string> {
  if (command === undefined) return '';
  const r = await ctx.runner.run(argv(command), { allowFailure: true, timeoutMs: 60_000 });
  return `${r.code}:${r.stdout}${r.stderr}`.trim();
}

async function asOrRoot(args: ReleaseArgs): Promise<{ as: Account | undefined; runAs: Account }> {
  const as = await account(args.user);
  return { as, runAs: as ?? (await account('root'))! };
}

function gitOf(args: ReleaseArgs, l: Layout, as: Account, knownHostsPath: string | undefined, ctx: Context): GitRunner {
  return gitFor({ name: args.repo, target: l.repo, identity: args.identity }, as, knownHostsPath, ctx);
}

export async function checkRelease(args: ReleaseArgs, ctx: Context): Promise<ReleaseCurrent> {
  const l = layout(args.name);
  const records = await new ReleaseLog(l.log).read();
  const currentId = await linkedRelease(l, l.current);
  const currentSha =
    byId(records, currentId)?.sha ?? (currentId ? ((await fs.readFile(join(releaseDir(l, currentId), 'REVISION'), 'utf8').catch(() => '')).trim() || null) : null);
  const knownHosts = await knownHostsFile({ target: l.repo, known_hosts: args.known_hosts });
  const { runAs } = await asOrRoot(args);
  const mirrorDir = existsSync(join(l.repo, 'HEAD')) ? l.repo : null;
  // Asked once per run: the check after apply compares with the commit the run deployed, not with
  // one pushed a moment later (the next run deploys that).
  const wanted = await ctx.facts.get(wantedFact(l), () =>
    withKnownHosts(knownHosts, (file) => resolveRev({ name: args.repo, rev: args.rev, identity: args.identity }, gitOf(args, l, runAs, file, ctx), mirrorDir)),
  );
  const spec = serveSpec(args);
  const serving = spec ? await readServing(spec, l) : null;
  const current: ReleaseCurrent = {
    layout: l,
    records,
    currentId,
    currentSha,
    knownHosts,
    wanted,
    serving,
    restartPending: await isPending(restartMarker(l)),
    envChanged: await envNewerThanApp(args, serving),
  };
  const sha = wanted.kind === 'unresolved' ? null : wanted.sha;
  if (sha && sha !== currentSha && mirrorDir && !holdOn(records, sha)) current.preview = await preview(args, l, runAs, sha, current, ctx);
  return current;
}

function wantedFact(l: Layout): string {
  return `release:wanted:${l.root}`;
}

/**
 * The env file changed after the live slot started (a restart a watch should have made did not
 * happen: the run that changed the file failed, or someone edited it): the app must be restarted.
 */
async function envNewerThanApp(args: ReleaseArgs, serving: ServingState | null): Promise<boolean> {
  if (!args.env_file || !serving?.live) return false;
  const started = serving.slots[serving.live].started;
  const st = await fs.stat(args.env_file).catch(() => null);
  return started !== undefined && st !== null && Math.floor(st.mtimeMs / 1000) > started;
}

/** For --test: which dependency entries a release of `sha` would reuse, and whether it would migrate. */
async function preview(args: ReleaseArgs, l: Layout, as: Account, sha: string, current: ReleaseCurrent, ctx: Context): Promise<ReleaseCurrent['preview']> {
  const mirror = new Mirror(l.repo, gitOf(args, l, as, undefined, ctx));
  if (!(await mirror.commit(sha))) return { deps: args.dependencies.map(() => null), migrate: args.migrate ? 'unknown' : 'none' };
  const deps: (DependencyEntry | null)[] = [];
  for (const spec of args.dependencies) {
    try {
      deps.push(await dependencyEntry({ ...spec, version: spec.version === undefined ? undefined : argv(spec.version), build: spec.build.map(argv) }, l, mirror, sha, await versionOf(spec.version, ctx)));
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      deps.push(null); // the interpreter is not installed yet
    }
  }
  let migrate: 'run' | 'skip' | 'unknown' | 'none' = 'none';
  if (args.migrate) {
    const was = byId(current.records, current.currentId)?.migrations?.checksum;
    migrate = args.migrate.files && was !== undefined && was === (await mirror.checksum(sha, args.migrate.files)) ? 'skip' : 'run';
  }
  return { deps, migrate };
}

// ---------------------------------------------------------------------------------------------
// plan

function phasesPreview(args: ReleaseArgs, current: ReleaseCurrent): string[] {
  const p = current.preview;
  const phases = [`fetch ${args.repo}`, 'export'];
  args.dependencies.forEach((d, i) => {
    const e = p?.deps[i];
    phases.push(`dependencies ${d.path}: ${e ? (e.complete ? `reuse deps/${e.name}` : `build deps/${e.name} (${d.files.join(', ')} not built before)`) : 'reuse or build: known once fetched'}`);
  });
  if (args.build.length) phases.push(`build: ${args.build.length} step${args.build.length > 1 ? 's' : ''}`);
  if (args.migrate) phases.push(`migrate: ${p?.migrate === 'skip' ? `skip (${args.migrate.files!.join(', ')} unchanged)` : p?.migrate === 'run' ? 'run' : 'run unless the migration files are unchanged: known once fetched'}`);
  const live = current.serving?.live;
  phases.push(args.serve ? `switch: start ${live === 'blue' ? 'green' : 'blue'}, check GET ${args.health!.path}, then nginx → it${live ? `, stop ${live}` : ''}` : 'switch current');
  return phases;
}

export function planRelease(current: ReleaseCurrent, args: ReleaseArgs): Plan {
  const changes: Change[] = [];
  const kh = current.knownHosts;
  if (kh && kh.old !== kh.new)
    changes.push({ what: 'known_hosts', old: kh.old === null ? null : knownHostsLines(kh.old).map(fingerprint), new: knownHostsLines(kh.new).map(fingerprint) });
  const w = current.wanted;
  const live = current.currentId ? `${current.currentId}${current.currentSha ? ` (${short(current.currentSha)})` : ''}` : null;
  let reason: string | undefined;
  const sha = w.kind === 'unresolved' ? null : w.sha;
  if (sha === null || sha !== current.currentSha) {
    const hold = sha ? holdOn(current.records, sha) : undefined;
    if (hold) {
      const why = hold.status === 'rolled-back' ? 'was rolled back from' : `failed its ${hold.failure?.phase === 'health' ? 'health check' : hold.failure?.phase ?? 'switch'}`;
      reason = `held back: ${describeWanted(w)} is ${short(hold.sha)}, whose release ${hold.id} ${why}; ${live ?? 'nothing'} stays live until a new commit or \`agent release --retry\``;
    } else {
      const wantedShown = w.kind === 'unresolved' ? `${w.rev} (${w.why})` : `${sha ? short(sha) : describeWanted(w)} (${describeWanted(w)})`;
      changes.push({ what: 'release', old: live, new: wantedShown });
      changes.push({ what: 'phases', old: null, new: phasesPreview(args, current) });
    }
  }
  const deploying = changes.some((c) => c.what === 'release');
  // A run killed between the switch and its log entry: current is live, the log does not say so.
  const liveRecord = byId(current.records, current.currentId);
  if (!deploying && current.currentId && liveRecord?.status !== 'active')
    changes.push({ what: 'release log', old: `${current.currentId} is ${liveRecord ? liveRecord.status : 'not in it'}`, new: `${current.currentId} is active` });
  if (!deploying && current.serving) {
    const spec = serveSpec(args)!;
    const problems = servingProblems(current.serving, spec, current.layout, current.currentId);
    if (problems.length) changes.push({ what: 'serving', old: problems, new: `${current.currentId} live in one slot, the other stopped` });
    else if ((current.restartPending || current.envChanged) && current.currentId)
      changes.push({
        what: 'restart',
        old: current.envChanged ? 'the env file changed since the app started' : 'pending: a restart a watched state asked for did not happen',
        new: `${current.currentId} restarted in the other slot`,
      });
  }
  if (changes.length === 0) reason ??= `${live} is live (${describeWanted(w)})`;
  return { changes, reason };
}

// ---------------------------------------------------------------------------------------------
// apply

interface Run {
  args: ReleaseArgs;
  l: Layout;
  log: ReleaseLog;
  as: Account;
  mirror: Mirror;
  ctx: Context;
  /** What the run did, for the report. */
  done: string[];
  warnings: string[];
}

/**
 * The root and brine's directories in it. releases/, deps/ and slots/ are root's (the app user must
 * not be able to swap them); so should the root be, or the app user could rename them: said as a
 * warning, since the states own the root's owner.
 */
async function ensureLayout(l: Layout, as: Account): Promise<string[]> {
  const warnings: string[] = [];
  const root = await fs.lstat(l.root).catch(() => null);
  if (!root) await fs.mkdir(l.root, { recursive: true, mode: 0o750 }).then(() => fs.chown(l.root, 0, as.gid));
  else if (root.isSymbolicLink() || !root.isDirectory()) throw new Error(`${l.root} is not a directory`);
  else if (root.uid !== 0 || root.mode & 0o022)
    warnings.push(`${l.root} can be changed by ${root.uid === as.uid ? as.name : `uid ${root.uid}`}, who could then swap brine's releases, deps and log: make it root's (file.directory user: root, group: ${as.name}, mode: '0750')`);
  for (const dir of [l.releases, l.deps, l.slots]) {
    const st = await fs.lstat(dir).catch(() => null);
    if (!st) await fs.mkdir(dir, { mode: 0o755 });
    else if (st.isSymbolicLink() || !st.isDirectory()) throw new Error(`${dir} is ${st.isSymbolicLink() ? 'a link' : 'not a directory'}: brine keeps its ${dir.split('/').pop()} there, as a directory of its own; move it away`);
    else if (st.uid !== 0 || st.mode & 0o022) {
      await fs.chown(dir, 0, 0);
      await fs.chmod(dir, 0o755);
    }
  }
  if (!existsSync(l.shared)) {
    await fs.mkdir(l.shared, { mode: 0o750 });
    await fs.chown(l.shared, as.uid, as.gid);
  }
  return warnings;
}

async function linkShared(run: Run, dir: string): Promise<void> {
  for (const entry of run.args.shared) {
    const rel = entry.replace(/\/+$/, '');
    const isDir = entry.endsWith('/');
    const source = join(run.l.shared, rel);
    const st = await fs.stat(source).catch(() => null);
    if (isDir && !st) {
      await fs.mkdir(source, { recursive: true, mode: 0o750 });
      await fs.chown(source, run.as.uid, run.as.gid);
    } else if (!st) throw new Error(`shared/${rel} does not exist: the release links it, so a state that makes it (env.file for shared/.env) must come first (require it)`);
    else if (isDir !== st.isDirectory()) throw new Error(`shared/${rel} is ${st.isDirectory() ? 'a directory' : 'a file'}; shared lists it as ${isDir ? 'a directory (trailing /)' : 'a file'}`);
    await assertNoLinks(dir, rel, 'shared');
    const link = join(dir, rel);
    await fs.rm(link, { recursive: true, force: true });
    await fs.mkdir(dirname(link), { recursive: true });
    await fs.symlink(source, link);
    await fs.lchown(link, run.as.uid, run.as.gid);
  }
}

function stepContext(run: Run, id: string, sha: string, dir: string): StepContext {
  return {
    runner: run.ctx.runner,
    masker: run.ctx.masker,
    as: run.as,
    envFile: run.args.env_file,
    env: { ...run.args.env, BRINE_RELEASE: id, BRINE_REVISION: sha, BRINE_RELEASE_DIR: dir },
    logFile: join(run.l.releases, `${id}.log`),
    timeoutMs: run.args.step_timeout * 1000,
  };
}

/** Makes release `sha` up to ready: export, shared links, dependencies, build steps, migrations. */
async function build(run: Run, sha: string, subject: string, fetchMs: number, activeRecord: ReleaseRecord | undefined): Promise<ReleaseRecord> {
  const { args, l, log, as, mirror, ctx } = run;
  const taken = new Set([...(await log.read()).map((r) => r.id), ...(await fs.readdir(l.releases))]);
  const id = newReleaseId(sha, new Date(), taken);
  const dir = releaseDir(l, id);
  const now = new Date().toISOString();
  let rec = await log.put({ id, sha, subject, status: 'building', startedBy: ctx.startedBy ?? 'hand', createdAt: now, updatedAt: now, phases: { fetch: fetchMs } });
  const sc = stepContext(run, id, sha, dir);
  let phase: Phase = 'export';
  let t = Date.now();
  const finish = async (p: Phase, extra: Partial<ReleaseRecord> = {}) => {
    rec = await log.put({ ...rec, ...extra, phases: { ...rec.phases, [p]: Date.now() - t } });
    t = Date.now();
  };
  try {
    const temp = join(l.releases, `.${id}.tmp`);
    await fs.rm(temp, { recursive: true, force: true });
    await fs.mkdir(temp, { mode: 0o755 });
    await fs.chown(temp, as.uid, as.gid);
    await mirror.export(sha, temp, async (tarball, into) => void (await ctx.runner.run(stepArgv(['tar', '-x', '-f', tarball, '-C', into], as.name))));
    // The repository may hold its own REVISION, even a link: replaced, never written through.
    await fs.rm(join(temp, 'REVISION'), { recursive: true, force: true });
    await fs.writeFile(join(temp, 'REVISION'), `${sha}\n`, { flag: 'wx', mode: 0o644 });
    await fs.lchown(join(temp, 'REVISION'), as.uid, as.gid);
    await fs.rename(temp, dir);
    await linkShared(run, dir);
    await finish('export');

    phase = 'dependencies';
    const names: string[] = [];
    for (const spec of args.dependencies) {
      const entry = await dependencyEntry({ ...spec, version: spec.version === undefined ? undefined : argv(spec.version), build: spec.build.map(argv) }, l, mirror, sha, await versionOf(spec.version, ctx));
      const t0 = Date.now();
      const how = await ensureEntry(entry, mirror, sha, as, sc);
      await linkEntry(dir, entry, as);
      names.push(entry.name);
      run.done.push(`dependencies ${spec.path}: ${how === 'reused' ? `reused deps/${entry.name}` : `built deps/${entry.name} in ${seconds(Date.now() - t0)}`}`);
    }
    await finish('dependencies', { deps: names });

    phase = 'build';
    for (const step of args.build) await runStep(argv(step), dir, sc);
    if (args.build.length) run.done.push(`build: ${args.build.length} step${args.build.length > 1 ? 's' : ''} in ${seconds(Date.now() - t)}`);
    await finish('build');

    phase = 'migrate';
    let migrations: ReleaseRecord['migrations'] = { outcome: 'none' };
    if (args.migrate) {
      const m = args.migrate;
      const checksum = m.files ? await mirror.checksum(sha, m.files) : undefined;
      const was = activeRecord?.migrations?.checksum;
      if (checksum !== undefined && was === checksum) {
        migrations = { outcome: 'skipped', checksum, detail: `${m.files!.join(', ')} unchanged since ${activeRecord!.id}` };
      } else {
        const migrate = () => runStep(argv(m.command), dir, sc);
        if (m.lock) await withAdvisoryLock({ url: m.lock, name: serveSpec(args)?.program ?? args.name, waitMs: m.lock_timeout * 1000, masker: ctx.masker, onWait: () => run.done.push('migrate: waited for another server') }, migrate);
        else await migrate();
        migrations = { outcome: 'ran', checksum };
      }
      run.done.push(migrations.outcome === 'ran' ? `migrate: ran in ${seconds(Date.now() - t)}` : `migrate: skipped (${migrations.detail})`);
    }
    await finish('migrate', { migrations, status: 'ready' });
    return rec;
  } catch (err) {
    const message = ctx.masker.mask(errorMessage(err));
    await log.put({ ...rec, status: 'failed', failure: { phase, message, at: new Date().toISOString() } });
    const printed = existsSync(sc.logFile) ? `\n(everything it printed: ${sc.logFile})` : '';
    throw new Error(`release ${id} (${short(sha)}) failed at ${phase}; ${activeRecord ? `${activeRecord.id} stays live` : 'no release is live yet'}:\n${message}${printed}`);
  }
}

/**
 * Makes `rec` the live release: the switch, then the log (the one that was live goes back to
 * ready, or to rolled-back when `rollingBack`).
 */
async function activate(run: Run, rec: ReleaseRecord, how: { rollingBack?: boolean } = {}): Promise<SwitchReport | null> {
  const { args, l, log, ctx } = run;
  const spec = serveSpec(args);
  const t = Date.now();
  let report: SwitchReport | null = null;
  try {
    if (spec) report = await switchTo(rec, spec, healthSpec(args), l, ctx);
    else await pointAt(l, l.current, rec.id);
  } catch (err) {
    const health = err instanceof HealthCheckError;
    const message = ctx.masker.mask(errorMessage(err));
    // A new release failed; a restart of the live one (a watched env file, a repair) that fails
    // leaves it live and good: its record stays as it is.
    if (!how.rollingBack && rec.status !== 'active')
      await log.put({ ...rec, status: 'failed', held: health || undefined, failure: { phase: health ? 'health' : 'switch', message, at: new Date().toISOString() } });
    throw err;
  }
  await markLive(run, rec, { ...how, switchMs: Date.now() - t });
  return report;
}

/** The log after `rec` became live: it is active, the one that was goes back to ready (or rolled-back). */
async function markLive(run: Run, rec: ReleaseRecord, how: { rollingBack?: boolean; switchMs?: number } = {}): Promise<void> {
  const at = new Date().toISOString();
  for (const other of (await run.log.read()).filter((r) => r.status === 'active' && r.id !== rec.id))
    await run.log.put(how.rollingBack ? { ...other, status: 'rolled-back', held: true, rolledBack: { at, to: rec.id, startedBy: run.ctx.startedBy ?? 'hand' } } : { ...other, status: 'ready' });
  await run.log.put({ ...rec, status: 'active', activatedAt: rec.activatedAt && rec.status === 'active' ? rec.activatedAt : at, held: undefined, failure: undefined, phases: { ...rec.phases, ...(how.switchMs !== undefined ? { switch: how.switchMs } : {}) } });
}

function describeSwitch(rec: ReleaseRecord, report: SwitchReport | null, from: string | null): string {
  if (!report) return `switch: current → ${rec.id} (was ${from ?? 'nothing'})`;
  const steps = Object.entries(report.steps).map(([k, ms]) => `${k} ${seconds(ms)}`).join(', ');
  return `switch: ${report.from ?? 'none'} → ${report.to} running ${rec.id} in ${seconds(report.ms)} (${steps})`;
}

async function cleanup(run: Run): Promise<void> {
  const { l, log, args } = run;
  let records = await log.read();
  const currentId = await linkedRelease(l, l.current);
  const protect = new Set<string>();
  if (currentId) protect.add(currentId);
  const previous = previousGood(present(l, records), currentId);
  if (previous) protect.add(previous.id);
  for (const slot of SLOTS) {
    const id = await linkedRelease(l, slotPath(l, slot)).catch(() => null);
    if (id) protect.add(id);
  }
  const ids = chooseRemovals(records, { keep: args.keep, keepFailed: args.keep_failed, protect });
  // The log says so first: a run killed while deleting leaves directories the next cleanup sweeps,
  // never a record of a release that is gone.
  for (const r of records.filter((rec) => ids.includes(rec.id))) await log.put({ ...r, removed: true });
  const report = await removeReleases(l, ids, await log.read(), run.as.uid, args.dependencies.map((d) => d.path));
  records = await log.read();
  const failed = new Set(ids.filter((id) => !report.removed.includes(id)));
  await log.compact(records.map((r) => (failed.has(r.id) ? { ...r, removed: undefined } : r)));
  if (report.removed.length || report.removedDeps.length)
    run.done.push(`cleanup: removed ${[report.removed.length && `${report.removed.length} release${report.removed.length > 1 ? 's' : ''}`, report.removedDeps.length && `${report.removedDeps.length} dependency entr${report.removedDeps.length > 1 ? 'ies' : 'y'}`].filter(Boolean).join(' and ')}`);
  run.warnings.push(...report.warnings);
}

/** The records whose release directory is still there. */
function present(l: Layout, records: ReleaseRecord[]): ReleaseRecord[] {
  return records.filter((r) => !r.removed && existsSync(releaseDir(l, r.id)));
}

async function startRun(args: ReleaseArgs, ctx: Context, knownHosts: KnownHostsFile | null): Promise<Run> {
  const as = await account(args.user);
  if (!as) throw new Error(`user ${args.user} does not exist`);
  const l = layout(args.name);
  if (args.identity && !existsSync(args.identity))
    throw new Error(`the identity ${args.identity} does not exist (manage it with a file.managed state that this one requires)`);
  if (knownHosts) await writeKnownHosts(knownHosts);
  const warnings = await ensureLayout(l, as);
  const mirror = new Mirror(l.repo, gitOf(args, l, as, knownHosts?.path, ctx));
  return { args, l, log: new ReleaseLog(l.log), as, mirror, ctx, done: [], warnings };
}

/** Marks the releases a killed run was building as failed (interrupted): the next one is built anew. */
async function markInterrupted(run: Run): Promise<void> {
  for (const r of (await run.log.read()).filter((rec) => rec.status === 'building'))
    await run.log.put({ ...r, status: 'failed', failure: { phase: 'interrupted', message: 'the run making it was killed before it was ready', at: new Date().toISOString() } });
}

export async function applyRelease(args: ReleaseArgs, plan: Plan, current: ReleaseCurrent, ctx: Context): Promise<ApplyOutcome> {
  const run = await startRun(args, ctx, current.knownHosts);
  const changes: Change[] = plan.changes.filter((c) => c.what === 'known_hosts');
  await markInterrupted(run);
  let restarted = false;
  try {
    if (plan.changes.some((c) => c.what === 'release')) {
      const t = Date.now();
      await run.mirror.ensure(args.repo, run.as);
      // git's lock files a killed fetch left (only one run at a time: none is in use).
      if (run.mirror.exists) await ctx.runner.run(stepArgv(['find', run.l.repo, '-name', '*.lock', '-type', 'f', '-delete'], run.as.name), { allowFailure: true, timeoutMs: 60_000 });
      await run.mirror.fetch();
      // The branch may have moved since the check: the commit fetched is the one deployed.
      const wanted = current.wanted.kind === 'unresolved' ? await resolveRev({ name: args.repo, rev: args.rev, identity: args.identity }, gitOf(args, run.l, run.as, current.knownHosts?.path, ctx), run.l.repo) : current.wanted;
      const sha = await run.mirror.resolve(wanted);
      const fetchMs = Date.now() - t;
      ctx.facts.forget(wantedFact(run.l));
      void ctx.facts.get(wantedFact(run.l), async (): Promise<Wanted> => (wanted.kind === 'branch' || wanted.kind === 'tag' ? { ...wanted, sha } : { kind: 'commit', rev: sha, sha }));
      const records = await run.log.read();
      const active = byId(records, current.currentId);
      if (sha !== current.currentSha && !holdOn(records, sha)) {
        // Built before and still there (a run killed before its switch, a revert to a kept commit,
        // a held-back one retried): switched to again, not rebuilt.
        const built = (r: ReleaseRecord) => r.status === 'ready' || r.status === 'rolled-back' || (r.status === 'failed' && (r.failure?.phase === 'health' || r.failure?.phase === 'switch'));
        const kept = records.filter((r) => r.sha === sha && built(r) && !r.removed && existsSync(releaseDir(run.l, r.id))).at(-1);
        const rec = kept ?? (await build(run, sha, await run.mirror.subject(sha), fetchMs, active));
        run.done.unshift(`fetch: ${short(sha)} in ${seconds(fetchMs)}`, ...(kept ? [`reused ${kept.id}, built before`] : []));
        const report = await activate(run, rec);
        run.done.push(describeSwitch(rec, report, current.currentId));
        changes.push({ what: 'release', old: current.currentId, new: `${rec.id} (${short(sha)}: ${rec.subject})` });
        restarted = true;
      }
    } else if (plan.changes.some((c) => c.what === 'serving' || c.what === 'restart')) {
      const rec = await liveRecord(run, current);
      const report = await activate(run, rec);
      run.done.push(describeSwitch(rec, report, current.currentId));
      changes.push(...plan.changes.filter((c) => c.what === 'serving' || c.what === 'restart' || c.what === 'release log'));
      restarted = true;
    } else if (plan.changes.some((c) => c.what === 'release log')) {
      await markLive(run, await liveRecord(run, current));
      changes.push(...plan.changes.filter((c) => c.what === 'release log'));
    }
    if (restarted) await clearPending(restartMarker(run.l));
  } finally {
    await cleanup(run).catch((err: Error) => run.warnings.push(`cleanup: ${err.message}`));
  }
  if (run.done.length) changes.push({ what: 'phases', old: null, new: run.done });
  for (const w of run.warnings) changes.push({ what: 'warning', old: null, new: w });
  return { restarted, changes };
}

/** The record of the release `current` points at (made up from its REVISION when the log lost it). */
async function liveRecord(run: Run, current: ReleaseCurrent): Promise<ReleaseRecord> {
  if (!current.currentId || !current.currentSha) throw new Error(`no release is live in ${run.l.root} yet`);
  const known = byId(await run.log.read(), current.currentId);
  if (known) return known;
  const now = new Date().toISOString();
  return run.log.put({ id: current.currentId, sha: current.currentSha, subject: '(not in the release log)', status: 'ready', startedBy: 'unknown', createdAt: now, updatedAt: now, phases: {} });
}

/** `watch`: the live release restarted in the other slot (the env file changed), without a dropped request. */
export async function restartRelease(args: ReleaseArgs, ctx: Context): Promise<string> {
  if (!args.serve) return 'not restarted (release.deployed without serve: nothing of its own runs)';
  // Marked before anything can fail: a restart that did not happen is done by the next run.
  await markPending(restartMarker(layout(args.name)));
  const current = await checkRelease(args, ctx);
  if (!current.currentId) {
    await clearPending(restartMarker(layout(args.name)));
    return 'not restarted (no release is live yet)';
  }
  const run = await startRun(args, ctx, current.knownHosts);
  const rec = await liveRecord(run, current);
  const report = await activate(run, rec);
  await clearPending(restartMarker(run.l));
  return `restarted ${rec.id} in ${report?.to} (${seconds(report?.ms ?? 0)})`;
}

// ---------------------------------------------------------------------------------------------
// rollback, and what `agent releases` shows

export interface RollbackResult {
  from: ReleaseRecord | undefined;
  to: ReleaseRecord;
  report: SwitchReport | null;
  ms: number;
}

/** Goes back to `to` (default: the last good release before the live one), with no rebuild. */
export async function rollback(args: ReleaseArgs, ctx: Context, options: { to?: string; force?: boolean }): Promise<RollbackResult> {
  const t = Date.now();
  const l = layout(args.name);
  const knownHosts = await knownHostsFile({ target: l.repo, known_hosts: args.known_hosts });
  const run = await startRun(args, ctx, knownHosts);
  const records = await run.log.read();
  const currentId = await linkedRelease(l, l.current);
  const from = byId(records, currentId);
  let to: ReleaseRecord | undefined;
  if (options.to) {
    const matches = records.filter((r) => !r.removed && (r.id === options.to || r.id.startsWith(options.to!)));
    to = matches.find((r) => r.id === options.to) ?? (matches.length === 1 ? matches[0] : undefined);
    if (!to && matches.length > 1) throw new Error(`${options.to} is more than one release (${matches.map((r) => r.id).join(', ')}): say which`);
    if (!to) throw new Error(`no release ${options.to} in ${l.root} (agent releases lists them)`);
    if (to.removed || !existsSync(releaseDir(l, to.id))) throw new Error(`release ${to.id} was removed by cleanup; only kept releases can be rolled back to`);
    if (to.id === currentId) throw new Error(`release ${to.id} is already live`);
    if ((to.status === 'failed' || to.status === 'building') && !options.force)
      throw new Error(`release ${to.id} ${to.status === 'failed' ? `failed (${to.failure?.phase}: ${to.failure?.message.split('\n')[0]})` : 'was never finished'}; --force to switch to it anyway`);
    if (to.status === 'failed' && (!to.deps || to.phases.migrate === undefined)) throw new Error(`release ${to.id} failed before it was built; it cannot be switched to`);
  } else {
    to = previousGood(present(l, records), currentId);
    if (!to) throw new Error(`no good release before ${currentId ?? 'the live one'} to roll back to (agent releases lists them)`);
  }
  const report = await activate(run, to, { rollingBack: true });
  return { from, to, report, ms: Date.now() - t };
}

/** The app roots' logs, read-only (no lock needed). */
export async function readReleases(args: ReleaseArgs): Promise<{ layout: Layout; records: ReleaseRecord[]; currentId: string | null }> {
  const l = layout(args.name);
  return { layout: l, records: await new ReleaseLog(l.log).read(), currentId: await linkedRelease(l, l.current).catch(() => null) };
}

/** `agent release --retry`: lifts the holds, so the next apply deploys the branch's commit again. */
export async function clearHolds(args: ReleaseArgs): Promise<ReleaseRecord[]> {
  const log = new ReleaseLog(layout(args.name).log);
  const held = (await log.read()).filter((r) => r.held);
  for (const r of held) await log.put({ ...r, held: undefined });
  return held;
}
