// A container's privileges: --privileged, --cap-add/--cap-drop, --security-opt (seccomp,
// no-new-privileges), --device and --sysctl. Checked at create, before anything is made,
// with errors that name the field; resolved against the host at each start (device
// numbers, the capabilities the kernel has, the seccomp filter for this architecture).
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { release } from 'node:os';
import { join, posix } from 'node:path';
import { defaultSeccomp, parseProfile, resolveProfile } from '../runtime/seccomp.ts';
import { ALL_CAPS, resolveCaps, type SpecDevice, type SpecSecurity } from '../runtime/spec.ts';
import type { CreateContainerRequest } from '../types/api.ts';
import type {
  ContainerConfig,
  DeviceMapping,
  NetworkMode,
  SecurityConfig,
} from '../types/domain.ts';
import { invalid } from '../util/errors.ts';

// Kernel paths, parameters so tests can stand fixtures in for them.
export interface SecurityHost {
  readonly procRoot: string;
  readonly sysRoot: string;
  readonly devRoot: string;
  readonly arch: string;
  readonly kernel: string;
}

export const HOST: SecurityHost = {
  procRoot: '/proc',
  sysRoot: '/sys',
  devRoot: '/dev',
  arch: process.arch,
  kernel: release(),
};

export const DEFAULT_SECURITY: SecurityConfig = {
  privileged: false,
  capAdd: [],
  capDrop: [],
  noNewPrivileges: true,
  seccomp: 'default',
  securityOpt: [],
  devices: [],
  sysctls: {},
};

// Sysctls that are per namespace, so a container changes only its own (Docker's and
// runc's list): IPC ones in its IPC namespace (berth always gives it one), net.* in its
// network namespace (only when it has its own).
const IPC_SYSCTLS = [
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
];
// Dots only: runc turns them into slashes under /proc/sys, so a key with a slash (or an
// empty component) could name a file outside it.
const SYSCTL_KEY = /^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$/;
const MAX_SYSCTLS = 64;
const MAX_DEVICES = 128;

export function normalizeCap(name: string, field: string): string {
  const up = name.trim().toUpperCase();
  if (up === 'ALL') return 'ALL';
  const cap = up.startsWith('CAP_') ? up : `CAP_${up}`;
  if (!ALL_CAPS.includes(cap)) throw invalid(field, `"${name}" is not a capability`);
  return cap;
}

function parseBool(v: string, field: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw invalid(field, `"${v}" is not true or false`);
}

// Docker's --security-opt values; "key:value" is Docker's older spelling of "key=value".
function parseSecurityOpts(opts: readonly string[]): {
  noNewPrivileges: boolean;
  seccomp: SecurityConfig['seccomp'];
  seccompProfile?: string;
  seccompField?: string;
  normalized: string[];
} {
  let noNewPrivileges = true;
  let seccomp: SecurityConfig['seccomp'] = 'default';
  let seccompProfile: string | undefined;
  let seccompField: string | undefined;
  const seen = new Set<string>();
  const normalized: string[] = [];
  opts.forEach((opt, i) => {
    const field = `securityOpt[${i}]`;
    const m = /^([a-z-]+)(?:[=:](.*))?$/s.exec(opt);
    const key = m?.[1] ?? '';
    const value = m?.[2];
    if (seen.has(key)) throw invalid(field, `${key} is given twice`);
    seen.add(key);
    switch (key) {
      case 'no-new-privileges':
        noNewPrivileges = value === undefined ? true : parseBool(value, field);
        normalized.push(`no-new-privileges=${noNewPrivileges}`);
        return;
      case 'seccomp': {
        if (value === undefined || value === '')
          throw invalid(field, 'seccomp needs unconfined or a profile');
        if (value === 'unconfined') seccomp = 'unconfined';
        else if (value === 'default' || value === 'builtin') seccomp = 'default';
        else if (value.trimStart().startsWith('{')) {
          parseProfile(value, field);
          seccomp = 'custom';
          seccompProfile = value;
          seccompField = field;
        } else
          throw invalid(
            field,
            `"${value.slice(0, 64)}" is neither unconfined nor a profile's JSON (the client reads a profile file and sends its content)`,
          );
        normalized.push(`seccomp=${value}`);
        return;
      }
      case 'apparmor':
      case 'label':
      case 'systempaths':
      case 'mask':
      case 'unmask':
      case 'proc-opts':
        throw invalid(field, `${key} is not supported by berth`);
      default:
        throw invalid(
          field,
          `"${opt.slice(0, 64)}" is not seccomp=unconfined|PROFILE or no-new-privileges[=true|false]`,
        );
    }
  });
  return {
    noNewPrivileges,
    seccomp,
    ...(seccompProfile !== undefined ? { seccompProfile } : {}),
    ...(seccompField !== undefined ? { seccompField } : {}),
    normalized,
  };
}

