// Docker's stats object from berth's sampler. Docker's clients compute CPU % from two
// readings in one object: (cpu delta / system delta) * online CPUs. berth's sampler already
// has the container's CPU % over the last second, so precpu_stats is that second before:
// the container's usage minus what it used in it, the host's minus a second of every CPU.
// The client then shows exactly the sampler's figure, from the first object on (podman's
// first objects showed 0 or nonsense). memory_stats.stats is the cgroup's own memory.stat,
// so the client subtracts inactive file pages as it does with dockerd.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { ContainerStats } from '../../engine/index.ts';
import type { ContainerRecord } from '../../types/domain.ts';
import { ZERO_TIME } from '../../util/time.ts';
import { cgroupVersion } from './system.ts';

const CGROUP_ROOT = '/sys/fs/cgroup';
const WINDOW_NS = 1e9;
const CLK_TCK = 100;

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

// The host's CPU time over all CPUs in ns, as dockerd reads it (the cpu line of /proc/stat).
function systemCpuNs(): number {
  const line = readOr('/proc/stat')?.split('\n')[0] ?? '';
  const ticks = line
    .trim()
    .split(/\s+/)
    .slice(1, 8)
    .reduce((a, v) => a + (Number(v) || 0), 0);
  return (ticks * 1e9) / CLK_TCK;
}

function memoryStat(cgroupsPath: string): Record<string, number> {
  const v2 = cgroupVersion() === '2';
  const text = readOr(
    v2
      ? join(CGROUP_ROOT, cgroupsPath, 'memory.stat')
      : join(CGROUP_ROOT, 'memory', cgroupsPath, 'memory.stat'),
  );
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

function percpu(cgroupsPath: string): number[] | undefined {
  if (cgroupVersion() === '2') return undefined;
  const text = readOr(join(CGROUP_ROOT, 'cpuacct', cgroupsPath, 'cpuacct.usage_percpu'));
  if (!text) return undefined;
  return text
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((v) => Number(v) || 0);
}

export function dockerStats(
  c: ContainerRecord,
  s: ContainerStats | undefined,
  cgroupsPath: string,
): Record<string, unknown> {
  const ncpu = cpus().length;
  if (!s) {
    return {
      read: ZERO_TIME,
      preread: ZERO_TIME,
      name: `/${c.name}`,
      id: c.id,
      pids_stats: {},
      blkio_stats: {
        io_service_bytes_recursive: null,
        io_serviced_recursive: null,
        io_queue_recursive: null,
        io_service_time_recursive: null,
        io_wait_time_recursive: null,
        io_merged_recursive: null,
        io_time_recursive: null,
        sectors_recursive: null,
      },
      num_procs: 0,
      storage_stats: {},
      cpu_stats: {
        cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
        throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
      },
      precpu_stats: {
        cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
        throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
      },
      memory_stats: {},
    };
  }
  const total = Math.round(s.cpuSeconds * 1e9);
  const used = Math.round((s.cpuPercent / 100) * WINDOW_NS);
  const system = Math.round(systemCpuNs());
  const pre = Math.max(0, total - used);
  const per = percpu(cgroupsPath);
  const now = Date.now();
  const mem = memoryStat(cgroupsPath);
  const throttling = { periods: 0, throttled_periods: 0, throttled_time: 0 };
  return {
    read: new Date(now).toISOString(),
    preread: new Date(now - 1000).toISOString(),
    name: `/${c.name}`,
    id: c.id,
    pids_stats: { current: s.pids, ...(s.pidsLimit !== null ? { limit: s.pidsLimit } : {}) },
    blkio_stats: {
      io_service_bytes_recursive: [
        { major: 0, minor: 0, op: 'read', value: s.blkReadBytes },
        { major: 0, minor: 0, op: 'write', value: s.blkWriteBytes },
      ],
      io_serviced_recursive: null,
      io_queue_recursive: null,
      io_service_time_recursive: null,
      io_wait_time_recursive: null,
      io_merged_recursive: null,
      io_time_recursive: null,
      sectors_recursive: null,
    },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: {
      cpu_usage: {
        total_usage: total,
        ...(per ? { percpu_usage: per } : {}),
        usage_in_kernelmode: 0,
        usage_in_usermode: 0,
      },
      system_cpu_usage: system,
      online_cpus: ncpu,
      throttling_data: throttling,
    },
    precpu_stats: {
      cpu_usage: {
        total_usage: pre,
        ...(per ? { percpu_usage: per.map((v) => Math.max(0, v - Math.round(used / ncpu))) } : {}),
        usage_in_kernelmode: 0,
        usage_in_usermode: 0,
      },
      system_cpu_usage: Math.max(0, system - WINDOW_NS * ncpu),
      online_cpus: ncpu,
      throttling_data: throttling,
    },
    memory_stats: {
      usage: s.memoryUsage,
      stats: Object.keys(mem).length > 0 ? mem : { cache: s.memoryCache, rss: s.memoryRss },
      failcnt: s.memoryFailcnt,
      limit: s.memoryLimit,
    },
    networks:
      c.config.networkMode === 'bridge'
        ? {
            eth0: {
              rx_bytes: s.netRxBytes,
              rx_packets: 0,
              rx_errors: 0,
              rx_dropped: 0,
              tx_bytes: s.netTxBytes,
              tx_packets: 0,
              tx_errors: 0,
              tx_dropped: 0,
            },
          }
        : {},
  };
}
