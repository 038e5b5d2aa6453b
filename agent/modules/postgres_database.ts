// postgres_database.present / postgres_database.absent — PostgreSQL databases
//
//   app:
//     postgres_database.present:
//       - owner: app
//       - encoding: UTF8            # the default
//       - require:
//         - postgres_user: app
//   old_app:
//     postgres_database.absent: []
//
// An existing database is converged, not only created: an owner that differs is set again
// (ALTER DATABASE … OWNER TO). Encoding and locale are fixed when a database is created; one that
// differs from the state fails the state with what to do (dump, recreate, restore) instead of
// being "converged" by dropping data. A new database is copied from template0, which takes any
// encoding and locale (template1 may carry another encoding, and CREATE DATABASE would refuse);
// give `template: template1` to inherit what was installed into template1.
//
// brine connects as the postgres OS user over the local socket (peer authentication); `port`
// picks the cluster.
import { Type, type Static } from '@sinclair/typebox';
import { PostgresNotRunningError, postgresClients, quoteIdent, quoteLiteral, type PostgresClient } from '../postgres/client.js';
import { nameProblems } from '../postgres/names.js';
import { stateFunction, type ArgProblem, type Change, type Context, type Plan, type StateModule } from './types.js';

const Port = Type.Integer({ minimum: 1, maximum: 65535, default: 5432 });
const ENCODING = { pattern: '^[A-Za-z][A-Za-z0-9_-]{0,31}$', hint: 'an encoding name such as UTF8 or LATIN1' };
const Locale = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_.@-]{0,63}$', hint: 'a locale name such as C.UTF-8 or en_US.UTF-8' });

/** Databases a state may not drop: the cluster cannot do without them. */
const SYSTEM_DATABASES = ['postgres', 'template0', 'template1'];

async function connect(port: number, ctx: Context): Promise<PostgresClient> {
  return postgresClients.connect(ctx, { port });
}

interface DatabaseRow {
  owner: string;
  encoding: string;
  datcollate: string;
  datctype: string;
}

const READ_DATABASE =
  'SELECT pg_catalog.pg_get_userbyid(datdba) AS owner, pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate, datctype FROM pg_catalog.pg_database WHERE datname = $1';
const CANONICAL_ENCODING = 'SELECT pg_catalog.pg_encoding_to_char(pg_catalog.pg_char_to_encoding($1)) AS encoding';

async function readDatabase(client: PostgresClient, name: string): Promise<DatabaseRow | null> {
  const rows = await client.query<DatabaseRow>(READ_DATABASE, [name]);
  return rows[0] ?? null;
}

/** `en_US.UTF-8` and `en_US.utf8` name the same locale: compare codesets case- and dash-blind. */
export function sameLocale(a: string, b: string): boolean {
  const norm = (l: string) => l.replace(/\.([^@]*)/, (_, codeset: string) => `.${codeset.toLowerCase().replace(/-/g, '')}`);
  return norm(a) === norm(b);
}

/** Without a server to ask, the usual spellings of UTF8 (and otherwise the name upper-cased). */
function guessEncoding(encoding: string): string {
  const upper = encoding.toUpperCase();
  return /^(UTF-?8|UNICODE)$/.test(upper) ? 'UTF8' : upper;
}

// ---------------------------------------------------------------------------------------------
// postgres_database.present

const PresentArgs = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    owner: Type.Optional(Type.String({ minLength: 1 })),
    encoding: Type.String({ ...ENCODING, default: 'UTF8' }),
    template: Type.String({ minLength: 1, default: 'template0' }),
    lc_collate: Type.Optional(Locale),
    lc_ctype: Type.Optional(Locale),
    port: Port,
  },
  { additionalProperties: false },
);
type PresentArgs = Static<typeof PresentArgs>;

export interface DatabaseNow {
  /** Set when the server is not running (yet): everything is planned as for a new database. */
  notRunning?: string;
  database: DatabaseRow | null;
  /** The wanted encoding as PostgreSQL names it (`utf-8` → UTF8). */
  encoding: string;
}

async function checkDatabase(args: PresentArgs, ctx: Context): Promise<DatabaseNow> {
  let client: PostgresClient;
  try {
    client = await connect(args.port, ctx);
  } catch (err) {
    // Not installed yet (pkg.installed earlier in the run): --test predicts the creation.
    if (err instanceof PostgresNotRunningError) return { notRunning: err.message, database: null, encoding: guessEncoding(args.encoding) };
    throw err;
  }
  const [canonical] = await client.query<{ encoding: string }>(CANONICAL_ENCODING, [args.encoding]);
  if (!canonical?.encoding) throw new Error(`encoding "${args.encoding}" is not one PostgreSQL knows (UTF8, LATIN1, SQL_ASCII…)`);
  return { database: await readDatabase(client, args.name), encoding: canonical.encoding };
}

