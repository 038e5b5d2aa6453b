// file.managed / file.directory / file.symlink / file.absent
//
//   /etc/nginx/sites-available/app:
//     file.managed:
//       - source: templates/nginx-app.conf.j2
//       - template: jinja
//       - user: root
//       - mode: '0644'
//       - check_cmd: nginx -t -c        # the new content's temp path is appended
//   /srv/app:
//     file.directory:
//       - user: app
//       - makedirs: true
//   /srv/app/current:
//     file.symlink:
//       - target: /srv/app/releases/20260101-abc1234
//
// Files are replaced atomically (a temp file in the same directory, fsynced, renamed over the old
// one), so a killed run leaves either the old file or the new one, never half of either.
import { Type } from '@sinclair/typebox';
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { dirname, resolve, isAbsolute } from 'node:path';
import { findGroup, findUser } from '../accounts.js';
import { contentArgs, contentProblems, wantedContent, type Content } from '../content.js';
import { InputError } from '../errors.js';
import { lstatPath, symlinkAtomic, unifiedDiff, writeFileAtomic, type PathFacts } from '../atomic.js';
import { commandArgv } from '../argv.js';
import { AccountName, Command, Mode, formatMode, parseMode, pathClaim } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Context, type StateModule } from './types.js';

const Path = Type.String({ pattern: '^/', description: 'an absolute path' });
const Owner = {
  user: Type.Optional(AccountName),
  group: Type.Optional(AccountName),
  mode: Type.Optional(Mode),
};

/**
 * The uid/gid wanted by `user:`/`group:`. A name that does not exist yet is not an error here: an
 * earlier state may create it (and in test mode has not). `apply` looks it up again.
 */
async function wantedIds(args: { user?: string; group?: string }): Promise<{ uid?: number; gid?: number }> {
  const out: { uid?: number; gid?: number } = {};
  if (args.user !== undefined) out.uid = (await findUser(args.user))?.uid ?? UNKNOWN_ID;
  if (args.group !== undefined) out.gid = (await findGroup(args.group))?.gid ?? UNKNOWN_ID;
  return out;
}

/** Stands for an account that does not exist (yet); never equal to a real id. */
const UNKNOWN_ID = -2;

async function userName(uid: number): Promise<string> {
  return (await findUser(uid))?.name ?? String(uid);
}
async function groupName(gid: number): Promise<string> {
  return (await findGroup(gid))?.name ?? String(gid);
}

interface OwnerWanted {
  uid?: number;
  gid?: number;
  mode?: number;
  userName?: string;
  groupName?: string;
}

interface OwnerNow {
  uid: number;
  gid: number;
  mode: number;
  userName: string;
  groupName: string;
}

async function ownerNow(facts: PathFacts | null): Promise<OwnerNow | null> {
  if (!facts) return null;
  return { uid: facts.uid, gid: facts.gid, mode: facts.mode, userName: await userName(facts.uid), groupName: await groupName(facts.gid) };
}

/** Changes of user, group and mode; for a path that does not exist yet, what it will get. */
function ownerChanges(now: OwnerNow | null, wanted: OwnerWanted, includeMode = true): Change[] {
  const changes: Change[] = [];
  if (wanted.uid !== undefined && now?.uid !== wanted.uid) changes.push({ what: 'user', old: now?.userName ?? null, new: wanted.userName });
  if (wanted.gid !== undefined && now?.gid !== wanted.gid) changes.push({ what: 'group', old: now?.groupName ?? null, new: wanted.groupName });
  if (includeMode && wanted.mode !== undefined && now?.mode !== wanted.mode)
    changes.push({ what: 'mode', old: now ? formatMode(now.mode) : null, new: formatMode(wanted.mode) });
  return changes;
}

async function resolveOwner(args: { user?: string; group?: string; mode?: string }): Promise<OwnerWanted> {
  const ids = await wantedIds(args);
  return { ...ids, userName: args.user, groupName: args.group, mode: args.mode === undefined ? undefined : parseMode(args.mode) };
}

async function applyOwner(path: string, wanted: OwnerWanted, follow = true): Promise<void> {
  if (wanted.uid === UNKNOWN_ID) throw new Error(`user ${wanted.userName} does not exist`);
  if (wanted.gid === UNKNOWN_ID) throw new Error(`group ${wanted.groupName} does not exist`);
  if (wanted.uid !== undefined || wanted.gid !== undefined) {
    const chown = follow ? fs.chown : fs.lchown;
    await chown(path, wanted.uid ?? -1, wanted.gid ?? -1);
  }
  if (wanted.mode !== undefined && follow) await fs.chmod(path, wanted.mode);
}

async function mkdirParents(path: string, makedirs: boolean): Promise<void> {
  const parent = dirname(path);
  if (makedirs) await fs.mkdir(parent, { recursive: true });
  else {
    const st = await lstatPath(parent);
    if (!st) throw new Error(`directory ${parent} does not exist (set makedirs: true to create it)`);
  }
}

// ---------------------------------------------------------------------------------------------
// file.managed

