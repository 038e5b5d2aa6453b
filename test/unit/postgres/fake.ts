// A fake Postgres for module tests: replaces `postgresClients.connect`, records every statement,
// and answers reads from a small in-memory catalog (roles and databases).
import type { Test } from 'tap';
import type { RunResult, Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { PostgresError, PostgresNotRunningError, postgresClients, type PostgresClient } from '../../../agent/postgres/client.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { Masker } from '../../../agent/secret.js';
import { Value } from '@sinclair/typebox/value';

export interface FakeRole {
  rolcanlogin: boolean;
  rolcreatedb: boolean;
  rolsuper: boolean;
  rolpassword: string | null;
}

export interface FakeDatabase {
  owner: string;
  encoding: string;
  datcollate: string;
  datctype: string;
}

export interface Statement {
  sql: string;
  params: unknown[];
  database?: string;
  port: number;
}

const ENCODINGS: Record<string, string> = { utf8: 'UTF8', unicode: 'UTF8', latin1: 'LATIN1', iso88591: 'LATIN1', sqlascii: 'SQL_ASCII' };

export function fakePostgres(t: Test, catalog: { roles?: Record<string, FakeRole>; databases?: Record<string, FakeDatabase> } = {}) {
  const roles = catalog.roles ?? {};
  const databases = catalog.databases ?? {};
  const statements: Statement[] = [];
  const state = { running: true, connects: 0, fail: undefined as PostgresError | undefined };
  const saved = postgresClients.connect;
  postgresClients.connect = async (_ctx, options = {}) => {
    state.connects++;
    if (!state.running) throw new PostgresNotRunningError('PostgreSQL is not running (no socket at /var/run/postgresql/.s.PGSQL.5432)');
    const port = options.port ?? 5432;
    const client: PostgresClient = {
      async query<R>(sql: string, params: unknown[] = [], database?: string): Promise<R[]> {
        statements.push({ sql, params, port, ...(database ? { database } : {}) });
        if (/^SELECT .* FROM pg_catalog\.pg_authid WHERE rolname = \$1$/.test(sql)) {
          const role = roles[params[0] as string];
          return (role ? [{ ...role }] : []) as R[];
        }
        if (/^SELECT .* FROM pg_catalog\.pg_database WHERE datname = \$1$/.test(sql)) {
          const db = databases[params[0] as string];
          return (db ? [{ ...db }] : []) as R[];
        }
        if (sql.includes('pg_char_to_encoding')) {
          const canonical = ENCODINGS[String(params[0]).toLowerCase().replace(/[^a-z0-9]/g, '')] ?? '';
          return [{ encoding: canonical }] as R[];
        }
        if (state.fail) throw state.fail;
        return [];
      },
    };
    return client;
  };
  t.teardown(() => {
    postgresClients.connect = saved;
  });
  /** Statements that change something (everything but the reads). */
  const writes = () => statements.filter((s) => !s.sql.startsWith('SELECT ')).map((s) => s.sql);
  return { roles, databases, statements, state, writes };
}

export function context(): Context {
  const runner: Runner = {
    async run(argv): Promise<RunResult> {
      throw new Error(`unexpected command: ${argv.join(' ')}`);
    },
  };
  return {
    runner,
    facts: new Facts(),
    masker: new Masker(),
    statesDir: '/srv/states',
    pillar: {},
    env: 'test',
    renderTemplate: () => {
      throw new Error('no templates');
    },
  };
}

/** Arguments as the engine hands them over: defaults applied, checked against the schema. */
export function args(fn: StateFunction, given: Record<string, unknown>): any {
  const value = Value.Default(fn.schema, structuredClone(given));
  if (!Value.Check(fn.schema, value)) throw new Error(`invalid args ${JSON.stringify(given)}`);
  return value;
}

/** check → plan → apply, as the runner does (outside test mode). */
export async function converge(fn: StateFunction, a: any, ctx: Context) {
  const current = await fn.check(a, ctx);
  const plan = fn.plan(current, a, ctx);
  if (plan.changes.length) await fn.apply(a, plan, current, ctx);
  return plan;
}
