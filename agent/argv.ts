// Commands in states are argv arrays. A string is accepted as a convenience and split into words
// the way a shell would split plain words and quotes — but with no expansion, pipes or redirects:
// those need `shell: true`, so that running a shell is always something the user asked for.

export class CommandSyntaxError extends Error {}

const SHELL_SPECIALS = new Set(['|', '&', ';', '<', '>', '$', '`', '(', ')', '*', '?', '~', '{', '}', '[', ']']);

export function splitCommand(command: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < command.length && '"\\'.includes(command[i + 1]!)) word += command[++i];
      else if (quote === '"' && (c === '$' || c === '`'))
        throw new CommandSyntaxError(`"${command}" uses ${c} inside double quotes; write an argv list, or set shell: true`);
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && command[i + 1] === '\n') {
      i++; // a line continuation, as in a shell
    } else if (c === '\\' && i + 1 < command.length) {
      word += command[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else if (SHELL_SPECIALS.has(c)) {
      throw new CommandSyntaxError(`"${command}" uses the shell feature ${c}; write an argv list, or set shell: true`);
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new CommandSyntaxError(`"${command}" has an unclosed ${quote}`);
  if (inWord) words.push(word);
  if (words.length === 0) throw new CommandSyntaxError('the command is empty');
  return words;
}

/** The argv to run for a command argument: arrays as they are, strings split, or a shell if asked. */
export function commandArgv(command: string | readonly string[], shell = false): string[] {
  if (Array.isArray(command)) return [...command];
  const text = command as string;
  return shell ? ['/bin/sh', '-c', text] : splitCommand(text);
}
