import t from 'tap';
import { postgresUserModule } from '../../../agent/modules/postgres_user.js';
import type { StateFunction } from '../../../agent/modules/types.js';
import { scramVerifier, verifierMatches } from '../../../agent/postgres/scram.js';
import { MASK } from '../../../agent/secret.js';
import { args, context, converge, fakePostgres, type FakeRole } from '../postgres/fake.js';

const { present, absent } = postgresUserModule.functions as Record<string, StateFunction>;

const PASSWORD = 'Hunter2-never-printed-4711';
const READ = 'SELECT rolcanlogin, rolcreatedb, rolsuper, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1';

function role(over: Partial<FakeRole> = {}): FakeRole {
  return { rolcanlogin: true, rolcreatedb: false, rolsuper: false, rolpassword: scramVerifier(PASSWORD), ...over };
}

/** The verifier in `… PASSWORD 'SCRAM-SHA-256$…'`, and the statement with it replaced by V. */
function splitVerifier(sql: string): { verifier: string; sql: string } {
  const m = /PASSWORD '(SCRAM-SHA-256\$[^']+)'/.exec(sql);
  if (!m) throw new Error(`no verifier in ${sql}`);
  return { verifier: m[1]!, sql: sql.replace(m[1]!, 'V') };
}

t.test('present_CreateRole: one CREATE ROLE with every attribute and a verifier, never the password', async (t) => {
  const pg = fakePostgres(t);
  const ctx = context();
  const a = args(present, { name: 'app', password: PASSWORD });
  const current = await present.check(a, ctx);
  const plan = present.plan(current, a, ctx);
  t.same(plan.changes, [
    { what: 'role', old: null, new: 'created' },
    { what: 'login', old: null, new: true },
    { what: 'createdb', old: null, new: false },
    { what: 'password', old: null, new: MASK },
  ]);
  await present.apply(a, plan, current, ctx);
  t.same(pg.statements[0], { sql: READ, params: ['app'], port: 5432 });
  const writes = pg.writes();
  t.equal(writes.length, 1);
  const { verifier, sql } = splitVerifier(writes[0]!);
  t.equal(sql, `CREATE ROLE "app" WITH LOGIN NOCREATEDB PASSWORD 'V'`);
  t.ok(verifierMatches(PASSWORD, verifier), 'the verifier is of the wanted password');
  t.notOk(JSON.stringify(pg.statements).includes(PASSWORD), 'the password never goes to the server');
  t.notOk(JSON.stringify(plan).includes(PASSWORD));
  t.equal(ctx.masker.mask(`x ${PASSWORD} ${verifier}`), `x ${MASK} ${MASK}`, 'password and verifier are masked in any output');
});

t.test('present_CreateWithoutPassword: superuser and createdb as asked, no PASSWORD clause', async (t) => {
  const pg = fakePostgres(t);
  const ctx = context();
  const plan = await converge(present, args(present, { name: 'admin', login: false, createdb: true, superuser: true }), ctx);
  t.same(plan.changes, [
    { what: 'role', old: null, new: 'created' },
    { what: 'login', old: null, new: false },
    { what: 'createdb', old: null, new: true },
    { what: 'superuser', old: null, new: true },
  ]);
  t.same(pg.writes(), ['CREATE ROLE "admin" WITH NOLOGIN CREATEDB SUPERUSER']);
});

t.test('present_ExistsNoOp: right attributes and password plan nothing and run nothing', async (t) => {
  const pg = fakePostgres(t, { roles: { app: role() } });
  const ctx = context();
  const plan = await converge(present, args(present, { name: 'app', password: PASSWORD }), ctx);
  t.same(plan, { changes: [], reason: 'role app is in the correct state' });
  t.same(pg.writes(), []);
});

