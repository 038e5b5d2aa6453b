// Continuous requests against a URL on loopback while something happens (a deploy, a rollback):
// a few concurrent loops, a new connection per request (as `ab` without -k), counting every
// answer that is not 2xx and every connection error. Bodies are kept as a count per distinct text
// (truncated), so a test can see both versions answered.
import { request } from 'node:http';

export interface LoadReport {
  requests: number;
  ok: number;
  /** non-2xx answers and connection errors, by status or error code */
  failures: Record<string, number>;
  failed: number;
  seconds: number;
  rate: number;
  bodies: Map<string, number>;
}

export interface Load {
  stop(): Promise<LoadReport>;
}

function once(url: URL): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request(
      { host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, agent: false, headers: { Connection: 'close' }, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

export function startLoad(target: string, concurrency = 4): Load {
  const url = new URL(target);
  const report: LoadReport = { requests: 0, ok: 0, failures: {}, failed: 0, seconds: 0, rate: 0, bodies: new Map() };
  let running = true;
  const started = Date.now();
  const loop = async () => {
    while (running) {
      const r = await once(url);
      report.requests++;
      if (r.status !== undefined && r.status >= 200 && r.status < 300) {
        report.ok++;
        const body = (r.body ?? '').trim().slice(0, 120);
        report.bodies.set(body, (report.bodies.get(body) ?? 0) + 1);
      } else {
        report.failed++;
        const key = r.error ?? String(r.status);
        report.failures[key] = (report.failures[key] ?? 0) + 1;
      }
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      report.seconds = (Date.now() - started) / 1000;
      report.rate = Math.round(report.requests / report.seconds);
      return report;
    },
  };
}

/** `1234 requests in 8.1 s (152/s), 0 failed` for test comments and the issue note. */
export function describeLoad(r: LoadReport): string {
  return `${r.requests} requests in ${r.seconds.toFixed(1)} s (${r.rate}/s), ${r.failed} failed${r.failed ? ` ${JSON.stringify(r.failures)}` : ''}`;
}
