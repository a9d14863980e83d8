// Resolves `-u user[:group]` against the image's /etc/passwd and /etc/group, as Docker
// does, because runc only takes numeric ids.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';

export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
  readonly home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

// The paths are read inside a root that only berth wrote or imported; symlinks planted by
// a container cannot reach here because image roots are mounted read-only.
async function readLines(rootfs: string, file: string): Promise<string[][]> {
  try {
    const text = await readFile(join(rootfs, file), 'utf8');
    return text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

const isNum = (s: string) => /^\d+$/.test(s);

export async function resolveUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  const [userPart = '', groupPart] = (spec || '0').split(':', 2);
  const passwd: PasswdEntry[] = (await readLines(rootfs, 'etc/passwd')).map((f) => ({
    name: f[0] ?? '',
    uid: Number(f[2]),
    gid: Number(f[3]),
    home: f[5] ?? '/',
  }));
  const groups = await readLines(rootfs, 'etc/group');

  let entry: PasswdEntry | undefined;
  let uid: number;
  if (isNum(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry)
      throw new BerthError(
        'USER_NOT_FOUND',
        `Invalid user: no user "${userPart}" in the image's /etc/passwd`,
        { field: 'user' },
      );
    uid = entry.uid;
  }

  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined && groupPart !== '') {
    if (isNum(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((f) => f[0] === groupPart);
      if (!g)
        throw new BerthError(
          'USER_NOT_FOUND',
          `Invalid user: no group "${groupPart}" in the image's /etc/group`,
          { field: 'user' },
        );
      gid = Number(g[2]);
    }
  }
  const name = entry?.name;
  const additionalGids =
    name === undefined
      ? []
      : groups
          .filter((f) => (f[3] ?? '').split(',').includes(name))
          .map((f) => Number(f[2]))
          .filter((g) => g !== gid);
  return { uid, gid, additionalGids, home: entry?.home ?? '/' };
}
