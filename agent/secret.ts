// Secrets are a type, not a convention. A value read from a `secrets*.yaml` pillar file is wrapped
// in `Secret` and stays wrapped until the moment it must be real (a file's bytes, an SQL
// parameter). Every printer goes through `Masker.mask`, which also replaces the raw text of every
// known secret, so a secret that was interpolated into a template or a command is masked too.

export const MASK = '********';

/** Secrets shorter than this are refused: masking them by their text would garble all output. */
export const MIN_MASKED_LENGTH = 4;

export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  /** The real value. Call it only where the value leaves brine for the system. */
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return MASK;
  }
  toJSON(): string {
    return MASK;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return MASK;
  }
}

export function isSecret(value: unknown): value is Secret {
  return value instanceof Secret;
}

/** Replaces every secret with its real value, deeply (for the last step before the system). */
export function revealDeep<T>(value: T): T {
  if (value instanceof Secret) return value.reveal() as T;
  if (Array.isArray(value)) return value.map(revealDeep) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = revealDeep(v);
    return out as T;
  }
  return value;
}

/**
 * A secret as printers may show it: whole; JSON-escaped (the --json report); URL-encoded (a
 * password in a DATABASE_URL built with `| urlencode`); and, for a multi-line secret such as a
 * private key, each of its lines on its own (a diff or YAML shows them one by one, prefixed and
 * indented).
 */
function shownForms(value: string): string[] {
  // …and shell-quoted, as displayCommand() shows an argv element holding a quote: 'it'\''s'.
  const forms = [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value), value.replace(/'/g, `'\\''`)];
  if (value.includes('\n')) forms.push(...value.split('\n').map((l) => l.trim()).filter((l) => l.length >= 6));
  return forms;
}

/** The raw text of every secret brine knows about this run; masks any string that contains one. */
export class Masker {
  #values: string[] = [];

  add(value: string): void {
    // Shorter values can't be masked by their text without masking half of every line; pillar
    // refuses them (pillar.ts), and a Secret printed as itself is masked whatever its length.
    if (value.length < MIN_MASKED_LENGTH) return;
    for (const form of shownForms(value)) if (form.length >= MIN_MASKED_LENGTH && !this.#values.includes(form)) this.#values.push(form);
    // Longest first, so a secret that contains another is masked whole.
    this.#values.sort((a, b) => b.length - a.length);
  }

  /** Registers every Secret found in a (pillar) tree. */
  addFrom(tree: unknown): void {
    if (tree instanceof Secret) this.add(tree.reveal());
    else if (Array.isArray(tree)) tree.forEach((v) => this.addFrom(v));
    else if (tree && typeof tree === 'object') Object.values(tree).forEach((v) => this.addFrom(v));
  }

  get size(): number {
    return this.#values.length;
  }

  contains(text: string): boolean {
    return this.#values.some((v) => text.includes(v));
  }

  mask(text: string): string {
    let out = text;
    for (const v of this.#values) if (out.includes(v)) out = out.split(v).join(MASK);
    return out;
  }

  /** Masks every string in a JSON-like value (Secrets become the mask through toJSON). */
  maskDeep<T>(value: T): T {
    if (typeof value === 'string') return this.mask(value) as T;
    if (value instanceof Secret) return MASK as T;
    if (Array.isArray(value)) return value.map((v) => this.maskDeep(v)) as T;
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.maskDeep(v);
      return out as T;
    }
    return value;
  }
}
