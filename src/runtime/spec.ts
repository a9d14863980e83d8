import type { Resources, Ulimit } from '../types/domain.ts';

// The OCI runtime spec for a container, built as a pure function of its inputs so the
// safe defaults are unit-tested without a kernel.

export interface TmpfsMount {
  readonly path: string;
  readonly sizeBytes: number;
  readonly mode: string;
  readonly options?: readonly string[];
}

export interface SpecInput {
  readonly rootfs: string;
  readonly readonlyRootfs: boolean;
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
  readonly hostname: string;
  readonly terminal: boolean;
  readonly networkMode: 'none' | 'host' | 'bridge' | 'container';
  // A network namespace to join (the container's on a berth network, or another
  // container's); without one, none gets a namespace of its own with only lo.
  readonly netnsPath?: string;
  readonly etcFiles: {
    readonly hosts: string;
    readonly hostname: string;
    readonly resolvConf: string;
  };
  readonly cgroupsPath: string;
  readonly pidsLimit: number;
  readonly nofileLimit: number;
  readonly tmpfs: readonly TmpfsMount[];
  readonly shmSizeBytes: number;
  readonly resources?: Resources | undefined;
  readonly consoleSize?: readonly [number, number] | undefined;
  // The container's own mounts (-v, --mount, --tmpfs), after the defaults; one at a path
  // a default uses (/dev/shm, /etc/hosts, ...) replaces it.
  readonly mounts?: readonly {
    destination: string;
    type: string;
    source: string;
    options: string[];
  }[];
}

// Docker's default capability set (moby oci/caps/defaults.go), no more.
export const DEFAULT_CAPS: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

export interface OciSpec {
  ociVersion: string;
  process: Record<string, unknown>;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options: string[] }[];
  linux: Record<string, unknown>;
}

export interface ProcessInput {
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
  readonly terminal: boolean;
  readonly nofileLimit: number;
  readonly consoleSize?: readonly [number, number] | undefined;
  readonly ulimits?: readonly Ulimit[] | undefined;
}

// Shared by the container's init and by exec'd processes, so an exec never gets more
// privilege than the container it enters.
export function buildProcess(p: ProcessInput): Record<string, unknown> {
  const caps = [...DEFAULT_CAPS];
  const user: Record<string, unknown> = { uid: p.uid, gid: p.gid };
  if (p.additionalGids.length > 0) user['additionalGids'] = [...p.additionalGids];
  const proc: Record<string, unknown> = {
    terminal: p.terminal,
    user,
    args: [...p.args],
    env: [...p.env],
    cwd: p.cwd,
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    // The monitor runs at -999 so the kernel never picks it; the container must not inherit that.
    oomScoreAdj: 0,
    noNewPrivileges: true,
    rlimits: rlimits(p.nofileLimit, p.ulimits ?? []),
  };
  if (p.terminal && p.consoleSize)
    proc['consoleSize'] = { height: p.consoleSize[0], width: p.consoleSize[1] };
  return proc;
}

function rlimits(
  nofile: number,
  ulimits: readonly Ulimit[],
): { type: string; hard: number; soft: number }[] {
  const out = new Map<string, { type: string; hard: number; soft: number }>();
  out.set('nofile', { type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile });
  for (const u of ulimits)
    out.set(u.name, { type: `RLIMIT_${u.name.toUpperCase()}`, hard: u.hard, soft: u.soft });
  return [...out.values()];
}

// The OCI form of a container's cgroup limits (also what `runc update` takes).
export function linuxResources(r: Resources, defaultPids: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    devices: [{ allow: false, access: 'rwm' }],
    pids: { limit: r.pidsLimit ?? defaultPids },
  };
  const memory: Record<string, number> = {};
  if (r.memory !== undefined) memory['limit'] = r.memory;
  if (r.memoryReservation !== undefined) memory['reservation'] = r.memoryReservation;
  if (r.memorySwap !== undefined) memory['swap'] = r.memorySwap;
  if (Object.keys(memory).length > 0) out['memory'] = memory;
  const cpu: Record<string, number | string> = {};
  if (r.cpuShares !== undefined) cpu['shares'] = r.cpuShares;
  if (r.cpuQuota !== undefined) cpu['quota'] = r.cpuQuota;
  if (r.cpuPeriod !== undefined) cpu['period'] = r.cpuPeriod;
  if (r.cpusetCpus !== undefined) cpu['cpus'] = r.cpusetCpus;
  if (Object.keys(cpu).length > 0) out['cpu'] = cpu;
  if (r.blkioWeight !== undefined) out['blockIO'] = { weight: r.blkioWeight };
  return out;
}

export function buildSpec(s: SpecInput): OciSpec {
  const mounts: OciSpec['mounts'] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${s.shmSizeBytes}`],
    },
    {
      destination: '/dev/mqueue',
      type: 'mqueue',
      source: 'mqueue',
      options: ['nosuid', 'noexec', 'nodev'],
    },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', 'ro'],
    },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
    ...s.tmpfs.map((t) => ({
      destination: t.path,
      type: 'tmpfs',
      source: 'tmpfs',
      options: [...(t.options ?? ['nosuid', 'nodev']), `mode=${t.mode}`, `size=${t.sizeBytes}`],
    })),
    ...(
      [
        ['/etc/hosts', s.etcFiles.hosts],
        ['/etc/hostname', s.etcFiles.hostname],
        ['/etc/resolv.conf', s.etcFiles.resolvConf],
      ] as const
    ).map(([destination, source]) => ({
      destination,
      type: 'bind',
      source,
      options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
    })),
  ];

  const own = s.mounts ?? [];
  const taken = new Set(own.map((m) => m.destination));
  const all = [...mounts.filter((m) => !taken.has(m.destination)), ...own.map((m) => ({ ...m }))];

  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ];
  if (s.netnsPath) namespaces.push({ type: 'network', path: s.netnsPath });
  else if (s.networkMode !== 'host') namespaces.push({ type: 'network' });

  return {
    ociVersion: '1.0.2',
    process: buildProcess({ ...s, ulimits: s.resources?.ulimits }),
    root: { path: s.rootfs, readonly: s.readonlyRootfs },
    hostname: s.hostname,
    mounts: all,
    linux: {
      namespaces,
      cgroupsPath: s.cgroupsPath,
      resources: linuxResources(s.resources ?? {}, s.pidsLimit),
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
}