t.test('present_PasswordChangedByHand: ALTER ROLE with a new verifier, shown masked', async (t) => {
  const pg = fakePostgres(t, { roles: { app: role({ rolpassword: scramVerifier('something else') }) } });
  const ctx = context();
  const plan = await converge(present, args(present, { name: 'app', password: PASSWORD }), ctx);
  t.same(plan.changes, [{ what: 'password', old: MASK, new: MASK }]);
  const { verifier, sql } = splitVerifier(pg.writes()[0]!);
  t.equal(sql, `ALTER ROLE "app" WITH PASSWORD 'V'`);
  t.ok(verifierMatches(PASSWORD, verifier));
});

t.test('present_Md5OrNoPassword: an md5 hash or none is replaced by a SCRAM verifier', async (t) => {
  const pg = fakePostgres(t, { roles: { a: role({ rolpassword: 'md5a3556571e93b0d20722ba62be61e8c2d' }), b: role({ rolpassword: null }) } });
  const ctx = context();
  t.same((await converge(present, args(present, { name: 'a', password: PASSWORD }), ctx)).changes, [{ what: 'password', old: MASK, new: MASK }]);
  t.same((await converge(present, args(present, { name: 'b', password: PASSWORD }), ctx)).changes, [{ what: 'password', old: null, new: MASK }]);
  t.same(pg.writes().map((s) => splitVerifier(s).sql), [`ALTER ROLE "a" WITH PASSWORD 'V'`, `ALTER ROLE "b" WITH PASSWORD 'V'`]);
});

t.test('present_FlagsChangedByHand: only the attributes that differ, in one ALTER ROLE', async (t) => {
  const pg = fakePostgres(t, { roles: { app: role({ rolcanlogin: false, rolcreatedb: true }) } });
  const ctx = context();
  const plan = await converge(present, args(present, { name: 'app', password: PASSWORD }), ctx);
  t.same(plan.changes, [
    { what: 'login', old: false, new: true },
    { what: 'createdb', old: true, new: false },
  ]);
  t.same(pg.writes(), ['ALTER ROLE "app" WITH LOGIN NOCREATEDB']);
});

t.test('present_SuperuserUntouchedUnlessGiven', async (t) => {
  const pg = fakePostgres(t, { roles: { boss: role({ rolsuper: true }) } });
  const ctx = context();
  t.same((await converge(present, args(present, { name: 'boss' }), ctx)).changes, []);
  t.same((await converge(present, args(present, { name: 'boss', superuser: false }), ctx)).changes, [{ what: 'superuser', old: true, new: false }]);
  t.same(pg.writes(), ['ALTER ROLE "boss" WITH NOSUPERUSER']);
});

t.test('present_NoPasswordAsked: an existing password is left alone', async (t) => {
  const pg = fakePostgres(t, { roles: { app: role() } });
  const plan = await converge(present, args(present, { name: 'app' }), context());
  t.same(plan.changes, []);
  t.same(pg.writes(), []);
});

t.test('present_VerifierGiven: stored as it is, compared exactly', async (t) => {
  const verifier = scramVerifier(PASSWORD);
  const pg = fakePostgres(t, { roles: { app: role({ rolpassword: scramVerifier(PASSWORD) }) } });
  const ctx = context();
  const plan = await converge(present, args(present, { name: 'app', password: verifier }), ctx);
  t.same(plan.changes, [{ what: 'password', old: MASK, new: MASK }], 'same password, other salt: not the given verifier');
  t.same(pg.writes(), [`ALTER ROLE "app" WITH PASSWORD '${verifier}'`]);
  pg.roles.app!.rolpassword = verifier;
  t.same((await converge(present, args(present, { name: 'app', password: verifier }), ctx)).changes, []);
});

t.test('present_Port: the client of the asked port', async (t) => {
  const pg = fakePostgres(t);
  await converge(present, args(present, { name: 'app', port: 5433 }), context());
  t.same(pg.statements.map((s) => s.port), [5433, 5433]);
});

