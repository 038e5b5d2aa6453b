// group.present / group.absent
//
//   developers:
//     group.present:
//       - gid: 2000
//       - members: [alice, bob]     # exactly these members; leave it out to keep membership as is
//   old-team:
//     group.absent: []
//
// Membership set here is the group's supplementary member list (/etc/group); a user whose primary
// group this is does not need to be listed.
import { Type } from '@sinclair/typebox';
import { readGroups, readPasswd, type GroupEntry } from '../accounts.js';
import { AccountName } from './common.js';
import { stateFunction, type Change, type Context, type StateModule } from './types.js';


// ---------------------------------------------------------------------------------------------
// group.present

const PresentArgs = Type.Object(
  {
    name: AccountName,
    gid: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967294 })),
    /** Only used when the group is created: a gid from the system range. */
    system: Type.Boolean({ default: false }),
    /** The exact supplementary member list; members not listed are removed. */
    members: Type.Optional(Type.Array(AccountName)),
  },
  { additionalProperties: false },
);

interface PresentCurrent {
  group: GroupEntry | null;
  /** Wanted members that are not users (yet). */
  missingMembers: string[];
}

interface GroupDiff {
  create: boolean;
  gid?: { old: number | null; new: number };
  members?: { old: string[]; new: string[] };
}

function sortedUnique(names: readonly string[]): string[] {
  return [...new Set(names)].sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** What must change, shared by plan (to report it) and apply (to do it). */
function groupDiff(current: PresentCurrent, args: { gid?: number; members?: string[] }): GroupDiff {
  const wantedMembers = args.members && sortedUnique(args.members);
  const { group } = current;
  if (!group) {
    return {
      create: true,
      gid: args.gid === undefined ? undefined : { old: null, new: args.gid },
      members: wantedMembers?.length ? { old: [], new: wantedMembers } : undefined,
    };
  }
  const diff: GroupDiff = { create: false };
  if (args.gid !== undefined && group.gid !== args.gid) diff.gid = { old: group.gid, new: args.gid };
  const members = sortedUnique(group.members);
  if (wantedMembers && !sameList(members, wantedMembers)) diff.members = { old: members, new: wantedMembers };
  return diff;
}

async function run(ctx: Context, argv: string[]): Promise<void> {
  await ctx.runner.run(argv, { timeoutMs: 60_000 });
}

const present = stateFunction(PresentArgs, {
  async check(args): Promise<PresentCurrent> {
    const group = (await readGroups()).find((g) => g.name === args.name) ?? null;
    let missingMembers: string[] = [];
    if (args.members?.length) {
      const users = new Set((await readPasswd()).map((u) => u.name));
      missingMembers = sortedUnique(args.members.filter((m) => !users.has(m)));
    }
    return { group, missingMembers };
  },
  plan(current, args) {
    const diff = groupDiff(current, args);
    const changes: Change[] = [];
    if (diff.create) changes.push({ what: 'group', old: null, new: args.name });
    if (diff.gid) changes.push({ what: 'gid', old: diff.gid.old, new: diff.gid.new });
    if (diff.members) changes.push({ what: 'members', old: diff.members.old, new: diff.members.new });
    return { changes, reason: changes.length ? undefined : 'the group is in the correct state' };
  },
  async apply(args, _plan, current, ctx) {
    const diff = groupDiff(current, args);
    // gpasswd would refuse them too, but one at a time and without saying what to do.
    if (diff.members && current.missingMembers.length)
      throw new Error(
        `${current.missingMembers.length === 1 ? 'user' : 'users'} ${current.missingMembers.join(', ')} ` +
          `not found; create them first (user.present, and require it from this state)`,
      );
    if (diff.create) {
      await run(ctx, ['groupadd', ...(args.system ? ['-r'] : []), ...(diff.gid ? ['-g', String(diff.gid.new)] : []), args.name]);
    } else if (diff.gid) {
      await run(ctx, ['groupmod', '-g', String(diff.gid.new), args.name]);
    }
    if (diff.members) await run(ctx, ['gpasswd', '-M', diff.members.new.join(','), args.name]);
  },
});

// ---------------------------------------------------------------------------------------------
// group.absent

const AbsentArgs = Type.Object({ name: AccountName }, { additionalProperties: false });

const absent = stateFunction(AbsentArgs, {
  async check(args): Promise<GroupEntry | null> {
    return (await readGroups()).find((g) => g.name === args.name) ?? null;
  },
  plan(current, args) {
    if (!current) return { changes: [], reason: 'the group does not exist' };
    return { changes: [{ what: 'group', old: args.name, new: null }] };
  },
  async apply(args, _plan, _current, ctx) {
    // groupdel refuses to remove a user's primary group, with a message that says which user.
    await run(ctx, ['groupdel', args.name]);
  },
});

export const groupModule: StateModule = {
  name: 'group',
  functions: { present, absent },
};
