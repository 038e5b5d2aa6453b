import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { DeployedArgs, serveArgv, validateArgs, type ReleaseArgs } from '../../../agent/releases/args.js';

function args(given: Record<string, unknown>): ReleaseArgs {
  const value = Value.Default(DeployedArgs, structuredClone(given));
  if (!Value.Check(DeployedArgs, value)) throw new Error(`invalid args: ${[...Value.Errors(DeployedArgs, value)].map((e) => `${e.path} ${e.message}`).join('; ')}`);
  return value as ReleaseArgs;
}
const base = { name: '/srv/app', repo: 'ssh://git@git.example.com/app.git', user: 'app' };
const serve = { command: ['.venv/bin/gunicorn', '--bind', '{bind}', 'app:app'], binds: ['127.0.0.1:8000', '127.0.0.1:8001'], upstream: 'app' };

t.test('the defaults, and a minimal state is valid', async (t) => {
  const a = args(base);
  t.same([a.rev, a.keep, a.keep_failed, a.shared, a.dependencies, a.build], ['HEAD', 5, 2, [], [], []]);
  t.same(validateArgs(a), []);
  t.same(validateArgs(args({ ...base, serve, health: { path: '/health' } })), []);
});

t.test('the schema refuses what cannot work', async (t) => {
  const bad = (extra: Record<string, unknown>) => !Value.Check(DeployedArgs, Value.Default(DeployedArgs, { ...base, ...extra }));
  t.ok(bad({ name: 'srv/app' }), 'a relative root');
  t.ok(bad({ name: '/srv/app/' }), 'a root ending in /');
  t.ok(bad({ shared: ['../etc/passwd'] }), 'a shared path outside the release');
  t.ok(bad({ shared: ['/etc/passwd'] }), 'an absolute shared path');
  t.ok(bad({ keep: 1 }), 'keep 1 would leave nothing to roll back to');
  t.ok(bad({ serve: { ...serve, binds: ['127.0.0.1:8000'] } }), 'one bind');
  t.ok(bad({ serve: { ...serve, binds: ['8000', '8001'] } }), 'a bind without a host');
  t.ok(bad({ migrate: { command: 'x', lock: 'mysql://x' } }), 'a lock that is not PostgreSQL');
  t.ok(bad({ serve: { ...serve, upstream: 'my-app' } }), 'an upstream name nginx would not take');
});

t.test('what validate says, with the argument it is about', async (t) => {
  const problems = (extra: Record<string, unknown>) => validateArgs(args({ ...base, ...extra }));
  t.same(problems({ serve }), [{ key: 'health', message: 'serve needs a health check (health: {path: /health}): it decides when a release may take requests' }]);
  t.match(problems({ health: { path: '/health' } }), [{ key: 'health', message: /it needs serve/ }]);
  t.match(problems({ serve: { ...serve, binds: ['127.0.0.1:8000', '127.0.0.1:8000'] }, health: { path: '/h' } }), [{ key: 'serve', message: /two addresses/ }]);
  t.match(problems({ build: ['make | tee log'] }), [{ key: 'build', message: /shell feature \|/ }]);
  t.match(problems({ dependencies: [{ path: '.venv', files: ['requirements.txt'], build: [['x']] }, { path: '.venv/', files: ['a'], build: [['y']] }] }), [{ key: 'dependencies', message: /same path/ }]);
  t.match(problems({ shared: ['node_modules/'], dependencies: [{ path: 'node_modules', files: ['package-lock.json'], build: [['npm', 'ci']] }] }), [{ key: 'shared', message: /both shared and a dependency/ }]);
  t.match(problems({ repo: '/srv/git/app.git', identity: '/k' }), [{ key: 'identity', message: /for SSH URLs/ }]);
  t.match(problems({ known_hosts: ['other.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'] }), [{ key: 'known_hosts', message: /no line is for git\.example\.com/ }]);
});

t.test('a serve command given as a string keeps its placeholders', async (t) => {
  t.same(serveArgv(".venv/bin/gunicorn --bind {bind} --chdir '{dir}' app:app"), ['.venv/bin/gunicorn', '--bind', '{bind}', '--chdir', '{dir}', 'app:app']);
  t.same(serveArgv(['node', 'server.js']), ['node', 'server.js']);
  t.same(validateArgs(args({ ...base, serve: { ...serve, command: '.venv/bin/gunicorn --bind {bind} app:app' }, health: { path: '/' } })), []);
  t.match(validateArgs(args({ ...base, serve: { ...serve, command: 'gunicorn --bind $BIND' }, health: { path: '/' } })), [{ key: 'serve' }]);
});
