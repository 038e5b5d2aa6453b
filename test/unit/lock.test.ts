import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { Lock, LockBusyError, type LockOwner } from '../../agent/lock.js';

/** /proc/PID/stat field 22, as the lock records it. */
function startOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

function owner(path: string): LockOwner {
  return JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
}

function writeOwner(path: string, o: Partial<LockOwner>): void {
  writeFileSync(path, JSON.stringify({ since: '2026-01-01T00:00:00.000Z', command: 'agent apply --cron', ...o }));
}

/** A pid that belonged to a process that has exited. */
function deadPid(): number {
  const child = spawnSync('true');
  if (child.pid === undefined) throw new Error('could not run true');
  return child.pid;
}

async function busy(lock: Lock, waitMs: number): Promise<{ error: unknown; elapsed: number }> {
  const started = Date.now();
  try {
    await lock.acquire('agent apply --test', waitMs);
  } catch (error) {
    return { error, elapsed: Date.now() - started };
  }
  return { error: undefined, elapsed: Date.now() - started };
}

t.test('acquire writes who holds the lock; release removes it', async (t) => {
  const path = `${t.testdir()}/run/brine/agent.lock`;
  const lock = new Lock(path);
  await lock.acquire('agent apply', 0);
  const o = owner(path);
  t.match(o, { pid: process.pid, start: startOf(process.pid), command: 'agent apply' });
  t.ok(Date.now() - Date.parse(o.since) < 5_000, 'since is now');
  await lock.release();
  t.notOk(existsSync(path));
  await lock.release();
  await lock.acquire('agent apply', 0);
  t.ok(existsSync(path), 'can be taken again');
  await lock.release();
});

t.test('release does not remove a lock this Lock does not hold', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  const held = new Lock(path);
  await held.acquire('agent apply', 0);
  await new Lock(path).release();
  t.ok(existsSync(path));
  await held.release();
});

t.test('a second acquire waits, then throws LockBusyError naming the holder', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  const first = new Lock(path);
  await first.acquire('agent apply --cron', 0);
  const { error, elapsed } = await busy(new Lock(path), 400);
  t.type(error, LockBusyError);
  t.ok(elapsed >= 400, `waited ${elapsed} ms`);
  t.match((error as LockBusyError).owner, { pid: process.pid, command: 'agent apply --cron' });
  t.match((error as Error).message, new RegExp(`^another run holds the lock \\(pid ${process.pid}, \`agent apply --cron\`, since .+\\); waited \\d+s$`));
  t.match(owner(path), { pid: process.pid, command: 'agent apply --cron' }, 'the holder keeps its lock');
  await first.release();
});

t.test('a waiting acquire gets the lock when the holder releases it', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  const first = new Lock(path);
  await first.acquire('agent apply --cron', 0);
  setTimeout(() => void first.release(), 300);
  const second = new Lock(path);
  await second.acquire('agent apply', 3_000);
  t.match(owner(path), { command: 'agent apply' });
  await second.release();
});

t.test('a lock left by a process that is gone is taken over', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  const pid = deadPid();
  writeOwner(path, { pid, start: '12345' });
  const lock = new Lock(path);
  await lock.acquire('agent apply', 0);
  t.match(owner(path), { pid: process.pid, command: 'agent apply' });
  t.notOk(existsSync(`${path}.break`), 'the breaker file is cleaned up');
  await lock.release();
});

t.test('a lock whose pid now belongs to another process (another start time) is taken over', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  writeOwner(path, { pid: process.pid, start: 'not-the-start-of-this-process' });
  const lock = new Lock(path);
  await lock.acquire('agent apply', 0);
  t.match(owner(path), { pid: process.pid, start: startOf(process.pid) });
  await lock.release();
});

t.test('a lock held by another live process is respected', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill();
  });
  await new Promise((resolve) => child.once('spawn', resolve));
  const pid = child.pid!;
  writeOwner(path, { pid, start: startOf(pid) });
  const { error } = await busy(new Lock(path), 0);
  t.type(error, LockBusyError);
  t.equal((error as LockBusyError).owner.pid, pid);
  t.match(owner(path), { pid }, 'left in place');
});

t.test('an empty lock file', async (t) => {
  t.test('that is new: its writer is between create and write, so it is busy', async (t) => {
    const path = `${t.testdir()}/agent.lock`;
    writeFileSync(path, '');
    const { error } = await busy(new Lock(path), 0);
    t.type(error, LockBusyError);
    t.match((error as LockBusyError).owner, { pid: 0, command: 'unknown' });
    t.equal(readFileSync(path, 'utf8'), '', 'left in place');
  });

  t.test('older than 5 s: its writer died there, so it is taken over', async (t) => {
    const path = `${t.testdir()}/agent.lock`;
    writeFileSync(path, '');
    const past = new Date(Date.now() - 6_000);
    utimesSync(path, past, past);
    const lock = new Lock(path);
    await lock.acquire('agent apply', 0);
    t.match(owner(path), { pid: process.pid });
    await lock.release();
  });
});

t.test('a stale lock that another run is breaking right now', async (t) => {
  const path = `${t.testdir()}/agent.lock`;
  writeOwner(path, { pid: deadPid(), start: '1' });
  writeFileSync(`${path}.break`, '');
  // A breaker 9.3 s old: it expires in 0.7 s.
  const past = new Date(Date.now() - 9_300);
  utimesSync(`${path}.break`, past, past);
  const lock = new Lock(path);
  const { error, elapsed } = await busy(lock, 0);
  await lock.release();
  t.comment(`acquire(…, 0) returned after ${elapsed} ms`);
  t.type(error, LockBusyError, 'with no time to wait, acquire gives up at once');
  t.ok(elapsed < 300, 'without spinning');
});