const ManagedArgs = Type.Object(
  {
    name: Path,
    ...contentArgs,
    makedirs: Type.Boolean({ default: false }),
    replace: Type.Boolean({ default: true }),
    check_cmd: Type.Optional(Command),
    ...Owner,
  },
  { additionalProperties: false },
);

interface ManagedCurrent {
  path: PathFacts | null;
  owner: OwnerNow | null;
  /** The file's bytes now. */
  content: Buffer | null;
  /** undefined: the state names no content (only existence, owner and mode are managed). */
  wantedContent: Content | undefined;
  wanted: OwnerWanted;
}

/** `1,032 bytes, sha256 3f2a…`: how bytes that are not text are shown in a change. */
function describeBytes(content: Content): string {
  const bytes = Buffer.from(content);
  return `${bytes.length.toLocaleString('en')} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}…`;
}

const asText = (c: Content | null | undefined): string | undefined => (c === null || c === undefined ? undefined : typeof c === 'string' ? c : isUtf8(c) ? c.toString('utf8') : undefined);

const managed = stateFunction(ManagedArgs, {
  commandLines: (args) => [{ key: 'check_cmd', command: args.check_cmd }],
  claims: (args) => [pathClaim(args.name)],
  validate(args) {
    return contentProblems(args, undefined);
  },
  prepare(args, ctx) {
    const content = wantedContent(args, ctx);
    // Refused here, before anything runs, not by check at the state's turn.
    if (content !== undefined && args.mode !== undefined && parseMode(args.mode) & 0o007 && ctx.masker.contains(Buffer.from(content).toString('utf8')))
      throw new InputError(`mode ${formatMode(parseMode(args.mode))} would make a file holding a secret world-readable (give a mode without read for others, or none: it is then 0600)`, { key: 'mode' });
    if (args.check_cmd !== undefined) {
      try {
        commandArgv(args.check_cmd);
      } catch (err) {
        throw new InputError(`check_cmd: ${(err as Error).message}`, { key: 'check_cmd' });
      }
    }
  },
  async check(args, ctx): Promise<ManagedCurrent> {
    const path = await lstatPath(args.name);
    const wanted = await resolveOwner(args);
    const content = path?.kind === 'file' ? await fs.readFile(args.name) : null;
    const wantedText = wantedContent(args, ctx);
    // A file that holds a secret is never world-readable, even if no mode was asked for.
    if (ctx.masker.contains(Buffer.from(wantedText ?? content ?? '').toString('utf8'))) {
      if (wanted.mode !== undefined && wanted.mode & 0o007)
        throw new Error(`mode ${formatMode(wanted.mode)} would make a file holding a secret world-readable`);
      if (wanted.mode === undefined && (!path || path.mode & 0o007)) wanted.mode = 0o600 | ((path?.mode ?? 0) & 0o070);
    }
    return { path, owner: await ownerNow(path), content, wantedContent: wantedText, wanted };
  },
  plan(current, args) {
    const { path, content } = current;
    if (path && path.kind !== 'file') return { changes: [{ what: 'type', old: path.kind, new: 'file' }] };
    const want = current.wantedContent;
    const changes: Change[] = [];
    if (!path) {
      const text = want === undefined ? '' : asText(want);
      changes.push(text === undefined ? { what: 'file', old: null, new: `created (${describeBytes(want!)})` } : { what: 'file', old: null, new: 'created', diff: unifiedDiff(args.name, '', text) });
      // A new file gets the default mode 0644 unless a mode is asked for.
      const wanted = { ...current.wanted, mode: current.wanted.mode ?? 0o644 };
      changes.push(...ownerChanges(null, wanted));
    } else {
      if (want !== undefined && args.replace && !(content !== null && content.equals(Buffer.from(want)))) {
        const [before, after] = [asText(content ?? Buffer.alloc(0)), asText(want)];
        changes.push(
          before !== undefined && after !== undefined
            ? { what: 'content', diff: unifiedDiff(args.name, before, after, { hideOld: !(path.mode & 0o004) }) }
            : { what: 'content', old: describeBytes(content ?? ''), new: describeBytes(want) },
        );
      }
      changes.push(...ownerChanges(current.owner, current.wanted));
    }
    return { changes, reason: changes.length ? undefined : 'the file is in the correct state' };
  },
  async apply(args, plan, current, ctx) {
    if (current.path && current.path.kind !== 'file')
      throw new Error(`${args.name} is a ${current.path.kind}; remove it first (file.absent) to put a file there`);
    const writes = plan.changes.some((c) => c.what === 'file' || c.what === 'content');
    if (!writes) {
      await applyOwner(args.name, current.wanted);
      return;
    }
    await mkdirParents(args.name, args.makedirs);
    const wanted = current.wanted;
    if (wanted.uid === UNKNOWN_ID) throw new Error(`user ${wanted.userName} does not exist`);
    if (wanted.gid === UNKNOWN_ID) throw new Error(`group ${wanted.groupName} does not exist`);
    const keep = current.owner ?? { uid: undefined, gid: undefined, mode: 0o644 };
    const checkCmd = args.check_cmd;
    const verify =
      checkCmd === undefined
        ? undefined
        : async (temp: string) => {
            const result = await ctx.runner.run([...commandArgv(checkCmd), temp], { allowFailure: true, timeoutMs: 120_000 });
            if (result.code !== 0) {
              const out = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n');
              throw new Error(`check_cmd refused the new content (exit ${result.code}); the old file is kept${out ? `:\n${out}` : ''}`);
            }
          };
    await writeFileAtomic(
      args.name,
      current.wantedContent ?? current.content ?? '',
      { uid: wanted.uid ?? keep.uid, gid: wanted.gid ?? keep.gid, mode: wanted.mode ?? keep.mode },
      verify,
    );
  },
});