function checkSysctls(
  sysctls: Readonly<Record<string, string>>,
  networkMode: NetworkMode,
): Record<string, string> {
  const keys = Object.keys(sysctls);
  if (keys.length > MAX_SYSCTLS) throw invalid('sysctls', `at most ${MAX_SYSCTLS}`);
  const out: Record<string, string> = {};
  for (const key of keys) {
    const field = `sysctls.${key}`;
    const value = sysctls[key] ?? '';
    if (!SYSCTL_KEY.test(key))
      throw invalid(field, `"${key}" is not a sysctl name like kernel.shmmax`);
    const ipc = IPC_SYSCTLS.includes(key) || key.startsWith('fs.mqueue.');
    const net = key.startsWith('net.');
    if (!ipc && !net)
      throw invalid(
        field,
        `${key} is not namespaced: only ${IPC_SYSCTLS.join(', ')}, fs.mqueue.* and net.* can be set`,
      );
    if (net && networkMode !== 'bridge' && networkMode !== 'none')
      throw invalid(
        field,
        `net.* sysctls need the container's own network namespace, not --network ${networkMode}`,
      );
    if (typeof value !== 'string' || value.length > 4096 || /[\n\0]/.test(value))
      throw invalid(field, 'must be one line of at most 4096 characters');
    out[key] = value;
  }
  return out;
}

function isAbsoluteClean(p: string): boolean {
  return p.startsWith('/') && posix.normalize(p) === p && !p.endsWith('/');
}

async function checkDevices(
  reqs: NonNullable<CreateContainerRequest['devices']>,
): Promise<DeviceMapping[]> {
  if (reqs.length > MAX_DEVICES) throw invalid('devices', `at most ${MAX_DEVICES}`);
  const seen = new Set<string>();
  const out: DeviceMapping[] = [];
  for (const [i, d] of reqs.entries()) {
    const f = (k: string) => `devices[${i}].${k}`;
    const host = d.pathOnHost;
    if (!isAbsoluteClean(host)) throw invalid(f('pathOnHost'), `"${host}" is not an absolute path`);
    const st = await stat(host).catch(() => undefined);
    if (!st) throw invalid(f('pathOnHost'), `${host} does not exist on the host`);
    if (!st.isCharacterDevice() && !st.isBlockDevice())
      throw invalid(f('pathOnHost'), `${host} is not a device node`);
    const target = d.pathInContainer || host;
    // runc makes the node in the container's /dev (a tmpfs); the root filesystem is
    // read-only, and /dev/pts, /dev/shm and /dev/mqueue are filesystems of their own.
    if (
      !isAbsoluteClean(target) ||
      !target.startsWith('/dev/') ||
      /^\/dev\/(pts|shm|mqueue)(\/|$)/.test(target)
    )
      throw invalid(
        f('pathInContainer'),
        `"${target}" must be a path under /dev (not /dev/pts, /dev/shm or /dev/mqueue)`,
      );
    if (seen.has(target)) throw invalid(f('pathInContainer'), `${target} is given twice`);
    seen.add(target);
    const permissions = d.cgroupPermissions || 'rwm';
    if (!/^[rwm]{1,3}$/.test(permissions) || new Set(permissions).size !== permissions.length)
      throw invalid(f('cgroupPermissions'), `"${permissions}" is not a combination of r, w and m`);
    out.push({ pathOnHost: host, pathInContainer: target, permissions });
  }
  return out;
}

// Checks the request's security fields; what the container's config keeps.
export async function checkSecurity(
  req: CreateContainerRequest,
  networkMode: NetworkMode,
  host: SecurityHost = HOST,
): Promise<SecurityConfig> {
  const privileged = req.privileged ?? false;
  const held = hostCaps(host);
  const capAdd = [
    ...new Set(
      (req.capAdd ?? []).map((c, i) => {
        const cap = normalizeCap(c, `capAdd[${i}]`);
        if (cap !== 'ALL' && !held.includes(cap))
          throw invalid(`capAdd[${i}]`, `berthd itself does not have ${cap} on this host`);
        return cap;
      }),
    ),
  ];
  const capDrop = [...new Set((req.capDrop ?? []).map((c, i) => normalizeCap(c, `capDrop[${i}]`)))];
  // Docker silently ignores --cap-drop with --privileged; a drop that does nothing is a
  // security setting someone believes in, so it is refused.
  if (privileged && capDrop.length > 0)
    throw invalid('capDrop', 'conflicts with privileged (which has every capability)');
  const opts = parseSecurityOpts(req.securityOpt ?? []);
  if (privileged && opts.seccomp === 'custom')
    throw invalid(
      opts.seccompField ?? 'securityOpt',
      'a seccomp profile conflicts with privileged (which runs without seccomp)',
    );
  const sysctls = checkSysctls(req.sysctls ?? {}, networkMode);
  const devices = await checkDevices(req.devices ?? []);
  const sec: SecurityConfig = {
    privileged,
    capAdd,
    capDrop,
    noNewPrivileges: opts.noNewPrivileges,
    seccomp: opts.seccomp,
    ...(opts.seccompProfile !== undefined ? { seccompProfile: opts.seccompProfile } : {}),
    securityOpt: opts.normalized,
    devices,
    sysctls,
  };
  // A custom profile's conditions are resolved now too, so a start cannot fail on them.
  resolveSeccomp(sec, containerCaps(sec, host), host);
  return sec;
}

