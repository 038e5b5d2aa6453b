// The systemd journal, through `logger --journald` (one process per entry: the journal's native
// socket is a unix datagram socket, which Node cannot open). Entries carry structured fields, so
// `journalctl -t agent BRINE_EVENT=run-end` and `agent history` can find runs and their results.
import { existsSync } from 'node:fs';
import { execa } from 'execa';

export const JOURNAL_IDENTIFIER = 'agent';
const SOCKET = '/run/systemd/journal/socket';

export type JournalFields = Record<string, string | number | boolean | undefined>;

/** Field names are upper case letters, digits and underscores; values one line each. */
function entryText(fields: JournalFields): string {
  const lines = [`SYSLOG_IDENTIFIER=${JOURNAL_IDENTIFIER}`];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const value = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
    lines.push(`${k}=${value.replace(/\r?\n/g, ' ⏎ ')}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface Journal {
  /** False where there is no journal (a laptop running `agent validate`). */
  readonly available: boolean;
  write(entries: JournalFields[]): Promise<void>;
  read(matches: string[], options?: { last?: number }): Promise<Record<string, string>[]>;
}

export function systemJournal(socket = SOCKET): Journal {
  const available = existsSync(socket);
  return {
    available,
    async write(entries) {
      if (!available) return;
      const send = async (e: JournalFields) => {
        const r = await execa('logger', ['--journald'], { input: entryText(e), reject: false, timeout: 10_000 });
        if (r.exitCode !== 0) throw new Error(`logger --journald failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
      };
      // The first and last entries (run start, run end) in order; those between a few at a time,
      // since each is a short-lived process.
      const [first, ...rest] = entries;
      const last = rest.pop();
      if (first) await send(first);
      const queue = [...rest];
      const worker = async () => {
        for (let e = queue.shift(); e; e = queue.shift()) await send(e);
      };
      await Promise.all(Array.from({ length: Math.min(6, queue.length) }, worker));
      if (last) await send(last);
    },
    async read(matches, options = {}) {
      const args = ['-t', JOURNAL_IDENTIFIER, '-o', 'json', '--no-pager', ...(options.last ? ['-n', String(options.last)] : []), ...matches];
      const r = await execa('journalctl', args, { reject: false, timeout: 30_000 });
      if (r.exitCode !== 0) throw new Error(`journalctl failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
      return String(r.stdout)
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Record<string, string>);
    },
  };
}
