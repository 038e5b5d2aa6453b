import t from 'tap';
import { postgresDatabaseModule, sameLocale } from '../../../agent/modules/postgres_database.js';
import type { StateFunction } from '../../../agent/modules/types.js';
import { args, context, converge, fakePostgres, type FakeDatabase } from '../postgres/fake.js';

const { present, absent } = postgresDatabaseModule.functions as Record<string, StateFunction>;

const READ =
  'SELECT pg_catalog.pg_get_userbyid(datdba) AS owner, pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate, datctype FROM pg_catalog.pg_database WHERE datname = $1';
const CANONICAL = 'SELECT pg_catalog.pg_encoding_to_char(pg_catalog.pg_char_to_encoding($1)) AS encoding';

function db(over: Partial<FakeDatabase> = {}): FakeDatabase {
  return { owner: 'app', encoding: 'UTF8', datcollate: 'C.UTF-8', datctype: 'C.UTF-8', ...over };
}

t.test('present_Create: from template0, with owner and encoding; the reads it made', async (t) => {
  const pg = fakePostgres(t);
  const plan = await converge(present, args(present, { name: 'app', owner: 'app' }), context());
  t.same(plan.changes, [
    { what: 'database', old: null, new: 'created' },
    { what: 'owner', old: null, new: 'app' },
    { what: 'encoding', old: null, new: 'UTF8' },
  ]);
  t.same(pg.statements.slice(0, 2), [
    { sql: CANONICAL, params: ['UTF8'], port: 5432 },
    { sql: READ, params: ['app'], port: 5432 },
  ]);
  t.same(pg.writes(), [`CREATE DATABASE "app" WITH OWNER "app" ENCODING 'UTF8' TEMPLATE "template0"`]);
});

t.test('present_CreateWithLocaleAndTemplate: every option, encoding as PostgreSQL names it', async (t) => {
  const pg = fakePostgres(t);
  const a = args(present, { name: 'legacy', encoding: 'latin1', template: 'template1', lc_collate: 'de_DE.ISO-8859-1', lc_ctype: 'de_DE.ISO-8859-1' });
  const plan = await converge(present, a, context());
  t.same(plan.changes, [
    { what: 'database', old: null, new: 'created' },
    { what: 'encoding', old: null, new: 'LATIN1' },
    { what: 'lc_collate', old: null, new: 'de_DE.ISO-8859-1' },
    { what: 'lc_ctype', old: null, new: 'de_DE.ISO-8859-1' },
  ]);
  t.same(pg.writes(), [`CREATE DATABASE "legacy" WITH ENCODING 'LATIN1' TEMPLATE "template1" LC_COLLATE 'de_DE.ISO-8859-1' LC_CTYPE 'de_DE.ISO-8859-1'`]);
});

t.test('present_ExistsNoOp: same owner, encoding spelled differently, locale spelled differently', async (t) => {
  const pg = fakePostgres(t, { databases: { app: db() } });
  const plan = await converge(present, args(present, { name: 'app', owner: 'app', encoding: 'utf-8', lc_ctype: 'C.utf8' }), context());
  t.same(plan, { changes: [], reason: 'database app is in the correct state' });
  t.same(pg.writes(), []);
});

t.test('present_OwnerChangedByHand: ALTER DATABASE … OWNER TO', async (t) => {
  const pg = fakePostgres(t, { databases: { app: db({ owner: 'postgres' }) } });
  const plan = await converge(present, args(present, { name: 'app', owner: 'app' }), context());
  t.same(plan.changes, [{ what: 'owner', old: 'postgres', new: 'app' }]);
  t.same(pg.writes(), ['ALTER DATABASE "app" OWNER TO "app"']);
});

t.test('present_NoOwnerAsked: the owner is left alone', async (t) => {
  const pg = fakePostgres(t, { databases: { app: db({ owner: 'someone' }) } });
  t.same((await converge(present, args(present, { name: 'app' }), context())).changes, []);
  t.same(pg.writes(), []);
});

t.test('present_EncodingDiffers: refused with what to do, nothing run', async (t) => {
  const pg = fakePostgres(t, { databases: { app: db({ encoding: 'SQL_ASCII' }) } });
  const ctx = context();
  const a = args(present, { name: 'app', owner: 'other' });
  const current = await present.check(a, ctx);
  t.throws(() => present.plan(current, a, ctx), {
    message: 'database app has encoding SQL_ASCII, not UTF8; PostgreSQL cannot change it in place: dump the database, drop it, and restore the dump into one created with encoding: UTF8',
  });
  t.same(pg.writes(), []);
});

