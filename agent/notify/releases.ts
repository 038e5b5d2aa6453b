// What a run's release.deployed states did, for the notifier: read from each app's release log,
// which holds the sha, subject, phase times and the failed health check's reason.
import type { CompiledState } from '../compile.js';
import type { ReleaseArgs } from '../releases/args.js';
import { readReleases } from '../releases/deploy.js';
import { PHASES } from '../releases/log.js';
import type { StateResult } from '../report/events.js';
import { firstLine } from './messages.js';
import type { ReleaseOutcome } from './reporter.js';

export function releaseOutcomes(states: CompiledState[], since: string): (results: StateResult[]) => Promise<ReleaseOutcome[]> {
  return async (results) => {
    const out: ReleaseOutcome[] = [];
    for (const r of results) {
      const state = states.find((s) => s.key === r.key);
      if (!state) continue;
      const args = state.args as ReleaseArgs;
      const { records, currentId } = await readReleases(args).catch(() => ({ records: [], currentId: null }));
      const live = records.find((rec) => rec.id === currentId);
      const release = r.changes.find((c) => c.what === 'release');
      if (r.status === 'changed' && release && live) {
        const durationMs = PHASES.reduce((sum, p) => sum + (live.phases[p] ?? 0), 0);
        out.push({ key: r.key, deployed: { app: args.name, id: live.id, sha: live.sha, subject: live.subject, previous: (release.old as string | null) ?? null, durationMs } });
        continue;
      }
      // A health check that failed in this run: the release never took traffic.
      const failed = records.filter((rec) => rec.status === 'failed' && rec.failure?.phase === 'health' && rec.failure.at >= since).at(-1);
      if (r.status === 'failed' && failed)
        out.push({ key: r.key, healthFailed: { app: args.name, id: failed.id, sha: failed.sha, subject: failed.subject, previous: currentId, reason: firstLine(failed.failure!.message) } });
    }
    return out;
  };
}
