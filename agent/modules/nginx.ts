// nginx.site / nginx.site_disabled — sites in /etc/nginx/sites-available, enabled by a link in
// /etc/nginx/sites-enabled (Debian's layout)
//
//   app:                                  # /etc/nginx/sites-available/app
//     nginx.site:
//       - source: templates/nginx-app.conf.j2
//       - template: jinja
//       - context:
//           port: 8000
//       - require:
//         - pkg: nginx
//   nginx-default-site:                   # Debian's welcome page on port 80
//     nginx.site_disabled:
//       - name: default
//       - require:
//         - pkg: nginx
//   nginx:
//     service.running:
//       - enable: true
//       - require:
//         - nginx: app
//         - nginx: nginx-default-site
//
// `enabled: false` keeps a site's file but removes its link. `nginx.site_disabled` removes only the
// link, so a site whose file belongs to a package (Debian's `default`) stays as the package left it.
//
// A change reaches nginx only once the whole configuration passed `nginx -t` with it; refused, the
// old file and link are put back (agent/nginx/live.ts). `watch` tests the configuration and reloads.
import { Type } from '@sinclair/typebox';
import * as fs from 'node:fs/promises';
import { join, resolve } from "node:path";
import { contentArgs, contentProblems, wantedText as contentOf } from '../content.js';
import { clearPending, isPending, lstatPath, markPending, removeDurably, symlinkAtomic, unifiedDiff, wantedMode, writeFileAtomic, type PathFacts } from '../atomic.js';
import { changeLive, reloadIfRunning, snapshot, testConfig } from '../nginx/live.js';
import { formatMode, pathClaim } from './common.js';
import { stateFunction, type Change, type StateModule } from './types.js';

/** Where Debian's nginx keeps its sites; tests point these at a scratch directory. */
export const nginxPaths = {
  available: '/etc/nginx/sites-available',
  enabled: '/etc/nginx/sites-enabled',
};


const SiteName = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$',
  maxLength: 200,
  description: 'a site name (a file name in sites-available)',
});

// ---------------------------------------------------------------------------------------------
// What is on disk


function sitePaths(name: string): { file: string; link: string } {
  return { file: join(nginxPaths.available, name), link: join(nginxPaths.enabled, name) };
}

/** A link in sites-enabled that leads to the site's file, written absolute or relative. */
function linksTo(link: PathFacts | null, file: string): boolean {
  return link?.kind === 'symlink' && resolve(nginxPaths.enabled, link.linkTarget!) === file;
}

function describeEntry(entry: PathFacts): string {
  return entry.kind === 'symlink' ? `link to ${entry.linkTarget}` : `a ${entry.kind}`;
}

async function requireDirectory(dir: string): Promise<void> {
  const st = await lstatPath(dir);
  if (st?.kind !== 'directory') throw new Error(`${dir} does not exist (is nginx installed? require pkg: nginx)`);
}

// ---------------------------------------------------------------------------------------------
// nginx.site

