// A supervisord program's conf, as brine writes it: /etc/supervisor/conf.d/NAME.conf.
//
// A command given as a string is written as supervisor reads it (`%(program_name)s` works); an
// argv list, `environment` values and `env_file` are quoted and escaped by brine. With `env_file`
// the command runs as `/bin/sh -c 'set -a; . FILE; set +a; exec COMMAND'`, so the program gets the
// file's variables (read as the program's user, at each start).
import { join } from 'node:path';

/** Where Debian's supervisor reads program confs and keeps logs; tests point these elsewhere. */
export const supervisorPaths = {
  confDir: '/etc/supervisor/conf.d',
  logDir: '/var/log/supervisor',
};

export const HEADER = '; managed by brine';

/** What a program's conf says (supervisor.program's arguments, and the release slots'). */
export interface ProgramSpec {
  name: string;
  command: string | string[];
  directory?: string;
  user?: string;
  env_file?: string;
  environment?: Record<string, string>;
  autostart: boolean;
  autorestart: boolean | 'unexpected';
  startsecs: number;
  stopsignal?: string;
  stopwaitsecs?: number;
  stdout_logfile?: string;
  redirect_stderr: boolean;
  numprocs?: number;
  priority?: number;
}


/** Single-quotes a word for sh (and for supervisor's shlex, which splits the command the same way). */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** supervisor expands %(name)s in its values: a literal % is written %%. */
function literal(text: string): string {
  return text.replace(/%/g, '%%');
}

/** The command line written after `command=`. */
export function commandLine(args: Pick<ProgramSpec, 'command' | 'env_file'>): string {
  const command = typeof args.command === 'string' ? args.command : literal(args.command.map(shellWord).join(' '));
  if (args.env_file === undefined) return command;
  const script = `set -a; . ${literal(shellWord(args.env_file))}; set +a; exec ${command}`;
  return `/bin/sh -c ${shellWord(script)}`;
}

/**
 * supervisor reads `environment` as KEY="value",… split by a non-POSIX shlex: quotes are taken
 * off but nothing inside them is escaped, so a value is quoted with whichever quote it lacks.
 */
function environmentValue(value: string): string {
  return value.includes('"') ? `'${literal(value)}'` : `"${literal(value)}"`;
}

export function programConf(args: ProgramSpec): string {
  const lines = [HEADER, `[program:${args.name}]`, `command=${commandLine(args)}`];
  const add = (key: string, value: string | number | boolean | undefined) => {
    if (value !== undefined) lines.push(`${key}=${value}`);
  };
  if (args.numprocs !== undefined && args.numprocs > 1) add('process_name', '%(program_name)s_%(process_num)02d');
  add('numprocs', args.numprocs);
  add('directory', args.directory);
  add('user', args.user);
  if (args.environment && Object.keys(args.environment).length > 0)
    add('environment', Object.entries(args.environment).map(([k, v]) => `${k}=${environmentValue(v)}`).join(','));
  add('autostart', args.autostart);
  add('autorestart', args.autorestart);
  add('startsecs', args.startsecs);
  add('stopsignal', args.stopsignal);
  add('stopwaitsecs', args.stopwaitsecs);
  add('priority', args.priority);
  add('stdout_logfile', logPath(args));
  add('redirect_stderr', args.redirect_stderr);
  return `${lines.join('\n')}\n`;
}

export function confPath(name: string): string {
  return join(supervisorPaths.confDir, `${name}.conf`);
}


/** Where the program's output goes, unless its conf says otherwise. */
export function logPath(spec: Pick<ProgramSpec, 'name' | 'stdout_logfile'>): string {
  return spec.stdout_logfile ?? join(supervisorPaths.logDir, `${spec.name}.log`);
}
