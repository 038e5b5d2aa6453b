// Grains with Salt's names, read from this machine, and custom grains over them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { InputError } from '../../agent/errors.js';
import { customGrains, readGrains } from '../../agent/grains.js';

t.test("the grains Salt trees read are there, with Salt's types", async (t) => {
  const g = readGrains('/nonexistent');
  for (const k of ['id', 'host', 'fqdn', 'nodename', 'os', 'os_family', 'osrelease', 'oscodename', 'osfinger', 'lsb_distrib_id', 'lsb_distrib_codename', 'kernel', 'kernelrelease', 'cpuarch', 'osarch', 'init', 'shell'])
    t.type(g[k], 'string', k);
  for (const k of ['num_cpus', 'cpus', 'mem_total', 'osmajorrelease']) t.type(g[k], 'number', k);
  t.equal(g.kernel, 'Linux');
  t.ok(g.num_cpus >= 1);
  t.ok(g.ipv4.includes('127.0.0.1'), 'ipv4 lists the loopback address');
  t.same(g.ip4_interfaces.lo, ['127.0.0.1']);
  t.ok(Array.isArray(g.ip_interfaces.lo));
  t.match(g.cpuarch, /^(x86_64|aarch64|armv7l|i686|ppc64le|s390x)$/);
  t.equal(g.host, g.id.split('.')[0]);
});

t.test('custom grains: a YAML mapping, read over the core grains', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brine-grains-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'grains');
  writeFileSync(file, 'roles: [web, db]\ndatacenter: fra1\nos: Custom\n');
  const g = readGrains(file);
  t.same(g.roles, ['web', 'db']);
  t.equal(g.datacenter, 'fra1');
  t.equal(g.os, 'Custom', 'as in Salt, a custom grain overrides a core one');
  t.same(customGrains(join(dir, 'missing')), {}, 'no file, no custom grains');
  writeFileSync(file, '');
  t.same(customGrains(file), {});
  writeFileSync(file, '- web\n');
  t.throws(() => customGrains(file), InputError);
  writeFileSync(file, 'roles: [web\n');
  const err = (() => {
    try {
      customGrains(file);
    } catch (e) {
      return e as InputError;
    }
  })();
  t.type(err, InputError);
  t.equal(err?.place.file, file);
});
