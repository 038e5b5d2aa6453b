// The content a file state asks for: inline `contents`, a `source` file in the states tree, or a
// Jinja `template` rendered with the run's pillar. Shared by file.managed and nginx.site; read
// once at load (prepare: a missing source or a template error is an input error) and again right
// before the file is compared.
import { Type } from '@sinclair/typebox';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { InputError } from './errors.js';
import type { ArgProblem, PrepareContext } from './modules/types.js';

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

/** The wanted content, or undefined when the state names none (then content is not managed). */
export function wantedContent(args: ContentArgs, ctx: Pick<PrepareContext, 'renderTemplate' | 'statesDir'>): string | undefined {
  if (args.contents !== undefined) return args.contents;
  if (args.source === undefined) return undefined;
  if (args.template === 'jinja') return ctx.renderTemplate(args.source, args.context);
  const path = isAbsolute(args.source) ? args.source : resolve(ctx.statesDir, args.source);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${args.source} does not exist (sources are relative to states/)` : `cannot read ${args.source}: ${code}`, { key: 'source' });
  }
}
