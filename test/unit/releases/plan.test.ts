// planRelease: what release.deployed says it would do, from what check found (pure).
import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { DeployedArgs, type ReleaseArgs } from '../../../agent/releases/args.js';
import { planRelease, serveSpec, type ReleaseCurrent } from '../../../agent/releases/deploy.js';
import { layout } from '../../../agent/releases/layout.js';
import type { ReleaseRecord } from '../../../agent/releases/log.js';
import { slotProgram, upstreamConf, type ServingState } from '../../../agent/releases/serve.js';
import { programConf } from '../../../agent/supervisor/conf.js';

const OLD = '90d85a5ad12e648c886ee9a4353b06494dda6722';
const NEW = '2d3ccd35602c08ee3620457b77a8d650d067a10e';
const args = Value.Default(DeployedArgs, {
  name: '/srv/app', repo: 'ssh://git@git.example.com/app.git', rev: 'main', user: 'app',
  dependencies: [{ path: '.venv', files: ['requirements.txt'], build: [['python3', '-m', 'venv', '.venv']] }],
  migrate: { command: ['.venv/bin/python', 'migrate.py'], files: ['migrations/*.sql'] },
  serve: { command: ['.venv/bin/gunicorn', '--bind', '{bind}', 'app:app'], binds: ['127.0.0.1:8000', '127.0.0.1:8001'], upstream: 'app' },
  health: { path: '/health' },
}) as ReleaseArgs;
const l = layout('/srv/app');
const spec = serveSpec(args)!;
const rec = (id: string, sha: string, status: ReleaseRecord['status'], extra: Partial<ReleaseRecord> = {}): ReleaseRecord => ({ id, sha, subject: '', status, startedBy: 'cron', createdAt: '', updatedAt: '', phases: {}, ...extra });
const LIVE = '20261202100000-90d85a5';

function serving(over: Partial<ServingState> = {}): ServingState {
  return {
    slots: { blue: { release: LIVE, conf: programConf(slotProgram(spec, l, 'blue')), processes: [{ state: 'RUNNING', description: '' }] }, green: { release: null, conf: null, processes: null } },
    upstream: upstreamConf(spec, l, 'blue'),
    live: 'blue',
    ...over,
  };
}

function current(over: Partial<ReleaseCurrent> = {}): ReleaseCurrent {
  return {
    layout: l,
    records: [rec(LIVE, OLD, 'active', { activatedAt: 'x' })],
    currentId: LIVE,
    currentSha: OLD,
    knownHosts: null,
    wanted: { kind: 'branch', name: 'main', sha: OLD },
    serving: serving(),
    restartPending: false,
    ...over,
  };
}

t.test('nothing to do: the branch is at the live release and it is served right', async (t) => {
  const plan = planRelease(current(), args);
  t.same(plan.changes, []);
  t.equal(plan.reason, `${LIVE} (90d85a5) is live (branch main)`);
});

t.test('a new commit on the branch: the release and the phases it would run', async (t) => {
  const plan = planRelease(current({ wanted: { kind: 'branch', name: 'main', sha: NEW }, preview: { deps: [{ spec: args.dependencies[0] as never, name: 'venv-0123456789abcdef', dir: '', complete: true }], migrate: 'skip' } }), args);
  t.same(plan.changes.map((c) => c.what), ['release', 'phases']);
  t.same(plan.changes[0], { what: 'release', old: `${LIVE} (90d85a5)`, new: '2d3ccd3 (branch main)' });
  t.same(plan.changes[1]!.new, [
    'fetch ssh://git@git.example.com/app.git',
    'export',
    'dependencies .venv: reuse deps/venv-0123456789abcdef',
    'migrate: skip (migrations/*.sql unchanged)',
    'switch: start green, check GET /health, then nginx → it, stop blue',
  ]);
  const unknown = planRelease(current({ wanted: { kind: 'branch', name: 'main', sha: NEW } }), args);
  t.match(unknown.changes[1]!.new, ['fetch ssh://git@git.example.com/app.git', 'export', /known once fetched/, /known once fetched/, /^switch/], 'not fetched yet: says so rather than guess');
});