// ---------------------------------------------------------------------------------------------
// file.directory

const DirectoryArgs = Type.Object(
  { name: Path, makedirs: Type.Boolean({ default: false }), ...Owner },
  { additionalProperties: false },
);

interface DirectoryCurrent {
  path: PathFacts | null;
  owner: OwnerNow | null;
  wanted: OwnerWanted;
}

const directory = stateFunction(DirectoryArgs, {
  claims: (args) => [pathClaim(args.name)],
  async check(args): Promise<DirectoryCurrent> {
    const path = await lstatPath(args.name);
    return { path, owner: await ownerNow(path), wanted: await resolveOwner(args) };
  },
  plan(current) {
    const { path } = current;
    if (path && path.kind !== 'directory') return { changes: [{ what: 'type', old: path.kind, new: 'directory' }] };
    const changes: Change[] = [];
    if (!path) changes.push({ what: 'directory', old: null, new: 'created' }, ...ownerChanges(null, { ...current.wanted, mode: current.wanted.mode ?? 0o755 }));
    else changes.push(...ownerChanges(current.owner, current.wanted));
    return { changes, reason: changes.length ? undefined : 'the directory is in the correct state' };
  },
  async apply(args, _plan, current) {
    if (current.path && current.path.kind !== 'directory')
      throw new Error(`${args.name} is a ${current.path.kind}; remove it first (file.absent) to put a directory there`);
    if (!current.path) {
      await mkdirParents(args.name, args.makedirs);
      await fs.mkdir(args.name, { mode: 0o755 });
    }
    await applyOwner(args.name, { ...current.wanted, mode: current.wanted.mode ?? (current.path ? undefined : 0o755) });
  },
});

// ---------------------------------------------------------------------------------------------
// file.symlink

const SymlinkArgs = Type.Object(
  {
    name: Path,
    target: Type.String({ minLength: 1 }),
    makedirs: Type.Boolean({ default: false }),
    /** Replace a file or an empty directory that stands where the link should be. */
    force: Type.Boolean({ default: false }),
    user: Owner.user,
    group: Owner.group,
  },
  { additionalProperties: false },
);

interface SymlinkCurrent {
  path: PathFacts | null;
  owner: OwnerNow | null;
  wanted: OwnerWanted;
}

const symlink = stateFunction(SymlinkArgs, {
  claims: (args) => [pathClaim(args.name)],
  async check(args): Promise<SymlinkCurrent> {
    const path = await lstatPath(args.name);
    return { path, owner: await ownerNow(path), wanted: await resolveOwner(args) };
  },
  plan(current, args) {
    const { path } = current;
    const changes: Change[] = [];
    if (!path) changes.push({ what: 'target', old: null, new: args.target }, ...ownerChanges(null, current.wanted, false));
    else if (path.kind !== 'symlink') changes.push({ what: 'type', old: path.kind, new: 'symlink' }, { what: 'target', old: null, new: args.target });
    else {
      if (path.linkTarget !== args.target) changes.push({ what: 'target', old: path.linkTarget, new: args.target });
      changes.push(...ownerChanges(current.owner, current.wanted, false));
    }
    return { changes, reason: changes.length ? undefined : 'the link is in the correct state' };
  },
  async apply(args, _plan, current) {
    const { path } = current;
    if (path && path.kind !== 'symlink') {
      if (!args.force) throw new Error(`${args.name} is a ${path.kind}, not a link (set force: true to replace it)`);
      if (path.kind === 'directory') await fs.rmdir(args.name);
      else await fs.rm(args.name);
    }
    await mkdirParents(args.name, args.makedirs);
    if (!path || path.kind !== 'symlink' || path.linkTarget !== args.target) await symlinkAtomic(args.target, args.name);
    await applyOwner(args.name, current.wanted, false);
  },
});

// ---------------------------------------------------------------------------------------------
// file.absent

const AbsentArgs = Type.Object({ name: Path }, { additionalProperties: false });

const absent = stateFunction(AbsentArgs, {
  claims: (args) => [pathClaim(args.name)],
  validate(args) {
    return resolve(args.name) === '/' ? [{ key: 'name', message: 'refusing to remove /' }] : [];
  },
  async check(args) {
    return lstatPath(args.name);
  },
  plan(current) {
    if (!current) return { changes: [], reason: 'already absent' };
    return { changes: [{ what: current.kind, old: 'present', new: null }] };
  },
  async apply(args) {
    await fs.rm(args.name, { recursive: true, force: true });
  },
});

export const fileModule: StateModule = {
  name: 'file',
  functions: { managed, directory, symlink, absent },
};
