// postgres_user and postgres_database on a real booted Debian 12 server with PostgreSQL 15: --test
// predicts the first apply (also before PostgreSQL is installed), the role logs in with its
// password, a second apply changes nothing, changes made by hand (password, owner, login,
// createdb) are repaired, an encoding that differs is refused, `absent` drops both, and the
// password appears in no output, no journal entry and no server log.
//
// The test servers share the host's network: this cluster listens on no TCP address at all
// (listen_addresses = ''), only on its unix socket, and on port 5433 so `port:` is exercised.
import t from 'tap';
import { MASK } from '../../agent/secret.js';
import { verifierMatches } from '../../agent/postgres/scram.js';
import type { TestServer } from '../server/server.js';
import { agent, applyJson, bootWithAgent, byId, changesById, stage, type AgentRun } from './brine.js';

const ROOT = '/srv/pgtest';
const PORT = 5433;
const PASSWORD = 'Pg-secret-never-printed-8817';
/** What an admin sets by hand; PostgreSQL computes its verifier (a vector for verifierMatches). */
const HAND_PASSWORD = 'correct horse battery staple';

const pillar = {
  'pillar/common.yaml': 'db:\n  name: shop\n',
  'pillar/test/secrets.yaml': `secrets:\n  DB_PASSWORD: ${PASSWORD}\n`,
};

const present = `
shop-role:
  postgres_user.present:
    - name: {{ pillar.db.name }}
    - password: {{ pillar.secrets.DB_PASSWORD }}
    - port: ${PORT}
shop-db:
  postgres_database.present:
    - name: {{ pillar.db.name }}
    - owner: {{ pillar.db.name }}
    - port: ${PORT}
    - require:
      - postgres_user: shop-role
`;

const presentTree = { 'states/top.yaml': "'*':\n  - db\n", 'states/db.yaml': present, ...pillar };

const legacyTree = {
  ...presentTree,
  'states/db.yaml': `${present}
legacy-db:
  postgres_database.present:
    - name: legacy
    - port: ${PORT}
`,
};

const absentTree = {
  'states/top.yaml': "'*':\n  - db\n",
  'states/db.yaml': `
shop-db-gone:
  postgres_database.absent:
    - name: shop
    - port: ${PORT}
shop-role-gone:
  postgres_user.absent:
    - name: shop
    - port: ${PORT}
    - require:
      - postgres_database: shop-db-gone
`,
  ...pillar,
};

async function psql(server: TestServer, sql: string): Promise<string> {
  const r = await server.exec(['runuser', '-u', 'postgres', '--', 'psql', '-p', String(PORT), '-XAtc', sql]);
  return r.stdout.trim();
}

async function storedPassword(server: TestServer): Promise<string> {
  return psql(server, "SELECT rolpassword FROM pg_authid WHERE rolname = 'shop'");
}

/** Logs in as shop with a password, over the unix socket (the test's pg_hba line for shop). */
async function logsIn(server: TestServer, password: string): Promise<boolean> {
  const r = await server.exec(['psql', '-h', '/var/run/postgresql', '-p', String(PORT), '-U', 'shop', '-d', 'shop', '-XAtc', 'SELECT current_user'], {
    allowFailure: true,
    env: { PGPASSWORD: password },
  });
  return r.code === 0 && r.stdout.trim() === 'shop';
}

async function installPostgres(server: TestServer): Promise<void> {
  // Not started by the package: its first start would listen on the shared loopback.
  await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
  const install = () => server.exec(['apt-get', 'install', '-y', '-q', 'postgresql'], { timeoutMs: 600_000 });
  await install().catch(async () => {
    await server.exec(['apt-get', 'update', '-q'], { timeoutMs: 300_000 });
    await install();
  });
  await server.exec(['rm', '-f', '/usr/sbin/policy-rc.d']);
  await server.writeFile('/etc/postgresql/15/main/conf.d/brine-test.conf', `listen_addresses = ''\nport = ${PORT}\n`);
  // For the login check only: shop may log in with its password over the socket. brine itself
  // needs nothing here (it uses the default `local all postgres peer`).
  await server.exec(['sed', '-i', '1i local shop shop scram-sha-256', '/etc/postgresql/15/main/pg_hba.conf']);
  await server.exec(['systemctl', 'restart', 'postgresql@15-main'], { timeoutMs: 120_000 });
}

