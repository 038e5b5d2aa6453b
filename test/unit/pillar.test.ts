import t, { type Test } from 'tap';
import { InputError } from '../../agent/errors.js';
import { deepMerge, environments, loadPillar } from '../../agent/pillar.js';
import { MASK, Secret, isSecret } from '../../agent/secret.js';

type Tree = { [name: string]: string | Tree };

/** A throwaway ROOT with pillar/ in it; returns the pillar dir. */
function pillarDir(t: Test, pillar: Tree): string {
  return `${t.testdir({ pillar })}/pillar`;
}

/** What loadPillar throws, as the InputError it must be. */
function loadError(t: Test, dir: string, env: string): InputError {
  try {
    loadPillar(dir, env);
  } catch (err) {
    t.type(err, InputError);
    return err as InputError;
  }
  t.fail('expected an InputError');
  return new InputError('(none)');
}

t.test('deepMerge: mappings merge key by key; lists, scalars and secrets are replaced whole', async (t) => {
  const secret = new Secret('s');
  t.same(
    deepMerge({ app: { name: 'demo', port: 80, tags: ['a', 'b'] }, db: { password: 'x' }, keep: 1 }, { app: { port: 8080, tags: ['c'] }, db: secret }),
    { app: { name: 'demo', port: 8080, tags: ['c'] }, db: secret, keep: 1 },
  );
});

t.test('merge order: common, the other top-level files, then the environment, its secrets last', async (t) => {
  const dir = pillarDir(t, {
    'common.yaml': 'app:\n  name: demo\n  port: 80\n  tags: [a, b]\nlevel: common\nfrom_common: true\n',
    'devs.yaml': 'level: devs\ndevs:\n  alice: {shell: /bin/bash}\n',
    'admins.yaml': 'level: admins\nfrom_admins: true\n',
    'schema.yaml': 'type: object\n',
    'secrets.example.yaml': 'this is: [not read\n',
    staging: {
      'env.yaml': 'app:\n  port: 8080\n  tags: [c]\nlevel: staging\ndb:\n  host: db.internal\n  password: placeholder\n',
      'zz-late.yaml': 'db:\n  password: still-a-placeholder\n',
      'secrets.yaml': 'db:\n  password: the-real-one\n',
      'secrets.example.yaml': 'db: [not read\n',
    },
  });
  const p = loadPillar(dir, 'staging');
  t.same(p.files, ['pillar/common.yaml', 'pillar/admins.yaml', 'pillar/devs.yaml', 'pillar/staging/env.yaml', 'pillar/staging/zz-late.yaml', 'pillar/staging/secrets.yaml']);
  t.equal(p.env, 'staging');
  const { db, ...plain } = p.data as { db: { host: string; password: unknown } };
  t.same(plain, {
    app: { name: 'demo', port: 8080, tags: ['c'] },
    level: 'staging',
    from_common: true,
    from_admins: true,
    devs: { alice: { shell: '/bin/bash' } },
  });
  t.equal(db.host, 'db.internal');
  t.ok(isSecret(db.password), 'the secrets file wins over plain values, even one sorted after it');
  t.equal((db.password as Secret).reveal(), 'the-real-one');
});

t.test('values from secrets*.yaml become Secret and are registered in the masker', async (t) => {
  const dir = pillarDir(t, {
    'common.yaml': 'project: demo\n',
    staging: {
      'env.yaml': 'domain: staging.example.com\n',
      'secrets.yaml': 'secrets:\n  DB_PASSWORD: pw-one-7731\n  DB_PORT: 6543\n  KEYS: [key-a-9911, key-b-9912]\n  UNSET: null\n',
      'secrets-api.yaml': 'api:\n  token: tok-two-8842\n',
    },
  });
  const p = loadPillar(dir, 'staging');
  const secrets = p.data.secrets as Record<string, unknown>;
  t.ok(isSecret(secrets.DB_PASSWORD));
  t.equal((secrets.DB_PASSWORD as Secret).reveal(), 'pw-one-7731');
  t.equal((secrets.DB_PORT as Secret).reveal(), '6543', 'a number becomes a secret string');
  t.same((secrets.KEYS as Secret[]).map((s) => s.reveal()), ['key-a-9911', 'key-b-9912']);
  t.equal(secrets.UNSET, null);
  t.ok(isSecret((p.data.api as { token: unknown }).token));
  t.equal(p.data.domain, 'staging.example.com', 'plain values stay plain');
  t.equal(p.data.project, 'demo');
  t.equal(p.masker.size, 5);
  t.equal(
    p.masker.mask('pw-one-7731 6543 key-a-9911 key-b-9912 tok-two-8842 staging.example.com demo'),
    `${MASK} ${MASK} ${MASK} ${MASK} ${MASK} staging.example.com demo`,
  );
  t.equal(JSON.stringify(p.data.secrets), JSON.stringify({ DB_PASSWORD: MASK, DB_PORT: MASK, KEYS: [MASK, MASK], UNSET: null }));
});

