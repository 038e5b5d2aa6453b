// SCRAM-SHA-256 verifiers as PostgreSQL stores them in pg_authid.rolpassword (RFC 5802, RFC 7677):
//
//   SCRAM-SHA-256$<iterations>:<salt, base64>$<StoredKey, base64>:<ServerKey, base64>
//
// brine computes the verifier itself and sends only that (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`),
// so the password never reaches the server, its statement log or pg_stat_activity. Checking a role
// recomputes the verifier with the stored salt and iteration count: a role whose password is
// already right plans nothing, and no password is ever read back.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/** PostgreSQL's defaults (scram_iterations, SCRAM_DEFAULT_SALT_LEN). */
export const SCRAM_ITERATIONS = 4096;
const SALT_BYTES = 16;
/**
 * A role may set its own verifier with any iteration count; one beyond this is not worth minutes of
 * PBKDF2 at every run, so it counts as not matching and is replaced by a verifier of ours.
 */
const MAX_CHECKED_ITERATIONS = 1_000_000;

const B64 = '[A-Za-z0-9+/]+={0,2}';
/** A verifier safe to put between single quotes in DDL: base64, digits, `$` and `:` only. */
export const VERIFIER_PATTERN = new RegExp(`^SCRAM-SHA-256\\$([1-9][0-9]{0,8}):(${B64})\\$(${B64}):(${B64})$`);

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * Whether brine can reproduce the server's SASLprep of this password. PostgreSQL uses a pure-ASCII
 * password as it is; any other is normalized (NFKC, mapping and prohibition tables of Unicode 3.2)
 * in ways a verifier computed here could get wrong, and a wrong verifier would lock the role out.
 */
export function isScramSafe(password: string): boolean {
  return /^[\x00-\x7f]*$/.test(password);
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function keys(password: string, salt: Buffer, iterations: number): { storedKey: Buffer; serverKey: Buffer } {
  if (!isScramSafe(password)) throw new Error('a PostgreSQL password set by brine must be ASCII');
  const salted = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { storedKey: createHash('sha256').update(clientKey).digest(), serverKey: hmac(salted, 'Server Key') };
}

/** The verifier PostgreSQL would store for this password; a random salt unless one is given. */
export function scramVerifier(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = SCRAM_ITERATIONS): string {
  const { storedKey, serverKey } = keys(password, salt, iterations);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Parses a stored verifier; null for anything else (NULL, an md5 hash, a malformed string). */
export function parseVerifier(stored: string | null | undefined): ScramVerifier | null {
  const m = stored ? VERIFIER_PATTERN.exec(stored) : null;
  if (!m) return null;
  return {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2]!, 'base64'),
    storedKey: Buffer.from(m[3]!, 'base64'),
    serverKey: Buffer.from(m[4]!, 'base64'),
  };
}

/** Whether `stored` (pg_authid.rolpassword) is a SCRAM verifier of this password. */
export function verifierMatches(password: string, stored: string | null | undefined): boolean {
  const v = parseVerifier(stored);
  if (!v || v.iterations > MAX_CHECKED_ITERATIONS || !isScramSafe(password)) return false;
  const { storedKey, serverKey } = keys(password, v.salt, v.iterations);
  return (
    storedKey.length === v.storedKey.length &&
    serverKey.length === v.serverKey.length &&
    timingSafeEqual(storedKey, v.storedKey) &&
    timingSafeEqual(serverKey, v.serverKey)
  );
}
