import t, { type Test } from 'tap';
import { Value } from '@sinclair/typebox/value';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accountFiles } from '../../../agent/accounts.js';
import type { Runner } from '../../../agent/exec.js';
import { Facts } from '../../../agent/facts.js';
import { sshAuthModule } from '../../../agent/modules/ssh_auth.js';
import type { Context, StateFunction } from '../../../agent/modules/types.js';
import { Masker } from '../../../agent/secret.js';

// Real keys from ssh-keygen, and made-up ones with well-formed key data for the other types.
const ALICE_BLOB = 'AAAAC3NzaC1lZDI1NTE5AAAAIEYWE2MYCZvOneyXiNOGKNsQ77VwpBIqNgnjQg4HFamf';
const ALICE_FINGERPRINT = 'SHA256:htsW9XRffUA8YR/W5Uw9vsvmOf0TE/jjiShNMA7td7s'; // ssh-keygen -lf
const ALICE = `ssh-ed25519 ${ALICE_BLOB} alice@laptop`;
const CAROL =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGVD8kvga6chYDEiLx5dFjYm79HHD1Nqa3BSZ6CtVkLKSflLtjVsTkizVmdSLL9oSCzq6/ET0yrL+UFQuUt6wQY= carol@phone';

/** Key data as SSH encodes it: the type as a length-prefixed string, then the key material. */
function blobOf(type: string, seed: string): string {
  const str = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  return Buffer.concat([str(Buffer.from(type)), str(createHash('sha256').update(seed).digest())]).toString('base64');
}
const BOB = `ssh-rsa ${blobOf('ssh-rsa', 'bob')} bob@desktop`;
const DAVE = `sk-ssh-ed25519@openssh.com ${blobOf('sk-ssh-ed25519@openssh.com', 'dave')} dave@yubikey`;

const UID = 1000;
const GID = 1000;

/** A runner that must not be called: authorized_keys is written directly. */
function fakeRunner() {
  const calls: string[][] = [];
  const runner: Runner = {
    async run(argv: readonly string[]) {
      calls.push([...argv]);
      throw new Error(`unexpected command ${argv.join(' ')}`);
    },
  };
  return { runner, calls };
}

/** A testdir with home/alice (holding `alice`, an .ssh tree) and passwd/group files pointing there. */
/** A directory of a tap fixture tree. */
type Fixture = { [name: string]: NonNullable<Parameters<Test['testdir']>[0]> };

function setup(t: Test, alice: Fixture = {}, extra: Fixture = {}) {
  const dir = t.testdir({ home: { alice }, ...extra });
  const home = join(dir, 'home', 'alice');
  writeFileSync(join(dir, 'passwd'), `root:x:0:0:root:/root:/bin/bash\nalice:x:${UID}:${GID}:Alice:${home}:/bin/bash\n`);
  writeFileSync(join(dir, 'group'), `root:x:0:\nalice:x:${GID}:\n`);
  const saved = { ...accountFiles };
  accountFiles.passwd = join(dir, 'passwd');
  accountFiles.group = join(dir, 'group');
  t.teardown(() => Object.assign(accountFiles, saved));
  const fake = fakeRunner();
  const ctx: Context = {
    runner: fake.runner,
    facts: new Facts(),
    masker: new Masker(),
    statesDir: dir,
    pillar: {},
    env: 'test',
    renderTemplate: () => {
      throw new Error('no templates');
    },
  };
  const ssh = join(home, '.ssh');
  const file = join(ssh, 'authorized_keys');
  return { ctx, calls: fake.calls, dir, home, ssh, file };
}

/** Gives ~/.ssh and authorized_keys the owner and modes the module wants, so only keys differ. */
function makePrivate(ssh: string, file: string): void {
  chownSync(ssh, UID, GID);
  chmodSync(ssh, 0o700);
  chownSync(file, UID, GID);
  chmodSync(file, 0o600);
}

function argsFor(fn: StateFunction, raw: Record<string, unknown>): any {
  const args = Value.Default(fn.schema, structuredClone(raw));
  if (!Value.Check(fn.schema, args)) throw new Error(`invalid test args: ${JSON.stringify([...Value.Errors(fn.schema, args)][0])}`);
  return args;
}

