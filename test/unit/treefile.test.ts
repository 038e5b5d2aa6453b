import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../agent/errors.js';
import { Renderer } from '../../agent/render/render.js';
import { loadPillar } from '../../agent/pillar.js';
import { Tree, treeLimits } from '../../agent/treefile.js';
import { wantedContent } from '../../agent/content.js';
import { GRAINS as grains } from './grains-fixture.js';

function refusal(t: Test, f: () => unknown): string {
  try {
    f();
  } catch (err) {
    t.type(err, InputError);
    return (err as InputError).format();
  }
  t.fail('expected an InputError');
  return '';
}

t.test("files of the tree are read only as regular files inside it", async (t) => {
  const outside = mkdtempSync(join(tmpdir(), 'brine-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'shadow'), 'root:$6$secret:19000::::::\n');
  const root = t.testdir({ templates: { 'site.j2': 'ok\n', 'latin1.txt': Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]) }, sub: {} });
  symlinkSync(join(outside, 'shadow'), join(root, 'templates', 'shadow'));
  symlinkSync('site.j2', join(root, 'templates', 'alias.j2'));
  symlinkSync(join(outside, 'gone'), join(root, 'templates', 'dangling'));
  execFileSync('mkfifo', [join(root, 'templates', 'fifo')]);
  const tree = new Tree(root, 'states');
  t.equal(tree.text('templates/site.j2'), 'ok\n');
  t.equal(tree.text('templates/alias.j2'), 'ok\n', 'a link inside the tree is fine');
  t.equal(tree.resolve('templates/none.j2'), null, 'nothing there');
  t.equal(refusal(t, () => tree.read('../../etc/shadow')), '../../etc/shadow is outside states/');
  t.equal(refusal(t, () => tree.read('/etc/shadow')), '/etc/shadow is an absolute path: paths are relative to states/');
  t.equal(refusal(t, () => tree.read('templates/shadow')), 'states/templates/shadow resolves outside states/ (a link out of it): refused');
  t.equal(refusal(t, () => tree.read('templates/dangling')), 'states/templates/dangling is a link to nothing inside states/');
  t.equal(refusal(t, () => tree.read('templates/fifo')), 'states/templates/fifo is not a regular file (a device, a FIFO or a socket): refused', 'a FIFO is refused, not waited on');
  t.equal(refusal(t, () => tree.read('sub')), 'states/sub is a directory, not a file');
  t.equal(refusal(t, () => tree.text('templates/latin1.txt')), 'states/templates/latin1.txt is not UTF-8 text (from line 1)');
  t.equal(tree.read('templates/latin1.txt').length, 5, 'as bytes it is fine');
  const was = treeLimits.text;
  t.teardown(() => void (treeLimits.text = was));
  treeLimits.text = 2;
  t.match(refusal(t, () => tree.text('templates/site.j2')), /states\/templates\/site\.j2 is 0\.0 MB; at most 0\.0 MB is read/);
  t.notMatch(refusal(t, () => tree.read('templates/shadow')), outside, 'no path of the machine in the message');
});

t.test('a source is written as its bytes: text when UTF-8, a Buffer otherwise', async (t) => {
  const bin = Buffer.from(Array.from({ length: 1032 }, (_, i) => (i * 37) % 256));
  const root = t.testdir({ files: { 'logo.png': bin, 'motd': 'héllo\n' } });
  const ctx = { statesDir: root, renderTemplate: () => { throw new Error('no templates'); } };
  const content = wantedContent({ source: 'files/logo.png' }, ctx);
  t.ok(Buffer.isBuffer(content));
  t.equal((content as Buffer).length, 1032, 'byte-exact: not re-encoded');
  t.ok((content as Buffer).equals(bin));
  t.equal(wantedContent({ source: 'files/motd' }, ctx), 'héllo\n');
  t.equal(refusal(t, () => wantedContent({ source: '../../../../etc/passwd' }, ctx)), 'source: ../../../../etc/passwd is outside states/');
});

t.test('templates, includes and imports come from the tree only', async (t) => {
  const outside = mkdtempSync(join(tmpdir(), 'brine-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'group'), 'root:x:0:\n');
  const root = t.testdir({ t: { 'inc.j2': 'line one\n{% include "../../../../../etc/passwd" %}\n', 'imp.j2': '{% import "/etc/group" as g %}\n', 'ok.j2': 'ok\n' } });
  symlinkSync(join(outside, 'group'), join(root, 't', 'link.j2'));
  const r = new Renderer(root, { pillar: {}, env: 'test', grains });
  t.equal(refusal(t, () => r.renderFile('t/inc.j2')), 'states/t/inc.j2:2: ../../../../etc/passwd is outside states/', 'named as written, relative to the tree: never a path of the machine');
  t.equal(refusal(t, () => r.renderFile('t/imp.j2')), 'states/t/imp.j2:1: /etc/group is an absolute path: paths are relative to states/');
  t.equal(refusal(t, () => r.renderFile('t/link.j2')), 'source: states/t/link.j2 resolves outside states/ (a link out of it): refused', "the state naming it is at fault (load.ts adds the state's place)");
  t.equal(refusal(t, () => r.renderString('x\n{% include "./link.j2" %}\n', 'states/t/web.yaml')), 'states/t/web.yaml:2: states/t/link.j2 resolves outside states/ (a link out of it): refused', 'a relative include is found next to the file');
  t.equal(r.renderString('{% include "./ok.j2" %}', 'states/t/web.yaml'), 'ok\n');
});

t.test('pillar: a file where a directory belongs, a directory where a file belongs, a link out', async (t) => {
  const outside = mkdtempSync(join(tmpdir(), 'brine-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(join(outside, 'shadow'), 'a: b\n');
  const base = t.testdir({ pillar: { 'common.yaml': 'x: 1\n', staging: 'not a directory\n', prod: { 'secrets.yaml': {} }, dev: {} } });
  const pillar = join(base, 'pillar');
  symlinkSync(join(outside, 'shadow'), join(pillar, 'dev', 'env.yaml'));
  t.equal(refusal(t, () => loadPillar(pillar, 'staging', base)), 'pillar/staging: pillar/staging is a file, not a directory: an environment\'s pillar is a directory');
  t.equal(refusal(t, () => loadPillar(pillar, 'prod', base)), 'pillar/prod/secrets.yaml: pillar/prod/secrets.yaml is a directory, not a file');
  t.equal(refusal(t, () => loadPillar(pillar, 'dev', base)), 'pillar/dev/env.yaml: pillar/dev/env.yaml resolves outside pillar/ (a link out of it): refused');
  mkdirSync(join(pillar, 'qa'));
  t.equal(loadPillar(pillar, 'qa', base).data.x, 1);
});
