// Arguments Salt's states accept that brine does not read. A Salt tree keeps working: an argument
// that only tunes how Salt does its work (backup copies, log levels, Windows ACLs) is ignored with
// a warning naming it; one whose effect brine does not have, and which would make the result
// differ from what the tree asks for, is an input error saying so. Anything else that is not an
// argument of the function stays an "unknown argument" error, with a suggestion when it looks like
// a typo of a real one.

/** Salt's global state arguments, on any state. */
const GLOBAL_IGNORED = ['reload_modules', 'reload_pillar', 'reload_grains', 'failhard', 'fire_event', 'parallel', 'retry', 'saltenv', '__env__', '__sls__', 'state_output', 'queue'];

/** Per function: arguments ignored with a warning. */
const IGNORED: Record<string, string[]> = {
  'file.managed': ['backup', 'show_changes', 'follow_symlinks', 'skip_verify', 'source_hash', 'source_hash_name', 'keep_source', 'tmp_ext', 'tmp_dir', 'encoding', 'encoding_errors', 'allow_empty', 'dir_mode', 'win_owner', 'win_perms', 'win_deny_perms', 'win_inheritance', 'win_perms_reset', 'selinux'],
  'file.directory': ['follow_symlinks', 'backupname', 'allow_symlink', 'win_owner', 'win_perms', 'win_deny_perms', 'win_inheritance', 'win_perms_reset', 'selinux'],
  'file.symlink': ['backupname', 'win_owner', 'win_perms', 'win_deny_perms', 'win_inheritance', 'atomic', 'disallow_copy_and_unlink', 'inherit_user_and_group', 'follow_symlinks'],
  'file.absent': [],
  'pkg.installed': ['skip_verify', 'skip_suggestions', 'allow_updates', 'normalize', 'ignore_epoch', 'cache_valid_time', 'update_holds', 'resolve_capabilities', 'report_reboot_exit_codes'],
  'pkg.latest': ['skip_verify', 'cache_valid_time', 'report_reboot_exit_codes'],
  'pkg.removed': ['normalize', 'ignore_epoch'],
  'pkg.purged': ['normalize', 'ignore_epoch'],
  'service.running': ['sig', 'no_block', 'timeout', 'init_delay'],
  'service.dead': ['sig', 'no_block', 'timeout', 'init_delay'],
  'cmd.run': ['stateful', 'output_loglevel', 'hide_output', 'use_vt', 'bg', 'ignore_timeout', 'redirect_stderr', 'reset_system_locale', 'prepend_path', 'quiet'],
  'user.present': ['empty_password', 'loginclass', 'unique', 'allow_uid_change', 'allow_gid_change', 'nologinit', 'hash_password', 'enforce_password', 'roomnumber', 'workphone', 'homephone', 'other', 'win_homedrive', 'win_profile', 'win_logonscript', 'win_description'],
  'group.present': ['non_unique'],
  'git.latest': ['https_user', 'https_pass', 'fetch_tags', 'sync_tags', 'update_head', 'output_encoding', 'force_fetch', 'force_clone', 'force_checkout'],
  'cron.present': ['comment'],
};

/** Per function: arguments whose effect brine does not have (an input error, with what to do). */
const UNSUPPORTED: Record<string, Record<string, string>> = {
  'file.managed': {
    create: 'brine always creates the file (use unless: test -e PATH for create: False)',
    contents_pillar: 'use contents: {{ pillar.KEY }} (a secret stays masked)',
    contents_grains: 'use contents: {{ grains.KEY }}',
  },
  'file.directory': {
    recurse: 'brine sets the mode and owner of the directory itself, not of everything in it',
    clean: 'brine does not remove files it does not manage from a directory',
    file_mode: 'brine manages the directory itself, not the files in it',
  },
  'pkg.installed': {
    fromrepo: 'pin the release with an apt preference file (file.managed in /etc/apt/preferences.d)',
    hold: 'brine does not hold packages: give the version to keep it installed',
    reinstall: 'brine does not reinstall a package that is installed',
    sources: 'brine installs packages from apt repositories only',
  },
  'cmd.run': {
    success_retcodes: 'brine counts exit code 0 as success: wrap the command (sh -c "cmd || [ $? -eq 2 ]")',
    umask: 'set it inside the command',
    python_shell: 'brine runs commands without a shell unless shell: true',
  },
  'user.present': {
    optional_groups: 'list the groups in groups: (they must exist)',
    mindays: 'brine does not manage password ageing',
    maxdays: 'brine does not manage password ageing',
    inactdays: 'brine does not manage password ageing',
    warndays: 'brine does not manage password ageing',
    expire: 'brine does not manage account expiry',
  },
  'group.present': {
    addusers: 'list all the group members in members:',
    delusers: 'list all the group members in members:',
  },
  'git.latest': {
    submodules: 'brine does not check out submodules',
    bare: 'brine keeps a working tree',
    mirror: 'brine keeps a working tree',
    branch: 'give the branch in rev:',
    remote: 'brine names the remote origin',
  },
  'service.running': { unmask: 'unmask the unit first (cmd.run: systemctl unmask UNIT, with onlyif)' },
};

export interface SaltArgVerdict {
  ignored: string[];
  unsupported: { key: string; why: string }[];
}

/**
 * The arguments of a `module.function` state that are Salt's and that brine does not read,
 * given the names the function itself knows (those are never ignored).
 */
export function saltArgs(fn: string, args: Record<string, unknown>, known: string[]): SaltArgVerdict {
  const verdict: SaltArgVerdict = { ignored: [], unsupported: [] };
  for (const key of Object.keys(args)) {
    if (known.includes(key)) continue;
    const why = UNSUPPORTED[fn]?.[key];
    if (why) verdict.unsupported.push({ key, why });
    else if (GLOBAL_IGNORED.includes(key) || IGNORED[fn]?.includes(key)) verdict.ignored.push(key);
  }
  return verdict;
}
