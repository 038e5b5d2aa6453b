// `agent releases`, `agent rollback`, `agent release --retry`: the releases of the apps that
// release.deployed states make, found by loading the server's tree (so the commands use exactly
// the arguments a run would).
import { ExitCode, UsageError, errorMessage } from '../errors.js';
import { systemJournal } from '../journal.js';
import type { CompiledState } from '../compile.js';
import { clearHolds, readReleases, rollback } from '../releases/deploy.js';
import type { ReleaseArgs } from '../releases/args.js';
import { PHASES, type ReleaseRecord } from '../releases/log.js';
import type { Masker } from '../secret.js';
import { notifyRollback } from '../notify/reporter.js';
import { loadFor, withRunContext, type Io, type Parsed } from './context.js';

/** The release.deployed states `--app` picks (its id, its root, or the root's last part). */
function releaseStates(states: CompiledState[], app: string | undefined): CompiledState[] {
  const all = states.filter((s) => s.module === 'release' && s.fn === 'deployed');
  if (all.length === 0) throw new UsageError('no release.deployed state applies to this server');
  if (app === undefined) return all;
  const picked = all.filter((s) => s.id === app || s.args.name === app || String(s.args.name).split('/').pop() === app);
  if (picked.length === 0) throw new UsageError(`--app ${app}: no such app (there are: ${all.map((s) => `${s.id} (${s.args.name})`).join(', ')})`);
  return picked;
}

function oneApp(states: CompiledState[], app: string | undefined, command: string): CompiledState {
  const picked = releaseStates(states, app);
  if (picked.length > 1) throw new UsageError(`${command}: several apps here; say which with --app (${picked.map((s) => s.id).join(', ')})`);
  return picked[0]!;
}

function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