const RECREATE = 'PostgreSQL cannot change it in place: dump the database, drop it, and restore the dump into one created with';

function planDatabase(now: DatabaseNow, args: PresentArgs): Plan {
  const db = now.database;
  if (!db) {
    const changes: Change[] = [{ what: 'database', old: null, new: 'created' }];
    if (args.owner !== undefined) changes.push({ what: 'owner', old: null, new: args.owner });
    changes.push({ what: 'encoding', old: null, new: now.encoding });
    if (args.lc_collate !== undefined) changes.push({ what: 'lc_collate', old: null, new: args.lc_collate });
    if (args.lc_ctype !== undefined) changes.push({ what: 'lc_ctype', old: null, new: args.lc_ctype });
    return { changes };
  }
  // Refused, not planned: a plan must be something apply can do without losing data.
  if (db.encoding !== now.encoding)
    throw new Error(`database ${args.name} has encoding ${db.encoding}, not ${now.encoding}; ${RECREATE} encoding: ${now.encoding}`);
  if (args.lc_collate !== undefined && !sameLocale(db.datcollate, args.lc_collate))
    throw new Error(`database ${args.name} has lc_collate ${db.datcollate}, not ${args.lc_collate}; ${RECREATE} lc_collate: ${args.lc_collate}`);
  if (args.lc_ctype !== undefined && !sameLocale(db.datctype, args.lc_ctype))
    throw new Error(`database ${args.name} has lc_ctype ${db.datctype}, not ${args.lc_ctype}; ${RECREATE} lc_ctype: ${args.lc_ctype}`);
  const changes: Change[] = [];
  if (args.owner !== undefined && db.owner !== args.owner) changes.push({ what: 'owner', old: db.owner, new: args.owner });
  return { changes, reason: changes.length ? undefined : `database ${args.name} is in the correct state` };
}

const present = stateFunction(PresentArgs, {
  validate(args) {
    return [...nameProblems('name', args.name), ...nameProblems('owner', args.owner), ...nameProblems('template', args.template)];
  },
  warm: (args, ctx) => connect(args.port, ctx),
  check: checkDatabase,
  plan: planDatabase,
  async apply(args, plan, now, ctx) {
    if (now.notRunning) {
      // The server was not there when the state was checked; it may have come up since.
      now = await checkDatabase(args, ctx);
      if (now.notRunning) throw new Error(now.notRunning);
      plan = planDatabase(now, args);
      if (plan.changes.length === 0) return;
    }
    const client = await connect(args.port, ctx);
    const db = quoteIdent(args.name);
    if (!now.database) {
      // DDL takes no bind parameters; the encoding is PostgreSQL's own name for it and the
      // locales matched a strict pattern, and they are quoted anyway.
      const options = [
        ...(args.owner !== undefined ? [`OWNER ${quoteIdent(args.owner)}`] : []),
        `ENCODING ${quoteLiteral(now.encoding)}`,
        `TEMPLATE ${quoteIdent(args.template)}`,
        ...(args.lc_collate !== undefined ? [`LC_COLLATE ${quoteLiteral(args.lc_collate)}`] : []),
        ...(args.lc_ctype !== undefined ? [`LC_CTYPE ${quoteLiteral(args.lc_ctype)}`] : []),
      ];
      await client.query(`CREATE DATABASE ${db} WITH ${options.join(' ')}`);
      return;
    }
    if (plan.changes.some((c) => c.what === 'owner') && args.owner !== undefined)
      await client.query(`ALTER DATABASE ${db} OWNER TO ${quoteIdent(args.owner)}`);
  },
});

// ---------------------------------------------------------------------------------------------
// postgres_database.absent

const AbsentArgs = Type.Object({ name: Type.String({ minLength: 1 }), port: Port }, { additionalProperties: false });

const absent = stateFunction(AbsentArgs, {
  validate(args) {
    const problems: ArgProblem[] = nameProblems('name', args.name);
    if (SYSTEM_DATABASES.includes(args.name)) problems.push({ key: 'name', message: `refusing to drop ${args.name}: the cluster needs it` });
    return problems;
  },
  warm: (args, ctx) => connect(args.port, ctx),
  async check(args, ctx): Promise<boolean> {
    return (await readDatabase(await connect(args.port, ctx), args.name)) !== null;
  },
  plan(exists, args) {
    if (!exists) return { changes: [], reason: `database ${args.name} is already absent` };
    return { changes: [{ what: 'database', old: 'present', new: null }] };
  },
  async apply(args, _plan, _exists, ctx) {
    // Not WITH (FORCE): a database still in use fails the state (PostgreSQL says how many
    // sessions use it) rather than cutting off the app that uses it.
    await (await connect(args.port, ctx)).query(`DROP DATABASE ${quoteIdent(args.name)}`);
  },
});

export const postgresDatabaseModule: StateModule = {
  name: 'postgres_database',
  functions: { present, absent },
};
