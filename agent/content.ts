// The content a file state asks for: inline `contents`, a `source` file in the states tree, or a
// Jinja `template` rendered with the run's pillar. Shared by file.managed and nginx.site; read
// once at load (prepare: a missing source or a template error is an input error) and again right
// before the file is compared. A source is read as bytes and written as they are: text when it is
// UTF-8, a Buffer when it is not (a binary file, a Latin-1 one), never re-encoded.
import { Type } from '@sinclair/typebox';
import { isUtf8 } from 'node:buffer';
import { InputError } from './errors.js';
import type { ArgProblem, PrepareContext } from './modules/types.js';
import { Tree, treeLimits } from './treefile.js';

/** The content arguments, for a state's schema. */
export const contentArgs = {
  contents: Type.Optional(Type.String()),
  /** A file of the states tree: `templates/x.j2` or Salt's `salt://templates/x.j2`; a list: the first there is. */
  source: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
  template: Type.Optional(Type.Literal('jinja')),
  context: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  /** Salt's: template variables that context: overrides. */
  defaults: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
};

/**
 * Where a source is in the states tree: `salt://` is the tree's root, as on a Salt file server.
 * Anything else with a scheme (http://, file://) is refused, as the tree refuses an absolute path
 * or one out of it: a run reads only the tree it was given.
 */
export function treeSource(source: string | string[], statesDir: string): string {
  const candidates = (Array.isArray(source) ? source : [source]).map((s) => {
    if (/^salt:\/\//.test(s)) return s.slice('salt://'.length);
    // An absolute path or one climbing out is the tree's to refuse (treefile.ts), as for every file.
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s))
      throw new InputError(`"${s}": sources come from the states tree (salt://path, or a path relative to states/); a run reads nothing else`, { key: 'source' });
    return s;
  });
  if (candidates.length === 1) return candidates[0]!;
  const tree = new Tree(statesDir, 'states');
  const found = candidates.find((c) => tree.resolve(c, { key: 'source' }) !== null);
  if (found === undefined) throw new InputError(`none of the sources exists: ${candidates.map((c) => tree.show(c)).join(', ')}`, { key: 'source' });
  return found;
}

/** Contents and source exclude each other; a template is a source. `required`: one must be given. */
export function contentProblems(args: ContentArgs, required: string | undefined): ArgProblem[] {
  const problems: ArgProblem[] = [];
  if (args.contents !== undefined && args.source !== undefined) problems.push({ key: 'contents', message: 'give either contents or source, not both' });
  if (required && args.contents === undefined && args.source === undefined) problems.push({ key: 'source', message: required });
  if (args.template !== undefined && args.source === undefined) problems.push({ key: 'template', message: 'template needs a source file' });
  return problems;
}

export interface ContentArgs {
  contents?: string;
  source?: string | string[];
  template?: 'jinja';
  context?: Record<string, unknown>;
  defaults?: Record<string, unknown>;
}

/** What a file should hold: text, or bytes that are not UTF-8. */
export type Content = string | Buffer;

/** The wanted content, or undefined when the state names none (then content is not managed). */
export function wantedContent(args: ContentArgs, ctx: Pick<PrepareContext, 'renderTemplate' | 'statesDir'>): Content | undefined {
  if (args.contents !== undefined) return args.contents;
  if (args.source === undefined) return undefined;
  const source = treeSource(args.source, ctx.statesDir);
  if (args.template === 'jinja') return ctx.renderTemplate(source, args.defaults || args.context ? { ...args.defaults, ...args.context } : undefined);
  const bytes = new Tree(ctx.statesDir, 'states').read(source, { limit: treeLimits.source, place: { key: 'source' }, what: 'sources are relative to states/' });
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
}

/** The wanted content as text, where only text can be written (an nginx site); bytes are refused. */
export function wantedText(args: ContentArgs, ctx: Pick<PrepareContext, 'renderTemplate' | 'statesDir'>): string | undefined {
  const content = wantedContent(args, ctx);
  if (Buffer.isBuffer(content)) throw new InputError(`states/${treeSource(args.source!, ctx.statesDir)} is not UTF-8 text; this state writes text only`, { key: 'source' });
  return content;
}
