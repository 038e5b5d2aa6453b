// Where a file state's source comes from: the states tree only, Salt's salt:// included.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { InputError } from '../../agent/errors.js';
import { treeSource, wantedContent } from '../../agent/content.js';

t.test('salt:// is the states tree; a list is the first source that exists; nothing outside the tree', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brine-content-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'files'));
  writeFileSync(join(dir, 'files', 'motd'), 'hello {{ who }}\n');
  t.equal(treeSource('salt://files/motd', dir), 'files/motd');
  t.equal(treeSource('files/motd', dir), 'files/motd');
  t.equal(treeSource(['salt://files/motd.web1', 'salt://files/motd'], dir), 'files/motd');
  t.throws(() => treeSource(['salt://a', 'salt://b'], dir), { constructor: InputError, message: /none of the sources exists: states\/a, states\/b/ });
  for (const outside of ['https://example.com/x', 'file:///etc/passwd'])
    t.throws(() => treeSource(outside, dir), { constructor: InputError, message: /sources come from the states tree/ }, outside);
  t.throws(() => wantedContent({ source: '/etc/passwd' }, { statesDir: dir, renderTemplate: () => '' }), { constructor: InputError, message: /is an absolute path/ }, 'the tree refuses an absolute path');
  const ctx = { statesDir: dir, renderTemplate: (path: string, extra?: Record<string, unknown>) => `${path} ${JSON.stringify(extra)}` };
  t.equal(wantedContent({ source: 'salt://files/motd' }, ctx), 'hello {{ who }}\n');
  t.equal(wantedContent({ source: 'salt://files/motd', template: 'jinja', defaults: { who: 'a', x: 1 }, context: { who: 'b' } }, ctx), 'files/motd {"who":"b","x":1}', 'context wins over defaults');
});