// What ALL means on this host: the capabilities in berthd's own bounding set (the kernel's
// and no more than berthd was given; a container cannot get what its runtime lacks).
export function hostCaps(host: SecurityHost = HOST): readonly string[] {
  try {
    const status = readFileSync(join(host.procRoot, 'self/status'), 'utf8');
    const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (hex) {
      const bits = BigInt(`0x${hex}`);
      return ALL_CAPS.filter((_, i) => ((bits >> BigInt(i)) & 1n) === 1n);
    }
  } catch {
    /* no procfs: the full list */
  }
  return ALL_CAPS;
}

export function containerCaps(sec: SecurityConfig, host: SecurityHost = HOST): string[] {
  const all = hostCaps(host);
  return sec.privileged ? [...all] : resolveCaps(sec.capAdd, sec.capDrop, all);
}

// What an exec or a health probe in the container runs with: never more than the
// container itself.
export function processSecurity(
  config: ContainerConfig,
  host: SecurityHost = HOST,
): { caps: string[]; noNewPrivileges: boolean } {
  const sec = config.security ?? DEFAULT_SECURITY;
  return { caps: containerCaps(sec, host), noNewPrivileges: sec.noNewPrivileges };
}

function resolveSeccomp(
  sec: SecurityConfig,
  caps: readonly string[],
  host: SecurityHost,
): SpecSecurity['seccomp'] {
  if (sec.privileged || sec.seccomp === 'unconfined') return undefined;
  const ctx = { caps, arch: host.arch, kernel: host.kernel };
  if (sec.seccomp === 'custom' && sec.seccompProfile !== undefined)
    return resolveProfile(parseProfile(sec.seccompProfile, 'securityOpt'), ctx);
  return defaultSeccomp(ctx);
}

// Linux's dev_t: 12 bits of major and 20 of minor, split as glibc's makedev does.
function majorMinor(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

async function specDevice(
  pathOnHost: string,
  pathInContainer: string,
  access: string,
  field: string,
): Promise<SpecDevice> {
  const st = await stat(pathOnHost, { bigint: true }).catch(() => undefined);
  if (!st || (!st.isCharacterDevice() && !st.isBlockDevice()))
    throw invalid(field, `${pathOnHost} is no longer a device node on the host`);
  return {
    path: pathInContainer,
    type: st.isBlockDevice() ? 'b' : 'c',
    ...majorMinor(st.rdev),
    fileMode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    access,
  };
}

// Docker's list of what --privileged gets: every device node under /dev, but not those of
// filesystems the container has its own of, and not the console (runc makes its own).
function hostDevicePaths(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev'].includes(e.name))
        hostDevicePaths(p, out);
    } else if ((e.isCharacterDevice() || e.isBlockDevice()) && e.name !== 'console') out.push(p);
  }
  return out;
}

// Docker masks the thermal_throttle directory of each CPU (GHSA-6fw5-f8r9-fgfm): writing
// to it can stall the host.
export function hostMaskedPaths(sysRoot = '/sys'): string[] {
  const cpus = join(sysRoot, 'devices/system/cpu');
  let names: string[];
  try {
    names = readdirSync(cpus).filter((n) => /^cpu\d+$/.test(n));
  } catch {
    return [];
  }
  return names
    .filter((n) => existsSync(join(cpus, n, 'thermal_throttle')))
    .map((n) => `/sys/devices/system/cpu/${n}/thermal_throttle`);
}

// Everything the spec builder needs, resolved on the host at start.
export async function specSecurity(
  config: ContainerConfig,
  host: SecurityHost = HOST,
): Promise<SpecSecurity> {
  const sec = config.security ?? DEFAULT_SECURITY;
  const caps = containerCaps(sec, host);
  const devices: SpecDevice[] = [];
  const taken = new Set<string>();
  for (const [i, d] of sec.devices.entries()) {
    devices.push(
      await specDevice(d.pathOnHost, d.pathInContainer, d.permissions, `devices[${i}].pathOnHost`),
    );
    taken.add(d.pathInContainer);
  }
  if (sec.privileged) {
    for (const p of hostDevicePaths(host.devRoot)) {
      const inContainer = posix.join('/dev', p.slice(host.devRoot.length));
      if (taken.has(inContainer)) continue;
      // A node that went away while we looked is simply not there.
      const dev = await specDevice(p, inContainer, 'rwm', 'devices').catch(() => undefined);
      if (dev) devices.push(dev);
    }
  }
  return {
    privileged: sec.privileged,
    caps,
    noNewPrivileges: sec.noNewPrivileges,
    seccomp: resolveSeccomp(sec, caps, host),
    devices,
    sysctls: { ...sec.sysctls },
    hostMaskedPaths: hostMaskedPaths(host.sysRoot),
  };
}
