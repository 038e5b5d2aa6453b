import t from 'tap';
import { layout } from '../../../agent/releases/layout.js';
import { liveSlot, servingProblems, slotProgram, upstreamConf, type ServeSpec, type ServingState } from '../../../agent/releases/serve.js';
import { programConf } from '../../../agent/supervisor/conf.js';

const l = layout('/srv/app');
const spec: ServeSpec = {
  program: 'app',
  command: ['.venv/bin/python', '-m', 'gunicorn', '--bind', '{bind}', '--name', 'app-{slot}', 'app:app'],
  binds: ['127.0.0.1:8000', 'unix:/run/app/green.sock'],
  upstream: 'app_up',
  user: 'app',
  envFile: '/srv/app/shared/.env',
  environment: { PORT: '{port}', WHERE: '{dir}' },
};

t.test("a slot's program: its own address and directory, the release's own interpreter", async (t) => {
  const blue = slotProgram(spec, l, 'blue');
  t.same(blue.command, ['/srv/app/slots/blue/.venv/bin/python', '-m', 'gunicorn', '--bind', '127.0.0.1:8000', '--name', 'app-blue', 'app:app']);
  t.same([blue.name, blue.directory, blue.user, blue.env_file, blue.autostart], ['app-blue', '/srv/app/slots/blue', 'app', '/srv/app/shared/.env', true]);
  t.same(blue.environment, { PORT: '8000', WHERE: '/srv/app/slots/blue' });
  const green = slotProgram(spec, l, 'green');
  t.same(green.command.slice(4, 5), ['unix:/run/app/green.sock']);
  t.same(green.environment, { PORT: '', WHERE: '/srv/app/slots/green' });
  t.same(slotProgram({ ...spec, command: ['gunicorn', 'app:app'] }, l, 'blue').command, ['gunicorn', 'app:app'], 'a bare word stays a PATH lookup');
});

t.test('the upstream names the live slot and keeps the other as backup', async (t) => {
  const conf = upstreamConf(spec, l, 'green');
  t.match(conf, /upstream app_up \{\n {4}server unix:\/run\/app\/green\.sock max_fails=0;  # green\n {4}server 127\.0\.0\.1:8000 backup max_fails=0;  # blue\n\}/);
  t.equal(liveSlot(spec, conf), 'green');
  t.equal(liveSlot(spec, upstreamConf(spec, l, 'blue')), 'blue');
  t.equal(liveSlot(spec, null), null);
  t.equal(liveSlot(spec, 'upstream app_up { server 10.0.0.1:80; }'), null, 'an address that is neither slot');
});

function state(over: Partial<Record<'blue' | 'green', Partial<ServingState['slots']['blue']>>> = {}, extra: Partial<ServingState> = {}): ServingState {
  const blue = { release: 'R2', conf: programConf(slotProgram(spec, l, 'blue')), processes: [{ state: 'RUNNING', description: 'pid 1' }], ...over.blue };
  const green = { release: 'R1', conf: null, processes: [{ state: 'STOPPED', description: '' }], ...over.green };
  return { slots: { blue, green }, upstream: upstreamConf(spec, l, 'blue'), live: 'blue', ...extra };
}

t.test('serving problems: what check sees when the app is not served the way brine left it', async (t) => {
  t.same(servingProblems(state(), spec, l, 'R2'), [], 'the live slot runs current; the old one stopped');
  t.same(servingProblems(state({ blue: { processes: [{ state: 'STARTING', description: '' }] } }), spec, l, 'R2'), [], 'STARTING right after a switch counts');
  t.same(servingProblems(state(), spec, l, null), [], 'nothing is live yet: the release change covers it');
  t.same(servingProblems(state({ blue: { processes: [{ state: 'FATAL', description: 'Exited too quickly' }] } }), spec, l, 'R2'), ['app-blue is FATAL']);
  t.same(servingProblems(state({ blue: { processes: null } }), spec, l, 'R2'), ['app-blue is not loaded']);
  t.same(servingProblems(state(), spec, l, 'R3'), ['the live slot blue runs R2, current is R3']);
  t.same(servingProblems(state({ blue: { conf: programConf({ ...slotProgram(spec, l, 'blue'), stopwaitsecs: 60 }) } }), spec, l, 'R2'), ['the serve settings changed']);
  t.same(servingProblems(state({ green: { processes: [{ state: 'RUNNING', description: '' }] } }), spec, l, 'R2'), ['the idle slot green is running']);
  t.same(servingProblems(state({ green: { conf: 'x' } }), spec, l, 'R2'), ['the idle slot green is configured']);
  t.same(servingProblems(state({}, { upstream: null, live: null }), spec, l, 'R2'), ['no nginx upstream app_up yet']);
  t.same(servingProblems(state({}, { upstream: `${upstreamConf(spec, l, 'blue')}# edited\n` }), spec, l, 'R2'), ['the nginx upstream app_up differs from what brine writes']);
  t.match(servingProblems(state({}, { problem: 'supervisord is not running (no one answers on /var/run/supervisor.sock)' }), spec, l, 'R2'), [/^not served yet \(supervisord is not running/]);
});
