// docker run's -v, --mount, --tmpfs and --shm-size, and berth's --read-write,
// --writable-size and --ephemeral, turned into the API's create fields. Like podman's,
// -v and --mount also take noexec, nosuid and nodev.
import type { Command } from 'commander';
import type { CreateContainerRequest, MountRequest } from '../types/api.ts';
import { BerthError } from '../util/errors.ts';
import { parseSize } from '../util/size.ts';

export interface MountFlags {
  volume: string[];
  mount: string[];
  tmpfs: string[];
  shmSize?: string;
  readWrite?: boolean;
  writableSize?: string;
  ephemeral?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];
const FLAGS = new Set(['noexec', 'nosuid', 'nodev', 'exec', 'suid', 'dev']);

export function addMountOptions(c: Command): Command {
  return c
    .option(
      '-v, --volume <src:dst[:opts]>',
      'bind a host path or a named volume (ro, noexec, ...)',
      collect,
      [],
    )
    .option('--mount <type=..,source=..,target=..>', 'a bind, volume or tmpfs mount', collect, [])
    .option('--tmpfs <path[:opts]>', 'a tmpfs (size=64m,mode=1777,exec,...)', collect, [])
    .option('--shm-size <size>', 'size of /dev/shm (default 64m)')
    .option('--read-write', 'a writable root filesystem (size-capped overlay on the image)')
    .option('--writable-size <size>', 'cap of the writable root (default: the daemon default)')
    .option('--ephemeral', 'reset the writable root to the image on every start and restart');
}

function bad(field: string, msg: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${msg}`, { field });
}

function parseVolume(v: string): MountRequest {
  const parts = v.split(':');
  if (
    parts.length === 1 ||
    (parts.length === 2 && /^[a-z,]+$/.test(parts[1] ?? '') && !parts[1]?.startsWith('/'))
  )
    throw bad('volume', `"${v}": anonymous volumes are not supported; give SOURCE:TARGET`);
  if (parts.length > 3) throw bad('volume', `"${v}" is not SOURCE:TARGET[:OPTIONS]`);
  const [source = '', target = '', opts = ''] = parts;
  const m: MountRequest = {
    type: source.startsWith('/') ? 'bind' : 'volume',
    source,
    target,
    createHostPath: true,
  };
  const flags: string[] = [];
  for (const o of opts ? opts.split(',') : []) {
    if (o === 'ro' || o === 'readonly') m.readOnly = true;
    else if (o === 'rw') m.readOnly = false;
    else if (FLAGS.has(o)) flags.push(o);
    else throw bad('volume', `"${o}" in "${v}" is not ro, rw, noexec, nosuid or nodev`);
  }
  if (flags.length > 0) m.options = flags;
  return m;
}

function parseMount(v: string): MountRequest {
  const m: MountRequest = { type: 'volume', target: '' };
  const flags: string[] = [];
  for (const kv of v.split(',')) {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i);
    const val = i < 0 ? undefined : kv.slice(i + 1);
    switch (k) {
      case 'type':
        m.type = val ?? '';
        break;
      case 'source':
      case 'src':
        m.source = val ?? '';
        break;
      case 'target':
      case 'destination':
      case 'dst':
        m.target = val ?? '';
        break;
      case 'readonly':
      case 'ro':
        if (val !== undefined && !['true', 'false', '1', '0'].includes(val))
          throw bad('mount', `readonly=${val} is not true or false`);
        m.readOnly = val === undefined || val === 'true' || val === '1';
        break;
      case 'tmpfs-size':
        m.sizeBytes = parseSize(val ?? '', 'mount tmpfs-size');
        break;
      case 'tmpfs-mode':
        m.mode = val ?? '';
        break;
      default:
        if (FLAGS.has(k) && val === undefined) flags.push(k);
        else throw bad('mount', `unknown key "${k}" in "${v}"`);
    }
  }
  if (flags.length > 0) m.options = flags;
  return m;
}

function parseTmpfs(v: string): MountRequest {
  const i = v.indexOf(':');
  const m: MountRequest = { type: 'tmpfs', target: i < 0 ? v : v.slice(0, i) };
  const flags: string[] = [];
  for (const o of i < 0 ? [] : v.slice(i + 1).split(',')) {
    if (o.startsWith('size=')) m.sizeBytes = parseSize(o.slice(5), 'tmpfs size');
    else if (o.startsWith('mode=')) m.mode = o.slice(5);
    else if (o === 'ro') m.readOnly = true;
    else if (o === 'rw') m.readOnly = false;
    else if (FLAGS.has(o)) flags.push(o);
    else
      throw bad(
        'tmpfs',
        `"${o}" in "${v}" is not size=, mode=, ro, rw, [no]exec, [no]suid or [no]dev`,
      );
  }
  if (flags.length > 0) m.options = flags;
  return m;
}

export function applyMountFlags(req: CreateContainerRequest, f: MountFlags): void {
  const mounts = [
    ...f.volume.map(parseVolume),
    ...f.mount.map(parseMount),
    ...f.tmpfs.map(parseTmpfs),
  ];
  if (mounts.length > 0) req.mounts = mounts;
  if (f.shmSize !== undefined) req.shmSizeBytes = parseSize(f.shmSize, 'shm-size');
  if (f.readWrite) req.readWrite = true;
  if (f.writableSize !== undefined)
    req.writableSizeBytes = parseSize(f.writableSize, 'writable-size');
  if (f.ephemeral) req.ephemeral = true;
}
