// ssh_auth.present / ssh_auth.absent / ssh_auth.manage
//
//   alice-laptop:
//     ssh_auth.present:
//       - user: alice
//       - name: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop
//   deploy-keys:
//     ssh_auth.present:
//       - user: deploy
//       - names:
//         - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop
//         - no-port-forwarding ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB... bob@desktop
//   alice-keys:
//     ssh_auth.manage:             # exactly these keys: any other key loses access
//       - user: alice
//       - ssh_keys: {{ pillar.devs.alice.ssh_keys | tojson }}
//
// A key is the same key when its type and data are the same; a different comment or options make
// it a changed line, not another key. The file is ~USER/.ssh/authorized_keys.
//
// brine runs as root and writes into a directory its user owns, who could swap ~/.ssh for a link
// to /root/.ssh between a check and a write. So no path under the home is followed: ~/.ssh is
// opened with O_NOFOLLOW and everything inside it is reached through that open descriptor
// (/proc/self/fd/N/…), which a rename or a new link cannot redirect.
import { Type } from '@sinclair/typebox';
import { createHash, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { readGroups, readPasswd } from '../accounts.js';
import { formatMode } from './common.js';
import { stateFunction, type ArgProblem, type Change, type Plan, type StateModule } from './types.js';
import { lstatOrNull } from '../atomic.js';

const KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

const AccountName = Type.String({ pattern: '^[a-z_][a-z0-9_.-]*\\$?$', maxLength: 32 });
const KeyLineArg = Type.String({ minLength: 1 });

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

// ---------------------------------------------------------------------------------------------
// Key lines: `[options] type base64-data [comment]`

interface KeyLine {
  options: string;
  type: string;
  blob: string;
  comment: string;
}

/** The key type written inside the key data (every SSH public key starts with it). */
function embeddedType(blob: string): string | null {
  if (blob.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return null;
  const data = Buffer.from(blob, 'base64');
  if (data.length < 4) return null;
  const length = data.readUInt32BE(0);
  if (length === 0 || length > 64 || data.length < 4 + length) return null;
  return data.subarray(4, 4 + length).toString('latin1');
}

/** Splits off the options field, which may hold quoted spaces (`command="a b"`). */
function splitOptions(text: string): [string, string] {
  let quoted = false;
  let i = 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) break;
  }
  return [text.slice(0, i), text.slice(i).trimStart()];
}