/** check → plan → apply (when there is something to do), as the runner does; returns the plan. */
async function converge(fn: StateFunction, raw: Record<string, unknown>, ctx: Context) {
  const args = argsFor(fn, raw);
  const problems = fn.validate?.(args) ?? [];
  if (problems.length) throw new Error(`invalid test args: ${JSON.stringify(problems)}`);
  const current = await fn.check(args, ctx);
  const plan = fn.plan(current, args, ctx);
  if (plan.changes.length) await fn.apply(args, plan, current, ctx);
  return plan;
}

async function planOnly(fn: StateFunction, raw: Record<string, unknown>, ctx: Context) {
  const args = argsFor(fn, raw);
  return fn.plan(await fn.check(args, ctx), args, ctx);
}

function ownerAndMode(path: string) {
  const st = statSync(path);
  return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
}

const present = sshAuthModule.functions.present!;
const absent = sshAuthModule.functions.absent!;
const manage = sshAuthModule.functions.manage!;

t.test('ssh_auth.present creates ~/.ssh and authorized_keys for a new key', async (t) => {
  const { ctx, calls, ssh, file } = setup(t);
  const plan = await converge(present, { name: ALICE, user: 'alice' }, ctx);
  t.strictSame(plan, {
    changes: [
      { what: 'directory ~alice/.ssh', old: null, new: '0700 alice' },
      { what: 'file ~alice/.ssh/authorized_keys', old: null, new: '0600 alice' },
      { what: 'key ssh-ed25519 alice@laptop', old: null, new: 'ssh-ed25519 alice@laptop' },
    ],
    reason: undefined,
  });
  t.equal(readFileSync(file, 'utf8'), `${ALICE}\n`);
  t.strictSame(ownerAndMode(ssh), { uid: UID, gid: GID, mode: 0o700 });
  t.strictSame(ownerAndMode(file), { uid: UID, gid: GID, mode: 0o600 });
  t.strictSame(readdirSync(ssh), ['authorized_keys'], 'no temp file left behind');
  t.strictSame(await planOnly(present, { name: ALICE, user: 'alice' }, ctx), { changes: [], reason: 'the keys are authorized' }, 'a second run changes nothing');
  t.strictSame(calls, []);
});

t.test('ssh_auth.present on an authorized key plans nothing', async (t) => {
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: `# mine\nssh-ed25519   ${ALICE_BLOB}   alice@laptop  \n` } });
  makePrivate(ssh, file);
  const plan = await converge(present, { name: ALICE, user: 'alice' }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the keys are authorized' });
  t.equal(readFileSync(file, 'utf8'), `# mine\nssh-ed25519   ${ALICE_BLOB}   alice@laptop  \n`, 'the file is not rewritten');
});

t.test('ssh_auth.present replaces the line of a key whose comment changed', async (t) => {
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: `# added by hand\nssh-ed25519 ${ALICE_BLOB} alice@old\n${BOB}\n` } });
  makePrivate(ssh, file);
  const plan = await converge(present, { name: ALICE, user: 'alice' }, ctx);
  t.strictSame(plan.changes, [{ what: 'key ssh-ed25519 alice@laptop', old: 'ssh-ed25519 alice@old', new: 'ssh-ed25519 alice@laptop' }]);
  t.equal(readFileSync(file, 'utf8'), `# added by hand\n${ALICE}\n${BOB}\n`, 'same place, other lines kept');
});

t.test('ssh_auth.present with names adds several keys, options included', async (t) => {
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: `${ALICE}\n` } });
  makePrivate(ssh, file);
  const withOptions = `no-pty,command="echo hi there" ${CAROL}`;
  const plan = await converge(present, { name: 'team keys', names: [ALICE, withOptions, DAVE], user: 'alice' }, ctx);
  t.strictSame(plan.changes, [
    { what: 'key ecdsa-sha2-nistp256 carol@phone', old: null, new: 'no-pty,command="echo hi there" ecdsa-sha2-nistp256 carol@phone' },
    { what: 'key sk-ssh-ed25519@openssh.com dave@yubikey', old: null, new: 'sk-ssh-ed25519@openssh.com dave@yubikey' },
  ]);
  t.equal(readFileSync(file, 'utf8'), `${ALICE}\n${withOptions}\n${DAVE}\n`);
  t.strictSame((await planOnly(present, { name: 'team keys', names: [ALICE, withOptions, DAVE], user: 'alice' }, ctx)).changes, []);
});

