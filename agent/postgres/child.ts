// `agent __postgres [SOCKETDIR] [PORT]`: the Postgres end of brine's one connection per run. The
// parent (client.ts) starts it as the postgres OS user (`runuser -u postgres -- node agent.mjs
// __postgres …`), so it logs in over the local socket with peer authentication, as `psql` run by
// that user would; pg_hba.conf is never touched.
//
// Protocol, one JSON object per line:
//   child → parent, once:  {"ready":true}  or  {"ready":false,"error":{…}}   (then it exits)
//   parent → child:        {"id":1,"sql":"SELECT …","params":["alice"],"database":"app"}
//   child → parent:        {"id":1,"rows":[…]}  or  {"id":1,"error":{"message":…,"code":…}}
// It exits when its stdin closes. It never prints SQL or parameters: a query's error carries only
// what the server said.
import { createInterface } from 'node:readline';
import type { Client } from 'pg';

export const DEFAULT_SOCKET_DIR = '/var/run/postgresql';
export const DEFAULT_PORT = 5432;

export interface ChildRequest {
  id: number;
  sql: string;
  params?: unknown[];
  /** Default `postgres`. */
  database?: string;
}

export interface ChildError {
  message: string;
  /** SQLSTATE (42710…) or a Node error code (ECONNREFUSED, ENOENT…). */
  code?: string;
  detail?: string;
  hint?: string;
}

export type ChildMessage =
  | { ready: true }
  | { ready: false; error: ChildError }
  | { id: number; rows: Record<string, unknown>[] }
  | { id: number; error: ChildError };

function describe(err: unknown): ChildError {
  const e = err as { message?: string; code?: string; detail?: string; hint?: string };
  const out: ChildError = { message: e?.message ?? String(err) };
  if (typeof e?.code === 'string') out.code = e.code;
  if (typeof e?.detail === 'string') out.detail = e.detail;
  if (typeof e?.hint === 'string') out.hint = e.hint;
  return out;
}

/** Where to connect: the two arguments after `__postgres` (cli.ts passes none through). */
export function childTarget(argv: readonly string[]): { socketDir: string; port: number } {
  const at = argv.indexOf('__postgres');
  const [dir, port] = at >= 0 ? argv.slice(at + 1) : [];
  const n = Number(port ?? DEFAULT_PORT);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`__postgres: bad port "${port}"`);
  return { socketDir: dir || DEFAULT_SOCKET_DIR, port: n };
}

export async function postgresChild(argv: readonly string[] = process.argv): Promise<number> {
  const { socketDir, port } = childTarget(argv);
  // Loaded here, not at the top: only this process needs pg, and every other agent command
  // starts faster without evaluating it.
  const { default: pg } = await import('pg');
  const clients = new Map<string, Promise<Client>>();
  const send = (message: ChildMessage) => process.stdout.write(`${JSON.stringify(message)}\n`);

  const clientFor = (database: string): Promise<Client> => {
    let client = clients.get(database);
    if (!client) {
      const c = new pg.Client({ host: socketDir, port, user: 'postgres', database, application_name: 'brine' });
      // A connection that dies between queries fails the next query, not the whole process.
      c.on('error', () => clients.delete(database));
      client = c.connect().then(() => c);
      clients.set(database, client);
      client.catch(() => clients.delete(database));
    }
    return client;
  };

  try {
    await clientFor('postgres');
  } catch (err) {
    send({ ready: false, error: describe(err) });
    return 1;
  }
  send({ ready: true });

  const pending = new Set<Promise<void>>();
  const serve = async (line: string) => {
    let request: ChildRequest;
    try {
      request = JSON.parse(line) as ChildRequest;
    } catch {
      return; // not ours to answer: the parent only sends JSON
    }
    const database = request.database ?? 'postgres';
    const query = async () => (await clientFor(database)).query({ text: request.sql, values: request.params ?? [] });
    try {
      let result;
      try {
        result = await query();
      } catch (err) {
        // The server restarted since this connection was made (a watch on its config): once more,
        // on a new connection. SQL errors carry a code and are answered as they are.
        if ((err as { code?: string }).code !== undefined && (err as { code?: string }).code !== '57P01') throw err;
        clients.delete(database);
        result = await query();
      }
      send({ id: request.id, rows: result.rows ?? [] });
    } catch (err) {
      send({ id: request.id, error: describe(err) });
    }
  };

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const p = serve(line).finally(() => pending.delete(p));
    pending.add(p);
  }
  await Promise.all(pending);
  await Promise.all([...clients.values()].map((c) => c.then((client) => client.end()).catch(() => {})));
  return 0;
}
