// `agent deploy-key ENV [--root REPO] [--force]` — run on a developer's machine, in the project's
// repository: makes a new ed25519 key pair for the app's repository, puts the private half into
// pillar/ENV/secrets.yaml as `deploy_key` (gitignored; masked in every output; only ever copied to
// ENV's servers) and prints the public half to add to the git host as a read-only deploy key.
//
// The key goes at the top level of secrets.yaml, not under `secrets:`, whose keys become the app's
// environment variables. The file is edited with yaml's Document API so its comments and other
// keys stay as they were. The private key is never printed, and exists outside secrets.yaml only
// in a private temp directory, for the moment ssh-keygen needs.
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { Document, Scalar, isMap, isScalar, parseDocument } from 'yaml';
import { writeFileAtomic } from '../atomic.js';
import type { Io } from './context.js';
import { ExitCode } from '../errors.js';
import { createRunner } from '../exec.js';
import { environments } from '../pillar.js';
import { Masker } from '../secret.js';

const KEY = 'deploy_key';
const USAGE = 'usage: agent deploy-key ENV [--root REPO] [--force]';

export async function deployKey(args: string[], root: string, io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { force: { type: 'boolean', default: false } } });
  } catch (err) {
    io.stderr(`agent: ${(err as Error).message}\n${USAGE}\n`);
    return ExitCode.usage;
  }
  const [env, ...extra] = parsed.positionals;
  if (!env || extra.length) {
    io.stderr(`agent: ${env ? `unexpected argument "${extra[0]}"` : 'deploy-key needs the environment'}\n${USAGE}\n`);
    return ExitCode.usage;
  }
  const pillarDir = join(root, 'pillar');
  if (!existsSync(pillarDir)) {
    io.stderr(`agent: no pillar/ in ${root}: run deploy-key in your project's repository, with --root .\n`);
    return ExitCode.usage;
  }
  const known = environments(pillarDir);
  if (!known.includes(env)) {
    io.stderr(`agent: unknown environment "${env}": there is no pillar/${env}/ (known: ${known.join(', ') || 'none'})\n`);
    return ExitCode.invalid;
  }

  const file = join(pillarDir, env, 'secrets.yaml');
  const shown = relative(process.cwd(), file) || file;
  const existing = existsSync(file) ? await fs.readFile(file, 'utf8') : null;
  const doc = existing === null ? new Document({}) : parseDocument(existing);
  if (doc.errors.length) {
    io.stderr(`agent: ${shown}: invalid YAML: ${doc.errors[0]!.message.split('\n')[0]}\n`);
    return ExitCode.invalid;
  }
  if (doc.contents === null) doc.contents = doc.createNode({}) as never;
  if (!isMap(doc.contents)) {
    io.stderr(`agent: ${shown}: must be a mapping of keys to values\n`);
    return ExitCode.invalid;
  }
  // secrets.example.yaml's stand-in (copied with it) is not a key to keep.
  const placeholder = String(doc.get(KEY) ?? '').includes('(replace me)');
  if (doc.has(KEY) && !placeholder && !parsed.values.force) {
    io.stderr(
      `agent: ${shown} already has a ${KEY}; pass --force to replace it ` +
        `(then remove the old public key from the git host: the servers stop using it at their next run)\n`,
    );
    return ExitCode.usage;
  }

  const { privateKey, publicKey } = await generateKey(env);
  const value = doc.createNode(privateKey) as Scalar;
  value.type = Scalar.BLOCK_LITERAL;
  const note =
    ` The app repository's deploy key (private half), made by \`agent deploy-key ${env}\`.\n` +
    ` Its public half, added to the git host as a read-only deploy key:\n   ${publicKey}`;
  const old = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === KEY);
  if (old) {
    old.value = value;
    // The note of an earlier run names the old public key; a comment of the user's own is kept.
    const key = old.key as Scalar;
    if (!key.commentBefore || key.commentBefore.includes('agent deploy-key')) key.commentBefore = note;
  } else {
    const pair = doc.createPair(KEY, value);
    (pair.key as Scalar).commentBefore = note;
    doc.contents.items.push(pair);
  }
  if (existing === null)
    doc.commentBefore = ` ${env} secrets: never committed (gitignored); every value is masked in all output.`;
  const before = existing === null ? null : (await fs.stat(file)).mode & 0o777;
  // The file holds private keys and passwords: readable by its owner only.
  await writeFileAtomic(file, String(doc), { mode: 0o600 });

  io.stdout(
    [
      `${existing === null ? 'created' : 'updated'} ${shown}: ${KEY} holds the new private key (never printed).`,
      ...(before !== null && before & 0o077 ? [`(it was readable by others, mode ${before.toString(8).padStart(4, '0')}; it is now 0600)`] : []),
      '',
      `Add this public key to the app's repository as a read-only deploy key`,
      `(GitHub: Settings → Deploy keys → Add deploy key, "Allow write access" unchecked;`,
      ` GitLab: Settings → Repository → Deploy keys):`,
      '',
      publicKey,
      '',
      `Then bootstrap.sh (or a run of agent apply after syncing) gives ${env}'s servers the new key.`,
      '',
    ].join('\n'),
  );
  return ExitCode.ok;
}

/** An ed25519 pair from ssh-keygen, made in a private temp dir that is removed right after. */
async function generateKey(env: string): Promise<{ privateKey: string; publicKey: string }> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'brine-deploy-key-'));
  try {
    const path = join(dir, 'key');
    await createRunner(new Masker()).run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `brine deploy key (${env})`, '-f', path], {
      timeoutMs: 60_000,
    });
    return { privateKey: await fs.readFile(path, 'utf8'), publicKey: (await fs.readFile(`${path}.pub`, 'utf8')).trim() };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
