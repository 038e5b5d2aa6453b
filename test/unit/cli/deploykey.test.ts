import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync, chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { Io } from '../../../agent/cli/cli.js';
import { deployKey } from '../../../agent/cli/deploykey.js';
import { loadPillar } from '../../../agent/pillar.js';
import { isSecret } from '../../../agent/secret.js';

function io() {
  const out = { stdout: '', stderr: '' };
  const value: Io = { stdout: (s) => void (out.stdout += s), stderr: (s) => void (out.stderr += s), isTTY: false, env: {} };
  return { io: value, out };
}

/** The public half of a private key (type and key, no comment), as ssh-keygen derives it. */
function publicOf(privateKey: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'brine-test-key-'));
  try {
    writeFileSync(join(dir, 'k'), privateKey, { mode: 0o600 });
    return execFileSync('ssh-keygen', ['-y', '-f', join(dir, 'k')], { encoding: 'utf8' }).split(' ').slice(0, 2).join(' ');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const SECRETS = `# Staging secrets: never committed.
secrets:
  DB_PASSWORD: hunter2   # rotated 2024-05
  SECRET_KEY: abcdef
# Slack webhook for notifications
slack_webhook: https://hooks.slack.example/T000
`;

t.test('writes the private key into secrets.yaml, keeps the rest, prints only the public half', async (t) => {
  const root = t.testdir({ pillar: { 'common.yaml': 'project: {name: x}\n', staging: { 'secrets.yaml': SECRETS, 'env.yaml': 'domain: s\n' } } });
  const file = `${root}/pillar/staging/secrets.yaml`;
  chmodSync(file, 0o600);
  const { io: fake, out } = io();
  t.equal(await deployKey(['staging'], root, fake), 0);
  t.equal(out.stderr, '');

  const text = readFileSync(file, 'utf8');
  t.ok(text.startsWith(SECRETS.replace('hunter2   #', 'hunter2 #')), 'comments and other keys are kept');
  t.match(text, /\ndeploy_key: \|\n  -----BEGIN OPENSSH PRIVATE KEY-----\n/, 'a block literal');
  const data = parse(text);
  t.same(Object.keys(data), ['secrets', 'slack_webhook', 'deploy_key']);
  t.same(data.secrets, { DB_PASSWORD: 'hunter2', SECRET_KEY: 'abcdef' });
  const privateKey: string = data.deploy_key;
  t.match(privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+\n-----END OPENSSH PRIVATE KEY-----\n$/);
  t.equal(statSync(file).mode & 0o777, 0o600);

  const publicKey = publicOf(privateKey);
  t.match(out.stdout, `${publicKey} brine deploy key (staging)\n`, 'the public half of the key that was written');
  t.match(out.stdout, /read-only deploy key/);
  t.match(text, `#   ${publicKey} brine deploy key (staging)\n`, 'and noted next to it, to find it in the git host later');
  for (const line of privateKey.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')))
    t.notMatch(out.stdout, line, 'no line of the private key is printed');
  t.notMatch(out.stdout, 'PRIVATE KEY-----');

  // The pillar loader sees a secret at the top level, not an environment variable.
  const pillar = loadPillar(`${root}/pillar`, 'staging');
  t.ok(isSecret(pillar.data.deploy_key));
  t.same(Object.keys(pillar.data.secrets as object), ['DB_PASSWORD', 'SECRET_KEY']);
});

t.test('refuses to replace a deploy_key without --force', async (t) => {
  const root = t.testdir({ pillar: { staging: { 'secrets.yaml': `${SECRETS}deploy_key: |\n  old key\n` } } });
  const file = `${root}/pillar/staging/secrets.yaml`;
  const before = readFileSync(file, 'utf8');
  const refused = io();
  t.equal(await deployKey(['staging'], root, refused.io), 1);
  t.match(refused.out.stderr, 'already has a deploy_key; pass --force to replace it');
  t.equal(refused.out.stdout, '');
  t.equal(readFileSync(file, 'utf8'), before, 'unchanged');

  const forced = io();
  t.equal(await deployKey(['staging', '--force'], root, forced.io), 0);
  const data = parse(readFileSync(file, 'utf8'));
  t.not(data.deploy_key, 'old key\n');
  t.match(forced.out.stdout, publicOf(data.deploy_key));
  t.match(forced.out.stdout, '(it was readable by others, mode 0644; it is now 0600)');

  // Again: the note next to the key names the new public half, not the replaced one.
  const again = io();
  t.equal(await deployKey(['staging', '--force'], root, again.io), 0);
  const text = readFileSync(file, 'utf8');
  const newest = publicOf(parse(text).deploy_key);
  t.match(text, `#   ${newest} brine deploy key (staging)\n`);
  t.notMatch(text, publicOf(data.deploy_key), 'the replaced public key is no longer noted');
  t.equal(text.match(/made by `agent deploy-key staging`/g)?.length, 1);
});

t.test('creates secrets.yaml, mode 0600, when the environment has none', async (t) => {
  const root = t.testdir({ pillar: { production: { 'secrets.example.yaml': 'secrets: {}\n' } } });
  const { io: fake, out } = io();
  t.equal(await deployKey(['production'], root, fake), 0);
  const file = `${root}/pillar/production/secrets.yaml`;
  t.equal(statSync(file).mode & 0o777, 0o600);
  const text = readFileSync(file, 'utf8');
  t.match(text, /^# production secrets: never committed/);
  t.match(out.stdout, /^created .*secrets\.yaml/);
  t.match(out.stdout, publicOf(parse(text).deploy_key));
});

t.test('usage and unknown environments', async (t) => {
  const root = t.testdir({ pillar: { staging: {}, production: {} } });
  const none = io();
  t.equal(await deployKey([], root, none.io), 1);
  t.match(none.out.stderr, 'deploy-key needs the environment');
  const unknown = io();
  t.equal(await deployKey(['prod'], root, unknown.io), 3);
  t.match(unknown.out.stderr, 'unknown environment "prod": there is no pillar/prod/ (known: production, staging)');
  const extra = io();
  t.equal(await deployKey(['staging', 'more'], root, extra.io), 1);
  const noPillar = io();
  t.equal(await deployKey(['staging'], `${root}/pillar`, noPillar.io), 1);
  t.match(noPillar.out.stderr, "run deploy-key in your project's repository, with --root .");
});

t.test("the example's stand-in deploy_key (copied with secrets.example.yaml) is replaced without --force", async (t) => {
  const example = readFileSync(new URL('../../../pillar/staging/secrets.example.yaml', import.meta.url), 'utf8');
  const root = t.testdir({ pillar: { staging: { 'secrets.yaml': example } } });
  const { io: fake, out } = io();
  t.equal(await deployKey(['staging'], root, fake), 0, out.stderr);
  const text = readFileSync(`${root}/pillar/staging/secrets.yaml`, 'utf8');
  t.notMatch(text, '(replace me)');
  t.match(parse(text).deploy_key, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  t.same(Object.keys(parse(text).secrets), ['DB_PASSWORD', 'SECRET_KEY'], 'the other secrets are kept');
});