t.test('an unknown environment lists the known ones', async (t) => {
  const dir = pillarDir(t, { 'common.yaml': 'a: 1\n', production: { 'env.yaml': '' }, staging: { 'env.yaml': '' }, Templates: {}, 'notes.yaml': 'b: 2\n' });
  t.same(environments(dir), ['production', 'staging']);
  const err = loadError(t, dir, 'prod');
  t.equal(err.format(), 'unknown environment "prod": there is no pillar/prod/ (known: production, staging)');
  const none = pillarDir(t, { 'common.yaml': 'a: 1\n' });
  t.match(loadError(t, none, 'staging').message, /\(known: none\)$/);
});

t.test('an environment name cannot reach outside the pillar folder', async (t) => {
  const dir = pillarDir(t, { staging: {} });
  for (const env of ['../pillar', 'staging/..', 'Staging', '']) t.match(loadError(t, dir, env).message, /^invalid environment name/, JSON.stringify(env));
});

t.test("another environment's folder is never read", async (t) => {
  const dir = pillarDir(t, {
    'common.yaml': 'project: demo\n',
    production: { 'env.yaml': 'broken: [\n', 'secrets.yaml': 'secrets: {DB_PASSWORD: prod-only-5521\n' },
    staging: { 'env.yaml': 'domain: staging.example.com\n', 'secrets.yaml': 'secrets:\n  DB_PASSWORD: staging-pw\n' },
  });
  const p = loadPillar(dir, 'staging');
  t.same(p.files, ['pillar/common.yaml', 'pillar/staging/env.yaml', 'pillar/staging/secrets.yaml']);
  t.equal(p.masker.mask('prod-only-5521'), 'prod-only-5521', 'no production secret is known');
  t.match(loadError(t, dir, 'production').format(), /^pillar\/production\/env\.yaml:2: invalid YAML/, 'the broken file is real');
});

t.test('a pillar file must be a mapping', async (t) => {
  const dir = pillarDir(t, { 'common.yaml': '- a\n- b\n', staging: {} });
  t.equal(loadError(t, dir, 'staging').format(), 'pillar/common.yaml:1: a pillar file must be a mapping of keys to values');
});

