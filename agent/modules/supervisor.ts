// supervisor.program — a program run by supervisord, from its arguments
//
//   app:
//     supervisor.program:
//       - command: [/srv/app/venv/bin/gunicorn, --bind, '127.0.0.1:8000', app.wsgi]
//       - directory: /srv/app/current
//       - user: app
//       - env_file: /srv/app/shared/.env      # KEY='value' lines (env.file writes them)
//       - environment: {PYTHONUNBUFFERED: '1'}
//       - stopsignal: TERM
//       - stopwaitsecs: 30
//       - require:
//         - service: supervisor
//       - watch:
//         - git: app-checkout                  # restarted when the code changes
//
// The conf is /etc/supervisor/conf.d/NAME.conf, written atomically; supervisord reads it on
// `supervisorctl reread` + `update NAME`, and `update` restarts a program whose conf changed (a
// conf supervisord refuses is taken back and fails the state). The state then wants every process
// of the program RUNNING, which supervisord says only once it stayed up `startsecs`: a program that
// exits at start fails the state with the last lines of its log. `watch` restarts it.
//
// How the conf is written (quoting, env_file): agent/supervisor/conf.ts.
import { Type } from '@sinclair/typebox';
import * as fs from 'node:fs/promises';
import { clearPending, isPending, lstatOrNull, markPending, removeDurably, unifiedDiff, wantedMode, writeFileAtomic } from '../atomic.js';
import { confPath, programConf, supervisorPaths } from '../supervisor/conf.js';
import { allRunning, readStatus, summary, supervisorctl, waitForSupervisord, waitRunning, type ProgramStatus } from '../supervisor/ctl.js';
import { AccountName, formatMode, pathClaim } from './common.js';
import { stateFunction, type ArgProblem, type Change, type StateModule } from './types.js';

const OneLine = (options: object = {}) => Type.String({ pattern: '^[^\\r\\n]*$', ...options });
const AbsPath = OneLine({ pattern: '^/[^\\r\\n]*$', description: 'an absolute path' });

const ProgramArgs = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$', maxLength: 200, description: 'a program name' }),
    command: Type.Union([OneLine({ minLength: 1 }), Type.Array(OneLine(), { minItems: 1 })]),
    directory: Type.Optional(AbsPath),
    user: Type.Optional(AccountName),
    env_file: Type.Optional(AbsPath),
    environment: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), OneLine(), { additionalProperties: false })),
    autostart: Type.Boolean({ default: true }),
    autorestart: Type.Union([Type.Boolean(), Type.Literal('unexpected')], { default: true }),
    startsecs: Type.Integer({ minimum: 0, default: 2 }),
    stopsignal: Type.Optional(Type.Union(['TERM', 'HUP', 'INT', 'QUIT', 'KILL', 'USR1', 'USR2'].map((s) => Type.Literal(s)))),
    stopwaitsecs: Type.Optional(Type.Integer({ minimum: 0 })),
    stdout_logfile: Type.Optional(AbsPath),
    redirect_stderr: Type.Boolean({ default: true }),
    numprocs: Type.Optional(Type.Integer({ minimum: 1 })),
    priority: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

// ---------------------------------------------------------------------------------------------
// supervisor.program

interface ProgramCurrent {
  conf: string | null;
  /** The conf file's mode (null when there is none). */
  mode: number | null;
  kind: 'file' | 'other' | null;
  wantedConf: string;
  wantedMode: number;
  status: ProgramStatus;
  /** A run was killed after writing the conf and before supervisord's update. */
  interrupted: boolean;
}

