import t from 'tap';
import { createHash, createHmac } from 'node:crypto';
import { VERIFIER_PATTERN, isScramSafe, parseVerifier, scramVerifier, verifierMatches } from '../../../agent/postgres/scram.js';

// RFC 7677's example exchange (user "user", password "pencil"): the keys derived from the password
// must reproduce the proof the client sent and the signature the server answered with.
const RFC_SALT = 'W22ZaJ0SNY7soEsUEjb6gQ==';
const RFC_AUTH_MESSAGE =
  'n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const RFC_CLIENT_PROOF = 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const RFC_SERVER_SIGNATURE = '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

// Stored by PostgreSQL 15 (Debian 12) for `ALTER ROLE … PASSWORD 'correct horse battery staple'`
// with password_encryption = scram-sha-256 (captured by test/integration/postgres.test.ts).
const PG_PASSWORD = 'correct horse battery staple';
const PG_VERIFIER =
  'SCRAM-SHA-256$4096:pBboFxDefl3p+XQox37qRQ==$JT1Delvgiv5zsxOG2AFuTEZ1yNNCr6t155170+a7h7k=:wMKm4TZSx7gTAMUbH0JYYd0cxMwZuOZ3Ipl8tazKPL4=';

t.test('the RFC 7677 example: keys derived from "pencil" give its proof and signature', async (t) => {
  const verifier = scramVerifier('pencil', Buffer.from(RFC_SALT, 'base64'), 4096);
  t.match(verifier, /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$/);
  const v = parseVerifier(verifier)!;
  t.equal(createHmac('sha256', v.serverKey).update(RFC_AUTH_MESSAGE).digest('base64'), RFC_SERVER_SIGNATURE);
  // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and StoredKey = H(ClientKey).
  const signature = createHmac('sha256', v.storedKey).update(RFC_AUTH_MESSAGE).digest();
  const proof = Buffer.from(RFC_CLIENT_PROOF, 'base64');
  const clientKey = Buffer.from(signature.map((b, i) => b ^ proof[i]!));
  t.equal(createHash('sha256').update(clientKey).digest('base64'), v.storedKey.toString('base64'));
  t.ok(verifierMatches('pencil', verifier));
  t.notOk(verifierMatches('pencil2', verifier));
});

t.test('a verifier PostgreSQL computed matches its password, and only it', async (t) => {
  t.ok(verifierMatches(PG_PASSWORD, PG_VERIFIER));
  const v = parseVerifier(PG_VERIFIER)!;
  t.equal(scramVerifier(PG_PASSWORD, v.salt, v.iterations), PG_VERIFIER, 'the same salt gives the very same verifier');
  t.notOk(verifierMatches('correct horse battery stapler', PG_VERIFIER));
  t.notOk(verifierMatches('', PG_VERIFIER));
});

t.test('a new verifier: PostgreSQL form, random salt, 4096 iterations, matches its password', async (t) => {
  const a = scramVerifier('s3cret');
  const b = scramVerifier('s3cret');
  t.match(a, VERIFIER_PATTERN);
  t.match(a, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  t.not(a, b, 'a fresh salt each time');
  t.ok(verifierMatches('s3cret', a));
  t.ok(verifierMatches('s3cret', b));
  t.notOk(verifierMatches('S3cret', a));
  t.notOk(a.includes('s3cret'));
});

t.test('the stored iteration count is the one used to check', async (t) => {
  const v = scramVerifier('pw', Buffer.alloc(16, 7), 10000);
  t.match(v, /^SCRAM-SHA-256\$10000:/);
  t.ok(verifierMatches('pw', v));
  t.notOk(verifierMatches('pw', v.replace('$10000:', '$4096:')));
});

t.test('anything that is not a SCRAM verifier never matches', async (t) => {
  for (const stored of [null, undefined, '', 'md5a3556571e93b0d20722ba62be61e8c2d', 'pw', 'SCRAM-SHA-256$4096:abc', "SCRAM-SHA-256$4096:AAAA$BBBB:CCCC'; DROP ROLE x; --"])
    t.notOk(verifierMatches('pw', stored), String(stored));
  t.equal(parseVerifier('md5a3556571e93b0d20722ba62be61e8c2d'), null);
});

t.test('a role that set a huge iteration count is not checked at that cost', async (t) => {
  const salt = Buffer.alloc(16).toString('base64');
  const key = Buffer.alloc(32).toString('base64');
  const started = Date.now();
  t.notOk(verifierMatches('pw', `SCRAM-SHA-256$999999999:${salt}$${key}:${key}`));
  t.ok(Date.now() - started < 1000);
});

t.test('only ASCII passwords are hashed: the server would SASLprep anything else', async (t) => {
  t.ok(isScramSafe('plain ASCII, even "quotes" and \\ and $'));
  t.notOk(isScramSafe('pässwort'));
  t.throws(() => scramVerifier('pässwort'), /ASCII/);
  t.notOk(verifierMatches('pässwort', scramVerifier('pencil')));
});
