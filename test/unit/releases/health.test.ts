import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { get, waitHealthy } from '../../../agent/releases/health.js';

const SHA = '2d3ccd35602c08ee3620457b77a8d650d067a10e';

async function serve(t: Test, handler: (n: number) => [number, string, Record<string, string>?], where?: string): Promise<string> {
  let n = 0;
  const server: Server = createServer((req, res) => {
    const [status, body, headers] = handler(++n);
    res.writeHead(status, { ...headers, 'Content-Type': 'text/plain', 'X-Host-Seen': String(req.headers.host) });
    res.end(body);
  });
  await new Promise<void>((r) => (where ? server.listen(where, r) : server.listen(0, '127.0.0.1', r)));
  t.teardown(() => server.close());
  const addr = server.address();
  return where ? `unix:${where}` : `127.0.0.1:${(addr as { port: number }).port}`;
}
const alive = async () => undefined;

t.test('healthy once it answers 2xx', async (t) => {
  const bind = await serve(t, (n) => (n < 3 ? [503, 'starting'] : [200, 'ok']));
  const r = await waitHealthy(bind, { path: '/health', timeout: 5, revision: false }, SHA, alive);
  t.ok(r.ok, JSON.stringify(r));
});

t.test('with revision, the answer must name the release: in the body or in X-Revision', async (t) => {
  const old = await serve(t, () => [200, 'ok 90d85a5ad12e648c886ee9a4353b06494dda6722']);
  const r = await waitHealthy(old, { path: '/health', timeout: 0.5, revision: true }, SHA, alive);
  t.notOk(r.ok);
  if (!r.ok) t.match(r.why, /200 "ok 90d85a5ad12e648c886ee9a4353b06494dda6722", which does not name commit 2d3ccd3 after 0\.5 s/);
  const byShort = await serve(t, () => [200, `ok ${SHA.slice(0, 7)}`]);
  t.ok((await waitHealthy(byShort, { path: '/health', timeout: 2, revision: true }, SHA, alive)).ok, 'the short sha');
  const byHeader = await serve(t, () => [204, '', { 'X-Revision': SHA }]);
  t.ok((await waitHealthy(byHeader, { path: '/health', timeout: 2, revision: true }, SHA, alive)).ok, 'the header');
});

t.test('gives up at the timeout with what the app last said, or at once when the program died', async (t) => {
  const broken = await serve(t, () => [500, 'Internal Server Error\n<html>…']);
  const started = Date.now();
  const r = await waitHealthy(broken, { path: '/health', timeout: 0.6, revision: false }, SHA, alive);
  t.notOk(r.ok);
  if (!r.ok) t.equal(r.why, `GET /health on ${broken}: 500 "Internal Server Error" after 0.6 s`);
  t.ok(Date.now() - started < 2000);
  const refused = await waitHealthy('127.0.0.1:1', { path: '/health', timeout: 30, revision: false }, SHA, async () => 'app-blue is FATAL (Exited too quickly)');
  t.notOk(refused.ok);
  if (!refused.ok) t.equal(refused.why, 'app-blue is FATAL (Exited too quickly) (GET /health on 127.0.0.1:1: connection refused)');
  t.ok(refused.ms < 3000, 'did not wait out the 30 s');
});

t.test('over a unix socket, with the Host header asked for', async (t) => {
  // A unix socket path must stay under 108 bytes: not in tap's long fixture paths.
  const dir = mkdtempSync(join(tmpdir(), 'brine-h-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bind = await serve(t, () => [200, 'ok'], join(dir, 'app.sock'));
  const a = await get(bind, '/health', 'app.example.com');
  t.equal(a.status, 200);
  t.equal(a.body, 'ok');
});
