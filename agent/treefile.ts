// The files of the tree a run is given — states/ and pillar/ — read only as what they claim to be:
// a regular file inside its tree once links are followed (never ../../etc/shadow, an absolute path,
// a link out of the tree, /dev/zero or a FIFO), of a bounded size, and UTF-8 where text is wanted.
// Every problem is an InputError naming the path as the user wrote it, relative to the tree; no
// absolute path of the machine appears in a message.
import { isUtf8 } from 'node:buffer';
import { closeSync, fstatSync, lstatSync, openSync, readSync, realpathSync, constants } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { InputError, type SourcePlace } from './errors.js';

/** Sizes beyond which a file of the tree is refused (bytes). */
export const treeLimits = {
  /** state files, pillar files, templates, schemas */
  text: 4 * 1024 * 1024,
  /** `source:` files copied as they are */
  source: 64 * 1024 * 1024,
};

export class Tree {
  /** The tree on disk (/srv/brine/states). */
  readonly root: string;
  /** How it is named in messages (`states`). */
  readonly shown: string;
  #real: string | undefined;

  constructor(root: string, shown: string) {
    this.root = root;
    this.shown = shown;
  }

  #realRoot(): string {
    this.#real ??= realpathSync(this.root);
    return this.#real;
  }

  /** `states/templates/site.j2`, for messages. */
  show(rel: string): string {
    return `${this.shown}/${rel.split(sep).join('/')}`;
  }

  /** `rel` as a path of the tree, or null when nothing is there. Throws for what must be refused. */
  resolve(rel: string, place: SourcePlace = {}): string | null {
    if (isAbsolute(rel)) throw new InputError(`${rel} is an absolute path: paths are relative to ${this.shown}/`, place);
    const path = join(this.root, rel);
    if (relative(this.root, path).split(sep)[0] === '..') throw new InputError(`${rel} is outside ${this.shown}/`, place);
    let real: string;
    try {
      real = realpathSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        // A dangling link that points out of the tree is still one that points out.
        if (isLink(path)) throw new InputError(`${this.show(rel)} is a link to nothing inside ${this.shown}/`, place);
        return null;
      }
      if (code === 'ELOOP') throw new InputError(`${this.show(rel)} is a loop of links`, place);
      throw new InputError(`cannot read ${this.show(rel)}: ${code ?? (err as Error).message}`, place);
    }
    const root = this.#realRoot();
    if (real !== root && !real.startsWith(`${root}${sep}`)) throw new InputError(`${this.show(rel)} resolves outside ${this.shown}/ (a link out of it): refused`, place);
    return real;
  }

  exists(rel: string): boolean {
    return this.resolve(rel) !== null;
  }

  /** The bytes of a regular file of the tree, at most `limit`. */
  read(rel: string, options: { limit?: number; place?: SourcePlace; what?: string } = {}): Buffer {
    const place = options.place ?? {};
    const path = this.resolve(rel, place);
    if (path === null) throw new InputError(`${this.show(rel)} does not exist${options.what ? ` (${options.what})` : ''}`, place);
    const limit = options.limit ?? treeLimits.text;
    // Opened without blocking (a FIFO would wait for a writer), then checked through the handle.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw new InputError(`${this.show(rel)} is a directory, not a file`, place);
      if (!st.isFile()) throw new InputError(`${this.show(rel)} is not a regular file (a device, a FIFO or a socket): refused`, place);
      if (st.size > limit) throw new InputError(`${this.show(rel)} is ${megabytes(st.size)}; at most ${megabytes(limit)} is read`, place);
      const buf = Buffer.alloc(st.size);
      let got = 0;
      while (got < st.size) {
        const n = readSync(fd, buf, got, st.size - got, got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  /** The text of a file of the tree: UTF-8, or an error naming the line where it is not. */
  text(rel: string, options: { limit?: number; place?: SourcePlace; what?: string } = {}): string {
    const bytes = this.read(rel, options);
    if (!isUtf8(bytes)) throw new InputError(`${this.show(rel)} is not UTF-8 text (from line ${firstBadLine(bytes)})`, options.place ?? {});
    return bytes.toString('utf8');
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function megabytes(n: number): string {
  return `${(n / 1024 / 1024).toFixed(n < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

/** The line of the first byte sequence that is not UTF-8. */
function firstBadLine(bytes: Buffer): number {
  let line = 1;
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      if (!isUtf8(bytes.subarray(start, i))) return line;
      line++;
      start = i + 1;
    }
  }
  return line;
}