const buildMs = (r: ReleaseRecord) => PHASES.filter((p) => p !== 'switch' && p !== 'fetch').reduce((sum, p) => sum + (r.phases[p] ?? 0), 0);
const secs = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`);

function row(r: ReleaseRecord, live: boolean): Record<string, unknown> {
  return {
    id: r.id,
    sha: r.sha,
    subject: r.subject,
    status: r.status,
    live,
    held: r.held === true,
    startedBy: r.startedBy,
    createdAt: r.createdAt,
    activatedAt: r.activatedAt ?? null,
    ageSeconds: Math.round((Date.now() - Date.parse(r.createdAt)) / 1000),
    buildMs: r.status === 'building' ? null : buildMs(r),
    switchMs: r.phases.switch ?? null,
    phases: r.phases,
    deps: r.deps ?? [],
    migrations: r.migrations ?? null,
    failure: r.failure ?? null,
    rolledBack: r.rolledBack ?? null,
  };
}

export async function releasesCommand(p: Parsed, io: Io): Promise<number> {
  const loaded = loadFor(p);
  const apps = [];
  for (const state of releaseStates(loaded.states, p.app)) {
    const args = state.args as ReleaseArgs;
    const { records, currentId } = await readReleases(args);
    apps.push({ state: state.id, root: args.name, keep: args.keep, keepFailed: args.keep_failed, currentId, records: records.filter((r) => !r.removed) });
  }
  const masker = loaded.pillar.masker;
  if (p.json) {
    io.stdout(`${masker.mask(JSON.stringify(apps.map((a) => ({ state: a.state, root: a.root, live: a.currentId, releases: a.records.map((r) => row(r, r.id === a.currentId)) })), null, 2))}\n`);
    return ExitCode.ok;
  }
  const out: string[] = [];
  for (const a of apps) {
    out.push(`${a.root} (${a.state}): ${a.records.length} release${a.records.length === 1 ? '' : 's'}, keeping ${a.keep} good and ${a.keepFailed} failed`);
    if (a.records.length === 0) {
      out.push('  no release yet');
      continue;
    }
    out.push(`  ${'RELEASE'.padEnd(24)} ${'COMMIT'.padEnd(7)}  ${'STATUS'.padEnd(11)} ${'AGE'.padStart(4)} ${'BUILD'.padStart(7)} ${'SWITCH'.padStart(7)}  SUBJECT`);
    for (const r of [...a.records].reverse()) {
      const notes = [r.held && 'held back', r.failure && `${r.failure.phase}: ${r.failure.message.split('\n')[0]!.slice(0, 80)}`].filter(Boolean).join(' · ');
      out.push(
        `${r.id === a.currentId ? '*' : ' '} ${r.id.padEnd(24)} ${r.sha.slice(0, 7)}  ${r.status.padEnd(11)} ${age(r.createdAt).padStart(4)} ${(r.status === 'building' ? '-' : secs(buildMs(r))).padStart(7)} ${secs(r.phases.switch).padStart(7)}  ${r.subject.slice(0, 50)}${notes ? `  (${notes})` : ''}`,
      );
    }
  }
  io.stdout(`${masker.mask(out.join('\n'))}\n`);
  return ExitCode.ok;
}

export async function rollbackCommand(p: Parsed, io: Io): Promise<number> {
  if (p.args.length > 1) throw new UsageError(`rollback takes one release at most, got ${p.args.join(' ')}`);
  const journal = systemJournal();
  let app: { args: ReleaseArgs; env: string; masker: Masker } | undefined;
  const entry = (fields: Record<string, string | number | undefined>) =>
    journal.available && io.env.BRINE_JOURNAL !== '0' && app ? journal.write([{ BRINE_EVENT: 'rollback', BRINE_ENV: app.env, BRINE_STARTED_BY: p.startedBy, BRINE_APP: app.args.name, ...fields }]).catch(() => undefined) : undefined;
  try {
    const result = await withRunContext(p, io, `agent rollback${p.args[0] ? ` ${p.args[0]}` : ''}`, async (loaded, ctx) => {
      app = { args: oneApp(loaded.states, p.app, 'rollback').args as ReleaseArgs, env: loaded.env, masker: loaded.pillar.masker };
      const done = await rollback(app.args, ctx, { to: p.args[0], force: p.force });
      // Told under the run lock, like a run's notifications (they share what was said before).
      if (loaded.notify)
        await notifyRollback(
          { settings: loaded.notify, masker: loaded.pillar.masker, journal },
          { env: loaded.env, startedBy: p.startedBy },
          { app: app.args.name, id: done.to.id, sha: done.to.sha, subject: done.to.subject, previous: done.from?.id ?? null, durationMs: done.ms },
        ).catch(() => undefined);
      return done;
    });
    const args = app!.args;
    const from = result.from ? `${result.from.id} (${result.from.sha.slice(0, 7)})` : 'nothing';
    const to = `${result.to.id} (${result.to.sha.slice(0, 7)})`;
    const message = `rolled back ${args.name}: ${from} → ${to} in ${(result.ms / 1000).toFixed(2)} s${result.report ? ` (slot ${result.report.to})` : ''}`;
    io.stdout(`${message}\n`);
    if (result.from) io.stdout(`${result.from.sha.slice(0, 7)} is held back: runs will not deploy it again until a new commit arrives or \`agent release --retry\`\n`);
    await entry({ PRIORITY: 4, BRINE_FROM: result.from?.id, BRINE_TO: result.to.id, BRINE_DURATION_MS: result.ms, MESSAGE: message });
    return ExitCode.ok;
  } catch (err) {
    // Input errors, usage errors and a busy lock are main's to report; a rollback that failed is ours.
    if (!app || err instanceof UsageError) throw err;
    const message = app.masker.mask(errorMessage(err));
    io.stderr(`agent rollback: ${message}\n`);
    await entry({ PRIORITY: 3, BRINE_RESULT: 'failed', MESSAGE: `rollback of ${app.args.name} failed: ${message}` });
    return ExitCode.failed;
  }
}

/** Converges the release states now; with --retry, first lifts the holds on failed commits. */
export async function releaseCommand(p: Parsed, io: Io, apply: (p: Parsed, io: Io) => Promise<number>): Promise<number> {
  const ids = await withRunContext(p, io, `agent release${p.retry ? ' --retry' : ''}`, async (loaded) => {
    const states = releaseStates(loaded.states, p.app);
    if (p.retry)
      for (const state of states) for (const r of await clearHolds(state.args as ReleaseArgs)) io.stdout(`${state.args.name}: ${r.sha.slice(0, 7)} (${r.id}) is no longer held back\n`);
    return states.map((s) => s.id);
  });
  return apply({ ...p, only: ids }, io);
}
