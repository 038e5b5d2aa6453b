// release.deployed's arguments: the schema (the TypeScript type and ajv's check from one source)
// and the checks that need nothing but the arguments.
import { Type, type Static } from '@sinclair/typebox';
import { CommandSyntaxError, commandArgv } from '../argv.js';
import { sshArgProblems } from '../git/ssh.js';
import { AccountName, Command } from '../modules/common.js';
import type { ArgProblem } from '../modules/types.js';

const RelativePath = Type.String({ minLength: 1, pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\r\\n\\0]+$', description: 'a path inside the release (relative, no ..)' });
const Bind = Type.String({ pattern: '^(unix:/[^\\s;]+|(\\[[0-9a-fA-F:]+\\]|[A-Za-z0-9.-]+):\\d{1,5})$', description: 'host:port or unix:/path' });

export const DeployedArgs = Type.Object(
  {
    /** The app's root: /srv/APP. */
    name: Type.String({ pattern: '^/[^\\r\\n]*[^/\\r\\n]$', description: 'an absolute path (the app root)' }),
    repo: Type.String({ minLength: 1, description: 'the repository URL' }),
    rev: Type.String({ minLength: 1, default: 'HEAD' }),
    /** Fetches, builds, runs migrations and serves as this user. */
    user: AccountName,
    identity: Type.Optional(Type.String({ pattern: '^/', description: 'an absolute path' })),
    known_hosts: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
    /** Paths in the release linked to ROOT/shared/PATH; a trailing / makes it a directory. */
    shared: Type.Array(RelativePath, { default: [] }),
    /** The app's environment file, read (by sh) before build steps, migrations and the app. */
    env_file: Type.Optional(Type.String({ pattern: '^/', description: 'an absolute path' })),
    /** More variables for build steps and migrations. */
    env: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), { additionalProperties: false })),
    dependencies: Type.Array(
      Type.Object(
        {
          path: RelativePath,
          files: Type.Array(RelativePath, { minItems: 1 }),
          version: Type.Optional(Command),
          build: Type.Array(Command, { minItems: 1 }),
        },
        { additionalProperties: false },
      ),
      { default: [] },
    ),
    /** Commands run in the new release, in order, as `user`. */
    build: Type.Array(Command, { default: [] }),
    migrate: Type.Optional(
      Type.Object(
        {
          command: Command,
          /** Globs of the migration files: unchanged since the live release, the command is skipped. */
          files: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
          /** The database to hold the advisory lock in (postgresql://…), so servers migrate one at a time. */
          lock: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
          /** Seconds to wait for another server's migration. */
          lock_timeout: Type.Number({ exclusiveMinimum: 0, default: 600 }),
        },
        { additionalProperties: false },
      ),
    ),
    serve: Type.Optional(
      Type.Object(
        {
          command: Command,
          binds: Type.Array(Bind, { minItems: 2, maxItems: 2 }),
          upstream: Type.String({ pattern: '^[A-Za-z0-9_]+$', description: 'an nginx upstream name' }),
          /** supervisord programs PROGRAM-blue and PROGRAM-green; default: the root's last part. */
          program: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$' })),
          environment: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String({ pattern: '^[^\\r\\n]*$' }), { additionalProperties: false })),
          stopsignal: Type.Optional(Type.Union(['TERM', 'HUP', 'INT', 'QUIT', 'KILL', 'USR1', 'USR2'].map((s) => Type.Literal(s)))),
          stopwaitsecs: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    health: Type.Optional(
      Type.Object(
        {
          path: Type.String({ pattern: '^/' }),
          timeout: Type.Number({ exclusiveMinimum: 0, default: 30 }),
          revision: Type.Boolean({ default: false }),
          host: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9.:-]+$' })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Good releases kept (the live one among them). */
    keep: Type.Integer({ minimum: 2, default: 5 }),
    /** Failed and rolled-back releases kept, for a look at what went wrong. */
    keep_failed: Type.Integer({ minimum: 0, default: 2 }),
    /** Seconds a build, dependency or migration command may take. */
    step_timeout: Type.Number({ exclusiveMinimum: 0, default: 1800 }),
  },
  { additionalProperties: false },
);

export type ReleaseArgs = Static<typeof DeployedArgs>;

function commandProblem(key: string, command: string | string[]): ArgProblem[] {
  if (Array.isArray(command)) return [];
  try {
    commandArgv(command);
    return [];
  } catch (err) {
    if (!(err instanceof CommandSyntaxError)) throw err;
    return [{ key, message: err.message }];
  }
}

export function validateArgs(args: ReleaseArgs): ArgProblem[] {
  const problems = sshArgProblems({ name: args.repo, identity: args.identity, known_hosts: args.known_hosts }, { url: 'repo', identity: 'identity', knownHosts: 'known_hosts' });
  args.dependencies.forEach((d, i) => {
    d.build.forEach((c) => problems.push(...commandProblem(`dependencies.${i}.build`, c)));
    if (d.version) problems.push(...commandProblem(`dependencies.${i}.version`, d.version));
  });
  const paths = args.dependencies.map((d) => d.path.replace(/\/+$/, ''));
  if (new Set(paths).size !== paths.length) problems.push({ key: 'dependencies', message: 'two dependencies have the same path' });
  const shared = args.shared.map((s) => s.replace(/\/+$/, ''));
  for (const p of paths) if (shared.includes(p)) problems.push({ key: 'shared', message: `${p} is both shared and a dependency` });
  args.build.forEach((c) => problems.push(...commandProblem('build', c)));
  if (args.migrate) problems.push(...commandProblem('migrate', args.migrate.command));
  if (args.serve) {
    try {
      serveArgv(args.serve.command);
    } catch (err) {
      if (!(err instanceof CommandSyntaxError)) throw err;
      problems.push({ key: 'serve', message: err.message });
    }
    if (args.serve.binds[0] === args.serve.binds[1]) problems.push({ key: 'serve', message: 'binds: the two slots need two addresses' });
    if (!args.health) problems.push({ key: 'health', message: 'serve needs a health check (health: {path: /health}): it decides when a release may take requests' });
  } else if (args.health) problems.push({ key: 'health', message: 'health checks the slot a release starts in: it needs serve' });
  return problems;
}

export function argv(command: string | string[]): string[] {
  return commandArgv(command);
}

const PLACEHOLDER = /\{(bind|port|dir|slot)\}/g;

/** The serve command as argv, its {bind} {port} {dir} {slot} kept (a string is split around them). */
export function serveArgv(command: string | string[]): string[] {
  if (Array.isArray(command)) return [...command];
  const words = commandArgv(command.replace(PLACEHOLDER, (_, k: string) => `@@brine-${k}@@`));
  return words.map((w) => w.replace(/@@brine-(bind|port|dir|slot)@@/g, (_, k: string) => `{${k}}`));
}
