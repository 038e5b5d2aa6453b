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
import { compile } from '../../agent/compile.js';
import { registry } from '../../agent/modules/index.js';
import { loadTree } from '../../agent/sls.js';
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

interface TreeCase {
  doc: string;
  files: Record<string, string>;
  id?: string;
  grains?: Record<string, unknown>;
  pillar?: Record<string, unknown>;
  states?: string[];
  error?: string;
  warnings?: string[];
  /** Arguments some states must have: "module.function ID" → arguments. */
  args?: Record<string, Record<string, unknown>>;
}

t.test("Salt's state trees, as its documentation shows them", async (t) => {
  const cases = parse(readFileSync(join(here, 'sls.yaml'), 'utf8')) as TreeCase[];
  for (const c of cases) {
    const dir = tree(t, c.files);
    const grains = { ...GRAINS, ...(c.id ? { id: c.id } : {}), ...c.grains } as never as typeof GRAINS;
    const renderer = new Renderer(dir, { pillar: c.pillar ?? {}, env: 'staging', grains });
    let got: string[] | undefined;
    let compiled: { label: string; args: Record<string, unknown> }[] = [];
    let warnings: string[] = [];
    let error: InputError | undefined;
    try {
      const loaded = loadTree(dir, 'staging', renderer, { id: grains.id, grains, pillar: c.pillar ?? {} });
      const all = [...loaded.warnings];
      compiled = compile(loaded.states, registry, all).map((s) => ({ label: `${s.module}.${s.fn} ${s.id}${s.args.name !== s.id ? ` ${String(s.args.name)}` : ''}`, args: s.args }));
      got = compiled.map((s) => s.label);
      warnings = all.map((w) => w.format());
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      error = err;
    }
    if (c.error !== undefined) t.match(error?.format() ?? `states ${JSON.stringify(got)}`, new RegExp(c.error), c.doc);
    else t.same(error ? error.format() : got, c.states, c.doc);
    for (const [label, want] of Object.entries(c.args ?? {})) t.match(compiled.find((s) => s.label === label)?.args, want, `${c.doc}: ${label}`);
    for (const w of c.warnings ?? []) t.ok(warnings.some((x) => new RegExp(w).test(x)), `${c.doc}: warns ${w} (${warnings.join('; ') || 'no warnings'})`);
  }
});