t.test('postgres roles and databases: created, converged, repaired, dropped; the password never shown', async (t) => {
  const timings: string[] = [];
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(1)}s`);
    }
  };
  const server = await timed('boot', () => bootWithAgent());
  t.teardown(() => server.stop());
  const runs: AgentRun[] = [];
  const json = async (args: string[] = []) => {
    const r = await timed(`agent apply ${args.join(' ')}`.trim(), () => applyJson(server, ROOT, args));
    runs.push(r);
    return r;
  };
  await stage(server, ROOT, presentTree);

  // Before PostgreSQL is installed (pkg.installed earlier in a real run): no socket, so --test
  // predicts the creation of everything.
  const early = await json(['--test']);
  t.equal(early.code, 0, `--test without PostgreSQL: ${early.output}`);
  t.equal(early.summary.failed, 0);

  await timed('apt-get install postgresql', () => installPostgres(server));
  t.equal(await psql(server, 'SHOW listen_addresses'), '', 'the cluster listens on no TCP address');

  const predicted = await json(['--test']);
  t.equal(predicted.code, 0, predicted.output);
  t.equal(await psql(server, "SELECT count(*) FROM pg_roles WHERE rolname = 'shop'"), '0', 'test mode created no role');

  const first = await json();
  t.equal(first.code, 0, `first apply: ${first.output}`);
  t.same(byId(first.states, 'shop-role').changes, [
    { what: 'role', old: null, new: 'created' },
    { what: 'login', old: null, new: true },
    { what: 'createdb', old: null, new: false },
    { what: 'password', old: null, new: MASK },
  ]);
  t.same(byId(first.states, 'shop-db').changes, [
    { what: 'database', old: null, new: 'created' },
    { what: 'owner', old: null, new: 'shop' },
    { what: 'encoding', old: null, new: 'UTF8' },
  ]);
  t.same(changesById(predicted.states), changesById(first.states), '--test predicted exactly what apply did');
  t.same(changesById(early.states), changesById(first.states), '--test before PostgreSQL was installed too');

  // What a person would check.
  t.equal(await psql(server, "SELECT rolcanlogin, rolcreatedb, rolsuper FROM pg_roles WHERE rolname = 'shop'"), 't|f|f');
  t.equal(await psql(server, "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'shop'"), 'shop|UTF8');
  const stored = await storedPassword(server);
  t.match(stored, /^SCRAM-SHA-256\$4096:/, 'stored as a SCRAM verifier');
  t.ok(verifierMatches(PASSWORD, stored), 'of the wanted password');
  t.ok(await logsIn(server, PASSWORD), 'shop logs in with its password');
  t.notOk(await logsIn(server, 'wrong'), 'and not with another');

  const second = await json();
  t.equal(second.code, 0);
  t.equal(second.summary.changed, 0, `second apply changes nothing: ${JSON.stringify(changesById(second.states))}`);
  t.match(byId(second.states, 'shop-role').comment, /role shop is in the correct state/);

  // A password changed by hand: PostgreSQL's own verifier of it is recognised, then replaced.
  await psql(server, `ALTER ROLE shop PASSWORD '${HAND_PASSWORD}'`);
  const handVerifier = await storedPassword(server);
  t.ok(verifierMatches(HAND_PASSWORD, handVerifier), 'verifierMatches agrees with a verifier PostgreSQL computed');
  t.notOk(verifierMatches(PASSWORD, handVerifier));
  t.comment(`PostgreSQL's verifier of "${HAND_PASSWORD}": ${handVerifier}`);
  const drifted = await json(['--test']);
  t.same(Object.values(changesById(drifted.states)), [[{ what: 'password', old: MASK, new: MASK }]], '--test sees the changed password');
  const repaired = await json();
  t.equal(repaired.code, 0, repaired.output);
  t.same(Object.values(changesById(repaired.states)), [[{ what: 'password', old: MASK, new: MASK }]]);
  t.ok(verifierMatches(PASSWORD, await storedPassword(server)), 'the password is the wanted one again');
  t.ok(await logsIn(server, PASSWORD));
  t.notOk(await logsIn(server, HAND_PASSWORD));

  // Owner, login and createdb changed by hand.
  await psql(server, 'ALTER DATABASE shop OWNER TO postgres');
  await psql(server, 'ALTER ROLE shop NOLOGIN CREATEDB');
  const fixed = await json();
  t.equal(fixed.code, 0, fixed.output);
  t.same(byId(fixed.states, 'shop-role').changes, [
    { what: 'login', old: false, new: true },
    { what: 'createdb', old: true, new: false },
  ]);
  t.same(byId(fixed.states, 'shop-db').changes, [{ what: 'owner', old: 'postgres', new: 'shop' }]);
  t.equal(await psql(server, "SELECT rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = 'shop'"), 't|f');
  t.equal(await psql(server, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"), 'shop');
  t.equal((await json()).summary.changed, 0, 'converged again');

  // An encoding cannot be converged in place: the state fails and says what to do.
  await psql(server, "CREATE DATABASE legacy ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
  await stage(server, ROOT, legacyTree);
  const refused = await json();
  t.equal(refused.code, 2, 'a failed state fails the run');
  t.equal(byId(refused.states, 'legacy-db').status, 'failed');
  t.match(byId(refused.states, 'legacy-db').comment, /database legacy has encoding SQL_ASCII, not UTF8; .*dump/);
  t.equal(refused.summary.changed, 0);
  t.equal(await psql(server, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'legacy'"), 'SQL_ASCII', 'nothing was done to it');

  // The console, as a person runs it, and `show`.
  await stage(server, ROOT, presentTree);
  const human = await timed('agent apply (console)', () => agent(server, ROOT, ['apply']));
  runs.push(human);
  t.equal(human.code, 0, human.output);
  t.match(human.stdout, /0 changed, 0 failed/);
  const shown = await agent(server, ROOT, ['show']);
  runs.push(shown);
  t.match(shown.output, /password: "?\*{8}"?/, 'show masks the password');

  // Errors a person can read: a role that still owns a database, a server that is down.
  await stage(server, ROOT, { ...absentTree, 'states/db.yaml': `shop-role-gone:\n  postgres_user.absent:\n    - name: shop\n    - port: ${PORT}\n` });
  const owns = await json();
  t.equal(owns.code, 2);
  t.match(byId(owns.states, 'shop-role-gone').comment, /role "shop" cannot be dropped because some objects depend on it \(owner of database shop\)/);
  await server.exec(['systemctl', 'stop', 'postgresql@15-main']);
  await stage(server, ROOT, presentTree);
  const down = await json();
  t.equal(down.code, 2);
  t.equal(byId(down.states, 'shop-role').comment, `PostgreSQL is not running (no socket at /var/run/postgresql/.s.PGSQL.${PORT})`);
  await server.exec(['systemctl', 'start', 'postgresql@15-main'], { timeoutMs: 120_000 });

  // absent drops the database, then the role.
  await stage(server, ROOT, absentTree);
  const dropped = await json();
  t.equal(dropped.code, 0, dropped.output);
  t.same(byId(dropped.states, 'shop-db-gone').changes, [{ what: 'database', old: 'present', new: null }]);
  t.same(byId(dropped.states, 'shop-role-gone').changes, [{ what: 'role', old: 'present', new: null }]);
  t.equal(await psql(server, "SELECT count(*) FROM pg_database WHERE datname = 'shop'"), '0');
  t.equal(await psql(server, "SELECT count(*) FROM pg_roles WHERE rolname = 'shop'"), '0');
  const again = await json();
  t.equal(again.summary.changed, 0, 'absent twice changes nothing');

  // The password: in no output, no journal entry, no server log.
  for (const run of runs) t.notMatch(run.output, PASSWORD, 'no output shows the password');
  const journal = await server.exec(['journalctl', '--no-pager', '-o', 'export'], { allowFailure: true });
  t.notMatch(journal.stdout, PASSWORD, 'the journal never got the password');
  t.match(journal.stdout, /postgres_user/, '(the journal did record the runs)');
  const serverLog = await server.exec(['sh', '-c', 'cat /var/log/postgresql/*.log']);
  t.notMatch(serverLog.stdout, PASSWORD, "PostgreSQL's log never got the password");
  const children = await server.exec(['sh', '-c', "grep -l '__postgre[s]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"]);
  t.equal(children.stdout.trim(), '0', 'no client child left running');

  t.comment(timings.join(', '));
});
