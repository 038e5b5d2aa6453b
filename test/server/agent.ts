// Puts the brine agent onto a test server the way a real deployment does: the single-file bundle
// under /opt/brine, states and pillar under /srv/brine, the environment name in
// /srv/brine/environment, and an `agent` command on PATH run by the server's own Node 18.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, type ExecResult, type TestServer } from './server.js';

/** The built agent bundle (npm run build). Tests run the bundle, not the sources, because that
 * is what ships: it must work on the distro's Node 18 with nothing else installed. */
export const AGENT_BUNDLE = join(REPO_ROOT, 'dist/agent.mjs');

export interface InstallOptions {
  /** Host directory with the state tree (copied to /srv/brine/states). */
  statesDir: string;
  /** Host directory with the pillar tree (copied to /srv/brine/pillar). */
  pillarDir: string;
  /** Environment name written to /srv/brine/environment. */
  env: string;
}

export async function installAgent(server: TestServer, opts: InstallOptions): Promise<void> {
  try {
    await access(AGENT_BUNDLE);
  } catch {
    throw new Error(`${AGENT_BUNDLE} is missing: run npm run build first`);
  }
  await server.copyIn(AGENT_BUNDLE, '/opt/brine/agent.mjs');
  await server.copyIn(opts.statesDir, '/srv/brine/states');
  await server.copyIn(opts.pillarDir, '/srv/brine/pillar');
  await server.writeFile('/srv/brine/environment', `${opts.env}\n`);
  await server.writeFile('/usr/local/bin/agent', '#!/bin/sh\nexec /usr/bin/node /opt/brine/agent.mjs "$@"\n', 0o755);
}

/** Runs `agent ARGS` inside the server. Failures are returned, not thrown, by default: tests
 * assert on the exit code. */
export async function runAgent(
  server: TestServer,
  args: string[],
  opts: { allowFailure?: boolean; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return server.exec(['agent', ...args], {
    allowFailure: opts.allowFailure ?? true,
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  });
}
