// YAML files with the line numbers brine's error messages need.
import { LineCounter, parseDocument, visit, isMap, isSeq, isScalar, isPair, type Node, type Document } from 'yaml';
import { InputError } from './errors.js';

export interface YamlFile {
  file: string;
  doc: Document.Parsed;
  lineOf(node: Node | null | undefined): number | undefined;
  /** The document as plain data; an unresolvable alias is an InputError. */
  toJS(): unknown;
  /** One node as plain data, its aliases resolved in this document (`mode: *m`). */
  valueOf(node: Node): unknown;
}

/** Aliases one document may expand: more is an alias bomb (a billion laughs), not a state tree. */
const MAX_ALIASES = 100;

export interface ParseOptions {
  /**
   * The file holds secrets: problems are reported by line only, since the YAML library's
   * messages may quote the offending value.
   */
  secret?: boolean;
}

/**
 * Parses YAML text. A syntax error, a duplicate key or an unknown tag (`!foo` — an unquoted value
 * starting with `!` would otherwise silently become an empty string) is an InputError with file
 * and line.
 */
/** Deeper than this is not configuration (and recursion over it would overflow the stack). */
const MAX_DEPTH = 200;

export function parseYaml(text: string, file: string, options: ParseOptions = {}): YamlFile {
  try {
    return parse(text, file, options);
  } catch (err) {
    if (err instanceof RangeError) throw new InputError(`invalid YAML: nested too deeply (at most ${MAX_DEPTH} levels)`, { file });
    throw err;
  }
}

function parse(text: string, file: string, options: ParseOptions): YamlFile {
  const lineCounter = new LineCounter();
  // Duplicate keys are found below, in one pass: the library's own check compares every key of a
  // map with every other (12.7 s for a 1 MB state file).
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: true });
  const problem = doc.errors[0] ?? doc.warnings.find((w) => w.code === 'TAG_RESOLVE_FAILED');
  const fail = (message: string, line: number | undefined): InputError => {
    const shown = options.secret ? 'check the quoting of this line (details hidden: the file holds secrets)' : message;
    return new InputError(`invalid YAML: ${shown}`, { file, line });
  };
  if (problem) {
    const line = problem.linePos?.[0]?.line;
    if (/call stack/i.test(problem.message)) throw fail(`nested too deeply (at most ${MAX_DEPTH} levels)`, line);
    throw fail(problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''), line);
  }
  const lineOf = (node: Node | null | undefined) => {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  const tooDeep = (node: Node, path: readonly unknown[]) => {
    if (path.length > MAX_DEPTH && path.filter((n) => isMap(n) || isSeq(n)).length >= MAX_DEPTH) throw fail(`nested too deeply (at most ${MAX_DEPTH} levels)`, lineOf(node));
  };
  visit(doc, {
    Seq(_, seq, path) {
      tooDeep(seq as Node, path);
    },
    Map(_, map, path) {
      tooDeep(map as Node, path);
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        // `__proto__: …` becomes the prototype of the object toJS makes (the key vanishes, and a
        // merge could pollute every object): never a key brine takes.
        if (key === '__proto__') throw new InputError('__proto__ cannot be a key (it is how JavaScript reaches the prototype of every object)', { file, line: lineOf(pair.key as Node), key: '__proto__' });
        if (seen.has(key)) throw fail(`Map keys must be unique (${options.secret ? 'a key' : `"${key}"`} is given twice)`, lineOf(pair.key as Node));
        seen.add(key);
      }
    },
  });
  const aliasError = (err: unknown, node: Node): InputError => {
    const message = (err as Error).message.split('\n')[0] ?? String(err);
    if (/alias count|Excessive alias/i.test(message)) return fail(`too many aliases (more than ${MAX_ALIASES} expansions: an alias bomb?)`, lineOf(node));
    return fail(`${message} (quote values that start with * or &)`, lineOf(node));
  };
  return {
    file,
    doc,
    lineOf,
    valueOf(node) {
      try {
        return node.toJS(doc, { maxAliasCount: MAX_ALIASES });
      } catch (err) {
        throw aliasError(err, node);
      }
    },
    toJS() {
      try {
        return doc.toJS({ maxAliasCount: MAX_ALIASES });
      } catch (err) {
        // e.g. `*foo` (an alias) used as a plain value: find the line that has it.
        const alias = /: (\S+)$/.exec((err as Error).message)?.[1];
        const at = alias ? text.split('\n').findIndex((l) => l.includes(`*${alias}`)) : -1;
        throw fail(`${(err as Error).message.split('\n')[0]} (quote values that start with * or &)`, at >= 0 ? at + 1 : undefined);
      }
    },
  };
}

export { isMap, isSeq, isScalar, isPair };
