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
  source: Type.Optional(Type.String({ minLength: 1 })),
  template: Type.Optional(Type.Literal('jinja')),
  context: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
};

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
  source?: string;
  template?: 'jinja';
  context?: Record<string, unknown>;
}

/** What a file should hold: text, or bytes that are not UTF-8. */
export type Content = string | Buffer;

/** The wanted content, or undefined when the state names none (then content is not managed). */
export function wantedContent(args: ContentArgs, ctx: Pick<PrepareContext, 'renderTemplate' | 'statesDir'>): Content | undefined {
  if (args.contents !== undefined) return args.contents;
  if (args.source === undefined) return undefined;
  if (args.template === 'jinja') return ctx.renderTemplate(args.source, args.context);
  const bytes = new Tree(ctx.statesDir, 'states').read(args.source, { limit: treeLimits.source, place: { key: 'source' }, what: 'sources are relative to states/' });
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
}

/** The wanted content as text, where only text can be written (an nginx site); bytes are refused. */
export function wantedText(args: ContentArgs, ctx: Pick<PrepareContext, 'renderTemplate' | 'statesDir'>): string | undefined {
  const content = wantedContent(args, ctx);
  if (Buffer.isBuffer(content)) throw new InputError(`states/${args.source} is not UTF-8 text; this state writes text only`, { key: 'source' });
  return content;
}
