// user.present / user.absent
//
//   alice:
//     user.present:
//       - fullname: Alice Liddell
//       - shell: /bin/bash
//       - groups: [sudo, developers]   # exactly these supplementary groups (remove_groups: true)
//       - password: {{ pillar.users.alice.password_hash }}   # a crypt hash (mkpasswd -m yescrypt)
//   bob:
//     user.absent:
//       - purge: true                  # also remove the home directory and mail spool
//
// An existing user is converged, not only created: uid, primary group, home, shell, full name,
// supplementary groups and password are changed when they differ from what the state asks for.
// Attributes the state does not mention are left as they are.
import { Type, type Static } from '@sinclair/typebox';
import { readGroups, readPasswd, type PasswdEntry } from '../accounts.js';
import { MASK } from '../secret.js';
import { AccountName } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

// A ':' or a line break would corrupt /etc/passwd.
const PasswdPath = Type.String({ pattern: '^/[^:\\n]*$', description: 'an absolute path' });

// ---------------------------------------------------------------------------------------------
// user.present

const PresentArgs = Type.Object(
  {
    name: AccountName,
    uid: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967294 })),
    /** The primary group, by name or number (as in Salt). */
    gid: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 4294967294 }), AccountName])),
    /** Default /home/NAME for a new user; an existing user's home is changed only when given. */
    home: Type.Optional(PasswdPath),
    createhome: Type.Boolean({ default: true }),
    shell: Type.Optional(PasswdPath),
    fullname: Type.Optional(Type.String()),
    /** Supplementary groups. */
    groups: Type.Optional(Type.Array(AccountName)),
    /** With `groups`: remove the user from supplementary groups that are not listed. */
    remove_groups: Type.Boolean({ default: true }),
    /** Only used when the user is created: a uid from the system range. */
    system: Type.Boolean({ default: false }),
    /** A crypt(3) hash, as in /etc/shadow; never the password itself. */
    password: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

type PresentArgsT = Static<typeof PresentArgs>;

interface PresentCurrent {
  user: PasswdEntry | null;
  /** The name of the user's primary group now (its number when no group has it). */
  primaryGroup: string | null;
  /** The name of the primary group the state asks for, when it exists. */
  wantedPrimaryGroup: string | null;
  /** Supplementary groups the user is listed in, sorted. */
  groups: string[];
  /** Groups the state names (gid, groups) that do not exist. */
  missingGroups: string[];
  /** A group named like the user exists: useradd must be told to use it. */
  ownGroupExists: boolean;
  /** Whether the shadow hash is the wanted one; null when no password is asked for. The hash itself is not kept. */
  passwordMatches: boolean | null;
}

interface UserDiff {
  create: boolean;
  uid?: { old: number | null; new: number };
  gid?: { old: number | string | null; new: number | string };
  home?: { old: string | null; new: string };
  shell?: { old: string | null; new: string };
  fullname?: { old: string | null; new: string };
  groups?: { old: string[]; new: string[] };
  password: boolean;
}

