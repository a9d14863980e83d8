// A container's writable root: an ext4 filesystem in a sparse file (so writes end in
// ENOSPC at its size on any host filesystem), loop-mounted while the container runs,
// holding the overlay's upper and work directories. The monitor mounts the overlay itself
// before each run (it restarts containers when berthd is down).
import { existsSync } from 'node:fs';
import { lstat, mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';
import { makeExt4Image, mountAt, mountLoop, readMounts, unmount } from './loopfs.ts';

export interface WritablePaths {
  readonly image: string;
  readonly fs: string;
  readonly upper: string;
  readonly work: string;
  readonly merged: string;
}

export function writablePaths(dataDir: string, mntDir: string): WritablePaths {
  const fs = join(mntDir, 'fs');
  return {
    image: join(dataDir, 'writable.img'),
    fs,
    upper: join(fs, 'upper'),
    work: join(fs, 'work'),
    merged: join(mntDir, 'rootfs'),
  };
}

// Makes the filesystem once (it keeps the container's writes across stops and restarts)
// and mounts it.
export async function mountWritable(p: WritablePaths, sizeBytes: number): Promise<void> {
  await mkdir(join(p.image, '..'), { recursive: true, mode: 0o700 });
  if (!existsSync(p.image)) await makeExt4Image(p.image, sizeBytes);
  await mkdir(p.fs, { recursive: true, mode: 0o700 });
  await mkdir(p.merged, { recursive: true, mode: 0o755 });
  if (!mountAt(await readMounts(), p.fs)) await mountLoop(p.image, p.fs);
  await mkdir(p.upper, { recursive: true, mode: 0o755 });
  await mkdir(p.work, { recursive: true, mode: 0o700 });
}

// Unmounts the overlay (if a killed monitor left it) and the filesystem; the loop device
// goes with the last unmount (autoclear). Idempotent.
export async function unmountWritable(p: WritablePaths): Promise<void> {
  const mounts = await readMounts();
  for (const dir of [p.merged, p.fs])
    if (mountAt(mounts, dir) && (await unmount(dir)) === 'busy')
      throw new BerthError('RUNTIME_FAILED', `${dir} is busy; it stays mounted`);
}

// Bytes used in the writable root's filesystem, while it is mounted.
export async function writableUsage(p: WritablePaths): Promise<number | undefined> {
  if (!mountAt(await readMounts(), p.fs)) return undefined;
  const s = await statfs(p.fs);
  return (s.blocks - s.bfree) * s.bsize;
}

// A read-only root that needs mount points the image lacks (a bind or tmpfs at a new
// path): runc makes them in a throwaway upper layer over the shared image root, then
// remounts the root read-only, so nothing is ever written to the image and the container
// still cannot write to its root. The monitor mounts it with a reset before each run.
export interface MountpointRoot {
  readonly upper: string;
  readonly work: string;
  readonly merged: string;
}

export function mountpointRootPaths(mntDir: string): MountpointRoot {
  return {
    upper: join(mntDir, 'mp-upper'),
    work: join(mntDir, 'mp-work'),
    merged: join(mntDir, 'rootfs'),
  };
}

export async function prepareMountpointRoot(p: MountpointRoot): Promise<void> {
  for (const d of [p.upper, p.work]) await mkdir(d, { recursive: true, mode: 0o700 });
  await mkdir(p.merged, { recursive: true, mode: 0o755 });
}

// Whether runc would have to create a mount point in the root: a destination missing from
// it and not inside an earlier mount (runc makes those inside that mount).
export async function needsMountpoints(
  rootfs: string,
  mounts: readonly { readonly destination: string }[],
): Promise<boolean> {
  const done: string[] = [];
  for (const m of mounts) {
    const dest = m.destination.replace(/\/+$/, '');
    const inside = done.some((d) => dest.startsWith(`${d}/`));
    done.push(dest);
    if (inside) continue;
    if (!(await lstat(join(rootfs, dest)).catch(() => undefined))) return true;
  }
  return false;
}
