// `npm run demo`: the main job on an embedded default. Boots a throwaway Debian 12 server with
// systemd-nspawn, makes it a git host for the example Flask app (test/fixtures/app), makes a
// deploy key with `agent deploy-key`, and runs `./bootstrap.sh root@127.0.0.1:PORT staging` over
// real SSH with the example pillar (secrets from secrets.example.yaml). Then it pushes a second
// commit and deploys it as a new release (what cron would do within an interval), and shows
// `agent releases`. It ends with the URL of the app it serves; on a terminal the server stays up
// until you press Enter.
import { createInterface } from 'node:readline/promises';
import { bootServer } from '../test/server/server.js';
import { authorize, bootstrap, serveTestApp, workspace } from '../test/integration/stack.js';

const t0 = Date.now();
const seconds = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
console.log('demo: booting a throwaway Debian 12 server…');
const ws = await workspace();
const server = await bootServer({ name: `brine-demo-${process.pid}` });
let code = 0;
try {
  console.log(`demo: ${server.name} is up; sshd on 127.0.0.1:${server.sshPort} (${seconds()})`);
  await authorize(server, ws);
  console.log('demo: making it the git host of the example app, with a deploy key from `agent deploy-key`…');
  const site = await serveTestApp(server, ws);
  const target = `root@127.0.0.1:${server.sshPort}`;
  console.log(`demo: ./bootstrap.sh ${target} staging\n`);
  const first = await bootstrap(ws, [target, 'staging'], { stream: true });
  code = first.code;
  console.log(`\ndemo: bootstrap exited ${first.code} (${seconds()})`);
  if (first.code === 0) {
    console.log(`demo: ./bootstrap.sh ${target} staging   (again: nothing should change)\n`);
    const second = await bootstrap(ws, [target, 'staging'], { stream: true });
    code = second.code;
    const page = () => fetch(site.url).then(async (res) => `${res.status} ${await res.text()}`.trim()).catch((err) => String(err));
    console.log(`\ndemo: GET ${site.url} → ${await page()}`);
    if (code === 0) {
      console.log('\ndemo: pushing a commit to the branch the server follows, then `agent apply` (cron would, within its interval)…\n');
      await site.pushChange('bonjour from');
      const release = await server.exec(['agent', 'apply'], { allowFailure: true, env: { BRINE_STARTED_BY: 'hand' } });
      process.stdout.write(release.stdout);
      code = release.code;
      console.log(`\ndemo: GET ${site.url} → ${await page()}`);
      console.log('demo: agent releases\n');
      process.stdout.write((await server.exec(['agent', 'releases'], { allowFailure: true })).stdout);
    }
    console.log(`\ndemo: the app is served at ${site.url}   (roll back with: agent rollback, on the server)`);
  }
  if (process.stdin.isTTY && code === 0) {
    console.log(`demo: on the server: nsenter -t ${server.pid} -a agent status   (or agent history, agent apply --test)`);
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    await rl.question('demo: press Enter to stop the server ');
    rl.close();
  }
} finally {
  await server.stop();
  ws.remove();
  console.log('demo: server stopped');
}
process.exitCode = code;
