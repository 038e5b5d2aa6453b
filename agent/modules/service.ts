// service.running / service.dead / service.enabled — systemd units
//
//   nginx:
//     service.running:
//       - enable: true
//       - reload: true            # a watched change reloads instead of restarting
//       - watch:
//         - file: nginx-site-app
//   apache2:
//     service.dead:
//       - enable: false
//   fstrim.timer:
//     service.enabled: []
//
// A name without a unit suffix means `.service`. The state of every unit is read once per run
// (one `systemctl list-units` and one `systemctl list-unit-files`); a unit missing from those lists
// (installed by an earlier state, an alias, a template instance) is read on its own with
// `systemctl show`. Any change through systemctl forgets what was read.
import { Type } from '@sinclair/typebox';
import { displayCommand, type RunResult } from '../exec.js';
import { stateFunction, type Change, type Context, type StateModule } from './types.js';

const UNIT_TYPES = ['service', 'socket', 'device', 'mount', 'automount', 'swap', 'target', 'path', 'timer', 'slice', 'scope'];

const UnitName = Type.String({ pattern: '^[A-Za-z0-9:_.@\\\\][A-Za-z0-9:_.@\\\\-]*$', description: 'a systemd unit name' });

/** `nginx` → `nginx.service`; `fstrim.timer` and `php8.2-fpm.service` stay as they are. */
export function unitName(name: string): string {
  const suffix = name.slice(name.lastIndexOf('.') + 1);
  return name.includes('.') && UNIT_TYPES.includes(suffix) ? name : `${name}.service`;
}

// ---------------------------------------------------------------------------------------------
// Facts

/** What the state functions need to know about one unit. */
export interface UnitNow {
  unit: string;
  exists: boolean;
  /** systemd's ActiveState: active, inactive, failed, activating… */
  active: string;
  /** systemd's UnitFileState: enabled, disabled, static, masked… ('' when it has none) */
  enabled: string;
}

export function parseShow(stdout: string): Record<string, string> {
  const props: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return props;
}

async function showUnit(unit: string, ctx: Context): Promise<UnitNow> {
  const result = await ctx.runner.run(['systemctl', 'show', '--property=Id,ActiveState,UnitFileState,LoadState', unit]);
  const props = parseShow(result.stdout);
  return {
    unit,
    exists: props.LoadState !== undefined && props.LoadState !== 'not-found',
    active: props.ActiveState ?? 'inactive',
    enabled: props.UnitFileState ?? '',
  };
}

/**
 * One `systemctl show` per unit, right before it is needed: measured on a test server, 6–15 ms,
 * where listing every unit file of the system (`list-unit-files`) took 280 ms — more than all the
 * service states of the reference stack together.
 */
async function readUnit(unit: string, ctx: Context): Promise<UnitNow> {
  return showUnit(unit, ctx);
}

function isActive(active: string): boolean {
  return active === 'active' || active === 'reloading';
}

// `systemctl enable` can change only these; static, indirect and generated units are started by
// something else, and there is nothing to enable or disable.
const ENABLED = new Set(['enabled', 'enabled-runtime']);
const ENABLEABLE = new Set(['disabled', 'masked', 'masked-runtime', 'linked', 'linked-runtime']);

function enableChange(now: UnitNow, enable: boolean | undefined): Change | null {
  if (enable === undefined) return null;
  // A unit that does not exist yet (its file comes from an earlier state) is inactive and
  // disabled: saying so lets --test predict what apply will report once the file is there.
  if (!now.exists) return enable ? { what: 'enabled', old: 'disabled', new: 'enabled' } : null;
  if (enable && ENABLEABLE.has(now.enabled)) return { what: 'enabled', old: now.enabled, new: 'enabled' };
  if (!enable && ENABLED.has(now.enabled)) return { what: 'enabled', old: now.enabled, new: 'disabled' };
  return null;
}

function describe(now: UnitNow): string {
  const enabled = now.enabled ? `, ${now.enabled}` : '';
  return `${now.unit} is ${now.active}${enabled}`;
}

// ---------------------------------------------------------------------------------------------
// Changes


function mustExist(now: UnitNow): void {
  if (!now.exists) throw new Error(`unit ${now.unit} does not exist (is its package installed?)`);
}

async function systemctl(verb: string, unit: string, ctx: Context): Promise<void> {
  try {
    await ctx.runner.run(['systemctl', verb, unit]);
  } finally {
  }
}

/** A unit file edited on disk is used only after a daemon-reload. */
async function daemonReloadIfNeeded(unit: string, ctx: Context): Promise<void> {
  const result = await ctx.runner.run(['systemctl', 'show', '--property=NeedDaemonReload', '--value', unit]);
  if (result.stdout.trim() !== 'yes') return;
  try {
    await ctx.runner.run(['systemctl', 'daemon-reload']);
  } finally {
  }
}

