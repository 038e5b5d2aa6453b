// Argument schemas several modules share.
import { Type } from '@sinclair/typebox';
import { posix } from 'node:path';

/**
 * A file mode: 3 or 4 octal digits. State files may write it as Salt allows — 640, 0640, 0o640 or
 * '0640' — and sls.ts reads a bare number by its source text (YAML 1.2 makes 0640 the number 640,
 * YAML 1.1 made it 416: read as a number, one of them would silently open a secret file).
 */
export const Mode = Type.String({
  pattern: '^0?[0-7]{3,4}$',
  hint: "a mode is 3 or 4 octal digits (0-7), such as 0640",
  patternHint: "a mode is 3 or 4 octal digits (0-7), such as 0640",
});

/** A command as an argv array, or a string that is split into words (no shell features). */
export const Command = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })]);

/** What a state that manages a path claims (compile refuses two states claiming one). */
export function pathClaim(path: string): string {
  return `path:${posix.normalize(path).replace(/(.)\/+$/, '$1')}`;
}

/** Parses '0640' / '640' into a number. */
export function parseMode(mode: string): number {
  return parseInt(mode, 8);
}

/** 0o640 → '0640' */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** A user or group name as useradd/groupadd accept it, never mistaken for an option (no leading '-'). */
export const AccountName = Type.String({
  pattern: '^[a-z_][a-z0-9_.-]*\\$?$',
  maxLength: 32,
  hint: 'lower-case letters, digits, _ . and -, starting with a letter or _',
});
