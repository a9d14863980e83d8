import type { Resources, Ulimit, UsernsMapping } from '../types/domain.ts';
import { defaultSeccomp, type OciSeccomp } from './seccomp.ts';

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
  // Absent: the defaults (DEFAULT_CAPS, no-new-privileges, the default seccomp profile).
  readonly security?: SpecSecurity | undefined;
  // A user namespace of the container's own (--userns=auto); absent: the host's. With a
  // path, the namespace berthd made (and the container's network namespace on a berth
  // network, which that namespace owns); without, runc makes it.
  readonly userns?: (UsernsMapping & { readonly path?: string | undefined }) | undefined;
}

// A device node the container gets, resolved on the host (major and minor of the node).
export interface SpecDevice {
  readonly path: string;
  readonly type: 'c' | 'b';
  readonly major: number;
  readonly minor: number;
  readonly fileMode: number;
  readonly uid: number;
  readonly gid: number;
  // The device cgroup's access: any of r, w, m.
  readonly access: string;
}

// A container's privileges, resolved by the engine from its configuration.
export interface SpecSecurity {
  // All capabilities, every host device, no seccomp filter, /sys and the cgroup
  // filesystem writable, no masked or read-only paths.
  readonly privileged: boolean;
  readonly caps: readonly string[];
  readonly noNewPrivileges: boolean;
  // linux.seccomp; absent: no filter (seccomp=unconfined, or privileged).
  readonly seccomp?: OciSeccomp | undefined;
  readonly devices: readonly SpecDevice[];
  readonly sysctls: Readonly<Record<string, string>>;
  // Paths masked on this host besides MASKED_PATHS (its CPUs' thermal_throttle).
  readonly hostMaskedPaths?: readonly string[];
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

// Every capability of Linux 6.x, in number order (CAP_CHOWN is 0).
export const ALL_CAPS: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

// Docker's rules for --cap-add and --cap-drop (names with CAP_, or ALL): adding ALL gives
// every capability but those dropped; dropping ALL leaves only those added; otherwise the
// defaults minus the dropped plus the added. `all` is what ALL means on this host.
export function resolveCaps(
  add: readonly string[],
  drop: readonly string[],
  all: readonly string[] = ALL_CAPS,
): string[] {
  let caps: string[];
  if (add.includes('ALL')) caps = all.filter((c) => !drop.includes(c));
  else if (drop.includes('ALL')) caps = [...add];
  else caps = [...DEFAULT_CAPS.filter((c) => !drop.includes(c)), ...add];
  return [...new Set(caps)];
}

// Docker's list (moby daemon/pkg/oci/defaults.go), kernel files that leak the host or let a
// container disturb it: bind-mounted over with /dev/null (files) or an empty read-only
// tmpfs (directories).
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
  // The container's capabilities and no-new-privileges (absent: DEFAULT_CAPS, true).
  readonly caps?: readonly string[] | undefined;
  readonly noNewPrivileges?: boolean | undefined;
}

// Shared by the container's init and by exec'd processes, so an exec never gets more
// privilege than the container it enters.
export function buildProcess(p: ProcessInput): Record<string, unknown> {
  const caps = [...(p.caps ?? DEFAULT_CAPS)];
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
    noNewPrivileges: p.noNewPrivileges ?? true,
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

// The device cgroup's rules beyond runc's standard devices: every device for a privileged
// container, else each device it was given, with its access.
export function deviceRules(sec: SpecSecurity | undefined): Record<string, unknown>[] {
  if (!sec) return [];
  if (sec.privileged) return [{ allow: true, access: 'rwm' }];
  return sec.devices.map((d) => ({
    allow: true,
    type: d.type,
    major: d.major,
    minor: d.minor,
    access: d.access,
  }));
}

// The OCI form of a container's cgroup limits (also what `runc update` takes). Devices: all
// denied, then those allowed (runc adds its standard ones after).
export function linuxResources(
  r: Resources,
  defaultPids: number,
  allowDevices: readonly Record<string, unknown>[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    devices: [{ allow: false, access: 'rwm' }, ...allowDevices],
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
  const sec = s.security;
  const privileged = sec?.privileged ?? false;
  // Read-only unless privileged (Docker's --privileged makes /sys and cgroups writable).
  const ro = privileged ? [] : ['ro'];
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
      options: ['nosuid', 'noexec', 'nodev', ...ro],
    },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', ...ro],
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

  const linux: Record<string, unknown> = {
    namespaces,
    cgroupsPath: s.cgroupsPath,
    resources: linuxResources(s.resources ?? {}, s.pidsLimit, deviceRules(sec)),
  };
  if (!privileged) {
    linux['maskedPaths'] = [...MASKED_PATHS, ...(sec?.hostMaskedPaths ?? [])];
    linux['readonlyPaths'] = [...READONLY_PATHS];
  }
  // No security given: the defaults, seccomp included.
  const seccomp = sec ? sec.seccomp : defaultSeccomp({ caps: DEFAULT_CAPS });
  if (seccomp) linux['seccomp'] = seccomp;
  // Besides runc's standard devices (null, zero, full, random, urandom, tty, ptmx and pts).
  if (sec && sec.devices.length > 0)
    linux['devices'] = sec.devices.map(({ access: _access, ...d }) => d);
  if (sec && Object.keys(sec.sysctls).length > 0) linux['sysctl'] = { ...sec.sysctls };
  if (s.userns)
    applyUserns(
      s.userns,
      linux,
      namespaces,
      all,
      s.netnsPath ? s.networkMode === 'bridge' && !!s.userns.path : s.networkMode !== 'host',
    );

  return {
    ociVersion: '1.0.2',
    process: buildProcess({
      ...s,
      ulimits: s.resources?.ulimits,
      caps: sec?.caps,
      noNewPrivileges: sec?.noNewPrivileges,
    }),
    root: { path: s.rootfs, readonly: s.readonlyRootfs },
    hostname: s.hostname,
    mounts: all,
    linux,
  };
}

// ---- user namespaces (--userns=auto) ----

// runc makes (or joins) the user namespace first and makes the others inside it. sysfs may
// only be mounted by the owner of the network namespace's user namespace: one runc makes,
// or a berth network's made in the container's user namespace, is the container's
// (ownNetns); the host's or another container's is not, and there, as runc's rootless spec
// and Docker do, /sys is the host's bound read-only (its files are the host root's, which
// the container's root is not).
function applyUserns(
  m: UsernsMapping & { readonly path?: string | undefined },
  linux: Record<string, unknown>,
  namespaces: { type: string; path?: string }[],
  mounts: OciSpec['mounts'],
  ownNetns: boolean,
): void {
  namespaces.unshift({ type: 'user', ...(m.path ? { path: m.path } : {}) });
  linux['uidMappings'] = [{ containerID: 0, hostID: m.uidBase, size: m.size }];
  linux['gidMappings'] = [{ containerID: 0, hostID: m.gidBase, size: m.size }];
  if (ownNetns) return;
  const i = mounts.findIndex((x) => x.destination === '/sys' && x.type === 'sysfs');
  const sys = mounts[i];
  if (sys)
    mounts[i] = {
      destination: '/sys',
      type: 'bind',
      source: '/sys',
      options: ['rbind', ...sys.options.filter((o) => o !== 'rbind')],
    };
}
