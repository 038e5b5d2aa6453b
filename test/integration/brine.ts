// Helpers for integration tests: put a states + pillar tree on a booted server and run the real
// agent bundle against it, the way a user would (`agent apply --root DIR`).
import { AGENT_BUNDLE } from '../server/agent.js';
import { bootServer, type ExecResult, type TestServer } from '../server/server.js';
import type { RunSummary, StateResult } from '../../agent/report/events.js';

export type Tree = Record<string, string>;

/** Boots a server with the agent bundle installed as /usr/local/bin/agent. */
export async function bootWithAgent(): Promise<TestServer> {
  const server = await bootServer();
  await server.copyIn(AGENT_BUNDLE, '/opt/brine/agent.mjs');
  await server.writeFile('/usr/local/bin/agent', '#!/bin/sh\nexec /usr/bin/node /opt/brine/agent.mjs "$@"\n', 0o755);
  return server;
}

/** Replaces ROOT on the server with exactly these files (paths relative to ROOT). */
export async function stage(server: TestServer, root: string, files: Tree, env = 'test'): Promise<void> {
  await server.exec(['rm', '-rf', root]);
  for (const [path, text] of Object.entries(files)) await server.writeFile(`${root}/${path}`, text);
  await server.writeFile(`${root}/environment`, `${env}\n`);
}

export interface AgentRun extends ExecResult {
  /** Everything the run printed, for leak checks. */
  output: string;
}

export async function agent(server: TestServer, root: string, args: string[], env: Record<string, string> = {}): Promise<AgentRun> {
  const r = await server.exec(['agent', ...args, '--root', root], { allowFailure: true, env, timeoutMs: 300_000 });
  return { ...r, output: r.stdout + r.stderr };
}

export interface JsonRun extends AgentRun {
  summary: RunSummary;
  states: StateResult[];
}

/** `agent apply --json …`: the parsed report. */
export async function applyJson(server: TestServer, root: string, args: string[] = []): Promise<JsonRun> {
  const r = await agent(server, root, ['apply', '--json', ...args]);
  let parsed: { summary: RunSummary; states: StateResult[] };
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`agent apply --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, ...parsed };
}

/** id → changes, for comparing what --test predicted with what apply did. */
export function changesById(states: StateResult[]): Record<string, unknown> {
  return Object.fromEntries(states.filter((s) => s.changes.length > 0).map((s) => [s.key, s.changes]));
}

export function byId(states: StateResult[], id: string): StateResult {
  const found = states.find((s) => s.id === id);
  if (!found) throw new Error(`no state ${id} in the report`);
  return found;
}