const SiteArgs = Type.Object(
  {
    name: SiteName,
    ...contentArgs,
    /** false keeps the file but removes the link in sites-enabled. */
    enabled: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);

interface SiteCurrent {
  file: PathFacts | null;
  content: string | null;
  wantedContent: string;
  wantedMode: number;
  link: PathFacts | null;
  /** A run was killed after changing the site and before nginx -t and the reload. */
  interrupted: boolean;
}


const site = stateFunction(SiteArgs, {
  claims: (args) => [pathClaim(sitePaths(args.name).file), pathClaim(sitePaths(args.name).link)],
  prepare(args, ctx) {
    contentOf(args, ctx);
  },
  validate(args) {
    return contentProblems(args, 'a site needs its configuration: give source (a file or template) or contents');
  },
  async check(args, ctx): Promise<SiteCurrent> {
    const paths = sitePaths(args.name);
    const file = await lstatPath(paths.file);
    const content = file?.kind === 'file' ? await fs.readFile(paths.file, 'utf8') : null;
    const wantedContent = contentOf(args, ctx)!;
    return {
      file,
      content,
      wantedContent,
      wantedMode: wantedMode(ctx.masker.contains(wantedContent), file?.kind === 'file' ? file.mode : null),
      link: await lstatPath(paths.link),
      interrupted: await isPending(`nginx-site-${args.name}`),
    };
  },
  plan(current, args) {
    const paths = sitePaths(args.name);
    const { file, content, wantedContent, link } = current;
    const changes: Change[] = [];
    if (file && file.kind !== 'file') changes.push({ what: 'type', old: file.kind, new: 'file' });
    else if (!file) changes.push({ what: 'file', old: null, new: 'created', diff: unifiedDiff(paths.file, '', wantedContent) });
    else {
      if (content !== wantedContent) changes.push({ what: 'content', diff: unifiedDiff(paths.file, content ?? '', wantedContent, { hideOld: !(file.mode & 0o004) }) });
      if (file.mode !== current.wantedMode) changes.push({ what: 'mode', old: formatMode(file.mode), new: formatMode(current.wantedMode) });
    }
    const linked = linksTo(link, paths.file);
    if (args.enabled && !linked) changes.push({ what: 'enabled', old: link ? describeEntry(link) : false, new: true });
    if (!args.enabled && link) changes.push({ what: 'enabled', old: linked ? true : describeEntry(link), new: false });
    if (current.interrupted) changes.push({ what: 'reload', old: 'interrupted', new: 'tested and reloaded' });
    return changes.length ? { changes } : { changes, reason: `site ${args.name} is in place and ${args.enabled ? 'enabled' : 'disabled'}` };
  },
  async apply(args, plan, current, ctx) {
    const paths = sitePaths(args.name);
    await requireDirectory(nginxPaths.available);
    await requireDirectory(nginxPaths.enabled);
    if (current.file && current.file.kind !== 'file')
      throw new Error(`${paths.file} is a ${current.file.kind}, not a file; remove it first`);
    if (current.link?.kind === 'directory') throw new Error(`${paths.link} is a directory; remove it first`);

    const writes = plan.changes.some((c) => c.what === 'file' || c.what === 'content');
    const relinks = plan.changes.some((c) => c.what === 'enabled');
    const owner = { mode: current.wantedMode, uid: current.file?.uid, gid: current.file?.gid };
    const writeFile = async () => {
      const restore = await snapshot(paths.file);
      await writeFileAtomic(paths.file, current.wantedContent, owner);
      return restore;
    };
    const setLink = async () => {
      const restore = await snapshot(paths.link);
      if (args.enabled) await symlinkAtomic(paths.file, paths.link);
      else await removeDurably(paths.link);
      return restore;
    };

    // A disabled site's file is not part of nginx's configuration: it is written without a test.
    if (!args.enabled && writes) await writeFile();
    else if (!writes && current.file && current.file.mode !== current.wantedMode) await fs.chmod(paths.file, current.wantedMode);
    const live = [...(args.enabled && writes ? [writeFile] : []), ...(relinks ? [setLink] : [])];
    if (live.length === 0 && !current.interrupted) return;
    const refused = !current.file
      ? `site ${args.name} was not installed`
      : `the old site ${args.name} is back in place and nginx still runs it`;
    // changeLive tests the whole config and reloads nginx: what a watch would do. Until it is
    // done, a marker says so, for the next run if this one is killed in between.
    const marker = `nginx-site-${args.name}`;
    await markPending(marker);
    let reloaded: boolean;
    try {
      reloaded = await changeLive(ctx, live, refused);
    } catch (err) {
      // The old files are back (or the error says they are not): nothing is half-done.
      await clearPending(marker);
      throw err;
    }
    await clearPending(marker);
    // What the run did is all in its report, the test and the reload included.
    const done: Change = reloaded
      ? { what: 'nginx', old: null, new: 'nginx -t passed, nginx reloaded' }
      : { what: 'nginx', old: null, new: 'nginx -t passed (nginx is not running: it reads the site when it starts)' };
    return { restarted: true, changes: [...plan.changes, done] };
  },
  async refresh(_args, ctx) {
    const problem = await testConfig(ctx);
    if (problem !== null) throw new Error(ctx.masker.mask(`nginx -t failed; nginx was not reloaded:\n${problem}`));
    return (await reloadIfRunning(ctx)) ? 'reloaded' : 'not reloaded (nginx is not running)';
  },
});

// ---------------------------------------------------------------------------------------------
// nginx.site_disabled

const DisabledArgs = Type.Object({ name: SiteName }, { additionalProperties: false });

const siteDisabled = stateFunction(DisabledArgs, {
  claims: (args) => [pathClaim(sitePaths(args.name).link)],
  async check(args): Promise<PathFacts | null> {
    return lstatPath(sitePaths(args.name).link);
  },
  plan(link, args) {
    if (!link) return { changes: [], reason: `site ${args.name} is not enabled` };
    const linked = linksTo(link, sitePaths(args.name).file);
    return { changes: [{ what: 'enabled', old: linked ? true : describeEntry(link), new: false }] };
  },
  async apply(args, _plan, link, ctx) {
    const path = sitePaths(args.name).link;
    if (link?.kind === 'directory') throw new Error(`${path} is a directory; remove it first`);
    const remove = async () => {
      const restore = await snapshot(path);
      await removeDurably(path);
      return restore;
    };
    await changeLive(ctx, [remove], `site ${args.name} is enabled again`);
  },
});

export const nginxModule: StateModule = {
  name: 'nginx',
  functions: { site, site_disabled: siteDisabled },
};
