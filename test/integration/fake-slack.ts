// A stand-in for Slack on the host's loopback (test servers share the host's network): it
// records every message, as @slack/webhook sent it, and can answer 500 or never answer. It also
// stands in for a generic webhook (its JSON bodies and headers are recorded the same way).
import type { Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  userAgent: string;
  contentType: string;
  headers: IncomingMessage['headers'];
  body: { text: string; blocks: { type: string; text?: { text: string }; elements?: { text: string }[] }[]; username?: string };
  raw: string;
}

export type Mode = 'ok' | 'error' | 'hang';

export async function fakeSlack(t: Test) {
  const received: Received[] = [];
  const held: ServerResponse[] = [];
  let mode: Mode = 'ok';
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      if (mode === 'hang') return void held.push(res);
      if (mode === 'error') return void res.writeHead(500).end('internal_error');
      received.push({ path: req.url ?? '', userAgent: String(req.headers['user-agent']), contentType: String(req.headers['content-type']), headers: req.headers, body: JSON.parse(raw), raw });
      res.writeHead(200, { 'content-type': 'text/html' }).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    server.close();
  });
  return {
    port: (server.address() as AddressInfo).port,
    received,
    set mode(m: Mode) {
      mode = m;
    },
  };
}

/** All the text a message shows: the fallback, the sections, the context line. */
export const text = (r: Received) => [r.body.text, ...(r.body.blocks ?? []).flatMap((b) => [b.text?.text ?? '', ...(b.elements ?? []).map((e) => e.text)])].join('\n');

