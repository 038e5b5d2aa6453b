// A state result as reporters get it, for the reporter and notifier tests.
import type { StateResult } from '../../agent/report/events.js';

export const result = (id: string, status: StateResult['status'], over: Partial<StateResult> = {}): StateResult => ({
  key: `file.managed:${id}`,
  id,
  function: 'file.managed',
  name: id,
  status,
  changes: [],
  comment: '',
  durationMs: 3,
  file: 'states/base.yaml',
  line: 7,
  ...over,
});
