// An image's root filesystem: a read-only overlay of its layers at `<images>/<id>/rootfs`,
// mounted once and shared by all its containers (runc bind-mounts it into each), or the
// lower of a container's writable overlay. On top of the layers sits the init layer: the
// mount points runc needs (/proc, /dev, /etc/hosts, ...) made once for every image, so no
// layer is ever written and runc never has to create anything in a read-only root.
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from '../util/exec.ts';
import { newId } from '../util/ids.ts';
import { ensureMountpoints } from './rootfs.ts';

const INIT = 'init';
// overlayfs wants two lower directories when there is no upper one: an image with no
// layers stacks the init layer on this.
const EMPTY = 'empty';

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

// The root's layers as overlayfs stacks them (topmost first), relative to the images
// directory: the init layer over the image's.
function lowerList(layers: readonly string[]): string[] {
  const lower = [INIT, ...[...layers].reverse()];
  if (lower.length < 2) lower.push(EMPTY);
  return lower;
}

export class ImageRoots {
  readonly dir: string;
  private readonly mounted = new Set<string>();
  private readonly pending = new Map<string, Promise<string>>();

  constructor(imagesDir: string) {
    this.dir = imagesDir;
  }

  path(id: string): string {
    return join(this.dir, id, 'rootfs');
  }

  // Makes the init layer if it is not whole, and learns which roots are mounted (they
  // outlive berthd; a reboot unmounts them all).
  async init(): Promise<void> {
    const init = join(this.dir, INIT);
    if (!(await stat(join(init, 'etc', 'resolv.conf')).catch(() => undefined))) {
      const tmp = join(this.dir, `.tmp-${newId().slice(0, 16)}`);
      try {
        await mkdir(tmp, { recursive: true, mode: 0o755 });
        await ensureMountpoints(tmp);
        await rm(init, { recursive: true, force: true });
        await rename(tmp, init);
      } catch (e) {
        await rm(tmp, { recursive: true, force: true });
        throw e;
      }
    }
    await mkdir(join(this.dir, EMPTY), { recursive: true, mode: 0o755 });
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mountinfo.split('\n')) {
      const point = line.split(' ')[4];
      if (point === undefined) continue;
      const p = unescapeMountPath(point);
      const m = /^(.*)\/([0-9a-f]{64})\/rootfs$/.exec(p);
      if (m && m[1] === this.dir && m[2]) this.mounted.add(m[2]);
    }
  }

  isMounted(id: string): boolean {
    return this.mounted.has(id);
  }

  // Mounts the root if it is not mounted; `layers` are paths relative to the images
  // directory, bottom first. Calls for one image share one mount.
  async mount(id: string, layers: readonly string[]): Promise<string> {
    const target = this.path(id);
    if (this.mounted.has(id)) return target;
    let p = this.pending.get(id);
    if (!p) {
      p = (async () => {
        await mkdir(target, { recursive: true, mode: 0o755 });
        const lower = lowerList(layers);
        // Relative paths, from the images directory: the option string must fit a page.
        await execFile(
          ['mount', '-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lower.join(':')}`, target],
          { cwd: this.dir, timeoutMs: 60_000 },
        );
        this.mounted.add(id);
        return target;
      })();
      this.pending.set(id, p);
      void p.then(
        () => this.pending.delete(id),
        () => this.pending.delete(id),
      );
    }
    return p;
  }

  // The root's lower directories, absolute and topmost first: what a container in a user
  // namespace has its monitor mount idmapped, each, under an overlay of its own (an
  // overlay mount cannot itself be idmapped).
  lowerDirs(layers: readonly string[]): string[] {
    return lowerList(layers).map((l) => join(this.dir, l));
  }

  // Unmounts and removes the image's directory. Containers that were started from it keep
  // their own bind of it, so this never waits on them; berth refuses to remove an image a
  // container uses before it gets here.
  async remove(id: string): Promise<void> {
    const target = this.path(id);
    if (this.mounted.has(id)) {
      await execFile(['umount', target], { timeoutMs: 60_000 });
      this.mounted.delete(id);
    }
    await rm(join(this.dir, id), { recursive: true, force: true });
  }
}
