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
// A command given as a string is written as supervisor reads it (`%(program_name)s` works); an
// argv list, `environment` values and `env_file` are quoted and escaped by brine. With `env_file`
// the command runs as `/bin/sh -c 'set -a; . FILE; set +a; exec COMMAND'`, so the program gets the
// file's variables (read as the program's user, at each start).
import { Type, type Static } from '@sinclair/typebox';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { clearPending, isPending, lstatOrNull, markPending, removeDurably, unifiedDiff, wantedMode, writeFileAtomic } from '../atomic.js';
import { CommandError, displayCommand } from '../exec.js';
import { formatMode } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

/** Where Debian's supervisor reads program confs and keeps logs; tests point these elsewhere. */
export const supervisorPaths = {
  confDir: '/etc/supervisor/conf.d',
  logDir: '/var/log/supervisor',
};

/** How often the state is polled while a program starts, and how long past `startsecs` it may take. */
export const supervisorTiming = { pollMs: 250, graceMs: 3000, socketWaitMs: 10_000 };

const HEADER = '; managed by brine';
const LOG_LINES = 15;
const LOG_BYTES = 2000;

const OneLine = (options: object = {}) => Type.String({ pattern: '^[^\\r\\n]*$', ...options });
const AbsPath = OneLine({ pattern: '^/[^\\r\\n]*$', description: 'an absolute path' });

const ProgramArgs = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$', maxLength: 200, description: 'a program name' }),
    command: Type.Union([OneLine({ minLength: 1 }), Type.Array(OneLine(), { minItems: 1 })]),
    directory: Type.Optional(AbsPath),
    user: Type.Optional(Type.String({ pattern: '^[a-z_][a-z0-9_.-]*\\$?$', description: 'a user name' })),
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

type Args = Static<typeof ProgramArgs>;

// ---------------------------------------------------------------------------------------------
// The conf

/** Single-quotes a word for sh (and for supervisor's shlex, which splits the command the same way). */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** supervisor expands %(name)s in its values: a literal % is written %%. */
function literal(text: string): string {
  return text.replace(/%/g, '%%');
}

/** The command line written after `command=`. */
export function commandLine(args: Pick<Args, 'command' | 'env_file'>): string {
  const command = typeof args.command === 'string' ? args.command : literal(args.command.map(shellWord).join(' '));
  if (args.env_file === undefined) return command;
  const script = `set -a; . ${literal(shellWord(args.env_file))}; set +a; exec ${command}`;
  return `/bin/sh -c ${shellWord(script)}`;
}

/**
 * supervisor reads `environment` as KEY="value",… split by a non-POSIX shlex: quotes are taken
 * off but nothing inside them is escaped, so a value is quoted with whichever quote it lacks.
 */
function environmentValue(value: string): string {
  return value.includes('"') ? `'${literal(value)}'` : `"${literal(value)}"`;
}

export function programConf(args: Args): string {
  const lines = [HEADER, `[program:${args.name}]`, `command=${commandLine(args)}`];
  const add = (key: string, value: string | number | boolean | undefined) => {
    if (value !== undefined) lines.push(`${key}=${value}`);
  };
  if (args.numprocs !== undefined && args.numprocs > 1) add('process_name', '%(program_name)s_%(process_num)02d');
  add('numprocs', args.numprocs);
  add('directory', args.directory);
  add('user', args.user);
  if (args.environment && Object.keys(args.environment).length > 0)
    add('environment', Object.entries(args.environment).map(([k, v]) => `${k}=${environmentValue(v)}`).join(','));
  add('autostart', args.autostart);
  add('autorestart', args.autorestart);
  add('startsecs', args.startsecs);
  add('stopsignal', args.stopsignal);
  add('stopwaitsecs', args.stopwaitsecs);
  add('priority', args.priority);
  add('stdout_logfile', args.stdout_logfile ?? join(supervisorPaths.logDir, `${args.name}.log`));
  add('redirect_stderr', args.redirect_stderr);
  return `${lines.join('\n')}\n`;
}

function confPath(name: string): string {
  return join(supervisorPaths.confDir, `${name}.conf`);
}

// ---------------------------------------------------------------------------------------------
// supervisord's view

const STATES = ['STOPPED', 'STARTING', 'RUNNING', 'BACKOFF', 'STOPPING', 'EXITED', 'FATAL', 'UNKNOWN'];

export interface ProcessStatus {
  /** `app` or `app:app_00` — what supervisorctl names it. */
  name: string;
  state: string;
  /** `pid 123, uptime 0:01:02`, `Exited too quickly (process log may have details)`… */
  description: string;
}

export interface ProgramStatus {
  /** Whether supervisord has the program (added by `update`). */
  loaded: boolean;
  processes: ProcessStatus[];
  /** Why supervisord could not be asked (not installed, not running). */
  problem?: string;
}

