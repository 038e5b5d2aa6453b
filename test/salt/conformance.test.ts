// The Salt conformance suite: snippets from Salt's documentation (jinja.yaml, sls.yaml), each
// rendered (and, for state files, loaded and compiled) by brine, compared with what the
// documentation says Salt makes of them.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { InputError } from '../../agent/errors.js';
import { Renderer } from '../../agent/render/render.js';
import { GRAINS } from '../unit/grains-fixture.js';

interface JinjaCase {
  doc: string;
  template: string;
  rendered?: string;
  error?: string;
  file?: string;
  pillar?: Record<string, unknown>;
  grains?: Record<string, unknown>;
  files?: Record<string, string>;
}

const here = dirname(new URL(import.meta.url).pathname);

/** A states tree holding the case's files, removed when the test ends. */
function tree(t: Test, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'brine-salt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

t.test("Salt's Jinja, as its documentation shows it", async (t) => {
  const cases = parse(readFileSync(join(here, 'jinja.yaml'), 'utf8')) as JinjaCase[];
  t.ok(cases.length >= 20, `${cases.length} cases`);
  for (const c of cases) {
    const renderer = new Renderer(tree(t, c.files), { pillar: c.pillar ?? {}, env: 'staging', grains: { ...GRAINS, ...c.grains } as never });
    const file = `states/${c.file ?? 'case.sls'}`;
    let out: string | undefined;
    let error: InputError | undefined;
    try {
      out = renderer.renderString(c.template, file);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      error = err;
    }
    if (c.error !== undefined) {
      t.match(error?.format() ?? `rendered ${JSON.stringify(out)}`, new RegExp(c.error), c.doc);
    } else {
      t.equal(error?.format() ?? out, c.rendered, c.doc);
    }
  }
});
