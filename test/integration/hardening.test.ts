// Bad input changes nothing, on a real booted server. Each tree of the corpus below begins with a
// state that would change the system (a canary file) and holds one mistake a user or a hostile
// reviewer makes; `agent apply` must exit 3 with the message naming the file, line and key, and
// leave the filesystem as it was: no file under /etc, /srv, /home, /var/spool/cron or /opt whose
// content, owner or mode changed, the same packages. Then: a binary source is written byte-exact,
// and a run killed while dpkg configures a package leaves nothing the next run cannot repair.
import t from 'tap';
import type { TestServer } from '../server/server.js';
import { bootWithAgent, stage } from './brine.js';

const CANARY = "/etc/brine-canary:\n  file.managed:\n    - contents: \"applied\\n\"\n";
const top = (sls = 'main') => `'*':\n  - ${sls}\n`;
const pillar = { 'pillar/common.yaml': 'x: 1\n', 'pillar/test/env.yaml': 'y: 1\n', 'pillar/test/secrets.yaml': 'secrets:\n  API_TOKEN: tok-Zq81-never-shown\n' };

interface Case {
  name: string;
  files: Record<string, string>;
  /** Shell run in the tree's root after the files are written (links, FIFOs). */
  setup?: string;
  /** What the error says: file:line: key: message. */
  error: RegExp;
}

