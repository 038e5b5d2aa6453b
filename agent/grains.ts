// Host facts for templates (Salt's grains), read once per run.
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Grains {
  id: string;
  host: string;
  fqdn: string;
  os: string;
  os_family: string;
  osrelease: string;
  oscodename: string;
  cpus: number;
  mem_total: number;
  arch: string;
}

function osRelease(): Record<string, string> {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    return Object.fromEntries(
      text
        .split('\n')
        .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1]!, m[2]!.replace(/^"(.*)"$/, '$1')]),
    );
  } catch {
    return {};
  }
}

export function readGrains(): Grains {
  const rel = osRelease();
  const host = os.hostname();
  return {
    id: host,
    host: host.split('.')[0]!,
    fqdn: host,
    os: rel.NAME?.split(' ')[0] ?? 'Linux',
    os_family: rel.ID_LIKE?.includes('debian') || rel.ID === 'debian' ? 'Debian' : (rel.ID ?? 'unknown'),
    osrelease: rel.VERSION_ID ?? '',
    oscodename: rel.VERSION_CODENAME ?? '',
    cpus: os.cpus().length,
    mem_total: Math.round(os.totalmem() / 1024 / 1024),
    arch: os.arch(),
  };
}