t.test('present_LocaleDiffers: refused too', async (t) => {
  fakePostgres(t, { databases: { app: db() } });
  const ctx = context();
  const a = args(present, { name: 'app', lc_collate: 'en_US.UTF-8' });
  const current = await present.check(a, ctx);
  t.throws(() => present.plan(current, a, ctx), /has lc_collate C.UTF-8, not en_US.UTF-8; .*dump/);
});

t.test('present_UnknownEncoding: a clear error from check', async (t) => {
  fakePostgres(t);
  await t.rejects(present.check(args(present, { name: 'app', encoding: 'klingon' }), context()), {
    message: 'encoding "klingon" is not one PostgreSQL knows (UTF8, LATIN1, SQL_ASCII…)',
  });
});

t.test('present_NotRunning: --test predicts the creation; apply fails with the readable reason', async (t) => {
  const pg = fakePostgres(t);
  pg.state.running = false;
  const ctx = context();
  const a = args(present, { name: 'app', owner: 'app', encoding: 'utf-8' });
  const current = await present.check(a, ctx);
  const plan = present.plan(current, a, ctx);
  t.same(plan.changes, [
    { what: 'database', old: null, new: 'created' },
    { what: 'owner', old: null, new: 'app' },
    { what: 'encoding', old: null, new: 'UTF8' },
  ]);
  await t.rejects(present.apply(a, plan, current, ctx), /PostgreSQL is not running \(no socket at/);
  t.same(pg.statements, []);
});

t.test('present_CameUpSinceCheck: apply checks again', async (t) => {
  const pg = fakePostgres(t);
  pg.state.running = false;
  const ctx = context();
  const a = args(present, { name: 'app' });
  const current = await present.check(a, ctx);
  const plan = present.plan(current, a, ctx);
  pg.state.running = true;
  await present.apply(a, plan, current, ctx);
  t.same(pg.writes(), [`CREATE DATABASE "app" WITH ENCODING 'UTF8' TEMPLATE "template0"`]);
});

t.test('validate: database, owner and template names', async (t) => {
  t.same(present.validate!(args(present, { name: 'app', owner: 'app' })), []);
  t.match(present.validate!(args(present, { name: 'my-app' })), [{ key: 'name' }]);
  t.match(present.validate!(args(present, { name: 'app', owner: 'App"' })), [{ key: 'owner' }]);
  t.match(present.validate!(args(present, { name: 'app', template: 'x y' })), [{ key: 'template' }]);
  for (const name of ['postgres', 'template0', 'template1']) t.match(absent.validate!(args(absent, { name })), [{ key: 'name', message: /refusing/ }]);
  t.same(absent.validate!(args(absent, { name: 'old_app' })), []);
});

t.test('schema: defaults, patterns for encoding and locales', async (t) => {
  t.same(args(present, { name: 'app' }), { name: 'app', encoding: 'UTF8', template: 'template0', port: 5432 });
  t.throws(() => args(present, { name: 'app', encoding: "UTF8'; DROP DATABASE x; --" }));
  t.throws(() => args(present, { name: 'app', lc_collate: "C'" }));
  t.throws(() => args(present, { name: 'app', tablespace: 'x' }));
});

t.test('sameLocale: codesets compared case- and dash-blind, the rest exactly', async (t) => {
  t.ok(sameLocale('en_US.UTF-8', 'en_US.utf8'));
  t.ok(sameLocale('C', 'C'));
  t.ok(sameLocale('de_DE.ISO-8859-15@euro', 'de_DE.iso885915@euro'));
  t.notOk(sameLocale('en_US.UTF-8', 'en_GB.UTF-8'));
  t.notOk(sameLocale('C', 'C.UTF-8'));
});

t.test('absent_Drop: DROP DATABASE, quoted, not forced', async (t) => {
  const pg = fakePostgres(t, { databases: { old_app: db() } });
  const plan = await converge(absent, args(absent, { name: 'old_app' }), context());
  t.same(plan.changes, [{ what: 'database', old: 'present', new: null }]);
  t.same(pg.writes(), ['DROP DATABASE "old_app"']);
});

t.test('absent_AbsentAlready', async (t) => {
  const pg = fakePostgres(t);
  t.same(await converge(absent, args(absent, { name: 'old_app' }), context()), { changes: [], reason: 'database old_app is already absent' });
  t.same(pg.writes(), []);
});
