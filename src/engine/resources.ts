// Limits as asked for (docker's flags) checked against this host and turned into what the
// kernel takes. Refused here, with the field named, rather than by runc at start.
import { cpus as hostCpus } from 'node:os';
import { readFileSync } from 'node:fs';
import type { ResourcesRequest } from '../types/api.ts';
import type { Resources, Ulimit } from '../types/domain.ts';
import { invalid } from '../util/errors.ts';

const MIN_MEMORY = 6 * 1024 * 1024; // docker's floor: below it a container cannot even start
const CPU_PERIOD = 100_000;

// rlimit names docker accepts for --ulimit, and the line of /proc/self/limits for each.
const RLIMITS: Record<string, string> = {
  core: 'Max core file size',
  cpu: 'Max cpu time',
  data: 'Max data size',
  fsize: 'Max file size',
  locks: 'Max file locks',
  memlock: 'Max locked memory',
  msgqueue: 'Max msgqueue size',
  nice: 'Max nice priority',
  nofile: 'Max open files',
  nproc: 'Max processes',
  rss: 'Max resident set',
  rtprio: 'Max realtime priority',
  rttime: 'Max realtime timeout',
  sigpending: 'Max pending signals',
  stack: 'Max stack size',
};

export interface HostLimits {
  readonly cpus: number;
  readonly cpuset: ReadonlySet<number>;
  // Hard rlimits of berthd (and so of every runc it starts): without CAP_SYS_RESOURCE a
  // container cannot be given more.
  readonly hardRlimits: Readonly<Record<string, number>>;
  readonly blkioWeight: boolean;
}

export function parseCpuList(s: string, field: string): Set<number> {
  const out = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw invalid(field, `"${s}" is not a CPU list (like 0-2,4)`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw invalid(field, `"${part}" is a descending range`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return out;
}

export function readHostLimits(proc = '/proc', cgroupRoot = '/sys/fs/cgroup'): HostLimits {
  const hardRlimits: Record<string, number> = {};
  try {
    const text = readFileSync(`${proc}/self/limits`, 'utf8');
    for (const [name, label] of Object.entries(RLIMITS)) {
      const m = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, 'm').exec(text);
      hardRlimits[name] = m?.[1] === undefined || m[1] === 'unlimited' ? Infinity : Number(m[1]);
    }
  } catch {
    /* unknown: no ceiling checked */
  }
  let cpuset = new Set<number>(hostCpus().map((_, i) => i));
  for (const f of [`${cgroupRoot}/cpuset/cpuset.cpus`, `${cgroupRoot}/cpuset.cpus.effective`]) {
    try {
      cpuset = parseCpuList(readFileSync(f, 'utf8').trim(), 'cpuset');
      break;
    } catch {
      /* next */
    }
  }
  const has = (f: string) => {
    try {
      readFileSync(f);
      return true;
    } catch {
      return false;
    }
  };
  const blkioWeight =
    has(`${cgroupRoot}/blkio/blkio.weight`) ||
    has(`${cgroupRoot}/blkio/blkio.bfq.weight`) ||
    has(`${cgroupRoot}/io.weight`);
  return { cpus: hostCpus().length, cpuset, hardRlimits, blkioWeight };
}

function whole(v: number, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw invalid(field, `${v} must be a whole number from ${min} to ${max}`);
  return v;
}

export function checkResources(
  r: ResourcesRequest,
  host: HostLimits,
  base: Resources = {},
): Resources {
  const out: { -readonly [K in keyof Resources]: Resources[K] } = { ...base };
  if (r.memory !== undefined) {
    if (r.memory === 0) delete out.memory;
    else if (!Number.isInteger(r.memory) || r.memory < MIN_MEMORY) {
      throw invalid(
        'memory',
        `${r.memory} bytes is below the minimum of 6m a container needs to start`,
      );
    } else out.memory = r.memory;
  }
  if (r.memoryReservation !== undefined)
    out.memoryReservation = whole(r.memoryReservation, 'memory-reservation', 0);
  if (r.memorySwap !== undefined) {
    if (r.memorySwap !== -1) whole(r.memorySwap, 'memory-swap', 0);
    out.memorySwap = r.memorySwap;
  }
  if (out.memory !== undefined) {
    if (out.memoryReservation !== undefined && out.memoryReservation > out.memory) {
      throw invalid('memory-reservation', 'must not be above the memory limit');
    }
    // docker: without --memory-swap a container may swap as much again as its memory.
    if (out.memorySwap === undefined) out.memorySwap = 2 * out.memory;
    if (out.memorySwap !== -1 && out.memorySwap < out.memory) {
      throw invalid('memory-swap', 'must be at least the memory limit (memory plus swap), or -1');
    }
  } else if (r.memorySwap !== undefined && r.memorySwap !== -1) {
    throw invalid('memory-swap', 'needs a memory limit');
  }
  if (r.cpus !== undefined) {
    if (!(r.cpus >= 0.01 && r.cpus <= host.cpus))
      throw invalid('cpus', `${r.cpus} must be from 0.01 to ${host.cpus} (this host's CPUs)`);
    out.cpuPeriod = CPU_PERIOD;
    out.cpuQuota = Math.round(r.cpus * CPU_PERIOD);
  }
  if (r.cpuShares !== undefined) out.cpuShares = whole(r.cpuShares, 'cpu-shares', 2, 262144);
  if (r.cpusetCpus !== undefined) {
    const want = parseCpuList(r.cpusetCpus, 'cpuset-cpus');
    for (const c of want) {
      if (!host.cpuset.has(c))
        throw invalid(
          'cpuset-cpus',
          `CPU ${c} is not available on this host (${[...host.cpuset].join(',')})`,
        );
    }
    out.cpusetCpus = r.cpusetCpus;
  }
  if (r.pidsLimit !== undefined) {
    if (!Number.isInteger(r.pidsLimit))
      throw invalid('pids-limit', `${r.pidsLimit} is not a whole number`);
    out.pidsLimit = r.pidsLimit <= 0 ? -1 : r.pidsLimit;
  }
  if (r.blkioWeight !== undefined) {
    if (!host.blkioWeight)
      throw invalid('blkio-weight', 'this kernel has no block I/O weight (no CFQ/BFQ scheduler)');
    out.blkioWeight = whole(r.blkioWeight, 'blkio-weight', 10, 1000);
  }
  if (r.ulimits !== undefined) {
    const seen = new Map<string, Ulimit>();
    for (const u of r.ulimits) {
      const field = `ulimit ${u.name}`;
      if (!(u.name in RLIMITS))
        throw invalid('ulimit', `unknown limit "${u.name}" (${Object.keys(RLIMITS).join(', ')})`);
      whole(u.soft, field, 0);
      whole(u.hard, field, 0);
      if (u.soft > u.hard)
        throw invalid(field, `soft limit ${u.soft} is above the hard limit ${u.hard}`);
      const ceiling = host.hardRlimits[u.name] ?? Infinity;
      if (u.hard > ceiling) {
        throw invalid(
          field,
          `hard limit ${u.hard} is above this host's ${ceiling} (raising it needs CAP_SYS_RESOURCE)`,
        );
      }
      seen.set(u.name, u);
    }
    out.ulimits = [...seen.values()];
  }
  return out;
}
