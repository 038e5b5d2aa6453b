// Local accounts, read from /etc/passwd and /etc/group right before they are needed (they are tiny;
// a state earlier in the run may just have created the user a later state chowns to).
import { readFile } from 'node:fs/promises';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Where the account databases live; tests point it at a fixture directory. */
export const accountFiles = { passwd: '/etc/passwd', group: '/etc/group' };

async function lines(path: string): Promise<string[][]> {
  const text = await readFile(path, 'utf8');
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

export async function readPasswd(): Promise<PasswdEntry[]> {
  return (await lines(accountFiles.passwd)).map(([name = '', , uid = '', gid = '', gecos = '', home = '', shell = '']) => ({
    name,
    uid: Number(uid),
    gid: Number(gid),
    gecos,
    home,
    shell,
  }));
}

export async function readGroups(): Promise<GroupEntry[]> {
  return (await lines(accountFiles.group)).map(([name = '', , gid = '', members = '']) => ({
    name,
    gid: Number(gid),
    members: members ? members.split(',') : [],
  }));
}

export async function findUser(nameOrUid: string | number): Promise<PasswdEntry | undefined> {
  const all = await readPasswd();
  return all.find((u) => (typeof nameOrUid === 'number' ? u.uid === nameOrUid : u.name === nameOrUid));
}

export async function findGroup(nameOrGid: string | number): Promise<GroupEntry | undefined> {
  const all = await readGroups();
  return all.find((g) => (typeof nameOrGid === 'number' ? g.gid === nameOrGid : g.name === nameOrGid));
}