t.test('ssh_auth.present names a key without a comment by its fingerprint', async (t) => {
  const { ctx } = setup(t);
  const plan = await planOnly(present, { name: `ssh-ed25519 ${ALICE_BLOB}`, user: 'alice' }, ctx);
  t.strictSame(plan.changes[2], { what: `key ssh-ed25519 ${ALICE_FINGERPRINT}`, old: null, new: `ssh-ed25519 ${ALICE_FINGERPRINT}` });
  t.notOk(JSON.stringify(plan).includes(ALICE_BLOB), 'the key data is never in a change');
});

t.test('ssh_auth.present for a user that does not exist yet plans the file and fails to apply', async (t) => {
  const { ctx } = setup(t);
  const args = argsFor(present, { name: ALICE, user: 'carol' });
  const current = await present.check(args, ctx);
  const plan = present.plan(current, args, ctx);
  t.strictSame(plan.changes, [
    { what: 'directory ~carol/.ssh', old: null, new: '0700 carol' },
    { what: 'file ~carol/.ssh/authorized_keys', old: null, new: '0600 carol' },
    { what: 'key ssh-ed25519 alice@laptop', old: null, new: 'ssh-ed25519 alice@laptop' },
  ]);
  await t.rejects(present.apply(args, plan, current, ctx), {
    message: 'user carol does not exist; create it first (user.present, and require it from this state)',
  });
});

t.test('ssh_auth.absent removes the listed key and keeps the other lines, owner and mode', async (t) => {
  const { ctx, file } = setup(t, { '.ssh': { authorized_keys: `${ALICE}\n${BOB}\nno-pty ssh-ed25519 ${ALICE_BLOB} alice@old\n` } });
  chmodSync(file, 0o640);
  const plan = await converge(absent, { name: `ssh-ed25519 ${ALICE_BLOB} whatever`, user: 'alice' }, ctx);
  t.strictSame(plan, {
    changes: [
      { what: 'key ssh-ed25519 alice@laptop', old: 'ssh-ed25519 alice@laptop', new: null },
      { what: 'key ssh-ed25519 alice@old', old: 'no-pty ssh-ed25519 alice@old', new: null },
    ],
    reason: undefined,
  });
  t.equal(readFileSync(file, 'utf8'), `${BOB}\n`);
  t.strictSame(ownerAndMode(file), { uid: 0, gid: 0, mode: 0o640 });
});

t.test('ssh_auth.absent on a key that is not there plans nothing', async (t) => {
  const { ctx, file } = setup(t, { '.ssh': { authorized_keys: `${BOB}\n` } });
  t.strictSame(await converge(absent, { name: ALICE, user: 'alice' }, ctx), { changes: [], reason: 'the keys are not authorized' });
  t.equal(readFileSync(file, 'utf8'), `${BOB}\n`);
  t.strictSame(ownerAndMode(file).mode, 0o644, 'absent does not touch the modes');

  const bare = setup(t);
  t.strictSame(await converge(absent, { name: ALICE, user: 'alice' }, bare.ctx), { changes: [], reason: 'the keys are not authorized' });
  t.throws(() => lstatSync(bare.ssh), { code: 'ENOENT' }, 'no ~/.ssh is created');

  t.strictSame(await converge(absent, { name: ALICE, user: 'zed' }, bare.ctx), { changes: [], reason: 'the user does not exist' });
});

