// `--json`: the whole run as one JSON document on stdout (masked), printed when the run ends.
import type { Masker } from '../secret.js';
import type { Reporter, RunEvent } from './events.js';

export class JsonReporter implements Reporter {
  readonly #write: (text: string) => void;
  readonly #masker: Masker;

  constructor(write: (text: string) => void, masker: Masker) {
    this.#write = write;
    this.#masker = masker;
  }

  on(event: RunEvent): void {
    switch (event.kind) {
      case 'run-start':
      case 'state-start':
      case 'state-result':
        return;
      case 'run-end':
        this.#write(`${this.#masker.mask(JSON.stringify({ summary: event.summary, states: event.results }, null, 2))}\n`);
        return;
      default: {
        const never: never = event;
        throw new Error(`unhandled event ${JSON.stringify(never)}`);
      }
    }
  }
}
