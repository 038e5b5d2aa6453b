// The console report: one line per state (result, function, name, duration), the changes of states
// that changed, why a state failed or was skipped, then a summary. Like Salt's highstate output, tighter. Everything is masked.
import type { Change } from '../modules/types.js';
import type { Masker } from '../secret.js';
import type { Reporter, RunEvent, StateResult, StateStatus } from './events.js';

export interface ConsoleOptions {
  write: (text: string) => void;
  masker: Masker;
  color: boolean;
  /** A progress line for the state running now (TTY only). */
  progress: boolean;
  /** Cron: print nothing when nothing changed and nothing failed. */
  quietWhenClean: boolean;
  /** Also say why a state that was already correct needed nothing. */
  verbose: boolean;
}

const MARK: Record<StateStatus, string> = {
  ok: '✓',
  changed: '~',
  'would-change': '?',
  failed: '✗',
  skipped: '-',
  'not-needed': '·',
};

const COLOR: Record<StateStatus, string> = {
  ok: '32',
  changed: '36',
  'would-change': '33',
  failed: '31',
  skipped: '31',
  'not-needed': '90',
};

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
}

function show(value: unknown): string {
  if (value === null || value === undefined) return '∅';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** A name with a newline in it (an ID from a careless template) stays on its line. */
function oneLine(text: string): string {
  return text.replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

export function formatChange(c: Change): string[] {
  if (c.diff !== undefined) return [`${c.what}:`, ...c.diff.split('\n').map((l) => `  ${l}`)];
  if (c.old === undefined && c.new === undefined) return [c.what];
  // A list of lines (what a release did, phase by phase): one a line, under the change's name.
  const lines = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');
  if ((c.old === null || c.old === undefined) && lines(c.new)) return [`${c.what}:`, ...(c.new as string[]).map((l) => `  ${l}`)];
  return [`${c.what}: ${show(c.old)} → ${show(c.new)}`];
}

export class ConsoleReporter implements Reporter {
  readonly #o: ConsoleOptions;
  #buffer: string[] = [];
  #spinner: NodeJS.Timeout | undefined;

  constructor(options: ConsoleOptions) {
    this.#o = options;
  }

  #paint(code: string, text: string): string {
    return this.#o.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  #out(line: string): void {
    const text = this.#o.masker.mask(line);
    if (this.#o.quietWhenClean) this.#buffer.push(text);
    else this.#o.write(`${text}\n`);
  }

  #stopSpinner(): void {
    if (this.#spinner) {
      clearInterval(this.#spinner);
      this.#spinner = undefined;
      this.#o.write('\r\x1b[2K');
    }
  }

  on(event: RunEvent): void {
    switch (event.kind) {
      case 'run-start':
        this.#out(`brine ${event.test ? 'apply --test' : 'apply'} · ${event.env} · ${event.states} states`);
        return;
      case 'state-start': {
        if (!this.#o.progress) return;
        this.#stopSpinner();
        const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
        const t0 = Date.now();
        let i = 0;
        const draw = () =>
          this.#o.write(`\r\x1b[2K  ${frames[i++ % frames.length]} ${event.function} ${this.#o.masker.mask(event.name)} ${seconds(Date.now() - t0)}`);
        // Only states that take a while get a progress line.
        this.#spinner = setInterval(draw, 120);
        this.#spinner.unref();
        return;
      }
      case 'state-result':
        this.#stopSpinner();
        this.#result(event.result);
        return;
      case 'run-end': {
        this.#stopSpinner();
        const s = event.summary;
        const parts = [
          `${s.ok + s.changed} succeeded`,
          `${s.changed} ${s.test ? 'would change' : 'changed'}`,
          `${s.failed} failed`,
        ];
        if (s.skipped) parts.push(`${s.skipped} skipped`);
        // A dry run on a server that lacks packages can only guess what their install scripts do.
        if (s.afterInstall) parts.push(`${s.afterInstall} to be seen once packages are installed`);
        const line = `Summary: ${parts.join(', ')} · ${s.total} states in ${seconds(s.durationMs)}`;
        this.#out(s.failed || s.skipped ? this.#paint('31', line) : s.changed ? this.#paint(s.test ? '33' : '36', line) : this.#paint('32', line));
        if (this.#o.quietWhenClean && (s.changed > 0 || s.failed > 0 || s.skipped > 0)) {
          for (const l of this.#buffer) this.#o.write(`${l}\n`);
        }
        this.#buffer = [];
        return;
      }
      default: {
        const never: never = event;
        throw new Error(`unhandled event ${JSON.stringify(never)}`);
      }
    }
  }

  #result(r: StateResult): void {
    const after = r.afterInstall ? `  ${this.#paint('33', `(after ${r.afterInstall.join(', ')} ${r.afterInstall.length > 1 ? 'are' : 'is'} installed: may differ)`)}` : '';
    const head = `  ${this.#paint(COLOR[r.status], MARK[r.status])} ${r.function.padEnd(18)} ${oneLine(r.name)}  ${this.#paint('90', seconds(r.durationMs))}${after}`;
    // Why a state did nothing fits on its line; why it failed gets lines of its own.
    const inline = r.status === 'not-needed' || (r.status === 'ok' && this.#o.verbose);
    this.#out(inline && r.comment ? `${head}  ${this.#paint('90', `(${r.comment})`)}` : head);
    for (const c of r.changes) for (const l of formatChange(c)) this.#out(`      ${colorDiff(l, this.#o.color)}`);
    if (r.status === 'failed' || r.status === 'skipped')
      for (const l of r.comment.split('\n')) this.#out(`      ${this.#paint('31', l)}`);
  }
}

function colorDiff(line: string, color: boolean): string {
  if (!color) return line;
  const t = line.trimStart();
  if (t.startsWith('+') && !t.startsWith('+++')) return `\x1b[32m${line}\x1b[0m`;
  if (t.startsWith('-') && !t.startsWith('---')) return `\x1b[31m${line}\x1b[0m`;
  return line;
}