t.test('ssh_auth.manage removes a key that is not listed', async (t) => {
  const { ctx, calls, ssh, file } = setup(t, { '.ssh': { authorized_keys: `# team keys\n${ALICE}\n${BOB}\n` } });
  makePrivate(ssh, file);
  const plan = await converge(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE] }, ctx);
  t.strictSame(plan, {
    changes: [{ what: 'key ssh-rsa bob@desktop', old: 'ssh-rsa bob@desktop', new: null }],
    reason: undefined,
  });
  t.equal(readFileSync(file, 'utf8'), `# team keys\n${ALICE}\n`);
  t.strictSame(ownerAndMode(file), { uid: UID, gid: GID, mode: 0o600 });
  t.strictSame(
    await planOnly(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE] }, ctx),
    { changes: [], reason: 'the authorized keys are exactly the listed ones' },
    'a second run changes nothing',
  );
  t.strictSame(calls, []);
});

t.test('ssh_auth.manage updates, adds and removes in one write, dropping unrecognised lines and duplicates', async (t) => {
  const before = [`ssh-ed25519 ${ALICE_BLOB} alice@old`, 'this is not a key', BOB, `from="10.0.0.1" ${ALICE}`, ''].join('\n');
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: before } });
  makePrivate(ssh, file);
  const plan = await converge(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE, CAROL] }, ctx);
  t.strictSame(plan.changes, [
    { what: 'key ssh-ed25519 alice@laptop', old: 'ssh-ed25519 alice@old', new: 'ssh-ed25519 alice@laptop' },
    { what: 'line 2', old: 'not a recognised key', new: null },
    { what: 'key ssh-rsa bob@desktop', old: 'ssh-rsa bob@desktop', new: null },
    { what: 'key ssh-ed25519 alice@laptop', old: 'from="10.0.0.1" ssh-ed25519 alice@laptop', new: null },
    { what: 'key ecdsa-sha2-nistp256 carol@phone', old: null, new: 'ecdsa-sha2-nistp256 carol@phone' },
  ]);
  t.equal(readFileSync(file, 'utf8'), `${ALICE}\n${CAROL}\n`);
});

t.test('ssh_auth.manage makes ~/.ssh and the file private to the user', async (t) => {
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: `${ALICE}\n` } });
  chmodSync(ssh, 0o755);
  chmodSync(file, 0o664);
  const plan = await converge(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE] }, ctx);
  t.strictSame(plan.changes, [
    { what: `mode ${ssh}`, old: '0755', new: '0700' },
    { what: `owner ${ssh}`, old: 'root:root', new: 'alice:alice' },
    { what: `mode ${file}`, old: '0664', new: '0600' },
    { what: `owner ${file}`, old: 'root:root', new: 'alice:alice' },
  ]);
  t.strictSame(ownerAndMode(ssh), { uid: UID, gid: GID, mode: 0o700 });
  t.strictSame(ownerAndMode(file), { uid: UID, gid: GID, mode: 0o600 });
  t.equal(readFileSync(file, 'utf8'), `${ALICE}\n`);
});

t.test('ssh_auth.manage with an empty list removes every key', async (t) => {
  const { ctx, ssh, file } = setup(t, { '.ssh': { authorized_keys: `${ALICE}\n${BOB}\n` } });
  makePrivate(ssh, file);
  const plan = await converge(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [] }, ctx);
  t.strictSame(plan.changes, [
    { what: 'key ssh-ed25519 alice@laptop', old: 'ssh-ed25519 alice@laptop', new: null },
    { what: 'key ssh-rsa bob@desktop', old: 'ssh-rsa bob@desktop', new: null },
  ]);
  t.equal(readFileSync(file, 'utf8'), '');
});

t.test('ssh_auth.manage with an empty list and no file plans nothing', async (t) => {
  const { ctx, ssh } = setup(t);
  const plan = await converge(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [] }, ctx);
  t.strictSame(plan, { changes: [], reason: 'the authorized keys are exactly the listed ones' });
  t.throws(() => lstatSync(ssh), { code: 'ENOENT' });
});

