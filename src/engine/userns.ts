// User namespaces (--userns=auto): each such container's root is an unprivileged host uid.
// berthd hands every container a range of its own, 65536 ids, from a pool, recorded in the
// store with the container (so two containers never overlap, and a range survives berthd
// restarts and is freed with the container); the bundle maps the container's ids 0..65535
// onto it, and the monitor mounts the image's shared layers idmapped into it before each
// run (monitor/PROTOCOL.md "User namespaces").
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mountAt, readMounts, unmount } from '../runtime/loopfs.ts';
import type { MountpointRoot } from '../runtime/writable-root.ts';
import type { Store } from '../store/index.ts';
import type { ContainerRecord, UsernsMapping } from '../types/domain.ts';
import { BerthError, invalid } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';
import type { ImageService } from './images.ts';

export type UsernsMode = 'auto' | 'host';

// Ids per container: a full 16-bit range, so every id an image may use (nobody's 65534
// included) is mapped.
export const USERNS_RANGE = 65536;

// The user whose /etc/subuid and /etc/subgid entries, if both exist, are the pool.
export const USERNS_USER = 'berth';

// The pool when neither --userns-pool nor a subordinate entry for `berth` says: from 10^8,
// far above the ids of users and services and the subordinate ranges useradd hands out
// from 100000 (it would take ~1500 users to reach it), for 2*10^9 ids (30517 containers),
// ending below 2^31, where tools that keep ids in signed 32-bit integers would break.
// Hosts that also run systemd-nspawn --private-users=pick or similar allocators should
// give berth a range of its own (--userns-pool, or a `berth` entry in /etc/subuid).
export const DEFAULT_USERNS_POOL: UsernsPool = {
  uidStart: 100_000_000,
  gidStart: 100_000_000,
  count: 2_000_000_000,
};

const MAX_ID = 0xfffffffe; // (uid_t)-1 is not an id

export interface UsernsPool {
  readonly uidStart: number;
  readonly gidStart: number;
  readonly count: number;
}

export interface UsernsOptions {
  // For a create that does not say (Docker's default: the host's).
  readonly defaultMode: UsernsMode;
  readonly pool: UsernsPool;
}

export function parseUsernsMode(v: string, field: string): UsernsMode {
  if (v === 'auto' || v === 'host') return v;
  throw invalid(field, `"${v}" must be auto or host`);
}

// START:COUNT, for uids and gids alike; COUNT at least one range.
export function parseUsernsPool(v: string, field = 'userns-pool'): UsernsPool {
  const m = /^(\d{1,10}):(\d{1,10})$/.exec(v);
  const start = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < USERNS_RANGE || start < 1 || start + count - 1 > MAX_ID)
    throw invalid(
      field,
      `"${v}" must be START:COUNT with START >= 1, COUNT >= ${USERNS_RANGE} and START+COUNT <= 2^32-1`,
    );
  return { uidStart: start, gidStart: start, count };
}

// NAME:START:COUNT lines of /etc/subuid or /etc/subgid for a user (the first entry).
export function subordinateRange(
  text: string,
  user: string,
): { start: number; count: number } | undefined {
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name === user && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? ''))
      return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// The daemon's options: --userns-default and --userns-pool, else the `berth` user's
// subordinate ranges, else DEFAULT_USERNS_POOL. `source` says which, for the log; `warnings`
// name other users' subordinate ranges the pool overlaps.
export function usernsOptions(
  defaultMode: string,
  pool: string | undefined,
  etc = '/etc',
): { options: UsernsOptions; source: string; warnings: string[] } {
  const mode = parseUsernsMode(defaultMode, 'userns-default');
  const subuid = readOr(join(etc, 'subuid'));
  const subgid = readOr(join(etc, 'subgid'));
  let p: UsernsPool;
  let source: string;
  const u = subordinateRange(subuid, USERNS_USER);
  const g = subordinateRange(subgid, USERNS_USER);
  if (pool !== undefined) {
    p = parseUsernsPool(pool);
    source = '--userns-pool';
  } else if (u && g && Math.min(u.count, g.count) >= USERNS_RANGE) {
    p = { uidStart: u.start, gidStart: g.start, count: Math.min(u.count, g.count) };
    source = `${USERNS_USER} in ${join(etc, 'subuid')} and ${join(etc, 'subgid')}`;
  } else {
    p = DEFAULT_USERNS_POOL;
    source = 'built-in default';
  }
  const warnings: string[] = [];
  for (const [file, text, start] of [
    ['subuid', subuid, p.uidStart],
    ['subgid', subgid, p.gidStart],
  ] as const) {
    for (const line of text.split('\n')) {
      const [name, s, c] = line.trim().split(':');
      if (!name || name === USERNS_USER || !/^\d+$/.test(s ?? '') || !/^\d+$/.test(c ?? ''))
        continue;
      if (Number(s) < start + p.count && start < Number(s) + Number(c))
        warnings.push(`${join(etc, file)}: ${name}'s range ${s}:${c} overlaps the userns pool`);
    }
  }
  return { options: { defaultMode: mode, pool: p }, source, warnings };
}

