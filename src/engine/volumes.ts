// Named volumes. An unsized volume is a plain directory; a sized one is an ext4 filesystem
// in a sparse file, loop-mounted where containers bind it, so it ends in ENOSPC at its
// size whatever the host filesystem. Everything lives in <root>/volumes/<name>/:
// `_data` (what a container binds) and, when sized, `disk.img`.
//
// A volume is built in `.creating-<name>` and retired through `.removing-<name>`, and the
// rename between them and `<name>` comes after (creating) or before (removing) the commit
// of its record. So whatever instant berthd dies at, init() can tell from the directory
// names and the records which operation was cut short and whether it had committed, and
// finish or undo it. Names start with a letter or digit, so these never collide with one.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  checkExt4Image,
  loopBackingFile,
  makeExt4Image,
  mountAt,
  mountDevice,
  mountLoop,
  mountsUnder,
  otherNamespaceHolders,
  readMounts,
  unmount,
  type MountEntry,
} from '../runtime/loopfs.ts';
import type { Store } from '../store/index.ts';
import type { CreateVolumeRequest, VolumePruneResponse, VolumeRecord } from '../types/volume.ts';
import { BerthError, errorMessage, invalid, isBerthError } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';
import type { Logger } from '../util/logger.ts';
import type { EventBus } from './events.ts';
import { KeyedMutex } from './mutex.ts';

// Docker's volume names: at least two characters. The bound keeps `.creating-<name>`
// within a file name's 255 bytes.
export const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const NAME_MAX = 200;

// Below 1 MiB ext4's own metadata leaves next to nothing; 16 TiB is ext4's limit with
// 4 KiB blocks and far beyond any sane volume.
export const MIN_VOLUME_BYTES = 1024 * 1024;
export const MAX_VOLUME_BYTES = 16 * 1024 ** 4;

const CREATING = '.creating-';
const REMOVING = '.removing-';
const DATA = '_data';
const IMAGE = 'disk.img';

// What the service needs of the host, so tests can stand in for it.
export interface VolumeHost {
  makeImage(image: string, sizeBytes: number): Promise<void>;
  // An image file is attached to a loop device; a device (/dev/loopN) is mounted as is.
  mount(source: string, target: string): Promise<void>;
  unmount(target: string): Promise<'unmounted' | 'busy'>;
  check(image: string): Promise<{ ok: boolean; output: string }>;
  mounts(): Promise<MountEntry[]>;
  // Pids, one per other mount namespace, that have this device's filesystem mounted.
  holders(majorMinor: string): Promise<number[]>;
  backingFile(device: string): string | undefined;
  // Bytes an unsized volume's directory takes.
  du(dir: string): Promise<number>;
}

export function hostVolumeHost(proc = '/proc', sys = '/sys'): VolumeHost {
  return {
    makeImage: makeExt4Image,
    mount: (source, target) =>
      source.startsWith('/dev/') ? mountDevice(source, target) : mountLoop(source, target),
    unmount,
    check: checkExt4Image,
    mounts: () => readMounts(join(proc, 'self', 'mountinfo')),
    holders: (mm) => otherNamespaceHolders(mm, proc),
    backingFile: (dev) => loopBackingFile(dev, sys),
    du: async (dir) => {
      // -x: a mount under the directory is not the volume's data.
      const r = await execFile(['du', '-s', '-x', '-B1', dir], { timeoutMs: 120_000 });
      return Number(r.stdout.split('\t')[0]) || 0;
    },
  };
}

export interface VolumeServiceOptions {
  readonly dataRoot: string;
  readonly host?: VolumeHost;
  // How long rm waits for the kernel to let go of the loop device after the unmount.
  readonly detachWaitMs?: number;
}

export function validateVolumeName(name: string, field = 'name'): void {
  if (name.length < 2 || name.length > NAME_MAX || !VOLUME_NAME_RE.test(name))
    throw invalid(
      field,
      `"${name}" is not a volume name: 2 to ${NAME_MAX} characters of a-z, A-Z, 0-9, _, . and -, starting with a letter or digit`,
    );
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

// 0 asks for an unsized volume. fsBytes: the data filesystem's size, which a sparse image
// could promise but never hold.
export function checkVolumeSize(bytes: number, fsBytes = Infinity): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw invalid('size', `${bytes} is not a size`);
  if (bytes === 0) return;
  if (bytes < MIN_VOLUME_BYTES)
    throw invalid('size', `${formatBytes(bytes)} is below the minimum of 1m for a sized volume`);
  const max = Math.min(MAX_VOLUME_BYTES, fsBytes);
  if (bytes > max)
    throw invalid(
      'size',
      `${formatBytes(bytes)} is more than ${max === fsBytes ? `the data filesystem holds (${formatBytes(fsBytes)})` : `the maximum of ${formatBytes(max)}`}`,
    );
}