t.test('ssh_auth.manage refuses a ~/.ssh that is a symbolic link', async (t) => {
  const { ctx, dir, ssh, file } = setup(t, { '.ssh': t.fixture('symlink', '../../elsewhere') }, { elsewhere: {} });
  const args = argsFor(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE] });
  const current = await manage.check(args, ctx);
  const plan = manage.plan(current, args, ctx);
  t.strictSame(plan.changes, [
    { what: `directory ${ssh}`, old: 'symlink', new: 'directory' },
    { what: 'file ~alice/.ssh/authorized_keys', old: null, new: '0600 alice' },
    { what: 'key ssh-ed25519 alice@laptop', old: null, new: 'ssh-ed25519 alice@laptop' },
  ]);
  await t.rejects(manage.apply(args, plan, current, ctx), {
    message: `${ssh} is a symbolic link; brine does not follow links in a user's home (remove it)`,
  });
  t.strictSame(readdirSync(join(dir, 'elsewhere')), [], 'nothing written where the link points');
  t.strictSame(ownerAndMode(join(dir, 'elsewhere')).uid, 0, 'the link target is not chowned');
});

t.test('ssh_auth.manage refuses an authorized_keys that is a symbolic link', async (t) => {
  const { ctx, dir, file } = setup(t, { '.ssh': { authorized_keys: t.fixture('symlink', '../../../target') } }, { target: 'not keys\n' });
  chmodSync(join(dir, 'home', 'alice', '.ssh'), 0o700);
  chownSync(join(dir, 'home', 'alice', '.ssh'), UID, GID);
  const args = argsFor(manage, { name: 'alice-keys', user: 'alice', ssh_keys: [ALICE] });
  const current = await manage.check(args, ctx);
  const plan = manage.plan(current, args, ctx);
  t.strictSame(plan.changes, [
    { what: `file ${file}`, old: 'symlink', new: 'file' },
    { what: 'key ssh-ed25519 alice@laptop', old: null, new: 'ssh-ed25519 alice@laptop' },
  ]);
  await t.rejects(manage.apply(args, plan, current, ctx), {
    message: `${file} is a symbolic link; brine does not follow links in a user's home (remove it)`,
  });
  t.equal(readFileSync(join(dir, 'target'), 'utf8'), 'not keys\n');
  t.ok(lstatSync(file).isSymbolicLink(), 'the link is left for a person to look at');
});

t.test('ssh_auth validate reports a line that is not a public key, under the argument that holds it', async (t) => {
  t.strictSame(present.validate!(argsFor(present, { name: ALICE, user: 'alice' })), []);
  t.strictSame(manage.validate!(argsFor(manage, { name: 'k', user: 'alice', ssh_keys: [ALICE, CAROL, BOB, DAVE, `restrict ssh-ed25519 ${ALICE_BLOB} alice@other`] })), [
    { key: 'ssh_keys', message: `items 1 and 5 are the same key (ssh-ed25519 ${ALICE_FINGERPRINT})` },
  ]);

  t.strictSame(present.validate!(argsFor(present, { name: 'hello world', user: 'alice' })), [
    { key: 'name', message: '"hello world" is not a public key: no key type (one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com)' },
  ]);
  t.strictSame(absent.validate!(argsFor(absent, { name: 'x', names: [ALICE, 'ssh-ed25519 AAAA*notbase64 bob'], user: 'alice' })), [
    { key: 'names', message: 'item 2: "ssh-ed25519 AAAA*notbase…" is not a public key: the key data after ssh-ed25519 is not base64 key data' },
  ]);
  t.strictSame(present.validate!(argsFor(present, { name: 'ssh-ed25519', user: 'alice' })), [
    { key: 'name', message: '"ssh-ed25519" is not a public key: the key data after ssh-ed25519 is missing' },
  ]);
  const mismatch = manage.validate!(argsFor(manage, { name: 'k', user: 'alice', ssh_keys: [`ssh-rsa ${ALICE_BLOB} alice@laptop`] }));
  t.strictSame(mismatch, [{ key: 'ssh_keys', message: '"ssh-rsa AAAAC3NzaC1lZDI1…" is not a public key: the line says ssh-rsa but the key data is ssh-ed25519' }]);
  t.strictSame(present.validate!(argsFor(present, { name: `ssh-dss ${blobOf('ssh-dss', 'old')} old@box`, user: 'alice' })), [
    { key: 'name', message: 'key type ssh-dss is not supported (use one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com)' },
  ]);
  t.strictSame(present.validate!(argsFor(present, { name: `${ALICE}\n${CAROL}`, user: 'alice' })), [
    { key: 'name', message: 'holds more than one line; give one key per item' },
  ]);
});
