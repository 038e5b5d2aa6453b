// Migrations run once per release, before the switch, while brine holds a PostgreSQL advisory
// lock in the app's database: two servers deploying at once (or a run and a rollback) never
// migrate at the same time; the second waits, then runs the command too, which a migration tool
// (Django, Alembic, Flask-Migrate, knex…) answers with "nothing to do". The lock is a session lock
// held by brine's own connection: a run killed mid-migration loses its connection, and Postgres
// releases the lock with it. Nothing is written to the app's database.
import { createHash } from 'node:crypto';
import type { Masker } from '../secret.js';

export interface LockOptions {
  /** postgresql://user:password@host:port/db — a secret; never shown. */
  url: string;
  /** What the lock is for: servers of one app share it. */
  name: string;
  waitMs: number;
  masker: Masker;
  /** Told once when another holder makes us wait. */
  onWait?: () => void;
}

const POLL_MS = 500;

/** The lock's 64-bit key: the first 8 bytes of a hash of its name, as Postgres's signed bigint. */
export function lockKey(name: string): string {
  return createHash('sha256').update(`brine-migrate:${name}`).digest().readBigInt64BE(0).toString();
}

/** Runs `fn` while holding the lock. */
export async function withAdvisoryLock<T>(o: LockOptions, fn: () => Promise<T>): Promise<T> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: o.url, application_name: 'brine migrate lock', connectionTimeoutMillis: 15_000 });
  // An error on an idle connection (the server restarted) must not crash the agent; the next
  // query on it fails and says so.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot connect to the database to lock migrations: ${o.masker.mask((err as Error).message)}`);
  }
  try {
    const key = lockKey(o.name);
    const deadline = Date.now() + o.waitMs;
    for (let told = false; ; ) {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [key]);
      if (rows[0]?.locked) break;
      if (Date.now() >= deadline) throw new Error(`another server has been migrating for ${Math.round(o.waitMs / 1000)} s (advisory lock ${key} held); not migrating`);
      if (!told) o.onWait?.();
      told = true;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [key]).catch(() => undefined);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