const program = stateFunction(ProgramArgs, {
  commandLines: (args) => [{ key: 'command', command: args.command }],
  claims: (args) => [pathClaim(confPath(args.name))],
  validate(args) {
    const problems: ArgProblem[] = [];
    for (const [key, value] of Object.entries(args.environment ?? {}))
      if (value.includes('"') && value.includes("'"))
        problems.push({ key: 'environment', message: `${key}: supervisor cannot read a value with both ' and " in it; use env_file` });
    return problems;
  },
  async check(args, ctx): Promise<ProgramCurrent> {
    const path = confPath(args.name);
    const st = await lstatOrNull(path);
    const conf = st?.isFile() ? await fs.readFile(path, 'utf8') : null;
    const mode = st?.isFile() ? st.mode & 0o7777 : null;
    const wantedConf = programConf(args);
    return {
      conf,
      mode,
      kind: st ? (st.isFile() ? 'file' : 'other') : null,
      wantedConf,
      wantedMode: wantedMode(ctx.masker.contains(wantedConf), mode),
      status: await readStatus(args.name, ctx),
      interrupted: await isPending(`supervisor-${args.name}`),
    };
  },
  plan(current, args) {
    const path = confPath(args.name);
    const changes: Change[] = [];
    if (current.kind === 'other') changes.push({ what: 'type', old: 'not a file', new: 'file' });
    else if (current.conf === null) changes.push({ what: 'conf', old: null, new: 'created', diff: unifiedDiff(path, '', current.wantedConf) });
    else {
      if (current.conf !== current.wantedConf) changes.push({ what: 'conf', diff: unifiedDiff(path, current.conf, current.wantedConf, { hideOld: !((current.mode ?? 0) & 0o004) }) });
      if (current.mode !== current.wantedMode) changes.push({ what: 'mode', old: formatMode(current.mode!), new: formatMode(current.wantedMode) });
    }
    if (!allRunning(current.status)) changes.push({ what: 'running', old: summary(current.status), new: 'RUNNING' });
    if (current.interrupted) changes.push({ what: 'update', old: 'interrupted', new: 'reread and updated' });
    return changes.length ? { changes } : { changes, reason: `program ${args.name} is running (${current.status.processes.map((p) => p.description).join('; ')})` };
  },
  async apply(args, plan, current, ctx) {
    const path = confPath(args.name);
    if (current.kind === 'other') throw new Error(`${path} is not a file; remove it first`);
    if (current.status.problem) current = { ...current, status: await waitForSupervisord(args.name, ctx, current.status) };
    const confChanged = plan.changes.some((c) => c.what === 'conf') || current.interrupted;
    // Until supervisord has taken the new conf, a marker says so, for the next run if this one
    // is killed in between.
    const marker = `supervisor-${args.name}`;
    if (confChanged) await markPending(marker);
    if (confChanged) {
      const dir = await lstatOrNull(supervisorPaths.confDir);
      if (!dir?.isDirectory()) throw new Error(`${supervisorPaths.confDir} does not exist (is supervisor installed? require pkg: supervisor)`);
      await writeFileAtomic(path, current.wantedConf, { mode: current.wantedMode });
      try {
        await supervisorctl(['reread'], ctx);
      } catch (err) {
        // A conf supervisord cannot read would break every later reread: take it back.
        if (current.conf === null) await removeDurably(path);
        else await writeFileAtomic(path, current.conf, { mode: current.mode! });
        await clearPending(marker);
        throw err;
      }
    } else if (current.mode !== null && current.mode !== current.wantedMode) {
      await fs.chmod(path, current.wantedMode);
    }
    if (confChanged || !current.status.loaded) {
      if (!confChanged) await supervisorctl(['reread'], ctx);
      // Adds a new program, or stops and starts one whose conf changed.
      await supervisorctl(['update', args.name], ctx);
    }
    if (confChanged) await clearPending(marker);
    // update (re)started the program; so does a start: either way it runs the new conf.
    let restarted = confChanged || !current.status.loaded;
    const now = await readStatus(args.name, ctx);
    if (now.processes.some((p) => ['STOPPED', 'EXITED', 'FATAL'].includes(p.state))) {
      // start waits for the process and says ERROR if it dies; waitRunning explains with the log.
      await ctx.runner.run(['supervisorctl', 'start', `${args.name}:*`], { allowFailure: true, timeoutMs: 300_000 });
      restarted = true;
    }
    await waitRunning(args, ctx);
    return restarted ? 'restarted' : undefined;
  },
  async refresh(args, ctx) {
    await ctx.runner.run(['supervisorctl', 'restart', `${args.name}:*`], { allowFailure: true, timeoutMs: 300_000 });
    await waitRunning(args, ctx);
    return 'restarted';
  },
});

export const supervisorModule: StateModule = {
  name: 'supervisor',
  functions: { program },
};
