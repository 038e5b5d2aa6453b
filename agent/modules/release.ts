// release.deployed — the app's releases: build once, switch atomically, check health, roll back
//
//   app-release:
//     release.deployed:
//       - name: /srv/app                               # the app root (layout: agent/releases/layout.ts)
//       - repo: ssh://git@git.example.com/acme/app.git
//       - rev: main                                    # branch, tag or sha; a push to the branch is
//       - user: app                                    #   deployed by the next run (cron)
//       - identity: /srv/app/.ssh/deploy_key
//       - known_hosts: ['git.example.com ssh-ed25519 AAAAC3Nza…']
//       - shared: [.env, uploads/]                     # linked from /srv/app/shared into each release
//       - env_file: /srv/app/shared/.env               # read before build steps, migrations and the app
//       - dependencies:                                # built once per checksum, reused by later releases
//         - path: .venv
//           files: [requirements.txt]
//           version: [python3, --version]
//           build:
//             - [python3, -m, venv, .venv]
//             - [.venv/bin/pip, install, -r, requirements.txt]
//       - build:
//         - [.venv/bin/python, manage.py, collectstatic, --noinput]
//       - migrate:
//           command: [.venv/bin/python, manage.py, migrate]
//           files: ['*/migrations/*.py']                  # unchanged since the live release: skipped
//           lock: postgresql://app:…@db.internal/app     # one server migrates at a time
//       - serve:                                       # two slots behind an nginx upstream (serve.ts)
//           command: [.venv/bin/gunicorn, --bind, '{bind}', --workers, '2', 'app.wsgi']
//           binds: ['127.0.0.1:8000', '127.0.0.1:8001']
//           upstream: app                              # the site says proxy_pass http://app;
//       - health:
//           path: /health
//           revision: true                             # the answer names the release's commit
//       - keep: 5
//       - require:
//         - file: deploy-key
//         - env: app-env
//         - service: supervisor
//         - pkg: nginx
//       - watch:
//         - env: app-env                               # a changed env file restarts the app, in the other slot
//
// A release is made when the wanted commit is not the live one: a no-op run costs one ls-remote.
// What happens when one is made, and when it fails, is in agent/releases/deploy.ts; the layout on
// disk in layout.ts; the switch in serve.ts; `agent releases`, `agent rollback` in the CLI.
import { checkRelease, applyRelease, planRelease, restartRelease, serveSpec, type ReleaseCurrent } from '../releases/deploy.js';
import { SLOTS, programName, upstreamPath } from '../releases/serve.js';
import { confPath } from '../supervisor/conf.js';
import { pathClaim } from './common.js';
import { DeployedArgs, validateArgs } from '../releases/args.js';
import { stateFunction, type StateModule } from './types.js';

const deployed = stateFunction(DeployedArgs, {
  validate: validateArgs,
  commandLines: (args) => [
    // git is given the URL on its command line: a token in it would be there for all to read.
    { key: 'repo', command: args.repo },
    ...args.dependencies.flatMap((d, i) => [
      { key: `dependencies[${i}].version`, command: d.version },
      ...d.build.map((c, j) => ({ key: `dependencies[${i}].build[${j}]`, command: c })),
    ]),
    ...args.build.map((c, i) => ({ key: `build[${i}]`, command: c })),
    { key: 'migrate.command', command: args.migrate?.command },
    { key: 'serve.command', command: args.serve?.command },
  ],
  claims(args) {
    const spec = serveSpec(args);
    const serving = spec ? [...SLOTS.map((slot) => pathClaim(confPath(programName(spec, slot)))), pathClaim(upstreamPath(spec))] : [];
    return [`release:${args.name}`, ...serving];
  },
  check: (args, ctx): Promise<ReleaseCurrent> => checkRelease(args, ctx),
  plan: (current, args) => planRelease(current, args),
  apply: (args, plan, current, ctx) => applyRelease(args, plan, current, ctx),
  refresh: (args, ctx) => restartRelease(args, ctx),
});

export const releaseModule: StateModule = {
  name: 'release',
  functions: { deployed },
};