function sortedUnique(names: readonly string[]): string[] {
  return [...new Set(names)].sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The full name is the first comma-separated field of GECOS (the others are room, phones…). */
function gecosFullname(gecos: string): string {
  return gecos.split(',')[0] ?? '';
}

/** What must change, shared by plan (to report it) and apply (to do it). */
function userDiff(current: PresentCurrent, args: PresentArgsT): UserDiff {
  const { user } = current;
  const gid = args.gid;
  const wantedGroups = args.groups && sortedUnique(args.groups);
  if (!user) {
    return {
      create: true,
      uid: args.uid === undefined ? undefined : { old: null, new: args.uid },
      gid: gid === undefined ? undefined : { old: null, new: gid },
      home: { old: null, new: args.home ?? `/home/${args.name}` },
      shell: args.shell === undefined ? undefined : { old: null, new: args.shell },
      fullname: args.fullname === undefined ? undefined : { old: null, new: args.fullname },
      groups: wantedGroups?.length ? { old: [], new: wantedGroups } : undefined,
      password: args.password !== undefined,
    };
  }
  const diff: UserDiff = { create: false, password: current.passwordMatches === false };
  if (args.uid !== undefined && user.uid !== args.uid) diff.uid = { old: user.uid, new: args.uid };
  if (typeof gid === 'number' && user.gid !== gid) diff.gid = { old: user.gid, new: gid };
  if (typeof gid === 'string' && current.primaryGroup !== gid) diff.gid = { old: current.primaryGroup, new: gid };
  if (args.home !== undefined && user.home !== args.home) diff.home = { old: user.home, new: args.home };
  if (args.shell !== undefined && user.shell !== args.shell) diff.shell = { old: user.shell, new: args.shell };
  const fullname = gecosFullname(user.gecos);
  if (args.fullname !== undefined && fullname !== args.fullname) diff.fullname = { old: fullname, new: args.fullname };
  if (wantedGroups) {
    // Membership of the primary group is implied, whether or not /etc/group lists it.
    const primary = new Set([current.primaryGroup, current.wantedPrimaryGroup]);
    const now = current.groups.filter((g) => !primary.has(g));
    const wanted = wantedGroups.filter((g) => !primary.has(g));
    const next = args.remove_groups ? wanted : sortedUnique([...now, ...wanted]);
    if (!sameList(now, next)) diff.groups = { old: now, new: next };
  }
  return diff;
}

async function readShadowHash(name: string, ctx: Context): Promise<string | null> {
  // getent reads /etc/shadow (root only); exit 2 means no entry.
  const result = await ctx.runner.run(['getent', 'shadow', name], { allowFailure: true, timeoutMs: 30_000 });
  if (result.code === 2) return null;
  if (result.code !== 0) throw new Error(`getent shadow ${name} exited ${result.code}`);
  return result.stdout.split('\n')[0]?.split(':')[1] ?? null;
}

const present = stateFunction(PresentArgs, {
  validate(args) {
    const problems: ArgProblem[] = [];
    if (args.fullname !== undefined && /[:,\n]/.test(args.fullname))
      problems.push({ key: 'fullname', message: 'a full name cannot contain ":", "," or a line break' });
    // The value is never echoed: it may be a secret.
    if (args.password !== undefined && !/^(\$[^:\n]+|[!*][^:\n]*|[./0-9A-Za-z]{13})$/.test(args.password))
      problems.push({
        key: 'password',
        message: 'password must be a crypt hash such as the output of `mkpasswd -m yescrypt`, not the password itself',
      });
    return problems;
  },
  async check(args, ctx): Promise<PresentCurrent> {
    const [users, allGroups] = [await readPasswd(), await readGroups()];
    const user = users.find((u) => u.name === args.name) ?? null;
    const { gid } = args;
    const groupByGid = (n: number) => allGroups.find((g) => g.gid === n);
    const groupNames = new Set(allGroups.map((g) => g.name));

    const missingGroups: string[] = [];
    if (typeof gid === 'number' && !groupByGid(gid)) missingGroups.push(String(gid));
    if (typeof gid === 'string' && !groupNames.has(gid)) missingGroups.push(gid);
    for (const g of args.groups ?? []) if (!groupNames.has(g)) missingGroups.push(g);

    let passwordMatches: boolean | null = null;
    if (user && args.password !== undefined) passwordMatches = (await readShadowHash(args.name, ctx)) === args.password;

    return {
      user,
      primaryGroup: user ? (groupByGid(user.gid)?.name ?? String(user.gid)) : null,
      wantedPrimaryGroup: typeof gid === 'number' ? (groupByGid(gid)?.name ?? null) : (gid ?? null),
      groups: user ? allGroups.filter((g) => g.members.includes(args.name)).map((g) => g.name).sort() : [],
      missingGroups: sortedUnique(missingGroups),
      ownGroupExists: groupNames.has(args.name),
      passwordMatches,
    };
  },
  plan(current, args) {
    const diff = userDiff(current, args);
    const changes: Change[] = [];
    if (diff.create) changes.push({ what: 'user', old: null, new: args.name });
    for (const what of ['uid', 'gid', 'home', 'shell', 'fullname', 'groups'] as const) {
      const c = diff[what];
      if (c) changes.push({ what, old: c.old, new: c.new });
    }
    if (diff.password) changes.push({ what: 'password', old: diff.create ? null : MASK, new: MASK });
    return { changes, reason: changes.length ? undefined : 'the user is in the correct state' };
  },
  async apply(args, _plan, current, ctx) {
    const diff = userDiff(current, args);
    const needed = diff.create || diff.gid || diff.groups;
    // useradd/usermod would fail on the first one only, and without saying what to do.
    if (needed && current.missingGroups.length)
      throw new Error(
        `${current.missingGroups.length === 1 ? 'group' : 'groups'} ${current.missingGroups.join(', ')} ` +
          `not found; create them first (group.present, and require it from this state)`,
      );
    const opts = { timeoutMs: 120_000 };
    if (diff.create) {
      // Debian's useradd refuses to create the user's own group when one of that name exists.
      const gid = diff.gid?.new ?? (current.ownGroupExists ? args.name : undefined);
      await ctx.runner.run(
        [
          'useradd',
          ...(args.system ? ['-r'] : []),
          ...(diff.uid ? ['-u', String(diff.uid.new)] : []),
          ...(gid !== undefined ? ['-g', String(gid)] : []),
          '-d', diff.home!.new,
          args.createhome ? '-m' : '-M',
          ...(diff.shell ? ['-s', diff.shell.new] : []),
          ...(diff.fullname ? ['-c', diff.fullname.new] : []),
          ...(diff.groups ? ['-G', diff.groups.new.join(',')] : []),
          args.name,
        ],
        opts,
      );
    } else {
      const argv: string[] = [];
      if (diff.uid) argv.push('-u', String(diff.uid.new));
      if (diff.gid) argv.push('-g', String(diff.gid.new));
      // -m moves the old home's contents, so the user keeps their files (and ~/.ssh).
      if (diff.home) argv.push('-d', diff.home.new, ...(args.createhome ? ['-m'] : []));
      if (diff.shell) argv.push('-s', diff.shell.new);
      if (diff.fullname) {
        const other = current.user!.gecos.split(',').slice(1);
        argv.push('-c', [diff.fullname.new, ...other].join(','));
      }
      if (diff.groups) {
        if (args.remove_groups) argv.push('-G', diff.groups.new.join(','));
        else argv.push('-a', '-G', diff.groups.new.filter((g) => !diff.groups!.old.includes(g)).join(','));
      }
      if (argv.length) await ctx.runner.run(['usermod', ...argv, args.name], opts);
    }
    // On stdin, so the hash shows up neither in the process list nor in a logged command line.
    if (diff.password) await ctx.runner.run(['chpasswd', '-e'], { ...opts, input: `${args.name}:${args.password}\n` });
  },
});

// ---------------------------------------------------------------------------------------------
// user.absent

const AbsentArgs = Type.Object(
  {
    name: AccountName,
    /** Also remove the home directory and the mail spool (userdel -r). */
    purge: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

const absent = stateFunction(AbsentArgs, {
  async check(args): Promise<PasswdEntry | null> {
    return (await readPasswd()).find((u) => u.name === args.name) ?? null;
  },
  plan(current, args) {
    if (!current) return { changes: [], reason: 'the user does not exist' };
    const changes: Change[] = [{ what: 'user', old: args.name, new: null }];
    if (args.purge) changes.push({ what: 'home', old: current.home, new: null });
    return { changes };
  },
  async apply(args, _plan, _current, ctx) {
    // userdel refuses while the user has processes; its message says so.
    await ctx.runner.run(['userdel', ...(args.purge ? ['-r'] : []), args.name], { timeoutMs: 120_000 });
  },
});

export const userModule: StateModule = {
  name: 'user',
  functions: { present, absent },
};
