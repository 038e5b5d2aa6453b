// Runs compiled states in order. For each: requisites → conditions → check → plan → (test mode:
// report) → apply → check again. A state whose plan is not empty after apply has failed. A failed
// state skips the states that depend on it; the others still run.
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { commandArgv } from './argv.js';
import { displayCommand } from './exec.js';
import { errorMessage } from './errors.js';
import type { CompiledState } from './compile.js';
import type { Context, Plan } from './modules/types.js';
import type { Reporter, RunSummary, StateResult, StateStatus } from './report/events.js';
import { Reactions } from './reactions.js';

export interface RunOptions {
  env: string;
  test: boolean;
  startedBy: RunSummary['startedBy'];
  reporters: Reporter[];
  /** Reactions owed from earlier runs (reactions.ts); none when not given. */
  reactions?: Reactions;
  /** The run covers the whole tree: what states no longer in it owed is forgotten. */
  wholeTree?: boolean;
}

const FAILED: StateStatus[] = ['failed', 'skipped'];
const CHANGED: StateStatus[] = ['changed', 'would-change'];

/** A state's name as shown: an argv list (a cmd.run) as a command line. */
function nameOf(s: CompiledState): string {
  return Array.isArray(s.args.name) ? displayCommand(s.args.name as string[]) : String(s.args.name);
}

function label(s: CompiledState): string {
  return `${s.module}.${s.fn} ${s.id}`;
}

export class Runner {
  readonly #states: CompiledState[];
  readonly #ctx: Context;
  readonly #options: RunOptions;
  readonly #results = new Map<CompiledState, StateResult>();
  readonly #reactions: Reactions;
  readonly #unaccounted: [CompiledState, StateStatus][] = [];
  /** For each state, the states that react to its changes (watch, onchanges). */
  readonly #reactors = new Map<CompiledState, CompiledState[]>();

  constructor(states: CompiledState[], ctx: Context, options: RunOptions) {
    this.#states = states;
    this.#ctx = ctx;
    this.#options = options;
    this.#reactions = options.reactions ?? Reactions.none();
    for (const s of states)
      for (const d of s.deps) if (d.kind === 'watch' || d.kind === 'onchanges') this.#reactors.set(d.state, [...(this.#reactors.get(d.state) ?? []), s]);
  }

  #emit(event: Parameters<Reporter['on']>[0]): void {
    for (const r of this.#options.reporters) r.on(event);
  }