function keyWithoutOptions(text: string, options: string): KeyLine | null {
  const m = /^(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(text);
  if (!m) return null;
  const [, type = '', blob = '', comment = ''] = m;
  if (embeddedType(blob) !== type) return null;
  return { options, type, blob, comment: comment.trim() };
}

/**
 * A line of authorized_keys as sshd reads it: a key, or options followed by a key. Any key type is
 * recognised here (so `manage` also removes types brine would not add); null for anything else.
 */
function parseKeyLine(line: string): KeyLine | null {
  const text = line.trim();
  if (!text || text.startsWith('#')) return null;
  const bare = keyWithoutOptions(text, '');
  if (bare) return bare;
  const [options, rest] = splitOptions(text);
  return keyWithoutOptions(rest, options);
}

/** A key given in a state: a supported type and real key data, or a message saying what is wrong. */
function parseWantedKey(text: string): KeyLine | string {
  if (/[\r\n]/.test(text.trim())) return 'holds more than one line; give one key per item';
  const key = parseKeyLine(text);
  if (key && KEY_TYPES.includes(key.type)) return key;
  if (key) return `key type ${key.type} is not supported (use one of ${KEY_TYPES.join(', ')})`;
  // Say which part is wrong, quoting the start of the line only.
  const words = text.trim().split(/\s+/);
  const typeAt = words.findIndex((w) => KEY_TYPES.includes(w));
  const start = text.trim().slice(0, 24) + (text.trim().length > 24 ? '…' : '');
  if (typeAt < 0) return `"${start}" is not a public key: no key type (one of ${KEY_TYPES.join(', ')})`;
  const blob = words[typeAt + 1];
  if (blob === undefined) return `"${start}" is not a public key: the key data after ${words[typeAt]} is missing`;
  const inside = embeddedType(blob);
  if (inside === null) return `"${start}" is not a public key: the key data after ${words[typeAt]} is not base64 key data`;
  return `"${start}" is not a public key: the line says ${words[typeAt]} but the key data is ${inside}`;
}

function keyId(k: KeyLine): string {
  return `${k.type} ${k.blob}`;
}

function fingerprint(k: KeyLine): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(k.blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** How a change names a key: type and comment (the fingerprint when there is no comment). */
function keyLabel(k: KeyLine): string {
  return `key ${k.type} ${k.comment || fingerprint(k)}`;
}

/** A key line without its (long) data, for a change's old and new. */
function describe(k: KeyLine): string {
  return [k.options, k.type, k.comment || fingerprint(k)].filter(Boolean).join(' ');
}

function formatLine(k: KeyLine): string {
  return [k.options, k.type, k.blob, k.comment].filter(Boolean).join(' ');
}

function sameLine(a: KeyLine, b: KeyLine): boolean {
  return a.options === b.options && a.comment === b.comment;
}

// ---------------------------------------------------------------------------------------------
// What is on disk

interface NodeFacts {
  kind: 'file' | 'directory' | 'symlink' | 'other';
  uid: number;
  gid: number;
  mode: number;
}

interface AuthorizedKeysCurrent {
  user: string;
  /** null when the user does not exist (yet: a state may be about to create it). */
  account: { name: string; uid: number; gid: number; home: string; owner: string } | null;
  dirPath: string;
  filePath: string;
  homeExists: boolean;
  dir: NodeFacts | null;
  file: NodeFacts | null;
  /** Owner of the directory and the file now, as `user:group`. */
  dirOwner: string | null;
  fileOwner: string | null;
  /** The file's lines, as they are. */
  lines: string[];
}

function kindOf(st: Stats): NodeFacts['kind'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
}

function nodeFacts(st: Stats): NodeFacts {
  return { kind: kindOf(st), uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
}

function viaFd(handle: FileHandle, name: string): string {
  return `/proc/self/fd/${handle.fd}/${name}`;
}

/** Opens a directory; null when it does not exist. With `noFollow`, a link is refused. */
async function openDirectory(path: string, shownPath: string, noFollow: boolean): Promise<FileHandle | null> {
  try {
    return await fs.open(path, constants.O_RDONLY | constants.O_DIRECTORY | (noFollow ? constants.O_NOFOLLOW : 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // With O_NOFOLLOW, Linux answers ENOTDIR (or ELOOP) for a link.
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      const link = (await lstatOrNull(path))?.isSymbolicLink();
      throw new Error(
        link
          ? `${shownPath} is a symbolic link; brine does not follow links in a user's home (remove it)`
          : `${shownPath} is not a directory (remove it)`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Opens the existing regular file `name` in an open directory, never through a link. */
async function openKeysFile(dir: FileHandle, shownPath: string, flags: number): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a FIFO put there would otherwise hang the run.
    handle = await fs.open(viaFd(dir, 'authorized_keys'), flags | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new Error(`${shownPath} is a symbolic link; brine does not follow links in a user's home (remove it)`);
    throw err;
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    throw new Error(`${shownPath} is not a regular file (remove it)`);
  }
  return handle;
}

async function checkKeys(user: string): Promise<AuthorizedKeysCurrent> {
  const [users, groups] = [await readPasswd(), await readGroups()];
  const ownerName = (uid: number, gid: number) =>
    `${users.find((u) => u.uid === uid)?.name ?? uid}:${groups.find((g) => g.gid === gid)?.name ?? gid}`;
  const entry = users.find((u) => u.name === user);
  const empty = {
    homeExists: false,
    dir: null,
    file: null,
    dirOwner: null,
    fileOwner: null,
    lines: [],
  };
  if (!entry) return { user, account: null, dirPath: `~${user}/.ssh`, filePath: `~${user}/.ssh/authorized_keys`, ...empty };

  const dirPath = join(entry.home, '.ssh');
  const filePath = join(dirPath, 'authorized_keys');
  const current: AuthorizedKeysCurrent = {
    user,
    account: { name: entry.name, uid: entry.uid, gid: entry.gid, home: entry.home, owner: ownerName(entry.uid, entry.gid) },
    dirPath,
    filePath,
    ...empty,
  };
  const home = await openDirectory(entry.home, entry.home, false);
  if (!home) return current;
  try {
    current.homeExists = true;
    const dirStat = await lstatOrNull(viaFd(home, '.ssh'));
    if (!dirStat) return current;
    current.dir = nodeFacts(dirStat);
    current.dirOwner = ownerName(dirStat.uid, dirStat.gid);
    if (current.dir.kind !== 'directory') return current;
    const dir = await openDirectory(viaFd(home, '.ssh'), dirPath, true);
    if (!dir) return current;
    try {
      const fileStat = await lstatOrNull(viaFd(dir, 'authorized_keys'));
      if (!fileStat) return current;
      current.file = nodeFacts(fileStat);
      current.fileOwner = ownerName(fileStat.uid, fileStat.gid);
      if (current.file.kind !== 'file') return current;
      const handle = await openKeysFile(dir, filePath, constants.O_RDONLY);
      try {
        const text = await handle.readFile('utf8');
        current.lines = text.split('\n');
        if (current.lines[current.lines.length - 1] === '') current.lines.pop();
      } finally {
        await handle.close();
      }
    } finally {
      await dir.close();
    }
  } finally {
    await home.close();
  }
  return current;
}

// ---------------------------------------------------------------------------------------------
// What changes (pure)

type Mode = 'present' | 'absent' | 'manage';

interface KeysOutcome {
  lines: string[];
  changes: Change[];
}

/** The file's new lines and the key changes. Comments and blank lines stay where they are. */
function planLines(lines: readonly string[], wanted: readonly KeyLine[], mode: Mode): KeysOutcome {
  const wantedById = new Map(wanted.map((k) => [keyId(k), k]));
  const placed = new Set<string>();
  const out: string[] = [];
  const changes: Change[] = [];
  lines.forEach((line, i) => {
    const text = line.trim();
    if (!text || text.startsWith('#')) {
      out.push(line);
      return;
    }
    const key = parseKeyLine(line);
    if (!key) {
      // sshd might read it as a key brine does not understand: `manage` leaves only what it knows.
      if (mode === 'manage') changes.push({ what: `line ${i + 1}`, old: 'not a recognised key', new: null });
      else out.push(line);
      return;
    }
    const want = wantedById.get(keyId(key));
    if (mode === 'absent') {
      if (want) changes.push({ what: keyLabel(key), old: describe(key), new: null });
      else out.push(line);
    } else if (!want || placed.has(keyId(key))) {
      // Not listed, or listed and already written: `present` leaves it, `manage` removes it.
      if (mode === 'manage') changes.push({ what: keyLabel(key), old: describe(key), new: null });
      else out.push(line);
    } else {
      placed.add(keyId(key));
      if (sameLine(key, want)) out.push(line);
      else {
        changes.push({ what: keyLabel(want), old: describe(key), new: describe(want) });
        out.push(formatLine(want));
      }
    }
  });
  if (mode !== 'absent') {
    for (const want of wanted) {
      if (placed.has(keyId(want))) continue;
      placed.add(keyId(want));
      changes.push({ what: keyLabel(want), old: null, new: describe(want) });
      out.push(formatLine(want));
    }
  }
  return { lines: out, changes };
}

/** Whether ~/.ssh and the file must be (made) private to the user: whenever the file will exist. */
function keepsFile(current: AuthorizedKeysCurrent, outcome: KeysOutcome, mode: Mode): boolean {
  return mode !== 'absent' && (current.file !== null || outcome.lines.some((l) => l.trim() !== ''));
}

function planAll(current: AuthorizedKeysCurrent, wanted: readonly KeyLine[], mode: Mode): Plan & { outcome: KeysOutcome } {
  if (!current.account && mode === 'absent') return { changes: [], reason: 'the user does not exist', outcome: { lines: [], changes: [] } };
  const outcome = planLines(current.lines, wanted, mode);
  const changes: Change[] = [];
  if (keepsFile(current, outcome, mode)) {
    const owner = current.account?.owner ?? current.user;
    const { dir, file } = current;
    // Creations are named the same whether or not the user exists yet, so --test predicts them.
    if (!dir) changes.push({ what: `directory ~${current.user}/.ssh`, old: null, new: `${formatMode(DIR_MODE)} ${current.user}` });
    else if (dir.kind !== 'directory') changes.push({ what: `directory ${current.dirPath}`, old: dir.kind, new: 'directory' });
    else {
      if (dir.mode !== DIR_MODE) changes.push({ what: `mode ${current.dirPath}`, old: formatMode(dir.mode), new: formatMode(DIR_MODE) });
      if (current.dirOwner !== owner) changes.push({ what: `owner ${current.dirPath}`, old: current.dirOwner, new: owner });
    }
    if (!file) changes.push({ what: `file ~${current.user}/.ssh/authorized_keys`, old: null, new: `${formatMode(FILE_MODE)} ${current.user}` });
    else if (file.kind !== 'file') changes.push({ what: `file ${current.filePath}`, old: file.kind, new: 'file' });
    else {
      if (file.mode !== FILE_MODE) changes.push({ what: `mode ${current.filePath}`, old: formatMode(file.mode), new: formatMode(FILE_MODE) });
      if (current.fileOwner !== owner) changes.push({ what: `owner ${current.filePath}`, old: current.fileOwner, new: owner });
    }
  }
  changes.push(...outcome.changes);
  const reason = changes.length
    ? undefined
    : mode === 'absent'
      ? 'the keys are not authorized'
      : mode === 'present'
        ? 'the keys are authorized'
        : 'the authorized keys are exactly the listed ones';
  return { changes, reason, outcome };
}

// ---------------------------------------------------------------------------------------------
// Writing

async function writeKeys(current: AuthorizedKeysCurrent, wanted: readonly KeyLine[], mode: Mode): Promise<void> {
  const { account, user } = current;
  if (!account) throw new Error(`user ${user} does not exist; create it first (user.present, and require it from this state)`);
  const { outcome } = planAll(current, wanted, mode);
  const writes = outcome.changes.length > 0;
  const makePrivate = keepsFile(current, outcome, mode);
  if (!writes && !makePrivate) return;
  // Replacing a link would silently drop the keys it pointed to.
  if (current.file && current.file.kind !== 'file')
    throw new Error(
      current.file.kind === 'symlink'
        ? `${current.filePath} is a symbolic link; brine does not follow links in a user's home (remove it)`
        : `${current.filePath} is not a regular file (remove it)`,
    );

  const home = await openDirectory(account.home, account.home, false);
  if (!home) throw new Error(`the home directory ${account.home} of ${user} does not exist`);
  try {
    let dir = await openDirectory(viaFd(home, '.ssh'), current.dirPath, true);
    if (!dir) {
      if (!makePrivate) return; // nothing to remove from a file that is not there
      await fs.mkdir(viaFd(home, '.ssh'), { mode: DIR_MODE });
      dir = await openDirectory(viaFd(home, '.ssh'), current.dirPath, true);
      if (!dir) throw new Error(`${current.dirPath} vanished while it was being created`);
    }
    try {
      if (makePrivate) {
        const st = await dir.stat();
        if (st.uid !== account.uid || st.gid !== account.gid) await dir.chown(account.uid, account.gid);
        if ((st.mode & 0o7777) !== DIR_MODE) await dir.chmod(DIR_MODE);
      }
      if (writes) {
        // `absent` keeps the file's owner and mode; the others make it the user's, private.
        const keep = current.file?.kind === 'file' ? current.file : null;
        const owner = makePrivate || !keep ? { uid: account.uid, gid: account.gid, mode: FILE_MODE } : keep;
        const temp = `.authorized_keys.brine-${randomBytes(4).toString('hex')}`;
        const content = outcome.lines.length ? `${outcome.lines.join('\n')}\n` : '';
        try {
          const handle = await fs.open(
            viaFd(dir, temp),
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            FILE_MODE,
          );
          try {
            await handle.writeFile(content);
            await handle.chown(owner.uid, owner.gid);
            await handle.chmod(owner.mode);
            await handle.sync();
          } finally {
            await handle.close();
          }
          await fs.rename(viaFd(dir, temp), viaFd(dir, 'authorized_keys'));
        } catch (err) {
          await fs.rm(viaFd(dir, temp), { force: true });
          throw err;
        }
        await dir.sync();
      } else if (current.file) {
        const handle = await openKeysFile(dir, current.filePath, constants.O_RDONLY);
        try {
          const st = await handle.stat();
          if (st.uid !== account.uid || st.gid !== account.gid) await handle.chown(account.uid, account.gid);
          if ((st.mode & 0o7777) !== FILE_MODE) await handle.chmod(FILE_MODE);
        } finally {
          await handle.close();
        }
      }
    } finally {
      await dir.close();
    }
  } finally {
    await home.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The state functions

function validateKeys(texts: readonly string[], key: string): ArgProblem[] {
  const problems: ArgProblem[] = [];
  const seen = new Map<string, number>();
  texts.forEach((text, i) => {
    const item = texts.length > 1 ? `item ${i + 1}: ` : '';
    const parsed = parseWantedKey(text);
    if (typeof parsed === 'string') {
      problems.push({ key, message: `${item}${parsed}` });
      return;
    }
    const first = seen.get(keyId(parsed));
    if (first !== undefined) problems.push({ key, message: `items ${first + 1} and ${i + 1} are the same key (${parsed.type} ${fingerprint(parsed)})` });
    else seen.set(keyId(parsed), i);
  });
  return problems;
}

function wantedKeys(texts: readonly string[]): KeyLine[] {
  return texts.map((text) => {
    const parsed = parseWantedKey(text);
    if (typeof parsed === 'string') throw new Error(parsed); // validate() has reported it already
    return parsed;
  });
}

const KeysArgs = Type.Object(
  {
    /** A key line: `[options] type data [comment]`. Ignored when `names` is given. */
    name: KeyLineArg,
    /** Several key lines. */
    names: Type.Optional(Type.Array(KeyLineArg, { minItems: 1 })),
    user: AccountName,
  },
  { additionalProperties: false },
);

function keysOf(args: { name: string; names?: string[] }): { texts: string[]; key: string } {
  return args.names ? { texts: args.names, key: 'names' } : { texts: [args.name], key: 'name' };
}

function keysFunction(mode: 'present' | 'absent') {
  return stateFunction(KeysArgs, {
    validate(args) {
      const { texts, key } = keysOf(args);
      return validateKeys(texts, key);
    },
    check(args) {
      return checkKeys(args.user);
    },
    plan(current, args) {
      const { changes, reason } = planAll(current, wantedKeys(keysOf(args).texts), mode);
      return { changes, reason };
    },
    async apply(args, _plan, current) {
      await writeKeys(current, wantedKeys(keysOf(args).texts), mode);
    },
  });
}

const ManageArgs = Type.Object(
  {
    /** The state ID; not used. */
    name: Type.String(),
    user: AccountName,
    /** Every key the user may log in with; an empty list removes them all. */
    ssh_keys: Type.Array(KeyLineArg),
  },
  { additionalProperties: false },
);

const manage = stateFunction(ManageArgs, {
  validate(args) {
    return validateKeys(args.ssh_keys, 'ssh_keys');
  },
  check(args) {
    return checkKeys(args.user);
  },
  plan(current, args) {
    const { changes, reason } = planAll(current, wantedKeys(args.ssh_keys), 'manage');
    return { changes, reason };
  },
  async apply(args, _plan, current) {
    await writeKeys(current, wantedKeys(args.ssh_keys), 'manage');
  },
});

export const sshAuthModule: StateModule = {
  name: 'ssh_auth',
  functions: { present: keysFunction('present'), absent: keysFunction('absent'), manage },
};
