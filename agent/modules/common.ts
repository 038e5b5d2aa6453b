// Argument schemas several modules share.
import { Type } from '@sinclair/typebox';

/**
 * A file mode, written as a string such as '0640'. A bare YAML number is refused: `0640` is 640
 * in YAML 1.2 and 416 in YAML 1.1, and guessing wrong would silently open a secret file.
 */
export const Mode = Type.String({
  pattern: '^0?[0-7]{3,4}$',
  hint: "write the mode as a quoted string such as '0640' (a bare YAML number is ambiguous)",
});

/** A command as an argv array, or a string that is split into words (no shell features). */
export const Command = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })]);

/** Parses '0640' / '640' into a number. */
export function parseMode(mode: string): number {
  return parseInt(mode, 8);
}

/** 0o640 → '0640' */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}