function checkLabels(labels: Record<string, string>): void {
  for (const k of Object.keys(labels))
    if (k === '' || k.includes('=')) throw invalid('labels', `"${k}" is not a label key`);
}

export type RecoveryStep =
  // A create that committed its record but not the rename: finish it.
  | { readonly kind: 'complete'; readonly entry: string; readonly name: string }
  // A remove that renamed but did not commit: the volume is still wanted.
  | { readonly kind: 'restore'; readonly entry: string; readonly name: string }
  // A create that never committed, or a remove that did: nothing anyone can see.
  | { readonly kind: 'discard'; readonly entry: string }
  // A directory with no record: not berth's to delete.
  | { readonly kind: 'orphan'; readonly entry: string };

// What init() does with each entry of the volumes directory, given the recorded names.
export function planRecovery(
  entries: readonly string[],
  recorded: ReadonlySet<string>,
): RecoveryStep[] {
  const present = new Set(entries);
  const steps: RecoveryStep[] = [];
  for (const entry of [...entries].sort()) {
    const prefix = entry.startsWith(CREATING)
      ? CREATING
      : entry.startsWith(REMOVING)
        ? REMOVING
        : '';
    if (!prefix) {
      if (!recorded.has(entry)) steps.push({ kind: 'orphan', entry });
      continue;
    }
    const name = entry.slice(prefix.length);
    if (recorded.has(name) && !present.has(name)) {
      steps.push({ kind: prefix === CREATING ? 'complete' : 'restore', entry, name });
      present.add(name);
    } else {
      steps.push({ kind: 'discard', entry });
    }
  }
  return steps;
}

const short = (id: string) => id.slice(0, 12);

export class VolumeService {
  private readonly store: Store;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly host: VolumeHost;
  private readonly root: string;
  private readonly dataRoot: string;
  private readonly detachWaitMs: number;
  private readonly locks = new KeyedMutex();
  private usedBy: (name: string) => string[] = () => [];

  constructor(store: Store, events: EventBus, log: Logger, opts: VolumeServiceOptions) {
    this.store = store;
    this.events = events;
    this.log = log;
    this.host = opts.host ?? hostVolumeHost();
    this.dataRoot = opts.dataRoot;
    this.root = join(opts.dataRoot, 'volumes');
    this.detachWaitMs = opts.detachWaitMs ?? 2000;
  }

  // The engine answers which containers (ids) use a volume; until it does, none do.
  setUsedBy(fn: (name: string) => string[]): void {
    this.usedBy = fn;
  }

  dir(name: string): string {
    return join(this.root, name);
  }

  // The directory a container binds for the volume.
  mountpoint(name: string): string {
    this.get(name);
    return join(this.dir(name), DATA);
  }

  get(name: string): VolumeRecord {
    const v = this.store.volumes.get(name);
    if (!v) throw new BerthError('VOLUME_NOT_FOUND', `No such volume: ${name}`, { field: 'name' });
    return v;
  }

  list(): VolumeRecord[] {
    return this.store.volumes.list();
  }

