// Serving a release without dropping a request: two app slots and an nginx upstream.
//
// The app runs under supervisord in one of two slots, `NAME-blue` and `NAME-green`, each with an
// address of its own (two ports, or two unix sockets) and a directory ROOT/slots/SLOT that is a
// link to the release it runs. nginx sends requests to the upstream brine writes in
// /etc/nginx/conf.d/brine-UPSTREAM.conf: the live slot, and the other slot as `backup`.
//
// A switch to release R (a deploy, a rollback, a restart after the env file changed):
//   1. the idle slot is pointed at R and started;
//   2. R is health-checked there, straight on the slot's address: no request of a user reaches a
//      release before it answers. If it does not, the idle slot is stopped and nothing else moved;
//   3. `current` is switched to R (atomic rename of a link);
//   4. the upstream is rewritten with R's slot live, `nginx -t` checks the whole config, and nginx
//      is reloaded: its new workers send requests to R, its old ones finish theirs and exit;
//   5. once the old workers are gone, the old slot is told to stop (TERM: gunicorn finishes the
//      requests it has) and its conf removed; the switch does not wait for it to exit. A request an
//      old worker still sends there finds it closed and is passed to the upstream's backup —
//      which, in the old config, is R's slot.
// Only the live slot has a conf between switches, with autostart, so a reboot starts the live
// release and nothing else. The stopped old slot stays in supervisord (STOPPED) until the next
// switch into that slot removes it. supervisord is asked over its socket (agent/supervisor/rpc.ts).
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { removeDurably, writeFileAtomic } from '../atomic.js';
import { displayCommand } from '../exec.js';
import type { Context } from '../modules/types.js';
import { changeLive, snapshot } from '../nginx/live.js';
import { confPath, logPath, programConf, type ProgramSpec } from '../supervisor/conf.js';
import { SupervisorFault, supervisord, type ProcessInfo } from '../supervisor/rpc.js';
import { waitHealthy, type HealthSpec } from './health.js';
import { linkedRelease, pointAt, type Layout } from './layout.js';

export const SLOTS = ['blue', 'green'] as const;
export type Slot = (typeof SLOTS)[number];

/** Where nginx reads brine's upstreams (Debian's http{}-level include); tests point it elsewhere. */
export const servePaths = { upstreamDir: '/etc/nginx/conf.d', nginxPid: '/run/nginx.pid' };

export interface ServeSpec {
  /** supervisord program names are PROGRAM-blue and PROGRAM-green. */
  program: string;
  /** argv; {bind} {port} {dir} {slot} are replaced; a relative first word is the slot's. */
  command: string[];
  /** The two slots' addresses: host:port, or unix:/path. */
  binds: [string, string];
  /** The nginx upstream's name, which the site proxies to (proxy_pass http://NAME). */
  upstream: string;
  user: string;
  envFile?: string;
  environment?: Record<string, string>;
  stopsignal?: string;
  stopwaitsecs?: number;
}

const LOG_LINES = 15;
const DRAIN_MS = 10_000;

export function programName(spec: ServeSpec, slot: Slot): string {
  return `${spec.program}-${slot}`;
}

export function slotBind(spec: ServeSpec, slot: Slot): string {
  return spec.binds[SLOTS.indexOf(slot)]!;
}

export function slotPath(l: Layout, slot: Slot): string {
  return join(l.slots, slot);
}

function expand(text: string, vars: Record<string, string>): string {
  return text.replace(/\{(bind|port|dir|slot)\}/g, (_, k: string) => vars[k]!);
}

/** The supervisord program of a slot. */
export function slotProgram(spec: ServeSpec, l: Layout, slot: Slot): ProgramSpec {
  const dir = slotPath(l, slot);
  const bind = slotBind(spec, slot);
  const vars = { bind, port: bind.startsWith('unix:') ? '' : bind.slice(bind.lastIndexOf(':') + 1), dir, slot };
  const command = spec.command.map((w) => expand(w, vars));
  // supervisord looks a relative command up on PATH; the release's own (.venv/bin/python) is meant.
  if (command[0] && !command[0].startsWith('/') && command[0].includes('/')) command[0] = join(dir, command[0]);
  return {
    name: programName(spec, slot),
    command,
    directory: dir,
    user: spec.user,
    env_file: spec.envFile,
    environment: spec.environment && Object.fromEntries(Object.entries(spec.environment).map(([k, v]) => [k, expand(v, vars)])),
    autostart: true,
    autorestart: true,
    // Readiness is the health check's to say; supervisord only has to see it stay up a second.
    startsecs: 1,
    stopsignal: spec.stopsignal,
    stopwaitsecs: spec.stopwaitsecs,
    redirect_stderr: true,
  };
}

