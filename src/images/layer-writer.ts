// Writes the entries of one layer's tar stream into the layer's own directory, turning OCI
// whiteouts into overlayfs ones (0:0 character devices) and opaque markers into
// trusted.overlay.opaque. It runs in the unpack worker (unpack-worker.ts), so its
// filesystem calls are synchronous: a thread-pool round trip per call made a layer of small
// files seven times slower, and this thread has nothing else to do.
//
// The layer is hostile input. The defence is that the kernel never resolves a path the
// layer chose: names are resolved lexically (tar-safety.ts), and every parent directory is
// looked up in an in-memory model of what this unpack has created so far. The directory is
// empty when we start and nothing else writes to it, so the model is exact: a parent that
// is a symlink or a file is known without asking the filesystem, and refuses the entry.
// The last component is never followed either: files are created O_EXCL|O_NOFOLLOW after
// unlinking whatever was there, and metadata is set through the file descriptor or the l*
// calls. Hard links take their target from the model too, so they can only point at
// something this layer made.
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';
import type { EntrySink, TarEntry, TarHandler } from './tar-reader.ts';
import {
  MAX_XATTR_VALUE,
  WHITEOUT_META_PREFIX,
  WHITEOUT_PREFIX,
  display,
  layerPath,
  refuse,
  whiteoutOf,
  xattrAllowed,
} from './tar-safety.ts';

export interface WriterLimits {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly maxPathLength: number;
}

export interface LayerCounts {
  entries: number;
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  devices: number;
  whiteouts: number;
  opaqueDirs: number;
  xattrs: number;
  skipped: number;
}

// Held in memory until the end (they are written after ownership, which would clear
// security.capability, and in one helper run), so bounded apart from maxBytes.
const MAX_XATTR_TOTAL = 16 * 2 ** 20;
// Linux's limit on a symlink's target.
const MAX_SYMLINK = 4095;

type Kind = 'dir' | 'file' | 'symlink' | 'device' | 'whiteout';

interface Meta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly atime: number | undefined;
  readonly mtime: number | undefined;
}

interface FsNode {
  readonly kind: Kind;
  readonly name: string;
  readonly parent: FsNode | undefined;
  readonly children: Map<string, FsNode> | undefined;
  // Directories only: applied at the end, after their contents.
  meta: Meta | undefined;
  xattrs: (readonly [string, Buffer])[] | undefined;
  opaque: boolean;
}

// Parents the layer did not list are created like Docker does, 0755 and root's.
const IMPLIED: Meta = { mode: 0o755, uid: 0, gid: 0, atime: undefined, mtime: undefined };

const MAX_TIME = 2 ** 34 - 1;
function clampTime(t: number): number {
  return Number.isFinite(t) ? Math.min(Math.max(t, 0), MAX_TIME) : 0;
}

function idOf(e: TarEntry, v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw refuse(e.name, `bad ${what} ${v}`);
  return v;
}

function metaOf(e: TarEntry): Meta {
  const mtime = clampTime(e.mtime);
  // Docker never sets an access time before the modification time.
  const atime = Math.max(clampTime(e.atime ?? mtime), mtime);
  return {
    mode: e.mode & 0o7777,
    uid: idOf(e, e.uid, 'uid'),
    gid: idOf(e, e.gid, 'gid'),
    atime,
    mtime,
  };
}

export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('E') ? code : undefined;
}

// Limits of the filesystem that a layer can run into are the layer's fault; anything else
// (ENOSPC, EIO, ...) is the host's and keeps its errno for the caller.
const LAYER_ERRNOS = new Set(['ENAMETOOLONG', 'EMLINK', 'EINVAL', 'EFBIG']);

function entryFailure(e: unknown, name: string): unknown {
  if (e instanceof BerthError) return e;
  const errno = errnoOf(e);
  if (errno === undefined) return e;
  if (LAYER_ERRNOS.has(errno)) return refuse(name, errorMessage(e));
  return new BerthError('INTERNAL', `Unpacking layer entry ${display(name)}: ${errorMessage(e)}`, {
    errno,
  });
}

