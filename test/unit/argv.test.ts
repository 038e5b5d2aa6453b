import t from 'tap';
import { CommandSyntaxError, commandArgv, splitCommand } from '../../agent/argv.js';

t.test('plain words are split on any run of whitespace', async (t) => {
  t.same(splitCommand('  systemctl   is-active\tnginx \n'), ['systemctl', 'is-active', 'nginx']);
});

t.test('single quotes keep everything literally, including $ and backslashes', async (t) => {
  t.same(splitCommand(`grep -q 'a b $HOME \\n' /etc/x`), ['grep', '-q', 'a b $HOME \\n', '/etc/x']);
});

t.test('double quotes group words; only \\" and \\\\ are escapes inside them', async (t) => {
  t.same(splitCommand(`echo "say \\"hi\\"" "back\\\\slash" "keep\\n"`), ['echo', 'say "hi"', 'back\\slash', 'keep\\n']);
});

t.test('quoted and unquoted parts of one word are joined; empty quotes are an empty word', async (t) => {
  t.same(splitCommand(`a"b c"d'e f' '' ""`), ['ab cde f', '', '']);
});

t.test('a backslash outside quotes makes the next character literal', async (t) => {
  t.same(splitCommand('touch my\\ file \\|pipe'), ['touch', 'my file', '|pipe']);
});

t.test('shell features are refused with a pointer to an argv list or shell: true', async (t) => {
  for (const command of ['a | b', 'a && b', 'a; b', 'a > out', 'cat < in', 'echo $HOME', 'echo `id`', 'ls *.txt', 'ls ~', 'a || b', 'x=$(id)']) {
    t.throws(() => splitCommand(command), { constructor: CommandSyntaxError, message: /uses the shell feature .; write an argv list, or set shell: true/ }, command);
  }
});

t.test('$ and ` inside double quotes are refused: a shell would expand them', async (t) => {
  t.throws(() => splitCommand('echo "$HOME"'), { constructor: CommandSyntaxError, message: /uses \$ inside double quotes/ });
  t.throws(() => splitCommand('echo "`id`"'), { constructor: CommandSyntaxError, message: /uses ` inside double quotes/ });
});

t.test('an unclosed quote names the quote', async (t) => {
  t.throws(() => splitCommand(`echo 'oops`), { constructor: CommandSyntaxError, message: `"echo 'oops" has an unclosed '` });
  t.throws(() => splitCommand('echo "oops'), { constructor: CommandSyntaxError, message: `"echo "oops" has an unclosed "` });
});

t.test('an empty command is refused', async (t) => {
  t.throws(() => splitCommand(''), { constructor: CommandSyntaxError, message: 'the command is empty' });
  t.throws(() => splitCommand('   \t'), { constructor: CommandSyntaxError, message: 'the command is empty' });
});

t.test('a backslash before a newline continues the line, as in a shell', async (t) => {
  // A YAML block such as
  //   - name: |
  //       /usr/bin/pg_dump --format=custom \
  //         --file=/var/backups/app.dump app
  // gets a stray "\n" argument; a shell drops the backslash-newline pair.
  t.same(splitCommand('/usr/bin/pg_dump --format=custom \\\n  --file=/x app'), ['/usr/bin/pg_dump', '--format=custom', '--file=/x', 'app'], 'no "\\n" word');
});

t.test('commandArgv: an argv list is used as it is (a copy), a string is split', async (t) => {
  const list = ['/bin/echo', '$HOME; rm -rf /'];
  const argv = commandArgv(list);
  t.same(argv, list);
  t.not(argv, list, 'a copy, so a caller may append to it');
  t.same(commandArgv(`useradd -c 'App user' app`), ['useradd', '-c', 'App user', 'app']);
});

t.test('commandArgv with shell: a string runs under /bin/sh -c, an argv list still runs as it is', async (t) => {
  t.same(commandArgv('test -f /a && test -f /b', true), ['/bin/sh', '-c', 'test -f /a && test -f /b']);
  t.same(commandArgv(['test', '-f', '/a'], true), ['test', '-f', '/a']);
  t.throws(() => commandArgv('test -f /a && test -f /b'), { constructor: CommandSyntaxError, message: /uses the shell feature &/ });
});