export class UsernsAllocator {
  private readonly store: Store;
  readonly options: UsernsOptions;

  constructor(store: Store, options: UsernsOptions) {
    this.store = store;
    this.options = options;
  }

  // The mode a create gets. As Docker refuses with a remapped root, a user namespace does
  // not go with the host's network namespace (its root would hold no privilege over it,
  // and /sys could not be the container's) nor with --privileged.
  mode(
    req: { readonly userns?: string | undefined; readonly privileged?: boolean | undefined },
    networkMode: string,
  ): UsernsMode {
    const explicit = req.userns !== undefined && req.userns !== '';
    const mode = explicit
      ? parseUsernsMode(req.userns as string, 'userns')
      : this.options.defaultMode;
    if (mode === 'host') return mode;
    const hint = explicit ? '' : ' (the daemon default); add --userns=host';
    if (networkMode === 'host')
      throw invalid('userns', `auto${hint} conflicts with the host's network (--network host)`);
    if (networkMode === 'container')
      throw invalid(
        'userns',
        `auto${hint} conflicts with sharing another container's network (each container has a user namespace of its own)`,
      );
    if (req.privileged) throw invalid('userns', `auto${hint} conflicts with privileged`);
    return mode;
  }

  // A container's record with its range, when it gets one. Called inside the create's
  // transaction, before the row is inserted: the range is taken in the same commit.
  assign(rec: ContainerRecord, mode: UsernsMode): ContainerRecord {
    if (mode === 'host') return rec;
    const userns = this.allocate(rec.id);
    return { ...rec, config: { ...rec.config, userns } };
  }

  // The lowest free range of the pool: one that overlaps no container's range (a range
  // taken from an earlier pool included), for uids and for gids.
  allocate(containerId: string): UsernsMapping {
    const { uidStart, gidStart, count } = this.options.pool;
    const slots = Math.floor(count / USERNS_RANGE);
    const taken = new Set<number>();
    const mark = (start: number, base: number, size: number) => {
      const from = Math.max(0, Math.floor((base - start) / USERNS_RANGE));
      const to = Math.min(slots - 1, Math.floor((base + size - 1 - start) / USERNS_RANGE));
      for (let k = from; k <= to; k++) taken.add(k);
    };
    for (const r of this.store.userns.list()) {
      mark(uidStart, r.uidBase, r.size);
      mark(gidStart, r.gidBase, r.size);
    }
    for (let k = 0; k < slots; k++) {
      if (taken.has(k)) continue;
      const m: UsernsMapping = {
        uidBase: uidStart + k * USERNS_RANGE,
        gidBase: gidStart + k * USERNS_RANGE,
        size: USERNS_RANGE,
      };
      this.store.userns.insert({ containerId, ...m });
      return m;
    }
    throw new BerthError(
      'USERNS_EXHAUSTED',
      `Cannot create a container with --userns=auto: all ${slots} ranges of ${USERNS_RANGE} ids in the pool ${uidStart}:${count} are taken`,
    );
  }
}

// The directories the monitor mounts idmapped, topmost first: the image's layers under
// the init layer, or the one directory of an image from before layered images.
export async function usernsLowers(
  images: ImageService,
  store: Store,
  imageId: string,
): Promise<string[]> {
  const img = store.images.byId(imageId);
  if (!img?.meta) return [await images.root(imageId)];
  return images.roots.lowerDirs(
    store.images.layersOf(imageId).map((l) => images.layers.relPath(l.n)),
  );
}

export interface UsernsRootInput {
  readonly mapping: UsernsMapping;
  // The root's mount point (`<run root>/mnt/<id>/rootfs`) and, for a root that needs mount
  // points or a writable one, the overlay's upper directory.
  readonly merged: string;
  readonly mountpointRoot: MountpointRoot | undefined;
  readonly writableUpper: string | undefined;
  // The container's own files in its bundle (its /etc/hosts, ..., /run/berth).
  readonly ownFiles: readonly string[];
  // Named volumes it mounts.
  readonly volumes: readonly string[];
  // berthd's run root: directories from here down are berthd's to open for traversal.
  readonly runRoot: string;
}