  // Finishes or undoes what a killed berthd left half done, then mounts every sized
  // volume that is not mounted (after a reboot). A volume that fails is logged and left
  // unmounted; it does not keep berthd from starting.
  async init(): Promise<{ volumes: number; remounted: number; failed: string[] }> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const records = this.list();
    const steps = planRecovery(await readdir(this.root), new Set(records.map((r) => r.name)));
    for (const s of steps) {
      const path = join(this.root, s.entry);
      try {
        if (s.kind === 'complete' || s.kind === 'restore') {
          await rename(path, this.dir(s.name));
          this.log.warn(
            { volume: s.name, step: s.kind },
            'volume: finished an interrupted operation',
          );
        } else if (s.kind === 'discard') {
          await this.discard(path);
          this.log.info({ path }, 'volume: removed what an interrupted operation left');
        } else {
          this.log.warn({ path }, 'volume: directory without a record, left alone');
        }
      } catch (e) {
        this.log.error({ path, err: errorMessage(e) }, 'volume: recovery failed');
      }
    }
    let remounted = 0;
    const failed: string[] = [];
    const mounts = await this.host.mounts();
    for (const v of records) {
      if (!existsSync(this.dir(v.name))) {
        this.log.error({ volume: v.name }, 'volume: its directory is missing');
        failed.push(v.name);
        continue;
      }
      if (v.sizeBytes === 0 || mountAt(mounts, join(this.dir(v.name), DATA))) continue;
      try {
        await this.remount(v.name);
        remounted++;
      } catch (e) {
        failed.push(v.name);
        this.log.error({ volume: v.name, err: errorMessage(e) }, 'volume: cannot mount; left out');
      }
    }
    if (remounted > 0 || failed.length > 0)
      this.log.info({ volumes: records.length, remounted, failed }, 'volumes mounted');
    return { volumes: records.length, remounted, failed };
  }

  async create(req: CreateVolumeRequest): Promise<VolumeRecord> {
    validateVolumeName(req.name);
    const sizeBytes = req.sizeBytes ?? 0;
    const labels = req.labels ?? {};
    checkLabels(labels);
    if (sizeBytes > 0) {
      const fs = await statfs(this.dataRoot);
      checkVolumeSize(sizeBytes, fs.blocks * fs.bsize);
    } else checkVolumeSize(sizeBytes);
    return this.locks.run(req.name, () => this.createLocked(req.name, sizeBytes, labels));
  }

  // For `-v NAME:/path`: the volume, made unsized if it does not exist (docker's way).
  async ensure(name: string): Promise<VolumeRecord> {
    validateVolumeName(name, 'volume');
    return this.locks.run(name, () => this.readyLocked(name).then(() => this.get(name)));
  }

  // The path to bind, with a sized volume's filesystem mounted there (mounted again if a
  // failed remount at start left it out): binding the bare directory instead would put
  // the container's writes on the host filesystem, unbounded.
  async prepare(name: string): Promise<string> {
    return this.locks.run(name, () => this.readyLocked(name, false));
  }

  // Runs fn with the named volumes made (if missing) and mounted, and held: a `volume rm`
  // or `prune` waits until fn returns, so a container recorded in fn as using a volume is
  // seen by the rm. Locks are taken in name order, so two callers never deadlock.
  async withVolumes<T>(
    names: readonly string[],
    fn: (paths: ReadonlyMap<string, string>) => Promise<T>,
  ): Promise<T> {
    const sorted = [...new Set(names)].sort();
    for (const n of sorted) validateVolumeName(n, 'volume');
    const paths = new Map<string, string>();
    const step = (i: number): Promise<T> => {
      const name = sorted[i];
      if (name === undefined) return fn(paths);
      return this.locks.run(name, async () => {
        paths.set(name, await this.readyLocked(name));
        return step(i + 1);
      });
    };
    return step(0);
  }

  // Bytes the volume's data takes (null for a sized volume that is not mounted) and, for
  // a sized one, whether it is mounted.
  async usage(name: string): Promise<{ usedBytes: number | null; mounted?: boolean }> {
    const v = this.get(name);
    const data = join(this.dir(name), DATA);
    if (v.sizeBytes === 0) return { usedBytes: await this.host.du(data).catch(() => null) };
    if (!mountAt(await this.host.mounts(), data)) return { usedBytes: null, mounted: false };
    const s = await statfs(data);
    return { usedBytes: (s.blocks - s.bfree) * s.bsize, mounted: true };
  }

  // Docker refuses to remove a volume a container uses, even with force; force only
  // makes a missing volume no error. Returns whether a volume was removed.
  async remove(name: string, force = false): Promise<boolean> {
    return (await this.locks.run(name, () => this.removeLocked(name, force))) !== undefined;
  }

  // Removes every volume no container uses; one that is busy on the host is skipped.
  // SpaceReclaimed is the host space the volumes took: a sized one's image as allocated.
  async prune(): Promise<VolumePruneResponse> {
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const v of this.list()) {
      if (this.usedBy(v.name).length > 0) continue;
      try {
        const bytes = await this.locks.run(v.name, () => this.removeLocked(v.name, true, true));
        if (bytes !== undefined) {
          deleted.push(v.name);
          reclaimed += bytes;
        }
      } catch (e) {
        if (!isBerthError(e, 'VOLUME_IN_USE') && !isBerthError(e, 'VOLUME_BUSY')) throw e;
        this.log.info({ volume: v.name, err: errorMessage(e) }, 'volume prune: skipped');
      }
    }
    return { VolumesDeleted: deleted, SpaceReclaimed: reclaimed };
  }

  // ---- under the volume's lock ----

  private async createLocked(
    name: string,
    sizeBytes: number,
    labels: Record<string, string>,
  ): Promise<VolumeRecord> {
    const existing = this.store.volumes.get(name);
    if (existing) {
      // As docker: creating what exists returns it, but a different size is no repeat.
      if (existing.sizeBytes === sizeBytes) return existing;
      throw new BerthError(
        'VOLUME_NAME_IN_USE',
        `Volume ${name} already exists with ${existing.sizeBytes ? `size ${formatBytes(existing.sizeBytes)}` : 'no size'}; remove it first to create it with ${sizeBytes ? `size ${formatBytes(sizeBytes)}` : 'no size'}`,
        { field: 'name' },
      );
    }
    const dir = this.dir(name);
    if (existsSync(dir))
      throw new BerthError(
        'VOLUME_NAME_IN_USE',
        `Volume ${name} has a directory (${dir}) but no record; move the directory away first`,
        { field: 'name' },
      );
    const stage = join(this.root, `${CREATING}${name}`);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    if (existsSync(stage)) await this.discard(stage);
    const data = join(stage, DATA);
    const rec: VolumeRecord = {
      name,
      createdAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      sizeBytes,
      labels,
    };
    try {
      await mkdir(stage, { mode: 0o700 });
      await mkdir(data, { mode: 0o755 });
      if (sizeBytes > 0) {
        const image = join(stage, IMAGE);
        await this.host.makeImage(image, sizeBytes);
        await this.host.mount(image, data);
        // An empty volume, as an unsized one: postgres' initdb and others refuse a
        // directory that holds lost+found. e2fsck makes it again if it ever needs it.
        await rm(join(data, 'lost+found'), { recursive: true, force: true });
      }
      // As docker's: root's, 0755, whatever the umask.
      await chmod(data, 0o755);
      this.store.tx(() => {
        this.store.volumes.insert(rec);
        this.announce('create', rec);
      });
    } catch (e) {
      await this.discard(stage).catch((c: unknown) =>
        this.log.error({ path: stage, err: errorMessage(c) }, 'volume: create left files'),
      );
      throw e;
    }
    try {
      // A rename takes the mount on _data along: mounts hang on directories, not paths.
      await rename(stage, dir);
    } catch (e) {
      this.store.tx(() => {
        this.store.volumes.delete(name);
        this.announce('destroy', rec);
      });
      await this.discard(stage).catch(() => undefined);
      throw e;
    }
    this.log.info({ volume: name, sizeBytes }, 'volume created');
    return rec;
  }

  private async readyLocked(name: string, create = true): Promise<string> {
    let v = this.store.volumes.get(name);
    if (!v && create) v = await this.createLocked(name, 0, {});
    if (!v) v = this.get(name);
    const data = join(this.dir(name), DATA);
    if (v.sizeBytes > 0 && !mountAt(await this.host.mounts(), data)) await this.remount(name);
    return data;
  }

  private async remount(name: string): Promise<void> {
    const image = join(this.dir(name), IMAGE);
    const r = await this.host.check(image);
    if (!r.ok)
      throw new BerthError('RUNTIME_FAILED', `Volume ${name}: e2fsck found errors: ${r.output}`);
    await this.host.mount(image, join(this.dir(name), DATA));
    this.log.info({ volume: name }, 'volume mounted');
  }

  // Returns undefined when there was nothing to remove, else the host bytes freed (0
  // unless measure).
  private async removeLocked(
    name: string,
    force: boolean,
    measure = false,
  ): Promise<number | undefined> {
    const v = this.store.volumes.get(name);
    if (!v) {
      if (force) return undefined;
      throw new BerthError('VOLUME_NOT_FOUND', `No such volume: ${name}`, { field: 'name' });
    }
    const users = this.usedBy(name);
    if (users.length > 0)
      throw new BerthError(
        'VOLUME_IN_USE',
        `Volume ${name} is in use by container ${users.map(short).join(', ')}`,
        { field: 'name', containers: users },
      );
    const dir = this.dir(name);
    const data = join(dir, DATA);
    const removing = join(this.root, `${REMOVING}${name}`);
    // The device, if the filesystem had to come off: to put it back should the rest fail.
    let unmounted: string | undefined;
    let bytes = 0;
    try {
      const m = v.sizeBytes > 0 ? mountAt(await this.host.mounts(), data) : undefined;
      if (m) unmounted = await this.unmountVolume(name, m, join(dir, IMAGE), data);
      // After the unmount, which writes back what the page cache held for the image.
      if (measure) bytes = await this.hostBytes(v).catch(() => 0);
      if (existsSync(removing)) await this.discard(removing);
      if (existsSync(dir)) {
        const under = mountsUnder(await this.host.mounts(), dir);
        if (under.length > 0)
          throw new BerthError(
            'VOLUME_BUSY',
            `Volume ${name} is busy: ${under[0]?.mountPoint} is mounted; it stays as it is`,
          );
        await rename(dir, removing);
      } else {
        this.log.warn({ volume: name }, 'volume: directory already gone');
      }
      try {
        this.store.tx(() => {
          this.store.volumes.delete(name);
          this.announce('destroy', v);
        });
      } catch (e) {
        if (existsSync(removing)) await rename(removing, dir);
        throw e;
      }
    } catch (e) {
      if (unmounted !== undefined && existsSync(data))
        await this.host
          .mount(unmounted, data)
          .catch((c: unknown) =>
            this.log.error({ volume: name, err: errorMessage(c) }, 'volume: cannot mount again'),
          );
      throw e;
    }
    await this.discard(removing).catch((e: unknown) =>
      this.log.warn({ path: removing, err: errorMessage(e) }, 'volume: files left to remove'),
    );
    this.log.info({ volume: name }, 'volume removed');
    return bytes;
  }

  // Unmounts a sized volume's filesystem for good, or throws VOLUME_BUSY with it still
  // mounted. Returns what to mount to put it back.
  private async unmountVolume(
    name: string,
    m: MountEntry,
    image: string,
    data: string,
  ): Promise<string> {
    // A container being set up holds a copy of every host mount for a moment (between
    // its unshare and its pivot_root): a holder counts only if it stays.
    const deadline = Date.now() + this.detachWaitMs;
    let holders = await this.host.holders(m.majorMinor);
    while (holders.length > 0 && Date.now() < deadline) {
      await sleep(50);
      holders = await this.host.holders(m.majorMinor);
    }
    if (holders.length > 0)
      throw new BerthError(
        'VOLUME_BUSY',
        `Volume ${name} is busy: its filesystem is mounted in another mount namespace (pid ${holders.join(', ')}); it stays mounted`,
        { field: 'name', pids: holders },
      );
    if ((await this.host.unmount(data)) === 'busy')
      throw new BerthError(
        'VOLUME_BUSY',
        `Volume ${name} is busy: a process has files open or its working directory in ${data}; it stays mounted`,
        { field: 'name' },
      );
    // The loop device goes with the filesystem's last user. Still there means a user we
    // could not see: put the filesystem back, on the same device, and say so.
    const detachBy = Date.now() + this.detachWaitMs;
    while (this.host.backingFile(m.source) === image) {
      if (Date.now() >= detachBy) {
        await this.host.mount(m.source, data);
        throw new BerthError(
          'VOLUME_BUSY',
          `Volume ${name} is busy: ${m.source} stayed attached after the unmount (its filesystem is held elsewhere); it stays mounted`,
          { field: 'name' },
        );
      }
      await sleep(20);
    }
    return image;
  }

  // ---- helpers ----

  private announce(action: 'create' | 'destroy', v: VolumeRecord): void {
    this.events.append({
      type: 'volume',
      action,
      actorId: v.name,
      attributes: {
        driver: 'local',
        ...(v.sizeBytes > 0 ? { size: String(v.sizeBytes) } : {}),
      },
    });
  }

  // Host bytes the volume takes: a sized one's image as allocated, not its size.
  private async hostBytes(v: VolumeRecord): Promise<number> {
    if (v.sizeBytes === 0) return this.host.du(join(this.dir(v.name), DATA));
    return (await stat(join(this.dir(v.name), IMAGE))).blocks * 512;
  }

  // Deletes a directory of the volumes tree, unmounting what is mounted in it first. It
  // never deletes through a mount: data in a filesystem that will not come off stays.
  private async discard(path: string): Promise<void> {
    const mounted = mountsUnder(await this.host.mounts(), path).sort(
      (a, b) => b.mountPoint.length - a.mountPoint.length,
    );
    for (const m of mounted) {
      if ((await this.host.unmount(m.mountPoint)) === 'busy')
        throw new BerthError('VOLUME_BUSY', `Cannot remove ${path}: ${m.mountPoint} is busy`);
    }
    if (mountsUnder(await this.host.mounts(), path).length > 0)
      throw new BerthError(
        'VOLUME_BUSY',
        `Cannot remove ${path}: something is still mounted in it`,
      );
    await rm(path, { recursive: true, force: true });
  }
}