/** Parses `supervisorctl status NAME:*`. */
export function parseStatus(output: string): ProgramStatus {
  const processes: ProcessStatus[] = [];
  for (const line of output.split('\n')) {
    const m = /^(\S+)\s+(\S+)\s*(.*)$/.exec(line.trim());
    if (m && STATES.includes(m[2]!)) processes.push({ name: m[1]!, state: m[2]!, description: m[3]!.trim() });
  }
  if (processes.length > 0) return { loaded: true, processes };
  if (/ERROR \(no such (group|process)\)/.test(output)) return { loaded: false, processes };
  return { loaded: false, processes, problem: `supervisord did not answer: ${output.trim() || 'no output'}` };
}

async function readStatus(name: string, ctx: Context): Promise<ProgramStatus> {
  try {
    const result = await ctx.runner.run(['supervisorctl', 'status', `${name}:*`], { allowFailure: true, timeoutMs: 60_000 });
    return parseStatus(`${result.stdout}\n${result.stderr}`);
  } catch (err) {
    // Not installed yet (a pkg state before this one, in --test): say so in the plan.
    if (err instanceof CommandError && err.code === undefined) return { loaded: false, processes: [], problem: err.message };
    throw err;
  }
}

function summary(status: ProgramStatus): string {
  // Without a reachable supervisord (not installed yet, in --test) the program is not loaded
  // either: saying the same as apply will lets --test predict the change exactly.
  if (status.problem || !status.loaded) return 'not loaded';
  const states = [...new Set(status.processes.map((p) => p.state))];
  return states.join(', ');
}

const allRunning = (status: ProgramStatus) => status.loaded && status.processes.every((p) => p.state === 'RUNNING');

/** `supervisorctl CMD …`; a reply that says ERROR fails, with supervisorctl's own words. */
async function supervisorctl(argv: string[], ctx: Context): Promise<string> {
  const result = await ctx.runner.run(['supervisorctl', ...argv], { allowFailure: true, timeoutMs: 300_000 });
  const output = `${result.stdout}\n${result.stderr}`.trim();
  if (result.code !== 0 || /\bERROR\b/.test(output))
    throw new Error(ctx.masker.mask(`\`${displayCommand(['supervisorctl', ...argv])}\` failed${output ? `:\n${output}` : ` (exit ${result.code})`}`));
  return output;
}

/** The end of a process's log (and of its stderr log, when it has one). */
async function logTail(group: string, proc: ProcessStatus, args: Args, ctx: Context): Promise<string> {
  // supervisorctl shows `app` for the one process of group `app`; tail wants `group:process`.
  const full = proc.name.includes(':') ? proc.name : `${group}:${proc.name}`;
  const streams = args.redirect_stderr ? ['stdout'] : ['stdout', 'stderr'];
  const parts: string[] = [];
  for (const stream of streams) {
    const result = await ctx.runner
      .run(['supervisorctl', 'tail', `-${LOG_BYTES}`, full, stream], { allowFailure: true, timeoutMs: 60_000 })
      .catch(() => ({ code: 1, stdout: '' }));
    if (result.code !== 0) continue;
    let lines = result.stdout.split('\n');
    // A tail of the last N bytes may begin mid-line.
    if (result.stdout.length >= LOG_BYTES) lines = lines.slice(1);
    const text = lines.filter((l) => l.trim() !== '').slice(-LOG_LINES).join('\n');
    if (text) parts.push(text);
  }
  return parts.join('\n');
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits until every process is RUNNING (supervisord says so once it stayed up startsecs). FATAL
 * or EXITED fail at once; anything else that is not RUNNING by the deadline fails too.
 */
async function waitRunning(args: Args, ctx: Context): Promise<void> {
  const deadline = Date.now() + args.startsecs * 1000 + supervisorTiming.graceMs;
  for (;;) {
    const status = await readStatus(args.name, ctx);
    if (status.problem) throw new Error(status.problem);
    if (allRunning(status)) return;
    const failed = status.processes.find((p) => p.state === 'FATAL' || p.state === 'EXITED');
    if (failed || Date.now() >= deadline || !status.loaded) {
      const proc = failed ?? status.processes.find((p) => p.state !== 'RUNNING');
      if (!proc) throw new Error(`program ${args.name} is not loaded by supervisord`);
      const log = await logTail(args.name, proc, args, ctx);
      const what = `${proc.state}${proc.description ? ` (${proc.description})` : ''}`;
      const waited = failed ? '' : ` after ${args.startsecs + supervisorTiming.graceMs / 1000} s`;
      throw new Error(ctx.masker.mask(`program ${proc.name} is ${what}${waited}${log ? `; the end of its log:\n${log}` : '; its log is empty'}`));
    }
    await sleep(supervisorTiming.pollMs);
  }
}

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
    if (current.status.problem) {
      // supervisord started a moment ago (service.running supervisor, just before) may not have
      // made its socket yet: give it a few seconds before calling it not running.
      let status = current.status;
      for (let waited = 0; status.problem && waited < supervisorTiming.socketWaitMs; waited += supervisorTiming.pollMs || 1) {
        await new Promise((r) => setTimeout(r, supervisorTiming.pollMs));
        status = await readStatus(args.name, ctx);
      }
      if (status.problem) throw new Error(`${status.problem} (is supervisor installed and running? require service: supervisor)`);
      current = { ...current, status };
    }
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
