// YAML files with the line numbers brine's error messages need.
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, type Node, type Document } from 'yaml';
import { InputError } from './errors.js';

export interface YamlFile {
  file: string;
  doc: Document.Parsed;
  lineOf(node: Node | null | undefined): number | undefined;
}

/** Parses YAML text; a syntax error or a duplicate key is an InputError with file and line. */
export function parseYaml(text: string, file: string): YamlFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0]?.line;
    const message = first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new InputError(`invalid YAML: ${message}`, { file, line });
  }
  return {
    file,
    doc,
    lineOf(node) {
      const offset = node?.range?.[0];
      return offset === undefined ? undefined : lineCounter.linePos(offset).line;
    },
  };
}

export { isMap, isSeq, isScalar, isPair };
