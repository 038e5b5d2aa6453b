// Asking supervisord, through supervisorctl: a program's processes and their states, its log,
// and waiting until it runs.
import { CommandError, displayCommand } from '../exec.js';
import type { Context } from '../modules/types.js';
import type { ProgramSpec } from './conf.js';

/** How often a starting program is polled, how long past `startsecs` it may take, how long a just-started supervisord may take to make its socket. */
export const supervisorTiming = { pollMs: 250, graceMs: 3000, socketWaitMs: 10_000 };

const LOG_LINES = 15;
const LOG_BYTES = 2000;

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

export async function readStatus(name: string, ctx: Context): Promise<ProgramStatus> {
  try {
    const result = await ctx.runner.run(['supervisorctl', 'status', `${name}:*`], { allowFailure: true, timeoutMs: 60_000 });
    return parseStatus(`${result.stdout}\n${result.stderr}`);
  } catch (err) {
    // Not installed yet (a pkg state before this one, in --test): say so in the plan.
    if (err instanceof CommandError && err.code === undefined) return { loaded: false, processes: [], problem: err.message };
    throw err;
  }
}

export function summary(status: ProgramStatus): string {
  // Without a reachable supervisord (not installed yet, in --test) the program is not loaded
  // either: saying the same as apply will lets --test predict the change exactly.
  if (status.problem || !status.loaded) return 'not loaded';
  const states = [...new Set(status.processes.map((p) => p.state))];
  return states.join(', ');
}

export const allRunning = (status: ProgramStatus) => status.loaded && status.processes.every((p) => p.state === 'RUNNING');

/** `supervisorctl CMD …`; a reply that says ERROR fails, with supervisorctl's own words. */
export async function supervisorctl(argv: string[], ctx: Context): Promise<string> {
  const result = await ctx.runner.run(['supervisorctl', ...argv], { allowFailure: true, timeoutMs: 300_000 });
  const output = `${result.stdout}\n${result.stderr}`.trim();
  if (result.code !== 0 || /\bERROR\b/.test(output))
    throw new Error(ctx.masker.mask(`\`${displayCommand(['supervisorctl', ...argv])}\` failed${output ? `:\n${output}` : ` (exit ${result.code})`}`));
  return output;
}

/** The end of a process's log (and of its stderr log, when it has one). */
export async function logTail(group: string, proc: ProcessStatus, args: Pick<ProgramSpec, 'name' | 'redirect_stderr' | 'startsecs'>, ctx: Context): Promise<string> {
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
export async function waitRunning(args: Pick<ProgramSpec, 'name' | 'redirect_stderr' | 'startsecs'>, ctx: Context): Promise<void> {
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


/**
 * supervisord started a moment ago (service.running supervisor, just before) may not have made its
 * socket yet: gives it a few seconds before calling it not running. Returns the status it got.
 */
export async function waitForSupervisord(name: string, ctx: Context, first?: ProgramStatus): Promise<ProgramStatus> {
  let status = first ?? (await readStatus(name, ctx));
  for (let waited = 0; status.problem && waited < supervisorTiming.socketWaitMs; waited += supervisorTiming.pollMs || 1) {
    await sleep(supervisorTiming.pollMs);
    status = await readStatus(name, ctx);
  }
  if (status.problem) throw new Error(`${status.problem} (is supervisor installed and running? require service: supervisor)`);
  return status;
}
