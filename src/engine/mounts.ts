// Mounts a container asks for (-v, --mount, --tmpfs), checked at the API edge and turned
// into OCI mounts. Every tmpfs is sized: a default, never above the memory limit (its
// pages are charged to the container's memory cgroup anyway).
import { posix } from 'node:path';
import type { TmpfsMount } from '../runtime/spec.ts';
import type { MountSpec } from '../types/domain.ts';
import type { MountRequest } from '../types/api.ts';
import { invalid } from '../util/errors.ts';

import { VOLUME_NAME_RE as VOLUME_NAME } from './volumes.ts';
const FLAGS = ['noexec', 'nosuid', 'nodev', 'exec', 'suid', 'dev'] as const;
const OPPOSITE: Record<string, string> = {
  exec: 'noexec',
  noexec: 'exec',
  suid: 'nosuid',
  nosuid: 'suid',
  dev: 'nodev',
  nodev: 'dev',
};
export const DEFAULT_TMPFS_BYTES = 64 * 1024 * 1024;

export function checkMounts(reqs: readonly MountRequest[] | undefined): MountSpec[] {
  const out: MountSpec[] = [];
  const seen = new Set<string>();
  (reqs ?? []).forEach((r, i) => {
    const f = (k: string) => `mounts[${i}].${k}`;
    if (r.type !== 'bind' && r.type !== 'volume' && r.type !== 'tmpfs')
      throw invalid(f('type'), `"${r.type}" is not bind, volume or tmpfs`);
    if (!r.target || !r.target.startsWith('/'))
      throw invalid(f('target'), `"${r.target}" is not an absolute path`);
    const target = posix.normalize(r.target).replace(/\/+$/, '') || '/';
    if (target === '/') throw invalid(f('target'), 'cannot mount over /');
    if (seen.has(target)) throw invalid(f('target'), `${target} is mounted twice`);
    seen.add(target);
    const flags = r.options ?? [];
    for (const o of flags) {
      if (!(FLAGS as readonly string[]).includes(o))
        throw invalid(f('options'), `"${o}" is not one of ${FLAGS.join(', ')}`);
      if (flags.includes(OPPOSITE[o] as string))
        throw invalid(f('options'), `"${o}" and "${OPPOSITE[o]}" contradict`);
    }
    const source = r.source ?? '';
    if (r.type === 'bind' && !source.startsWith('/'))
      throw invalid(f('source'), `"${source}" is not an absolute host path`);
    if (r.type === 'volume' && !VOLUME_NAME.test(source))
      throw invalid(
        f('source'),
        source
          ? `"${source}" is not a volume name (${VOLUME_NAME.source})`
          : 'a volume needs a name (anonymous volumes are not supported)',
      );
    if (r.type === 'tmpfs' && source) throw invalid(f('source'), 'a tmpfs has no source');
    if (r.type !== 'tmpfs' && (r.sizeBytes !== undefined || r.mode !== undefined))
      throw invalid(f('sizeBytes'), 'only a tmpfs takes a size and a mode');
    if (r.sizeBytes !== undefined && !(Number.isInteger(r.sizeBytes) && r.sizeBytes >= 4096))
      throw invalid(f('sizeBytes'), 'must be at least 4k');
    if (r.mode !== undefined && !/^[0-7]{3,4}$/.test(r.mode))
      throw invalid(f('mode'), `"${r.mode}" is not an octal mode like 1777`);
    out.push({
      type: r.type,
      source: r.type === 'bind' ? posix.normalize(source) : source,
      target,
      readOnly: r.readOnly ?? false,
      flags: [...flags],
      ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
      ...(r.mode !== undefined ? { mode: r.mode } : {}),
    });
  });
  return out;
}

function capped(size: number, memory: number | undefined): number {
  return memory && memory > 0 ? Math.min(size, memory) : size;
}

// The default tmpfs mounts, each under the memory limit, minus those a mount replaces.
export function defaultTmpfs(
  defaults: readonly TmpfsMount[],
  memory: number | undefined,
  mounts: readonly MountSpec[],
): TmpfsMount[] {
  const taken = new Set(mounts.map((m) => m.target));
  return defaults
    .filter((t) => !taken.has(t.path))
    .map((t) => ({ ...t, sizeBytes: capped(t.sizeBytes, memory) }));
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

// Docker's defaults: a bind is rbind and rprivate, a tmpfs nosuid, nodev and noexec; a
// flag the user gives wins over the default it contradicts.
export function ociMounts(
  mounts: readonly MountSpec[],
  volumePath: (name: string) => string,
  memory: number | undefined,
): OciMount[] {
  return mounts.map((m) => {
    const user = m.flags.filter((o) => o.startsWith('no'));
    if (m.type === 'tmpfs') {
      const defaults = ['nosuid', 'nodev', 'noexec'].filter(
        (d) => !m.flags.includes(OPPOSITE[d] as string),
      );
      return {
        destination: m.target,
        type: 'tmpfs',
        source: 'tmpfs',
        options: [
          ...new Set([...defaults, ...user]),
          m.readOnly ? 'ro' : 'rw',
          `mode=${m.mode ?? '1777'}`,
          `size=${capped(m.sizeBytes ?? DEFAULT_TMPFS_BYTES, memory)}`,
        ],
      };
    }
    return {
      destination: m.target,
      type: 'bind',
      source: m.type === 'bind' ? m.source : volumePath(m.source),
      options: ['rbind', 'rprivate', m.readOnly ? 'ro' : 'rw', ...user],
    };
  });
}
