// The health check of a release: GET PATH on the slot it was started in (straight to the app, not
// through nginx, so no request of a user ever reaches a release that has not passed it), polled
// until it answers 2xx — and, with `revision`, names the release's commit (its full sha or the
// first 7 characters, in the body or an X-Revision header) — or the time is up, or the program died.
import { request } from 'node:http';

export interface HealthSpec {
  path: string;
  /** Seconds until a release that has not answered is given up. */
  timeout: number;
  /** The answer must name the release's commit. */
  revision: boolean;
  /** The Host header (apps that check it); default localhost. */
  host?: string;
}

export interface HealthAnswer {
  status: number;
  body: string;
  revision?: string;
}

const REQUEST_TIMEOUT_MS = 2_000;
const POLL_MS = 100;
const BODY_LIMIT = 64 * 1024;

/** One GET to `bind` (`127.0.0.1:8000`, `unix:/run/app.sock`). */
export function get(bind: string, path: string, host = 'localhost'): Promise<HealthAnswer> {
  const target = bind.startsWith('unix:') ? { socketPath: bind.slice(5) } : { host: bind.slice(0, bind.lastIndexOf(':')).replace(/^\[|\]$/g, ''), port: Number(bind.slice(bind.lastIndexOf(':') + 1)) };
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, method: 'GET', headers: { Host: host, Connection: 'close', 'User-Agent': 'brine-health' }, timeout: REQUEST_TIMEOUT_MS, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < BODY_LIMIT) body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, revision: [res.headers['x-revision']].flat()[0] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

function namesRevision(a: HealthAnswer, sha: string): boolean {
  const short = sha.slice(0, 7);
  return [a.body, a.revision ?? ''].some((text) => text.includes(sha) || new RegExp(`\\b${short}`).test(text));
}

function describe(a: HealthAnswer): string {
  const body = a.body.trim().split('\n')[0]?.slice(0, 200) ?? '';
  return `${a.status}${body ? ` "${body}"` : ''}`;
}

export type HealthResult = { ok: true; ms: number; answer: HealthAnswer } | { ok: false; ms: number; why: string };

/**
 * Polls until healthy. `dead` is asked now and then whether the program has died (supervisord
 * gave up on it): then there is no point waiting out the timeout.
 */
export async function waitHealthy(bind: string, spec: HealthSpec, sha: string, dead: () => Promise<string | undefined>): Promise<HealthResult> {
  const started = Date.now();
  const deadline = started + spec.timeout * 1000;
  let last = 'no answer yet';
  let lastDeadCheck = started;
  for (;;) {
    try {
      const a = await get(bind, spec.path, spec.host);
      if (a.status >= 200 && a.status < 300 && (!spec.revision || namesRevision(a, sha))) return { ok: true, ms: Date.now() - started, answer: a };
      last = a.status >= 200 && a.status < 300 ? `${describe(a)}, which does not name commit ${sha.slice(0, 7)}` : describe(a);
    } catch (err) {
      last = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'connection refused' : (err as Error).message;
    }
    const now = Date.now();
    if (now >= deadline) return { ok: false, ms: now - started, why: `GET ${spec.path} on ${bind}: ${last} after ${spec.timeout} s` };
    if (now - lastDeadCheck >= 1000) {
      lastDeadCheck = now;
      const why = await dead();
      if (why) return { ok: false, ms: now - started, why: `${why} (GET ${spec.path} on ${bind}: ${last})` };
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