t.test('the first release, and one whose deploy key is not there yet (--test on a fresh server)', async (t) => {
  const first = planRelease(current({ records: [], currentId: null, currentSha: null, serving: serving({ upstream: null, live: null, slots: { blue: { release: null, conf: null, processes: null }, green: { release: null, conf: null, processes: null } } }), wanted: { kind: 'branch', name: 'main', sha: NEW } }), args);
  t.same(first.changes.map((c) => c.what), ['release', 'phases'], 'no serving change on top: nothing is live yet');
  t.same(first.changes[0]!.old, null);
  const unresolved = planRelease(current({ records: [], currentId: null, currentSha: null, wanted: { kind: 'unresolved', rev: 'main', why: 'not asked yet: the identity /srv/app/.ssh/deploy_key does not exist yet' } }), args);
  t.same(unresolved.changes[0], { what: 'release', old: null, new: 'main (not asked yet: the identity /srv/app/.ssh/deploy_key does not exist yet)' });
});

t.test('a commit whose release failed its health check, or was rolled back from, is held back', async (t) => {
  const failed = rec('20261202110000-2d3ccd3', NEW, 'failed', { held: true, failure: { phase: 'health', message: 'x', at: '' } });
  const plan = planRelease(current({ records: [rec(LIVE, OLD, 'active', { activatedAt: 'x' }), failed], wanted: { kind: 'branch', name: 'main', sha: NEW } }), args);
  t.same(plan.changes, []);
  t.equal(plan.reason, `held back: branch main is 2d3ccd3, whose release 20261202110000-2d3ccd3 failed its health check; ${LIVE} (90d85a5) stays live until a new commit or \`agent release --retry\``);
  const rolled = { ...failed, status: 'rolled-back' as const, failure: undefined };
  t.match(planRelease(current({ records: [rolled], wanted: { kind: 'branch', name: 'main', sha: NEW } }), args).reason, /whose release 20261202110000-2d3ccd3 was rolled back from/);
  const buildFailed = rec('20261202110000-2d3ccd3', NEW, 'failed', { failure: { phase: 'build', message: 'x', at: '' } });
  t.same(planRelease(current({ records: [buildFailed], wanted: { kind: 'branch', name: 'main', sha: NEW } }), args).changes.map((c) => c.what), ['release', 'phases'], 'a failed build is tried again');
});

t.test('served wrong, or a restart that did not happen: repaired in the other slot', async (t) => {
  const down = planRelease(current({ serving: serving({ slots: { ...serving().slots, blue: { ...serving().slots.blue, processes: [{ state: 'FATAL', description: '' }] } } }) }), args);
  t.same(down.changes, [{ what: 'serving', old: ['app-blue is FATAL'], new: `${LIVE} live in one slot, the other stopped` }]);
  const pending = planRelease(current({ restartPending: true }), args);
  t.same(pending.changes, [{ what: 'restart', old: 'pending: a restart a watched state asked for did not happen', new: `${LIVE} restarted in the other slot` }]);
  const env = planRelease(current({ envChanged: true }), args);
  t.same(env.changes.map((c) => c.old), ['the env file changed since the app started'], 'the env file is newer than the live app: a watch restart that was lost');
  const both = planRelease(current({ restartPending: true, wanted: { kind: 'branch', name: 'main', sha: NEW } }), args);
  t.same(both.changes.map((c) => c.what), ['release', 'phases'], 'a new release restarts anyway');
});

t.test("the log is repaired when it does not say what current says (a run killed between the switch and its log entry)", async (t) => {
  const plan = planRelease(current({ records: [rec(LIVE, OLD, 'ready')] }), args);
  t.same(plan.changes, [{ what: 'release log', old: `${LIVE} is ready`, new: `${LIVE} is active` }]);
  const lost = planRelease(current({ records: [] }), args);
  t.same(lost.changes, [{ what: 'release log', old: `${LIVE} is not in it`, new: `${LIVE} is active` }]);
  t.same(planRelease(current({ records: [], currentId: null, currentSha: null, restartPending: true, wanted: { kind: 'branch', name: 'main', sha: NEW } }), args).changes.map((c) => c.what), ['release', 'phases'], 'nothing live: no log repair, no restart');
});
