// Host facts for templates (Salt's grains), read once per run, with Salt's names — `os`,
// `os_family`, `osrelease`, `oscodename`, `lsb_distrib_codename`, `num_cpus`, `cpuarch`,
// `mem_total`, `init`, `ip_interfaces`, `ipv4`, `kernel`… — beside brine's own (`cpus`, `arch`).
//
// Custom grains a server carries for itself (Salt's /etc/salt/grains) are a YAML mapping in
// /etc/brine/grains — `roles: [web, db]`, `datacenter: fra1` — which `bootstrap.sh --grain` writes.
// They are read over the core grains, as in Salt. The file lives outside the synced tree, so a
// bootstrap or a sync never removes it.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { InputError } from './errors.js';
import { isMap, parseYaml } from './yamlfile.js';

export const CUSTOM_GRAINS_FILE = '/etc/brine/grains';

export interface Grains {
  id: string;
  host: string;
  fqdn: string;
  domain: string;
  nodename: string;
  localhost: string;
  os: string;
  os_family: string;
  osfullname: string;
  osrelease: string;
  osrelease_info: number[];
  osmajorrelease: number;
  osfinger: string;
  oscodename: string;
  lsb_distrib_id: string;
  lsb_distrib_codename: string;
  lsb_distrib_release: string;
  lsb_distrib_description: string;
  kernel: string;
  kernelrelease: string;
  kernelversion: string;
  init: string;
  num_cpus: number;
  cpus: number;
  cpuarch: string;
  arch: string;
  osarch: string;
  mem_total: number;
  ip_interfaces: Record<string, string[]>;
  ip4_interfaces: Record<string, string[]>;
  ip6_interfaces: Record<string, string[]>;
  ipv4: string[];
  ipv6: string[];
  machine_id: string;
  shell: string;
  path: string;
  /** Custom grains (roles, environment…), and anything else a template may ask for. */
  [custom: string]: unknown;
}

function osRelease(): Record<string, string> {
  try {
    return keyValues(readFileSync('/etc/os-release', 'utf8'));
  } catch {
    return {};
  }
}

function keyValues(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!.replace(/^"(.*)"$/, '$1')]),
  );
}

const read = (path: string): string => {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
};

/** Node's arch as Salt (Python's platform.machine) and dpkg name it. */
const MACHINE: Record<string, [string, string]> = { x64: ['x86_64', 'amd64'], arm64: ['aarch64', 'arm64'], arm: ['armv7l', 'armhf'], ia32: ['i686', 'i386'], ppc64: ['ppc64le', 'ppc64el'], s390x: ['s390x', 's390x'] };

/** BRINE_GRAINS names another file (bootstrap validates a tree with the grains it will write). */
export function readGrains(customFile = process.env.BRINE_GRAINS ?? CUSTOM_GRAINS_FILE): Grains {
  const rel = osRelease();
  const hostname = os.hostname();
  const short = hostname.split('.')[0]!;
  const id = rel.ID ?? 'linux';
  const osName = id === 'debian' ? 'Debian' : id === 'ubuntu' ? 'Ubuntu' : (rel.NAME?.split(' ')[0] ?? 'Linux');
  const release = rel.VERSION_ID ?? '';
  const info = release.split('.').filter(Boolean).map(Number);
  const interfaces = os.networkInterfaces();
  const ifaces = (family: 'IPv4' | 'IPv6' | undefined) =>
    Object.fromEntries(Object.entries(interfaces).map(([name, addrs]) => [name, (addrs ?? []).filter((a) => !family || a.family === family).map((a) => a.address)]));
  const all4 = Object.values(ifaces('IPv4')).flat();
  const all6 = Object.values(ifaces('IPv6')).flat();
  const [cpuarch, osarch] = MACHINE[os.arch()] ?? [os.arch(), os.arch()];
  const lsb = keyValues(read('/etc/lsb-release'));
  const core: Grains = {
    id: hostname,
    host: short,
    fqdn: hostname,
    domain: hostname.includes('.') ? hostname.slice(short.length + 1) : '',
    nodename: hostname,
    localhost: hostname,
    os: osName,
    os_family: rel.ID_LIKE?.includes('debian') || id === 'debian' ? 'Debian' : osName,
    osfullname: lsb.DISTRIB_ID ?? osName,
    osrelease: release,
    osrelease_info: info,
    osmajorrelease: info[0] ?? 0,
    osfinger: `${rel.NAME ?? osName}-${release}`.replace(/^Debian GNU\/Linux/, 'Debian'),
    oscodename: rel.VERSION_CODENAME ?? '',
    lsb_distrib_id: lsb.DISTRIB_ID ?? osName,
    lsb_distrib_codename: lsb.DISTRIB_CODENAME ?? rel.VERSION_CODENAME ?? '',
    lsb_distrib_release: lsb.DISTRIB_RELEASE ?? release,
    lsb_distrib_description: lsb.DISTRIB_DESCRIPTION ?? rel.PRETTY_NAME ?? '',
    kernel: os.type(),
    kernelrelease: os.release(),
    kernelversion: os.version(),
    init: existsSync('/run/systemd/system') ? 'systemd' : 'unknown',
    num_cpus: os.cpus().length,
    cpus: os.cpus().length,
    cpuarch,
    arch: os.arch(),
    osarch,
    mem_total: Math.round(os.totalmem() / 1024 / 1024),
    ip_interfaces: ifaces(undefined),
    ip4_interfaces: ifaces('IPv4'),
    ip6_interfaces: ifaces('IPv6'),
    ipv4: all4,
    ipv6: all6,
    machine_id: read('/etc/machine-id'),
    shell: '/bin/sh',
    path: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
  };
  return { ...core, ...customGrains(customFile) };
}

/** The server's own grains: a YAML mapping; a broken file is an input error at its line. */
export function customGrains(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  const y = parseYaml(readFileSync(file, 'utf8'), file);
  const root = y.doc.contents;
  if (root === null) return {};
  if (!isMap(root)) throw new InputError('custom grains must be a mapping, as in "roles: [web, db]"', { file, line: 1 });
  return y.doc.toJS() as Record<string, unknown>;
}
