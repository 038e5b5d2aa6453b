// postgres_user.present / postgres_user.absent — PostgreSQL roles
//
//   app:
//     postgres_user.present:
//       - password: {{ pillar.secrets.DB_PASSWORD }}   # stored as a SCRAM-SHA-256 verifier
//       - login: true
//       - createdb: false
//   old_app:
//     postgres_user.absent: []
//
// An existing role is converged, not only created: a password, login or createdb that differs
// from the state (changed by hand, say) is set again. The password is a secret: brine computes
// the SCRAM verifier itself and sends only that, checks it by recomputing with the stored salt,
// and shows a change of it as ********. `password` may also be given as a verifier
// (SCRAM-SHA-256$4096:…), which is then stored as it is. `superuser` is left alone unless given.
//
// brine connects as the postgres OS user over the local socket (peer authentication); `port`
// picks the cluster.
import { Type, type Static } from '@sinclair/typebox';
import { PostgresNotRunningError, postgresClients, quoteIdent, quoteLiteral, type PostgresClient } from '../postgres/client.js';
import { nameProblems } from '../postgres/names.js';
import { VERIFIER_PATTERN, isScramSafe, scramVerifier, verifierMatches } from '../postgres/scram.js';
import { MASK } from '../secret.js';
import { stateFunction, type ArgProblem, type Change, type Context, type Plan, type StateModule } from './types.js';

const Port = Type.Integer({ minimum: 1, maximum: 65535, default: 5432 });

function roleNameProblems(name: string): ArgProblem[] {
  const problems = nameProblems('name', name);
  // PostgreSQL refuses to create these: the prefix is its own (pg_monitor, pg_read_all_data…).
  if (problems.length === 0 && name.startsWith('pg_')) problems.push({ key: 'name', message: 'role names starting with pg_ are reserved by PostgreSQL' });
  return problems;
}

async function connect(port: number, ctx: Context): Promise<PostgresClient> {
  return postgresClients.connect(ctx, { port });
}

interface RoleRow {
  rolcanlogin: boolean;
  rolcreatedb: boolean;
  rolsuper: boolean;
  rolpassword: string | null;
}

const READ_ROLE = 'SELECT rolcanlogin, rolcreatedb, rolsuper, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1';

async function readRole(client: PostgresClient, name: string): Promise<RoleRow | null> {
  const rows = await client.query<RoleRow>(READ_ROLE, [name]);
  return rows[0] ?? null;
}

// ---------------------------------------------------------------------------------------------
// postgres_user.present

const PresentArgs = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    /** The password (a secret), or a SCRAM-SHA-256 verifier of it. */
    password: Type.Optional(Type.String({ minLength: 1 })),
    login: Type.Boolean({ default: true }),
    createdb: Type.Boolean({ default: false }),
    superuser: Type.Optional(Type.Boolean()),
    port: Port,
  },
  { additionalProperties: false },
);
type PresentArgs = Static<typeof PresentArgs>;

/** What the role is now. The stored verifier is not kept: only whether it matches. */
export interface RoleNow {
  /** Set when the server is not running (yet): everything is planned as for a new role. */
  notRunning?: string;
  exists: boolean;
  login: boolean;
  createdb: boolean;
  superuser: boolean;
  hasPassword: boolean;
  /** Whether the stored password is the wanted one; null when the state asks for none. */
  passwordMatches: boolean | null;
}

const NO_ROLE = { exists: false, login: false, createdb: false, superuser: false, hasPassword: false, passwordMatches: null };

function isVerifier(password: string): boolean {
  return VERIFIER_PATTERN.test(password);
}

/** The attribute keywords of CREATE/ALTER ROLE for what the plan changes. */
function roleOptions(changes: Change[], args: { password?: string }, ctx: Context): string[] {
  const options: string[] = [];
  for (const c of changes) {
    if (c.what === 'login') options.push(c.new ? 'LOGIN' : 'NOLOGIN');
    else if (c.what === 'createdb') options.push(c.new ? 'CREATEDB' : 'NOCREATEDB');
    else if (c.what === 'superuser') options.push(c.new ? 'SUPERUSER' : 'NOSUPERUSER');
    else if (c.what === 'password' && args.password !== undefined) {
      const verifier = isVerifier(args.password) ? args.password : scramVerifier(args.password);
      // Checked again right before it goes into the literal: DDL takes no bind parameters.
      if (!VERIFIER_PATTERN.test(verifier)) throw new Error('the password verifier is malformed');
      ctx.masker.add(verifier);
      options.push(`PASSWORD ${quoteLiteral(verifier)}`);
    }
  }
  return options;
}