  async run(): Promise<RunSummary> {
    const started = Date.now();
    const runId = randomUUID();
    const { env, test, startedBy } = this.#options;
    this.#emit({ kind: 'run-start', runId, env, test, startedBy, states: this.#states.length });
    for (const state of this.#states) state.function.warm?.(state.args, this.#ctx).catch(() => undefined);
    if (!test && this.#options.wholeTree) await this.#reactions.keepOnly(new Set(this.#states.map((s) => s.key)));
    for (const state of this.#states) {
      if (this.#results.has(state)) continue; // done in a batch
      await this.#runState(state);
      // Every result recorded since (a batch records several), on disk before the next state runs.
      for (const [done, status] of this.#unaccounted.splice(0)) await this.#account(done, status);
    }
    const results = this.#states.map((s) => this.#results.get(s)!);
    const count = (...st: StateStatus[]) => results.filter((r) => st.includes(r.status)).length;
    const summary: RunSummary = {
      runId,
      env,
      test,
      startedBy,
      total: results.length,
      ok: count('ok', 'not-needed'),
      changed: count('changed', 'would-change'),
      failed: count('failed'),
      skipped: count('skipped'),
      notNeeded: count('not-needed'),
      durationMs: Date.now() - started,
      ...(test ? { afterInstall: results.filter((r) => r.afterInstall).length } : {}),
    };
    this.#emit({ kind: 'run-end', summary, results });
    return summary;
  }

  /**
   * What is owed and done, on disk as it happens: a state that changed makes its watchers and
   * onchanges states owe a reaction (written before their turn, so a killed run leaves it); a
   * state that ran through crosses its own out.
   */
  async #account(state: CompiledState, status: StateStatus): Promise<void> {
    if (this.#options.test) return;
    if (status === 'changed' || status === 'ok') await this.#reactions.done(state.key);
    const reactors = this.#reactors.get(state);
    if (status === 'changed' && reactors) await this.#reactions.owe(reactors.map((r) => r.key), `${label(state)} changed`);
  }

  /**
   * --test: the packages `state` waits on — the would-be installs of pkg states it depends on,
   * directly or through other states (their results are in: requisites run first).
   */
  #afterInstall(state: CompiledState): string[] {
    if (!this.#options.test) return [];
    const found = new Set<string>();
    const seen = new Set<CompiledState>();
    const todo = [...state.deps.map((d) => d.state)];
    for (let s = todo.pop(); s; s = todo.pop()) {
      if (seen.has(s)) continue;
      seen.add(s);
      const result = this.#results.get(s);
      if (s.module === 'pkg' && result?.status === 'would-change')
        for (const c of result.changes) {
          const m = /^package (\S+)$/.exec(c.what);
          if (m && c.old === null) found.add(m[1]!);
        }
      todo.push(...s.deps.map((d) => d.state));
    }
    return [...found].sort();
  }

  #record(state: CompiledState, status: StateStatus, started: number, comment: string, plan?: Plan): StateResult {
    const after = this.#afterInstall(state);
    const result: StateResult = {
      key: state.key,
      id: state.id,
      function: `${state.module}.${state.fn}`,
      name: nameOf(state),
      status,
      changes: plan?.changes ?? [],
      comment: this.#ctx.masker.mask(comment),
      durationMs: Date.now() - started,
      file: state.place.file,
      line: state.place.line,
      ...(after.length ? { afterInstall: after } : {}),
    };
    this.#results.set(state, result);
    this.#unaccounted.push([state, status]);
    this.#emit({ kind: 'state-result', result });
    return result;
  }

  /** Why the state must not run, or undefined when it may. */
  #gate(state: CompiledState): { status: StateStatus; comment: string } | undefined {
    const failedHard = state.deps.filter((d) => d.kind !== 'onfail' && FAILED.includes(this.#results.get(d.state)!.status));
    if (failedHard.length > 0)
      return { status: 'skipped', comment: `requisite failed: ${failedHard.map((d) => label(d.state)).join(', ')}` };
    const onfail = state.deps.filter((d) => d.kind === 'onfail');
    if (onfail.length > 0 && !onfail.some((d) => FAILED.includes(this.#results.get(d.state)!.status)))
      return { status: 'not-needed', comment: 'onfail: no requisite failed' };
    const onchanges = state.deps.filter((d) => d.kind === 'onchanges');
    if (onchanges.length > 0 && !onchanges.some((d) => CHANGED.includes(this.#results.get(d.state)!.status)) && !this.#reactions.owed(state.key))
      return { status: 'not-needed', comment: 'onchanges: no requisite changed' };
    return undefined;
  }

  /** unless / onlyif / creates. Commands are reads, so they run in test mode too. */
  async #conditionsSay(state: CompiledState): Promise<string | undefined> {
    const { creates, onlyif, unless } = state.conditions;
    if (creates && creates.every((p) => existsSync(p))) return `creates: ${creates.join(', ')} exists`;
    // Like every command, a string is split into words without a shell (checked at load).
    const succeeds = async (cmd: string | string[]) => (await this.#ctx.runner.run(commandArgv(cmd), { allowFailure: true, timeoutMs: 120_000 })).code === 0;
    if (onlyif) for (const c of onlyif) if (!(await succeeds(c))) return `onlyif: \`${Array.isArray(c) ? c.join(' ') : c}\` failed`;
    if (unless) {
      let all = true;
      for (const c of unless) if (!(await succeeds(c))) all = false;
      if (all) return 'unless: condition met';
    }
    return undefined;
  }

  async #runState(state: CompiledState): Promise<void> {
    const started = Date.now();
    this.#emit({ kind: 'state-start', key: state.key, id: state.id, function: `${state.module}.${state.fn}`, name: nameOf(state) });
    const gate = this.#gate(state);
    if (gate) {
      this.#record(state, gate.status, started, gate.comment);
      return;
    }
    try {
      const skip = await this.#conditionsSay(state);
      if (skip) {
        this.#record(state, 'not-needed', started, skip);
        return;
      }
      const fn = state.function;
      const current = await fn.check(state.args, this.#ctx);
      let plan = fn.plan(current, state.args, this.#ctx);
      const watched = state.deps.filter((d) => d.kind === 'watch' && CHANGED.includes(this.#results.get(d.state)!.status));
      // A reaction an earlier run owed (its watcher failed, was skipped, or the run was killed).
      const owed = watched.length === 0 && state.deps.some((d) => d.kind === 'watch') ? this.#reactions.owed(state.key) : undefined;

      if (plan.changes.length === 0) {
        if ((watched.length > 0 || owed) && fn.refresh) {
          const why = owed ? `pending since ${owed.since}: ${owed.reason}` : `watch: ${watched.map((d) => label(d.state)).join(', ')} changed`;
          if (this.#options.test) {
            this.#record(state, 'would-change', started, `would refresh (${why})`, { changes: [{ what: 'refresh', old: null, new: why }] });
            return;
          }
          const did = await fn.refresh(state.args, this.#ctx);
          this.#record(state, 'changed', started, `${did} (${why})`, { changes: [{ what: did, old: null, new: why }] });
          return;
        }
        this.#record(state, 'ok', started, plan.reason ?? 'already in the correct state');
        return;
      }
      if (this.#options.test) {
        this.#record(state, 'would-change', started, 'would change', plan);
        return;
      }
      if (fn.applyBatch) await this.#applyBatch(state, current, plan, started);
      else {
        const outcome = await fn.apply(state.args, plan, current, this.#ctx);
        const restarted = outcome === 'restarted' || (typeof outcome === 'object' && outcome.restarted === true);
        if (typeof outcome === 'object' && outcome.changes) plan = { ...plan, changes: outcome.changes };
        // A watched state changed too: the watcher's own change (enabling it, say) did not load
        // the new configuration, unless its apply (re)started it.
        if ((watched.length > 0 || owed) && fn.refresh && !restarted) {
          const did = await fn.refresh(state.args, this.#ctx);
          plan = { ...plan, changes: [...plan.changes, { what: did, old: null, new: owed ? `pending: ${owed.reason}` : `watch: ${watched.map((d) => label(d.state)).join(', ')} changed` }] };
        }
        await this.#verify(state, plan, started);
      }
    } catch (err) {
      this.#record(state, 'failed', started, errorMessage(err));
    }
  }

  /** After apply, the system must match: a non-empty plan now means the change did not hold. */
  async #verify(state: CompiledState, applied: Plan, started: number, applyError?: unknown): Promise<void> {
    if (state.function.action) {
      if (applyError === undefined) this.#record(state, 'changed', started, 'ran', applied);
      else this.#record(state, 'failed', started, errorMessage(applyError), applied);
      return;
    }
    const again = state.function.plan(await state.function.check(state.args, this.#ctx), state.args, this.#ctx);
    if (again.changes.length > 0) {
      const still = again.changes.map((c) => c.what).join(', ');
      const why = applyError === undefined ? `applied, but still differs: ${still}` : errorMessage(applyError);
      this.#record(state, 'failed', started, why, applied);
      return;
    }
    this.#record(state, 'changed', started, 'changed', applied);
  }

  /**
   * States of the same batchable function (pkg.installed) that are ready now — their requisites
   * done and passed, no conditions — are applied together with this one, in one action.
   */
  async #applyBatch(first: CompiledState, current: unknown, plan: Plan, started: number): Promise<void> {
    const fn = first.function;
    const items = [{ state: first, args: first.args, plan, current, started }];
    for (const other of this.#states) {
      if (other === first || other.function !== fn || this.#results.has(other)) continue;
      const { onlyif, unless, creates } = other.conditions;
      if (onlyif || unless || creates) continue;
      if (!other.deps.every((d) => d.kind === 'require' && this.#results.has(d.state) && !FAILED.includes(this.#results.get(d.state)!.status))) continue;
      const t0 = Date.now();
      this.#emit({ kind: 'state-start', key: other.key, id: other.id, function: `${other.module}.${other.fn}`, name: nameOf(other) });
      try {
        const cur = await fn.check(other.args, this.#ctx);
        const p = fn.plan(cur, other.args, this.#ctx);
        if (p.changes.length === 0) this.#record(other, 'ok', t0, p.reason ?? 'already in the correct state');
        else items.push({ state: other, args: other.args, plan: p, current: cur, started: t0 });
      } catch (err) {
        this.#record(other, 'failed', t0, errorMessage(err));
      }
    }
    let batchError: unknown;
    try {
      await fn.applyBatch!(items, this.#ctx);
    } catch (err) {
      // Part of a batch may have been applied (apt installs the packages it knows): each state
      // is judged by checking again, and only those that still differ carry the error.
      batchError = err;
    }
    for (const item of items) {
      try {
        await this.#verify(item.state, item.plan, item.started, batchError);
      } catch (err) {
        this.#record(item.state, 'failed', item.started, errorMessage(err));
      }
    }
  }
}