// Readies the host side for a container in a user namespace, before each start. Returns
// the root the monitor mounts (for a plain read-only root: no upper, `LOWER:::MERGED`).
//  - The root is always the container's own overlay (of the idmapped layers), never the
//    shared image root: runc, running as the container's root, bind-mounts it by path, so
//    every directory above it must be searchable by others (berthd's own are made 0711).
//  - The upper's root directory is the container root's, so `/` is root's inside.
//  - Bundle files it sees are chowned to its root (runc opens them as the host's root; inside
//    they would show as nobody).
//  - A named volume that is still empty and the host root's becomes the container root's,
//    so a new volume is writable as with Docker's; one in use keeps its owner.
export async function prepareUsernsRoot(i: UsernsRootInput): Promise<MountpointRoot> {
  const { uidBase: uid, gidBase: gid } = i.mapping;
  await mkdir(i.merged, { recursive: true, mode: 0o755 });
  await ensureSearchable(i.merged, i.runRoot);
  const upper = i.writableUpper ?? i.mountpointRoot?.upper;
  if (upper) await chown(upper, uid, gid);
  for (const f of i.ownFiles) await chown(f, uid, gid);
  for (const v of i.volumes) {
    const st = await stat(v);
    if (st.isDirectory() && st.uid === 0 && st.gid === 0 && (await readdir(v)).length === 0)
      await chown(v, uid, gid);
  }
  return i.mountpointRoot ?? { upper: '', work: '', merged: i.merged };
}

// Makes sure an unprivileged uid can reach path: directories at or under `ours` get o+x,
// any other that lacks it is an error that says what to change.
export async function ensureSearchable(path: string, ours: string): Promise<void> {
  const dirs: string[] = [];
  for (let d = dirname(path); ; d = dirname(d)) {
    dirs.unshift(d);
    if (d === dirname(d)) break;
  }
  for (const d of dirs) {
    const st = await lstat(d);
    const mode = st.isSymbolicLink() ? (await stat(d)).mode : st.mode;
    if (mode & 0o001) continue;
    if (d === ours || d.startsWith(`${ours}/`)) {
      await chmod(d, (mode & 0o7777) | 0o011);
      continue;
    }
    throw new BerthError(
      'RUNTIME_FAILED',
      `Cannot start a container with --userns=auto: ${d} (mode ${(mode & 0o7777).toString(8)}) is not searchable by other users, and the container's root needs to reach ${path} (make it o+x, like 0711)`,
    );
  }
}

// ---- the namespaces ----

// The container's user namespace is made by berthd, not by runc, and kept (a bind mount,
// as `ip netns` keeps a network namespace) while the container runs, restarts by its
// monitor included: its network namespace on a berth network must be one this user
// namespace owns, or runc (1.1), which joins the user namespace first, could not join the
// network namespace for an exec. runc joins both by path.
export function usernsFile(mntDir: string): string {
  return join(mntDir, 'userns');
}

// Makes the user namespace unless it is there; true if it made it (then nothing made in an
// earlier one, such as a network namespace, belongs to it).
export async function ensureUserns(
  monitor: string,
  m: UsernsMapping,
  path: string,
): Promise<boolean> {
  if (mountAt(await readMounts(), path)) return false;
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await rm(path, { force: true });
  await execFile(
    [monitor, 'userns-create', '--idmap', `${m.uidBase}:${m.gidBase}:${m.size}`, '--path', path],
    { timeoutMs: 30_000 },
  );
  return true;
}

// A network namespace owned by the user namespace at userns, kept at path.
export async function makeNetnsIn(monitor: string, userns: string, path: string): Promise<void> {
  await execFile([monitor, 'netns-create', '--userns', userns, '--path', path], {
    timeoutMs: 30_000,
  });
}

// Lets the user namespace go (it lives on while a process or a network namespace of its
// own holds it). Idempotent.
export async function releaseUserns(path: string): Promise<void> {
  if (mountAt(await readMounts(), path) && (await unmount(path)) === 'busy')
    throw new BerthError('RUNTIME_FAILED', `${path} is busy; it stays mounted`);
  await rm(path, { force: true });
}

// Before each start by berthd: the container's user namespace, and how its network
// namespace is to be made in it. A new user namespace means a network namespace left from
// an earlier one (a crash between the two releases) is dropped first (disconnect), so the
// network makes one this namespace owns.
export async function startUserns(
  c: ContainerRecord,
  monitor: string,
  mntDir: string,
  disconnect: () => Promise<void>,
): Promise<{ readonly path: string; makeNetns(path: string): Promise<void> } | undefined> {
  const m = c.config.userns;
  if (!m) return undefined;
  const path = usernsFile(mntDir);
  if (await ensureUserns(monitor, m, path)) await disconnect();
  return { path, makeNetns: (netns) => makeNetnsIn(monitor, path, netns) };
}