t.test('present_NotRunning: --test predicts the creation; apply fails with the readable reason', async (t) => {
  const pg = fakePostgres(t);
  pg.state.running = false;
  const ctx = context();
  const a = args(present, { name: 'app', password: PASSWORD });
  const current = await present.check(a, ctx);
  const plan = present.plan(current, a, ctx);
  t.same(plan.changes.map((c) => c.what), ['role', 'login', 'createdb', 'password']);
  await t.rejects(present.apply(a, plan, current, ctx), { message: 'PostgreSQL is not running (no socket at /var/run/postgresql/.s.PGSQL.5432)' });
  t.same(pg.statements, []);
});

t.test('present_CameUpSinceCheck: apply checks again and does what is still needed', async (t) => {
  const pg = fakePostgres(t, { roles: { app: role({ rolcreatedb: true }) } });
  pg.state.running = false;
  const ctx = context();
  const a = args(present, { name: 'app', password: PASSWORD });
  const current = await present.check(a, ctx);
  const plan = present.plan(current, a, ctx);
  pg.state.running = true;
  await present.apply(a, plan, current, ctx);
  t.same(pg.writes(), ['ALTER ROLE "app" WITH NOCREATEDB']);
});

t.test('present_ServerError: the server\'s message, and the password nowhere in it', async (t) => {
  const pg = fakePostgres(t);
  const { PostgresError } = await import('../../../agent/postgres/client.js');
  pg.state.fail = new PostgresError('permission denied to create role', '42501');
  const ctx = context();
  await t.rejects(converge(present, args(present, { name: 'app', password: PASSWORD }), ctx), { message: 'permission denied to create role' });
});

t.test('validate: names, reserved names, non-ASCII passwords (never echoed)', async (t) => {
  t.same(present.validate!(args(present, { name: 'app_1' })), []);
  t.match(present.validate!(args(present, { name: 'App' })), [{ key: 'name', message: /not a PostgreSQL name/ }]);
  t.match(present.validate!(args(present, { name: 'x"; DROP ROLE postgres; --' })), [{ key: 'name' }]);
  t.match(present.validate!(args(present, { name: 'a'.repeat(64) })), [{ key: 'name' }]);
  t.same(present.validate!(args(present, { name: 'a'.repeat(63) })), []);
  t.match(present.validate!(args(present, { name: 'pg_app' })), [{ key: 'name', message: /reserved/ }]);
  const problems = present.validate!(args(present, { name: 'app', password: 'pässwort-geheim' }));
  t.match(problems, [{ key: 'password', message: /ASCII/ }]);
  t.notOk(JSON.stringify(problems).includes('geheim'));
  t.match(absent.validate!(args(absent, { name: 'postgres' })), [{ key: 'name', message: /refusing/ }]);
  t.match(absent.validate!(args(absent, { name: 'Bad-Name' })), [{ key: 'name' }]);
});

t.test('schema: defaults and no unknown arguments', async (t) => {
  t.same(args(present, { name: 'app' }), { name: 'app', login: true, createdb: false, port: 5432 });
  t.throws(() => args(present, { name: 'app', createrole: true }));
  t.throws(() => args(present, { name: 'app', password: 1234 }));
});

t.test('absent_Drop: DROP ROLE, quoted', async (t) => {
  const pg = fakePostgres(t, { roles: { old_app: role() } });
  const plan = await converge(absent, args(absent, { name: 'old_app' }), context());
  t.same(plan.changes, [{ what: 'role', old: 'present', new: null }]);
  t.same(pg.writes(), ['DROP ROLE "old_app"']);
});

t.test('absent_AbsentAlready', async (t) => {
  const pg = fakePostgres(t);
  t.same(await converge(absent, args(absent, { name: 'old_app' }), context()), { changes: [], reason: 'role old_app is already absent' });
  t.same(pg.writes(), []);
});

t.test('absent_NotRunning: fails (a stopped server still has its roles)', async (t) => {
  const pg = fakePostgres(t);
  pg.state.running = false;
  await t.rejects(absent.check(args(absent, { name: 'old_app' }), context()), /PostgreSQL is not running/);
});