t.test('schema.yaml', async (t) => {
  const schema = 'type: object\nrequired: [project, secrets]\nproperties:\n  secrets:\n    type: object\n    required: [DB_PASSWORD, SECRET_KEY]\n';

  t.test('a required key that is missing is named as pillar.KEY, with the schema file', async (t) => {
    const dir = pillarDir(t, { 'schema.yaml': schema, 'common.yaml': 'project: demo\n', staging: { 'secrets.yaml': 'secrets:\n  SECRET_KEY: k-123\n' } });
    const err = loadError(t, dir, 'staging');
    t.same(err.place, { file: 'pillar/schema.yaml', key: 'pillar.secrets.DB_PASSWORD' });
    t.equal(err.format(), 'pillar/schema.yaml: pillar.secrets.DB_PASSWORD: missing in the staging pillar (required by pillar/schema.yaml)');
  });

  t.test('a missing top-level key', async (t) => {
    const dir = pillarDir(t, { 'schema.yaml': schema, 'common.yaml': 'project: demo\n', staging: {} });
    t.same(loadError(t, dir, 'staging').place, { file: 'pillar/schema.yaml', key: 'pillar.secrets' });
  });

  t.test("an environment's own schema.yaml is checked too, and is not pillar data", async (t) => {
    const dir = pillarDir(t, {
      'common.yaml': 'project: demo\n',
      production: { 'schema.yaml': 'required: [backup_bucket]\n', 'env.yaml': 'domain: example.com\n' },
    });
    t.same(loadError(t, dir, 'production').place, { file: 'pillar/production/schema.yaml', key: 'pillar.backup_bucket' });
    const ok = pillarDir(t, { production: { 'schema.yaml': 'required: [backup_bucket]\n', 'env.yaml': 'backup_bucket: b\n' } });
    t.same(loadPillar(ok, 'production').data, { backup_bucket: 'b' });
  });

  t.test('a schema that is not valid JSON Schema', async (t) => {
    const dir = pillarDir(t, { 'schema.yaml': 'type: 12\n', staging: {} });
    t.match(loadError(t, dir, 'staging').format(), /^pillar\/schema\.yaml: invalid JSON Schema: /);
  });

  t.test('a secret that breaks a rule is not shown in the message', async (t) => {
    const dir = pillarDir(t, {
      'schema.yaml': "properties:\n  secrets:\n    properties:\n      DB_PASSWORD: {minLength: 20, pattern: '^[a-z]+$'}\n",
      staging: { 'secrets.yaml': 'secrets:\n  DB_PASSWORD: Short-9\n' },
    });
    const err = loadError(t, dir, 'staging');
    t.equal(err.place.key, 'pillar.secrets.DB_PASSWORD');
    t.notMatch(err.format(), 'Short-9');
  });
});

t.test('a secret value never appears in an error message', async (t) => {
  t.test('invalid YAML on the line of a secret', async (t) => {
    const dir = pillarDir(t, { staging: { 'secrets.yaml': 'secrets:\n  DB_PASSWORD: "Xk9-unclosed-4471\n  OTHER: x\n' } });
    const err = loadError(t, dir, 'staging');
    // The YAML library's messages may quote the value, so a secrets file gets the line only.
    t.match(err.format(), /^pillar\/staging\/secrets\.yaml:\d+: invalid YAML: check the quoting of this line \(details hidden: the file holds secrets\)$/);
    t.notMatch(err.format(), 'Xk9-unclosed-4471');
  });

  t.test('an unquoted secret that starts with * (a YAML alias)', async (t) => {
    // `doc.toJS()` throws a plain ReferenceError that quotes the alias, i.e. the secret; the CLI
    // prints it unmasked and exits 2 instead of 3.
    const dir = pillarDir(t, { staging: { 'secrets.yaml': 'secrets:\n  DB_PASSWORD: *Xk9star4471\n' } });
    let thrown: unknown;
    try {
      loadPillar(dir, 'staging');
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof InputError, 'an InputError');
    t.notMatch(String((thrown as Error | undefined)?.message), 'Xk9star4471', 'the secret is not in the message');
  });

  t.test('an unquoted secret that starts with ! (a YAML tag)', async (t) => {
    // yaml only warns about the unknown tag and the value silently becomes "": a config file
    // would be written with an empty password.
    const dir = pillarDir(t, { staging: { 'secrets.yaml': 'secrets:\n  DB_PASSWORD: !Xk9bang4471\n' } });
    let thrown: unknown;
    let pillar;
    try {
      pillar = loadPillar(dir, 'staging');
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof InputError, 'an InputError');
    t.notMatch(String((thrown as Error | undefined)?.message), 'Xk9bang4471', 'the secret is not in the message');
    if (pillar) t.comment(`loaded instead: DB_PASSWORD = ${JSON.stringify((pillar.data.secrets as { DB_PASSWORD: Secret }).DB_PASSWORD.reveal())}`);
  });
});

t.test('a secret too short to be masked is refused at its line, with its key', async (t) => {
  const dir = pillarDir(t, { staging: { 'secrets.yaml': 'secrets:\n  DB_PASSWORD: long-enough-1\n  tokens:\n    - long-enough-2\n    - abc\n' } });
  t.equal(
    loadError(t, dir, 'staging').format(),
    'pillar/staging/secrets.yaml:5: secrets.tokens[1]: a secret must be at least 4 characters, or it cannot be masked in output (move plain settings to another pillar file)',
  );
});
