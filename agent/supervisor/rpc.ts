// supervisord's XML-RPC interface, over its unix socket (/var/run/supervisor.sock on Debian): what
// supervisorctl does, without starting a Python process per call (~130 ms each, more on a busy
// machine) and without waiting where waiting is not wanted (stopProcessGroup(name, false) sends the
// stop signal and returns; supervisord only notices an exit at its next one-second tick).
//
// Only what brine needs of XML-RPC: strings, ints, booleans, arrays and structs, and faults.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';

export type XmlRpcValue = string | number | boolean | XmlRpcValue[] | { [key: string]: XmlRpcValue };

/** A fault supervisord answered with: BAD_NAME, STILL_RUNNING, ALREADY_ADDED… */
export class SupervisorFault extends Error {
  readonly code: number;
  /** The fault's name, the part of faultString before the colon. */
  readonly fault: string;
  constructor(code: number, text: string) {
    super(`supervisord: ${text}`);
    this.name = 'SupervisorFault';
    this.code = code;
    this.fault = text.split(':')[0]!.trim();
  }
}

/** Where the socket is: [unix_http_server] file= in supervisord.conf. */
export const rpcPaths = { conf: '/etc/supervisor/supervisord.conf', socket: '/var/run/supervisor.sock' };

export function socketPath(): string {
  try {
    const conf = readFileSync(rpcPaths.conf, 'utf8');
    const section = /^\[unix_http_server\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(conf)?.[1] ?? '';
    const file = /^\s*file\s*=\s*([^\s;]+)/m.exec(section)?.[1];
    return file ?? rpcPaths.socket;
  } catch {
    return rpcPaths.socket;
  }
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function encode(v: XmlRpcValue): string {
  if (typeof v === 'string') return `<value><string>${escape(v)}</string></value>`;
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === 'number') return `<value><int>${Math.trunc(v)}</int></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(encode).join('')}</data></array></value>`;
  return `<value><struct>${Object.entries(v).map(([k, x]) => `<member><name>${escape(k)}</name>${encode(x)}</member>`).join('')}</struct></value>`;
}

export function encodeCall(method: string, params: XmlRpcValue[]): string {
  return `<?xml version="1.0"?><methodCall><methodName>${escape(method)}</methodName><params>${params.map((p) => `<param>${encode(p)}</param>`).join('')}</params></methodCall>`;
}

const unescape = (s: string) =>
  s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) =>
    e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'amp' ? '&' : e === 'quot' ? '"' : e === 'apos' ? "'" : String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)),
  );

/** Parses a methodResponse: its one value, or throws its fault. */
export function decodeResponse(xml: string): XmlRpcValue {
  const tokens = xml.replace(/<\?xml[^>]*\?>/, '').split(/(<[^>]+>)/).filter((t) => t.trim() !== '' || false);
  let i = 0;
  const peek = () => tokens[i] ?? '';
  const take = (tag?: string) => {
    const t = tokens[i++] ?? '';
    if (tag && t !== tag) throw new Error(`supervisord answered XML-RPC brine cannot read (expected ${tag}, got ${t.slice(0, 40)})`);
    return t;
  };
  const value = (): XmlRpcValue => {
    take('<value>');
    let out: XmlRpcValue;
    const t = peek();
    if (t === '</value>') out = '';
    else if (!t.startsWith('<')) out = unescape(take());
    else {
      const tag = take();
      const name = /^<(\w+)/.exec(tag)?.[1];
      if (tag.endsWith('/>')) out = name === 'array' ? [] : name === 'struct' ? {} : '';
      else if (name === 'array') {
        const items: XmlRpcValue[] = [];
        take('<data>');
        while (peek() === '<value>') items.push(value());
        take('</data>');
        out = items;
      } else if (name === 'struct') {
        const obj: Record<string, XmlRpcValue> = {};
        while (peek() === '<member>') {
          take('<member>');
          take('<name>');
          const key = peek().startsWith('<') ? '' : unescape(take());
          take('</name>');
          obj[key] = value();
          take('</member>');
        }
        out = obj;
      } else {
        const text = peek().startsWith('<') ? '' : unescape(take());
        out = name === 'int' || name === 'i4' || name === 'i8' || name === 'double' ? Number(text) : name === 'boolean' ? text.trim() === '1' : text;
      }
      take(`</${name}>`);
    }
    take('</value>');
    return out;
  };
  take('<methodResponse>');
  if (peek() === '<fault>') {
    take();
    const f = value() as Record<string, XmlRpcValue>;
    throw new SupervisorFault(Number(f.faultCode), String(f.faultString));
  }
  take('<params>');
  take('<param>');
  return value();
}

const TIMEOUT_MS = 30_000;

/** One call to supervisord. A supervisord that is not running is an Error saying so. */
export function call(method: string, params: XmlRpcValue[] = [], socket = socketPath(), timeoutMs = TIMEOUT_MS): Promise<XmlRpcValue> {
  const body = encodeCall(method, params);
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, path: '/RPC2', method: 'POST', agent: false, timeout: timeoutMs, headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`supervisord answered ${method} with HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          try {
            resolve(decodeResponse(text));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`supervisord did not answer ${method} within ${timeoutMs / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new Error(`supervisord is not running (no one answers on ${socket})`) : err),
    );
    req.end(body);
  });
}

export interface ProcessInfo {
  name: string;
  group: string;
  statename: string;
  description: string;
  pid: number;
  /** When it was last started, in seconds since the epoch (0: never). */
  start: number;
  logfile: string;
}

/** What brine asks supervisord; tests replace it. */
export interface Supervisord {
  processes(): Promise<ProcessInfo[]>;
  /** Reads the confs again (supervisorctl reread): [added, changed, removed] group names. */
  reread(): Promise<{ added: string[]; changed: string[]; removed: string[] }>;
  /** Adds a group from its conf; with autostart, supervisord starts it at once. */
  add(group: string): Promise<void>;
  /** Sends the group its stop signal; with wait, returns once its processes have stopped (within timeoutMs). */
  stop(group: string, wait: boolean, timeoutMs?: number): Promise<void>;
  /** Removes a stopped group. */
  remove(group: string): Promise<void>;
}

export const supervisord: Supervisord & { socket?: string } = {
  async processes() {
    return ((await call('supervisor.getAllProcessInfo', [], supervisord.socket)) as unknown as ProcessInfo[]).map((p) => ({
      name: String(p.name),
      group: String(p.group),
      statename: String(p.statename),
      description: String(p.description),
      pid: Number(p.pid),
      start: Number(p.start),
      logfile: String(p.logfile),
    }));
  },
  async reread() {
    const [[added = [], changed = [], removed = []] = []] = (await call('supervisor.reloadConfig', [], supervisord.socket)) as string[][][];
    return { added, changed, removed };
  },
  async add(group) {
    await call('supervisor.addProcessGroup', [group], supervisord.socket);
  },
  async stop(group, wait, timeoutMs) {
    await call('supervisor.stopProcessGroup', [group, wait], supervisord.socket, timeoutMs);
  },
  async remove(group) {
    await call('supervisor.removeProcessGroup', [group], supervisord.socket);
  },
};
