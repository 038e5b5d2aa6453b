// What brine accepts as a role or database name. Stricter than PostgreSQL (which takes any quoted
// text): lower case, so the name in a state is the name psql shows and `createdb`/URLs need no
// quoting. Names are quoted in SQL all the same.
import type { ArgProblem } from '../modules/types.js';

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export const NAME_HINT = 'lower-case letters, digits and _, starting with a letter or _, at most 63 characters';

export function nameProblems(key: string, name: string | undefined): ArgProblem[] {
  if (name === undefined || NAME.test(name)) return [];
  return [{ key, message: `"${name}" is not a PostgreSQL name brine manages: ${NAME_HINT}` }];
}
