import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { SupervisorFault, call, decodeResponse, encodeCall, socketPath, rpcPaths } from '../../../agent/supervisor/rpc.js';

t.test('a call is encoded as XML-RPC, with text escaped', async (t) => {
  t.equal(
    encodeCall('supervisor.stopProcessGroup', ['a<b>&c', false, 3, ['x'], { k: 'v' }]),
    '<?xml version="1.0"?><methodCall><methodName>supervisor.stopProcessGroup</methodName><params>' +
      '<param><value><string>a&lt;b&gt;&amp;c</string></value></param><param><value><boolean>0</boolean></value></param>' +
      '<param><value><int>3</int></value></param><param><value><array><data><value><string>x</string></value></data></array></value></param>' +
      '<param><value><struct><member><name>k</name><value><string>v</string></value></member></struct></value></param></params></methodCall>',
  );
});

t.test('answers are decoded: structs, arrays, ints, booleans, bare and empty strings, entities', async (t) => {
  const xml = `<?xml version='1.0'?>
<methodResponse>
<params>
<param>
<value><array><data>
<value><struct>
<member>
<name>name</name>
<value><string>app-blue</string></value>
</member>
<member>
<name>pid</name>
<value><int>1454</int></value>
</member>
<member>
<name>spawnerr</name>
<value><string></string></value>
</member>
<member>
<name>description</name>
<value>pid 1454, uptime 0:00:55 &amp; &#233;</value>
</member>
<member>
<name>ok</name>
<value><boolean>1</boolean></value>
</member>
</struct></value>
</data></array></value>
</param>
</params>
</methodResponse>`;
  t.same(decodeResponse(xml), [{ name: 'app-blue', pid: 1454, spawnerr: '', description: 'pid 1454, uptime 0:00:55 & é', ok: true }]);
  t.same(decodeResponse('<methodResponse><params><param><value><array><data><value><array><data></data></array></value></data></array></value></param></params></methodResponse>'), [[]]);
});

t.test('a fault is an error naming it', async (t) => {
  const fault = `<?xml version='1.0'?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>91</int></value></member><member><name>faultString</name><value><string>STILL_RUNNING: app-blue</string></value></member></struct></value></fault></methodResponse>`;
  let caught: unknown;
  try {
    decodeResponse(fault);
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof SupervisorFault);
  t.match(caught, { code: 91, fault: 'STILL_RUNNING', message: 'supervisord: STILL_RUNNING: app-blue' });
});

t.test('over a unix socket, and a supervisord that is not there', async (t) => {
  // A unix socket path must stay under 108 bytes: not in tap's long fixture paths.
  const dir = mkdtempSync(join(tmpdir(), 'brine-rpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'supervisor.sock');
  const seen: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      res.end('<?xml version="1.0"?><methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>');
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => server.close());
  t.equal(await call('supervisor.addProcessGroup', ['app-green'], socket), true);
  t.match(seen[0], /^POST \/RPC2 .*<methodName>supervisor\.addProcessGroup<\/methodName>.*app-green/);
  await t.rejects(call('supervisor.getState', [], join(dir, 'nothing.sock')), /supervisord is not running \(no one answers on .*nothing\.sock\)/);
});

t.test("the socket is supervisord.conf's [unix_http_server] file", async (t) => {
  const dir = t.testdir({ 'supervisord.conf': '[unix_http_server]\nfile=/run/custom.sock   ; comment\nchmod=0700\n\n[supervisord]\nlogfile=/x\n' });
  const was = rpcPaths.conf;
  t.teardown(() => void (rpcPaths.conf = was));
  rpcPaths.conf = join(dir, 'supervisord.conf');
  t.equal(socketPath(), '/run/custom.sock');
  rpcPaths.conf = join(dir, 'missing.conf');
  t.equal(socketPath(), '/var/run/supervisor.sock');
});
