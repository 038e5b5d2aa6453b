// Placeholder: `agent deploy-key ENV`.
import type { Io } from './cli.js';
export async function deployKey(_args: string[], _root: string, _io: Io): Promise<number> {
  throw new Error('not implemented yet');
}
