import t from 'tap';
import { Masker, Secret, MASK, revealDeep } from '../../agent/secret.js';

t.test('Secret prints as the mask everywhere', async (t) => {
  const s = new Secret('hunter22');
  t.equal(String(s), MASK);
  t.equal(JSON.stringify({ s }), `{"s":"${MASK}"}`);
  t.equal(`${s}`, MASK);
  t.equal(s.reveal(), 'hunter22');
  t.same(revealDeep({ a: [s] }), { a: ['hunter22'] });
});

t.test('Masker masks the raw text of every known secret, longest first', async (t) => {
  const m = new Masker();
  m.addFrom({ db: new Secret('pass'), key: new Secret('passphrase'), plain: 'pass' });
  t.equal(m.size, 2);
  t.equal(m.mask('a passphrase and a pass'), `a ${MASK} and a ${MASK}`);
  t.ok(m.contains('xxpassxx'));
  t.same(m.maskDeep({ a: ['pass'], n: 3 }), { a: [MASK], n: 3 });
});