/**
 * start / restart / reload, then make sure the unit is active: a service whose process dies right
 * after it was started fails the state with the last lines of its journal.
 */
async function startLike(verb: 'start' | 'restart' | 'reload', unit: string, ctx: Context): Promise<void> {
  await daemonReloadIfNeeded(unit, ctx);
  const argv = ['systemctl', verb, unit];
  let result: RunResult;
  try {
    result = await ctx.runner.run(argv, { allowFailure: true });
  } finally {
  }
  const now = await showUnit(unit, ctx);
  if (result.code === 0 && isActive(now.active)) return;
  // The journal only explains; failing to read it must not hide the failure itself.
  const journal = await ctx.runner
    .run(['journalctl', '-u', unit, '-n', '10', '--no-pager'], { allowFailure: true })
    .catch(() => ({ stdout: '' }));
  const shown = `\`${displayCommand(argv)}\``;
  const why = result.code !== 0 ? `${shown} exited ${result.code}` : `it is ${now.active} after ${shown}`;
  const details = [result.stderr.trim(), journal.stdout.trim()].filter(Boolean).join('\n');
  throw new Error(ctx.masker.mask(`${unit} did not ${verb === 'reload' ? 'reload' : 'start'}: ${why}${details ? `\n${details}` : ''}`));
}

async function applyEnable(now: UnitNow, enable: boolean | undefined, ctx: Context): Promise<void> {
  const change = enableChange(now, enable);
  if (!change) return;
  if (enable && now.enabled.startsWith('masked'))
    throw new Error(`${now.unit} is masked; unmask it first (systemctl unmask ${now.unit})`);
  await systemctl(enable ? 'enable' : 'disable', now.unit, ctx);
}

// ---------------------------------------------------------------------------------------------
// service.running

const RunningArgs = Type.Object(
  {
    name: UnitName,
    enable: Type.Optional(Type.Boolean()),
    /** What `watch` does: reload instead of restart. */
    reload: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

const running = stateFunction(RunningArgs, {
  async check(args, ctx): Promise<UnitNow> {
    return readUnit(unitName(args.name), ctx);
  },
  plan(now, args) {
    const changes: Change[] = [];
    if (!now.exists || !isActive(now.active)) changes.push({ what: 'active', old: now.exists ? now.active : 'inactive', new: 'active' });
    const enable = enableChange(now, args.enable);
    if (enable) changes.push(enable);
    return changes.length ? { changes } : { changes, reason: describe(now) };
  },
  async apply(args, _plan, now, ctx) {
    mustExist(now);
    const start = !isActive(now.active);
    if (start) {
      if (now.enabled.startsWith('masked')) throw new Error(`${now.unit} is masked; unmask it first (systemctl unmask ${now.unit})`);
      await startLike('start', now.unit, ctx);
    }
    // Enabled only once it started: a unit that cannot start is not also set to start at boot.
    await applyEnable(now, args.enable, ctx);
    // Just started: it runs with the new configuration already.
    return start ? 'restarted' : undefined;
  },
  async refresh(args, ctx) {
    const unit = unitName(args.name);
    if (args.reload) {
      await startLike('reload', unit, ctx);
      return 'reloaded';
    }
    await startLike('restart', unit, ctx);
    return 'restarted';
  },
});

// ---------------------------------------------------------------------------------------------
// service.dead

const DeadArgs = Type.Object({ name: UnitName, enable: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

const dead = stateFunction(DeadArgs, {
  async check(args, ctx): Promise<UnitNow> {
    return readUnit(unitName(args.name), ctx);
  },
  plan(now, args) {
    // A unit that does not exist is not running: nothing to do, as in Salt.
    if (!now.exists) return { changes: [], reason: `${now.unit} does not exist` };
    const changes: Change[] = [];
    if (now.active !== 'inactive' && now.active !== 'failed') changes.push({ what: 'active', old: now.active, new: 'inactive' });
    const enable = enableChange(now, args.enable);
    if (enable) changes.push(enable);
    return changes.length ? { changes } : { changes, reason: describe(now) };
  },
  async apply(args, _plan, now, ctx) {
    if (now.active !== 'inactive' && now.active !== 'failed') await systemctl('stop', now.unit, ctx);
    await applyEnable(now, args.enable, ctx);
  },
});

// ---------------------------------------------------------------------------------------------
// service.enabled

const EnabledArgs = Type.Object({ name: UnitName }, { additionalProperties: false });

const enabled = stateFunction(EnabledArgs, {
  async check(args, ctx): Promise<UnitNow> {
    return readUnit(unitName(args.name), ctx);
  },
  plan(now) {
    const change = enableChange(now, true);
    return change ? { changes: [change] } : { changes: [], reason: describe(now) };
  },
  async apply(_args, _plan, now, ctx) {
    mustExist(now);
    await applyEnable(now, true, ctx);
  },
});

export const serviceModule: StateModule = {
  name: 'service',
  functions: { running, dead, enabled },
};
