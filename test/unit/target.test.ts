// Salt's targeting expressions, for top.sls.
import t from 'tap';
import { glob, matches } from '../../agent/target.js';

const facts = { id: 'web1.example.com', grains: { os: 'Debian', roles: ['web', 'cache'], ipv4: ['127.0.0.1', '10.0.3.7'], ip: { eth0: '10.0.3.7' } }, pillar: { app: { tier: 'front', enabled: true } } };

t.test('globs as fnmatch', async (t) => {
  t.ok(glob('web*', 'web1.example.com'));
  t.ok(glob('web?.example.com', 'web1.example.com'));
  t.ok(glob('web[0-9].*', 'web1.example.com'));
  t.notOk(glob('web[!1].*', 'web1.example.com'));
  t.notOk(glob('db*', 'web1.example.com'));
  t.ok(glob('*.example.com', 'web1.example.com'), 'a dot is a dot');
  t.notOk(glob('web1.example.co', 'web1.example.com'), 'the whole id');
});

t.test('each matcher', async (t) => {
  const yes: [Parameters<typeof matches>[0], string][] = [
    ['glob', '*'], ['grain', 'os:Debian'], ['grain', 'roles:cache'], ['grain', 'roles:we*'], ['grain', 'ip:eth0:10.0.3.*'], ['pillar', 'app:tier:front'], ['pillar', 'app:enabled:True'],
    ['list', 'db1, web1.example.com'], ['pcre', '^web\\d'], ['grain_pcre', 'os:^Deb'], ['ipcidr', '10.0.0.0/16'], ['ipcidr', '127.0.0.1'],
    ['compound', 'G@roles:web and I@app:tier:front'], ['compound', 'db* or L@web1.example.com'], ['compound', 'not G@roles:db'], ['compound', '( db* or web* ) and not E@^web2'], ['compound', 'S@10.0.3.0/24'],
  ];
  for (const [m, expr] of yes) t.ok(matches(m, expr, facts), `${m} ${expr}`);
  const no: [Parameters<typeof matches>[0], string][] = [['grain', 'os:Ubuntu'], ['grain', 'roles:db'], ['grain', 'nosuch:x'], ['pillar', 'app:tier:back'], ['list', 'web1'], ['ipcidr', '10.0.4.0/24'], ['compound', 'G@roles:web and not I@app:tier:front']];
  for (const [m, expr] of no) t.notOk(matches(m, expr, facts), `not ${m} ${expr}`);
});

t.test('malformed compound expressions say why', async (t) => {
  t.throws(() => matches('compound', 'G@roles:web and', facts), /ends too soon/);
  t.throws(() => matches('compound', '( web*', facts), /not closed/);
  t.throws(() => matches('compound', 'N@webservers', facts), /nodegroups/);
  t.throws(() => matches('compound', 'X@foo', facts), /unknown matcher X@/);
  t.throws(() => matches('compound', 'web* db*', facts), /unexpected "db\*"/);
  t.throws(() => matches('ipcidr', '10.0.0/33', facts), /not an IPv4/);
});
