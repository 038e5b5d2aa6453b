import t from 'tap';
import { globMatcher } from '../../../agent/releases/mirror.js';

t.test("migration globs read as git's :(glob) does", async (t) => {
  const cases: [string, string, boolean][] = [
    ['migrations/*', 'migrations/001.sql', true],
    ['migrations/*', 'migrations/sub/001.sql', false],
    ['migrations', 'migrations/sub/x.sql', true],
    ['migrations/', 'migrations/001.sql', true],
    ['migrations', 'migrations.py', false],
    ['*/migrations/*.py', 'blog/migrations/0001_initial.py', true],
    ['*/migrations/*.py', 'a/b/migrations/x.py', false],
    ['**/migrations/*.py', 'a/b/migrations/x.py', true],
    ['**/migrations/*.py', 'migrations/x.py', true],
    ['db/**', 'db/a/b.sql', true],
    ['alembic/versions/?_*.py', 'alembic/versions/1_init.py', true],
    ['a.b', 'axb', false],
    ['migrations/[0-9]*.py', 'migrations/0001_initial.py', true],
    ['migrations/[0-9]*.py', 'migrations/__init__.py', false],
    ['migrations/[!_]*.py', 'migrations/__init__.py', false],
    ['migrations/[!_]*.py', 'migrations/0002_x.py', true],
  ];
  for (const [glob, path, want] of cases) t.equal(globMatcher(glob)(path), want, `${glob} ${want ? 'matches' : 'does not match'} ${path}`);
});
