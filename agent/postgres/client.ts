// The agent's side of its one Postgres connection per run. The agent runs as root, and root has no
// Postgres role; rather than loosen pg_hba.conf, it starts itself again as the postgres OS user
// (`runuser -u postgres -- node agent.mjs __postgres SOCKETDIR PORT`, see child.ts), which logs
// in over the local socket with peer authentication, and talks to that child in JSON lines.
//
// The child is started on the first query of a run and closed when the run ends (ctx.facts).
// State modules get their client through `postgresClients.connect`, which tests replace.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Context } from '../modules/types.js';
import { DEFAULT_PORT, DEFAULT_SOCKET_DIR, type ChildError, type ChildMessage } from './child.js';

export interface PostgresOptions {
  port?: number;
  socketDir?: string;
}

export interface PostgresClient {
  /**
   * Runs one statement in `database` (default `postgres`) and returns its rows. DDL takes no bind
   * parameters: its identifiers and literals must be quoted (quoteIdent, quoteLiteral) by the caller.
   */
  query<R = Record<string, unknown>>(sql: string, params?: unknown[], database?: string): Promise<R[]>;
}

/** No server to talk to: no socket (not installed, not started) or nobody listening on it. */
export class PostgresNotRunningError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PostgresNotRunningError';
  }
}

/** What the server said about a statement (SQLSTATE in `code`). */
export class PostgresError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.name = 'PostgresError';
    this.code = code;
  }
}

/** The seam between state modules and the server; tests replace `connect` with a fake. */
export const postgresClients = {
  connect(ctx: Context, options: PostgresOptions = {}): Promise<PostgresClient> {
    return postgresClient(ctx, options);
  },
};

/** `"name"`, doubling any `"`; identifiers are also validated before they get here. */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('an SQL identifier cannot contain a NUL byte');
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * `'text'` for DDL, which takes no bind parameters. Only for values already checked against a
 * strict pattern by the caller (a verifier, an encoding, a locale); quotes are doubled regardless.
 */
export function quoteLiteral(text: string): string {
  if (text.includes('\0') || text.includes('\\')) throw new Error('refusing to quote a literal with a NUL byte or a backslash');
  return `'${text.replace(/'/g, "''")}'`;
}

const READY_TIMEOUT_MS = 30_000;
/** CREATE DATABASE copies its template; anything slower than this is stuck. */
const QUERY_TIMEOUT_MS = 5 * 60_000;
const EXIT_TIMEOUT_MS = 5_000;

function socketPath(socketDir: string, port: number): string {
  return join(socketDir, `.s.PGSQL.${port}`);
}

function formatError(error: ChildError): string {
  return [error.message, error.detail && `(${error.detail})`, error.hint && `hint: ${error.hint}`].filter(Boolean).join(' ');
}

/** The client for this run and port, started on first use and closed when the run ends. */
export function postgresClient(ctx: Context, options: PostgresOptions = {}): Promise<PostgresClient> {
  const port = options.port ?? DEFAULT_PORT;
  const socketDir = options.socketDir ?? DEFAULT_SOCKET_DIR;
  const key = `postgres:client:${port}${socketDir === DEFAULT_SOCKET_DIR ? '' : `:${socketDir}`}`;
  return ctx.facts.get(key, async () => {
    const child = await startChild(ctx, socketDir, port);
    ctx.facts.onDispose(() => child.close());
    return child;
  });
}

interface Pending {
  resolve(rows: Record<string, unknown>[]): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

async function startChild(ctx: Context, socketDir: string, port: number): Promise<PostgresClient & { close(): Promise<void> }> {
  const socket = socketPath(socketDir, port);
  const notRunning = `PostgreSQL is not running (no socket at ${socket})`;
  try {
    await stat(socket);
  } catch (err) {
    throw new PostgresNotRunningError(notRunning, { cause: err });
  }
  const bundle = process.argv[1];
  if (!bundle) throw new Error('cannot start the Postgres client: the agent does not know its own path');
  const argv = ['runuser', '-u', 'postgres', '--', process.execPath, bundle, '__postgres', socketDir, String(port)];
  let proc: ChildProcessWithoutNullStreams;
  try {
    proc = spawn(argv[0]!, argv.slice(1), {
      cwd: '/', // root's cwd may be closed to the postgres user
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    throw new Error(`cannot start the Postgres client (${argv.slice(0, 4).join(' ')} …): ${(err as Error).message}`, { cause: err });
  }

  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const stderrTail = () => ctx.masker.mask(stderr.trim().split('\n').slice(-5).join('\n'));

  const pending = new Map<number, Pending>();
  let nextId = 1;
  let exited: string | undefined;
  let ready: (err?: Error) => void = () => {};
  const readyPromise = new Promise<void>((resolve, reject) => {
    ready = (err) => (err ? reject(err) : resolve());
  });
  const readyTimer = setTimeout(() => {
    ready(new Error(`the Postgres client did not connect within ${READY_TIMEOUT_MS / 1000}s`));
    proc.kill('SIGKILL');
  }, READY_TIMEOUT_MS);

  const failAll = (why: string) => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
      pending.delete(id);
    }
  };

  proc.on('error', (err: NodeJS.ErrnoException) => {
    exited = err.code === 'ENOENT' ? 'runuser was not found (util-linux)' : `the Postgres client failed: ${err.message}`;
    ready(new Error(exited, { cause: err }));
    failAll(exited);
  });
  proc.on('exit', (code, signal) => {
    clearTimeout(readyTimer);
    const tail = stderrTail();
    exited = `the Postgres client exited (${signal ?? `code ${code}`})${tail ? `: ${tail}` : ''}`;
    if (/user postgres does not exist/.test(stderr)) exited = 'PostgreSQL is not installed (there is no postgres user)';
    ready(new Error(exited));
    failAll(exited);
  });
  // Writing to a child that died surfaces through 'exit'; without a listener it would crash the agent.
  proc.stdin.on('error', () => {});

  const lines = createInterface({ input: proc.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    let message: ChildMessage;
    try {
      message = JSON.parse(line) as ChildMessage;
    } catch {
      return;
    }
    if ('ready' in message) {
      clearTimeout(readyTimer);
      if (message.ready) ready();
      else {
        const { code } = message.error;
        ready(
          code === 'ECONNREFUSED' || code === 'ENOENT'
            ? new PostgresNotRunningError(`PostgreSQL is not running (nobody listens on ${socket})`)
            : new PostgresError(`cannot connect to PostgreSQL on ${socket} as postgres: ${ctx.masker.mask(formatError(message.error))}`, code),
        );
      }
      return;
    }
    const p = pending.get(message.id);
    if (!p) return;
    pending.delete(message.id);
    clearTimeout(p.timer);
    if ('error' in message) p.reject(new PostgresError(ctx.masker.mask(formatError(message.error)), message.error.code));
    else p.resolve(message.rows);
  });

  try {
    await readyPromise;
  } catch (err) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    throw err;
  }

  return {
    query<R>(sql: string, params: unknown[] = [], database?: string): Promise<R[]> {
      if (exited) return Promise.reject(new Error(exited));
      const id = nextId++;
      return new Promise<R[]>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`a Postgres query did not finish within ${QUERY_TIMEOUT_MS / 1000}s`));
        }, QUERY_TIMEOUT_MS);
        pending.set(id, { resolve: resolve as (rows: Record<string, unknown>[]) => void, reject, timer });
        proc.stdin.write(`${JSON.stringify({ id, sql, params, ...(database ? { database } : {}) })}\n`);
      });
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.stdin.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), EXIT_TIMEOUT_MS);
      await gone;
      clearTimeout(timer);
    },
  };
}