export function upstreamPath(spec: ServeSpec): string {
  return join(servePaths.upstreamDir, `brine-${spec.upstream}.conf`);
}

export function upstreamConf(spec: ServeSpec, l: Layout, live: Slot): string {
  const idle = live === 'blue' ? 'green' : 'blue';
  return [
    `# managed by brine (release.deployed ${l.root}): the live slot, and the other one as backup`,
    `# for requests an old nginx worker still sends there while they switch.`,
    `upstream ${spec.upstream} {`,
    `    server ${slotBind(spec, live)} max_fails=0;  # ${live}`,
    `    server ${slotBind(spec, idle)} backup max_fails=0;  # ${idle}`,
    `}`,
    '',
  ].join('\n');
}

/** Which slot an upstream file sends requests to. */
export function liveSlot(spec: ServeSpec, conf: string | null): Slot | null {
  if (conf === null) return null;
  const primary = /^\s*server\s+(\S+)(?![^;]*\bbackup\b)[^;]*;/m.exec(conf)?.[1];
  return SLOTS.find((s) => slotBind(spec, s) === primary) ?? null;
}

// ---------------------------------------------------------------------------------------------
// What is there now

export interface SlotState {
  /** The release its directory links to. */
  release: string | null;
  conf: string | null;
  /** Its processes in supervisord; null when supervisord does not have it. */
  processes: { state: string; description: string }[] | null;
  /** When it was started (seconds since the epoch), while it runs. */
  started?: number;
}

export interface ServingState {
  slots: Record<Slot, SlotState>;
  upstream: string | null;
  live: Slot | null;
  /** supervisord could not be asked (not installed yet, in --test). */
  problem?: string;
}

async function readOrNull(path: string): Promise<string | null> {
  return fs.readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
}

/** Every group's processes, or why supervisord could not be asked. */
async function groups(): Promise<{ groups: Map<string, ProcessInfo[]>; problem?: string }> {
  try {
    const all = await supervisord.processes();
    const map = new Map<string, ProcessInfo[]>();
    for (const p of all) map.set(p.group, [...(map.get(p.group) ?? []), p]);
    return { groups: map };
  } catch (err) {
    return { groups: new Map(), problem: (err as Error).message };
  }
}

export async function readServing(spec: ServeSpec, l: Layout): Promise<ServingState> {
  const [status, upstream, ...slots] = await Promise.all([
    groups(),
    readOrNull(upstreamPath(spec)),
    ...SLOTS.map(async (slot): Promise<SlotState> => ({
      release: await linkedRelease(l, slotPath(l, slot)),
      conf: await readOrNull(confPath(programName(spec, slot))),
      processes: null,
    })),
  ]);
  const state: ServingState = { slots: { blue: slots[0]!, green: slots[1]! }, upstream, live: liveSlot(spec, upstream), ...(status.problem ? { problem: status.problem } : {}) };
  for (const slot of SLOTS) {
    const processes = status.groups.get(programName(spec, slot));
    state.slots[slot].processes = processes?.map((p) => ({ state: p.statename, description: p.description })) ?? null;
    const starts = processes?.filter((p) => p.statename === 'RUNNING' || p.statename === 'STARTING').map((p) => p.start) ?? [];
    if (starts.length) state.slots[slot].started = Math.min(...starts);
  }
  return state;
}

// STARTING counts: right after a switch the slot answers its health check before supervisord's
// startsecs are over. A program that keeps dying shows as BACKOFF or FATAL.
const STOPPED = ['STOPPED', 'STOPPING', 'EXITED', 'FATAL'];
const running = (s: SlotState) => s.processes !== null && s.processes.length > 0 && s.processes.every((p) => p.state === 'RUNNING' || p.state === 'STARTING');

