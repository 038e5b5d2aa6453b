import t from 'tap';
import { childTarget } from '../../../agent/postgres/child.js';
import { PostgresNotRunningError, postgresClient, quoteIdent, quoteLiteral } from '../../../agent/postgres/client.js';
import { context } from './fake.js';

t.test('quoteIdent doubles quotes; quoteLiteral doubles quotes and refuses backslashes and NUL', async (t) => {
  t.equal(quoteIdent('app'), '"app"');
  t.equal(quoteIdent('a"b'), '"a""b"');
  t.throws(() => quoteIdent('a\0b'));
  t.equal(quoteLiteral('UTF8'), `'UTF8'`);
  t.equal(quoteLiteral("it's"), `'it''s'`);
  t.throws(() => quoteLiteral('a\\b'));
  t.throws(() => quoteLiteral('a\0b'));
});

t.test('no socket: a readable error, nothing started, nothing cached', async (t) => {
  const dir = t.testdir({});
  const ctx = context();
  await t.rejects(postgresClient(ctx, { socketDir: dir, port: 5499 }), new PostgresNotRunningError(`PostgreSQL is not running (no socket at ${dir}/.s.PGSQL.5499)`));
  await t.rejects(postgresClient(ctx, { socketDir: dir, port: 5499 }), PostgresNotRunningError, 'a failed start is tried again');
});

t.test('the child takes its socket dir and port from the arguments after __postgres', async (t) => {
  t.same(childTarget(['node', 'agent.mjs', '__postgres']), { socketDir: '/var/run/postgresql', port: 5432 });
  t.same(childTarget(['node', 'agent.mjs', '__postgres', '/run/pg', '5433']), { socketDir: '/run/pg', port: 5433 });
  t.throws(() => childTarget(['node', 'agent.mjs', '__postgres', '/run/pg', 'x']), /bad port/);
});
