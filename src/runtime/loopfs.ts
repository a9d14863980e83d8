// Filesystems in sparse files, loop-mounted: a size that holds (ENOSPC) on any host
// filesystem, with no quota support needed. `mount -o loop` sets autoclear on the loop
// device, so the device goes away with the last unmount and nothing is left to detach.
import { existsSync, readFileSync } from 'node:fs';
import { open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BerthError } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';

export interface MountEntry {
  readonly majorMinor: string;
  // The path inside the mounted filesystem that appears at the mount point.
  readonly root: string;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
}

// The kernel escapes space, tab, newline and backslash in paths as \ooo.
const unescape = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

// proc(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f.length < 10 || dash < 0) continue;
    out.push({
      majorMinor: f[2] as string,
      root: unescape(f[3] as string),
      mountPoint: unescape(f[4] as string),
      fsType: f[dash + 1] ?? '',
      source: unescape(f[dash + 2] ?? ''),
    });
  }
  return out;
}

export async function readMounts(mountinfo = '/proc/self/mountinfo'): Promise<MountEntry[]> {
  return parseMountinfo(await readFile(mountinfo, 'utf8'));
}

// The mount visible at a path: the last one listed there (later mounts stack on top).
export function mountAt(mounts: readonly MountEntry[], path: string): MountEntry | undefined {
  return mounts.findLast((m) => m.mountPoint === path);
}

export function mountsUnder(mounts: readonly MountEntry[], dir: string): MountEntry[] {
  return mounts.filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`));
}

// mke2fs reserves nothing for root (-m 0) and, when small, has no journal: the journal
// would take 4 MiB of a 20 MiB volume, and fsck of a small filesystem is quick anyway.
// What is usable is then about 96% of the size (inode tables and bitmaps take the rest).
export const JOURNAL_FROM_BYTES = 256 * 1024 * 1024;

// Creates the image (exclusively: it never overwrites one) and puts ext4 on it. The file
// is sparse: it takes host space only as the filesystem fills.
export async function makeExt4Image(image: string, sizeBytes: number): Promise<void> {
  const fh = await open(image, 'wx', 0o600);
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
  try {
    await execFile(
      [
        'mkfs.ext4',
        '-q',
        '-F',
        '-m',
        '0',
        // No room reserved to grow the filesystem (it never grows), and one inode per
        // 16 KiB whatever the size (mke2fs gives small filesystems one per 4 KiB): 96%
        // of a 100 MiB volume is usable instead of 90%.
        '-i',
        '16384',
        '-O',
        sizeBytes < JOURNAL_FROM_BYTES ? '^has_journal,^resize_inode' : '^resize_inode',
        // The file is new and sparse, so its holes already read as zeros: writing zeros
        // over the journal and inode tables would only take host space (64M for 10g).
        '-E',
        'lazy_itable_init=1,lazy_journal_init=1',
        image,
      ],
      { timeoutMs: 120_000 },
    );
  } catch (e) {
    await rm(image, { force: true });
    throw e;
  }
}

export async function mountLoop(image: string, target: string): Promise<void> {
  await execFile(['mount', '-o', 'loop,nodev', image, target], { timeoutMs: 60_000 });
}

// Mounts a filesystem already on a loop device: the same device, so the same filesystem
// instance, never a second one over the same image.
export async function mountDevice(device: string, target: string): Promise<void> {
  await execFile(['mount', '-o', 'nodev', device, target], { timeoutMs: 60_000 });
}

// Plain umount, never lazy: a lazy detach would report success while the filesystem, and
// its loop device, live on behind whoever holds them.
export async function unmount(target: string): Promise<'unmounted' | 'busy'> {
  const r = await execFile(['umount', target], { allowFailure: true, timeoutMs: 60_000 });
  if (r.code === 0) return 'unmounted';
  if (/busy/i.test(r.stderr)) return 'busy';
  const tail = r.stderr.trim().slice(-2000);
  throw new BerthError('RUNTIME_FAILED', `umount ${target} failed (exit ${r.code}): ${tail}`, {
    argv: ['umount', target],
    exitCode: r.code,
    stderr: tail,
  });
}

// e2fsck -p before a mount after a reboot: a filesystem without a journal that was
// mounted when the host went down must be checked before it is trusted again. Exit codes
// 0 to 3 mean clean or repaired.
export async function checkExt4Image(image: string): Promise<{ ok: boolean; output: string }> {
  const r = await execFile(['e2fsck', '-p', image], { allowFailure: true, timeoutMs: 600_000 });
  return { ok: r.code >= 0 && r.code < 4, output: (r.stdout + r.stderr).trim().slice(-500) };
}

// The file a loop device reads, from sysfs; undefined once the device is detached.
export function loopBackingFile(device: string, sys = '/sys'): string | undefined {
  const f = join(sys, 'block', basename(device), 'loop', 'backing_file');
  if (!existsSync(f)) return undefined;
  try {
    return readFileSync(f, 'utf8').trim();
  } catch {
    return undefined;
  }
}

// Processes in other mount namespaces that have the filesystem of this device mounted (a
// container that binds the volume, a service started with a private copy of the mounts).
// Unmounting in berthd's namespace would not free the filesystem for them: it would
// stay in use, on its loop device, behind a volume berth had deleted. One pid per
// namespace is reported.
export async function otherNamespaceHolders(majorMinor: string, proc = '/proc'): Promise<number[]> {
  const own = await readlink(join(proc, 'self', 'ns', 'mnt'));
  const seen = new Set([own]);
  const out: number[] = [];
  for (const e of await readdir(proc)) {
    if (!/^\d+$/.test(e)) continue;
    let text: string;
    try {
      const ns = await readlink(join(proc, e, 'ns', 'mnt'));
      if (seen.has(ns)) continue;
      text = await readFile(join(proc, e, 'mountinfo'), 'utf8');
      seen.add(ns);
    } catch {
      continue; // the process ended meanwhile
    }
    if (parseMountinfo(text).some((m) => m.majorMinor === majorMinor)) out.push(Number(e));
  }
  return out;
}