/** What is not as it should be when `current` is `currentId`; empty when the app is served right. */
export function servingProblems(state: ServingState, spec: ServeSpec, l: Layout, currentId: string | null): string[] {
  if (currentId === null) return [];
  if (state.problem) return [`not served yet (${state.problem.split('\n')[0]})`];
  if (state.live === null) return [state.upstream === null ? `no nginx upstream ${spec.upstream} yet` : `the nginx upstream ${spec.upstream} names neither slot`];
  const live = state.slots[state.live];
  const idle = state.slots[state.live === 'blue' ? 'green' : 'blue'];
  const problems: string[] = [];
  if (live.release !== currentId) problems.push(`the live slot ${state.live} runs ${live.release ?? 'nothing'}, current is ${currentId}`);
  if (live.conf !== programConf(slotProgram(spec, l, state.live))) problems.push(live.conf === null ? `${programName(spec, state.live)} has no conf` : `the serve settings changed`);
  if (!running(live)) problems.push(`${programName(spec, state.live)} is ${live.processes?.map((p) => p.state).join(', ') ?? 'not loaded'}`);
  if (state.upstream !== upstreamConf(spec, l, state.live)) problems.push(`the nginx upstream ${spec.upstream} differs from what brine writes`);
  // The old slot of the last switch stays loaded, STOPPED, until the next switch into it.
  const idleRuns = idle.processes?.some((p) => !STOPPED.includes(p.state));
  if (idle.conf !== null || idleRuns) problems.push(`the idle slot ${state.live === 'blue' ? 'green' : 'blue'} is ${idleRuns ? 'running' : 'configured'}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Switching

export class HealthCheckError extends Error {}

export interface SwitchReport {
  from: Slot | null;
  to: Slot;
  /** How long the new slot took to answer its health check. */
  healthMs: number;
  ms: number;
  /** Milliseconds per step: start (the new slot), health, nginx (test + reload), drain (old workers), stop (the old slot). */
  steps: Record<'start' | 'health' | 'nginx' | 'drain' | 'stop', number>;
}

const ignoring = (...faults: string[]) => (err: unknown) => {
  if (!(err instanceof SupervisorFault && faults.includes(err.fault))) throw err;
};

/** Tells a slot's program to stop (gracefully, not waiting for it) and removes its conf. */
async function stopSlot(spec: ServeSpec, slot: Slot): Promise<void> {
  const name = programName(spec, slot);
  await removeDurably(confPath(name));
  await supervisord.reread();
  await supervisord.stop(name, false).catch(ignoring('BAD_NAME', 'NOT_RUNNING'));
}

/** Removes a slot's program from supervisord, once it has stopped (waiting as long as it may take). */
async function removeSlot(spec: ServeSpec, slot: Slot, state: SlotState): Promise<void> {
  const name = programName(spec, slot);
  if (state.conf !== null) await removeDurably(confPath(name));
  if (state.processes === null) return;
  if (state.processes.some((p) => !STOPPED.includes(p.state)))
    await supervisord.stop(name, true, ((spec.stopwaitsecs ?? 10) + 15) * 1000).catch(ignoring('BAD_NAME', 'NOT_RUNNING'));
  const deadline = Date.now() + ((spec.stopwaitsecs ?? 10) + 5) * 1000;
  for (;;) {
    try {
      await supervisord.remove(name);
      return;
    } catch (err) {
      if (err instanceof SupervisorFault && err.fault === 'BAD_NAME') return;
      if (!(err instanceof SupervisorFault && err.fault === 'STILL_RUNNING') || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startSlot(spec: ServeSpec, l: Layout, slot: Slot, ctx: Context): Promise<void> {
  const program = slotProgram(spec, l, slot);
  await writeFileAtomic(confPath(program.name), programConf(program), { mode: ctx.masker.contains(programConf(program)) ? 0o600 : 0o644 });
  await supervisord.reread();
  // A new group is added and, with autostart, started at once (not waited for).
  await supervisord.add(program.name);
}

/** supervisord started a moment ago (service.running supervisor, just before) may not have made its socket yet. */
async function waitForSupervisord(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { problem } = await groups();
    if (!problem) return;
    if (Date.now() > deadline) throw new Error(`${problem} (is supervisor installed and running? require service: supervisor)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The size of a slot's log now, so that a failure shows only what its last start printed. */
async function logSize(spec: ServeSpec, slot: Slot): Promise<number> {
  return (await fs.stat(logPath({ name: programName(spec, slot) })).catch(() => ({ size: 0 }))).size;
}

/** The last lines a slot's program printed since `from` (a byte offset in its log). */
async function logSince(spec: ServeSpec, slot: Slot, from: number, ctx: Context): Promise<string> {
  const handle = await fs.open(logPath({ name: programName(spec, slot) }), 'r').catch(() => null);
  if (!handle) return '';
  try {
    const { size } = await handle.stat();
    const start = size < from ? 0 : Math.max(from, size - 8192);
    const buf = Buffer.alloc(size - start);
    await handle.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    if (start > from) lines.shift(); // a partial first line
    return ctx.masker.mask(lines.filter((x) => x.trim()).slice(-LOG_LINES).join('\n'));
  } finally {
    await handle.close();
  }
}

/** The nginx master's worker PIDs (empty when nginx does not run). */
async function nginxWorkers(): Promise<number[]> {
  const master = Number((await readOrNull(servePaths.nginxPid))?.trim());
  if (!master) return [];
  const workers: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readOrNull(`/proc/${entry}/stat`).catch(() => null);
    if (stat && Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === master) workers.push(Number(entry));
  }
  return workers;
}

/** Waits (bounded) until the workers that ran the old config have finished and exited. */
async function drained(old: number[]): Promise<boolean> {
  const deadline = Date.now() + DRAIN_MS;
  for (;;) {
    const left = [];
    for (const pid of old) if (await fs.stat(`/proc/${pid}`).then(() => true, () => false)) left.push(pid);
    if (left.length === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Makes `release` the one nginx serves, as described at the top. Throws HealthCheckError (with
 * the app's last log lines) if it does not pass its health check: then nothing else was changed.
 */
export async function switchTo(
  release: { id: string; sha: string },
  spec: ServeSpec,
  health: HealthSpec,
  l: Layout,
  ctx: Context,
): Promise<SwitchReport> {
  const started = Date.now();
  const steps = { start: 0, health: 0, nginx: 0, drain: 0, stop: 0 };
  let t = started;
  const step = (name: keyof typeof steps) => {
    steps[name] = Date.now() - t;
    t = Date.now();
  };
  await waitForSupervisord();
  const state = await readServing(spec, l);
  // The slot that serves: the upstream's, unless it does not run and the other one does (the
  // upstream file was left naming a slot that a failed switch stopped, or someone edited it).
  const runs = SLOTS.filter((s) => running(state.slots[s]));
  const from = state.live && (runs.includes(state.live) || runs.length === 0) ? state.live : (runs[0] ?? null);
  const to: Slot = from === 'blue' ? 'green' : 'blue';
  const name = programName(spec, to);

  await removeSlot(spec, to, state.slots[to]);
  await fs.mkdir(l.slots, { recursive: true, mode: 0o755 });
  await pointAt(l, slotPath(l, to), release.id);
  const logFrom = await logSize(spec, to);
  await startSlot(spec, l, to, ctx);
  step('start');

  const result = await waitHealthy(slotBind(spec, to), health, release.sha, async () => {
    const now = (await groups()).groups.get(name);
    const down = now?.find((p) => ['FATAL', 'EXITED', 'BACKOFF', 'STOPPED'].includes(p.statename));
    return down ? `${name} is ${down.statename}${down.description ? ` (${down.description})` : ''}` : now ? undefined : `${name} is not loaded`;
  });
  if (!result.ok) {
    const log = await logSince(spec, to, logFrom, ctx);
    await stopSlot(spec, to);
    throw new HealthCheckError(`health check failed: ${result.why}${log ? `; the end of ${name}'s log:\n${log}` : `; ${name}'s log is empty`}`);
  }

  step('health');
  const before = await linkedRelease(l, l.current);
  await pointAt(l, l.current, release.id);
  const oldWorkers = await nginxWorkers();
  let reloaded: boolean;
  try {
    const path = upstreamPath(spec);
    reloaded = await changeLive(
      ctx,
      [
        async () => {
          const restore = await snapshot(path);
          await writeFileAtomic(path, upstreamConf(spec, l, to), { mode: 0o644 });
          return restore;
        },
      ],
      `nginx still sends requests to ${from ?? 'no slot'}`,
    );
  } catch (err) {
    // nginx never saw the new upstream: put current back and take the new slot down.
    if (before) await pointAt(l, l.current, before);
    await stopSlot(spec, to);
    throw err;
  }
  step('nginx');
  if (reloaded) await drained(oldWorkers);
  step('drain');
  if (from !== null) await stopSlot(spec, from);
  step('stop');
  return { from, to, healthMs: result.ms, ms: Date.now() - started, steps };
}

/** For messages: the slot program's command line. */
export function describeServe(spec: ServeSpec, l: Layout, slot: Slot): string {
  return displayCommand(slotProgram(spec, l, slot).command as string[]);
}
