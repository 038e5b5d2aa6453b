// Smoke test of the test-server harness itself: a server boots, runs the distro's Node 18, files
// go in and out, and two servers can run side by side.
import t from 'tap';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootServer } from '../server/server.js';

t.test('a booted server runs Node 18 and takes files', async (t) => {
  const started = Date.now();
  const server = await bootServer();
  t.teardown(() => server.stop());
  t.comment(`booted ${server.name} in ${((Date.now() - started) / 1000).toFixed(1)} s (sshd on ${server.sshPort})`);

  const node = await server.exec(['node', '--version']);
  t.match(node.stdout, /^v18\./, 'the server has the distro Node 18');

  await server.writeFile('/etc/brine-smoke/hello.txt', 'hello\nworld\n', 0o640);
  t.equal(await server.readFile('/etc/brine-smoke/hello.txt'), 'hello\nworld\n', 'file round-trips');
  const mode = await server.exec(['stat', '-c', '%a %U', '/etc/brine-smoke/hello.txt']);
  t.equal(mode.stdout.trim(), '640 root', 'mode is applied');

  // /tmp is a tmpfs inside the server: writeFile must go through the server's own view.
  await server.writeFile('/tmp/x', 'in tmpfs');
  t.equal((await server.exec(['cat', '/tmp/x'])).stdout, 'in tmpfs');

  const input = await server.exec(['sh', '-c', 'cat; echo "$FOO"'], { input: 'in:', env: { FOO: 'bar' } });
  t.equal(input.stdout, 'in:bar\n', 'stdin and env reach the command');

  const failed = await server.exec(['sh', '-c', 'echo oops >&2; exit 3'], { allowFailure: true });
  t.equal(failed.code, 3);
  await t.rejects(server.exec(['sh', '-c', 'echo oops >&2; exit 3']), /exited with code 3[\s\S]*oops/);
  await t.rejects(server.exec(['sleep', '30'], { timeoutMs: 1000 }), /timed out/);

  const host = await mkdtemp(join(tmpdir(), 'brine-smoke-'));
  t.teardown(() => rm(host, { recursive: true, force: true }));
  await mkdir(join(host, 'sub'));
  await writeFile(join(host, 'sub/a.yaml'), 'a: 1\n');
  await server.copyIn(host, '/srv/copied');
  t.equal(await server.readFile('/srv/copied/sub/a.yaml'), 'a: 1\n', 'copyIn copies a tree');

  await server.stop();
  await server.stop(); // idempotent
  await t.rejects(server.exec(['true']), /not running/);
});

t.test('two servers run at the same time on different ports', async (t) => {
  const [a, b] = await Promise.all([bootServer(), bootServer()]);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  t.not(a.sshPort, b.sshPort);
  t.not(a.pid, b.pid);
  await a.writeFile('/root/who', 'a');
  await b.writeFile('/root/who', 'b');
  t.equal(await a.readFile('/root/who'), 'a');
  t.equal(await b.readFile('/root/who'), 'b');
  for (const s of [a, b]) {
    const ss = await s.exec(['ss', '-Htln', `sport = :${s.sshPort}`]);
    t.match(ss.stdout, new RegExp(`:${s.sshPort}\\b`), `${s.name}: sshd listens on ${s.sshPort}`);
  }
});
