// Image root filesystems on disk: <images>/<id>/rootfs, shared read-only by every
// container of the image.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  rename,
  rm,
  symlink,
  writeFile,
  chmod,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { execFile } from '../util/exec.ts';
import { BerthError } from '../util/errors.ts';
import { newId } from '../util/ids.ts';
import type { ImageConfig } from '../types/domain.ts';

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

export async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await lstat(join(e.parentPath, e.name))).size;
  }
  return total;
}

export class ImageFiles {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  rootfs(id: string): string {
    return join(this.dir, id, 'rootfs');
  }

  private tmpDir(): string {
    return join(this.dir, `.tmp-${newId().slice(0, 16)}`);
  }

  // Builds the built-in busybox image from the host's static busybox: no network, and the
  // same bytes give the same image id on every host.
  async createBusybox(busybox: string): Promise<{ id: string; size: number; config: ImageConfig }> {
    const hash = createHash('sha256');
    await pipeline(createReadStream(busybox), hash);
    const id = createHash('sha256')
      .update(`berth-busybox-v1:${hash.digest('hex')}`)
      .digest('hex');
    const config: ImageConfig = {
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cmd: ['sh'],
      entrypoint: [],
      workdir: '/',
      user: '',
      labels: { 'org.berth.builtin': 'busybox' },
      stopSignal: 'SIGTERM',
    };
    const final = join(this.dir, id);
    if (await lstat(final).catch(() => undefined)) {
      return { id, size: await dirSize(this.rootfs(id)), config };
    }
    const tmp = this.tmpDir();
    const root = join(tmp, 'rootfs');
    try {
      for (const d of [
        'bin',
        'sbin',
        'usr/bin',
        'usr/sbin',
        'root',
        'home',
        'var/spool/mail',
        'var/www',
      ]) {
        await mkdir(join(root, d), { recursive: true });
      }
      await copyFile(busybox, join(root, 'bin/busybox'));
      await chmod(join(root, 'bin/busybox'), 0o755);
      const { stdout } = await execFile([busybox, '--list-full']);
      for (const path of stdout.split('\n').filter(Boolean)) {
        if (path === 'bin/busybox') continue;
        const depth = path.split('/').length - 1;
        await symlink(`${'../'.repeat(depth)}bin/busybox`, join(root, path)).catch(() => undefined);
      }
      await mkdir(join(root, 'etc'), { recursive: true });
      await writeFile(
        join(root, 'etc/passwd'),
        'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n',
      );
      await writeFile(
        join(root, 'etc/group'),
        'root:x:0:\ndaemon:x:1:\ntty:x:5:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n',
      );
      await ensureMountpoints(root);
      await rename(tmp, final);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return { id, size: await dirSize(this.rootfs(id)), config };
  }

  // Unpacks a root filesystem tarball. node-tar refuses absolute and ../ paths and will not
  // write through a symlink it extracted; image layers get the full hardening in the images
  // issue. Either the image appears whole under its id or nothing is left.
  async importTar(input: Readable): Promise<{ id: string; size: number }> {
    const tmp = this.tmpDir();
    const root = join(tmp, 'rootfs');
    const hash = createHash('sha256');
    try {
      await mkdir(root, { recursive: true });
      input.on('data', (b: Buffer) => hash.update(b));
      await pipeline(input, tar.x({ cwd: root, preserveOwner: true, strict: true }));
      await ensureMountpoints(root);
      const id = hash.digest('hex');
      const final = join(this.dir, id);
      if (await lstat(final).catch(() => undefined)) {
        await rm(tmp, { recursive: true, force: true });
      } else {
        await rename(tmp, final);
      }
      return { id, size: await dirSize(this.rootfs(id)) };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      if (e instanceof BerthError) throw e;
      throw new BerthError(
        'IMAGE_INVALID',
        `Cannot import root filesystem: ${(e as Error).message}`,
      );
    }
  }

  async remove(id: string): Promise<void> {
    await rm(join(this.dir, id), { recursive: true, force: true });
  }

  // Leftovers of an import or seed that a crash interrupted.
  async sweepTemp(): Promise<void> {
    for (const e of await readdir(this.dir).catch(() => [] as string[])) {
      if (e.startsWith('.tmp-')) await rm(join(this.dir, e), { recursive: true, force: true });
    }
  }
}