// The only way to set xattrs from Node is a helper process; python3 is a berth dependency
// (scripts/install.sh). It walks each path again with O_NOFOLLOW from the layer root and
// never follows the last component, so even a wrong model could not make it leave.
const XATTR_HELPER = `
import os, sys
root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
for line in sys.stdin:
    p, k, v = line.split()
    path = b'' if p == '-' else bytes.fromhex(p)
    key = bytes.fromhex(k)
    value = b'' if v == '-' else bytes.fromhex(v)
    parts = [c for c in path.split(b'/') if c]
    fds = []
    try:
        fd = root
        for c in parts[:-1]:
            fd = os.open(c, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            fds.append(fd)
        if parts:
            os.setxattr(b'/proc/self/fd/%d/%s' % (fd, parts[-1]), key, value, follow_symlinks=False)
        else:
            os.setxattr(b'/proc/self/fd/%d' % fd, key, value)
    except OSError as e:
        sys.exit('setxattr %s on %s: %s' % (key.decode('latin1'), path.decode('latin1') or '/', e.strerror))
    finally:
        for f in fds:
            os.close(f)
`;

const hex = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

export class LayerWriter implements TarHandler {
  readonly #root: string;
  readonly #rootBuf: Buffer;
  readonly #tree: FsNode;
  readonly #limits: WriterLimits;
  #openFd: number | undefined;
  // The one 0:0 device every whiteout is a hard link to: Node cannot mknod, and running
  // mknod(1) per whiteout would cost a process each. overlayfs shares its whiteouts the
  // same way; only the device type and number matter to it.
  #template: string | undefined;
  #xattrBytes = 0;
  readonly counts: LayerCounts = {
    entries: 0,
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    devices: 0,
    whiteouts: 0,
    opaqueDirs: 0,
    xattrs: 0,
    skipped: 0,
  };

