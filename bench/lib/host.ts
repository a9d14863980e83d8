// Looking for, and removing, what containers leave on the host: runc state, cgroup
// directories, monitor processes. Used between samples (to check) and at teardown (to sweep).
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.ts';

export const CGROUP_ROOT = '/sys/fs/cgroup';
export const RUNC = '/usr/sbin/runc';
// The cgroup parent of every scenario's berthd and of bare runc's containers.
export const BENCH_CGROUP = 'berth-bench';
// The CPU group the bench runs the CLI processes it times in (sysstat.ts CpuGroup).
export const CLIENT_CGROUP = 'berth-bench-clients';

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// Every directory named `name` at the top of any cgroup hierarchy (v1 controllers, the
// systemd named hierarchy, the v2 unified mount, or the v2 root itself).
export function cgroupDirs(name: string): string[] {
  const out: string[] = [];
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) {
    const p = join(CGROUP_ROOT, name);
    if (isDir(p)) out.push(p);
    return out;
  }
  for (const h of readdirSync(CGROUP_ROOT)) {
    const p = join(CGROUP_ROOT, h, name);
    if (isDir(p)) out.push(p);
  }
  return out;
}

function childGroups(dir: string): string[] {
  try {
    return readdirSync(dir)
      .map((e) => join(dir, e))
      .filter(isDir);
  } catch {
    return [];
  }
}

// Container cgroups still present under a parent (the parent itself is expected to stay
// between runs: runtimes create it and never remove it).
export function cgroupLeftovers(parent: string): string[] {
  return cgroupDirs(parent).flatMap(childGroups);
}

// Removes the parent groups, deepest first. rmdir only succeeds on a group with no tasks,
// so nothing alive is touched; returns what could not be removed.
export function sweepCgroups(parent: string): string[] {
  const left: string[] = [];
  const remove = (d: string): void => {
    for (const c of childGroups(d)) remove(c);
    try {
      rmdirSync(d);
    } catch {
      left.push(d);
    }
  };
  for (const d of cgroupDirs(parent)) remove(d);
  return left;
}

export function runcStateLeftovers(runcRoot: string): string[] {
  if (!existsSync(runcRoot)) return [];
  return readdirSync(runcRoot).map((e) => `runc state ${join(runcRoot, e)}`);
}

export async function runcDeleteAll(runcRoot: string): Promise<void> {
  if (!existsSync(runcRoot)) return;
  for (const id of readdirSync(runcRoot)) {
    await run(RUNC, ['--root', runcRoot, 'delete', '--force', id]);
  }
}

// Processes whose command line contains every marker (e.g. 'berth-monitor' and a run root).
export function processesMatching(...markers: string[]): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (markers.every((m) => cmd.includes(m))) pids.push(Number(e));
    } catch {
      /* raced with exit */
    }
  }
  return pids;
}

// An image's shared read-only root: berthd leaves it mounted by design (it outlives berthd
// as containers do), so it is not a container's leftover; a teardown unmounts it.
export function isImageRoot(mountPoint: string): boolean {
  return /\/images\/[0-9a-f]{64}\/rootfs$/.test(mountPoint);
}

export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}
