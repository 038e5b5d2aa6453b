// Host facts for tests that render templates: a web server of a small app.
import type { Grains } from '../../agent/grains.js';

export const GRAINS: Grains = {
  id: 'web1.example.com',
  host: 'web1',
  fqdn: 'web1.example.com',
  os: 'Debian',
  os_family: 'Debian',
  osrelease: '12',
  oscodename: 'bookworm',
  cpus: 2,
  mem_total: 2048,
  arch: 'x64',
};