  // root: the real path of an empty directory.
  constructor(root: string, limits: WriterLimits) {
    this.#root = root;
    this.#rootBuf = Buffer.from(root);
    this.#tree = {
      kind: 'dir',
      name: '',
      parent: undefined,
      children: new Map(),
      meta: undefined,
      xattrs: undefined,
      opaque: false,
    };
    this.#limits = limits;
  }

  async entry(e: TarEntry): Promise<EntrySink | undefined> {
    if (++this.counts.entries > this.#limits.maxEntries) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Layer has more than ${this.#limits.maxEntries} entries`,
      );
    }
    if (e.size > this.#limits.maxBytes) {
      throw refuse(e.name, `size ${e.size} is over the limit of ${this.#limits.maxBytes} bytes`);
    }
    const parts = layerPath(e.name, this.#limits.maxPathLength);
    try {
      return await this.#apply(e, parts);
    } catch (err) {
      throw entryFailure(err, e.name);
    }
  }

  async #apply(e: TarEntry, parts: string[]): Promise<EntrySink | undefined> {
    const base = parts.at(-1);
    if (base === undefined) {
      if (e.type !== 'dir') throw refuse(e.name, 'the layer root must be a directory');
      this.#tree.meta = metaOf(e);
      this.#tree.xattrs = undefined;
      this.#setXattrs(this.#tree, e);
      return undefined;
    }
    if (parts[0] !== undefined && parts[0].startsWith(WHITEOUT_META_PREFIX) && parts.length > 1) {
      this.counts.skipped++;
      return undefined;
    }
    if (parts[0] === this.#template) this.#dropTemplate();
    const dirParts = parts.slice(0, -1);
    if (dirParts.some((c) => c.startsWith(WHITEOUT_PREFIX))) {
      throw refuse(e.name, 'a whiteout name is used as a directory');
    }
    const wh = whiteoutOf(e.name, base);
    switch (wh.kind) {
      case 'meta':
        this.counts.skipped++;
        return undefined;
      case 'opaque': {
        const dir = this.#dir(dirParts, e.name);
        if (!dir.opaque) this.counts.opaqueDirs++;
        dir.opaque = true;
        return undefined;
      }
      case 'whiteout':
        await this.#whiteout(this.#dir(dirParts, e.name), [...dirParts, wh.target]);
        return undefined;
      case 'none':
        break;
    }

    const parent = this.#dir(dirParts, e.name);
    const existing = parent.children?.get(base);
    const path = this.#abs(parts);
    switch (e.type) {
      case 'dir': {
        this.counts.dirs++;
        const meta = metaOf(e);
        if (existing?.kind === 'dir') {
          existing.meta = meta;
          existing.xattrs = undefined;
          this.#setXattrs(existing, e);
          return undefined;
        }
        if (existing) this.#remove(existing);
        mkdirSync(path, 0o700);
        const node = this.#add(parent, base, 'dir');
        node.meta = meta;
        // A directory that replaces this layer's own whiteout must still hide the lower one.
        if (existing?.kind === 'whiteout') node.opaque = true;
        this.#setXattrs(node, e);
        return undefined;
      }
      case 'file': {
        const meta = metaOf(e);
        if (existing) this.#remove(existing);
        const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
        this.#openFd = fd;
        const node = this.#add(parent, base, 'file');
        this.#setXattrs(node, e);
        this.counts.files++;
        return this.#fileSink(fd, meta, e.name);
      }
      case 'symlink': {
        if (e.linkname === '') throw refuse(e.name, 'symlink has an empty target');
        if (e.linkname.includes('\0')) throw refuse(e.name, 'symlink target has a NUL byte');
        if (e.linkname.length > MAX_SYMLINK) {
          throw refuse(e.name, `symlink target is longer than ${MAX_SYMLINK} bytes`);
        }
        const meta = metaOf(e);
        if (existing) this.#remove(existing);
        symlinkSync(Buffer.from(e.linkname, 'latin1'), path);
        this.#add(parent, base, 'symlink');
        lchownSync(path, meta.uid, meta.gid);
        lutimesSync(path, meta.atime ?? 0, meta.mtime ?? 0);
        this.counts.symlinks++;
        this.#skipXattrs(e);
        return undefined;
      }
      case 'hardlink': {
        const target = this.#linkTarget(e);
        if (existing) {
          for (let n: FsNode | undefined = target; n; n = n.parent) {
            if (n === existing) throw refuse(e.name, 'hard link replaces its own target');
          }
          this.#remove(existing);
        }
        // link(2) does not follow a symlink target on Linux: a link to a symlink is a
        // second name for the symlink, wherever it points.
        linkSync(this.#nodePath(target), path);
        this.#add(parent, base, target.kind);
        this.counts.hardlinks++;
        this.#skipXattrs(e);
        return undefined;
      }
      case 'char':
      case 'block':
      case 'fifo': {
        const meta = metaOf(e);
        // Made under a fresh name at the root and fully set up there, then renamed into
        // place: mknod(1) never sees a name or a mode from the layer.
        const tmp = join(this.#root, this.#freshName('.berth-node-'));
        const argv =
          e.type === 'fifo'
            ? ['mknod', '-m', '000', tmp, 'p']
            : ['mknod', '-m', '000', tmp, e.type === 'char' ? 'c' : 'b'];
        if (e.type !== 'fifo') argv.push(String(e.devmajor), String(e.devminor));
        await execFile(argv);
        lchownSync(tmp, meta.uid, meta.gid);
        chmodSync(tmp, meta.mode);
        lutimesSync(tmp, meta.atime ?? 0, meta.mtime ?? 0);
        if (existing) this.#remove(existing);
        renameSync(tmp, path);
        this.#add(parent, base, 'device');
        this.counts.devices++;
        this.#skipXattrs(e);
        return undefined;
      }
    }
  }

  #fileSink(fd: number, meta: Meta, name: string): EntrySink {
    return {
      data: (chunk) => {
        try {
          let off = 0;
          while (off < chunk.length) off += writeSync(fd, chunk, off);
          this.counts.bytes += chunk.length;
        } catch (err) {
          throw entryFailure(err, name);
        }
      },
      end: () => {
        try {
          // Ownership first: chown clears setuid and setgid.
          fchownSync(fd, meta.uid, meta.gid);
          fchmodSync(fd, meta.mode);
          futimesSync(fd, meta.atime ?? 0, meta.mtime ?? 0);
          this.#openFd = undefined;
          closeSync(fd);
        } catch (err) {
          throw entryFailure(err, name);
        }
      },
    };
  }

  // The directory at parts, creating parents the layer did not list. Never passes through
  // anything but a directory this unpack made.
  #dir(parts: readonly string[], name: string): FsNode {
    let node = this.#tree;
    for (let i = 0; i < parts.length; i++) {
      const c = parts[i] as string;
      let child = node.children?.get(c);
      if (child === undefined || child.kind === 'whiteout') {
        const replaced = child;
        if (replaced) this.#remove(replaced);
        mkdirSync(this.#abs(parts.slice(0, i + 1)), 0o700);
        child = this.#add(node, c, 'dir');
        child.meta = IMPLIED;
        if (replaced) child.opaque = true;
      } else if (child.kind !== 'dir') {
        const where = display(parts.slice(0, i + 1).join('/'));
        throw refuse(name, `parent ${where} is a ${child.kind}, not a directory`);
      }
      node = child;
    }
    return node;
  }

  #linkTarget(e: TarEntry): FsNode {
    const parts = layerPath(e.linkname, this.#limits.maxPathLength, 'hard link target');
    let node = this.#tree;
    for (let i = 0; i < parts.length; i++) {
      const child = node.children?.get(parts[i] as string);
      if (child === undefined) {
        throw refuse(e.name, `hard link target ${display(e.linkname)} is not in the layer`);
      }
      if (i < parts.length - 1 && child.kind !== 'dir') {
        const where = display(parts.slice(0, i + 1).join('/'));
        throw refuse(e.name, `hard link target passes through ${where}, a ${child.kind}`);
      }
      node = child;
    }
    if (node.kind === 'dir') throw refuse(e.name, 'hard link to a directory');
    if (node.kind === 'whiteout') throw refuse(e.name, 'hard link to a whiteout');
    return node;
  }

  // OCI: a whiteout hides only what lower layers have at that name. If this layer made the
  // name itself, it stays; a directory of its own still has to hide the lower one's
  // contents, so it becomes opaque.
  async #whiteout(dir: FsNode, parts: readonly string[]): Promise<void> {
    const name = parts.at(-1) as string;
    const existing = dir.children?.get(name);
    this.counts.whiteouts++;
    if (existing) {
      if (existing.kind === 'dir') existing.opaque = true;
      return;
    }
    const path = this.#abs(parts);
    if (this.#template === undefined) await this.#newTemplate();
    try {
      linkSync(join(this.#root, this.#template as string), path);
    } catch (err) {
      // ext4 allows 65000 links to an inode.
      if (errnoOf(err) !== 'EMLINK') throw err;
      await this.#newTemplate();
      linkSync(join(this.#root, this.#template as string), path);
    }
    this.#add(dir, name, 'whiteout');
  }

  async #newTemplate(): Promise<void> {
    this.#dropTemplate();
    const name = this.#freshName('.berth-whiteout-');
    await execFile(['mknod', '-m', '000', join(this.#root, name), 'c', '0', '0']);
    this.#template = name;
  }

  #dropTemplate(): void {
    if (this.#template === undefined) return;
    const name = this.#template;
    this.#template = undefined;
    unlinkSync(join(this.#root, name));
  }

  #freshName(prefix: string): string {
    for (;;) {
      const name = prefix + randomBytes(8).toString('hex');
      if (!this.#tree.children?.has(name) && name !== this.#template) return name;
    }
  }

  #setXattrs(node: FsNode, e: TarEntry): void {
    for (const [key, value] of e.xattrs) {
      if (!xattrAllowed(key)) {
        this.counts.skipped++;
        continue;
      }
      if (key.length > 255) throw refuse(e.name, `xattr name ${display(key)} is too long`);
      if (value.length > MAX_XATTR_VALUE) {
        throw refuse(e.name, `xattr ${display(key)} is over ${MAX_XATTR_VALUE} bytes`);
      }
      this.#xattrBytes += key.length + value.length;
      if (this.#xattrBytes > MAX_XATTR_TOTAL) {
        throw refuse(e.name, `xattrs total more than ${MAX_XATTR_TOTAL} bytes`);
      }
      (node.xattrs ??= []).push([key, value]);
    }
  }

  // user.* cannot be set on symlinks or devices, and nothing else there is meaningful.
  #skipXattrs(e: TarEntry): void {
    this.counts.skipped += e.xattrs.length;
  }

  #add(parent: FsNode, name: string, kind: Kind): FsNode {
    const node: FsNode = {
      kind,
      name,
      parent,
      children: kind === 'dir' ? new Map() : undefined,
      meta: undefined,
      xattrs: undefined,
      opaque: false,
    };
    parent.children?.set(name, node);
    return node;
  }

  #remove(node: FsNode): void {
    const path = this.#nodePath(node);
    // rm does not follow symlinks inside the tree it removes.
    if (node.kind === 'dir') rmSync(path, { recursive: true });
    else unlinkSync(path);
    node.parent?.children?.delete(node.name);
  }

  #abs(parts: readonly string[]): Buffer {
    return Buffer.concat([this.#rootBuf, Buffer.from(`/${parts.join('/')}`, 'latin1')]);
  }

  #partsOf(node: FsNode): string[] {
    const parts: string[] = [];
    for (let n: FsNode | undefined = node; n?.parent; n = n.parent) parts.push(n.name);
    return parts.reverse();
  }

  #nodePath(node: FsNode): Buffer {
    return this.#abs(this.#partsOf(node));
  }

  // Runs once the whole stream is in: the whiteout template goes, xattrs are written (after
  // ownership, which would clear security.capability), then directories get their own
  // metadata, deepest first, since creating their entries changed their times.
  async finish(): Promise<void> {
    this.#dropTemplate();
    const lines: string[] = [];
    const visit = (node: FsNode, rel: string): void => {
      const p = rel === '' ? '-' : hex(rel);
      for (const [k, v] of node.xattrs ?? []) {
        lines.push(`${p} ${hex(k)} ${v.length ? v.toString('hex') : '-'}\n`);
        this.counts.xattrs++;
      }
      if (node.opaque) lines.push(`${p} ${hex('trusted.overlay.opaque')} ${hex('y')}\n`);
      for (const [name, child] of node.children ?? []) {
        if (child.xattrs || child.children) visit(child, rel === '' ? name : `${rel}/${name}`);
      }
    };
    visit(this.#tree, '');
    if (lines.length > 0) {
      await execFile(['python3', '-I', '-S', '-c', XATTR_HELPER, this.#root], {
        input: lines.join(''),
      });
    }
    this.#dirMeta(this.#tree, this.#rootBuf);
  }

  #dirMeta(node: FsNode, path: Buffer): void {
    for (const [name, child] of node.children ?? []) {
      if (child.kind === 'dir') {
        this.#dirMeta(child, Buffer.concat([path, Buffer.from(`/${name}`, 'latin1')]));
      }
    }
    const meta = node.meta;
    if (meta === undefined) return;
    lchownSync(path, meta.uid, meta.gid);
    chmodSync(path, meta.mode);
    if (meta.mtime !== undefined) lutimesSync(path, meta.atime ?? meta.mtime, meta.mtime);
  }

  // After a failure: the file being written is closed so the directory can be emptied.
  abort(): void {
    const fd = this.#openFd;
    this.#openFd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // Already closed by the failure itself.
      }
    }
  }
}
