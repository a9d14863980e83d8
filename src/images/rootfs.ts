// The mount points every image root needs, and the images from before layered images.
import { chmod, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';

// Where runc mounts over or binds into the root. They must exist in the image, because
// the root is shared and read-only: runc must never have to create them.
const MOUNTPOINT_DIRS = ['proc', 'sys', 'dev', 'tmp', 'run', 'var/tmp', 'etc'];
const MOUNTPOINT_FILES = ['etc/hosts', 'etc/hostname', 'etc/resolv.conf'];

export async function ensureMountpoints(rootfs: string): Promise<void> {
  for (const d of MOUNTPOINT_DIRS) {
    const p = join(rootfs, d);
    const st = await lstat(p).catch(() => undefined);
    if (!st) await mkdir(p, { recursive: true, mode: d.endsWith('tmp') ? 0o1777 : 0o755 });
    else if (!st.isDirectory())
      throw new BerthError('IMAGE_INVALID', `Image root: /${d} is not a directory`);
  }
  await chmod(join(rootfs, 'tmp'), 0o1777);
  for (const f of MOUNTPOINT_FILES) {
    const p = join(rootfs, f);
    const st = await lstat(p).catch(() => undefined);
    if (!st) await writeFile(p, '', { mode: 0o644 });
    else if (!st.isFile()) {
      // A symlink here would let runc's bind mount land outside the root; replace it.
      await rm(p, { recursive: true, force: true });
      await writeFile(p, '', { mode: 0o644 });
    }
  }
}

// Images from before layered images: one directory per image, `<images>/<id>/rootfs`.
// New images are layers (layer-store.ts) under a mounted root (image-root.ts); these are
// still run and removed.
export class ImageFiles {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  rootfs(id: string): string {
    return join(this.dir, id, 'rootfs');
  }

  async remove(id: string): Promise<void> {
    await rm(join(this.dir, id), { recursive: true, force: true });
  }
}