const CASES: Case[] = [
  { name: 'an owner that is not a user name', files: { 'states/main.yaml': `${CANARY}/etc/x:\n  file.managed:\n    - contents: a\n    - user: 'no such user!'\n` }, error: /^states\/main\.yaml:7: \/etc\/x: user: is not valid: lower-case letters/ },
  { name: 'a secret in a world-readable file', files: { 'states/main.yaml': `${CANARY}/etc/token:\n  file.managed:\n    - contents: "{{ pillar.secrets.API_TOKEN }}"\n    - mode: '0644'\n` }, error: /^states\/main\.yaml:5: \/etc\/token: mode: mode 0644 would make a file holding a secret world-readable/ },
  { name: 'an env file readable by all', files: { 'states/main.yaml': `${CANARY}/etc/app.env:\n  env.file:\n    - sources: [secrets]\n    - group: root\n    - mode: '0644'\n` }, error: /^states\/main\.yaml:5: \/etc\/app\.env: mode: mode 0644 would make a file holding secrets world-readable/ },
  { name: 'unless with shell syntax', files: { 'states/main.yaml': `${CANARY}x:\n  cmd.run:\n    - name: /bin/true\n    - unless: test -f /x && true\n` }, error: /^states\/main\.yaml:7: x: unless: "test -f \/x && true" uses the shell feature &/ },
  { name: 'a source climbing out of the tree', files: { 'states/main.yaml': `${CANARY}/etc/copy:\n  file.managed:\n    - source: ../../etc/shadow\n` }, error: /^states\/main\.yaml:5: \/etc\/copy: source: \.\.\/\.\.\/etc\/shadow is outside states\// },
  { name: 'an absolute source', files: { 'states/main.yaml': `${CANARY}/etc/copy:\n  file.managed:\n    - source: /etc/shadow\n` }, error: /source: \/etc\/shadow is an absolute path: paths are relative to states\// },
  { name: 'a source linked out of the tree', files: { 'states/main.yaml': `${CANARY}/etc/copy:\n  file.managed:\n    - source: files/shadow\n` }, setup: 'mkdir -p states/files && ln -s /etc/shadow states/files/shadow', error: /source: states\/files\/shadow resolves outside states\/ \(a link out of it\): refused/ },
  { name: 'a device as a source', files: { 'states/main.yaml': `${CANARY}/etc/copy:\n  file.managed:\n    - source: files/zero\n` }, setup: 'mkdir -p states/files && mknod states/files/zero c 1 5', error: /source: states\/files\/zero is not a regular file \(a device, a FIFO or a socket\): refused/ },
  { name: 'a FIFO as a source', files: { 'states/main.yaml': `${CANARY}/etc/copy:\n  file.managed:\n    - source: files/fifo\n` }, setup: 'mkdir -p states/files && mkfifo states/files/fifo', error: /source: states\/files\/fifo is not a regular file/ },
  { name: 'a state file linked to /etc/group', files: { 'states/top.yaml': top('group') }, setup: 'ln -s /etc/group states/group.yaml', error: /^states\/top\.yaml:2: states\/group\.yaml resolves outside states\// },
  { name: 'an include outside the tree', files: { 'states/main.yaml': `${CANARY}/etc/site:\n  file.managed:\n    - source: site.j2\n    - template: jinja\n`, 'states/site.j2': 'a\n{% include "../../../etc/shadow" %}\n' }, error: /^states\/site\.j2:2: \.\.\/\.\.\/\.\.\/etc\/shadow is outside states\// },
  { name: 'a cron minute of 61', files: { 'states/main.yaml': `${CANARY}job:\n  cron.present:\n    - name: /bin/true\n    - identifier: job\n    - minute: 61\n` }, error: /job: minute: "61" is not a cron minute field: 61 is out of range \(0-59\)/ },
  { name: 'a cron day that is no day', files: { 'states/main.yaml': `${CANARY}job:\n  cron.present:\n    - name: /bin/true\n    - identifier: job\n    - dayweek: funday\n` }, error: /dayweek: "funday" is not a cron dayweek field/ },
  { name: 'two states on one path', files: { 'states/main.yaml': `${CANARY}again:\n  file.absent:\n    - name: /etc/brine-canary\n` }, error: /^states\/main\.yaml:5: again: \/etc\/brine-canary is managed by file\.managed \/etc\/brine-canary too \(states\/main\.yaml:2\)/ },
  { name: 'a top.yaml typo that leaves nothing', files: { 'states/top.yaml': 'tset:\n  - main\n', 'states/main.yaml': CANARY }, error: /^states\/top\.yaml: nothing applies to test: top\.yaml selects no state file for it \("tset" matches no environment \(there are test\): did you mean test\?\)/ },
  { name: '__proto__ in pillar', files: { 'states/main.yaml': CANARY, 'pillar/common.yaml': 'app:\n  __proto__:\n    admin: true\n' }, error: /^pillar\/common\.yaml:2: __proto__: __proto__ cannot be a key/ },
  { name: "an environment's pillar that is a file", files: { 'states/main.yaml': CANARY, 'pillar/test/env.yaml': '' }, setup: 'rm -rf pillar/test && echo "y: 1" > pillar/test', error: /^pillar\/test: pillar\/test is a file, not a directory/ },
  { name: 'secrets.yaml that is a directory', files: { 'states/main.yaml': CANARY }, setup: 'rm pillar/test/secrets.yaml && mkdir pillar/test/secrets.yaml', error: /^pillar\/test\/secrets\.yaml: pillar\/test\/secrets\.yaml is a directory, not a file/ },
  { name: 'a template that does not exist', files: { 'states/main.yaml': `${CANARY}/etc/site:\n  file.managed:\n    - source: nowhere.j2\n    - template: jinja\n` }, error: /^states\/main\.yaml:5: \/etc\/site: source: states\/nowhere\.j2 does not exist/ },
  { name: 'a secret on a command line', files: { 'states/main.yaml': `${CANARY}call:\n  cmd.run:\n    - name: '/usr/bin/curl -H \"Authorization: {{ pillar.secrets.API_TOKEN }}\" http://127.0.0.1/'\n` }, error: /^states\/main\.yaml:5: call: name: a secret on a command line can be read by every user of the server/ },
  { name: 'a secret in an unless', files: { 'states/main.yaml': `${CANARY}call:\n  cmd.run:\n    - name: /bin/true\n    - unless: /usr/bin/test {{ pillar.secrets.API_TOKEN }} = x\n` }, error: /^states\/main\.yaml:5: call: unless\[0\]: a secret on a command line/ },
  { name: 'a secret taken apart', files: { 'states/main.yaml': `${CANARY}/etc/x:\n  file.managed:\n    - contents: "{{ pillar.secrets.API_TOKEN[0] }}"\n` }, error: /^states\/main\.yaml:6: a secret would leave unmasked: a secret cannot be taken apart in a template \(\[0\]\)/ },
  { name: 'the length of a secret', files: { 'states/main.yaml': `${CANARY}/etc/x:\n  file.managed:\n    - contents: "{{ pillar.secrets.API_TOKEN | length }}"\n` }, error: /^states\/main\.yaml:6: a secret would leave unmasked: \| length turns a secret into a number/ },
  { name: 'a secret too short to mask', files: { 'states/main.yaml': CANARY, 'pillar/test/secrets.yaml': 'secrets:\n  API_TOKEN: tok-Zq81-never-shown\n  PIN: abc\n' }, error: /^pillar\/test\/secrets\.yaml:3: secrets\.PIN: a secret must be at least 4 characters/ },
  { name: 'an unquoted secret read as a YAML tag', files: { 'states/main.yaml': CANARY, 'pillar/test/secrets.yaml': 'secrets:\n  API_TOKEN: !tok-Zq81-never-shown\n' }, error: /^pillar\/test\/secrets\.yaml:2: invalid YAML: check the quoting of this line \(details hidden: the file holds secrets\)/ },
  { name: 'a mode that is not octal', files: { 'states/main.yaml': `${CANARY}/etc/x:\n  file.managed:\n    - contents: a\n    - mode: '0999'\n` }, error: /mode: is not valid: a mode is 3 or 4 octal digits/ },
];

async function changedSince(server: TestServer, marker: string): Promise<string> {
  const find = await server.exec(['sh', '-c', `find /etc /srv /home /var/spool/cron /opt -xdev \\( -newer ${marker} -o -cnewer ${marker} \\) -print 2>/dev/null | sort`], { allowFailure: true });
  return find.stdout.trim();
}

t.test('bad input changes nothing on a booted server, and says where it is', async (t) => {
  const server = await bootWithAgent();
  t.teardown(() => server.stop());
  const packages = (await server.exec(['sh', '-c', "dpkg-query -W -f '${Package} ${Version}\\n' | sort"])).stdout;
  for (const c of CASES) {
    await t.test(c.name, async (t) => {
      const root = '/root/bad';
      await stage(server, root, { 'states/top.yaml': top(), ...pillar, ...c.files });
      if (c.setup) await server.exec(['sh', '-c', `cd ${root} && ${c.setup}`]);
      await server.exec(['sh', '-c', 'touch /root/marker && sleep 1.1']);
      const run = await server.exec(['agent', 'apply', '--root', root], { allowFailure: true });
      t.equal(run.code, 3, `exit 3: ${run.stdout}${run.stderr}`);
      const anchored = c.error.source.startsWith('^');
      t.match(run.stderr, new RegExp(`^error: ${anchored ? c.error.source.slice(1) : `states/main\\.yaml:\\d+: .*${c.error.source}`}`, 'm'), 'the message names the file, line and key');
      t.match(run.stderr, /nothing was applied\n$/);
      t.notMatch(`${run.stdout}${run.stderr}`, /tok-Zq81-never-shown|root:\$|\/root\/bad\//, 'no secret, no line of /etc/shadow, no path of the machine');
      t.equal(await changedSince(server, '/root/marker'), '', 'no file changed');
    });
  }
  t.equal((await server.exec(['sh', '-c', "dpkg-query -W -f '${Package} ${Version}\\n' | sort"])).stdout, packages, 'no package changed');

  await t.test('a binary source is written byte-exact', async (t) => {
    const root = '/root/good';
    await stage(server, root, { 'states/top.yaml': top(), ...pillar, 'states/main.yaml': '/etc/brine-binary:\n  file.managed:\n    - source: files/blob\n' });
    await server.exec(['sh', '-c', `mkdir -p ${root}/states/files && head -c 1032 /dev/urandom > ${root}/states/files/blob`]);
    const run = await server.exec(['agent', 'apply', '--root', root], { allowFailure: true });
    t.equal(run.code, 0, run.stdout + run.stderr);
    t.match(run.stdout, /file: ∅ → created \(1,032 bytes, sha256 [0-9a-f]{16}…\)/, 'shown as its size and hash, not a diff');
    const sums = (await server.exec(['sha256sum', `${root}/states/files/blob`, '/etc/brine-binary'])).stdout.split('\n').map((l) => l.split(' ')[0]);
    t.equal(sums[1], sums[0], 'the same bytes');
    t.equal((await server.exec(['stat', '-c', '%s', '/etc/brine-binary'])).stdout.trim(), '1032');
    t.match((await server.exec(['agent', 'apply', '--root', root])).stdout, /Summary: 1 succeeded, 0 changed/, 'and then nothing to change');
  });

  await t.test('a secret transformed by a template is in the file and masked in every output', async (t) => {
    const root = '/root/derived';
    const secret = 'tok-Zq81-never-shown';
    await stage(server, root, {
      'states/top.yaml': top(),
      ...pillar,
      'states/main.yaml': '/etc/brine-derived:\n  file.managed:\n    - contents: |\n        {{ pillar.secrets.API_TOKEN | upper }}\n        {{ pillar.secrets.API_TOKEN | replace("-", "_") }}\n        {{ "https://u:" ~ pillar.secrets.API_TOKEN ~ "@example.test/" }}\n',
    });
    const forms = [secret.toUpperCase(), secret.replace(/-/g, '_'), secret];
    for (const args of [['--test'], [], ['--json']]) {
      await server.exec(['rm', '-f', '/etc/brine-derived']); // each run creates it, with its diff
      const run = await server.exec(['agent', 'apply', '--root', root, ...args], { allowFailure: true });
      t.equal(run.code, 0, run.stdout + run.stderr);
      for (const f of forms) t.notOk(`${run.stdout}${run.stderr}`.includes(f), `apply ${args.join(' ')}: ${f.slice(0, 4)}… is not shown`);
    }
    const journal = await server.exec(['sh', '-c', 'journalctl -t agent -o verbose --no-pager | tail -400'], { allowFailure: true });
    for (const f of forms) t.notOk(journal.stdout.includes(f), 'nor in the journal');
    t.equal((await server.exec(['cat', '/etc/brine-derived'])).stdout, `${forms[0]}\n${forms[1]}\nhttps://u:${secret}@example.test/\n`, 'the file has the real text');
  });

  await t.test('--test on a server without the packages: what depends on them is flagged, the rest is exact', async (t) => {
    const root = '/root/dry';
    await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
    t.teardown(() => server.exec(['rm', '-f', '/usr/sbin/policy-rc.d']));
    // Debian's default site is made by the nginx package: --test cannot see it before it is installed.
    await stage(server, root, {
      'states/top.yaml': top(),
      ...pillar,
      'states/main.yaml': "nginx-light:\n  pkg.installed: []\ndefault-site:\n  nginx.site_disabled:\n    - name: default\n    - require:\n      - pkg: nginx-light\n/etc/brine-dry:\n  file.managed:\n    - contents: \"x\\n\"\n",
    });
    const predicted = await server.exec(['agent', 'apply', '--root', root, '--test', '--json'], { allowFailure: true });
    const p = JSON.parse(predicted.stdout) as { summary: { afterInstall: number }; states: { id: string; status: string; changes: unknown[]; afterInstall?: string[] }[] };
    t.same(p.states.find((s) => s.id === 'default-site')?.afterInstall, ['nginx-light'], 'the site is flagged: it waits on nginx-light');
    t.equal(p.summary.afterInstall, 1);
    t.match((await server.exec(['agent', 'apply', '--root', root, '--test'], { allowFailure: true })).stdout, /nginx\.site_disabled default .*\(after nginx-light is installed: may differ\)[\s\S]*1 to be seen once packages are installed/);
    const applied = await server.exec(['agent', 'apply', '--root', root, '--json'], { allowFailure: true, timeoutMs: 600_000 });
    const a = JSON.parse(applied.stdout) as typeof p;
    t.equal(applied.code, 0, applied.stderr);
    const kind = (status: string) => (status === 'would-change' ? 'changed' : status);
    for (const before of p.states) {
      const after = a.states.find((s) => s.id === before.id)!;
      const same = kind(before.status) === after.status && JSON.stringify(before.changes.map((c) => (c as { what: string }).what)) === JSON.stringify(after.changes.map((c) => (c as { what: string }).what));
      if (!before.afterInstall) t.ok(same, `${before.id}: the prediction was exact (${before.status} → ${after.status})`);
      else t.comment(`${before.id}: predicted ${before.status}, was ${after.status} (flagged)`);
    }
    t.equal(a.states.find((s) => s.id === 'default-site')?.status, 'changed', 'indeed it changed once nginx-light was there');
  });

  await t.test('a run killed while dpkg configures a package: the next run repairs dpkg and converges', async (t) => {
    const root = '/root/pkg';
    await server.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
    await stage(server, root, { 'states/top.yaml': top(), ...pillar, 'states/main.yaml': 'postgresql:\n  pkg.installed: []\n' });
    // initdb, in postgresql-common's configure step, is what such kills landed in.
    const pgid = Number((await server.exec(['sh', '-c', `setsid agent apply --root ${root} > /tmp/killed.log 2>&1 & echo $!`])).stdout.trim());
    const deadline = Date.now() + 300_000;
    // A real journal entry (tmp.i is one dpkg is still writing, which counts for nothing) or a
    // package left half done: then dpkg is truly in the middle of its work.
    const interrupted = "ls /var/lib/dpkg/updates | grep -q '^[0-9]' || dpkg-query -W -f '${Status}\\n' | grep -qE 'half-installed|unpacked|half-configured'";
    while ((await server.exec(['sh', '-c', interrupted], { allowFailure: true })).code !== 0) {
      if (Date.now() > deadline) throw new Error(`dpkg never got going:\n${await server.readFile('/tmp/killed.log')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await server.exec(['kill', '-KILL', '--', `-${pgid}`]);
    await new Promise((r) => setTimeout(r, 500));
    const audit = await server.exec(['sh', '-c', `{ ${interrupted}; } && { ls /var/lib/dpkg/updates; dpkg --audit; }`], { allowFailure: true });
    t.equal(audit.code, 0, `dpkg was left interrupted: ${audit.stdout.trim().split('\n').slice(0, 3).join(' / ')}`);
    const next = await server.exec(['agent', 'apply', '--root', root], { allowFailure: true, timeoutMs: 600_000 });
    t.equal(next.code, 0, next.stdout + next.stderr);
    t.match(next.stdout, /dpkg: dpkg was interrupted.* → repaired \(dpkg --configure -a, apt-get -f install\)/, 'the run says it repaired dpkg');
    t.match((await server.exec(['dpkg-query', '-W', '-f', '${Status}', 'postgresql'])).stdout, /install ok installed/);
    t.equal((await server.exec(['dpkg', '--audit'])).stdout.trim(), '', 'dpkg has nothing left to finish');
    t.match((await server.exec(['agent', 'apply', '--root', root])).stdout, /0 changed, 0 failed/);
    await server.exec(['rm', '/usr/sbin/policy-rc.d']);
  });
});