async function checkRole(args: PresentArgs, ctx: Context): Promise<RoleNow> {
  // A password written inline in a state is as secret as one from a secrets pillar.
  if (args.password !== undefined) ctx.masker.add(args.password);
  let client: PostgresClient;
  try {
    client = await connect(args.port, ctx);
  } catch (err) {
    // Not installed yet (pkg.installed earlier in the run): --test predicts the creation.
    if (err instanceof PostgresNotRunningError) return { ...NO_ROLE, notRunning: err.message };
    throw err;
  }
  const row = await readRole(client, args.name);
  if (!row) return { ...NO_ROLE };
  const stored = row.rolpassword;
  let passwordMatches: boolean | null = null;
  if (args.password !== undefined) passwordMatches = isVerifier(args.password) ? stored === args.password : verifierMatches(args.password, stored);
  return {
    exists: true,
    login: row.rolcanlogin,
    createdb: row.rolcreatedb,
    superuser: row.rolsuper,
    hasPassword: stored !== null,
    passwordMatches,
  };
}

function planRole(now: RoleNow, args: PresentArgs): Plan {
  const changes: Change[] = [];
  if (!now.exists) {
    changes.push({ what: 'role', old: null, new: 'created' });
    changes.push({ what: 'login', old: null, new: args.login });
    changes.push({ what: 'createdb', old: null, new: args.createdb });
    if (args.superuser !== undefined) changes.push({ what: 'superuser', old: null, new: args.superuser });
    if (args.password !== undefined) changes.push({ what: 'password', old: null, new: MASK });
    return { changes };
  }
  if (now.login !== args.login) changes.push({ what: 'login', old: now.login, new: args.login });
  if (now.createdb !== args.createdb) changes.push({ what: 'createdb', old: now.createdb, new: args.createdb });
  if (args.superuser !== undefined && now.superuser !== args.superuser) changes.push({ what: 'superuser', old: now.superuser, new: args.superuser });
  if (now.passwordMatches === false) changes.push({ what: 'password', old: now.hasPassword ? MASK : null, new: MASK });
  return { changes, reason: changes.length ? undefined : `role ${args.name} is in the correct state` };
}

const present = stateFunction(PresentArgs, {
  validate(args) {
    const problems = roleNameProblems(args.name);
    // Never the value itself in a message: it is a secret.
    if (args.password !== undefined && !isVerifier(args.password) && !isScramSafe(args.password))
      problems.push({ key: 'password', message: 'must be ASCII (or a SCRAM-SHA-256 verifier): brine cannot reproduce how PostgreSQL normalizes other characters' });
    return problems;
  },
  warm: (args, ctx) => connect(args.port, ctx),
  check: checkRole,
  plan: planRole,
  async apply(args, plan, now, ctx) {
    if (now.notRunning) {
      // The server was not there when the state was checked; it may have come up since.
      now = await checkRole(args, ctx);
      if (now.notRunning) throw new Error(now.notRunning);
      plan = planRole(now, args);
      if (plan.changes.length === 0) return;
    }
    const client = await connect(args.port, ctx);
    const role = quoteIdent(args.name);
    const options = roleOptions(plan.changes, args, ctx);
    if (!now.exists) await client.query(`CREATE ROLE ${role} WITH ${options.join(' ')}`);
    else await client.query(`ALTER ROLE ${role} WITH ${options.join(' ')}`);
  },
});

// ---------------------------------------------------------------------------------------------
// postgres_user.absent

const AbsentArgs = Type.Object({ name: Type.String({ minLength: 1 }), port: Port }, { additionalProperties: false });

const absent = stateFunction(AbsentArgs, {
  validate(args) {
    const problems = nameProblems('name', args.name);
    if (args.name === 'postgres') problems.push({ key: 'name', message: 'refusing to drop the postgres role (the cluster\'s own superuser)' });
    return problems;
  },
  warm: (args, ctx) => connect(args.port, ctx),
  async check(args, ctx): Promise<boolean> {
    return (await readRole(await connect(args.port, ctx), args.name)) !== null;
  },
  plan(exists, args) {
    if (!exists) return { changes: [], reason: `role ${args.name} is already absent` };
    return { changes: [{ what: 'role', old: 'present', new: null }] };
  },
  async apply(args, _plan, _exists, ctx) {
    // A role that still owns a database or objects cannot be dropped: PostgreSQL's error says
    // which, and the state fails with it (drop or reassign those first).
    await (await connect(args.port, ctx)).query(`DROP ROLE ${quoteIdent(args.name)}`);
  },
});

export const postgresUserModule: StateModule = {
  name: 'postgres_user',
  functions: { present, absent },
};
